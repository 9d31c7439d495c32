"""Capacity: how many idle streams this machine holds, what each one costs, how late their
heartbeats are, and how long one event takes to reach them all.

The app (``bench.capacity:app``: an idle bus stream with a heartbeat) runs on gunicorn with
aiohttp's uvloop worker, its bus on a redis-server the benchmark starts: one worker first, then
several. Load clients run in processes of their own, each opening its streams from a loopback
address of its own (127.0.0.2, 127.0.0.3, ...: one source address has about 28,000 ports for
one server port, and a process may hold 20,000 open files). Each client notes when every
heartbeat line arrives and when the broadcast event does.

- streams held: streams open at once, every one of them receiving its heartbeats;
- KiB per stream: the workers' RSS growth divided by the streams;
- heartbeat lateness: the time between two heartbeats of a stream, less the heartbeat, over
  three periods (p50, p99, max);
- broadcast: one event published through the bus, until the last stream has it.

Run: ``python -m bench.capacity`` (``--rows 1x15000 6x60000``: workers x streams).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

import rxsse
from bench.common import free_port, save_table, start_redis, wait_for_port
from rxsse import EventBus, RedisBroker

HEARTBEAT = 5.0
TOPIC = "capacity"
PER_CLIENT = 15_000  # streams one load client process opens (under the 20,000-file limit)


# -- the app, in each gunicorn worker ------------------------------------------------------------


async def app() -> web.Application:
    """An idle stream of the bus's ``capacity`` topic, with a heartbeat."""
    bus = EventBus(RedisBroker(os.environ["RXSSE_REDIS_URL"], prefix=os.environ["RXSSE_PREFIX"]))

    @rxsse.sse("/idle")
    def idle(bus: EventBus) -> Any:
        return bus.on(TOPIC)

    @rxsse.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    gc.callbacks.append(_FullCollections(Path(os.environ["CAPACITY_GC_LOG"])))
    application = web.Application()
    rxsse.setup(
        application,
        idle,
        ping,
        options=rxsse.StreamOptions(heartbeat=float(os.environ["HEARTBEAT"])),
        bus=bus,
    )
    return application


class _FullCollections:
    """Notes each full collection of the garbage collector (when it began, how long it
    stopped the loop) in a file of this worker's own."""

    def __init__(self, directory: Path) -> None:
        self.log = directory / f"{os.getpid()}.txt"
        self.began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self.began = time.monotonic()
        else:
            with self.log.open("a") as log:
                log.write(f"{self.began} {time.monotonic() - self.began}\n")


def _longest_collection(directory: Path, since: float, until: float) -> float:
    """The longest full collection of any worker that began in [since, until], in ms."""
    longest = 0.0
    for log in directory.glob("*.txt"):
        for line in log.read_text().splitlines():
            began, seconds = (float(x) for x in line.split())
            if since <= began <= until:
                longest = max(longest, 1000 * seconds)
    return longest


# -- a load client, in a process of its own -------------------------------------------------------


class _Stream(asyncio.Protocol):
    """Notes when each heartbeat line and the broadcast event arrive."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.opened = asyncio.get_running_loop().create_future()
        self.pings: list[float] = []
        self.event_at: float | None = None
        self.tail = b""
        self.sock: socket.socket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        write = transport.write  # type: ignore[attr-defined]
        write(b"GET /idle HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        tail, data = self.tail, self.tail + data  # a line may be split across two reads
        self.tail = data[-16:]
        if not self.opened.done() and b": open\n" in data:
            self.opened.set_result(None)
        # The pings that end in this read, not in the tail before, until the broadcast event:
        # a written event puts the next heartbeat off by a period, which is no lateness.
        if self.client.measuring and self.event_at is None:
            self.pings.extend([now] * (data.count(b": ping\n") - tail.count(b": ping\n")))
        if self.event_at is None and b"data: " in data:
            self.event_at = now
            self.client.received += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost += 1


class _Client:
    def __init__(self) -> None:
        self.measuring = False
        self.received = 0
        self.lost = 0


async def _run_client(port: int, count: int, source: str) -> None:
    """Open ``count`` streams from ``source``; then obey the lines on stdin: ``measure``,
    ``stop`` (print the results as JSON)."""
    loop = asyncio.get_running_loop()
    client = _Client()
    streams: list[_Stream] = []
    for start in range(0, count, 500):
        batch = []
        for _ in range(min(500, count - start)):
            sock = socket.socket()
            sock.bind((source, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            _, stream = await loop.create_connection(lambda: _Stream(client), sock=sock)
            stream.sock = sock  # its finalizer would close the connection
            batch.append(stream)
        await asyncio.gather(*(s.opened for s in batch))
        streams += batch
    print("ready", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (command := (await reader.readline()).decode().strip()) != "stop":
        if command == "measure":
            client.measuring = True
    late = [
        (b - a) - HEARTBEAT for s in streams for a, b in zip(s.pings, s.pings[1:], strict=False)
    ]
    arrivals = [s.event_at for s in streams if s.event_at is not None]
    print(json.dumps({"late": late, "arrivals": arrivals, "lost": client.lost}), flush=True)


# -- the benchmark ---------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]


def _workers(master: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


async def _measure(workers: int, streams: int, redis_url: str, settle: float) -> dict[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "RXSSE_REDIS_URL": redis_url,
        "RXSSE_PREFIX": f"capacity-{port}",
        "HEARTBEAT": str(HEARTBEAT),
        "CAPACITY_GC_LOG": tempfile.mkdtemp(prefix="capacity-gc-"),
    }
    command = [sys.executable, "-m", "gunicorn", "bench.capacity:app", "--workers", str(workers)]
    command += ["--worker-class", "aiohttp.GunicornUVLoopWebWorker", "--bind", f"127.0.0.1:{port}"]
    command += ["--backlog", "4096", "--no-control-socket", "--log-level", "warning"]
    server = subprocess.Popen(command, env=env)  # noqa: ASYNC220 (a server, not awaited)
    clients: list[asyncio.subprocess.Process] = []
    try:
        await wait_for_port(port)
        deadline = time.monotonic() + 30
        while len(_workers(server.pid)) < workers:
            assert time.monotonic() < deadline, "the workers did not start"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # each worker's app started (connected to Redis)
        before = sum(_rss_kib(pid) for pid in _workers(server.pid))
        started = time.monotonic()
        for n, share in enumerate(_shares(streams)):
            client = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "bench.capacity", "--client", str(port)),
                *(str(share), f"127.0.0.{n + 2}"),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=1 << 26,  # the results are one long line
            )
            clients.append(client)
        for client in clients:
            assert client.stdout is not None
            line = await asyncio.wait_for(client.stdout.readline(), timeout=600)
            assert line.strip() == b"ready", line
        connect_seconds = time.monotonic() - started
        await asyncio.sleep(1)
        after = sum(_rss_kib(pid) for pid in _workers(server.pid))
        await asyncio.sleep(settle)  # the pings settle, and the ramp-up's objects age
        measured = time.monotonic()
        for client in clients:
            client.stdin.write(b"measure\n")  # type: ignore[union-attr]
        await asyncio.sleep(3 * HEARTBEAT + 1)
        collection_ms = _longest_collection(
            Path(env["CAPACITY_GC_LOG"]), measured, time.monotonic()
        )
        bus = EventBus(RedisBroker(redis_url, prefix=env["RXSSE_PREFIX"]))
        await bus.start()
        published = time.monotonic()
        await bus.publish(TOPIC, {"hello": "everyone"})
        await asyncio.sleep(5)  # (the arrivals are timed by the clients themselves)
        await bus.close()
        results = []
        for client in clients:
            client.stdin.write(b"stop\n")  # type: ignore[union-attr]
            out = await client.stdout.readline()  # type: ignore[union-attr]
            results.append(json.loads(out))
        late = sorted(x for r in results for x in r["late"])
        arrivals = [x for r in results for x in r["arrivals"]]
        return {
            "workers": workers,
            "streams": streams,
            "received": len(arrivals),
            "lost": sum(r["lost"] for r in results),
            "connect_s": connect_seconds,
            "kib_per_stream": (after - before) / streams,
            "late_p50_ms": 1000 * statistics.median(late),
            "late_p99_ms": 1000 * late[int(0.99 * (len(late) - 1))],
            "late_max_ms": 1000 * late[-1],
            "late_samples": len(late),
            "broadcast_ms": 1000 * (max(arrivals) - published) if arrivals else float("nan"),
            "collection_ms": collection_ms,
        }
    finally:
        for client in clients:
            if client.returncode is None:
                client.kill()
                await client.wait()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _shares(streams: int) -> list[int]:
    count = -(-streams // PER_CLIENT)
    return [streams // count + (1 if n < streams % count else 0) for n in range(count)]


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Idle streams on this machine (2 cores): gunicorn with aiohttp's uvloop worker, the bus "
        f"on Redis, heartbeat {HEARTBEAT:g} s; load clients in processes of their own.",
        "",
        "| workers | streams held | KiB per stream | heartbeat late p50 / p99 / max ms "
        "| longest full GC in a worker, ms | broadcast to all, ms | time to connect all, s |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['received']:,} of {row['streams']:,} "
            f"| {row['kib_per_stream']:.1f} "
            f"| {row['late_p50_ms']:.0f} / {row['late_p99_ms']:.0f} / {row['late_max_ms']:.0f} "
            f"| {row['collection_ms']:.0f} | {row['broadcast_ms']:.0f} | {row['connect_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["1x15000", "6x60000"])
    parser.add_argument(
        "--settle", type=float, default=HEARTBEAT, help="seconds between ramp-up and measuring"
    )
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        # A load client must not pause to collect its 15,000 connections' objects: its
        # stalls would read as late heartbeats (and take the workers' CPU).
        gc.disable()
        rxsse.use_uvloop()
        port, count, source = args.client
        asyncio.run(_run_client(int(port), int(count), source))
        return
    redis, redis_port = start_redis()
    rows = []
    try:
        for spec in args.rows:
            workers, streams = (int(x) for x in spec.split("x"))
            url = f"redis://127.0.0.1:{redis_port}/0"
            row = asyncio.run(_measure(workers, streams, url, args.settle))
            print(row, flush=True)
            rows.append(row)
    finally:
        redis.terminate()
        redis.wait()
    save_table("capacity.md", _table(rows))


if __name__ == "__main__":
    main()
