"""Parameter binding: from a handler's signature to the arguments of one request.

A binder is built once per route (at ``setup``): each parameter gets a pydantic validator for
its annotation there, so an annotation pydantic cannot validate is a ``TypeError`` at setup and
a request pays only for the lookups and validations its handler asks for. Every failure of a
request is collected, and all of them are answered in one 400 with a JSON body (see
:func:`rxsse._errors.invalid_request`), before the handler runs and before anything is
subscribed.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from .. import _payload as payload
from .._errors import Problem, invalid_request
from ..streaming._failures import resume_of
from ._validation import adapter_for, describe, is_body_type, unwrap_optional

#: Values injected by annotation: ``{web.Request: lambda request: request}``.
Providers = Mapping[Any, Callable[[web.Request], Any]]

_MISSING: Any = inspect.Parameter.empty
_PATH_PARAM = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")
#: Methods whose routes take a model-typed parameter from the JSON body (as FastAPI does).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Source = Literal["provided", "path", "query", "query_model", "last_event_id", "body"]


def path_parameters(path: str) -> frozenset[str]:
    """The names of the ``{name}`` / ``{name:regex}`` parts of an aiohttp route path."""
    return frozenset(match.strip() for match in _PATH_PARAM.findall(path))


@dataclass(frozen=True, slots=True)
class Parameter:
    """How one handler parameter is bound (also what the API documents describe)."""

    name: str
    source: Source
    default: Any
    adapter: TypeAdapter[Any] | None = None
    many: bool = False  #: a repeated query parameter (``list[...]``)
    provider: Callable[[web.Request], Any] | None = None
    #: for a model of query parameters: each field's name and whether it repeats
    fields: tuple[tuple[str, bool], ...] = field(default=())

    @property
    def required(self) -> bool:
        """Whether a request must give it."""
        return self.default is _MISSING


class Binder:
    """Turns a request into the keyword arguments of one handler.

    Names bind as follows: a parameter whose annotation has a provider (``web.Request`` and
    whatever ``setup`` adds) gets the provided value; ``request`` gets the request; a name in
    the route path gets that path part; ``last_event_id`` gets the ``Last-Event-ID`` header (or
    the ``lastEventId`` query parameter); ``body`` gets the request's JSON body, validated
    against its annotation if it has one, and so does a parameter annotated with a pydantic
    model, a dataclass or a ``TypedDict`` on a POST, PUT, PATCH or DELETE route; on a GET
    route a parameter annotated with a pydantic model takes its fields from the query string.
    Any other name is a query parameter validated by pydantic against its annotation (``int``,
    ``float`` (finite), ``bool``, ``datetime``, ``date``, ``UUID``, ``Decimal``, an ``Enum``, a
    ``Literal``, ``Annotated[int, Field(ge=1)]``..., ``list[...]`` for repeated parameters,
    ``Optional``).
    """

    def __init__(
        self,
        handler: Callable[..., Any],
        path: str,
        providers: Providers,
        *,
        name: str,
        method: str = "GET",
    ) -> None:
        self.name = name
        try:
            hints = typing.get_type_hints(
                inspect.unwrap(getattr(handler, "__func__", handler)), include_extras=True
            )
        except Exception as exc:
            raise TypeError(f"cannot read the annotations of handler {name}: {exc}") from exc
        #: The handler's annotations (its return's too: what a route's contract reads).
        self.hints: Mapping[str, Any] = hints
        in_path = path_parameters(path)
        takes_body = method.upper() in _BODY_METHODS
        #: The handler's parameters, in order, and how each is bound.
        self.parameters = tuple(
            self._plan(param, hints.get(param.name, _MISSING), in_path, providers, takes_body)
            for param in inspect.signature(handler).parameters.values()
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)
        )
        bodies = [p.name for p in self.parameters if p.source == "body"]
        if len(bodies) > 1:
            raise TypeError(f"handler {name} takes the request body twice: {bodies}")

    def _plan(
        self,
        param: inspect.Parameter,
        hint: Any,
        in_path: frozenset[str],
        providers: Providers,
        takes_body: bool,
    ) -> Parameter:
        name, default = param.name, param.default
        where = f"parameter {name!r} of handler {self.name}"
        provider = providers.get(hint) if hint is not _MISSING else None
        if provider is None and name == "request":
            provider = providers.get(web.Request)
        if provider is not None:
            return Parameter(name, "provided", default, provider=provider)
        optional, inner = unwrap_optional(hint)
        if optional and default is _MISSING:
            default = None
        if name == "body" or (takes_body and name not in in_path and is_body_type(inner)):
            adapter = None if inner in (_MISSING, Any) else adapter_for(inner, where)
            return Parameter(name, "body", default, adapter)
        if _is_model(inner) and name not in in_path:
            adapter = adapter_for(inner, where)
            return Parameter(name, "query_model", default, adapter, fields=_fields(inner))
        many = typing.get_origin(_strip_annotated(inner)) is list
        source: Source = "query"
        if name in in_path:
            source = "path"
        elif name == "last_event_id":
            source = "last_event_id"
        return Parameter(name, source, default, adapter_for(inner, where), many=many)

    async def bind(self, request: web.Request) -> dict[str, Any]:
        """The handler's keyword arguments for ``request``; a 400 listing every missing or
        invalid value."""
        kwargs: dict[str, Any] = {}
        problems: list[Problem] = []
        for param in self.parameters:
            try:
                if param.source == "provided":
                    assert param.provider is not None
                    kwargs[param.name] = param.provider(request)
                elif param.source == "body":
                    kwargs[param.name] = await _bind_body(request, param)
                elif param.source == "query_model":
                    kwargs[param.name] = _bind_query_model(request, param)
                else:
                    kwargs[param.name] = _bind_text(request, param)
            except _Invalid as invalid:
                problems.extend(invalid.problems)
        if problems:
            raise invalid_request(problems)
        return kwargs


class _Invalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__()
        self.problems = problems


def _location(param: Parameter) -> str:
    return {"path": "path", "last_event_id": "header", "body": "body"}.get(param.source, "query")


def _kind(param: Parameter) -> str:
    return {"path": "path parameter", "last_event_id": "Last-Event-ID"}.get(
        param.source, "query parameter"
    )


def _bind_text(request: web.Request, param: Parameter) -> Any:
    raw: str | list[str] | None
    if param.source == "path":
        raw = request.match_info.get(param.name)
    elif param.source == "last_event_id":
        raw = resume_of(request).last_event_id  # without the mark of a failed stream
    elif param.many:
        raw = request.query.getall(param.name, []) or None
    else:
        raw = request.query.get(param.name)
    if raw is None:
        if param.required:
            message = f"missing {_kind(param)} {param.name!r}"
            raise _Invalid([Problem(_location(param), param.name, message)])
        return param.default
    assert param.adapter is not None
    try:
        return param.adapter.validate_python(raw)
    except ValidationError as exc:
        expected = describe(param.adapter)
        raise _Invalid(
            [
                Problem(
                    _location(param),
                    param.name,
                    f"invalid {_kind(param)} {param.name!r}: {error['msg']}",
                    expected=expected,
                )
                for error in exc.errors(include_url=False)
            ]
        ) from None


def _bind_query_model(request: web.Request, param: Parameter) -> Any:
    values: dict[str, Any] = {}
    for name, many in param.fields:
        if many:
            found = request.query.getall(name, [])
            if found:
                values[name] = found
        elif name in request.query:
            values[name] = request.query[name]
    if not values and not param.required:
        return param.default
    assert param.adapter is not None
    try:
        return param.adapter.validate_python(values)
    except ValidationError as exc:
        raise _Invalid(_problems("query", exc, prefix="query parameter")) from None


async def _bind_body(request: web.Request, param: Parameter) -> Any:
    if not request.can_read_body:
        if param.required:
            raise _Invalid([Problem("body", param.name, "missing JSON request body")])
        return param.default
    try:
        data = payload.loads(await request.read())
    except ValueError as exc:  # NaN, Infinity, lone surrogates and deep nesting included
        message = f"the request body is not valid JSON: {exc}"
        raise _Invalid([Problem("body", param.name, message)]) from None
    if param.adapter is None:
        return data
    try:
        return param.adapter.validate_python(data)
    except ValidationError as exc:
        raise _Invalid(_problems("body", exc, prefix="request body", root="body")) from None


def _problems(
    location: str, error: ValidationError, *, prefix: str, root: str | None = None
) -> list[Problem]:
    """One problem per pydantic error, named by its dotted path (``items.0.price``)."""
    problems = []
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or root
        message = f"invalid {prefix} {name!r}: {item['msg']}" if name else item["msg"]
        problems.append(Problem(location, name or location, message))
    return problems


def _fields(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    """Each field of a model of query parameters: its name in the query, whether it repeats."""
    return tuple(
        (
            info.alias or name,
            typing.get_origin(_strip_annotated(unwrap_optional(info.annotation)[1])) is list,
        )
        for name, info in model.model_fields.items()
    )


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def _strip_annotated(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
