"""Named event types, ids and retry, a stream that ends itself, and query parameters that shape it.

``GET /custom-events?tz=Europe/Paris&period=1&limit=100`` sends ``UPDATE`` events (only
``addEventListener("UPDATE", ...)`` sees them, not ``onmessage``) with the time in ``tz``, every
``period`` seconds, ids 0, 1, 2, ... and ends after ``limit`` events. A browser that reconnects
sends ``Last-Event-ID`` and the stream resumes after it; once every event was sent the answer
is 204, which tells the browser to stop reconnecting. ``batch=N`` ends each response after N
events (the browser reconnects after ``retry`` milliseconds and resumes), to show just that.

Run it: ``python -m examples.custom_events`` then
``curl -N 'http://127.0.0.1:8080/custom-events?tz=Asia/Kolkata&period=0.5&limit=5'``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

import reactivex as rx
from aiohttp import web
from pydantic import BaseModel
from reactivex import operators as ops

import rxsse
from examples._params import within
from rxsse import MessageEvent, controller, sse

MAX_LIMIT = 10_000
RETRY_MS = 2_000


class Update(BaseModel):
    """What an ``UPDATE`` event carries."""

    count: int
    dateTime: datetime
    timezone: str


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(name: str) -> ZoneInfo:
    # Only the names of the time zone database: ZoneInfo would also try any path it is given
    # ("A/A/...", "__pycache__"), and fail in ways that are no client's business.
    if name not in _zone_names():
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise rxsse.bad_request(f"unknown time zone {shown!r}", parameter="tz")
    return ZoneInfo(name)


@controller("/custom-events")
class CustomEvents:
    """A bounded, resumable stream of ``UPDATE`` events."""

    @sse(events={"UPDATE": Update})
    def updates(
        self,
        tz: str = "UTC",
        period: float = 1.0,
        limit: int = 100,
        batch: int | None = None,
        retry: int = RETRY_MS,
        last_event_id: int | None = None,
    ) -> rx.Observable[MessageEvent[Update]] | web.Response:
        """``UPDATE`` events with the time in ``tz``, every ``period`` s, ``limit`` of them."""
        zone = _zone(tz)
        within(period, 0.01, 3600, parameter="period", unit="seconds")
        within(limit, 1, MAX_LIMIT, parameter="limit")
        within(retry, 0, 60_000, parameter="retry", unit="milliseconds")
        if batch is not None:
            within(batch, 1, MAX_LIMIT, parameter="batch")
        first = 0
        if last_event_id is not None:
            first = int(within(last_event_id, 0, MAX_LIMIT, parameter="last_event_id")) + 1
        if first >= limit:
            return web.Response(status=204)  # all sent: a browser stops reconnecting on 204

        def update(n: int) -> MessageEvent:  # the n-th event of this connection
            count = first + n
            now = datetime.now(zone).isoformat(timespec="seconds")
            return MessageEvent(
                {"count": count, "dateTime": now, "timezone": tz},
                id=count,
                type="UPDATE",
                retry=retry,
            )

        events = min(limit - first, batch or limit)
        return rx.timer(0.0, period).pipe(
            ops.take(events),  # completing the Observable ends the response
            ops.map(update),
        )


def create_app() -> web.Application:
    """The custom-events example on its own."""
    app = web.Application()
    rxsse.setup(app, CustomEvents())
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "custom events example")
