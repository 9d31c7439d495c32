"""The scheduler rxsse subscribes with: reactivex's asyncio scheduler, made lean for the case
every source hits once per item (``schedule`` now, e.g. ``rx.range``, ``rx.of``, ``from_``),
and free of reference cycles, so that an ended stream is freed by reference counting alone
(its transport, request and buffers with it), not at the next run of the cyclic GC."""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Final, TypeVar

from reactivex import abc, typing
from reactivex.scheduler.eventloop import AsyncIOScheduler

_TState = TypeVar("_TState")

# Actions scheduled "now" run in batches of at most this many per loop iteration: a source that
# schedules its next item from the current one (``rx.range``) pays one iteration (one poll of
# the selector) per batch, not per item, and still lets the loop serve others in between.
_BATCH: Final = 16


class LoopScheduler(AsyncIOScheduler):
    """An :class:`AsyncIOScheduler` whose scheduled work costs one small object and one loop
    callback, instead of three disposables and closures around the callback, and which keeps
    nothing alive once disposed (reactivex's periodic scheduling is a closure that refers to
    itself). Like its base, use it from the loop's thread.

    Actions due now run in order, in batches of up to :data:`_BATCH` per loop iteration.

    Example:
        >>> rx.range(3).subscribe(print, scheduler=LoopScheduler(loop))  # doctest: +SKIP
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._ready: collections.deque[_Scheduled] = collections.deque()
        self._draining: asyncio.Handle | None = None

    def schedule(
        self, action: typing.ScheduledAction[_TState], state: _TState | None = None
    ) -> abc.DisposableBase:
        item = _Scheduled(self, action, state, None)
        self._ready.append(item)
        if self._draining is None:
            self._draining = self._loop.call_soon(self._drain)
        return item

    def schedule_relative(
        self,
        duetime: typing.RelativeTime,
        action: typing.ScheduledAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        return _Scheduled(self, action, state, self.to_seconds(duetime))

    def schedule_periodic(
        self,
        period: typing.RelativeTime,
        action: typing.ScheduledPeriodicAction[_TState],
        state: _TState | None = None,
    ) -> abc.DisposableBase:
        return _Periodic(self, action, state, self.to_seconds(period))

    def _drain(self) -> None:
        self._draining = None
        ready = self._ready
        for _ in range(_BATCH):
            if not ready:
                return
            try:
                ready.popleft().run()
            except Exception as exc:  # as the loop treats a callback that raised
                self._loop.call_exception_handler(
                    {"message": "a scheduled action failed", "exception": exc}
                )
        if ready:
            self._draining = self._loop.call_soon(self._drain)


class _Scheduled(abc.DisposableBase):
    """One scheduled action: disposing it before it runs cancels it; after, disposes what the
    action returned (as reactivex's own scheduled items do). It lets go of the action once it
    has run, and of everything once disposed."""

    __slots__ = ("action", "disposed", "handle", "result", "scheduler", "state")

    def __init__(
        self, scheduler: LoopScheduler, action: Any, state: Any, delay: float | None
    ) -> None:
        self.scheduler = scheduler
        self.action = action
        self.state = state
        self.result: abc.DisposableBase | None = None
        self.disposed = False
        loop = scheduler._loop
        # (None: in the scheduler's queue of actions due now, which runs it.)
        self.handle: asyncio.Handle | None = (
            None
            if delay is None
            else loop.call_soon(self.run)
            if delay <= 0
            else loop.call_later(delay, self.run)
        )

    def run(self) -> None:
        self.handle = None  # the loop is done with it: no cycle through its callback
        action, state = self.action, self.state
        self.action = self.state = None
        if not self.disposed:
            result = self.scheduler.invoke_action(action, state)
            if self.disposed:  # the action disposed of this very item: its result goes too
                result.dispose()
            else:
                self.result = result

    def dispose(self) -> None:
        self.disposed = True
        if self.handle is not None:
            self.handle.cancel()  # which drops its callback: nothing refers back here
            self.handle = None
        self.action = self.state = None
        result, self.result = self.result, None
        if result is not None:
            result.dispose()


class _Periodic(abc.DisposableBase):
    """A periodic action: a timer set again after each run, as long as it is not disposed;
    the next run is one period after the previous one was due, so it does not drift."""

    __slots__ = ("action", "due", "handle", "loop", "period", "scheduler", "state")

    def __init__(self, scheduler: LoopScheduler, action: Any, state: Any, period: float) -> None:
        self.scheduler = scheduler
        self.action = action
        self.state = state
        self.period = period
        self.loop = scheduler._loop
        self.due = self.loop.time() + period
        self.handle: asyncio.TimerHandle | None = self.loop.call_at(self.due, self.run)

    def run(self) -> None:
        self.handle = None
        action = self.action
        if action is None:
            return
        try:
            state = action(self.state)
        except Exception:
            self.dispose()
            raise
        if self.action is not None:  # not disposed by the action itself
            self.state = state
            self.due = max(self.due + self.period, self.loop.time())
            self.handle = self.loop.call_at(self.due, self.run)

    def dispose(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.action = self.state = None
