"""The clients people use, reading the same stream: Chromium's EventSource, npm's
``eventsource`` (Node), httpx-sse and rxsse's own client.

The stream has named types, multi-line data, U+2028 and text outside the BMP, JSON, ids, a
``retry:`` longer than every client's default, heartbeats after an id was seen, a completion,
a resume with ``Last-Event-ID``, a failure, and a 204 that stops the clients. Every client must
get exactly the same events; the client table of docs/deploying.md says what each does.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from typing import Any

import httpx
import reactivex as rx
from aiohttp import web
from httpx_sse import aconnect_sse
from reactivex import operators as ops

import rxsse
from rxsse import EventSource, MessageEvent
from tests.conftest import ROOT, missing

NODE_CLIENT = ROOT / "tests" / "clients" / "read_stream.mjs"
RETRY_MS = 4000  # longer than the default of every client here (3 s): a client must obey it

FIRST = [
    MessageEvent("plain"),
    MessageEvent("two\nlines", type="update", id=1),
    None,  # a pause: heartbeats come, after an id was seen
    MessageEvent("sep\u2028arate \U0001f600 é", id=2),
    MessageEvent({"n": 3, "s": "é"}, id=3, retry=RETRY_MS),
]
EXPECTED = [
    {"type": "message", "data": "plain", "id": ""},
    {"type": "update", "data": "two\nlines", "id": "1"},
    {"type": "message", "data": "sep\u2028arate \U0001f600 é", "id": "2"},
    {"type": "message", "data": '{"n":3,"s":"é"}', "id": "3"},
    {"type": "message", "data": "resumed", "id": "4"},
    {
        "type": "stream-error",
        "data": '{"status": 500, "message": "internal server error", "failures": 1}',
        "id": "rxsse-failed:1:4",
    },
]


def flow_app(connections: dict[str, list[tuple[str | None, float]]]) -> web.Application:
    """``GET /flow?client=NAME``: the events above, then the end; resumed after id 3, one event
    then a failure; after the failure, a 204 (max_failures=1). Records each connection."""

    @rxsse.sse("/flow", heartbeat=0.05, error_retry=0.1, max_failures=1)
    def flow(client: str, last_event_id: str | None = None) -> rx.Observable[Any]:
        connections.setdefault(client, []).append((last_event_id, time.monotonic()))
        if last_event_id is None:
            parts = [
                rx.timer(0.3).pipe(ops.ignore_elements()) if e is None else rx.of(e) for e in FIRST
            ]
            return rx.concat(*parts)
        if last_event_id == "3":
            resumed = rx.of(MessageEvent("resumed", id=4))
            return resumed.pipe(ops.concat(rx.throw(RuntimeError("the stream's end"))))
        return rx.throw(AssertionError(f"unexpected resume point {last_event_id!r}"))

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>rxsse</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    rxsse.setup(app, flow)
    return app


# -- each client, as its users would run it ----------------------------------------------------


async def read_with_rxsse(url: str) -> list[dict[str, str]]:
    async with EventSource(url) as source:  # ends when the server answers 204
        return [{"type": e.type, "data": e.data, "id": e.id or ""} async for e in source]


async def read_with_httpx_sse(url: str) -> list[dict[str, str]]:
    """httpx-sse parses; reconnecting is its user's job: with Last-Event-ID, after ``retry``."""
    got: list[dict[str, str]] = []
    last_id, retry_ms = "", 3000
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as client:
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            async with aconnect_sse(client, "GET", url, headers=headers) as source:
                if source.response.status_code == 204:
                    return got
                async for sse in source.aiter_sse():
                    got.append({"type": sse.event, "data": sse.data, "id": sse.id})
                    last_id = sse.id
                    retry_ms = sse.retry if sse.retry is not None else retry_ms
            await asyncio.sleep(retry_ms / 1000)


async def read_with_node(url: str) -> list[dict[str, str]]:
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT.parent / "node_modules" / "eventsource").exists():
        missing("node and tests/clients/node_modules are needed (make test installs them)")
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_CLIENT), url, "update", "stream-error", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    result = json.loads(out)
    assert process.returncode == 0, result
    return list(result)


CHROMIUM_READER = """(url) => new Promise((resolve, reject) => {
  const source = new EventSource(url);
  const got = [];
  const record = (e) => got.push({type: e.type, data: e.data, id: e.lastEventId});
  source.onmessage = record;
  source.addEventListener("update", record);
  source.addEventListener("stream-error", record);
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) resolve(got); };
  setTimeout(() => reject(new Error("timed out: " + JSON.stringify(got))), 60000);
})"""


async def test_every_client_reads_the_same_events(serve, browser):
    connections: dict[str, list[tuple[str | None, float]]] = {}
    server = await serve(flow_app(connections))
    page = await browser.new_page()
    await page.goto(server.url("/"))  # a page of the same origin
    readers = {
        "chromium": page.evaluate(CHROMIUM_READER, server.url("/flow?client=chromium")),
        "eventsource (npm)": read_with_node(server.url("/flow?client=node")),
        "httpx-sse": read_with_httpx_sse(server.url("/flow?client=httpx-sse")),
        "rxsse": read_with_rxsse(server.url("/flow?client=rxsse")),
    }
    results = dict(zip(readers, await asyncio.gather(*readers.values()), strict=True))
    await page.close()
    for client, got in results.items():
        assert got == EXPECTED, f"{client} read something else"
    for client in ("chromium", "node", "httpx-sse", "rxsse"):
        (first, started), (second, resumed) = connections[client]
        # Resumed from the last id (then the failure's mark came back, and got the 204 that
        # ended every reader: the handler did not run for it).
        assert (first, second) == (None, "3"), client
        # The 4 s of retry: reconnecting after a client's own default (3 s) would be sooner.
        assert resumed - started >= RETRY_MS / 1000, f"{client} ignored retry"
