"""What one stream may cost: how much may wait for a slow client, how long a write may wait,
and how long the stream may live."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final, Literal

from .._checks import check_count, check_seconds, is_number

#: What happens when a slow client makes a stream's buffer overflow.
Overflow = Literal["disconnect", "drop_oldest", "drop_newest"]
#: Default bounds of what may wait for one slow client.
DEFAULT_BUFFER_FRAMES: Final = 10_000
DEFAULT_BUFFER_BYTES: Final = 1 << 20
#: Seconds a write may wait for a client that takes no data before the client is dropped.
DEFAULT_SEND_TIMEOUT: Final = 30.0
#: The share of ``max_lifetime`` by which each stream's lifetime is shortened at random.
DEFAULT_LIFETIME_JITTER: Final = 0.1


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The limits of one stream (the keywords of :func:`rxsse.stream`, checked once).

    Attributes:
        frames: how many frames may wait for a slow client.
        bytes: how many bytes may wait for a slow client.
        overflow: what happens beyond either bound.
        send_timeout: seconds a write may wait for the client to take data (None: forever).
        max_lifetime: seconds after which the stream ends cleanly (None: never).
        lifetime_jitter: each stream lives between ``(1 - jitter) * max_lifetime`` and
            ``max_lifetime``, so streams opened together do not all reconnect together.
    """

    frames: int = DEFAULT_BUFFER_FRAMES
    bytes: int = DEFAULT_BUFFER_BYTES
    overflow: Overflow = "disconnect"
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT
    max_lifetime: float | None = None
    lifetime_jitter: float = DEFAULT_LIFETIME_JITTER

    def __post_init__(self) -> None:
        check_count("max_buffer_frames", self.frames)
        check_count("max_buffer_bytes", self.bytes)
        if self.overflow not in ("disconnect", "drop_oldest", "drop_newest"):
            raise ValueError(
                "overflow must be 'disconnect', 'drop_oldest' or 'drop_newest', "
                f"not {self.overflow!r}"
            )
        check_seconds("send_timeout", self.send_timeout, optional=True)
        check_seconds("max_lifetime", self.max_lifetime, optional=True)
        jitter = self.lifetime_jitter
        if not is_number(jitter) or not 0 <= jitter < 1:
            raise ValueError(f"lifetime_jitter must be a number in [0, 1), not {jitter!r}")

    def lifetime(self) -> float | None:
        """This stream's lifetime in seconds: ``max_lifetime`` less a random share of it."""
        if self.max_lifetime is None:
            return None
        return self.max_lifetime * (1.0 - self.lifetime_jitter * random.random())
