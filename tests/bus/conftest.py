"""Fixtures of the bus tests: a Redis Cluster and a NATS server with JetStream, for the broker
contract and their faults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus.clusters import Cluster
from tests.bus.nats_servers import NatsServer


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three primaries and their replicas, shared by the tests that only use it."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server with JetStream, shared by the tests that only use it (each bus has a
    prefix, so a stream, of its own)."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server for one test (which may kill and restart it)."""
    server = NatsServer(tmp_path)
    server.start()
    yield server
    server.stop()
