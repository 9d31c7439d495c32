"""Measure SSE clients with the conformance suite and print the capability table (Markdown).

``python -m tests.client.conformance.measure``: rxsse, httpx-sse (both served in this
process) and npm's ``eventsource`` (its Node test service, when ``node`` is installed). Each
cell is cases passed / cases run; "-" where the client's API has no way to ask for it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

import rxsse.testing
from tests.client.conformance import harness, httpx_sse_service, rxsse_service
from tests.client.conformance.harness import BASIC, load_cases, measure

NODE_SERVICE = Path(__file__).with_name("node_service.mjs")


@asynccontextmanager
async def in_process(create_app: Callable[[], web.Application]) -> AsyncIterator[str]:
    """A Python test service on a free port: its URL."""
    async with rxsse.testing.serve(create_app(), shutdown_timeout=1) as server:
        yield server.base_url


@asynccontextmanager
async def node_service() -> AsyncIterator[str]:
    """npm eventsource's test service, in a Node process: its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec("node", str(NODE_SERVICE), str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(500):  # until it listens (a deadline of 5 s)
                try:
                    async with session.get(url):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.01)
        yield url
    finally:
        process.terminate()
        await process.wait()


async def table() -> str:
    """Every client's results, one row per capability."""
    services = {
        "rxsse": in_process(rxsse_service.create_app),
        "httpx-sse": in_process(httpx_sse_service.create_app),
    }
    if shutil.which("node"):
        services["npm eventsource"] = node_service()
    harness.DEADLINE = 5.0  # (a failing case waits this long; none passes later)
    results = {}
    for name, service in services.items():
        async with service as url:
            results[name] = await measure(url)
    capabilities = list(dict.fromkeys(case.capability for case in load_cases()))
    rows = ["| capability | " + " | ".join(results) + " |", "|---" * (len(results) + 1) + "|"]
    for capability in capabilities:
        cells = []
        for measured in results.values():
            passed, run = measured.get(capability, (0, 0))
            cells.append(f"{passed}/{run}" if run else "-")
        label = f"`{capability}`" if capability != BASIC else "basic (every client)"
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(asyncio.run(table()))
