"""A server for the churn test: ``GET /events`` streams the bus (resuming from Last-Event-ID);
``GET /stats`` reports live bus subscriptions and open streams; ``GET /objects`` the objects the
garbage collector tracks, after a collection.
``python -m tests.apps.churn PORT``"""

from __future__ import annotations

import gc
import sys

import reactivex as rx
from aiohttp import web

import rxsse
from rxsse import EventBus, MessageEvent

bus = EventBus()


@rxsse.sse("/events")
def events(last_event_id: str | None = None) -> rx.Observable[MessageEvent]:
    return bus.on("churn", last_event_id=last_event_id)


@rxsse.get("/stats")
def stats(request: web.Request) -> dict[str, int]:
    return {"bus": bus.live_subscriptions, "open": rxsse.metrics(request.app).open_streams}


@rxsse.get("/objects")
def objects() -> dict[str, int]:
    gc.collect()
    return {"objects": len(gc.get_objects())}


@rxsse.post("/emit")
def emit() -> dict[str, str]:
    return {"id": str(bus.emit("churn", {"x": 1}))}


if __name__ == "__main__":
    app = web.Application()
    rxsse.setup(app, events, stats, objects, emit, bus=bus)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
