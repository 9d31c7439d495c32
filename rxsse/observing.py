"""Observer calls from any thread, handled on the loop's thread.

An Observable may emit on a worker thread (``rx.from_iterable`` on a thread pool, a ``Subject``
fed by threads); a stream's state lives on its event loop. :class:`LoopObserver` takes the calls
on any thread and runs them on the loop's: directly when they already come from it (the usual
case, at no cost), else through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["LoopObserver"]


class LoopObserver:
    """An Rx observer (by its methods) whose calls are handled on its loop's thread, by
    :meth:`_next`, :meth:`_fail` and :meth:`_completed`."""

    __slots__ = ("_thread",)

    def __init__(self) -> None:
        self._thread = threading.get_ident()  # the loop's thread: the one that made it

    def on_next(self, value: Any) -> None:
        """Handle ``value`` on the loop (from any thread)."""
        if threading.get_ident() == self._thread:
            self._next(value)
        else:
            self._loop().call_soon_threadsafe(self._next, value)

    def on_error(self, error: Exception) -> None:
        """Handle a failure on the loop (from any thread)."""
        if threading.get_ident() == self._thread:
            self._fail(error)
        else:
            self._loop().call_soon_threadsafe(self._fail, error)

    def on_completed(self) -> None:
        """Handle completion on the loop (from any thread)."""
        if threading.get_ident() == self._thread:
            self._completed()
        else:
            self._loop().call_soon_threadsafe(self._completed)

    def _loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def _next(self, value: Any) -> None:
        raise NotImplementedError

    def _fail(self, error: BaseException) -> None:
        raise NotImplementedError

    def _completed(self) -> None:
        raise NotImplementedError
