"""Shared test helpers: reading raw SSE frames off a real socket, serving apps (with
rxsse.testing, which also gives wait_until and LiveSubscriptions), and a real redis-server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest
from aiohttp import web

import rxsse.testing

# The tests import these from here, beside the raw-frame helpers.
from rxsse.testing import LiveServer as LiveServer
from rxsse.testing import LiveSubscriptions as LiveSubscriptions
from rxsse.testing import wait_until as wait_until


@dataclass
class Frame:
    """One ``text/event-stream`` frame as the server wrote it (fields in order of appearance)."""

    fields: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        values = [value for key, value in self.fields if key == name]
        if not values:
            return None
        return "\n".join(values) if name == "data" else values[-1]

    @property
    def data(self) -> str | None:
        return self.get("data")

    @property
    def is_comment(self) -> bool:
        return all(key == "" for key, _ in self.fields)


def parse_frame(raw: bytes) -> Frame:
    frame = Frame()
    for line in raw.decode().split("\n"):
        name, _, value = line.partition(":")
        frame.fields.append((name, value[1:] if value.startswith(" ") else value))
    return frame


class FrameReader:
    """Reads whole frames (separated by a blank line) from a streaming client response. A
    comment line at a frame boundary (rxsse's opening line and heartbeats, which have no blank
    line after them) is a frame of its own."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.buffer = b""
        self.eof = False

    async def next(self, *, timeout: float = 5.0, comments: bool = False) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        async with asyncio.timeout(timeout):
            while True:
                if self.buffer.startswith(b":") and b"\n" in self.buffer:
                    line, _, self.buffer = self.buffer.partition(b"\n")
                    if comments:
                        return parse_frame(line)
                    continue
                head, sep, rest = self.buffer.partition(b"\n\n")
                if sep:
                    self.buffer = rest
                    frame = parse_frame(head)
                    if comments or not frame.is_comment:
                        return frame
                    continue
                if self.eof:
                    assert self.buffer == b"", f"stream ended inside a frame: {self.buffer!r}"
                    return None
                chunk = await self.response.content.readany()
                if not chunk:
                    self.eof = True
                self.buffer += chunk

    async def take(self, count: int, *, timeout: float = 5.0) -> list[Frame]:
        frames = []
        for _ in range(count):
            frame = await self.next(timeout=timeout)
            assert frame is not None, f"stream ended after {len(frames)} of {count} frames"
            frames.append(frame)
        return frames

    async def rest(self, *, timeout: float = 5.0) -> list[Frame]:
        """Every remaining frame until the server ends the stream."""
        frames = []
        while (frame := await self.next(timeout=timeout)) is not None:
            frames.append(frame)
        return frames


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """``await serve(app, **runner_options)``: the app on a real socket, served as
    ``web.run_app`` serves it (rxsse.testing.serve), shut down at the end of the test."""
    async with AsyncExitStack() as stack:

        async def start(app: web.Application, **runner_options: Any) -> LiveServer:
            return await stack.enter_async_context(rxsse.testing.serve(app, **runner_options))

        yield start


async def raw_get(base_url: str, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Send ``GET path`` over a bare socket and return it, so a test can read nothing (a stuck
    client), or read at a pace of its own."""
    host, port = base_url.split("//", 1)[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    return reader, writer


# -- a real redis-server -------------------------------------------------------------------------


def missing(message: str) -> NoReturn:
    """A real component the test needs is not installed: under CI that fails the run (the CI
    script installs them all), elsewhere the test is skipped."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ROOT = Path(__file__).resolve().parent.parent


async def start_server_process(
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
    stdout: int = asyncio.subprocess.DEVNULL,
    stderr: int = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """Run ``python *args`` from the repository root and wait until it listens on ``port``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=env, stdout=stdout, stderr=stderr
    )
    deadline = time.monotonic() + 20
    while True:
        assert process.returncode is None, f"{args} exited early"
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert time.monotonic() < deadline, f"{args} did not start listening"
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return process


class RedisServer:
    """A redis-server process on a free loopback port, with its data in ``directory`` (AOF on,
    so a restart keeps the streams, as a production Redis would).

    The fault tests stop, kill (SIGKILL), pause (SIGSTOP), wipe and restart it, and can make it
    load an older snapshot: ``save()`` writes one, and ``start(from_snapshot=True)`` loads it
    instead of the AOF.
    """

    def __init__(
        self, directory: Path, *, persistent: bool = True, args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.directory = directory
        self.persistent = persistent
        self.args = args  #: more redis-server options (e.g. ``--replicaof host port``)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, from_snapshot: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            missing("redis-server is not installed (Debian package redis-server)")
        self.process = subprocess.Popen(
            [
                binary,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "no"),
                *("--save", "", "--dir", str(self.directory)),
                *("--appendonly", "yes" if self.persistent and not from_snapshot else "no"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.ping():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *words: str) -> bytes:
        """Send one inline command and return the first line of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            return sock.makefile("rb").readline().strip()

    def clients(self) -> list[str]:
        """``CLIENT LIST``: one line per connection (its last command in ``cmd=``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(b"CLIENT LIST\r\n")
            answer = sock.makefile("rb")
            length = int(answer.readline().strip()[1:])  # a bulk string: $<length>
            return answer.read(length).decode().splitlines()

    def save(self) -> None:
        """Write a snapshot (dump.rdb) of the data as it is now."""
        assert self.command("SAVE") == b"+OK"

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM: the AOF is complete)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot shut down
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crash does."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def wipe(self) -> None:
        """Stop and delete every data file: the next start is empty."""
        self.kill()
        for path in self.directory.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test (which may stop and restart it)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


# -- headless Chromium -----------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("Chromium is not installed (Debian packages chromium and chromium-driver)")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[test]')")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        await browser.close()
