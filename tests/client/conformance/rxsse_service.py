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
    "errors",
    "stop",
]


class Client:
    """One EventSource, its events and connection errors (``on_error``) posted to the harness's
    callback URL, numbered in the order they happened."""

    def __init__(self, options: dict[str, Any], session: aiohttp.ClientSession):
        timeout = options.get("readTimeoutMs")
        self.source = EventSource(
            options["streamUrl"],
            method=options.get("method") or "GET",
            headers=options.get("headers"),
            body=options.get("body"),
            comments=True,
            last_event_id=options.get("lastEventId"),
            retry=(options.get("initialDelayMs") or 0) / 1000,
            read_timeout=None if timeout is None else timeout / 1000,
            on_error=lambda error: self._report({"kind": "error", "comment": str(error)}),
        )
        self.callback_url = options["callbackUrl"].rstrip("/")
        self.session = session
        self._numbers = itertools.count(1)
        self._posts: set[asyncio.Task[None]] = set()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(EventSourceError):  # (reported by on_error)
            async for event in self.source:
                if event.comment is not None:
                    self._report({"kind": "comment", "comment": event.comment})
                else:
                    message = {"type": event.type, "data": event.data, "id": event.id}
                    self._report({"kind": "event", "event": message})
            if self.source.state == "closed" and self.source.last_error is None:
                self._report({"kind": "end"})  # it stopped of itself (a 204)

    def _report(self, message: dict[str, Any]) -> None:
        """Post ``message`` as the next callback (numbered now: the harness orders them)."""
        task = asyncio.ensure_future(self._post(next(self._numbers), message))
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    async def _post(self, number: int, message: dict[str, Any]) -> None:
        async with self.session.post(f"{self.callback_url}/{number}", json=message):
            pass

    async def close(self) -> None:
        await self.source.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for task in list(self._posts):  # (late ones: the harness drops them anyway)
            task.cancel()


def create_app() -> web.Application:
    """The test service: ``GET /``, ``POST /``, ``POST /clients/{n}``, ``DELETE /clients/{n}``."""
    clients: dict[str, Client] = {}
    numbers = itertools.count(1)
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"name": "rxsse", "capabilities": CAPABILITIES})

    async def create(request: web.Request) -> web.Response:
        options = await request.json()
        number = str(next(numbers))
        clients[number] = Client(options, request.app[session_key])
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
