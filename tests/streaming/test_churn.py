"""Churn: 10,000 clients come and go; nothing stays behind, and an ended stream is freed at
once, without waiting for the cyclic garbage collector."""

from __future__ import annotations

import asyncio
import gc
import re
import socket
import weakref
from pathlib import Path

import aiohttp
import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from tests.conftest import free_port, start_server_process, wait_until

CYCLES, BATCH = 10_000, 500  # batches stay far below the open-file limit


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


async def cycle(port: int, count: int) -> None:
    """Open ``count`` streams, wait until each has its headers, then drop them all."""

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0-x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        return writer

    writers = await asyncio.gather(*(one() for _ in range(count)))
    for writer in writers:
        writer.transport.abort()


async def test_10000_connect_disconnect_cycles_leave_nothing_behind():
    port = free_port()
    process = await start_server_process(port, "-m", "tests.apps.churn", str(port))
    session = aiohttp.ClientSession()
    base = f"http://127.0.0.1:{port}"
    try:

        async def settled() -> None:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                async with session.get(base + "/stats") as resp:
                    stats = await resp.json()
                if stats == {"bus": 0, "open": 0}:
                    return
                assert asyncio.get_running_loop().time() < deadline, stats
                await asyncio.sleep(0.05)

        async def objects() -> int:
            async with session.get(base + "/objects") as resp:
                return int((await resp.json())["objects"])

        for _ in range(4):  # warm up: the allocator's pools grow to their working size first
            await cycle(port, BATCH)
        await settled()
        before, objects_before = rss(process.pid), await objects()
        for _ in range(CYCLES // BATCH):
            await cycle(port, BATCH)
            async with session.post(base + "/emit"):
                pass
        await settled()  # zero live subscriptions and bus subscribers
        # A leak of one object a stream would leave 10,000: the count comes back to where it was.
        assert await objects() - objects_before < 500
        # And no native leak: RSS moves by what the allocator keeps (0.2 to 4.7 MiB seen).
        growth = rss(process.pid) - before
        assert growth < 10 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    finally:
        await session.close()
        process.terminate()
        _, errors = await process.communicate()
    assert b"Traceback" not in errors, errors.decode()


@pytest.mark.parametrize("ending", ["client-left", "dropped-stuck-reader"])
async def test_1000_ended_streams_are_freed_without_the_cyclic_gc(serve, ending):
    # An ended stream must be freed by reference counting alone: a stream kept in a reference
    # cycle holds its transport, request and buffers until the cyclic GC happens to run.
    big = rxsse.MessageEvent("x" * 20_000)  # encoded once, whatever the stream count
    source = rx.interval(0.001).pipe(ops.map(lambda n: big))  # periodic, like a feed

    @rxsse.sse("/s")
    def feed() -> rx.Observable[rxsse.MessageEvent]:
        return source

    app = web.Application()
    rxsse.setup(app, feed, options=rxsse.StreamOptions(heartbeat=5.0, max_buffer_frames=5))
    server = await serve(app)
    host, port = server.base_url.split("//", 1)[1].split(":")
    sessions: list[weakref.ref[rxsse.StreamSession]] = []

    async def open_one() -> asyncio.StreamWriter:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a stuck reader fills up soon
        sock.connect((host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        return writer

    gc.collect()
    gc.disable()
    try:
        for _ in range(10):
            writers = await asyncio.gather(*(open_one() for _ in range(100)))
            await wait_until(lambda: len(rxsse.open_streams(app)) == 100)
            sessions += [weakref.ref(session) for session in rxsse.open_streams(app)]
            if ending == "client-left":
                for writer in writers:
                    writer.transport.abort()
            # else: they read nothing, and are dropped for falling behind
            await wait_until(lambda: not rxsse.open_streams(app), timeout=30)
            for writer in writers:
                writer.transport.abort()
        alive = lambda: sum(ref() is not None for ref in sessions)  # noqa: E731
        # (the last handlers may still be returning; with the GC off, a cycle never goes)
        await wait_until(lambda: alive() == 0, timeout=10, message=f"{alive()} kept alive")
    finally:
        gc.enable()
    assert len(sessions) == 1000
