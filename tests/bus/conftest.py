"""Fixtures of the bus tests: a Redis Cluster, for the broker contract and its failover."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.bus.clusters import Cluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three primaries and their replicas, shared by the tests that only use it."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()
