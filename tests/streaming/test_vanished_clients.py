"""A client that vanishes without closing (its machine or its network gone) is dropped within
``heartbeat + send_timeout`` (``2 * send_timeout`` without heartbeat).

The client runs in a network namespace of its own, joined to this host by a veth pair; the
test then removes its address, so the server's packets go out and nothing answers them, as
when a phone loses its network. (A loopback client cannot vanish: its kernel always answers.)
Needs root and iproute2, as in CI.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from rxsse.testing import LiveSubscriptions, serve, wait_until
from tests.conftest import missing

# Connects, sends the GET, says "open" once the headers came, then never reads again.
CLIENT = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
sock = socket.create_connection((host, port))
sock.sendall(b"GET /s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
received = b""
while b"\\r\\n\\r\\n" not in received:
    received += sock.recv(4096)
print("open", flush=True)
time.sleep(3600)
"""


class VanishingHost:
    """A network namespace with one address, 10.213.<n>.2, reachable from 10.213.<n>.1."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.namespace = f"rxsse-{tag}"
        self.outside = f"rxh{tag}"
        self.inside = f"rxn{tag}"
        n = int(tag, 16) % 250
        self.server_address = f"10.213.{n}.1"
        self.client_address = f"10.213.{n}.2"
        self.clients: list[asyncio.subprocess.Process] = []

    def up(self) -> None:
        ns = ("ip", "netns", "exec", self.namespace)
        for command in (
            ("ip", "netns", "add", self.namespace),
            ("ip", "link", "add", self.outside, "type", "veth", "peer", "name", self.inside),
            ("ip", "link", "set", self.inside, "netns", self.namespace),
            ("ip", "addr", "add", f"{self.server_address}/30", "dev", self.outside),
            ("ip", "link", "set", self.outside, "up"),
            (*ns, "ip", "addr", "add", f"{self.client_address}/30", "dev", self.inside),
            (*ns, "ip", "link", "set", self.inside, "up"),
        ):
            subprocess.run(command, check=True, capture_output=True)

    async def connect(self, port: int) -> None:
        """Start the client in the namespace; return once its stream is open."""
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.namespace, sys.executable, "-c", CLIENT,
            self.server_address, str(port), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.clients.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        assert line.strip() == b"open", line

    def vanish(self) -> None:
        """The client's network is gone: what the server sends is dropped, unanswered."""
        subprocess.run(
            ("ip", "netns", "exec", self.namespace, "ip", "addr", "flush", "dev", self.inside),
            check=True,
        )

    async def down(self) -> None:
        for client in self.clients:
            client.kill()
            await client.wait()
        for command in (
            ("ip", "netns", "del", self.namespace),
            ("ip", "link", "del", self.outside),
        ):
            await asyncio.to_thread(subprocess.run, command, capture_output=True)


@pytest.fixture
async def vanishing_host() -> AsyncIterator[VanishingHost]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("needs root and iproute2 (ip netns) to make a client vanish")
    host = VanishingHost()
    try:
        host.up()
        yield host
    finally:
        await host.down()


@pytest.mark.parametrize("heartbeat", [1.0, None], ids=["heartbeat", "keepalive"])
async def test_a_client_that_vanished_is_dropped_within_the_bound(vanishing_host, heartbeat):
    live = LiveSubscriptions()

    @rxsse.sse("/s")
    def idle() -> rx.Observable[int]:
        return live.track(rx.never())

    app = web.Application()
    rxsse.setup(app, idle, options=rxsse.StreamOptions(heartbeat=heartbeat, send_timeout=2.0))
    async with serve(app, host=vanishing_host.server_address) as server:
        await vanishing_host.connect(int(server.base_url.rsplit(":", 1)[1]))
        await wait_until(lambda: live.live == 1)
        vanishing_host.vanish()
        # The bound is 3 s (heartbeat 1 + send_timeout 2) or 4 s (2 x send_timeout); the
        # system's own retransmissions would take about 15 minutes.
        await wait_until(lambda: live.live == 0, timeout=30, message="still subscribed")
        assert rxsse.metrics(app).disconnects == 1
