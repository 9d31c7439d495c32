"""Graceful shutdown: SIGTERM to a server with 1,000 open streams."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from asyncio import subprocess

from tests.conftest import free_port, start_server_process

STREAMS = 1000
GRACE = 20.0


class Idle(asyncio.Protocol):
    """Reads one idle stream to its end."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


async def test_sigterm_ends_1000_streams_with_a_final_event_and_exits_cleanly():
    port = free_port()
    process = await start_server_process(
        port,
        *("-W", "always", "-X", "tracemalloc=5", "-m", "tests.apps.shutdown"),
        *(str(port), str(GRACE)),
        env={**os.environ, "PYTHONASYNCIODEBUG": ""},
        stdout=subprocess.PIPE,
    )
    loop = asyncio.get_running_loop()
    clients: list[Idle] = []
    for _batch in range(STREAMS // 250):
        opened = await asyncio.gather(
            *(loop.create_connection(Idle, "127.0.0.1", port) for _ in range(250))
        )
        for transport, client in opened:
            transport.write(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(client)
    deadline = time.monotonic() + 30
    while not all(b"200 OK" in c.data for c in clients):  # every stream is open
        assert time.monotonic() < deadline, "not every stream opened"
        await asyncio.sleep(0.05)

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, errors = await asyncio.wait_for(process.communicate(), timeout=GRACE + 10)
    took = time.monotonic() - started
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in clients)), timeout=10)

    log = errors.decode()
    assert process.returncode == 0, log
    assert took < GRACE, f"shutdown took {took:.1f} s, past the {GRACE} s grace period"
    for bad in ("Task was destroyed", "nclosed", "Traceback", "never retrieved"):
        assert bad not in log, log
    for client in clients:  # each got the final event, then the end of the chunked body
        assert b"event: shutdown\n" in client.data
        assert client.data.endswith(b"0\r\n\r\n")
