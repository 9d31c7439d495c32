"""An interval stream: ``GET /ticks`` sends ``{count, timestamp}`` every ``period`` seconds.

Run it: ``python -m examples.ticks`` then ``curl -N http://127.0.0.1:8080/ticks?period=0.5``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import reactivex as rx
from aiohttp import web
from pydantic import BaseModel
from reactivex import operators as ops

import rxsse
from examples._params import within
from rxsse import MessageEvent, controller, sse


class Tick(BaseModel):
    """What each tick carries."""

    count: int
    timestamp: datetime


def tick(count: int) -> MessageEvent[Tick]:
    """The event for the ``count``-th tick, stamped with the current UTC time."""
    now = datetime.now(UTC)
    return MessageEvent(Tick(count=count, timestamp=now))


@controller("/ticks")
class Ticks:
    """One stream: a tick now, then one every ``period`` seconds, forever."""

    @sse()
    def ticks(self, period: float = 1.0) -> rx.Observable[MessageEvent[Tick]]:
        """A tick now, then one every ``period`` seconds."""
        within(period, 0.01, 3600, parameter="period", unit="seconds")
        # No scheduler given: rxsse subscribes with the request's event loop scheduler.
        return rx.timer(0.0, period).pipe(ops.map(tick))


def create_app() -> web.Application:
    """The ticks example on its own."""
    app = web.Application()
    rxsse.setup(app, Ticks())
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "ticks example")
