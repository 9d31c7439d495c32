"""The scheduler rxsse subscribes with: reactivex's asyncio scheduler, made lean for the case
every source hits once per item (``schedule`` now, e.g. ``rx.range``, ``rx.of``, ``from_``)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from reactivex import abc, typing
from reactivex.scheduler.eventloop import AsyncIOScheduler

__all__ = ["LoopScheduler"]

_TState = TypeVar("_TState")


class LoopScheduler(AsyncIOScheduler):
    """An :class:`AsyncIOScheduler` whose ``schedule`` costs one small object and one loop
    callback, instead of three disposables around the callback. Timed scheduling is
    reactivex's own. Like its base, use it from the loop's thread.

    Example:
        >>> rx.range(3).subscribe(print, scheduler=LoopScheduler(loop))  # doctest: +SKIP
    """

    def schedule(
        self, action: typing.ScheduledAction[_TState], state: _TState | None = None
    ) -> abc.DisposableBase:
        item = _Scheduled(self, action, state)
        item.handle = self._loop.call_soon(item.run)
        return item


class _Scheduled(abc.DisposableBase):
    """One scheduled action: disposing it before it runs cancels it; after, disposes what the
    action returned (as reactivex's own scheduled items do)."""

    __slots__ = ("action", "disposed", "handle", "result", "scheduler", "state")

    def __init__(self, scheduler: LoopScheduler, action: Any, state: Any) -> None:
        self.scheduler = scheduler
        self.action = action
        self.state = state
        self.handle: asyncio.Handle | None = None
        self.result: abc.DisposableBase | None = None
        self.disposed = False

    def run(self) -> None:
        if not self.disposed:
            self.result = self.scheduler.invoke_action(self.action, self.state)

    def dispose(self) -> None:
        self.disposed = True
        if self.handle is not None:
            self.handle.cancel()
        if self.result is not None:
            self.result.dispose()
