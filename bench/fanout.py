"""Fan-out through the event bus: time to deliver E events to C connected clients, beside the
same events through a plain ``Subject`` (the bus's target: within 0.8x of it).

The server (its own process, pinned to one core) streams ``bus.on("bench")`` (or the Subject)
to every client; the compiled load client (pinned to the other core) opens C connections that
only count frames, waits until the server has C live streams, asks it to emit E events, and
measures until every client has every event. Run for a plain Subject, the in-memory bus, a
RedisBroker on a redis-server and a NatsBroker on a nats-server (JetStream) the benchmark starts
itself.

Run: ``python -m bench.fanout --clients 1000 --events 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from reactivex.subject import Subject

import rxsse
from bench.common import (
    CLIENT_CORE,
    SERVER_CORE,
    pin,
    save_table,
    server_process,
    start_nats,
    start_redis,
)
from bench.loadclient import LoadClient, build
from bench.run import PythonClients
from rxsse import Broker, EventBus, MessageEvent, NatsBroker, RedisBroker


def server_app(bus: EventBus | None) -> web.Application:
    """``bus`` None: a plain Subject."""
    subject: Subject[MessageEvent] = Subject()

    async def events(request: web.Request) -> web.StreamResponse:
        source = bus.on("bench") if bus is not None else subject
        return await rxsse.stream(request, source, heartbeat=None)

    async def subscribers(request: web.Request) -> web.Response:
        return web.json_response({"live": len(rxsse.open_streams(request.app))})

    async def emit(request: web.Request) -> web.Response:
        count = int(request.query["n"])
        started = time.perf_counter()
        if bus is None:
            for n in range(count):
                subject.on_next(MessageEvent({"n": n, "payload": "x" * 32}))
        else:
            for n in range(count - 1):
                bus.emit("bench", {"n": n, "payload": "x" * 32})
            # The broker publishes in order: once the last is confirmed, all of them are.
            await bus.publish("bench", {"n": count - 1, "payload": "x" * 32})
        return web.json_response({"emit_seconds": time.perf_counter() - started})

    app = web.Application()
    app.router.add_get("/events", events)
    app.router.add_get("/subscribers", subscribers)
    app.router.add_post("/emit", emit)
    rxsse.setup(app, bus=bus)
    return app


def serve(port: int, kind: str, url: str | None) -> None:
    pin(SERVER_CORE)
    bus = None
    if kind != "subject":
        broker: Broker | None = None
        if kind == "redis" and url:
            broker = RedisBroker(url, prefix=f"bench-{os.getpid()}")
        elif kind == "nats" and url:
            broker = NatsBroker(url, prefix=f"bench-{os.getpid()}")
        bus = EventBus(broker)
    web.run_app(server_app(bus), host="127.0.0.1", port=port, print=None, access_log=None)


async def measure(
    port: int, clients: int, events: int, loadclient: Path | None
) -> dict[str, float]:
    if loadclient is not None:
        connections: Any = LoadClient(loadclient, port, clients, "/events")
    else:
        connections = PythonClients(port, clients, "/events")
    async with connections as client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            deadline = time.monotonic() + 120
            while (await http(reader, writer, "GET", "/subscribers"))["live"] < clients:
                if time.monotonic() > deadline:
                    raise RuntimeError("the clients did not all subscribe")
                await asyncio.sleep(0.05)
            started = time.monotonic()
            emitting = asyncio.ensure_future(http(reader, writer, "POST", f"/emit?n={events}"))
            arrived = await client.expect(events, timeout=300)
            emitted = await emitting
        finally:
            writer.close()
    total = max(arrived) - started
    return {
        "seconds": total,
        "emit_seconds": emitted["emit_seconds"],
        "deliveries_per_s": clients * events / total,
    }


async def http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str
) -> dict[str, float]:
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return json.loads(await reader.readexactly(length))  # type: ignore[no-any-return]


def run_one(
    kind: str, clients: int, events: int, redis_url: str | None, loadclient: Path | None
) -> dict[str, float]:
    args = ["--kind", kind, *(["--redis", redis_url] if redis_url else [])]
    with server_process("bench.fanout", *args) as (port, _):
        result = asyncio.run(measure(port, clients, events, loadclient))
    print(f"{kind}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--python-client", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.kind, args.redis)
        return
    pin(CLIENT_CORE)
    loadclient = None if args.python_client else build()
    runs = [("plain Subject", "subject"), ("in-memory bus", "memory")]
    rows = [
        (label, run_one(kind, args.clients, args.events, None, loadclient)) for label, kind in runs
    ]
    if shutil.which("redis-server"):
        redis, redis_port = start_redis()
        try:
            url = f"redis://127.0.0.1:{redis_port}/0"
            rows.append(
                ("RedisBroker", run_one("redis", args.clients, args.events, url, loadclient))
            )
        finally:
            redis.terminate()
            redis.wait()
    if shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin"):
        nats, nats_port = start_nats()
        try:
            url = f"nats://127.0.0.1:{nats_port}"
            rows.append(("NatsBroker", run_one("nats", args.clients, args.events, url, loadclient)))
        finally:
            nats.terminate()
            nats.wait()
    subject = rows[0][1]["deliveries_per_s"]
    client = "compiled load client" if loadclient else "Python load client"
    lines = [
        f"Fan-out: {args.events:,} events to {args.clients:,} clients "
        f"({args.clients * args.events:,} deliveries), one server process, "
        f"server and {client} pinned to separate cores; load {os.getloadavg()[0]:.2f}",
        "",
        "| source | time to deliver all (s) | deliveries/s | x plain Subject | emit time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, result in rows:
        lines.append(
            f"| {label} | {result['seconds']:.2f} | {result['deliveries_per_s']:,.0f} "
            f"| {result['deliveries_per_s'] / subject:.2f} | {result['emit_seconds']:.3f} |"
        )
    save_table("fanout.md", "\n".join(lines))


if __name__ == "__main__":
    main()
