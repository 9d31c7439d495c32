"""State the processes of one bus share besides events: small records that expire.

Presence (who listens where) and resumable producers (which run, which ended, where their log
ends) keep records here: a record is a set of string fields under a name, with a time to live
that each write renews. The in-memory store serves one process; ``RedisState`` (from
``RedisBroker``) serves every process sharing a Redis, so that a record written by a process
that crashed disappears when its time runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol


class SharedState(Protocol):
    """Records of string fields under names, each record with a time to live."""

    async def put(self, name: str, fields: Mapping[str, str], ttl: float) -> None:
        """Set ``fields`` of the record ``name`` (others are kept) and make the whole record
        expire ``ttl`` seconds from now."""

    async def read(self, name: str) -> dict[str, str]:
        """The fields of ``name`` (empty when there is no such record, or it expired)."""

    async def remove(self, name: str, fields: Iterable[str]) -> None:
        """Delete ``fields`` of ``name`` (the record goes when its last field does)."""

    async def expire_log(self, topic: str, ttl: float) -> None:
        """Drop the replay log of ``topic`` ``ttl`` seconds from now (the bus's log of a
        finished producer)."""


def shared_state_of(broker: object) -> SharedState:
    """The broker's shared records (its ``shared_state()``), or this process's own."""
    make = getattr(broker, "shared_state", None)
    return make() if callable(make) else MemoryState()


class MemoryState:
    """:class:`SharedState` for one process (the in-memory broker's)."""

    def __init__(self, drop_log: Callable[[str], None] | None = None) -> None:
        self._records: dict[str, tuple[dict[str, str], float]] = {}
        self._sweep_at = 1024
        self._drop_log = drop_log
        self._expiring: dict[str, asyncio.TimerHandle] = {}

    def _live(self, name: str) -> dict[str, str] | None:
        record = self._records.get(name)
        if record is None:
            return None
        if record[1] <= time.monotonic():
            del self._records[name]
            return None
        return record[0]

    async def put(self, name: str, fields: Mapping[str, str], ttl: float) -> None:
        record = self._live(name) or {}
        record.update(fields)
        self._records[name] = (record, time.monotonic() + ttl)
        if len(self._records) > self._sweep_at:  # now and then, forget what expired unread
            now = time.monotonic()
            self._records = {k: v for k, v in self._records.items() if v[1] > now}
            # (the next sweep when the records have doubled: a sweep costs O(1) a put)
            self._sweep_at = max(1024, 2 * len(self._records))

    async def read(self, name: str) -> dict[str, str]:
        return dict(self._live(name) or {})

    async def remove(self, name: str, fields: Iterable[str]) -> None:
        record = self._live(name)
        if record is None:
            return
        for field in fields:
            record.pop(field, None)
        if not record:
            del self._records[name]

    async def expire_log(self, topic: str, ttl: float) -> None:
        if self._drop_log is None:
            return
        previous = self._expiring.pop(topic, None)
        if previous is not None:
            previous.cancel()
        drop = self._drop_log

        def expire() -> None:
            self._expiring.pop(topic, None)
            drop(topic)

        self._expiring[topic] = asyncio.get_running_loop().call_later(ttl, expire)
