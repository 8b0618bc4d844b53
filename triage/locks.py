"""Concurrency helpers: a readers-writer lock (triage runs concurrently, a rebuild runs alone) and
group commit for writes with a high fixed cost."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers so it is not starved."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class GroupCommit(Generic[T]):
    """Callers hand items to `submit` and return once `flush` has written them; concurrent callers share
    one `flush` call. Used where each write has a high fixed cost (an fsync'd Chroma upsert): under load
    one write carries everything that queued up while the previous one ran, and a caller alone pays
    exactly one write, as before.
    """

    def __init__(self, flush: Callable[[list[T]], object]) -> None:
        self._flush = flush
        self._queue: list[tuple[list[T], Future[None]]] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()

    def submit(self, items: Sequence[T]) -> None:
        done: Future[None] = Future()
        with self._queue_lock:
            self._queue.append((list(items), done))
        with self._writer:  # whoever holds it writes everything queued so far, possibly ours
            if not done.done():
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    self._flush([item for items, _ in batch for item in items])
                except BaseException as exc:
                    for _, f in batch:
                        f.set_exception(exc)
                else:
                    for _, f in batch:
                        f.set_result(None)
        done.result()
