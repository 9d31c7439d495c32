"""Reading a resume's entries from Redis: the topics' streams, checked against the epochs and
the trims so that what cannot be replayed exactly is answered with a ``reset``."""

from __future__ import annotations

import logging
import time
from typing import Final

from redis.asyncio import RedisCluster

from ..._event import MessageEvent
from .._broker import Entry, Replay, Span, parse_event_id, unreadable
from ._connect import Client
from ._epochs import Epochs, contains, cover, diverges_after, parse_epochs
from ._firehose import RedisKeys

logger = logging.getLogger("rxsse.redis")  # (the name users configure)

# What a resume point is checked against, in one consistent view (a script, not a MULTI:
# redis-py's cluster client runs no transactions before 6, and all keys share one slot).
# KEYS: epochs, seq, lost, topics. ARGV[1]: 1 to read the topics' names too.
_READ_POINT: Final = """
local topics = {}
if ARGV[1] == '1' then topics = redis.call('SMEMBERS', KEYS[4]) end
return {redis.call('LRANGE', KEYS[1], 0, -1), redis.call('GET', KEYS[2]) or '0',
        redis.call('HKEYS', KEYS[3]), topics}
"""
# The topics' entries in a range, and their logs' cuts, in one view (on a cluster).
# KEYS: trimmed, then each topic's log. ARGV: first id, last id, then the topics' names.
_READ_RANGES: Final = """
local out = {}
for i = 2, #KEYS do out[#out + 1] = redis.call('XRANGE', KEYS[i], ARGV[1], ARGV[2]) end
out[#out + 1] = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
return out
"""


async def read_replay(
    client: Client, keys: RedisKeys, delivered: Epochs, max_age: float | None, span: Span
) -> Replay:
    """The logged entries of ``span``: in one consistent view of the epochs, the sequence head
    and the topics' trims, so that a trimmed or lost resume point is a ``reset`` (None), never
    a gap. ``delivered``: the epochs this process's reader delivered under."""
    pattern, after, upto = span
    point = parse_event_id(after)
    if point is None:
        return None
    start, epoch = point
    found_epochs, head_value, losses, members = await client.eval(
        _READ_POINT, 4, keys.epochs, keys.seq, keys.lost, keys.topics, int(not pattern.is_exact)
    )
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
        topics = sorted(str(t) for t in members if pattern.matches(str(t)))
    if not topics or upto <= start:
        return []
    # One view: a trim between reading the ranges and reading the cuts would hide a gap.
    ranges, trimmed = await _read_ranges(client, keys, topics, f"{start + 1}-0", f"{upto}-0")
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


async def _read_ranges(
    client: Client, keys: RedisKeys, topics: list[str], first: str, last: str
) -> tuple[list[list[tuple[str, dict[str, str]]]], list[str | None]]:
    """The topics' entries from ``first`` to ``last``, and their logs' cuts, in one view: a
    transaction on one server (redis-py parses the entries, quicker than a script's reply),
    a script on a cluster (whose client runs no transactions before redis-py 6)."""
    logs = [keys.topic(topic) for topic in topics]
    if isinstance(client, RedisCluster):
        *found, trimmed = await client.eval(
            _READ_RANGES, 1 + len(logs), keys.trimmed, *logs, first, last, *topics
        )
        ranges = [[(str(i), dict(zip(f[::2], f[1::2], strict=True))) for i, f in r] for r in found]
        return ranges, trimmed
    pipe = client.pipeline(transaction=True)
    for log in logs:
        pipe.xrange(log, min=first, max=last)
    pipe.hmget(keys.trimmed, topics)
    *ranges, trimmed = await pipe.execute()
    return ranges, trimmed
