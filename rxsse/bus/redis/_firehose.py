"""One reader per process that follows the Redis firehose and hands its entries to the bus, in
order, across reconnects and data sets that go back in time (see :mod:`rxsse.bus.redis._epochs`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._event import MessageEvent
from .._broker import Entry, Sink, unreadable
from .._retry import Backoff
from ._connect import Client
from ._epochs import FENCE, Epochs, cover, diverges_after, parse_epochs

logger = logging.getLogger("rxsse.redis")

#: What a Redis that is away (restarting, frozen, unreachable) raises.
UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisKeys:
    """The names of the Redis keys of one prefix (all under one cluster hash tag)."""

    __slots__ = ("epoch", "epochs", "firehose", "lost", "run", "seq", "tag", "topics", "trimmed")

    def __init__(self, prefix: str) -> None:
        self.tag = tag = f"{{{prefix}}}"
        self.seq = f"{tag}:seq"
        self.topics = f"{tag}:topics"
        self.firehose = f"{tag}:all"
        self.trimmed = f"{tag}:trimmed"
        self.epoch = f"{tag}:epoch"
        self.epochs = f"{tag}:epochs"
        self.run = f"{tag}:run"
        self.lost = f"{tag}:lost"  # where data sets went back in time (see Firehose._resync)

    def topic(self, topic: str) -> str:
        return f"{self.tag}:t:{topic}"

    def key(self, key: str) -> str:
        return f"{self.tag}:k:{key}"

    def fence_args(self, token: str) -> tuple[Any, ...]:
        """The arguments of :data:`rxsse.bus.redis._epochs.FENCE` after the script."""
        return (4, self.seq, self.epoch, self.epochs, self.run, token)


async def fence(client: Client, keys: RedisKeys, token: str) -> tuple[str, int]:
    """Run the fence: the current epoch (a new one if the server started since the last
    fence) and the head."""
    epoch, head = await client.eval(FENCE, *keys.fence_args(token))
    return str(epoch), int(head)


async def read_epochs(client: Client, keys: RedisKeys) -> list[tuple[str, int]]:
    return parse_epochs([str(entry) for entry in await client.lrange(keys.epochs, 0, -1)])


class Firehose:
    """Follows ``{prefix}:all`` with ``XREAD BLOCK`` on one connection and hands each entry to
    ``sink``. After a reconnect, when a new epoch appears, or when a quiet read finds another
    current epoch, it checks the epochs: if events it delivered were lost, every subscriber gets
    a ``reset`` where the loss begins, and it follows the new data set from there."""

    def __init__(
        self,
        client: Client,
        keys: RedisKeys,
        sink: Sink,
        *,
        url: str,
        block_ms: int,
        token: Callable[[], str],
        closing: Callable[[], bool],
    ) -> None:
        self._client = client
        self._keys = keys
        self._sink = sink
        self._url = url
        self._block_ms = block_ms
        self._token = token
        self._closing = closing
        self.epochs: Epochs = []  #: the epochs it delivered under
        self.seq = 0  #: the last sequence number it delivered

    async def start(self) -> int:
        """Fence, and return the head it will follow from."""
        _, head = await fence(self._client, self._keys, self._token())
        self.epochs = await read_epochs(self._client, self._keys)
        self.seq = head
        return head

    def event_id(self, seq: int) -> str:
        return f"{seq}-{cover(self.epochs, seq) or '0'}"

    async def run(self) -> None:
        """Follow the firehose until cancelled, reconnecting with backoff."""
        backoff = Backoff(most=2.0)
        lost = False
        while not self._closing():  # a cancel the client library swallowed stops it here
            try:
                if lost:
                    await self._resync()
                    lost = False
                    logger.info("reconnected to Redis at %s", self._url)
                await self._read_once()
                backoff.reset()
            except UNAVAILABLE as exc:
                if self._closing():
                    return
                if not lost:
                    logger.warning("lost Redis at %s (%s); retrying", self._url, exc)
                lost = True
                await backoff.wait()
            except Exception:  # keep following whatever went wrong; subscribers stay
                if self._closing():
                    return
                logger.exception("reading events from Redis at %s failed; retrying", self._url)
                lost = True
                await backoff.wait()

    async def _read_once(self) -> None:
        client, keys = self._client, self._keys
        response: Any = await client.xread(
            {keys.firehose: f"{self.seq}-0"}, block=self._block_ms, count=1000
        )
        if not response:  # quiet: is the data set still the one we follow?
            current = self.epochs[-1][0] if self.epochs else None
            if await client.get(keys.epoch) != current:
                await self._resync()
            return
        known = {epoch for epoch, _ in self.epochs}
        for _stream, messages in response:
            for message_id, fields in messages:
                epoch = fields.get("e")
                if epoch is not None and epoch not in known:
                    await self._resync()  # a new epoch: did it lose what we delivered?
                    return
                self._deliver(message_id, fields)

    async def _resync(self) -> None:
        """If the data set lost events this reader delivered, send every subscriber a
        ``reset`` where the loss begins and follow the new data set from there; otherwise
        carry on where the reader was."""
        await fence(self._client, self._keys, self._token())
        epochs = await read_epochs(self._client, self._keys)
        kept = diverges_after(self.epochs, epochs, self.seq)
        self.epochs = epochs
        if kept < self.seq:
            # Recorded for the replays to come: a resume from before ``kept`` that crosses
            # it is a reset too (the data set alone cannot tell: the new epoch begins right
            # after what it holds, as after a restart that lost nothing).
            await self._client.hset(self._keys.lost, str(kept), str(self.seq))
            logger.warning(
                "Redis at %s lost the events after %d (it came back empty, from an older "
                "snapshot, or as a replica that was behind); subscribers get a reset there",
                self._url,
                kept,
            )
            self.seq = kept
            reset = MessageEvent(
                {"reason": "events were lost by the event store"},
                type="reset",
                id=self.event_id(kept),
            )
            self._sink(Entry(kept, None, reset))

    def _deliver(self, message_id: str, fields: dict[str, str]) -> None:
        seq = int(message_id.partition("-")[0])
        self.seq = seq
        event_id = f"{seq}-{fields.get('e') or cover(self.epochs, seq) or '0'}"
        topic = fields.get("t")
        try:
            if topic is None:
                raise ValueError("no topic")
            event = MessageEvent.from_json(fields["d"], id=event_id, type=fields.get("y") or None)
        except (KeyError, ValueError) as exc:
            # Never skipped silently: its topic's subscribers (all, if the topic is unknown)
            # are told to reload.
            logger.error("unreadable Redis entry %s: %s; sending a reset", message_id, exc)
            event = unreadable(event_id)
        self._sink(Entry(seq, topic, event))
