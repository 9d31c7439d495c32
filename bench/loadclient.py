"""The compiled load client (``bench/loadclient.c``): built with the machine's ``gcc`` when
``make bench`` runs, driven from Python over its stdin and stdout. Without ``gcc`` the benchmark
falls back to its Python client, and says so in its results."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.common import CLIENT_CORE

SOURCE = Path(__file__).with_name("loadclient.c")
BINARY = Path(__file__).with_name("loadclient")
#: Connections per loopback source address: one address has about 28,000 ports to one server.
PER_ADDRESS = 5000


def build() -> Path | None:
    """The client's binary, compiled if it is missing or older than its source; None without
    a C compiler."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    subprocess.run([compiler, "-O2", "-o", str(BINARY), str(SOURCE)], check=True)
    return BINARY


class LoadClient:
    """``clients`` SSE connections to ``path`` on one epoll loop, pinned to the client core.

    ``await expect(total)`` waits until every client has ``total`` frames and returns, for each
    frame since the last call, the ``time.monotonic()`` at which the last client got it.
    """

    def __init__(self, binary: Path, port: int, clients: int, path: str) -> None:
        self._args = [str(binary), str(port), str(clients), path]
        self._args.append(str(max(1, -(-clients // PER_ADDRESS))))
        self._process: asyncio.subprocess.Process | None = None
        self.bytes = 0

    async def __aenter__(self) -> LoadClient:
        self._process = await asyncio.create_subprocess_exec(
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # a line holds a time for every frame since the last "expect"
        )
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > CLIENT_CORE:
            os.sched_setaffinity(self._process.pid, {CLIENT_CORE})
        assert self._process.stdout is not None
        ready = await asyncio.wait_for(self._process.stdout.readline(), 120)
        if ready.strip() != b"ready":
            raise RuntimeError(f"the load client did not start: {ready!r}")
        return self

    async def expect(self, total: int, timeout: float = 120) -> list[float]:
        process = self._process
        assert process is not None and process.stdin and process.stdout
        process.stdin.write(f"expect {total}\n".encode())
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), timeout)
        answer = json.loads(line)
        self.bytes = int(answer["bytes"])
        return [float(t) for t in answer["last"]]

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(b"quit\n")
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
