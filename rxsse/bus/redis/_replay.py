"""Reading a resume's entries from Redis: the topics' streams, checked against the epochs and
the trims so that what cannot be replayed exactly is answered with a ``reset``."""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from ..._event import MessageEvent
from .._broker import Entry, Replay, Span, parse_event_id
from ._epochs import Epochs, contains, cover, diverges_after, parse_epochs
from ._firehose import RedisKeys, unreadable

logger = logging.getLogger("rxsse.redis")  # (the name users configure)


async def read_replay(
    client: Redis, keys: RedisKeys, delivered: Epochs, max_age: float | None, span: Span
) -> Replay:
    """The logged entries of ``span``: in one consistent view of the epochs, the sequence head
    and the topics' trims, so that a trimmed or lost resume point is a ``reset`` (None), never
    a gap. ``delivered``: the epochs this process's reader delivered under."""
    pattern, after, upto = span
    point = parse_event_id(after)
    if point is None:
        return None
    start, epoch = point
    pipe = client.pipeline(transaction=True)
    pipe.lrange(keys.epochs, 0, -1)
    pipe.get(keys.seq)
    pipe.hkeys(keys.lost)
    if not pattern.is_exact:
        pipe.smembers(keys.topics)
    found_epochs, head_value, losses, *members = await pipe.execute()
    epochs = parse_epochs([str(entry) for entry in found_epochs])
    head = int(head_value or 0)
    if not contains(epochs, start, epoch, head):
        return None
    if upto > head or diverges_after(delivered, epochs, upto) < upto:
        return None  # the data set changed under this process: its reader will reset
    # Events after `kept` were lost (a failover to a replica that was behind) since this
    # client's point. (One exactly at `kept` holds the id the readers' reset carried, which
    # resumes the new data set: it is not told twice.)
    if any(start < int(kept) < upto for kept in losses):
        return None
    if pattern.is_exact:
        topics = [pattern.text]
    else:
        topics = sorted(str(t) for t in members[0] if pattern.matches(str(t)))
    if not topics or upto <= start:
        return []
    # One transaction: a trim between reading the ranges and reading the cuts would hide
    # a gap.
    pipe = client.pipeline(transaction=True)
    for topic in topics:
        pipe.xrange(keys.topic(topic), min=f"{start + 1}-0", max=f"{upto}-0")
    pipe.hmget(keys.trimmed, topics)
    *ranges, trimmed = await pipe.execute()
    if any(int(cut.partition("-")[0]) > start for cut in trimmed if cut):
        return None  # entries after the resume point were trimmed away
    oldest_ms = None if max_age is None else (time.time() - max_age) * 1000
    entries: list[Entry] = []
    for topic, messages in zip(topics, ranges, strict=True):
        for message_id, fields in messages:
            if oldest_ms is not None and float(fields.get("ts", 0)) < oldest_ms:
                return None  # older than max_age: treated as gone from the log
            seq = int(message_id.partition("-")[0])
            event_id = f"{seq}-{fields.get('e') or cover(epochs, seq)}"
            try:
                event = MessageEvent.from_json(
                    fields["d"], id=event_id, type=fields.get("y") or None
                )
            except (KeyError, ValueError) as exc:
                logger.error("unreadable Redis entry %s: %s; sending a reset", message_id, exc)
                event = unreadable(event_id)
            entries.append(Entry(seq, topic, event))
    entries.sort(key=lambda entry: entry.seq)
    return entries
