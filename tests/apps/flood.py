"""A server for the slow-client tests, run as its own process so its memory can be read:
``GET /flood?policy=P&size=BYTES&count=N`` streams N frames of about BYTES bytes as fast as the
source makes them; ``GET /metrics`` is rxsse's Prometheus text; ``GET /memory`` the peak of the
memory Python allocated (tracemalloc) since the last ``GET /memory?reset=1``, in bytes.

(The peak of what Python allocates, not the process's RSS: how much of freed memory glibc's
allocator keeps mapped differs between Python versions, and is not what a stream holds.)"""

from __future__ import annotations

import sys
import tracemalloc

import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import MessageEvent

BUFFER_BYTES = 1 << 20


async def flood(request: web.Request) -> web.StreamResponse:
    policy = request.query.get("policy", "disconnect")
    size, count = int(request.query["size"]), int(request.query["count"])
    payload = "x" * size
    source = rx.range(count).pipe(ops.map(lambda n: MessageEvent(f"{n} {payload}", id=n)))
    return await rxsse.stream(
        request, source, overflow=policy, max_buffer_bytes=BUFFER_BYTES, heartbeat=None
    )


async def memory(request: web.Request) -> web.Response:
    if "reset" in request.query:
        tracemalloc.reset_peak()
    return web.Response(text=str(tracemalloc.get_traced_memory()[1]))


def create_app() -> web.Application:
    tracemalloc.start()
    app = web.Application()
    app.router.add_get("/flood", flood)
    app.router.add_get("/memory", memory)
    rxsse.setup(app, metrics="/metrics")
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
