"""Resumable producers and presence across two worker processes sharing one real redis-server
(``examples.cluster --serve``, which serves the demo with the chat): an answer read through
20 cut connections, alternating between the processes, is exactly the model's text."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import uuid
from asyncio import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from examples.chat import answer
from rxsse import MessageEvent, Parser
from rxsse.testing import wait_until
from tests.conftest import free_port, start_server_process


class Worker:
    """One ``examples.cluster --serve`` process."""

    def __init__(self, process: subprocess.Process, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"


async def start_worker(redis_url: str, prefix: str) -> Worker:
    port = free_port()
    process = await start_server_process(
        port,
        *("-m", "examples.cluster", "--serve", str(port)),
        *("--redis", redis_url, "--prefix", prefix),
    )
    return Worker(process, port)


@pytest.fixture
async def workers(redis_server) -> AsyncIterator[tuple[aiohttp.ClientSession, list[Worker]]]:
    prefix = uuid.uuid4().hex
    started = [await start_worker(redis_server.url, prefix) for _ in range(2)]
    session = aiohttp.ClientSession()
    yield session, started
    await session.close()
    for worker in started:
        if worker.process.returncode is None:
            worker.process.terminate()
    for worker in started:
        _, errors = await asyncio.wait_for(worker.process.communicate(), timeout=15)
        assert b"Traceback" not in errors, errors.decode()


async def ask(session: aiohttp.ClientSession, worker: Worker, **body: Any) -> str:
    async with session.post(worker.base + "/chat", json=body) as response:
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])


async def read_events(
    session: aiohttp.ClientSession,
    url: str,
    *,
    last_event_id: str | None = None,
    limit: int | None = None,
) -> tuple[int, list[MessageEvent]]:
    """The status and events of one connection: all of them, or the first ``limit`` (then the
    client cuts the connection, wherever the bytes are)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    parser = Parser()
    events: list[MessageEvent] = []
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            return response.status, events
        async for chunk in response.content.iter_any():
            events += [e for e in parser.feed(chunk) if e.data is not None or e.type != "message"]
            if limit is not None and len(events) >= limit:
                response.close()  # the connection drops: mid-frame, often
                return 200, events[:limit]
    return 200, events


async def test_answer_cut_20_times_across_two_workers_is_exactly_the_models_text(workers):
    session, (a, b) = workers
    prompt = "Explain resumable streams."
    key = await ask(session, a, prompt=prompt, tokens=2000, pace=0.002)
    rng = random.Random(7)
    text: list[str] = []
    last_id: str | None = None
    cuts = connections = 0
    end: MessageEvent | None = None
    while end is None:
        worker = (a, b)[connections % 2]  # each reconnect goes to the other process
        connections += 1
        limit = rng.randint(20, 120) if cuts < 20 else None
        status, events = await read_events(
            session, f"{worker.base}/chat/{key}/stream", last_event_id=last_id, limit=limit
        )
        assert status == 200
        for event in events:
            if event.type == "end":
                end = event
            else:
                assert event.type == "message", event
                text.append(str(event.data))
            last_id = event.id or last_id
        if limit is not None and end is None:
            cuts += 1
    assert cuts == 20
    assert "".join(text) == "".join(answer(prompt, 2000))
    assert len(text) == 2000
    assert json.loads(str(end.data)) == {"reason": "complete"}
    # Having the end, a reconnect is told to stop, on either process.
    for worker in (a, b):
        status, _ = await read_events(
            session, f"{worker.base}/chat/{key}/stream", last_event_id=last_id
        )
        assert status == 204
    # And a client that comes late reads the whole answer from the log, through the other one.
    status, events = await read_events(session, f"{b.base}/chat/{key}/stream")
    assert "".join(str(e.data) for e in events if e.type == "message") == "".join(text)


async def test_an_answer_is_cancelled_from_the_other_worker(workers):
    session, (a, b) = workers
    key = await ask(session, a, prompt="long", tokens=5000, pace=0.01)
    async with session.delete(f"{b.base}/chat/{key}") as response:
        assert await response.json() == {"cancelled": True}
    status, events = await read_events(session, f"{b.base}/chat/{key}/stream")
    assert status == 200
    assert events[-1].type == "end"
    assert json.loads(str(events[-1].data)) == {"reason": "cancelled"}
    assert len(events) - 1 < 5000
    async with session.delete(f"{a.base}/chat/{key}") as response:
        assert await response.json() == {"cancelled": False}  # it has ended


async def test_readers_of_an_answer_whose_worker_died_get_an_end_not_a_hang(workers):
    session, (a, b) = workers
    key = await ask(session, a, prompt="doomed", tokens=5000, pace=0.01)
    async with session.get(f"{b.base}/chat/{key}/stream") as response:
        parser = Parser()
        events: list[MessageEvent] = []
        got_some = False
        async for chunk in response.content.iter_any():
            events += parser.feed(chunk)
            if not got_some and sum(e.type == "message" for e in events) >= 5:
                got_some = True
                a.process.send_signal(signal.SIGKILL)  # the producer's process dies
    assert events[-1].type == "end"
    assert json.loads(str(events[-1].data)) == {"reason": "lost"}
    await a.process.wait()


async def watch(session: aiohttp.ClientSession, worker: Worker, visitor: str) -> Any:
    """Open the page's presence stream as ``visitor``; return the response and its events."""
    response = await session.get(f"{worker.base}/chat/watching?visitor={visitor}")
    assert response.status == 200
    parser = Parser()
    seen: list[dict[str, Any]] = []

    async def pump() -> None:
        with contextlib.suppress(aiohttp.ClientError):  # (its worker may be killed)
            async for chunk in response.content.iter_any():
                events = parser.feed(chunk)
                seen.extend(json.loads(str(e.data)) for e in events if e.type == "presence")

    return response, seen, asyncio.get_running_loop().create_task(pump())


async def test_presence_spans_workers_and_a_crashed_workers_visitors_leave(workers):
    session, (a, b) = workers
    ann, ann_seen, ann_pump = await watch(session, a, "ann")
    bob, _, bob_pump = await watch(session, b, "bob")
    await wait_until(
        lambda: ann_seen and ann_seen[-1]["members"] == {"ann": 1, "bob": 1}, timeout=10
    )
    assert {"kind": "join", "member": "bob"}.items() <= ann_seen[-1].items()
    assert ann_seen[-1]["count"] == 2
    # Bob's process dies without a word: his presence expires, and Ann is told he left.
    b.process.send_signal(signal.SIGKILL)
    await wait_until(lambda: ann_seen[-1]["members"] == {"ann": 1}, timeout=15)
    assert {"kind": "leave", "member": "bob", "count": 1}.items() <= ann_seen[-1].items()
    for pump, response in ((ann_pump, ann), (bob_pump, bob)):
        pump.cancel()
        response.close()
    await b.process.wait()
