"""A small time-to-live cache for figures that many readers poll (supervision dashboards, problem lists).

Counting a hundred thousand cases takes tens of milliseconds of the database's time; twenty supervisors
polling a dashboard would repeat it twenty times a second for figures that change by a case or two.
Reused for a few seconds, the counts cost one computation per interval per scope, and a reader sees
them at most `ttl_s` old. One caller computes a missing or expired value while the others wait for it
(missing) or keep being answered with the expired one (expired): when an entry expires under load, the
database sees one computation, not one per waiting request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Values by key, each reused for `ttl_s` seconds (0: never cached); thread-safe."""

    def __init__(self, ttl_s: float, *, max_items: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._clock = clock
        self._items: dict[Hashable, tuple[float, V]] = {}
        self._computing: dict[Hashable, threading.Event] = {}
        self._generation = 0  # bumped by clear(): a value computed before it is not stored after it
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The value cached for `key`, or `compute()`'s (cached from now on)."""
        if self.ttl_s <= 0:
            return compute()
        while True:
            with self._lock:
                entry = self._items.get(key)
                if entry is not None and entry[0] > self._clock():
                    return entry[1]
                running = self._computing.get(key)
                if running is None:
                    done = self._computing[key] = threading.Event()
                    generation = self._generation
                    break
                if entry is not None:
                    return entry[1]  # expired, and another caller is computing the new one
            running.wait()  # missing: the value another caller computes
        try:
            value = compute()
            with self._lock:
                if generation == self._generation:  # not cleared meanwhile: what it read is still current
                    if len(self._items) >= self.max_items:
                        self._items.clear()
                    self._items[key] = (self._clock() + self.ttl_s, value)
            return value
        finally:
            with self._lock:
                self._computing.pop(key, None)
            done.set()

    def clear(self) -> None:
        """Forget every value, and any being computed now (it may have read what changed)."""
        with self._lock:
            self._items.clear()
            self._generation += 1
