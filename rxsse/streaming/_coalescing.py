"""Coalescing: the frames of a hot source wait a moment, so that many go out in one write.

A writer that wrote less than :data:`WINDOW` ago is hot (its source emits faster than the loop
turns): what it has now waits for the rest of the window, or until :data:`MAX_BYTES` wait, and
a fast source pays one system call for many events instead of one each. A quiet source's frame
goes out at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

WINDOW: Final = 0.001
MAX_BYTES: Final = 32 * 1024


class Coalescer:
    """When one writer (a stream's, or a fan-out's) writes: now, or at the end of its window."""

    __slots__ = ("_deferred", "_loop", "last")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._deferred: asyncio.TimerHandle | None = None
        self.last = 0.0  #: when the last write went out (0: write the next one at once)

    @property
    def holding(self) -> bool:
        """Whether frames wait for the end of a window."""
        return self._deferred is not None

    def hold(self, pending: int, flush: Callable[[], None]) -> bool:
        """Whether ``pending`` bytes should wait (then ``flush`` is called at the end of the
        window); if not, note a write now (see :attr:`last`). (``flush`` is not kept beyond
        the window: the writer that owns this holds no cycle through it.)"""
        now = self._loop.time()
        if now - self.last < WINDOW and pending < MAX_BYTES:
            if self._deferred is None:
                self._deferred = self._loop.call_at(self.last + WINDOW, self._window_over, flush)
            return True
        self.cancel()
        self.last = now
        return False

    def cancel(self) -> None:
        """Forget a scheduled flush."""
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None

    def _window_over(self, flush: Callable[[], None]) -> None:
        self._deferred = None
        self.last = 0.0  # out now
        flush()
