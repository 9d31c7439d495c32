"""Single-stream throughput: one client, N small JSON events as fast as the source makes them.

Compares, in one run on this machine, rxsse with raw aiohttp handlers and with the Observable
alone (the Rx ceiling: the same pipeline drained by a no-op observer, no I/O). The server runs
in its own process pinned to one core; the load client (an asyncio Protocol that only counts
frames) is pinned to the other.

Run: ``make bench`` (or ``python -m bench.single_stream --events 100000 --rounds 3``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import reactivex as rx
from aiohttp import web
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler

import rxsse
from bench.common import CLIENT_CORE, SERVER_CORE, FrameCounter, pin, request, wait_for_port
from rxsse import MessageEvent

RESULTS = Path(__file__).resolve().parent / "results"


def make_event(n: int) -> MessageEvent:
    return MessageEvent({"n": n, "user": "ann", "ok": True})


def pre_encoded(count: int) -> list[bytes]:
    return [make_event(n).encode() for n in range(count)]


# -- the server (own process) ---------------------------------------------------------------


def server_app(events: int) -> web.Application:
    frames = pre_encoded(events)

    async def raw_batched(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=dict(rxsse.SSE_HEADERS))
        await response.prepare(request)
        for start in range(0, len(frames), 256):
            await response.write(b"".join(frames[start : start + 256]))
        await response.write_eof()
        return response

    async def raw_each(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers=dict(rxsse.SSE_HEADERS))
        await response.prepare(request)
        for frame in frames:
            await response.write(frame)
        await response.write_eof()
        return response

    async def with_rxsse(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, rx.range(events).pipe(ops.map(make_event)))

    app = web.Application()
    app.router.add_get("/raw-batched", raw_batched)
    app.router.add_get("/raw-each", raw_each)
    app.router.add_get("/rxsse", with_rxsse)
    return app


def serve(port: int, events: int) -> None:
    pin(SERVER_CORE)
    web.run_app(server_app(events), host="127.0.0.1", port=port, print=None, access_log=None)


# -- the Rx ceiling (own process, same core as the server) ----------------------------------


async def drain_observable(events: int) -> float:
    """Seconds for the rxsse pipeline's Observable alone, on the asyncio scheduler."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    start = time.perf_counter()
    rx.range(events).pipe(ops.map(make_event), ops.map(MessageEvent.encode)).subscribe(
        lambda _: None,
        done.set_exception,
        lambda: done.set_result(None),
        scheduler=AsyncIOScheduler(loop),
    )
    await done
    return time.perf_counter() - start


# -- the load client --------------------------------------------------------------------------


class _Until(FrameCounter):
    """Resolves ``done`` with the elapsed seconds once ``expected`` frames have arrived."""

    def __init__(self, expected: int, done: asyncio.Future[float]) -> None:
        super().__init__()
        self.expected = expected
        self.done = done
        self.start = 0.0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.count >= self.expected and not self.done.done():
            self.done.set_result(time.perf_counter() - self.start)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(RuntimeError(f"closed after {self.count} frames"))


async def fetch(port: int, path: str, events: int) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[float] = loop.create_future()
    transport, protocol = await loop.create_connection(
        lambda: _Until(events, done), "127.0.0.1", port
    )
    protocol.start = time.perf_counter()
    transport.write(request(path))
    try:
        return await asyncio.wait_for(done, timeout=120)
    finally:
        transport.close()


def best(samples: list[float]) -> float:
    return min(samples)


def run(events: int, rounds: int) -> str:
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.single_stream", "--serve", str(port), "--events", str(events)]
    )
    pin(CLIENT_CORE)
    try:
        asyncio.run(wait_for_port(port))
        seconds: dict[str, list[float]] = {"/raw-batched": [], "/raw-each": [], "/rxsse": []}
        for _ in range(rounds):
            for path, samples in seconds.items():
                samples.append(asyncio.run(fetch(port, path, events)))
    finally:
        server.terminate()
        server.wait()
    ceiling = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.single_stream",
            "--ceiling",
            "--events",
            str(events),
            "--rounds",
            str(rounds),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds["rx"] = [float(x) for x in ceiling.stdout.split()]

    rate: Callable[[str], float] = lambda key: events / best(seconds[key])  # noqa: E731
    limit = rate("/raw-batched")
    rows = [
        ("raw aiohttp, pre-encoded frames, one write per 256 frames (the limit)", "/raw-batched"),
        ("raw aiohttp, pre-encoded frames, one `await write` per frame", "/raw-each"),
        ("**rxsse** `stream()` over `rx.range(n).pipe(ops.map(MessageEvent))`", "/rxsse"),
        ("the same Observable drained by a no-op observer, no I/O (Rx ceiling)", "rx"),
    ]
    lines = [
        f"Single stream, {events:,} events, best of {rounds} "
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores, server and client pinned to separate cores)",
        "",
        "| scenario | events/s | x limit | spread (median events/s) |",
        "|---|---:|---:|---:|",
    ]
    for label, key in rows:
        median = events / statistics.median(seconds[key])
        lines.append(f"| {label} | {rate(key):,.0f} | {rate(key) / limit:.2f} | {median:,.0f} |")
    lines.append("")
    lines.append(f"rxsse / Rx ceiling: {rate('/rxsse') / rate('rx'):.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.events)
        return
    if args.ceiling:
        pin(SERVER_CORE)
        print(*(asyncio.run(drain_observable(args.events)) for _ in range(args.rounds)))
        return
    table = run(args.events, args.rounds)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "single_stream.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
