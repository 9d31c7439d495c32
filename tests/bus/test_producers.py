"""Resumable producers on the in-memory bus, read over real sockets (examples.chat's app) and
through the API: start, read from the start or resume, end, cancel, idle, errors, TTL,
shutdown."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex as rx
from reactivex.disposable import Disposable

from examples import chat
from rxsse import EventBus, MessageEvent, Parser, Producers
from rxsse.testing import wait_until


async def collect(observable: rx.Observable[MessageEvent]) -> list[MessageEvent]:
    """Every event of ``observable`` until it completes."""
    done = asyncio.get_running_loop().create_future()
    events: list[MessageEvent] = []
    observable.subscribe(events.append, done.set_exception, lambda: done.set_result(None))
    await asyncio.wait_for(done, timeout=10)
    return events


async def count_to(n: int, pace: float = 0.0) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(pace)
        yield f"t{i} "


@pytest.fixture
async def producers() -> AsyncIterator[Producers]:
    bus = EventBus(history=10_000)
    await bus.start()
    made = Producers(bus, idle_timeout=0.5, poll=0.02, lease=0.5, ttl=60)
    yield made
    await made.close()
    await bus.close()


def text_of(events: list[MessageEvent]) -> str:
    return "".join(str(e.data) for e in events if e.type in (None, "message"))


def end_of(events: list[MessageEvent]) -> dict[str, Any]:
    assert events[-1].type == "end", events[-1]
    return dict(events[-1].data)


async def test_output_read_from_the_start_and_resumed_from_any_id(producers):
    key = await producers.start(count_to(50), key="answer-1")
    assert key == "answer-1"
    events = await collect(producers.read(key))
    assert text_of(events) == "".join(f"t{i} " for i in range(50))
    assert end_of(events) == {"reason": "complete"}
    for cut in (0, 17, 49):
        resumed = await collect(producers.read(key, last_event_id=events[cut].id))
        assert [e.id for e in resumed] == [e.id for e in events[cut + 1 :]]
    status = await producers.status(key)
    assert status is not None
    assert (status.state, status.end_id) == ("ended", events[-1].id)


async def test_an_observable_from_another_thread_keeps_its_order_and_types(producers):
    def emit(observer: Any, scheduler: Any = None) -> Any:
        def run() -> None:
            for n in range(300):
                observer.on_next(MessageEvent(n, type="tick") if n % 2 else n)
            observer.on_completed()

        threading.Thread(target=run).start()
        return Disposable()

    key = await producers.start(rx.create(emit))
    events = await collect(producers.read(key))
    assert [e.data for e in events[:-1]] == list(range(300))
    assert [e.type for e in events[:4]] == [None, "tick", None, "tick"]


async def test_a_failing_producer_ends_with_its_error(producers):
    async def failing() -> AsyncIterator[str]:
        yield "one"
        raise RuntimeError("the model crashed")

    key = await producers.start(failing())
    events = await collect(producers.read(key))
    assert text_of(events) == "one"
    assert end_of(events) == {"reason": "error", "error": "RuntimeError: the model crashed"}


async def test_cancel_ends_the_output_and_stops_the_source(producers):
    stopped = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                await asyncio.sleep(0.001)
                n += 1
                yield n
        finally:
            stopped.set()

    key = await producers.start(endless())
    events: list[MessageEvent] = []
    producers.read(key).subscribe(events.append)
    await wait_until(lambda: len(events) >= 5)
    assert await producers.cancel(key) is True
    await asyncio.wait_for(stopped.wait(), timeout=5)
    await wait_until(lambda: events[-1].type == "end")
    assert end_of(events) == {"reason": "cancelled"}
    assert [e.data for e in events[:-1]] == list(range(1, len(events)))
    assert await producers.cancel(key) is False  # ended
    assert await producers.cancel("no-such-key") is False
    await wait_until(lambda: producers.running == 0)


async def test_a_producer_nobody_reads_is_cancelled_as_idle(producers):
    key = await producers.start(count_to(100_000, pace=0.001))
    await wait_until(lambda: producers.running == 0, timeout=10)
    events = await collect(producers.read(key))
    assert end_of(events) == {"reason": "idle"}


async def test_a_read_producer_is_not_idle(producers):
    key = await producers.start(count_to(800, pace=0.001))
    events = await collect(producers.read(key))  # read throughout: longer than idle_timeout
    assert end_of(events) == {"reason": "complete"}
    assert text_of(events) == "".join(f"t{i} " for i in range(800))


async def test_shutdown_ends_the_running_producers(producers):
    key = await producers.start(count_to(100_000, pace=0.001))
    events: list[MessageEvent] = []
    producers.read(key).subscribe(events.append)
    await wait_until(lambda: len(events) >= 3)
    await producers.close()
    await wait_until(lambda: events[-1].type == "end")
    assert end_of(events) == {"reason": "shutdown"}


async def test_the_record_and_the_log_expire_after_the_ttl():
    bus = EventBus(history=100)
    await bus.start()
    producers = Producers(bus, ttl=0.2, poll=0.02, lease=0.5)
    key = await producers.start(count_to(3))
    await wait_until(lambda: producers.running == 0)
    assert await producers.status(key) is not None
    deadline = asyncio.get_running_loop().time() + 5
    while await producers.status(key) is not None:
        assert asyncio.get_running_loop().time() < deadline, "the record did not expire"
        await asyncio.sleep(0.02)
    await bus.close()


@pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "a.b", "é"])
async def test_bad_keys_are_a_value_error(producers, bad):
    with pytest.raises(ValueError, match="producer key"):
        await producers.start(count_to(1), key=bad)


async def test_a_key_in_use_and_a_bad_source_are_value_errors(producers):
    await producers.start(count_to(1), key="same")
    with pytest.raises(ValueError, match="exists"):
        await producers.start(count_to(1), key="same")
    with pytest.raises(ValueError, match="Observable or an async iterable"):
        await producers.start([1, 2, 3])  # type: ignore[arg-type]


async def read_http(server: Any, path: str, last_event_id: str | None = None) -> Any:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with server.get(path, headers=headers) as response:
        if response.status != 200:
            return response.status, await response.text()
        parser = Parser()
        events = []
        async for chunk in response.content.iter_any():
            events += parser.feed(chunk)
        return response.status, events


async def test_the_chat_over_http_resumes_ends_with_204_and_answers_errors_in_json(serve):
    server = await serve(chat.create_app())
    async with server.post("/chat", json={"prompt": "hi", "tokens": 40, "pace": 0}) as response:
        assert response.status == 202
        started = await response.json()
    status, events = await read_http(server, started["stream"])
    assert status == 200
    assert text_of(events) == "".join(chat.answer("hi", 40))
    status, resumed = await read_http(server, started["stream"], last_event_id=events[9].id)
    assert text_of(resumed) == "".join(chat.answer("hi", 40)[10:])
    status, _ = await read_http(server, started["stream"], last_event_id=events[-1].id)
    assert status == 204  # it has the end: stop reconnecting
    status, body = await read_http(server, "/chat/unknown/stream")
    assert (status, json.loads(body)["error"]) == (404, "no such stream (unknown, or expired)")
    status, body = await read_http(server, "/chat/bad%20key/stream")
    assert status == 400 and "key" in json.loads(body)["error"]
    async with server.post("/chat", json={"prompt": "", "tokens": 0}) as response:
        assert response.status == 400
    status, body = await read_http(server, "/chat/watching")
    assert status == 400 and "visitor" in json.loads(body)["error"]


async def test_the_chat_cut_drops_a_stream_that_resumes_where_it_was(serve):
    server = await serve(chat.create_app())
    async with server.post("/chat", json={"prompt": "cut", "tokens": 3000, "pace": 0.001}) as r:
        started = await r.json()
    parser = Parser()
    events: list[MessageEvent] = []
    async with server.get(started["stream"]) as response:
        async for chunk in response.content.iter_any():
            events += parser.feed(chunk)
            if len(events) >= 10:
                async with server.post(f"/chat/{started['id']}/cut") as cut:
                    assert await cut.json() == {"cut": 1}
                break
        with pytest.raises(Exception):  # noqa: B017 (aiohttp raises one of several)
            async for chunk in response.content.iter_any():
                events += parser.feed(chunk)
    _, rest = await read_http(server, started["stream"], last_event_id=events[-1].id)
    assert text_of(events + rest) == "".join(chat.answer("cut", 3000))


async def test_presence_counts_members_joins_and_leaves():
    bus = EventBus(presence_interval=0.05)
    await bus.start()
    seen: list[Any] = []
    watching = bus.presence("room").subscribe(seen.append)
    await wait_until(lambda: bool(seen))
    assert (seen[0].kind, seen[0].count) == ("sync", 0)
    ann = bus.on("room", member="ann").subscribe(lambda e: None)
    ann_again = bus.on("room", member="ann").subscribe(lambda e: None)
    bob = bus.presence("room", member="bob").subscribe(lambda e: None)
    await wait_until(lambda: seen[-1].members == {"ann": 2, "bob": 1})
    joins = [e.member for e in seen if e.kind == "join"]
    assert sorted(joins) == ["ann", "bob"]  # ann once, however many subscriptions
    assert (seen[-1].count, seen[-1].connections) == (2, 3)
    ann.dispose()
    await wait_until(lambda: seen[-1].members == {"ann": 1, "bob": 1})
    ann_again.dispose()
    await wait_until(lambda: seen[-1].kind == "leave")
    assert (seen[-1].member, seen[-1].members) == ("ann", {"bob": 1})
    assert await bus.members("room") == {"bob": 1}
    bob.dispose()
    watching.dispose()
    with pytest.raises(ValueError, match="member"):
        bus.on("room", member="")
    await bus.close()
