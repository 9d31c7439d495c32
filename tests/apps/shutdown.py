"""A server for the shutdown test: ``GET /idle`` streams that never emit; SIGTERM ends them all
with a final event. ``python -m tests.apps.shutdown PORT GRACE``."""

from __future__ import annotations

import sys

import reactivex as rx
from aiohttp import web

import rxsse
from rxsse import MessageEvent


@rxsse.sse("/idle")
def idle() -> rx.Observable[MessageEvent]:
    return rx.never()


if __name__ == "__main__":
    app = web.Application()
    final = MessageEvent({"reason": "server shutting down"}, type="shutdown", retry=1000)
    rxsse.setup(app, idle, options=rxsse.StreamOptions(shutdown_event=final), metrics="/metrics")
    port, grace = int(sys.argv[1]), float(sys.argv[2])
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=grace)
