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

# The fence, the start of both scripts below: `epoch` is the current epoch (a new one, after
# `seq`, if the server started since the last fence), `seq` the head.
# KEYS: seq counter, current epoch, epochs list, the run_id the epoch was fenced under.
# ARGV[1]: a fresh epoch token.
_FENCE_STEPS: Final = """
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
if not (epoch and redis.call('GET', KEYS[4]) == run) then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
  redis.call('RPUSH', KEYS[3], epoch .. ':' .. (seq + 1))
  redis.call('SET', KEYS[4], run)
end
"""

# The fence alone (a reader's start and resync). Returns {epoch, head}.
FENCE: Final = _FENCE_STEPS + "return {epoch, tostring(seq)}\n"

# One round trip of emits: the fence, then each emit, atomically.
# KEYS: seq counter, current epoch, epochs list, run_id, topics set, firehose, trimmed map,
#       then the batch's topic logs and idempotency keys (each named once).
# ARGV: a fresh epoch token, history, firehose length, time (ms), trim slack, the keys' time to
#       live (ms), and the emits as one JSON array (one argument, decoded in C by cjson: far
#       cheaper to send than five arguments an emit) of [its log's KEYS index, its key's KEYS
#       index (0: no key), topic, data, type].
# Returns {epoch, error, id, new, id, new, ...}: new is 1 for a new event, 0 when its key was
# published already (the id is the first one's), -1 when this emit alone failed (the id is
# the error). If a command fails outside those (error is its message, else ""), the emits
# after the last answered one did not go out; the counter still covers what did.
# Each topic's log is trimmed in batches of `slack` entries (an approximate MAXLEN whose cut
# is known): the newest trimmed id is recorded, so a replay can tell a gap from a quiet stretch.
EMIT_BATCH: Final = (
    _FENCE_STEPS
    + """
local first = seq
local out = {epoch, ''}
local logs, names = {}, {}
local function emit_all()
  for _, emit in ipairs(cjson.decode(ARGV[7])) do
    local log, k = KEYS[emit[1]], emit[2]
    local known = false
    if k > 0 then known = redis.call('GET', KEYS[k]) end
    if known then
      out[#out + 1] = known
      out[#out + 1] = 0
    else
      local topic, data, kind = emit[3], emit[4], emit[5]
      local sid = (seq + 1) .. '-0'
      local added = redis.pcall('XADD', log, sid, 'd', data, 'y', kind, 'ts', ARGV[4], 'e', epoch)
      if type(added) == 'table' and added.err then
        out[#out + 1] = added.err  -- this emit alone fails (e.g. its key holds no stream)
        out[#out + 1] = -1
      else
        seq = seq + 1
        if not logs[log] then
          logs[log] = true
          names[#names + 1] = {topic, log}
        end
        local id = seq .. '-' .. epoch
        out[#out + 1] = id  -- (in its log: taken, whatever fails next)
        out[#out + 1] = 1
        redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], sid,
                   't', topic, 'd', data, 'y', kind, 'e', epoch)
        if k > 0 then redis.call('SET', KEYS[k], id, 'PX', ARGV[6]) end
      end
    end
  end
end
local ok, failure = pcall(emit_all)
if not ok then out[2] = tostring(failure.err or failure) end
if seq ~= first then redis.call('SET', KEYS[1], seq) end
local history, slack = tonumber(ARGV[2]), tonumber(ARGV[5])
for _, pair in ipairs(names) do
  local topic, log = pair[1], pair[2]
  redis.call('SADD', KEYS[5], topic)
  local length = redis.call('XLEN', log)
  if length > history + slack then
    local drop = length - history
    local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', drop + 1)
    redis.call('XTRIM', log, 'MINID', oldest[drop + 1][1])
    redis.call('HSET', KEYS[7], topic, oldest[drop][1])
  end
end
return out
"""
)


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
