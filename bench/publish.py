"""Publishing through a broker: events per second that rxsse's ``RedisBroker`` publishes,
beside raw redis-py pipelining ``XADD ... MAXLEN ~`` in batches of 1,000 (the broker's target:
at least 0.8x of it), and ``NatsBroker`` beside raw nats-py pipelining JetStream publishes
(``publish_async``, 1,000 acknowledgements awaited at a time), on a redis-server and a
nats-server the benchmark starts itself, in one run.

Ways to publish E events, each timed until the server has confirmed the last one:

- raw: redis-py, one pipeline of 1,000 ``XADD`` per round trip; nats-py, 1,000
  ``publish_async`` then their acknowledgements (no ids of their own, no replay log, no
  idempotency: the ceiling of one client connection);
- emit: ``bus.emit`` E - 1 times, then ``await bus.publish`` (the broker publishes in order,
  so the last confirmed means all are);
- emit in bursts: 1,000 ``bus.emit`` per loop iteration (a producer of a price feed), then an
  awaited publish: none may be refused;
- publish: ``await bus.publish`` for each, 1,000 at a time (``asyncio.gather``).

Run: ``python -m bench.publish --events 50000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable

import nats
from redis.asyncio import Redis

from bench.common import pin, save_table, start_nats, start_redis
from rxsse import Broker, EmitError, EventBus, NatsBroker, RedisBroker

PAYLOAD = {"n": 0, "payload": "x" * 32}
BATCH = 1000


async def raw_xadd(url: str, events: int) -> float:
    """Seconds for redis-py to pipeline ``events`` XADDs in batches of :data:`BATCH`."""
    client = Redis.from_url(url)
    data = json.dumps(PAYLOAD)
    started = time.perf_counter()
    for start in range(0, events, BATCH):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(BATCH, events - start)):
            pipe.xadd("raw:stream", {"d": data, "y": ""}, maxlen=100_000, approximate=True)
        await pipe.execute()
    seconds = time.perf_counter() - started
    await client.aclose()
    return seconds


async def raw_jetstream(url: str, events: int) -> float:
    """Seconds for nats-py to publish ``events`` to a JetStream stream, :data:`BATCH` at a
    time without waiting, then their acknowledgements."""
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(name="RAW", subjects=["raw.>"])
    data = json.dumps(PAYLOAD).encode()
    started = time.perf_counter()
    for start in range(0, events, BATCH):
        acks = [await js.publish_async("raw.t", data) for _ in range(min(BATCH, events - start))]
        await asyncio.gather(*acks)
    seconds = time.perf_counter() - started
    await js.delete_stream("RAW")
    await client.close()
    return seconds


def redis_broker(url: str) -> Broker:
    return RedisBroker(url, prefix=f"bench-{os.getpid()}-{time.monotonic_ns()}")


def nats_broker(url: str) -> Broker:
    return NatsBroker(url, prefix=f"bench-{os.getpid()}-{time.monotonic_ns()}")


async def with_bus(
    broker: Broker, events: int, run: Callable[[EventBus, int], Awaitable[None]]
) -> tuple[float, int]:
    """Seconds for ``run`` to publish ``events`` through a fresh bus, and the emits refused or
    failed (the events/s then count them too: they were not published)."""
    bus = EventBus(broker)
    await bus.publish("warm-up", 0)  # connected, fenced
    started = time.perf_counter()
    with contextlib.suppress(EmitError):  # the last publish refused too (counted below)
        await run(bus, events)
    seconds = time.perf_counter() - started
    refused = bus.metrics.emits_rejected + bus.metrics.emit_failures
    await bus.close()
    return seconds, refused


async def emit_all(bus: EventBus, events: int) -> None:
    for n in range(events - 1):
        bus.emit("bench", {"n": n, "payload": "x" * 32})
    await bus.publish("bench", PAYLOAD)


async def emit_in_bursts(bus: EventBus, events: int) -> None:
    for start in range(0, events - 1, BATCH):
        for n in range(start, min(start + BATCH, events - 1)):
            bus.emit("bench", {"n": n, "payload": "x" * 32})
        await asyncio.sleep(0)  # one loop iteration per burst
    await bus.publish("bench", PAYLOAD)


async def publish_each(bus: EventBus, events: int) -> None:
    for start in range(0, events, BATCH):
        count = min(BATCH, events - start)
        await asyncio.gather(
            *(bus.publish("bench", {"n": start + n, "payload": "x" * 32}) for n in range(count))
        )


WAYS: list[tuple[str, Callable[[EventBus, int], Awaitable[None]]]] = [
    ("`bus.emit` E times, then `await bus.publish`", emit_all),
    ("`bus.emit` in bursts of 1,000 per loop iteration", emit_in_bursts),
    ("`await bus.publish`, 1,000 at a time", publish_each),
]


async def measure(
    raw_name: str,
    raw: Callable[[str, int], Awaitable[float]],
    broker_name: str,
    broker: Callable[[str], Broker],
    url: str,
    events: int,
    rounds: int,
) -> list[str]:
    """The rows of one server: its raw client, then the broker's ways to publish."""
    raw_seconds = min([await raw(url, events) for _ in range(rounds)])
    rows = [f"| {raw_name} | {events / raw_seconds:,.0f} | 1.00 | - |"]
    for name, run in WAYS:
        results = [await with_bus(broker(url), events, run) for _ in range(rounds)]
        seconds = min(s for s, _ in results)
        refused = max(r for _, r in results)
        rate = (events - refused) / seconds  # what was published
        ratio = rate * raw_seconds / events
        rows.append(f"| rxsse `{broker_name}`: {name} | {rate:,.0f} | {ratio:.2f} | {refused:,} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pin(0)
    redis, redis_port = start_redis()
    try:
        rows = asyncio.run(
            measure(
                "raw redis-py, pipelined `XADD` x1,000",
                raw_xadd,
                "RedisBroker",
                redis_broker,
                f"redis://127.0.0.1:{redis_port}/0",
                args.events,
                args.rounds,
            )
        )
    finally:
        redis.kill()
        redis.wait()
    nats_server, nats_port = start_nats()
    try:
        rows += asyncio.run(
            measure(
                "raw nats-py, JetStream `publish_async` x1,000",
                raw_jetstream,
                "NatsBroker",
                nats_broker,
                f"nats://127.0.0.1:{nats_port}",
                args.events,
                args.rounds,
            )
        )
    finally:
        nats_server.kill()
        nats_server.wait()
    header = (
        f"Publishing {args.events:,} events (best of {args.rounds}) to one redis-server, then "
        "one nats-server (JetStream, file store), on loopback; one client process pinned to "
        'one core. "x raw" is against the same server\'s raw client.\n\n'
        "| publisher | events published/s | x raw | refused or failed |\n|---|---:|---:|---:|"
    )
    save_table("publish.md", "\n".join([header, *rows]))


if __name__ == "__main__":
    main()
