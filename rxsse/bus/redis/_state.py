"""``RedisState``: the records of :mod:`rxsse.bus._shared` in Redis, for every process of a prefix.

A record is a hash under the prefix's hash tag, expiring with ``PEXPIRE`` (each write renews
it): a process that crashes leaves records that vanish on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from redis.asyncio import Redis

from ._connect import disconnect
from ._firehose import RedisKeys


class RedisState:
    """:class:`rxsse.bus._shared.SharedState` on Redis (made by ``RedisBroker.shared_state()``).

    Its connection is made on first use, on the loop that uses it, and closed with the broker.
    """

    def __init__(self, keys: RedisKeys, connect: Callable[[], Redis]) -> None:
        self._keys = keys
        self._connect = connect
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _name(self, name: str) -> str:
        return f"{self._keys.tag}:s:{name}"

    async def put(self, name: str, fields: Mapping[str, str], ttl: float) -> None:
        key = self._name(name)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping=cast(Any, dict(fields)))  # (redis-py types it invariantly)
        pipe.pexpire(key, max(1, int(ttl * 1000)))
        await pipe.execute()

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
        pipe = self.client.pipeline(transaction=True)
        pipe.pexpire(self._keys.topic(topic), max(1, int(ttl * 1000)))
        pipe.srem(self._keys.topics, topic)
        await pipe.execute()

    async def close(self) -> None:
        if self._client is not None:
            await disconnect(self._client)
            self._client = None
