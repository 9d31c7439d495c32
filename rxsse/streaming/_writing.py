"""Writing frames to aiohttp responses without a coroutine or task per event.

Sessions queue their frames; one callback per loop iteration (:class:`Flusher`) writes each
session's queue with a single ``write``. A write is driven by hand (:func:`write_now`): it
almost always completes at once, since aiohttp only waits when the transport is above its
high-water mark; only then does a task finish it, so a slow client costs a task while it is slow
and nothing otherwise.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from aiohttp import web

from ._eager import Waiting, first_step

_T = TypeVar("_T")


class PerLoop(Generic[_T]):
    """One ``factory(loop)`` object per event loop, created on first use, gone with the loop."""

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], _T]) -> None:
        self._factory = factory
        self._items: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> _T:
        """The running loop's object."""
        return self.of(asyncio.get_running_loop())

    def of(self, loop: asyncio.AbstractEventLoop) -> _T:
        """``loop``'s object (from anywhere, e.g. a coroutine closed after its loop stopped)."""
        item = self._items.get(loop)
        if item is None:
            item = self._items[loop] = self._factory(loop)
        return item


def write_now(response: web.StreamResponse, data: bytes) -> asyncio.Task[None] | None:
    """Write ``data`` at once; return None when done, or the task that finishes a write
    waiting for the transport to drain.

    Raises:
        ConnectionError: the client is gone.
    """
    step = first_step(response.write(data))
    if isinstance(step, Waiting):
        return asyncio.get_running_loop().create_task(step.finish())
    return None


class _Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """Calls ``flush()`` on every session that queued frames, once per loop iteration: all the
    frames a session got during one iteration go out in one write, and a broadcast to
    thousands of sessions costs one callback, not one per session."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queued: list[_Flushable] = []
        self._handle: asyncio.Handle | None = None

    def add(self, session: _Flushable) -> None:
        self._queued.append(session)
        if self._handle is None:
            self._handle = self._loop.call_soon(self._flush_all)

    def _flush_all(self) -> None:
        self._handle = None
        queued, self._queued = self._queued, []
        for session in queued:
            session.flush()
