"""Background drafting of queued cases inside the API process.

Batch ingest commits its cases as `new` and wakes this worker, which drafts them in chunks (the
pipeline batches retrieval and routing). Queued cases survive a restart: on start, and every
`poll_s`, the worker looks for cases still waiting. Two processes sweeping the same queue cannot
store two drafts for one case (the version check refuses the second); issue-5 batch jobs claim
work with SKIP LOCKED instead.
"""

from __future__ import annotations

import logging
import threading

from triage.cases.service import SYSTEM, CaseService

log = logging.getLogger(__name__)


class BackgroundDrafter:
    def __init__(self, service: CaseService, *, threads: int = 1, chunk: int = 32, poll_s: float = 5.0) -> None:
        self.service = service
        self.chunk = chunk
        self.poll_s = poll_s
        self._wake = threading.Condition()
        self._stopping = False
        self._claims = threading.Lock()  # guards _in_flight; held across the claim query...
        self._in_flight: set[str] = set()
        self._threads = [
            threading.Thread(target=self._run, name=f"triage-drafter-{i}", daemon=True) for i in range(threads)
        ]

    def start(self) -> BackgroundDrafter:
        for t in self._threads:
            t.start()
        return self

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _claim(self) -> list[str]:
        with self._claims:  # ...so wake() from a request never waits for a query
            ids = self.service.pending(self.chunk, exclude=set(self._in_flight))
            self._in_flight.update(ids)
            return ids

    def _run(self) -> None:
        while not self._stopping:
            try:
                ids = self._claim()
            except Exception:
                log.exception("could not read the drafting queue; retrying in %.0f s", self.poll_s)
                ids = []
            if ids:
                try:
                    self.service.draft_cases(ids, actor=SYSTEM)
                    continue
                except Exception:  # e.g. the database went away: the cases stay queued for the next sweep
                    log.exception("background drafting of %d case(s) failed; they stay queued", len(ids))
                finally:
                    with self._claims:
                        self._in_flight.difference_update(ids)
            with self._wake:
                if not self._stopping:
                    self._wake.wait(self.poll_s)
