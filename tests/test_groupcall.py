"""GroupCall: concurrent callers share one call of a costly operation, each gets its own results."""

from __future__ import annotations

import threading

import pytest

from triage.groupcall import GroupCall


def test_a_caller_alone_pays_exactly_one_call() -> None:
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(items)
        return [i * 10 for i in items]

    group: GroupCall[int, int] = GroupCall(run)
    assert group.submit([1, 2]) == [10, 20]
    assert group.submit([3]) == [30]
    assert calls == [[1, 2], [3]]


def test_callers_queued_behind_a_running_call_share_the_next_one_and_get_their_own_results() -> None:
    running, release = threading.Event(), threading.Event()
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            running.set()
            assert release.wait(10)
        return [i * 10 for i in items]

    group: GroupCall[int, int] = GroupCall(run)
    results: dict[int, list[int]] = {}
    first = threading.Thread(target=lambda: results.__setitem__(0, group.submit([0])))
    first.start()
    assert running.wait(10)
    waiting = [
        threading.Thread(target=lambda k=k: results.__setitem__(k, group.submit([k, k + 100]))) for k in (1, 2, 3)
    ]
    for t in waiting:
        t.start()
    while sum(len(items) for items, _ in group._queue) < 6:  # all three queued behind the running call
        threading.Event().wait(0.01)
    release.set()
    for t in [first, *waiting]:
        t.join(10)
    assert results == {0: [0], 1: [10, 1010], 2: [20, 1020], 3: [30, 1030]}
    assert len(calls) == 2 and sorted(calls[1]) == [1, 2, 3, 101, 102, 103]  # one shared call for the three


def test_a_failed_call_fails_every_caller_it_carried() -> None:
    def boom(items: list[int]) -> list[int]:
        raise RuntimeError("chroma is down")

    group: GroupCall[int, int] = GroupCall(boom)
    with pytest.raises(RuntimeError, match="chroma is down"):
        group.submit([1])
    with pytest.raises(RuntimeError):  # and the next caller is not stuck behind it
        group.submit([2])
