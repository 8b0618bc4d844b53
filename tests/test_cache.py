"""The figures cache: reused for its time, computed once by concurrent callers, stale while refreshed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from triage.cache import TtlCache


def test_values_are_reused_for_their_time_and_computed_once_by_concurrent_callers() -> None:
    now = [0.0]
    cache: TtlCache[int] = TtlCache(10, clock=lambda: now[0])
    calls: list[int] = []
    release = threading.Event()

    def slow() -> int:
        calls.append(1)
        release.wait(5)
        return len(calls)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, "k", slow) for _ in range(8)]
        release.set()
        assert [f.result() for f in futures] == [1] * 8 and len(calls) == 1  # one computation for eight misses
    now[0] = 5.0
    assert cache.get("k", slow) == 1 and len(calls) == 1  # within its time: reused

    now[0] = 11.0  # expired: one caller refreshes while the others are answered with the old value
    release.clear()
    with ThreadPoolExecutor(2) as pool:
        refreshing = pool.submit(cache.get, "k", slow)
        while len(calls) < 2:
            pass
        assert cache.get("k", slow) == 1  # stale, without waiting
        release.set()
        assert refreshing.result() == 2
    assert cache.get("k", slow) == 2 and len(calls) == 2


def test_a_failed_computation_is_retried_and_zero_means_never_cached() -> None:
    cache: TtlCache[int] = TtlCache(10)
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database down")
        return 7

    with pytest.raises(RuntimeError):
        cache.get("k", flaky)
    assert cache.get("k", flaky) == 7
    counter = iter(range(100))
    never: TtlCache[int] = TtlCache(0)
    assert [never.get("k", lambda: next(counter)) for _ in range(3)] == [0, 1, 2]


def test_a_value_computed_across_a_clear_is_not_kept() -> None:
    cache: TtlCache[str] = TtlCache(10)
    reading, release = threading.Event(), threading.Event()

    def before_the_change() -> str:
        reading.set()
        release.wait(5)
        return "old"

    with ThreadPoolExecutor(1) as pool:
        stale = pool.submit(cache.get, "k", before_the_change)
        assert reading.wait(5)
        cache.clear()  # a write lands while the old value is being computed
        release.set()
        assert stale.result() == "old"  # its caller gets what it computed ...
    assert cache.get("k", lambda: "new") == "new"  # ... but it is not served to the next
