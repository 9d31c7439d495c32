"""Observer calls from any thread, handled on the loop's thread.

An Observable may emit on a worker thread (``rx.from_iterable`` on a thread pool, a ``Subject``
fed by threads); a stream's state lives on its event loop. :class:`LoopObserver` takes the calls
on any thread and runs them on the loop's: directly when they already come from it (the usual
case, at no cost), else through the loop's :class:`Inbox`, which hops to the loop once per
batch of calls rather than once per call (each hop writes to the loop's wake-up pipe: a system
call per event per stream).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from ._writing import PerLoop

logger = logging.getLogger("rxsse.stream")


class Inbox:
    """Calls from other threads for one loop, in the order they came, run in one callback per
    batch on the loop."""

    __slots__ = ("_calls", "_loop", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._calls: collections.deque[tuple[Callable[[Any], None], Any]] = collections.deque()
        self._scheduled = False

    def put(self, call: Callable[[Any], None], argument: Any) -> None:
        """Run ``call(argument)`` on the loop, after every call put before it (any thread)."""
        self._calls.append((call, argument))  # (a deque's append is safe from any thread)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        # Cleared before the calls are taken: a call put meanwhile either is taken below or
        # schedules another run. Never a call left behind.
        self._scheduled = False
        calls = self._calls
        while calls:
            call, argument = calls.popleft()
            try:
                call(argument)
            except Exception:  # one observer's bug must not strand the calls behind it
                logger.exception("an observer call from another thread failed")


#: The inbox of a loop; made on the loop's thread (see LoopObserver.__init__).
inbox_of = PerLoop(Inbox).of


class LoopObserver:
    """An Rx observer (by its methods) whose calls are handled on its loop's thread, by
    :meth:`_next`, :meth:`_fail` and :meth:`_completed`."""

    __slots__ = ("_thread",)

    def __init__(self) -> None:
        self._thread = threading.get_ident()  # the loop's thread: the one that made it
        inbox_of(self._loop())  # made here, on the loop's thread, before any other needs it

    def on_next(self, value: Any) -> None:
        """Handle ``value`` on the loop (from any thread)."""
        if threading.get_ident() == self._thread:
            self._next(value)
        else:
            inbox_of(self._loop()).put(self._next, value)

    def on_error(self, error: Exception) -> None:
        """Handle a failure on the loop (from any thread)."""
        if threading.get_ident() == self._thread:
            self._fail(error)
        else:
            inbox_of(self._loop()).put(self._fail, error)

    def on_completed(self) -> None:
        """Handle completion on the loop (from any thread)."""
        if threading.get_ident() == self._thread:
            self._completed()
        else:
            inbox_of(self._loop()).put(_complete, self)

    def _loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def _next(self, value: Any) -> None:
        raise NotImplementedError

    def _fail(self, error: BaseException) -> None:
        raise NotImplementedError

    def _completed(self) -> None:
        raise NotImplementedError


def _complete(observer: LoopObserver) -> None:
    observer._completed()
