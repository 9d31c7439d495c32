"""Noticing clients that went away from streams that are not writing.

aiohttp does not tell a GET handler that its client left, and a write only fails when it
happens. One timer per loop checks every open stream's transport, so an idle stream is disposed
within :data:`WATCH_INTERVAL` of its client leaving, at no cost per event.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

__all__ = ["WATCH_INTERVAL", "DisconnectWatch", "Watched"]

#: How often idle transports are checked: bounds how long a silent stream keeps its
#: subscription after its client has gone.
WATCH_INTERVAL: Final = 0.25


class Watched(Protocol):
    """A stream the watch can check."""

    def transport_lost(self) -> bool:
        """Whether the stream's connection is closed or closing."""

    def client_gone(self) -> None:
        """End the stream: its client went away."""


class DisconnectWatch:
    """The streams of one loop, checked every :data:`WATCH_INTERVAL` while there are any."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._streams: set[Watched] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, stream: Watched) -> None:
        self._streams.add(stream)
        if self._timer is None:
            self._timer = self._loop.call_later(WATCH_INTERVAL, self._check)

    def discard(self, stream: Watched) -> None:
        self._streams.discard(stream)

    def _check(self) -> None:
        self._timer = None
        for stream in [s for s in self._streams if s.transport_lost()]:
            stream.client_gone()
        if self._streams:
            self._timer = self._loop.call_later(WATCH_INTERVAL, self._check)
