"""Parameter binding: from a handler's signature to the arguments of one request.

A binder is built once per route (at ``setup``), so a request pays only for the lookups and
conversions its handler asks for. Every failure is a 400 with a JSON body naming the parameter,
raised before the handler runs and before anything is subscribed.
"""

from __future__ import annotations

import enum
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from aiohttp import web

from . import payload
from .errors import bad_request
from .failures import resume_of

__all__ = ["Binder", "Providers"]

#: Values injected by annotation: ``{web.Request: lambda request: request}``.
Providers = Mapping[Any, Callable[[web.Request], Any]]

_MISSING: Any = inspect.Parameter.empty
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_PATH_PARAM = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")


def path_parameters(path: str) -> frozenset[str]:
    """The names of the ``{name}`` / ``{name:regex}`` parts of an aiohttp route path."""
    return frozenset(match.strip() for match in _PATH_PARAM.findall(path))


@dataclass(frozen=True, slots=True)
class _Param:
    name: str
    source: Literal["provided", "path", "query", "last_event_id", "body"]
    convert: Callable[[str], Any]
    expected: str
    default: Any
    many: bool = False
    provider: Callable[[web.Request], Any] | None = None


class Binder:
    """Turns a request into the keyword arguments of one handler.

    Names bind as follows: a parameter whose annotation has a provider (``web.Request`` and
    whatever ``setup`` adds) gets the provided value; ``request`` gets the request; a name in
    the route path gets that path part; ``last_event_id`` gets the ``Last-Event-ID`` header (or
    the ``lastEventId`` query parameter); ``body`` gets the request's JSON body; any other name
    is a query parameter converted to its annotation (``str``, ``int``, ``float``, ``bool``,
    an ``Enum``, a ``Literal``, ``list[...]`` for repeated parameters, ``Optional``).
    """

    def __init__(
        self, handler: Callable[..., Any], path: str, providers: Providers, *, name: str
    ) -> None:
        self.name = name
        try:
            hints = typing.get_type_hints(inspect.unwrap(getattr(handler, "__func__", handler)))
        except Exception as exc:
            raise TypeError(f"cannot read the annotations of handler {name}: {exc}") from exc
        in_path = path_parameters(path)
        self._params = [
            self._plan(param, hints.get(param.name, _MISSING), in_path, providers)
            for param in inspect.signature(handler).parameters.values()
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        ]
        self.reads_body = any(p.source == "body" for p in self._params)

    def _plan(
        self, param: inspect.Parameter, hint: Any, in_path: frozenset[str], providers: Providers
    ) -> _Param:
        name, default = param.name, param.default
        provider = providers.get(hint) if hint is not _MISSING else None
        if provider is None and name == "request":
            provider = providers.get(web.Request)
        if provider is not None:
            return _Param(name, "provided", str, "", default, provider=provider)
        if name == "body":
            return _Param(name, "body", str, "JSON", default)
        optional, inner = _unwrap_optional(hint)
        if optional and default is _MISSING:
            default = None
        many = typing.get_origin(inner) is list
        if many:
            (inner,) = typing.get_args(inner) or (str,)
        convert, expected = _converter(inner, where=f"parameter {name!r} of handler {self.name}")
        source: Literal["path", "query", "last_event_id"]
        if name in in_path:
            source = "path"
        elif name == "last_event_id":
            source = "last_event_id"
        else:
            source = "query"
        return _Param(name, source, convert, expected, default, many=many)

    async def bind(self, request: web.Request) -> dict[str, Any]:
        """The handler's keyword arguments for ``request``; a 400 on a missing or bad value."""
        kwargs: dict[str, Any] = {}
        for param in self._params:
            if param.source == "provided":
                assert param.provider is not None
                kwargs[param.name] = param.provider(request)
            elif param.source == "body":
                kwargs[param.name] = await _json_body(request, param)
            else:
                kwargs[param.name] = _bind_text(request, param)
        return kwargs


def _bind_text(request: web.Request, param: _Param) -> Any:
    kind = "query parameter"
    raw: str | list[str] | None
    if param.source == "path":
        kind, raw = "path parameter", request.match_info.get(param.name)
    elif param.source == "last_event_id":
        kind = "Last-Event-ID"
        raw = resume_of(request).last_event_id  # without the mark of a failed stream
    elif param.many:
        raw = request.query.getall(param.name, []) or None
    else:
        raw = request.query.get(param.name)
    if raw is None:
        if param.default is _MISSING:
            raise bad_request(f"missing {kind} {param.name!r}", parameter=param.name)
        return param.default
    try:
        if isinstance(raw, list):
            return [param.convert(item) for item in raw]
        return param.convert(raw)
    except (ValueError, LookupError):
        raise bad_request(
            f"invalid {kind} {param.name!r}: expected {param.expected}",
            parameter=param.name,
            expected=param.expected,
        ) from None


async def _json_body(request: web.Request, param: _Param) -> Any:
    if not request.can_read_body:
        if param.default is _MISSING:
            raise bad_request("missing JSON request body", parameter=param.name)
        return param.default
    try:
        return payload.loads(await request.read())
    except ValueError as exc:  # NaN, Infinity, lone surrogates and deep nesting included
        raise bad_request(
            f"the request body is not valid JSON: {exc}", parameter=param.name
        ) from None


def _unwrap_optional(hint: Any) -> tuple[bool, Any]:
    """``Optional[X]`` / ``X | None`` -> (True, X); anything else -> (False, hint)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1:
            return len(args) < len(typing.get_args(hint)), args[0]
    return False, hint


def _converter(hint: Any, *, where: str) -> tuple[Callable[[str], Any], str]:
    """How to turn a query string value into ``hint``, and how to describe it in a 400."""
    if hint in (_MISSING, str, Any):
        return str, "a string"
    if hint is bool:
        return _to_bool, "a boolean (true/false)"
    if hint is int:
        return int, "an integer"
    if hint is float:
        return _to_float, "a number"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = [str(member.value) for member in hint]
        by_text = {str(member.value): member for member in hint}
        return by_text.__getitem__, f"one of {choices}"
    if typing.get_origin(hint) is Literal:
        by_text = {str(value): value for value in typing.get_args(hint)}
        return by_text.__getitem__, f"one of {list(by_text)}"
    raise TypeError(f"{where}: cannot bind a query value to the annotation {hint!r}")


def _to_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _to_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value
