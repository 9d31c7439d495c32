"""Compression: bytes on the wire and server CPU per event on a realistic JSON stream.

A server process (pinned to the server core) streams price updates (about 190 bytes per frame:
an id, an event type, nine JSON fields) to C clients, 2 ms apart, so every event is its own
compressed write and flush: the worst case for the ratio. The clients (this
process, on the other core) read the bytes as they are on the wire and decode them, to check
that every event arrived whole. Run once per encoding, and once uncompressed.

Run: ``python -m bench.compression --clients 50 --events 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import zlib
from typing import Any

import aiohttp
from aiohttp import web
from reactivex.subject import Subject

import rxsse
from bench.common import CLIENT_CORE, SERVER_CORE, cpu_seconds, pin, save_table, server_process
from rxsse import MessageEvent
from rxsse.streaming._compression import available

SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ORCL")


def prices(count: int) -> list[MessageEvent]:
    """The stream's events (the same every run)."""
    rng = random.Random(1)
    events = []
    for n in range(count):
        value = round(rng.uniform(100, 500), 2)
        data = {
            "symbol": rng.choice(SYMBOLS),
            "price": value,
            "bid": round(value - 0.01, 2),
            "ask": round(value + 0.01, 2),
            "volume": rng.randint(100, 100_000),
            "time": f"2026-11-21T14:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
            "exchange": "NASDAQ",
            "currency": "USD",
            "change": round(rng.uniform(-5, 5), 2),
        }
        events.append(MessageEvent(data, id=n, type="price"))
    return events


def server_app() -> web.Application:
    subject: Subject[MessageEvent] = Subject()

    async def stream(request: web.Request) -> web.StreamResponse:
        encoding = request.query.get("encoding")
        compress = (encoding,) if encoding else False
        return await rxsse.stream(request, subject, heartbeat=None, compress=compress)

    async def live(request: web.Request) -> web.Response:
        return web.json_response(len(rxsse.open_streams(request.app)))

    async def emit(request: web.Request) -> web.Response:
        for event in prices(int(request.query["n"])):
            subject.on_next(MessageEvent(event.data, id=event.id, type=event.type))
            # Past the coalescing window (1 ms): each event is a write, and a flush, of its own.
            await asyncio.sleep(0.002)
        return web.json_response(True)

    app = web.Application()
    app.router.add_get("/prices", stream)
    app.router.add_get("/live", live)
    app.router.add_post("/emit", emit)
    rxsse.setup(app)
    return app


def serve(port: int) -> None:
    pin(SERVER_CORE)
    web.run_app(server_app(), host="127.0.0.1", port=port, print=None, access_log=None)


def decoder(encoding: str | None) -> Any:
    if encoding is None:
        return lambda data: data
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if encoding == "br":
        import brotli  # type: ignore[import-untyped]

        return brotli.Decompressor().process
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress


async def read(response: aiohttp.ClientResponse, encoding: str | None, events: int) -> int:
    """Read until ``events`` frames have arrived; the bytes on the wire."""
    decode, wire, frames = decoder(encoding), 0, 0
    while frames < events:
        chunk = await response.content.readany()
        if not chunk:
            raise RuntimeError(f"the stream ended after {frames} of {events} events")
        wire += len(chunk)
        frames += decode(chunk).count(b"\n\n")
    return wire


async def measure(port: int, pid: int, encoding: str | None, clients: int, events: int) -> Any:
    base = f"http://127.0.0.1:{port}"
    query = f"?encoding={encoding}" if encoding else ""
    async with aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(limit=0)
    ) as session:
        headers = {"Accept-Encoding": encoding or "identity"}
        responses = [
            await session.get(base + "/prices" + query, headers=headers) for _ in range(clients)
        ]
        for response in responses:
            assert response.headers.get("Content-Encoding") == encoding
        deadline = time.monotonic() + 60
        while await (await session.get(base + "/live")).json() < clients:
            if time.monotonic() > deadline:
                raise RuntimeError("the clients did not all connect")
            await asyncio.sleep(0.05)
        before = cpu_seconds(pid)
        readers = [asyncio.ensure_future(read(r, encoding, events)) for r in responses]
        async with session.post(f"{base}/emit?n={events}") as emitted:
            await emitted.read()
        wire = sum(await asyncio.gather(*readers))
        cpu = cpu_seconds(pid) - before
        for response in responses:
            response.close()
    return {
        "wire_per_event": wire / clients / events,
        "cpu_us_per_delivery": 1e6 * cpu / clients / events,
    }


def run_one(encoding: str | None, clients: int, events: int) -> Any:
    with server_process("bench.compression") as (port, pid):
        return asyncio.run(measure(port, pid, encoding, clients, events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    pin(CLIENT_CORE)
    frame = sum(len(e.encode()) for e in prices(args.events)) / args.events
    rows = [(None, run_one(None, args.clients, args.events))]
    rows += [(name, run_one(name, args.clients, args.events)) for name in available()]
    plain = rows[0][1]
    lines = [
        f"Compression: {args.events:,} price events (JSON, {frame:.0f} bytes a frame) to "
        f"{args.clients} clients, one event per write (each flushed); load "
        f"{os.getloadavg()[0]:.2f}",
        "",
        "| encoding | bytes on the wire per event | x uncompressed | server CPU µs/delivery |",
        "|---|---:|---:|---:|",
    ]
    for name, result in rows:
        lines.append(
            f"| {name or 'none'} | {result['wire_per_event']:.1f} "
            f"| {result['wire_per_event'] / plain['wire_per_event']:.2f} "
            f"| {result['cpu_us_per_delivery']:.1f} |"
        )
    save_table("compression.md", "\n".join(lines))
    print(json.dumps({name or "none": result for name, result in rows}))


if __name__ == "__main__":
    main()
