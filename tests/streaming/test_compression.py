"""Compressed streams (``compress=...``): negotiated from Accept-Encoding, one compressor per
stream, every event decodable as soon as it is sent. Each test drives the stream one event at
a time: the next event is sent only once the client has the previous one, so a stream that
held an event back (in a compressor, a proxy or a browser) would stall the test."""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import brotli  # type: ignore[import-untyped]
import pytest
import zstandard
from aiohttp import web
from reactivex.subject import Subject

import rxsse
from rxsse import MessageEvent
from rxsse.streaming._compression import check_compress, choose
from tests.conftest import free_port, wait_until
from tests.nginx import Nginx


def price(n: int) -> MessageEvent:
    return MessageEvent(
        {"symbol": "AAPL", "price": 180 + n / 100, "volume": 1000 + n, "exchange": "NASDAQ"},
        id=n,
        type="price",
    )


def gated_app(**options: Any) -> web.Application:
    """``GET /news`` streams what ``POST /next?n=N`` sends (the ``n``-th price)."""
    subject: Subject[MessageEvent] = Subject()

    async def news(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, subject, heartbeat=None, **options)

    async def next_event(request: web.Request) -> web.Response:
        subject.on_next(price(int(request.query["n"])))
        return web.json_response({"sent": True})

    async def end(request: web.Request) -> web.Response:
        subject.on_completed()
        return web.json_response({"ended": True})

    app = web.Application()
    app.router.add_get("/news", news)
    app.router.add_post("/next", next_event)
    app.router.add_post("/end", end)
    rxsse.setup(app)
    return app


def decompressor(encoding: str) -> Any:
    if encoding == "gzip":
        inner = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return inner.decompress
    if encoding == "br":
        return brotli.Decompressor().process
    return zstandard.ZstdDecompressor().decompressobj().decompress


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "br"])
async def test_each_event_arrives_compressed_and_decodable_at_once(serve, encoding):
    client = await serve(gated_app(compress=(encoding,)))
    session = aiohttp.ClientSession(auto_decompress=False)  # the bytes as they are on the wire
    try:
        resp = await session.get(client.url("/news"), headers={"Accept-Encoding": encoding})
        assert resp.headers["Content-Encoding"] == encoding
        assert resp.headers["Vary"] == "Accept-Encoding"
        assert resp.headers["Cache-Control"] == "no-cache, no-transform"
        decode, text, wire = decompressor(encoding), "", 0
        for n in range(20):
            await client.post(f"/next?n={n}")
            frame = price(n).encode().decode()
            while frame not in text:  # only what this event's bytes decode to: none held back
                chunk = await asyncio.wait_for(resp.content.readany(), 5)
                assert chunk, "the stream ended"
                wire += len(chunk)
                text += decode(chunk).decode()
        assert text == ": open\n" + "".join(price(n).encode().decode() for n in range(20))
        assert wire < len(text.encode())
        resp.close()
    finally:
        await session.close()


async def test_the_end_of_a_gzip_stream_is_a_complete_gzip_member(serve):
    client = await serve(gated_app(compress=True))
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        async with session.get(client.url("/news"), headers={"Accept-Encoding": "gzip"}) as resp:
            await wait_until(lambda: len(rxsse.open_streams(client.app)) == 1)
            await client.post("/next?n=1")
            await client.post("/end")
            body = await resp.read()
        inner = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert inner.decompress(body) == b": open\n" + price(1).encode()
        assert inner.eof  # the trailer came: not a stream cut short
    finally:
        await session.close()


@pytest.mark.parametrize(
    ("request_headers", "expected"),
    [
        ({"Accept-Encoding": "identity"}, None),
        ({"Accept-Encoding": "gzip;q=0"}, None),
        ({"Accept-Encoding": "gzip", "Cache-Control": "no-transform"}, None),
        ({"Accept-Encoding": "br, gzip"}, "gzip"),  # offered first: the least memory
    ],
)
async def test_a_stream_is_compressed_only_when_the_client_takes_it(
    serve, request_headers, expected
):
    client = await serve(gated_app(compress=True))
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        async with session.get(client.url("/news"), headers=request_headers) as resp:
            assert resp.headers.get("Content-Encoding") == expected
            assert resp.headers["Vary"] == "Accept-Encoding"
            assert resp.headers["Cache-Control"] == (
                "no-cache, no-transform" if expected else "no-cache"
            )
            first = await asyncio.wait_for(resp.content.readany(), 5)
            if expected is None:
                assert first == b": open\n"
    finally:
        await session.close()


async def test_rxsse_client_reads_a_compressed_stream_event_by_event(serve):
    encodings: list[str | None] = []

    async def note(request: web.Request, response: web.StreamResponse) -> None:
        encodings.append(response.headers.get("Content-Encoding"))

    app = gated_app(compress=True)
    app.on_response_prepare.append(note)
    client = await serve(app)
    source = rxsse.EventSource(client.url("/news"))
    events = source.__aiter__()
    try:
        for n in range(10):
            if n == 0:
                reading = asyncio.ensure_future(events.__anext__())
                await wait_until(lambda: len(rxsse.open_streams(client.app)) == 1)
                await client.post("/next?n=0")
                event = await asyncio.wait_for(reading, 5)
            else:
                await client.post(f"/next?n={n}")
                event = await asyncio.wait_for(events.__anext__(), 5)
            assert (event.type, event.id, json.loads(event.data)) == (
                "price",
                str(n),
                price(n).data,
            )
    finally:
        await source.close()
    assert encodings[0] == "gzip"


READ_GATED = """async ([url, count]) => {
  const source = new EventSource(url);
  const got = [];
  for (let n = 0; n < count; n++) {
    const event = new Promise((resolve, reject) => {
      source.addEventListener("price", e => resolve(e), {once: true});
      setTimeout(() => reject(new Error("event " + n + " did not arrive")), 10000);
    });
    if (n === 0) await new Promise(r => { source.onopen = r; });
    await fetch("/next?n=" + n, {method: "POST"});
    const e = await event;
    got.push([e.lastEventId, JSON.parse(e.data)]);
  }
  source.close();
  return got;
}"""


async def test_chromium_reads_a_compressed_stream_event_by_event(serve, browser):
    encodings: list[str | None] = []

    async def note(request: web.Request, response: web.StreamResponse) -> None:
        if request.path == "/news":
            encodings.append(response.headers.get("Content-Encoding"))

    app = gated_app(compress=("zstd", "br", "gzip"))
    app.on_response_prepare.append(note)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<title>x</title>", content_type="text/html")

    app.router.add_get("/", page)
    server = await serve(app)
    tab = await browser.new_page()
    try:
        await tab.goto(server.url("/"))
        got = await tab.evaluate(READ_GATED, ["/news", 10])
    finally:
        await tab.close()
    assert got == [[str(n), price(n).data] for n in range(10)]
    assert encodings == ["zstd"]  # Chromium takes zstd, offered first here


PROXY = """
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        gzip on;                           # a proxy that compresses what it can
        gzip_types text/event-stream;
    }}
}}
"""


async def test_through_nginx_a_compressed_stream_passes_as_it_is_event_by_event(
    serve, browser, tmp_path: Path
):
    server = await serve(gated_app(compress=True))
    port = free_port()
    nginx = Nginx(tmp_path, PROXY.format(port=port, upstream=server.base_url.split("//")[1]), port)
    await asyncio.to_thread(nginx.start)
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        base = f"http://127.0.0.1:{port}"
        resp = await session.get(base + "/news", headers={"Accept-Encoding": "gzip"})
        assert resp.headers["Content-Encoding"] == "gzip"  # once: nginx did not compress again
        decode, text = decompressor("gzip"), ""
        for n in range(10):
            async with session.post(f"{base}/next?n={n}") as sent:
                assert sent.status == 200
            while price(n).encode().decode() not in text:
                chunk = await asyncio.wait_for(resp.content.readany(), 5)
                assert chunk, "the stream ended"
                text += decode(chunk).decode()
        resp.close()
    finally:
        await session.close()
        await asyncio.to_thread(nginx.stop)


def test_choose_follows_the_weights_then_the_servers_order():
    assert choose(None, ("gzip",)) is None
    assert choose("gzip, br", ()) is None
    assert choose("deflate", ("gzip",)) is None
    assert choose("GZIP", ("gzip",)) == "gzip"
    assert choose("gzip;q=0.5, zstd;q=0.9", ("gzip", "zstd")) == "zstd"
    assert choose("gzip;q=nonsense, zstd;q=0.1", ("gzip", "zstd")) == "zstd"
    assert choose("*", ("br", "gzip")) == "br"


@pytest.mark.parametrize(
    ("value", "message"),
    [("gzip", "compress must be"), (("gzip", "lzma"), "unknown encoding 'lzma'"), ((), "compress")],
)
def test_a_bad_compress_option_is_refused_when_made(value, message):
    with pytest.raises(ValueError, match=message):
        check_compress(value)
    with pytest.raises(ValueError, match=message):
        rxsse.sse("/x", compress=value)(lambda: None)


PRODUCTION = Path(__file__).resolve().parents[2] / "docs" / "production.md"


async def test_the_readme_compression_example_serves_a_gzip_stream(serve):
    section = PRODUCTION.read_text().split("## Compression", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "production.md", "exec", dont_inherit=True), namespace)  # our docs' code
    server = await serve(namespace["app"])
    session = aiohttp.ClientSession(auto_decompress=False)
    try:
        async with session.get(server.url("/prices"), headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            decode, text = decompressor("gzip"), ""
            while "\n\n" not in text:
                chunk = await asyncio.wait_for(resp.content.readany(), 5)
                assert chunk, "the stream ended"
                text += decode(chunk).decode()
        assert text == ': open\ndata: {"AAPL":180.0}\n\n'
    finally:
        await session.close()
