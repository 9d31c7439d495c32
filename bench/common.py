"""Pieces the benchmarks share: a frame-counting client protocol, CPU pinning, ports, a
benchmark's own server process and its CPU time, and where results are written."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_CORE, CLIENT_CORE = 0, 1
#: Where the benchmarks write their tables and plots.
RESULTS = Path(__file__).resolve().parent / "results"


class FrameCounter(asyncio.Protocol):
    """Counts SSE frames (blank-line terminators) on one connection, and nothing else.

    ``on_frames(n)`` is called with each batch's count, so a caller can total many
    connections cheaply.
    """

    def __init__(self, on_frames: object = None) -> None:
        self.count = 0
        self.tail = b""
        self.on_frames = on_frames
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        found = (self.tail + data).count(b"\n\n")
        self.tail = data[-1:]
        if found:
            self.count += found
            if callable(self.on_frames):
                self.on_frames(found)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()


async def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


def save_table(name: str, table: str) -> None:
    """Print a benchmark's table and write it to ``bench/results/<name>``."""
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(table + "\n")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(module: str, *args: str) -> Iterator[tuple[int, int]]:
    """``python -m <module> --serve <port> <args>`` on a free port, until the block ends;
    yields its port and pid once it listens."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", module, "--serve", str(port), *args])
    try:
        asyncio.run(wait_for_port(port))
        yield port, server.pid
    finally:
        server.terminate()
        server.wait()


def pin(core: int) -> None:
    """Keep this process on one core (server and load client on different ones)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(0, {core})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server of the benchmark's own on a free loopback port (another port if the
    one chosen is taken meanwhile); exits when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("this benchmark needs redis-server (Debian package redis-server)")
    for _ in range(3):  # a free port may be taken meanwhile: another one, then
        port = free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", tempfile.mkdtemp()]
        redis = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            asyncio.run(wait_for_port(port, timeout=10))
        except RuntimeError:
            redis.kill()
            redis.wait()
            continue
        return redis, port
    sys.exit("redis-server did not start")


def start_nats() -> tuple[subprocess.Popen[bytes], int]:
    """A nats-server with JetStream of the benchmark's own on a free loopback port, its store
    in a fresh directory; exits when nats-server is not installed."""
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if binary is None:
        sys.exit("this benchmark needs nats-server (Debian package nats-server)")
    for _ in range(3):  # a free port may be taken meanwhile: another one, then
        port = free_port()
        args = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", tempfile.mkdtemp()]
        nats = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            asyncio.run(wait_for_port(port, timeout=10))
        except RuntimeError:
            nats.kill()
            nats.wait()
            continue
        return nats, port
    sys.exit("nats-server did not start")
