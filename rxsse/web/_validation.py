"""pydantic at rxsse's edges: a validator and a JSON Schema for any annotation.

Handler parameters, request bodies and the data of typed streams are validated by pydantic
``TypeAdapter``s made once, when a route is set up; the API documents describe the same
annotations with the same adapters' JSON Schemas, so what is checked and what is documented
cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter
from typing_extensions import is_typeddict

_MISSING: Any = inspect.Parameter.empty
# Numbers from a query string or a body are finite: NaN and infinity cannot go back out.
_CONFIG = ConfigDict(allow_inf_nan=False)


def is_union(hint: Any) -> bool:
    """Whether ``hint`` is ``X | Y`` (``Union[X, Y]``, ``Optional[X]``)."""
    return typing.get_origin(hint) in (Union, types.UnionType)


def unwrap_optional(hint: Any) -> tuple[bool, Any]:
    """``Optional[X]`` / ``X | None`` -> (True, X); anything else -> (False, hint)."""
    if is_union(hint):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return len(args) < len(typing.get_args(hint)), args[0]
    return False, hint


def adapter_for(hint: Any, where: str) -> TypeAdapter[Any]:
    """The validator of ``hint`` (``str`` for no annotation or ``Any``).

    Raises:
        TypeError: pydantic cannot validate ``hint`` (naming ``where`` it was found).
    """
    if hint is _MISSING or hint is Any:
        hint = str
    try:
        try:
            return _cached_adapter(hint)
        except TypeError:  # an unhashable annotation (Annotated with a dict, say)
            return _adapter(hint)
    except PydanticUserError as exc:
        raise TypeError(f"{where}: pydantic cannot validate {hint!r}: {exc}") from None


def _adapter(hint: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(hint, config=_CONFIG)
    except PydanticUserError as exc:
        if exc.code != "type-adapter-config-unused":
            raise
    return TypeAdapter(hint)  # a model, dataclass or TypedDict: its own config rules


_cached_adapter = functools.lru_cache(maxsize=1024)(_adapter)


def describe(adapter: TypeAdapter[Any]) -> str:
    """What a value must be, in words, for a 400: "an integer", "one of ['red', 'blue']"..."""
    schema = adapter.json_schema()
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if "const" in schema:
        return f"one of {[schema['const']]}"
    kind = schema.get("format") or schema.get("type")
    words = {
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean (true/false)",
        "string": "a string",
        "array": "a list",
        "object": "an object",
    }
    text = words.get(str(kind), f"a {kind}" if kind else "a valid value")
    bounds = [
        f"{k} {schema[k]}" for k in ("minimum", "maximum", "minLength", "maxLength") if k in schema
    ]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def is_body_type(hint: Any) -> bool:
    """Whether ``hint`` is a structure a JSON body carries: a pydantic model, a dataclass or a
    ``TypedDict``."""
    hint = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if not isinstance(hint, type):
        return False
    return issubclass(hint, BaseModel) or dataclasses.is_dataclass(hint) or is_typeddict(hint)
