"""The servers the benchmark compares, each with the same endpoints:

- ``GET /single?n=N``: one stream of N small JSON events, as fast as the server makes them;
- ``GET /broadcast``: join the broadcast;
- ``GET /stats``: ``{"subscribers": k}``;
- ``POST /emit?n=N&interval=S``: emit N broadcast events, S seconds apart; answers the
  ``time.monotonic()`` of each emit (the load client, on the same machine, compares).

Kinds: ``rxsse``; ``raw``, the limit: aiohttp doing what rxsse does with nothing else, that
is pre-encoded frames, everything emitted during one loop iteration joined once and written to
every client in one write (a chunk framed once for all); ``raw-per-write``, aiohttp writing each
event to each response on its own (a weak baseline, kept as a labelled row); ``aiohttp-sse`` and
``sse-starlette`` (on uvicorn). Every frame ends in a blank line written as ``\\n\\n``.
Run one: ``python -m bench.servers KIND PORT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bench.common import SERVER_CORE, pin
from rxsse import use_uvloop

FIELDS = {"user": "ann", "ok": True}


def event_json(n: int) -> str:
    return json.dumps({"n": n, **FIELDS}, separators=(",", ":"))


def emit_params(query: Any) -> tuple[int, float]:
    return int(query["n"]), float(query.get("interval", "0"))


async def pace(count: int, interval: float, emit_one: Any) -> list[float]:
    """Call ``emit_one(k)`` for k in range(count), ``interval`` apart; the times of each."""
    times = []
    for k in range(count):
        times.append(time.monotonic())
        result = emit_one(k)
        if asyncio.iscoroutine(result):
            await result
        if interval:
            await asyncio.sleep(interval)
    return times


def rxsse_app() -> web.Application:
    import reactivex as rx
    from reactivex import operators as ops
    from reactivex.subject import Subject

    import rxsse
    from rxsse import MessageEvent

    subject: Subject[MessageEvent] = Subject()

    async def single(request: web.Request) -> web.StreamResponse:
        n = int(request.query["n"])
        source = rx.range(n).pipe(ops.map(lambda i: MessageEvent({"n": i, **FIELDS})))
        return await rxsse.stream(request, source, heartbeat=None)

    async def broadcast(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, subject, heartbeat=None)

    async def emit(request: web.Request) -> web.Response:
        count, interval = emit_params(request.query)
        times = await pace(
            count, interval, lambda k: subject.on_next(MessageEvent({"n": k, **FIELDS}))
        )
        return web.json_response(times)

    async def emit_from_threads(request: web.Request) -> web.Response:
        """``threads`` threads each emit ``n`` events into the subject, all at once."""
        threads, count = int(request.query["threads"]), int(request.query["n"])
        event = MessageEvent({"n": 0, **FIELDS})

        def produce() -> None:
            for _ in range(count):
                subject.on_next(event)

        workers = [threading.Thread(target=produce) for _ in range(threads)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        return web.json_response({"started": started})

    app = _aiohttp_app(single, broadcast, emit, lambda: len(rxsse.open_streams(app)), rxsse.setup)
    app.router.add_post("/emit-threads", emit_from_threads)
    return app


def raw_app() -> web.Application:
    """The limit: the least an aiohttp server can do per delivery."""
    transports: set[asyncio.Transport] = set()
    pending: list[bytes] = []
    scheduled: list[asyncio.Handle] = []

    def flush() -> None:
        scheduled.clear()
        data = b"".join(pending)
        pending.clear()
        chunk = b"%x\r\n%s\r\n" % (len(data), data)  # chunked framing, once for every client
        for transport in list(transports):
            if transport.is_closing():
                transports.discard(transport)
            else:
                transport.write(chunk)

    def emit_one(k: int) -> None:
        pending.append(f"data: {event_json(k)}\n\n".encode())
        if not scheduled:
            scheduled.append(asyncio.get_running_loop().call_soon(flush))

    async def broadcast(request: web.Request) -> web.StreamResponse:
        return await _held_open(request, transports, lambda response: request.transport)

    async def emit(request: web.Request) -> web.Response:
        count, interval = emit_params(request.query)
        return web.json_response(await pace(count, interval, emit_one))

    return _aiohttp_app(_raw_single(), broadcast, emit, lambda: len(transports), None)


RAW_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def _held_open(
    request: web.Request, followers: set[Any], follower: Callable[[web.StreamResponse], Any]
) -> web.StreamResponse:
    """A raw broadcast response: its ``follower(response)`` is in ``followers`` while open."""
    response = web.StreamResponse(headers=RAW_HEADERS)
    await response.prepare(request)
    member = follower(response)
    followers.add(member)
    try:
        await asyncio.Event().wait()  # until the benchmark stops the server
    finally:
        followers.discard(member)
    return response


def _raw_single() -> Any:
    encoded: dict[int, list[bytes]] = {}

    async def single(request: web.Request) -> web.StreamResponse:
        n = int(request.query["n"])
        if n not in encoded:  # pre-encoded once, outside the measured requests after the first
            encoded[n] = [f"data: {event_json(i)}\n\n".encode() for i in range(n)]
        frames = encoded[n]
        response = web.StreamResponse(headers=RAW_HEADERS)
        await response.prepare(request)
        for start in range(0, n, 256):
            await response.write(b"".join(frames[start : start + 256]))
        await response.write_eof()
        return response

    return single


def raw_per_write_app() -> web.Application:
    """A weak baseline: every event written to every response on its own."""
    responses: set[web.StreamResponse] = set()

    async def broadcast(request: web.Request) -> web.StreamResponse:
        return await _held_open(request, responses, lambda response: response)

    async def emit(request: web.Request) -> web.Response:
        count, interval = emit_params(request.query)

        async def emit_one(k: int) -> None:
            frame = f"data: {event_json(k)}\n\n".encode()
            for response in list(responses):
                try:
                    await response.write(frame)
                except ConnectionError:
                    responses.discard(response)

        return web.json_response(await pace(count, interval, emit_one))

    return _aiohttp_app(_raw_single(), broadcast, emit, lambda: len(responses), None)


def aiohttp_sse_app() -> web.Application:
    from aiohttp_sse import sse_response

    queues: set[asyncio.Queue[str]] = set()

    async def single(request: web.Request) -> web.StreamResponse:
        n = int(request.query["n"])
        async with sse_response(request, sep="\n", ping_interval=3600) as response:
            for i in range(n):
                await response.send(event_json(i))
        return response

    async def broadcast(request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[str] = asyncio.Queue()
        queues.add(queue)
        try:
            async with sse_response(request, sep="\n", ping_interval=3600) as response:
                while True:
                    await response.send(await queue.get())
        finally:
            queues.discard(queue)

    async def emit(request: web.Request) -> web.Response:
        count, interval = emit_params(request.query)

        def emit_one(k: int) -> None:
            data = event_json(k)
            for queue in list(queues):
                queue.put_nowait(data)

        return web.json_response(await pace(count, interval, emit_one))

    return _aiohttp_app(single, broadcast, emit, lambda: len(queues), None)


def _aiohttp_app(single: Any, broadcast: Any, emit: Any, count: Any, setup: Any) -> Any:
    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"subscribers": count()})

    app = web.Application()
    app.router.add_get("/single", single)
    app.router.add_get("/broadcast", broadcast)
    app.router.add_get("/stats", stats)
    app.router.add_post("/emit", emit)
    if setup is not None:
        setup(app)
    return app


def starlette_app() -> Any:
    from sse_starlette.sse import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    queues: set[asyncio.Queue[str]] = set()

    async def single(request: Request) -> EventSourceResponse:
        n = int(request.query_params["n"])

        async def events() -> Any:
            for i in range(n):
                yield {"data": event_json(i)}

        return EventSourceResponse(events(), sep="\n", ping=3600)

    async def broadcast(request: Request) -> EventSourceResponse:
        queue: asyncio.Queue[str] = asyncio.Queue()
        queues.add(queue)

        async def events() -> Any:
            try:
                while True:
                    yield {"data": await queue.get()}
            finally:
                queues.discard(queue)

        return EventSourceResponse(events(), sep="\n", ping=3600)

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"subscribers": len(queues)})

    async def emit(request: Request) -> JSONResponse:
        count, interval = emit_params(request.query_params)

        def emit_one(k: int) -> None:
            data = event_json(k)
            for queue in list(queues):
                queue.put_nowait(data)

        return JSONResponse(await pace(count, interval, emit_one))

    routes = [
        Route("/single", single),
        Route("/broadcast", broadcast),
        Route("/stats", stats),
        Route("/emit", emit, methods=["POST"]),
    ]
    return Starlette(routes=routes)


KINDS = {
    "rxsse": rxsse_app,
    "raw": raw_app,
    "raw-per-write": raw_per_write_app,
    "aiohttp-sse": aiohttp_sse_app,
    "sse-starlette": starlette_app,
}


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    pin(SERVER_CORE)
    uvloop = use_uvloop()  # every server on the same loop implementation
    if kind == "sse-starlette":
        import uvicorn

        uvicorn.run(
            starlette_app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            loop="uvloop" if uvloop else "asyncio",
            backlog=8192,
        )
    else:
        web.run_app(
            KINDS[kind](), host="127.0.0.1", port=port, print=None, access_log=None, backlog=8192
        )


if __name__ == "__main__":
    main()
