"""A stream's options as one typed, frozen object, checked once when it is made.

``StreamOptions`` holds what ``rxsse.stream``, ``@sse`` and ``setup`` accept as keywords. A
route's options are the app's defaults with the route's own on top, merged and checked once
at ``setup``; a request only reads them. Streams with the same options share one object.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

from .._checks import check_seconds
from ._compression import check_compress
from ._failures import DEFAULT_ERROR_EVENT, DEFAULT_ERROR_RETRY, DEFAULT_MAX_FAILURES, FailurePolicy
from ._limits import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_BUFFER_FRAMES,
    DEFAULT_LIFETIME_JITTER,
    DEFAULT_SEND_TIMEOUT,
    Overflow,
    StreamLimits,
)

#: Seconds without output after which a heartbeat comment is sent (proxies drop idle streams).
DEFAULT_HEARTBEAT: Final = 15.0


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How a stream behaves: heartbeat, headers, what a slow client may cost, lifetime, and
    how a failure ends (the keywords of :func:`rxsse.stream`, described there).

    Every value is checked when the object is made: a bad one is a ``ValueError`` (a wrong
    name a ``TypeError``) at import or ``setup`` time, not when a request comes.

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
    #: The encodings ``compress`` offers, in order (checked once; empty: none).
    encodings: tuple[str, ...] = field(init=False, repr=False, compare=False)
    #: The buffer and time limits, checked and built once.
    limits: StreamLimits = field(init=False, repr=False, compare=False)
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
        object.__setattr__(self, "limits", _limits(
            self.max_buffer_frames,
            self.max_buffer_bytes,
            self.overflow,
            self.send_timeout,
            self.max_lifetime,
            self.lifetime_jitter,
        ))  # fmt: skip
        object.__setattr__(
            self, "failures", _failures(self.error_event, self.error_retry, self.max_failures)
        )
        if isinstance(self.compress, list):  # (a list from a config: hashable from here on)
            object.__setattr__(self, "compress", tuple(self.compress))
        object.__setattr__(self, "encodings", check_compress(self.compress))

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
    """The options as keywords (of :func:`rxsse.stream`, ``@sse`` and ``setup``)."""

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
    """Build ``kind`` objects through a cache: streams with equal options share one (a
    session holds them)."""
    cache = functools.lru_cache(maxsize=256, typed=True)(kind)  # typed: True is no 1

    def build(*values: Any) -> Any:
        try:
            return cache(*values)
        except TypeError:  # a value that cannot be a cache key: let the object say what is wrong
            return kind(*values)

    return build


_limits = _cached(StreamLimits)
_failures = _cached(FailurePolicy)

#: The options of a stream given none.
DEFAULTS: Final = StreamOptions()
