"""Event data as JSON: the one encoder and the one decoder of rxsse.

Every frame, every broker and every JSON request body goes through these two functions, so
what one path accepts the others can carry. What a browser cannot read is refused here, once,
with a :class:`ValueError` that says why:

- values JSON cannot represent: NaN and infinity, also as a number too large for a float
  (``1e999``); ``JSON.parse`` cannot give them back;
- objects the ``json`` module cannot serialise;
- text that UTF-8 cannot carry (a lone surrogate such as ``"\\ud800"``);
- nesting deeper than the interpreter's recursion limit.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, NoReturn

__all__ = ["dumps", "loads"]

# Compact UTF-8 JSON, made once: json.dumps with options builds an encoder on every call.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# What JSON text must hold to parse into something dumps() refuses: a \uD800-\uDFFF escape
# (the only way to spell a lone surrogate), or an exponent of three digits (1e999 is infinity).
_SUSPECT: Final = re.compile(r"\\u[dD][89abcdefABCDEF]|[eE][+-]?[0-9]{3}")


def dumps(data: Any) -> str:
    """``data`` as compact JSON text, the form every frame and every broker carries.

    Raises:
        ValueError: for NaN or infinity, an object ``json`` cannot serialise, a lone
            surrogate, or nesting too deep.

    Example:
        >>> dumps({"price": 1.5, "symbol": "€"})
        '{"price":1.5,"symbol":"€"}'
    """
    try:
        text = _ENCODER.encode(data)
    except TypeError as exc:
        raise ValueError(f"cannot be sent as JSON: {exc}") from None
    except RecursionError:
        raise ValueError("cannot be sent as JSON: nested too deeply") from None
    except ValueError as exc:  # the encoder's own: NaN or infinity, or a circular reference
        raise ValueError(f"cannot be sent as JSON: {exc}") from None
    if not text.isascii():
        _check_unicode(text)
    return text


def loads(text: str | bytes) -> Any:
    """Parse JSON text, refusing what :func:`dumps` would refuse to send.

    Raises:
        ValueError: for text that is not JSON (or not UTF-8), ``NaN``/``Infinity``, a lone
            surrogate, or nesting too deep.

    Example:
        >>> loads('{"a": [1, 2]}')
        {'a': [1, 2]}
    """
    if isinstance(text, bytes):
        text = text.decode()  # UnicodeDecodeError is a ValueError
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if _SUSPECT.search(text) is not None:
        dumps(value)  # valid pairs and finite numbers pass; the rest is refused
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON: a browser's JSON.parse refuses it")


def _check_unicode(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("cannot be sent: the text holds a lone surrogate") from None
