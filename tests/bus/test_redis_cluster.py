"""The Redis bus on a Redis Cluster: six real nodes (three primaries, a replica each). A prefix's
keys share its hash tag, so each bus lives in one slot; different prefixes spread over the
primaries. The primary serving a bus is killed mid-stream (see :mod:`tests.bus.failover`). The
broker contract itself runs on a cluster in ``tests/bus/test_bus.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rxsse import EventBus, RedisBroker
from tests.bus.clusters import Cluster
from tests.bus.failover import fail_over
from tests.conftest import wait_until


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster for one test (which kills one of its primaries)."""
    cluster = Cluster(tmp_path)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.mark.parametrize("replica_behind", [False, True], ids=["replica-in-sync", "replica-behind"])
async def test_a_failover_in_the_cluster_loses_no_acknowledged_event_silently(
    own_cluster, serve, capsys, replica_behind
):
    await fail_over(own_cluster, serve, capsys, replica_behind=replica_behind)


async def test_buses_of_different_prefixes_spread_over_the_primaries(redis_cluster):
    """One bus is one slot; an app splits its topics over several buses (one per prefix) to use
    every primary, and each bus keeps its order, resume and patterns."""
    prefixes: dict[int, str] = {}
    while len(prefixes) < 3:  # a prefix served by each primary
        prefix = uuid.uuid4().hex
        prefixes.setdefault(redis_cluster.primary_of(f"{{{prefix}}}:seq").port, prefix)
    buses = [EventBus(RedisBroker(redis_cluster.url, prefix=p)) for p in prefixes.values()]
    try:
        got: list[list[str]] = [[] for _ in buses]
        for bus, events in zip(buses, got, strict=True):
            await bus.start()
            bus.on("orders.*").subscribe(lambda event, events=events: events.append(event.id))
        ids = [[await bus.publish(f"orders.{n}", n) for n in range(5)] for bus in buses]
        await wait_until(lambda: all(len(events) == 5 for events in got))
        assert got == ids
        for bus, bus_ids in zip(buses, ids, strict=True):  # resume within each bus
            resumed: list[str] = []
            bus.on("orders.*", last_event_id=bus_ids[1]).subscribe(
                lambda event, resumed=resumed: resumed.append(str(event.id))
            )
            await wait_until(lambda resumed=resumed: len(resumed) == 3)
            assert resumed == bus_ids[2:]
        # Each primary holds one bus's keys; the others send its commands there.
        for port, prefix in prefixes.items():
            for node in redis_cluster.nodes:
                if node.port in prefixes:
                    answer = node.command("EXISTS", f"{{{prefix}}}:seq")
                    assert answer == b":1" if node.port == port else answer.startswith(b"-MOVED")
    finally:
        for bus in buses:
            await bus.close()
