"""What rxsse keeps for one application, under one key: the counters, the open streams, the
app-wide stream quota, the final event of a shutdown, the bus and the CORS policy.

The first ``setup(app)`` creates it (and the shutdown hook that ends the open streams);
``rxsse.stream()`` reads it, and says so when an app has none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiohttp import web

from .cors import CORS
from .event import MessageEvent
from .metrics import StreamMetrics

__all__ = [
    "STATE",
    "AppState",
    "OpenStream",
    "Quota",
    "app_state",
    "metrics",
    "open_streams",
    "state_of",
]

logger = logging.getLogger("rxsse.shutdown")


class OpenStream(Protocol):
    """An open stream, as shutdown and the disconnect watch see it."""

    def close(self, final_event: MessageEvent | None = None) -> None:
        """End the stream from the server side (after ``final_event``, if given)."""

    def transport_lost(self) -> bool:
        """Whether the stream's connection is closed or closing."""

    def client_gone(self) -> None:
        """End the stream: its client went away."""


class Quota:
    """A count of open streams against a limit (None: no limit)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"max_streams must be a positive int or None, not {limit!r}")
        self.limit = limit
        self.used = 0

    @property
    def full(self) -> bool:
        """Whether one more stream would exceed the limit."""
        return self.limit is not None and self.used >= self.limit


@dataclass(eq=False)
class AppState:
    """rxsse's state of one application (``app[STATE]``).

    Attributes:
        metrics: the counters of the app's streams.
        streams: the open streams: shutdown ends them, the disconnect watch checks them.
        quota: the streams open at once across the app's ``@sse`` routes.
        final_event: sent to every open stream at shutdown, before it ends.
        bus: the event bus ``setup`` started with the app (if any).
        cors: the CORS policy of the app's rxsse routes (if any).
        cors_resources: the resources that policy covers (every ``setup``'s).
        routes: every route ``setup`` mounted, as :class:`rxsse.contracts.RouteContract`:
            what the API documents describe.
        docs: the documents' settings, once served (:class:`rxsse.Docs`).
    """

    metrics: StreamMetrics = field(default_factory=StreamMetrics)
    streams: set[OpenStream] = field(default_factory=set)
    quota: Quota = field(default_factory=lambda: Quota(None))
    final_event: MessageEvent | None = None
    bus: Any = None
    cors: CORS | None = None
    cors_resources: set[web.Resource] = field(default_factory=set)
    routes: list[Any] = field(default_factory=list)
    docs: Any = None


#: rxsse's one key in an application.
STATE: Final = web.AppKey("rxsse", AppState)


def app_state(app: web.Application) -> AppState:
    """``app``'s rxsse state, created with the shutdown hook that ends the open streams on
    first use (``setup`` does), which must come before the app starts.

    Raises:
        RuntimeError: the app has no state and has started (its signals are frozen).
    """
    state = app.get(STATE)
    if state is None:
        if app.frozen:
            raise RuntimeError(
                "this app has no rxsse state: call rxsse.setup(app) before it starts (rxsse "
                "counts the app's streams and ends them at shutdown)"
            )
        state = app[STATE] = AppState()
        app.on_shutdown.append(_end_open_streams)
    return state


def state_of(request: web.Request) -> AppState:
    """The state of the application serving ``request`` (or of an app it is mounted in).

    Raises:
        RuntimeError: no ``rxsse.setup()`` was called on it.
    """
    state = request.config_dict.get(STATE)
    if state is None:
        raise RuntimeError(
            "rxsse.stream() needs rxsse.setup(app) on its application, before it starts "
            "(rxsse counts the app's streams and ends them at shutdown)"
        )
    return state


def metrics(app: web.Application) -> StreamMetrics:
    """The counters of ``app``'s streams."""
    return app_state(app).metrics


def open_streams(app: web.Application) -> list[Any]:
    """The streams open now in ``app`` (:class:`~rxsse.session.StreamSession` objects)."""
    state = app.get(STATE)
    return list(state.streams) if state is not None else []


async def _end_open_streams(app: web.Application) -> None:
    state = app[STATE]
    streams = list(state.streams)
    if streams:
        logger.info("ending %d open event streams for shutdown", len(streams))
    for stream in streams:
        stream.close(state.final_event)
