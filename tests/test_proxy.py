"""Behind a real nginx, configured as the README's production section says (the block is read
from the README, with shorter times): an idle stream outlives a proxy read timeout just above
its heartbeat, and slow-loris clients are closed by the proxy, never reaching the app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from tests.conftest import ROOT, FrameReader, LiveSubscriptions, free_port, wait_until
from tests.nginx import Nginx

HEARTBEAT = 1.0


def readme_nginx_server(
    *, listen: int, upstream: str, header_timeout: str, read_timeout: str
) -> str:
    """The README's nginx ``server`` block, pointed at the test's ports, with its times."""
    blocks = re.findall(r"```nginx\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README shows one nginx configuration"
    server = re.sub(r"(?m)^ {2}", "", blocks[0])  # the block is indented in a list item
    replacements = {
        r"listen 80;": f"listen 127.0.0.1:{listen};",
        r"proxy_pass http://127\.0\.0\.1:8080;": f"proxy_pass http://{upstream};",
        r"client_header_timeout \d+s;": f"client_header_timeout {header_timeout};",
        r"proxy_read_timeout \d+s;": f"proxy_read_timeout {read_timeout};",
    }
    for pattern, value in replacements.items():
        server, count = re.subn(pattern, value, server)
        assert count == 1, f"the README's nginx block has no {pattern!r}"
    return server


@pytest.fixture
async def behind_nginx(serve, tmp_path: Path) -> AsyncIterator[tuple[str, LiveSubscriptions]]:
    """An idle stream (heartbeat 1 s) behind nginx with a read timeout of 1.5 s and a header
    timeout of 1 s; yields nginx's base URL and the stream's live subscriptions."""
    live = LiveSubscriptions()

    @rxsse.sse("/idle")
    def idle() -> rx.Observable[int]:
        return live.track(rx.never())

    app = web.Application()
    rxsse.setup(app, idle, heartbeat=HEARTBEAT)
    server = await serve(app)
    port = free_port()
    config = readme_nginx_server(
        listen=port,
        upstream=server.base_url.split("//", 1)[1],
        header_timeout="1s",
        read_timeout=f"{int(HEARTBEAT * 1500)}ms",
    )
    nginx = Nginx(tmp_path, config, port)
    await asyncio.to_thread(nginx.start)
    try:
        yield f"http://127.0.0.1:{port}", live
    finally:
        await asyncio.to_thread(nginx.stop)


async def test_an_idle_stream_outlives_a_proxy_timeout_just_above_the_heartbeat(behind_nginx):
    base, live = behind_nginx
    async with aiohttp.ClientSession() as session, session.get(base + "/idle") as response:
        assert response.status == 200
        reader = FrameReader(response)
        # Five periods of silence, each ended by a ping: nginx (1.5 s) never cuts it.
        for _ in range(5):
            frame = await reader.next(timeout=HEARTBEAT * 3, comments=True)
            assert frame is not None, "the proxy ended the idle stream"
            assert frame.fields == [("", "ping")]
    await wait_until(lambda: live.live == 0)


async def test_slow_loris_clients_are_closed_by_the_proxy(behind_nginx):
    base, live = behind_nginx
    host, port = base.split("//", 1)[1].split(":")

    async def slow_loris() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /idle HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        try:
            while True:  # one byte of a header that never ends, every 200 ms
                try:
                    return await asyncio.wait_for(reader.read(1024), timeout=0.2)
                except TimeoutError:
                    writer.write(b"a")
        finally:
            writer.close()

    answers = await asyncio.wait_for(
        asyncio.gather(*(slow_loris() for _ in range(200))), timeout=30
    )
    # Closed (nginx ends the connection, with at most a 408), and the app never saw them.
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
    assert live.total == 0
