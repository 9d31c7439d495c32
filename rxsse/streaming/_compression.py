"""Compression of a stream: chosen per request from ``Accept-Encoding``, one compressor per
stream (its window spans events, so the keys and values events repeat cost almost nothing),
flushed after every write (each event reaches the client, decodable, at once).

``gzip`` comes with Python (``zlib``); ``br`` needs the ``brotli`` package, ``zstd`` the
``zstandard`` package (``pip install 'rxsse[compression]'``). A compressor is memory held for
as long as its stream is open: about 29 KiB for gzip, 122 KiB for zstd and 274 KiB for
brotli, as tuned here. So ``compress=True`` offers gzip first; name the encodings in the order
you prefer to offer others first (``compress=("zstd", "gzip")``).
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

#: What ``compress=True`` offers, in this order (those this process can produce).
ENCODINGS: Final = ("gzip", "zstd", "br")

_PACKAGES: Final = {"gzip": "zlib", "zstd": "zstandard", "br": "brotli"}


class Compressor(Protocol):
    """One stream's compressor."""

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed and flushed: the client can decode all of it now."""

    def finish(self) -> bytes:
        """The end of the compressed stream (written before the response ends)."""


def available() -> tuple[str, ...]:
    """The encodings of :data:`ENCODINGS` this process can produce."""
    return tuple(name for name in ENCODINGS if _importable(_PACKAGES[name]))


def check_compress(value: object) -> tuple[str, ...]:
    """The encodings a ``compress`` option offers, in order (empty: no compression).

    Raises:
        ValueError: for a value that is not a bool or a sequence of known encodings, or an
            encoding whose package is not installed.
    """
    if value is False or value is None:
        return ()
    if value is True:
        return available()
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"compress must be True, False or encodings such as ('gzip',), not {value!r}"
        )
    names = tuple(value)
    for name in names:
        if name not in _PACKAGES:
            raise ValueError(f"compress: unknown encoding {name!r}; known: {list(ENCODINGS)}")
        if not _importable(_PACKAGES[name]):
            raise ValueError(
                f"compress: {name!r} needs the {_PACKAGES[name]!r} package "
                "(pip install 'rxsse[compression]')"
            )
    return names


def choose(accept_encoding: str | None, offered: Sequence[str]) -> str | None:
    """The encoding of ``offered`` (in the server's order) that ``Accept-Encoding`` accepts
    with the highest weight, or None (send the stream as it is).

    Example:
        >>> choose("gzip, deflate, br, zstd", ("gzip", "zstd"))
        'gzip'
        >>> choose("br;q=1.0, gzip;q=0.5", ("gzip", "br"))
        'br'
        >>> choose("gzip;q=0, *;q=0.1", ("gzip", "zstd"))
        'zstd'
    """
    if not accept_encoding or not offered:
        return None
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0  # a weight that means nothing accepts nothing
        if name:
            weights[name.strip().lower()] = weight
    best, best_weight = None, 0.0
    for name in offered:
        weight = weights.get(name, weights.get("*", 0.0))
        if weight > best_weight:
            best, best_weight = name, weight
    return best


def compressor(encoding: str) -> Compressor:
    """A new compressor for ``encoding`` (one of :func:`available`)."""
    return _MAKERS[encoding]()


class _Gzip:
    __slots__ = ("_zlib",)

    def __init__(self) -> None:
        # A 4 KiB window and memLevel 5: 29 KiB a stream, for 0.26x on JSON events flushed
        # one by one (zlib's defaults: 256 KiB, for 0.24x).
        self._zlib = zlib.compressobj(6, zlib.DEFLATED, 16 + 12, 5)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._zlib.flush(zlib.Z_FINISH)


class _Zstd:
    __slots__ = ("_flush_block", "_zstd")

    def __init__(self) -> None:
        import zstandard

        parameters = zstandard.ZstdCompressionParameters.from_level(
            3, window_log=14, hash_log=13, chain_log=13
        )
        self._zstd = zstandard.ZstdCompressor(compression_params=parameters).compressobj()
        self._flush_block = zstandard.COMPRESSOBJ_FLUSH_BLOCK

    def compress(self, data: bytes) -> bytes:
        return self._zstd.compress(data) + self._zstd.flush(self._flush_block)

    def finish(self) -> bytes:
        return self._zstd.flush()


class _Brotli:
    __slots__ = ("_brotli",)

    def __init__(self) -> None:
        import brotli  # type: ignore[import-untyped]  # (no type hints published)

        self._brotli: Any = brotli.Compressor(mode=brotli.MODE_TEXT, quality=5, lgwin=16)

    def compress(self, data: bytes) -> bytes:
        return self._brotli.process(data) + self._brotli.flush()  # type: ignore[no-any-return]

    def finish(self) -> bytes:
        return self._brotli.finish()  # type: ignore[no-any-return]


_MAKERS: Final[dict[str, Callable[[], Compressor]]] = {
    "gzip": _Gzip,
    "zstd": _Zstd,
    "br": _Brotli,
}


def _importable(module: str) -> bool:
    return module == "zlib" or importlib.util.find_spec(module) is not None
