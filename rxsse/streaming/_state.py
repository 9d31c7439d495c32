"""What the streaming layer keeps for one application, under one key: the open streams, their
counters and the app-wide stream quota.

The first ``setup(app)`` creates it (and the shutdown hook that ends the open streams);
``rxsse.stream()`` reads it, and says so when an app has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from aiohttp import web

from .._checks import check_count
from ._metrics import StreamMetrics

if TYPE_CHECKING:  # (the sessions register here: a back-reference, for types only)
    from ._session import StreamSession

logger = logging.getLogger("rxsse.shutdown")


class Quota:
    """A count of open streams against a limit (None: no limit)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None) -> None:
        self.limit = check_count("max_streams", limit, optional=True)
        self.used = 0

    @property
    def full(self) -> bool:
        """Whether one more stream would exceed the limit."""
        return self.limit is not None and self.used >= self.limit


@dataclass(eq=False)
class AppStreams:
    """The streams of one application (``app[STREAMS]``).

    Attributes:
        metrics: the counters of the app's streams.
        streams: the open streams: shutdown ends them, the disconnect watch checks them.
        quota: the streams open at once across the app's ``@sse`` routes.
    """

    metrics: StreamMetrics = field(default_factory=StreamMetrics)
    streams: set[StreamSession] = field(default_factory=set)
    quota: Quota = field(default_factory=lambda: Quota(None))


#: The streaming layer's key in an application.
STREAMS: Final = web.AppKey("rxsse.streams", AppStreams)


def app_streams(app: web.Application) -> AppStreams:
    """``app``'s streams, created with the shutdown hook that ends the open streams on
    first use (``setup`` does), which must come before the app starts.

    Raises:
        RuntimeError: the app has no state and has started (its signals are frozen).
    """
    state = app.get(STREAMS)
    if state is None:
        if app.frozen:
            raise RuntimeError(
                "this app has no rxsse state: call rxsse.setup(app) before it starts (rxsse "
                "counts the app's streams and ends them at shutdown)"
            )
        state = app[STREAMS] = AppStreams()
        app.on_shutdown.append(_end_open_streams)
    return state


def streams_of(request: web.Request) -> AppStreams:
    """The streams of the application serving ``request`` (or of an app it is mounted in).

    Raises:
        RuntimeError: no ``rxsse.setup()`` was called on it.
    """
    state = request.config_dict.get(STREAMS)
    if state is None:
        raise RuntimeError(
            "rxsse.stream() needs rxsse.setup(app) on its application, before it starts "
            "(rxsse counts the app's streams and ends them at shutdown)"
        )
    return state


def metrics(app: web.Application) -> StreamMetrics:
    """The counters of ``app``'s streams."""
    return app_streams(app).metrics


def open_streams(app: web.Application) -> list[StreamSession]:
    """The streams open now in ``app`` (:class:`~rxsse.StreamSession` objects)."""
    state = app.get(STREAMS)
    return list(state.streams) if state is not None else []


async def _end_open_streams(app: web.Application) -> None:
    state = app[STREAMS]
    streams = list(state.streams)
    if streams:
        logger.info("ending %d open event streams for shutdown", len(streams))
    for stream in streams:
        stream.close()  # (after its own shutdown_event, if it has one)
