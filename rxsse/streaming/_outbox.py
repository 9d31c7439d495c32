"""The frames waiting for one client, and how far that client lags behind.

The bounds of a stream (``max_buffer_frames``, ``max_buffer_bytes``) measure *lag*: the frames
that arrived while a write was already waiting for the client (it had not taken what came
before), or while such frames still wait. Frames that arrive while the client keeps up (a
producer's burst, a replay after a resume) are written as soon as the loop turns, however many
there are: their memory is bounded by the producer, not by the client. Frames are written
oldest first, so the lagging frames are always the newest ones.
"""

from __future__ import annotations

from ._options import StreamOptions


class Outbox:
    """A FIFO of encoded frames with the lag bounds and the overflow policy of one stream.

    Pure bookkeeping: no I/O, no clock, no loop.

    Example:
        >>> box = Outbox(StreamOptions(max_buffer_frames=2, overflow="drop_oldest"))
        >>> [box.add(b"%d" % n, lagging=True) for n in range(4)]
        [False, False, False, False]
        >>> box.dropped, box.take(1024)
        (2, b'23')
    """

    __slots__ = ("_frames", "_lag_bytes", "_lag_frames", "_limits", "bytes", "dropped")

    def __init__(self, limits: StreamOptions) -> None:
        self._limits = limits
        # A list, not a deque: an idle stream's empty deque costs 600 bytes more, and frames
        # leave from the front in chunks (one slice each), not one by one.
        self._frames: list[bytes] = []
        self.bytes = 0  #: bytes waiting
        self._lag_frames = 0  # of the newest frames, how many arrived while the client lagged
        self._lag_bytes = 0
        #: Frames a drop policy dropped since the owner last set this back to 0.
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def __bool__(self) -> bool:
        return bool(self._frames)

    @property
    def lag(self) -> tuple[int, int]:
        """The frames and bytes that arrived while the client was behind and still wait."""
        return self._lag_frames, self._lag_bytes

    def add(self, frame: bytes, *, lagging: bool) -> bool:
        """Queue ``frame``; ``lagging``: a write is waiting for the client, so the frame counts
        against the bounds (so does any frame while lagging ones still wait: the client has
        not caught up with them). Return True if the client is now further behind than the
        bounds allow under the ``disconnect`` policy (the caller ends the stream); a drop
        policy instead drops frames (counted in :attr:`dropped`) to stay within them."""
        self._frames.append(frame)
        size = len(frame)
        self.bytes += size
        if not lagging and not self._lag_frames:
            return False
        return self._lagging(size)

    def add_now(self, frame: bytes) -> bool:
        """Queue ``frame`` if it is no lag (no write waits and nothing lagging waits): the
        common case, in one call. Return False, queuing nothing, when it would be lag (then
        :meth:`add` it)."""
        if self._lag_frames:
            return False
        self._frames.append(frame)
        self.bytes += len(frame)
        return True

    def _lagging(self, size: int) -> bool:
        self._lag_frames += 1
        self._lag_bytes += size
        if not self._over():
            return False
        if self._limits.overflow == "disconnect":
            return True
        self._drop()
        return False

    def add_all(self, frames: list[bytes]) -> None:
        """Queue frames that do not count as lag (a final event, a heartbeat)."""
        self._frames.extend(frames)
        self.bytes += sum(len(frame) for frame in frames)

    def take(self, limit: int) -> bytes:
        """Remove and return the oldest frames, joined: at least one, and no more than
        ``limit`` bytes beyond the first."""
        frames = self._frames
        if len(frames) == 1 or self.bytes <= limit:
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            self.clear()
            return data
        size = len(frames[0])
        count = 1
        while count < len(frames) and size + len(frames[count]) <= limit:
            size += len(frames[count])
            count += 1
        data = b"".join(frames[:count])
        del frames[:count]
        self.bytes -= size
        self._trim_lag()
        return data

    def take_all(self) -> list[bytes]:
        """Remove and return every frame."""
        frames = list(self._frames)
        self.clear()
        return frames

    def clear(self) -> None:
        self._frames.clear()
        self.bytes = self._lag_frames = self._lag_bytes = 0

    def _over(self) -> bool:
        return (
            self._lag_frames > self._limits.max_buffer_frames
            or self._lag_bytes > self._limits.max_buffer_bytes
        )

    def _drop(self) -> None:
        frames = self._frames
        if self._limits.overflow == "drop_newest":
            while len(frames) > 1 and self._over():  # the newest frames are the lagging ones
                size = len(frames.pop())
                self.bytes -= size
                self._lag_frames -= 1
                self._lag_bytes -= size
                self.dropped += 1
            return
        count = 0  # the oldest first, all cut in one slice
        while len(frames) - count > 1 and self._over():
            self.bytes -= len(frames[count])
            count += 1
            self._trim_lag(len(frames) - count)
        del frames[:count]
        self.dropped += count

    def _trim_lag(self, left: int | None = None) -> None:
        # Frames leave from the front; the lagging ones are at the back, so whatever is left of
        # them is at most what is left in all.
        self._lag_frames = min(self._lag_frames, len(self._frames) if left is None else left)
        self._lag_bytes = min(self._lag_bytes, self.bytes)
