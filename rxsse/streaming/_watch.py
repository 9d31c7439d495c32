"""Noticing clients that went away from streams that are not writing.

aiohttp does not tell a GET handler that its client left, and a write only fails when it
happens. One timer per loop checks every open stream's transport, so an idle stream is disposed
within :data:`WATCH_INTERVAL` of its client leaving, at no cost per event.

A client that vanished without closing (its machine or network gone) never closes the
connection: :func:`detect_dead_peer` has the kernel give up on it once data (a heartbeat, or a
keepalive probe) stays unacknowledged for the send timeout, which closes the transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # (a back-reference, for types only)
    from ._session import StreamSession

logger = logging.getLogger("rxsse.watch")

#: How often idle transports are checked: bounds how long a silent stream keeps its
#: subscription after its client has gone.
WATCH_INTERVAL: Final = 0.25


class DisconnectWatch:
    """Checks the open streams of the apps on one loop every :data:`WATCH_INTERVAL` while
    there are any. It walks each app's own set of open streams (the one shutdown walks too),
    so a stream is registered in one place."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._registries: list[set[StreamSession]] = []
        self._timer: asyncio.TimerHandle | None = None

    def follow(self, streams: set[StreamSession]) -> None:
        """Check the streams of ``streams`` (an app's open streams), from
        now on while it is not empty; call it when a stream joins it."""
        if not any(known is streams for known in self._registries):
            self._registries.append(streams)
        if self._timer is None:
            self._timer = self._loop.call_later(WATCH_INTERVAL, self._check)

    def _check(self) -> None:
        self._timer = None
        self._registries = [streams for streams in self._registries if streams]  # apps gone idle
        for streams in self._registries:
            lost = [s for s in streams if s.transport_lost()]
            for stream in lost:
                stream.client_gone()
        if any(self._registries):
            self._timer = self._loop.call_later(WATCH_INTERVAL, self._check)


def detect_dead_peer(
    transport: asyncio.BaseTransport | None, timeout: float | None, heartbeat: float | None
) -> None:
    """Have the kernel drop the connection when what it sends stays unacknowledged for
    ``timeout`` seconds (``TCP_USER_TIMEOUT``, Linux), and probe an idle connection after
    ``timeout`` seconds when there is no ``heartbeat`` to do it (TCP keepalive).

    A vanished client is then dropped within ``heartbeat + timeout`` seconds, or about
    ``2 * timeout`` without heartbeat. Where the options do not exist, the system's defaults
    (often many minutes) apply.
    """
    if timeout is None or transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    whole = max(1, round(timeout))
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is not None:
        options.append((socket.IPPROTO_TCP, user_timeout, max(1, round(timeout * 1000))))
    if heartbeat is None:
        for name, value in (("TCP_KEEPIDLE", whole), ("TCP_KEEPINTVL", max(1, whole // 3))):
            number = getattr(socket, name, None)
            if number is not None:
                options.append((socket.IPPROTO_TCP, number, value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError as exc:  # an option this system (or socket) does not have
            logger.debug("cannot set TCP option %s on a stream's socket: %s", option, exc)
