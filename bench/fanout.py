"""Fan-out through the event bus: time to deliver E events to C connected clients.

The server (its own process, pinned to one core) streams ``bus.on("bench")`` to every client;
the load client (pinned to the other core) opens C connections that only count frames, waits
until the server has C live subscribers, asks it to emit E events, and measures until every
client has every event. Run for the in-memory bus and for a RedisBroker on a redis-server the
benchmark starts itself.

Run: ``python -m bench.fanout --clients 1000 --events 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

from aiohttp import web

import rxsse
from bench.common import (
    CLIENT_CORE,
    RESULTS,
    SERVER_CORE,
    FrameCounter,
    free_port,
    pin,
    request,
    start_redis,
    wait_for_port,
)
from rxsse import EventBus
from rxsse.brokers.redis import RedisBroker


def server_app(bus: EventBus) -> web.Application:
    async def events(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, bus.on("bench"), heartbeat=None)

    async def subscribers(request: web.Request) -> web.Response:
        return web.json_response({"live": bus.live_subscriptions})

    async def emit(request: web.Request) -> web.Response:
        count = int(request.query["n"])
        started = time.perf_counter()
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


def serve(port: int, redis_url: str | None) -> None:
    pin(SERVER_CORE)
    broker = RedisBroker(redis_url, prefix=f"bench-{os.getpid()}") if redis_url else None
    web.run_app(
        server_app(EventBus(broker)), host="127.0.0.1", port=port, print=None, access_log=None
    )


async def measure(port: int, clients: int, events: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    expected = clients * events
    received = 0
    done = loop.create_future()

    def on_frames(count: int) -> None:
        nonlocal received
        received += count
        if received >= expected and not done.done():
            done.set_result(time.perf_counter())

    transports = []
    for batch in range(0, clients, 200):
        opened = await asyncio.gather(
            *(
                loop.create_connection(lambda: FrameCounter(on_frames), "127.0.0.1", port)
                for _ in range(min(200, clients - batch))
            )
        )
        for transport, _ in opened:
            transport.write(request("/events"))
            transports.append(transport)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:  # poll until every client is subscribed
            status = await http(reader, writer, "GET", "/subscribers")
            if status["live"] >= clients:
                break
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        emitted = await http(reader, writer, "POST", f"/emit?n={events}")
        finished = await asyncio.wait_for(done, timeout=300)
    finally:
        writer.close()
        for transport in transports:
            transport.close()
    total = finished - started
    return {
        "seconds": total,
        "emit_seconds": emitted["emit_seconds"],
        "deliveries_per_s": expected / total,
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


def run_one(label: str, clients: int, events: int, redis_url: str | None) -> dict[str, float]:
    port = free_port()
    command = [sys.executable, "-m", "bench.fanout", "--serve", str(port)]
    if redis_url:
        command += ["--redis", redis_url]
    server = subprocess.Popen(command)
    try:
        asyncio.run(wait_for_port(port))
        result = asyncio.run(measure(port, clients, events))
    finally:
        server.terminate()
        server.wait()
    print(f"{label}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.redis)
        return
    pin(CLIENT_CORE)
    rows = [("in-memory bus", run_one("memory", args.clients, args.events, None))]
    if shutil.which("redis-server"):
        redis, redis_port = start_redis()
        try:
            url = f"redis://127.0.0.1:{redis_port}/0"
            rows.append(("RedisBroker", run_one("redis", args.clients, args.events, url)))
        finally:
            redis.terminate()
            redis.wait()
    lines = [
        f"Fan-out: {args.events:,} events to {args.clients:,} clients "
        f"({args.clients * args.events:,} deliveries), one server process, "
        "server and client pinned to separate cores",
        "",
        "| bus | time to deliver all (s) | deliveries/s | emit time (s) |",
        "|---|---:|---:|---:|",
    ]
    for label, result in rows:
        lines.append(
            f"| {label} | {result['seconds']:.2f} | {result['deliveries_per_s']:,.0f} "
            f"| {result['emit_seconds']:.3f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fanout.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
