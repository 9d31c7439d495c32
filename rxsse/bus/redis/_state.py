"""``RedisState``: the records of :mod:`rxsse.bus._shared` in Redis, for every process of a prefix.

A record is a hash under the prefix's hash tag, expiring with ``PEXPIRE`` (each write renews
it): a process that crashes leaves records that vanish on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from ._connect import Client, disconnect
from ._firehose import RedisKeys

# Scripts rather than MULTI: redis-py's cluster client runs no transactions before 6 (a
# prefix's keys share one slot, so a script may touch them all).
# KEYS: the record. ARGV: its time to live (ms), then field, value, field, value...
_PUT: Final = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
"""
# KEYS: the topic's log, the topics set. ARGV: the log's time to live (ms), the topic.
_EXPIRE_LOG: Final = """
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
"""


class RedisState:
    """:class:`rxsse.bus._shared.SharedState` on Redis (made by ``RedisBroker.shared_state()``).

    Its connection is made on first use, on the loop that uses it, and closed with the broker.
    """

    def __init__(self, keys: RedisKeys, connect: Callable[[], Client]) -> None:
        self._keys = keys
        self._connect = connect
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _name(self, name: str) -> str:
        return f"{self._keys.tag}:s:{name}"

    async def put(self, name: str, fields: Mapping[str, str], ttl: float) -> None:
        flat = [part for pair in fields.items() for part in pair]
        await self.client.eval(_PUT, 1, self._name(name), max(1, int(ttl * 1000)), *flat)

    async def read(self, name: str) -> dict[str, str]:
        found = await self.client.hgetall(self._name(name))
        return {str(k): str(v) for k, v in found.items()}

    async def remove(self, name: str, fields: Iterable[str]) -> None:
        names = list(fields)
        if names:
            await self.client.hdel(self._name(name), *names)

    async def expire_log(self, topic: str, ttl: float) -> None:
        # The topic's stream goes at its time; its name leaves the set patterns read now (a
        # finished producer's log is read by its exact topic only).
        ttl_ms = max(1, int(ttl * 1000))
        await self.client.eval(
            _EXPIRE_LOG, 2, self._keys.topic(topic), self._keys.topics, ttl_ms, topic
        )

    async def close(self) -> None:
        if self._client is not None:
            await disconnect(self._client)
            self._client = None
