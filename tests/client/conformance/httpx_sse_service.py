"""The conformance test service (protocol: ``harness.py``) for httpx-sse, measured beside rxsse.

httpx-sse reads one response: it does not reconnect, so the service does not either (the
reconnection cases measure that). Its request is httpx's, so method, body, headers and a read
timeout can be set; it has no API for comments or a restart.
Run it with ``python -m tests.client.conformance.httpx_sse_service 8001``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from typing import Any

import httpx
from aiohttp import web
from httpx_sse import aconnect_sse

CAPABILITIES = ["headers", "last-event-id", "post", "report", "read-timeout", "bom", "redirect"]


async def _read(options: dict[str, Any], client: httpx.AsyncClient) -> None:
    numbers = itertools.count(1)

    async def post(message: dict[str, Any]) -> None:
        await client.post(f"{options['callbackUrl']}/{next(numbers)}", json=message)

    headers = dict(options.get("headers") or {})
    if options.get("lastEventId"):
        headers["Last-Event-ID"] = options["lastEventId"]
    timeout = options.get("readTimeoutMs")
    try:
        async with aconnect_sse(
            client,
            options.get("method") or "GET",
            options["streamUrl"],
            headers=headers,
            content=options.get("body"),
            timeout=httpx.Timeout(5, read=None if timeout is None else timeout / 1000),
        ) as source:
            async for event in source.aiter_sse():
                message = {"type": event.event, "data": event.data, "id": event.id}
                await post({"kind": "event", "event": message})
    except httpx.HTTPError as exc:
        await post({"kind": "error", "comment": repr(exc)})


def create_app() -> web.Application:
    """The test service: ``GET /``, ``POST /``, ``DELETE /clients/{n}``."""
    tasks: dict[str, asyncio.Task[None]] = {}
    numbers = itertools.count(1)
    client_key = web.AppKey("client", httpx.AsyncClient)

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"name": "httpx-sse", "capabilities": CAPABILITIES})

    async def create(request: web.Request) -> web.Response:
        options = await request.json()
        number = str(next(numbers))
        tasks[number] = asyncio.ensure_future(_read(options, request.app[client_key]))
        return web.Response(status=201, headers={"Location": f"/clients/{number}"})

    async def delete(request: web.Request) -> web.Response:
        task = tasks.pop(request.match_info["n"], None)
        if task is None:
            raise web.HTTPNotFound
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return web.Response(status=204)

    async def command(request: web.Request) -> web.Response:
        raise web.HTTPBadRequest  # no restart in httpx-sse's API

    async def client(app: web.Application) -> Any:
        app[client_key] = httpx.AsyncClient(follow_redirects=True)
        yield
        for task in tasks.values():
            task.cancel()
        await app[client_key].aclose()

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.router.add_get("/", status)
    app.router.add_post("/", create)
    app.router.add_post("/clients/{n}", command)
    app.router.add_delete("/clients/{n}", delete)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]) if sys.argv[1:] else 8001)
