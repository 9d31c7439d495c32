"""A stream's options as one typed, frozen object, checked once when it is made: its
heartbeat and headers, what it may cost (how much may wait for a slow client, how long a write
may wait, how long it may live), how a failure ends it, compression, what it sends at shutdown.

``StreamOptions`` holds what ``rxsse.stream``, ``@sse`` and ``setup`` accept as keywords. A
route's options are the app's defaults with the route's own on top, merged and checked once
at ``setup``; a request only reads them. Streams with the same options share one object.
"""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypedDict

from .._checks import check_count, check_seconds, is_number
from .._event import MessageEvent
from ._compression import check_compress
from ._failures import DEFAULT_ERROR_EVENT, DEFAULT_ERROR_RETRY, DEFAULT_MAX_FAILURES, FailurePolicy

#: What happens when a slow client makes a stream's buffer overflow.
Overflow = Literal["disconnect", "drop_oldest", "drop_newest"]
#: Default bounds of what may wait for one slow client.
DEFAULT_BUFFER_FRAMES: Final = 10_000
DEFAULT_BUFFER_BYTES: Final = 1 << 20
#: Seconds a write may wait for a client that takes no data before the client is dropped.
DEFAULT_SEND_TIMEOUT: Final = 30.0
#: The share of ``max_lifetime`` by which each stream's lifetime is shortened at random.
DEFAULT_LIFETIME_JITTER: Final = 0.1


#: Seconds without output after which a heartbeat comment is sent (proxies drop idle streams).
DEFAULT_HEARTBEAT: Final = 15.0


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How a stream behaves: heartbeat, headers, what a slow client may cost, lifetime, how a
    failure ends, compression, what it sends at shutdown. ``rxsse.stream``, ``@sse`` and
    ``run_virtual`` take the same names as keywords; ``setup(options=...)`` takes the app's
    defaults as one.

    Every value is checked when the object is made: a bad one is a ``ValueError`` (a wrong
    name a ``TypeError``) at import or ``setup`` time, not when a request comes.

    Attributes:
        heartbeat: seconds without output after which a ``: ping`` comment is sent (each
            time the stream has been silent that long), or ``None`` for no heartbeat.
        headers: extra response headers, added to (and able to override) :data:`SSE_HEADERS`.
        max_buffer_frames: how many frames may wait for a client that lags behind: frames
            that arrived while a write was already waiting for it. (A burst that arrives while
            the client keeps up is written as fast as the client takes it.)
        max_buffer_bytes: how many bytes may wait for a client that lags behind.
        overflow: what happens when a slow client makes either bound overflow:
            ``"disconnect"`` closes the stream (the client reconnects and resumes from its
            ``Last-Event-ID``, e.g. out of an EventBus log, so nothing is lost);
            ``"drop_oldest"`` / ``"drop_newest"`` drop frames and count them in
            :func:`rxsse.metrics`.
        send_timeout: seconds a write may wait for a client that takes no data; then the
            connection is dropped. Also the longest the kernel keeps sending to a client that
            acknowledges nothing (``TCP_USER_TIMEOUT``), so a client that vanished without
            closing is dropped within ``heartbeat + send_timeout`` (``2 * send_timeout``
            without heartbeat). ``None``: wait as long as the connection stays up.
        max_lifetime: seconds after which the stream ends cleanly, so that the client
            reconnects (with its ``Last-Event-ID``), e.g. to spread long-lived connections over
            new server processes (``None``: no limit).
        lifetime_jitter: each stream's lifetime is ``max_lifetime`` less a random share of up
            to this fraction, so streams opened together do not all reconnect together.
        error_event: the event type of the failure of a stream that had started (its data
            says what failed); not ``error``, which a browser hands to ``onerror``.
        error_retry: seconds a client waits before it reconnects after a failure, doubled
            for each failure in a row (up to a minute).
        max_failures: failures in a row after which a reconnect is answered 204, which stops
            a browser (``None``: never).
        compress: compress the stream for a client whose ``Accept-Encoding`` accepts it
            (``True``: gzip, then zstd and brotli when their packages are installed; or the
            encodings to offer, in order, e.g. ``("zstd", "gzip")``). Each write is flushed,
            so every event arrives at once.
        shutdown_event: sent to the stream when the app shuts down, after what is pending
            and before the end (e.g. ``MessageEvent({"reason": "restart"}, type="shutdown",
            retry=1000)``); ``None``: the stream just ends.

    Example:
        >>> options = StreamOptions(heartbeat=30.0, max_lifetime=3600.0)
        >>> options.replace(heartbeat=5.0).heartbeat
        5.0
    """

    heartbeat: float | None = DEFAULT_HEARTBEAT
    headers: Mapping[str, str] | None = field(default=None, hash=False)
    max_buffer_frames: int = DEFAULT_BUFFER_FRAMES
    max_buffer_bytes: int = DEFAULT_BUFFER_BYTES
    overflow: Overflow = "disconnect"
    send_timeout: float | None = DEFAULT_SEND_TIMEOUT
    max_lifetime: float | None = None
    lifetime_jitter: float = DEFAULT_LIFETIME_JITTER
    error_event: str = DEFAULT_ERROR_EVENT
    error_retry: float = DEFAULT_ERROR_RETRY
    max_failures: int | None = DEFAULT_MAX_FAILURES
    compress: bool | tuple[str, ...] = False
    shutdown_event: MessageEvent[Any] | None = field(default=None, hash=False)
    #: The encodings ``compress`` offers, in order (checked once; empty: none).
    encodings: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: How a failure ends, checked and built once.
    failures: FailurePolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_seconds("heartbeat", self.heartbeat, optional=True)
        if self.headers is not None:
            if not isinstance(self.headers, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
            ):
                raise ValueError(f"headers must map str to str, not {self.headers!r}")
            object.__setattr__(self, "headers", dict(self.headers))  # a copy of its own
        check_count("max_buffer_frames", self.max_buffer_frames)
        check_count("max_buffer_bytes", self.max_buffer_bytes)
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
        object.__setattr__(
            self, "failures", _failures(self.error_event, self.error_retry, self.max_failures)
        )
        if isinstance(self.compress, list):  # (a list from a config: hashable from here on)
            object.__setattr__(self, "compress", tuple(self.compress))
        object.__setattr__(self, "encodings", check_compress(self.compress))
        if self.shutdown_event is not None and not isinstance(self.shutdown_event, MessageEvent):
            raise ValueError(
                f"shutdown_event must be a MessageEvent, not {type(self.shutdown_event).__name__}"
            )

    def lifetime(self) -> float | None:
        """A stream's lifetime in seconds: ``max_lifetime`` less a random share of it (up to
        ``lifetime_jitter``), or None."""
        if self.max_lifetime is None:
            return None
        return self.max_lifetime * (1.0 - self.lifetime_jitter * random.random())

    def replace(self, **changes: Any) -> StreamOptions:
        """These options with ``changes`` (keywords of :func:`rxsse.stream`), checked."""
        if not changes:
            return self
        return dataclasses.replace(self, **changes)

    @staticmethod
    def names() -> frozenset[str]:
        """The option keywords."""
        return _NAMES

    @classmethod
    def check_names(cls, options: Mapping[str, Any], where: str) -> None:
        """Raise ``TypeError`` naming ``where`` if ``options`` has a keyword that is no option."""
        unknown = set(options) - _NAMES
        if unknown:
            raise TypeError(
                f"{where}: unknown option(s) {sorted(unknown)}; known: {sorted(_NAMES)}"
            )


_NAMES: Final = frozenset(f.name for f in dataclasses.fields(StreamOptions) if f.init)


class StreamKeywords(TypedDict, total=False):
    """The options as keywords (of :func:`rxsse.stream`, ``@sse`` and ``run_virtual``)."""

    heartbeat: float | None
    headers: Mapping[str, str] | None
    max_buffer_frames: int
    max_buffer_bytes: int
    overflow: Overflow
    send_timeout: float | None
    max_lifetime: float | None
    lifetime_jitter: float
    error_event: str
    error_retry: float
    max_failures: int | None
    compress: bool | tuple[str, ...]
    shutdown_event: MessageEvent[Any] | None


def options_of(
    options: StreamOptions | None, keywords: Mapping[str, Any], where: str
) -> StreamOptions:
    """``options`` (or the defaults) with ``keywords`` on top, checked.

    Raises:
        TypeError: a keyword is no option.
        ValueError: a value is not allowed.
    """
    StreamOptions.check_names(keywords, where)
    base = DEFAULTS if options is None else options
    return base.replace(**keywords)


def _cached(kind: Any) -> Any:
    """Build ``kind`` objects through a cache: streams with equal options share one."""
    cache = functools.lru_cache(maxsize=256, typed=True)(kind)  # typed: True is no 1

    def build(*values: Any) -> Any:
        try:
            return cache(*values)
        except TypeError:  # a value that cannot be a cache key: let the object say what is wrong
            return kind(*values)

    return build


_failures = _cached(FailurePolicy)

#: The options of a stream given none.
DEFAULTS: Final = StreamOptions()
