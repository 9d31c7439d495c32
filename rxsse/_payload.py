"""Event data as JSON: the one encoder and the one decoder of rxsse.

Every frame, every broker and every JSON request body goes through these functions, so what
one path accepts the others can carry. The encoder is pydantic-core's (in Rust): besides what
``json`` takes, it serialises pydantic models, dataclasses, ``datetime``/``date``/``time``
(ISO 8601), ``timedelta``, ``UUID``, ``Decimal`` (as a string, exactly), enums (their value),
sets and tuples (arrays), and bytes as UTF-8 text. What a browser cannot read is refused here,
once, with a :class:`ValueError` that says why:

- values JSON cannot represent: NaN and infinity, also as a number too large for a float
  (``1e999``); ``JSON.parse`` cannot give them back;
- objects of a type it cannot serialise;
- text that UTF-8 cannot carry (a lone surrogate such as ``"\\ud800"``);
- nesting too deep, and circular references.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, NoReturn

from pydantic_core import PydanticSerializationError, to_json

# What JSON text must hold to parse into something dumps() refuses: a \uD800-\uDFFF escape
# (the only way to spell a lone surrogate), or an exponent of three digits (1e999 is infinity).
_SUSPECT: Final = re.compile(r"\\u[dD][89abcdefABCDEF]|[eE][+-]?[0-9]{3}")


def dumps(data: Any) -> str:
    """``data`` as compact JSON text, the form every frame and every broker carries.

    Raises:
        ValueError: for NaN or infinity, an object of a type it cannot serialise, a lone
            surrogate, nesting too deep or a circular reference.

    Example:
        >>> dumps({"price": 1.5, "symbol": "€"})
        '{"price":1.5,"symbol":"€"}'
    """
    return dumps_bytes(data).decode()


def dumps_bytes(data: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (what a frame is made of)."""
    try:
        # NaN and infinity come out as constants, to be refused below with a clear message.
        text = to_json(data, inf_nan_mode="constants")
    except PydanticSerializationError as exc:
        raise ValueError(f"cannot be sent as JSON: {_reason(exc)}") from None
    except RecursionError:
        raise ValueError("cannot be sent as JSON: nested too deeply") from None
    if b"NaN" in text or b"Infinity" in text:  # a constant, or only a string holding the word
        json.loads(text, parse_constant=_refuse_to_send)
    return text


def _reason(error: PydanticSerializationError) -> str:
    reason = str(error).removeprefix("Error serializing to JSON: ")
    if "surrogates not allowed" in reason:
        return "the text holds a lone surrogate"
    if "depth exceeded" in reason:
        return "nested too deeply"
    return reason


def _refuse_to_send(name: str) -> NoReturn:
    raise ValueError(f"cannot be sent as JSON: {name} (a browser's JSON.parse refuses it)")


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
        dumps_bytes(value)  # valid pairs and finite numbers pass; the rest is refused
    return value


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON: a browser's JSON.parse refuses it")
