"""Every example in one app, with a page that shows each stream live: ``make demo``.

Serves http://127.0.0.1:8080/ (plain JavaScript ``EventSource``, no build step), and the API's
documents and stream explorer at http://127.0.0.1:8080/docs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

import rxsse
from examples.chat import Chat
from examples.custom_events import CustomEvents
from examples.notifications import Notifications
from examples.progress import Tasks
from examples.ticks import Ticks
from rxsse import Docs, EventBus

PAGE = Path(__file__).with_name("static") / "index.html"


async def index(request: web.Request) -> web.FileResponse:
    """The demo page."""
    return web.FileResponse(PAGE)


def create_app(bus: EventBus | None = None, **options: Any) -> web.Application:
    """Ticks, custom events, notifications, progress and the chat, plus the pages at ``/``
    and ``/chat``.

    Notifications and progress travel on ``bus`` (an in-memory one by default; the cluster
    example passes one on Redis); ``options`` are the streams' (``rxsse.StreamOptions``)."""
    bus = bus or EventBus(history=10_000)  # (a chat answer's tokens, each one logged)
    app = web.Application()
    app.router.add_get("/", index)
    controllers = (Ticks(), CustomEvents(), Notifications(), Tasks(bus), Chat(bus))
    docs = Docs(title="rxsse demo", description="Every rxsse example in one app.")
    defaults = rxsse.StreamOptions(**{"heartbeat": 15.0, **options})
    rxsse.setup(app, *controllers, bus=bus, options=defaults, docs=docs)
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "rxsse demo")
