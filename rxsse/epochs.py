"""Epochs: which data set issued an event id, and what a data set that went back in time lost.

A Redis that restarts empty, or loads an older snapshot, starts its sequence counter again
from where its data ends. Sequence numbers alone would then name two different events, and a
client (or a reader) past that point would silently skip the new ones. So every id carries an
epoch, ``"<seq>-<epoch>"``, and Redis keeps a map of epochs to the sequence number each one
starts at. A new epoch begins whenever the data set is found to have lost events (a *fence*):

- an id stays valid while its epoch is in the map and no later epoch starts at or before its
  sequence number (:func:`contains`);
- a reader compares the map it delivered under with the current one: where they first
  disagree, events were lost, and subscribers get a ``reset`` there (:func:`diverges_after`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["EMIT", "FENCE", "contains", "cover", "diverges_after"]

#: Epoch number -> the first sequence number it issued.
Epochs = Mapping[str, int]

# KEYS: seq counter, epoch, epochs map.  ARGV: a floor epoch, its sequence number (the newest
# id this process has seen; empty strings for none), a fresh epoch token.
# If the data set no longer holds the floor (its epoch is unknown, or the counter is below it),
# events were lost: a new epoch starts after the current head. Returns {epoch, head}.
FENCE: Final = """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
local lost = not epoch
if epoch and ARGV[1] ~= '' then
  local start = redis.call('HGET', KEYS[3], ARGV[1])
  if not start or tonumber(ARGV[2]) > head then
    lost = true
  end
end
if lost then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
  redis.call('HSET', KEYS[3], epoch, head + 1)
end
return {epoch, tostring(head)}
"""

# KEYS: seq counter, topic stream, topics set, firehose, trimmed map, epoch, epochs map, the
# emit's idempotency key.  ARGV: topic, data, type, history, firehose length, time (ms), trim
# slack, a fresh epoch token, the key's time to live in ms (0: no key).
# An emit whose key is known returns the id it got. The topic's log is trimmed in batches of
# `slack` entries (an approximate MAXLEN whose cut is known): the newest trimmed id is
# recorded, so a replay can tell a gap from an empty stretch.
EMIT: Final = """
if ARGV[9] ~= '0' then
  local known = redis.call('GET', KEYS[8])
  if known then return known end
end
local epoch = redis.call('GET', KEYS[6])
local seq = redis.call('INCR', KEYS[1])
if not epoch then
  epoch = ARGV[8]
  redis.call('SET', KEYS[6], epoch)
  redis.call('HSET', KEYS[7], epoch, seq)
end
local sid = seq .. '-0'
redis.call('XADD', KEYS[2], sid, 'd', ARGV[2], 'y', ARGV[3], 'ts', ARGV[6], 'e', epoch)
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], sid,
           't', ARGV[1], 'd', ARGV[2], 'y', ARGV[3], 'e', epoch)
redis.call('SADD', KEYS[3], ARGV[1])
local history = tonumber(ARGV[4])
local length = redis.call('XLEN', KEYS[2])
if length > history + tonumber(ARGV[7]) then
  local drop = length - history
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', drop + 1)
  redis.call('XTRIM', KEYS[2], 'MINID', oldest[drop + 1][1])
  redis.call('HSET', KEYS[5], ARGV[1], oldest[drop][1])
end
local id = seq .. '-' .. epoch
if ARGV[9] ~= '0' then
  redis.call('SET', KEYS[8], id, 'PX', ARGV[9])
end
return id
"""


def cover(epochs: Epochs, seq: int) -> str | None:
    """The epoch that issued ``seq``: the one that started last at or before it."""
    best: str | None = None
    best_start = -1
    for epoch, start in epochs.items():
        if best_start < start <= max(seq, 1):
            best, best_start = epoch, start
    return best


def contains(epochs: Epochs, seq: int, epoch: str, head: int) -> bool:
    """Whether the id ``seq-epoch`` names a point the data set still holds.

    Example:
        >>> contains({"a": 1, "b": 101}, 100, "a", head=150)  # before b began: still there
        True
        >>> contains({"a": 1, "b": 101}, 120, "a", head=150)  # a's 120 was lost; b has 120
        False
    """
    start = epochs.get(epoch)
    if start is None or seq > head:
        return False
    return not any(start < later <= seq for later in epochs.values())


def diverges_after(before: Epochs, now: Epochs, seq: int) -> int:
    """The last sequence number up to ``seq`` that means the same event under both maps:
    ``seq`` itself if nothing was lost, else the point before the first difference.

    Example:
        >>> diverges_after({"a": 1}, {"a": 1, "b": 101}, 150)  # came back at 100, then b
        100
        >>> diverges_after({"a": 1}, {"c": 1}, 150)  # came back empty
        0
        >>> diverges_after({"a": 1}, {"a": 1, "b": 151}, 150)  # nothing lost
        150
    """
    for boundary in sorted({1, *before.values(), *now.values()}):
        if boundary > seq:
            break
        if cover(before, boundary) != cover(now, boundary):
            return boundary - 1
    return seq
