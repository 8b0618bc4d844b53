"""Requests- and tokens-per-minute limits, shared by the threads of one worker.

A sliding one-minute window: a call may start when fewer than `rpm` calls and fewer than `tpm`
tokens (its own estimate included) were started in the last 60 seconds; otherwise it waits.
Estimates are settled with the real usage afterwards. Each worker process enforces the limits on
its own calls; several processes sharing one key should split the limits between them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from triage.drafting import DraftContext, Drafter, DraftResult

WINDOW_S = 60.0
COMPLETION_ESTIMATE = 400  # tokens a draft's answer takes, until the real usage is known


class RateLimiter:
    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._clock, self._sleep = clock, sleep
        self._calls: deque[list[float]] = deque()  # [start time, tokens]
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self, tokens: int) -> list[float]:
        """Block until a call of `tokens` fits; returns its ledger entry (for settle())."""
        if self.tpm is not None:
            tokens = min(tokens, self.tpm)  # a call bigger than the whole budget still runs, alone
        while True:
            with self._lock:
                now = self._clock()
                while self._calls and self._calls[0][0] <= now - WINDOW_S:
                    self._calls.popleft()
                used = sum(c[1] for c in self._calls)
                fits_rpm = self.rpm is None or len(self._calls) < self.rpm
                fits_tpm = self.tpm is None or used + tokens <= self.tpm
                if fits_rpm and fits_tpm:
                    entry = [now, float(tokens)]
                    self._calls.append(entry)
                    return entry
                wait = (self._calls[0][0] + WINDOW_S - now) if self._calls else 0.05
            self.waited_s += max(wait, 0.01)
            self._sleep(max(wait, 0.01))

    def settle(self, entry: list[float], tokens: int) -> None:
        """Replace a call's estimate with what it really used."""
        with self._lock:
            entry[1] = float(tokens)


class RateLimitedDrafter:
    """A Drafter that waits for the rate limiter before each LLM call."""

    def __init__(self, inner: Drafter, limiter: RateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    def prompt_tokens(self, ctx: DraftContext) -> int:
        return self.inner.prompt_tokens(ctx)

    def estimate(self, ctx: DraftContext) -> int:
        """Tokens a call will take: its prompt, counted, and its answer, guessed until known."""
        return self.inner.prompt_tokens(ctx) + COMPLETION_ESTIMATE

    def draft(self, ctx: DraftContext) -> DraftResult:
        entry = self.limiter.acquire(self.estimate(ctx))
        result = self.inner.draft(ctx)
        self.limiter.settle(entry, result.tokens.prompt + result.tokens.completion)
        return result
