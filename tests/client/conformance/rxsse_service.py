"""The conformance test service for rxsse's ``EventSource`` (the protocol: ``harness.py``).

Run it on its own with ``python -m tests.client.conformance.rxsse_service 8000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from typing import Any

import aiohttp
from aiohttp import web

from rxsse import EventSource, EventSourceError

CAPABILITIES = [
    "comments",
    "headers",
    "last-event-id",
    "post",
    "report",
    "read-timeout",
    "restart",
    "bom",
    "redirect",
]


class Client:
    """One EventSource, its events posted to the harness's callback URL."""

    def __init__(self, source: EventSource, callback_url: str, session: aiohttp.ClientSession):
        self.source = source
        self.callback_url = callback_url.rstrip("/")
        self.session = session
        self._numbers = itertools.count(1)
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.source:
                if event.comment is not None:
                    await self._post({"kind": "comment", "comment": event.comment})
                else:
                    message = {"type": event.type, "data": event.data, "id": event.id}
                    await self._post({"kind": "event", "event": message})
        except EventSourceError as exc:
            await self._post({"kind": "error", "comment": str(exc)})

    async def _post(self, message: dict[str, Any]) -> None:
        url = f"{self.callback_url}/{next(self._numbers)}"
        async with self.session.post(url, json=message):
            pass

    async def close(self) -> None:
        await self.source.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def create_app() -> web.Application:
    """The test service: ``GET /``, ``POST /``, ``POST /clients/{n}``, ``DELETE /clients/{n}``."""
    clients: dict[str, Client] = {}
    numbers = itertools.count(1)
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"name": "rxsse", "capabilities": CAPABILITIES})

    async def create(request: web.Request) -> web.Response:
        options = await request.json()
        timeout = options.get("readTimeoutMs")
        source = EventSource(
            options["streamUrl"],
            method=options.get("method") or "GET",
            headers=options.get("headers"),
            body=options.get("body"),
            comments=True,
            last_event_id=options.get("lastEventId"),
            retry=(options.get("initialDelayMs") or 0) / 1000,
            read_timeout=None if timeout is None else timeout / 1000,
        )
        number = str(next(numbers))
        clients[number] = Client(source, options["callbackUrl"], request.app[session_key])
        return web.Response(status=201, headers={"Location": f"/clients/{number}"})

    async def command(request: web.Request) -> web.Response:
        client = clients.get(request.match_info["n"])
        if client is None:
            raise web.HTTPNotFound
        if (await request.json()).get("command") != "restart":
            raise web.HTTPBadRequest
        client.source.restart()
        return web.Response(status=204)

    async def delete(request: web.Request) -> web.Response:
        client = clients.pop(request.match_info["n"], None)
        if client is None:
            raise web.HTTPNotFound
        await client.close()
        return web.Response(status=204)

    async def session(app: web.Application) -> Any:
        app[session_key] = aiohttp.ClientSession()
        yield
        for client in list(clients.values()):
            await client.close()
        await app[session_key].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_get("/", status)
    app.router.add_post("/", create)
    app.router.add_post("/clients/{n}", command)
    app.router.add_delete("/clients/{n}", delete)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]) if sys.argv[1:] else 8000)
