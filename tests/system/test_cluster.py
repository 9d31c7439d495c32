"""Two app processes sharing one real redis-server: one event stream across processes."""

from __future__ import annotations

import asyncio
import json
import uuid
from asyncio import subprocess
from typing import Any

import aiohttp
import pytest

from tests.conftest import FrameReader, free_port, start_server_process


class App:
    """One ``examples.cluster --serve`` process."""

    def __init__(self, process: subprocess.Process, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"


@pytest.fixture
async def two_apps(redis_server) -> Any:
    prefix = uuid.uuid4().hex
    apps = []
    for _ in range(2):
        port = free_port()
        process = await start_server_process(
            port,
            *("-m", "examples.cluster", "--serve", str(port)),
            *("--redis", redis_server.url, "--prefix", prefix),
        )
        apps.append(App(process, port))
    session = aiohttp.ClientSession()
    yield session, apps
    await session.close()
    for app in apps:
        app.process.terminate()
    for app in apps:
        _, errors = await asyncio.wait_for(app.process.communicate(), timeout=15)
        assert app.process.returncode == 0, errors.decode()
        assert b"Traceback" not in errors, errors.decode()


async def verify(session: aiohttp.ClientSession, app: App, email: str) -> str:
    async with session.post(app.base + "/verify", json={"email": email}) as resp:
        assert resp.status == 200
        return str((await resp.json())["id"])


async def test_event_emitted_through_one_app_reaches_clients_of_the_other(two_apps):
    session, (a, b) = two_apps
    async with session.get(b.base + "/notifications?email=ann@example.com") as stream:
        event_id = await verify(session, a, "ann@example.com")
        frame = await FrameReader(stream).next(timeout=10)
    assert frame.get("id") == event_id
    assert json.loads(frame.data) == {"email": "ann@example.com", "isVerified": True}


async def test_client_moving_from_one_app_to_the_other_resumes_and_loses_nothing(two_apps):
    session, (a, b) = two_apps
    email = "zed@example.com"
    stream = await session.get(a.base + f"/notifications?email={email}")
    reader = FrameReader(stream)
    sent = [await verify(session, a, email) for _ in range(2)]
    received = [f.get("id") for f in await reader.take(2, timeout=10)]
    assert received == sent
    stream.close()  # the client loses A ...
    sent += [await verify(session, b, email) for _ in range(2)]  # ... while B publishes
    headers = {"Last-Event-ID": received[-1]}
    async with session.get(b.base + f"/notifications?email={email}", headers=headers) as resumed:
        reader = FrameReader(resumed)
        received += [f.get("id") for f in await reader.take(2, timeout=10)]
        sent.append(await verify(session, a, email))  # and a live one, through A again
        received.append((await reader.next(timeout=10)).get("id"))
    assert received == sent
