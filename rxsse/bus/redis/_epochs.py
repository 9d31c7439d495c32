"""Epochs: which data set issued an event id, and what a data set that went back in time lost.

A Redis that restarts empty, loads an older snapshot, or is replaced by a replica that was
behind, starts its sequence counter again from where its data ends. Sequence numbers alone
would then name two different events, and a client (or a reader) past that point would
silently skip the new ones. So every id carries an epoch, ``"<seq>-<epoch>"``, and Redis keeps
the list of epochs, in the order they began, each with the first sequence number it issued.

A new epoch begins with the first write after every start of the Redis server (the *fence*
notices a new ``run_id``), at the sequence number after the last event the server holds:

- every id the server still holds stays valid (it is below the new epoch's start);
- every id it lost is at or past the new epoch's start, under an older epoch: no longer valid
  (:func:`contains`), so a resume from it is answered with a ``reset``;
- a reader compares the epochs it delivered under with the current ones: where they first
  disagree, events were lost, and its subscribers get a ``reset`` there
  (:func:`diverges_after`).

A restart that lost nothing only adds an epoch after everything anyone has seen, which changes
nothing for anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

#: The epochs of a data set, in the order they began: ``(epoch, first sequence number)``.
Epochs = Sequence[tuple[str, int]]

# KEYS: seq counter, current epoch, epochs list, the run_id the epoch was fenced under.
# ARGV: a fresh epoch token. Returns {epoch, head}.
FENCE: Final = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
if epoch and redis.call('GET', KEYS[4]) == run then
  return {epoch, tostring(head)}
end
epoch = ARGV[1]
redis.call('SET', KEYS[2], epoch)
redis.call('RPUSH', KEYS[3], epoch .. ':' .. (head + 1))
redis.call('SET', KEYS[4], run)
return {epoch, tostring(head)}
"""

# KEYS: seq counter, topic stream, topics set, firehose, trimmed map, current epoch, the emit's
# idempotency key.  ARGV: topic, data, type, history, firehose length, time (ms), trim slack,
# the key's time to live in ms (0: no key).
# Returns {id, 1} for a new event, {id, 0} when the key was published already. Fails if no
# fence ran since the data set was emptied (the caller fails the emit; a retry fences first).
# The topic's log is trimmed in batches of `slack` entries (an approximate MAXLEN whose cut is
# known): the newest trimmed id is recorded, so a replay can tell a gap from an empty stretch.
EMIT: Final = """
if ARGV[8] ~= '0' then
  local known = redis.call('GET', KEYS[7])
  if known then return {known, 0} end
end
local epoch = redis.call('GET', KEYS[6])
if not epoch then
  return redis.error_reply('rxsse: the data set has no epoch yet')
end
local seq = redis.call('INCR', KEYS[1])
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
if ARGV[8] ~= '0' then
  redis.call('SET', KEYS[7], id, 'PX', ARGV[8])
end
return {id, 1}
"""


def parse_epochs(entries: Sequence[str]) -> list[tuple[str, int]]:
    """The epochs list as Redis stores it (``"epoch:start"`` strings, oldest first)."""
    epochs: list[tuple[str, int]] = []
    for entry in entries:
        epoch, _, start = entry.rpartition(":")
        epochs.append((epoch, int(start)))
    return epochs


def cover(epochs: Epochs, seq: int) -> str | None:
    """The epoch that issued ``seq``: the last one to begin at or before it.

    Example:
        >>> cover([("a", 1), ("b", 101), ("c", 101)], 120)  # c began after b, at the same point
        'c'
    """
    found: str | None = None
    for epoch, start in epochs:
        if start <= max(seq, 1):
            found = epoch
    return found


def contains(epochs: Epochs, seq: int, epoch: str, head: int) -> bool:
    """Whether the id ``seq-epoch`` names a point the data set still holds: its epoch is
    known, no epoch that began after it begins at or before ``seq``, and ``seq`` is issued.

    Example:
        >>> contains([("a", 1), ("b", 101)], 100, "a", head=150)  # before b began: still there
        True
        >>> contains([("a", 1), ("b", 101)], 120, "a", head=150)  # a's 120 was lost; b has 120
        False
    """
    if seq > head:
        return False
    for index, (name, _) in enumerate(epochs):
        if name == epoch:
            return all(start > seq for _, start in epochs[index + 1 :])
    return False


def diverges_after(before: Epochs, now: Epochs, seq: int) -> int:
    """The last sequence number up to ``seq`` that names the same event under both lists of
    epochs: ``seq`` itself if nothing was lost, else the point before the first difference.

    Example:
        >>> diverges_after([("a", 1)], [("a", 1), ("b", 101)], 150)  # came back at 100
        100
        >>> diverges_after([("a", 1)], [("c", 1)], 150)  # came back empty
        0
        >>> diverges_after([("a", 1)], [("a", 1), ("b", 151)], 150)  # nothing lost
        150
    """
    boundaries = sorted({1, *(start for _, start in before), *(start for _, start in now)})
    for boundary in boundaries:
        if boundary > seq:
            break
        if cover(before, boundary) != cover(now, boundary):
            return boundary - 1
    return seq
