"""Churn: 10,000 clients come and go; nothing stays behind."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from tests.conftest import free_port, start_server_process

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

        for _ in range(4):  # warm up: the allocator's pools grow to their working size first
            await cycle(port, BATCH)
        await settled()
        before = rss(process.pid)
        for _ in range(CYCLES // BATCH):
            await cycle(port, BATCH)
            async with session.post(base + "/emit"):
                pass
        await settled()  # zero live subscriptions and bus subscribers
        growth = rss(process.pid) - before
        assert growth < 5 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"
    finally:
        await session.close()
        process.terminate()
        _, errors = await process.communicate()
    assert b"Traceback" not in errors, errors.decode()
