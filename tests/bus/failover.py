"""A failover mid-stream, the same for every Redis set-up that fails over (Sentinel, Cluster):
the primary is killed (SIGKILL) while events are being published, a replica is promoted, the
broker follows it there, and every subscriber ends with every acknowledged event once, or a
``reset`` exactly where the failover lost some (a replica may be behind)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Protocol

from aiohttp import web
from reactivex import Observable

import rxsse
from rxsse import EmitError, EventBus, EventSource, MessageEvent, RedisBroker
from tests.conftest import RedisServer, wait_until


class FailsOver(Protocol):
    """A set-up whose primary the test kills: its URL, its primary and that one's replica
    (the one to be promoted), and where the primary is now."""

    url: str

    def roles(self, prefix: str) -> tuple[RedisServer, RedisServer]: ...

    def primary_port(self, prefix: str) -> int | None: ...


EVENTS = 400
KILL_AT = 150


def seq(event_id: str) -> int:
    return int(event_id.partition("-")[0])


def check_subscriber(name: str, got: list[MessageEvent], acknowledged: dict[int, str]) -> int:
    """Every acknowledged event once, or a reset exactly where events were lost; returns how
    many acknowledged events the resets announced (lost)."""
    numbers = [event.data for event in got if event.type != "reset"]
    assert len(numbers) == len(set(numbers)), f"{name}: an event came twice"
    resets = [event for event in got if event.type == "reset"]
    missing = {n for n in acknowledged if n not in numbers}
    if not missing:
        return 0
    assert resets, f"{name}: {len(missing)} acknowledged events lost without a reset"
    # The reset is where the loss begins: every acknowledged event up to it had arrived
    # before it; the missing ones are all after it.
    reset = resets[0]
    before = [e.data for e in got[: got.index(reset)] if e.type != "reset"]
    kept_upto = seq(str(reset.id))
    assert all(seq(acknowledged[n]) > kept_upto for n in missing), name
    assert {n for n, i in acknowledged.items() if seq(i) <= kept_upto} <= set(before), name
    return len(missing)


LAG = 50


async def fail_over(setup: FailsOver, serve: Any, capsys: Any, *, replica_behind: bool) -> None:
    """``replica-behind``: the primary loses its replica (paused, its link cut) for the last
    :data:`LAG` events before it is killed, so the promoted replica lacks those: every
    subscriber (who got them live) gets one reset, exactly where they begin, and a client
    resuming later from before them gets a reset too."""
    prefix = uuid.uuid4().hex
    primary, replica = setup.roles(prefix)
    broker = RedisBroker(setup.url, prefix=prefix, emit_timeout=1.0, block_ms=200)
    bus = EventBus(broker, history=10_000)
    await bus.start()
    received: list[list[MessageEvent]] = [[], [], []]
    subscriptions = [bus.on("t").subscribe(events.append) for events in received]

    @rxsse.sse("/t")
    def events(bus: EventBus, last_event_id: str | None = None) -> Observable[Any]:
        return bus.on("t", last_event_id=last_event_id)

    app = web.Application()
    rxsse.setup(app, events, bus=bus)
    server = await serve(app)
    over_http: list[MessageEvent] = []

    async def read() -> None:
        async with EventSource(server.url("/t"), retry=0.05) as source:
            async for event in source:
                data = json.loads(event.data) if event.data else None
                over_http.append(MessageEvent(data, id=event.id, type=event.type))

    reader = asyncio.ensure_future(read())
    await wait_until(lambda: len(rxsse.open_streams(app)) == 1)

    acknowledged: dict[int, str] = {}
    failed_attempts = 0
    first_primary = setup.primary_port(prefix)
    try:
        for n in range(EVENTS):
            if replica_behind and n == KILL_AT - LAG:
                replica.pause()  # it takes nothing more from the primary...
                primary.command("CLIENT", "KILL", "TYPE", "replica")  # ...ever
            if n == KILL_AT:
                primary.kill()  # mid-stream
                if replica_behind:
                    replica.resume()  # to be promoted, without the last LAG
            while True:  # an emit that failed is emitted again, with its key: once, at most
                try:
                    acknowledged[n] = await bus.publish("t", n, key=f"{prefix}-{n}")
                    break
                except EmitError:
                    failed_attempts += 1
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.002)  # a stream, not a burst: the kill lands mid-way
        assert setup.primary_port(prefix) != first_primary  # the replica was promoted
        last = seq(acknowledged[EVENTS - 1])

        def caught_up(events: list[MessageEvent]) -> bool:
            return any(e.id is not None and seq(str(e.id)) >= last for e in events)

        everyone = [*received, over_http]
        await wait_until(lambda: all(caught_up(r) for r in everyone), timeout=30)
        names = ["bus subscriber 1", "bus subscriber 2", "bus subscriber 3", "the HTTP client"]
        lost = [
            check_subscriber(name, r, acknowledged) for name, r in zip(names, everyone, strict=True)
        ]
        resets = [sum(1 for e in r if e.type == "reset") for r in everyone]
        # Live subscribers got the lost events before the loss: none is missing for them...
        assert lost == [0] * 4
        if replica_behind:
            # ...and each got one reset, exactly where the promoted replica's data ends.
            kept = seq(acknowledged[KILL_AT - LAG - 1])
            reset_points = [seq(str(e.id)) for r in everyone for e in r if e.type == "reset"]
            assert reset_points == [kept] * 4
            # A client that comes later, from before the loss, is told so too: a reset, then
            # the events from where the data set holds them.
            late: list[MessageEvent] = []
            before_loss = acknowledged[KILL_AT - LAG - 10]
            subscription = bus.on("t", last_event_id=before_loss).subscribe(late.append)
            subscriptions.append(subscription)
            await wait_until(lambda: caught_up(late), timeout=10)
            assert late[0].type == "reset"
        else:
            assert resets == [0] * 4
        with capsys.disabled():
            delivered = [sum(1 for e in r if e.type != "reset") for r in everyone]
            store_lost = LAG if replica_behind else 0
            print(
                f"\nfailover ({'replica behind' if replica_behind else 'replica in sync'}): "
                f"{len(acknowledged)} acknowledged, {failed_attempts} failed attempts retried, "
                f"delivered {delivered}, lost by the store {store_lost}, resets {resets}"
            )
    finally:
        for subscription in subscriptions:
            subscription.dispose()
        reader.cancel()
        await bus.close()
