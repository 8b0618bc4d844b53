"""Group commit for writes with a high fixed cost (an approval's Chroma upsert)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCall(Generic[T, R]):
    """Callers hand items to `submit` and get `run`'s results for them; concurrent callers share one
    `run` call. For work with a high fixed cost per call (an fsync'd Chroma upsert):
    under load one call carries everything that queued up while the previous one ran, and a caller
    alone pays exactly one call, as before. `run` must return one result per item, in order.
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R]]) -> None:
        self._run = run
        self._queue: list[tuple[list[T], Future[list[R]]]] = []
        self._cond = threading.Condition()
        self._running = False

    def submit(self, items: Sequence[T]) -> list[R]:
        done: Future[list[R]] = Future()
        with self._cond:
            self._queue.append((list(items), done))
            while self._running and not done.done():
                self._cond.wait()
            if done.done():  # a run that started after we queued carried our items
                return done.result()
            self._running = True  # we run everything queued so far, ours included
            batch, self._queue = self._queue, []
        try:
            results = list(self._run([item for items, _ in batch for item in items]))
        except BaseException as exc:
            for _, f in batch:
                f.set_exception(exc)
        else:
            start = 0
            for items, f in batch:
                f.set_result(results[start : start + len(items)])
                start += len(items)
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()
        return done.result()
