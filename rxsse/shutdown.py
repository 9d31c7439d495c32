"""The app's open streams, so that shutdown can end them all (with an optional final event)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from aiohttp import web

from .event import MessageEvent
from .metrics import metrics

if TYPE_CHECKING:
    from .stream import StreamSession

__all__ = ["OPEN_STREAMS", "install_shutdown", "open_streams"]

logger = logging.getLogger(__name__)

#: The open streams of an app. A plain set, not a weak one (a weak reference and its callback
#: cost a stream a few hundred bytes): a stream leaves it when its handler returns.
OPEN_STREAMS: Final = web.AppKey["set[StreamSession]"]("rxsse.open_streams")
_FINAL_EVENT: Final = web.AppKey("rxsse.final_event", MessageEvent)


def install_shutdown(app: web.Application, *, final_event: MessageEvent | None = None) -> None:
    """Track the app's open streams and end them all when the app shuts down, each with
    ``final_event`` first if one is given (idempotent)."""
    if final_event is not None:
        app[_FINAL_EVENT] = final_event
    if OPEN_STREAMS in app:
        return
    app[OPEN_STREAMS] = set()
    metrics(app)  # the counters live in the app from the start
    app.on_shutdown.append(_close_open_streams)


def open_streams(app: web.Application) -> list[StreamSession]:
    """The streams currently open in ``app`` (needs :func:`install_shutdown` or ``setup``)."""
    return list(app.get(OPEN_STREAMS, ()))


async def _close_open_streams(app: web.Application) -> None:
    sessions = open_streams(app)
    if sessions:
        logger.info("ending %d open event streams for shutdown", len(sessions))
    final_event = app.get(_FINAL_EVENT)
    for session in sessions:
        session.close(final_event)
