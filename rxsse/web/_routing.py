"""Controllers and routes: ``@controller``, ``@sse``, ``@get``/``@post``/``@put``/``@delete``,
and ``setup(app, ...)`` that mounts them on an aiohttp application.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Never, Protocol, TypeVar

from aiohttp import web

from .._errors import json_errors as json_errors_middleware
from ..bus._metrics import BusMetrics
from ..streaming._options import DEFAULTS, StreamKeywords, StreamOptions, options_of
from ..streaming._state import Quota, app_streams
from ._binding import Binder
from ._contracts import EventCheck, route_contract, stream_events
from ._cors import CORS
from ._docs import Docs, install_docs
from ._prometheus import CONTENT_TYPE, MetricsExporter
from ._state import app_state
from ._views import Admission, Guard, Limits, plain_view, sse_view

if TYPE_CHECKING:  # (typing.Unpack is Python 3.11+; annotations are not evaluated)
    from typing_extensions import Unpack


_F = TypeVar("_F", bound=Callable[..., Any])
_C = TypeVar("_C", bound=type)

_ROUTE: Final = "__rxsse_route__"
_PREFIX: Final = "__rxsse_prefix__"
_GUARDS: Final = "__rxsse_guards__"


@dataclass(frozen=True)
class RouteSpec:
    """What a route decorator recorded on a handler."""

    method: str
    path: str
    kind: Literal["sse", "plain"]
    options: dict[str, Any] = field(default_factory=dict)
    guards: tuple[Guard, ...] = ()
    max_streams: int | None = None
    events: Mapping[str, Any] | None = None  #: a stream's event types and their data


def sse(
    path: str = "",
    *,
    guards: Sequence[Guard] = (),
    max_streams: int | None = None,
    events: Mapping[str, Any] | None = None,
    **options: Unpack[StreamKeywords],
) -> Callable[[_F], _F]:
    """Mark a handler as a ``GET`` event stream at ``path`` (relative to its controller).

    The handler returns an Observable (or an awaitable of one, or an async iterator); each
    emission is sent as a frame. ``options`` are those of :func:`rxsse.stream`
    (``heartbeat``, ``headers``, buffer limits) and override the defaults given to
    :func:`setup`. ``guards`` run first (after the controller's): a rejected request gets its
    status and nothing is subscribed. ``max_streams`` caps the streams open at once on this
    route: one more is answered 503 with ``Retry-After``. ``events`` declares what the
    stream sends, by event type (``{"update": Update, "removed": Removed}``; an event with no
    type is ``"message"``); without it, the handler's return annotation says it
    (``-> rx.Observable[Price]``). The API documents describe it, and
    ``setup(..., validate_events=True)`` checks every event against it.

    Example:
        >>> @sse("/ticks", heartbeat=30.0)
        ... def ticks(self) -> rx.Observable[MessageEvent]:  # doctest: +SKIP
        ...     return rx.interval(1.0).pipe(ops.map(lambda n: MessageEvent({"count": n})))
    """
    options_of(None, options, f"@sse({path!r})")  # checked now, at decoration
    Quota(max_streams)
    return _route("GET", path, "sse", dict(options), guards, max_streams, events)


def get(path: str = "", *, guards: Sequence[Guard] = ()) -> Callable[[_F], _F]:
    """Mark a handler as a plain ``GET`` route. It may return a dict or list (sent as JSON),
    a ``str`` (text), ``None`` (204) or any ``web.StreamResponse``."""
    return _route("GET", path, "plain", {}, guards)


def post(path: str = "", *, guards: Sequence[Guard] = ()) -> Callable[[_F], _F]:
    """Mark a handler as a plain ``POST`` route (returns as for :func:`get`)."""
    return _route("POST", path, "plain", {}, guards)


def put(path: str = "", *, guards: Sequence[Guard] = ()) -> Callable[[_F], _F]:
    """Mark a handler as a plain ``PUT`` route (returns as for :func:`get`)."""
    return _route("PUT", path, "plain", {}, guards)


def delete(path: str = "", *, guards: Sequence[Guard] = ()) -> Callable[[_F], _F]:
    """Mark a handler as a plain ``DELETE`` route (returns as for :func:`get`)."""
    return _route("DELETE", path, "plain", {}, guards)


def _route(
    method: str,
    path: str,
    kind: Literal["sse", "plain"],
    options: dict[str, Any],
    guards: Sequence[Guard],
    max_streams: int | None = None,
    events: Mapping[str, Any] | None = None,
) -> Callable[[_F], _F]:
    if events is not None:
        events = dict(events)
        stream_events({}, events, f"@sse({path!r})")  # checked now, at decoration

    def mark(handler: _F) -> _F:
        spec = RouteSpec(method, path, kind, options, tuple(guards), max_streams, events)
        setattr(handler, _ROUTE, spec)
        return handler

    return mark


def controller(prefix: str = "", *, guards: Sequence[Guard] = ()) -> Callable[[_C], _C]:
    """Group a class's routes under ``prefix``; pass an instance (or the class) to ``setup``.

    Example:
        >>> @controller("/events")
        ... class Events:
        ...     @sse("/ticks")
        ...     def ticks(self) -> rx.Observable[int]:
        ...         return rx.interval(1.0)
    """

    def mark(cls: _C) -> _C:
        setattr(cls, _PREFIX, prefix)
        setattr(cls, _GUARDS, tuple(guards))
        return cls

    return mark


class _Lifecycle(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...


def setup(
    app: web.Application,
    *controllers: object,
    bus: _Lifecycle | None = None,
    options: StreamOptions | None = None,
    limits: Limits | None = None,
    cors: CORS | None = None,
    docs: bool | Docs = False,
    metrics: str | None = None,
    json_errors: bool = True,
    validate_events: bool = False,
    **removed: Never,
) -> None:
    """Register every route of every controller on ``app``, and end open streams on shutdown.

    Args:
        app: the application (not yet started).
        controllers: instances of ``@controller`` classes (a class with a no-argument
            constructor may be given instead), or functions decorated with ``@sse``/``@get``...
            A controller's ``async def on_startup(self)``, ``async def on_shutdown(self)`` and
            ``async def on_cleanup(self)`` run with the app's own signals (``on_shutdown``
            while the bus is still open).
        bus: an :class:`rxsse.EventBus`: handlers get it through a parameter annotated with its
            class (``bus: EventBus``); it starts with the app and closes on cleanup.
        options: the defaults of every ``@sse`` route (a :class:`~rxsse.StreamOptions`:
            heartbeat, headers, buffer limits, lifetime, failures, compression, the
            ``shutdown_event`` sent to every open stream when the app shuts down); a route's
            own options override them. Checked and merged once, here.
        limits: how many streams the app serves at once (a :class:`~rxsse.Limits`): one
            more is answered 503 with ``Retry-After``.
        cors: which other origins may use these routes from a browser (see :class:`rxsse.CORS`);
            ``None`` (the default) sends no CORS headers, so only same-origin pages can read
            the streams.
        docs: serve the API's documents and explorer (``True``, or a :class:`rxsse.Docs`
            for a title, version and paths): ``/asyncapi.json`` (AsyncAPI 3.0, every
            stream), ``/openapi.json`` (OpenAPI 3.1, every route) and ``/docs``.
        metrics: a path (e.g. ``"/metrics"``) where a GET serves :func:`rxsse.metrics` (and
            the bus's ``metrics``, as ``rxsse_bus_*``) as Prometheus text.
        json_errors: answer every error of the app with a JSON body, aiohttp's own (404,
            405, 413...) and unhandled exceptions included, as rxsse's own errors are;
            ``False`` leaves errors outside rxsse's routes as aiohttp makes them.
        validate_events: check every event a stream emits against the types it declares
            (see :func:`sse`); a wrong one fails the stream with an error naming the route.
            Worth having in tests; off by default, as it costs a validation per event.

    Raises:
        TypeError: a keyword of earlier versions (``heartbeat=``, ``max_streams=``,
            ``metrics_path=``...), with the form that replaces it.

    Example:
        >>> app = web.Application()
        >>> setup(app, Events(), options=StreamOptions(heartbeat=15.0))  # doctest: +SKIP
    """
    if removed:
        raise TypeError(_replacement(removed))
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be an rxsse.Limits, not {type(limits).__name__}")
    defaults = DEFAULTS if options is None else options
    if not isinstance(defaults, StreamOptions):
        raise TypeError(f"options must be an rxsse.StreamOptions, not {type(defaults).__name__}")
    streams = app_streams(app)  # the first setup creates them, and the web state
    state = app_state(app)
    if limits.max_streams is not None:
        streams.quota.limit = limits.max_streams
    counters = streams.metrics
    if json_errors and json_errors_middleware not in app.middlewares:
        app.middlewares.append(json_errors_middleware)
    providers: dict[Any, Callable[[web.Request], Any]] = {
        web.Request: _request,
        web.BaseRequest: _request,
        web.Application: _app,
    }
    if bus is not None:
        if state.bus is not bus:  # (a second setup with the same bus starts it once)
            _install_bus(app, bus)
            state.bus = bus
        providers[type(bus)] = lambda request: bus
    if metrics is not None:
        bus_counters = getattr(bus, "metrics", None)
        exporter = MetricsExporter(  # needs prometheus_client: said now, at setup
            counters, bus_counters if isinstance(bus_counters, BusMetrics) else None
        )

        async def serve_metrics(request: web.Request) -> web.Response:
            body = exporter.text().encode()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

        app.router.add_get(metrics, serve_metrics)
    resources: dict[str, web.Resource] = {}
    for target in controllers:
        instance = target() if isinstance(target, type) else target
        _register_hooks(app, instance)
        for handler, spec, full_path, guards in _routes_of(instance):
            name = getattr(handler, "__qualname__", repr(handler))
            binder = Binder(handler, full_path, providers, name=name, method=spec.method)
            contract = route_contract(handler, spec, full_path, name, binder, guards)
            if spec.kind == "sse":
                quotas = (Quota(spec.max_streams), streams.quota)
                admission = Admission(quotas, counters, limits.retry_after)
                route_options = defaults.replace(**spec.options)
                contract = replace(contract, error_event=route_options.failures.error_event)
                check = None
                if validate_events and contract.events:
                    check = EventCheck(f"{spec.method} {full_path} ({name})", contract.events)
                view = sse_view(handler, binder, guards, admission, route_options, check)
            else:
                view = plain_view(handler, binder, guards)
            state.routes.append(contract)
            resource = resources.get(full_path)
            if resource is None:
                resource = resources[full_path] = app.router.add_resource(full_path)
            resource.add_route(spec.method, view)
    state.install_cors(app, cors, resources.values())
    if docs:
        install_docs(app, state, Docs() if docs is True else docs)


def _replacement(removed: Mapping[str, object]) -> str:
    """What replaced the keywords ``removed`` of earlier versions of ``setup()``."""
    name = sorted(removed)[0]
    if name in StreamOptions.names():
        new = f"setup(app, ..., options=rxsse.StreamOptions({name}=...))"
    elif name in ("max_streams", "retry_after"):
        new = f"setup(app, ..., limits=rxsse.Limits({name}=...))"
    elif name == "metrics_path":
        new = "setup(app, ..., metrics=...)"
    else:
        return f"setup() got an unexpected keyword argument {name!r}"
    return f"setup({name}=...) is now {new}"


def _install_bus(app: web.Application, bus: _Lifecycle) -> None:
    """Start the bus with the app, close it on cleanup."""

    async def start(_app: web.Application) -> None:
        await bus.start()

    async def close(_app: web.Application) -> None:
        await bus.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)


def _register_hooks(app: web.Application, instance: object) -> None:
    """Run a controller's ``async on_startup()`` / ``on_shutdown()`` / ``on_cleanup()`` with
    the app's own."""
    hooks = (
        ("on_startup", app.on_startup),
        ("on_shutdown", app.on_shutdown),
        ("on_cleanup", app.on_cleanup),
    )
    for hook, signal in hooks:
        method = getattr(instance, hook, None)
        if method is None or not callable(method):
            continue

        async def call(
            _app: web.Application, method: Callable[[], Awaitable[None]] = method
        ) -> None:
            await method()

        signal.append(call)


def _request(request: web.Request) -> web.Request:
    return request


def _app(request: web.Request) -> web.Application:
    return request.app


def _routes_of(
    target: object,
) -> Iterator[tuple[Callable[..., Any], RouteSpec, str, tuple[Guard, ...]]]:
    """Each (bound handler, spec, full path, guards) of a controller instance or a decorated
    function; a controller's guards come before its routes' own."""
    spec = getattr(target, _ROUTE, None)
    if isinstance(spec, RouteSpec) and callable(target):
        yield target, spec, _join("", spec.path), spec.guards
        return
    cls = type(target)
    if not hasattr(cls, _PREFIX):
        raise TypeError(
            f"{cls.__qualname__} is not a @controller class nor a route-decorated function"
        )
    prefix: str = getattr(cls, _PREFIX)
    shared: tuple[Guard, ...] = getattr(cls, _GUARDS, ())
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attr, member in vars(klass).items():
            if attr in seen:
                continue
            seen.add(attr)
            spec = getattr(member, _ROUTE, None)
            if isinstance(spec, RouteSpec):
                yield getattr(target, attr), spec, _join(prefix, spec.path), shared + spec.guards


def _join(prefix: str, path: str) -> str:
    parts = [part.strip("/") for part in (prefix, path) if part.strip("/")]
    return "/" + "/".join(parts)
