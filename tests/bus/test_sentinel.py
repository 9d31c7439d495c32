"""The Redis bus behind Redis Sentinel: a primary, a replica and three sentinels, real processes,
and the primary killed mid-stream (see :mod:`tests.bus.failover`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus.failover import fail_over
from tests.bus.sentinels import Sentinels


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[Sentinels]:
    setup = Sentinels(tmp_path)
    setup.start()
    yield setup
    setup.stop()


@pytest.mark.parametrize("replica_behind", [False, True], ids=["replica-in-sync", "replica-behind"])
async def test_a_failover_loses_no_acknowledged_event_silently(
    sentinels, serve, capsys, replica_behind
):
    """``replica-behind``: the primary loses its replica (paused, its link cut) for the last
    events before it is killed, so the promoted replica lacks those: every subscriber (who got
    them live) gets one reset, exactly where they begin, and a client resuming later from
    before them gets a reset too."""
    await fail_over(sentinels, serve, capsys, replica_behind=replica_behind)
