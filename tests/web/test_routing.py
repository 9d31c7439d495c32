"""Controllers, route decorators, parameter binding and handler returns."""

from __future__ import annotations

import enum
import json
import logging
import sys
from typing import Any, Literal

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from rxsse import MessageEvent, controller, delete, get, post, put, sse
from tests.conftest import FrameReader


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@controller("/events")
class Echo:
    """Streams back what was bound, so each test can see the binding."""

    @sse("/ticks")
    def ticks(self) -> rx.Observable[MessageEvent]:
        return rx.of(MessageEvent({"tick": 1}))

    @sse("/query")
    def query(
        self,
        name: str,
        count: int = 1,
        ratio: float = 0.5,
        flag: bool = False,
        note: str | None = None,
        color: Color = Color.RED,
        mode: Literal["fast", "slow"] = "fast",
        tags: list[int] | None = None,
    ) -> rx.Observable[Any]:
        return rx.of(
            {
                "name": name,
                "count": count,
                "ratio": ratio,
                "flag": flag,
                "note": note,
                "color": color.value,
                "mode": mode,
                "tags": tags,
            }
        )

    @sse("/items/{item_id}")
    def item(self, item_id: int, request: web.Request) -> rx.Observable[Any]:
        return rx.of({"item_id": item_id, "path": request.path})

    @sse("/resume")
    def resume(self, last_event_id: str | None = None) -> rx.Observable[Any]:
        return rx.of({"last_event_id": last_event_id})

    @sse("/async")
    async def from_async(self) -> rx.Observable[int]:
        return rx.of(1, 2)

    @sse("/generator")
    async def from_generator(self) -> Any:
        for n in range(3):
            yield n

    @sse("/not-a-stream")
    def not_a_stream(self) -> Any:
        return [1, 2, 3]

    @sse("/raises")
    def raises(self) -> rx.Observable[Any]:
        raise RuntimeError("connection string with password")

    @sse("/forbidden")
    def forbidden(self) -> rx.Observable[Any]:
        raise web.HTTPForbidden()

    @sse("/done")
    def done(self) -> web.Response:
        return web.Response(status=204)

    @sse("/quick", heartbeat=0.02)
    def quick(self) -> rx.Observable[Any]:
        return rx.never()


@controller("api")
class Api:
    @get("/dict")
    def as_dict(self) -> dict[str, int]:
        return {"a": 1}

    @get("/list")
    async def as_list(self) -> list[int]:
        return [1, 2]

    @get("/text")
    def as_text(self) -> str:
        return "hi"

    @delete("/thing")
    def remove(self) -> None:
        return None

    @put("/thing")
    def replace(self, body: dict[str, Any]) -> web.Response:
        return web.json_response({"got": body}, status=201)

    @post("/echo")
    def echo(self, body: Any, request: web.Request) -> dict[str, Any]:
        return {"body": body, "method": request.method}

    @get("/odd")
    def odd(self) -> Any:
        return 42


@sse("/standalone")
def standalone(n: int) -> rx.Observable[int]:
    return rx.of(n)


@pytest.fixture
async def client(serve):
    app = web.Application()
    rxsse.setup(app, Echo(), Api, standalone, options=rxsse.StreamOptions(heartbeat=None))
    return await serve(app)


async def first_data(client, path: str, **kwargs: Any) -> Any:
    async with client.get(path, **kwargs) as resp:
        assert resp.status == 200, await resp.text()
        frame = await FrameReader(resp).next()
    return json.loads(frame.data)


async def error_body(client, path: str, status: int, method: str = "GET", **kw: Any) -> Any:
    async with client.request(method, path, **kw) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        return await resp.json()


async def test_controller_prefix_and_route_path_are_joined(client):
    assert await first_data(client, "/events/ticks") == {"tick": 1}


async def test_prefix_without_leading_slash_is_accepted(client):
    async with client.get("/api/dict") as resp:
        assert await resp.json() == {"a": 1}


async def test_query_parameters_are_converted_to_their_annotations(client):
    query = "name=ann&count=3&ratio=2.5&flag=true&note=hi&color=blue&mode=slow&tags=1&tags=2"
    assert await first_data(client, "/events/query?" + query) == {
        "name": "ann",
        "count": 3,
        "ratio": 2.5,
        "flag": True,
        "note": "hi",
        "color": "blue",
        "mode": "slow",
        "tags": [1, 2],
    }


async def test_defaults_fill_missing_query_parameters(client):
    assert await first_data(client, "/events/query?name=ann") == {
        "name": "ann",
        "count": 1,
        "ratio": 0.5,
        "flag": False,
        "note": None,
        "color": "red",
        "mode": "fast",
        "tags": None,
    }


async def test_missing_required_query_parameter_is_400_naming_it(client):
    body = await error_body(client, "/events/query", 400)
    assert body["parameter"] == "name"
    assert "missing" in body["error"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("count=three", "count"),
        ("count=1.5", "count"),
        ("ratio=abc", "ratio"),
        ("ratio=nan", "ratio"),
        ("ratio=inf", "ratio"),
        ("flag=maybe", "flag"),
        ("color=green", "color"),
        ("mode=medium", "mode"),
        ("tags=1&tags=x", "tags"),
    ],
)
async def test_unconvertible_query_parameter_is_400_naming_it(client, query, parameter):
    body = await error_body(client, f"/events/query?name=ann&{query}", 400)
    assert body["parameter"] == parameter
    assert "expected" in body


async def test_path_parameter_is_converted_and_request_is_injected(client):
    assert await first_data(client, "/events/items/42") == {
        "item_id": 42,
        "path": "/events/items/42",
    }


async def test_bad_path_parameter_is_400_naming_it(client):
    body = await error_body(client, "/events/items/forty-two", 400)
    assert body["parameter"] == "item_id"


async def test_last_event_id_comes_from_the_header(client):
    data = await first_data(client, "/events/resume", headers={"Last-Event-ID": "41"})
    assert data == {"last_event_id": "41"}


async def test_last_event_id_falls_back_to_the_query(client):
    assert await first_data(client, "/events/resume?lastEventId=7") == {"last_event_id": "7"}


async def test_last_event_id_is_none_when_absent(client):
    assert await first_data(client, "/events/resume") == {"last_event_id": None}


async def test_async_handler_returning_an_observable(client):
    async with client.get("/events/async") as resp:
        assert [f.data for f in await FrameReader(resp).rest()] == ["1", "2"]


async def test_async_generator_handler_streams_its_items(client):
    async with client.get("/events/generator") as resp:
        assert [f.data for f in await FrameReader(resp).rest()] == ["0", "1", "2"]


async def test_standalone_function_route(client):
    async with client.get("/standalone?n=5") as resp:
        assert [f.data for f in await FrameReader(resp).rest()] == ["5"]


async def test_returning_something_not_a_stream_is_500_and_logs_a_type_error(client, caplog):
    caplog.set_level(logging.ERROR)
    body = await error_body(client, "/events/not-a-stream", 500)
    assert body == {"error": "internal server error"}
    errors = [r for r in caplog.records if r.exc_info and r.exc_info[0] is TypeError]
    assert errors and "Echo.not_a_stream" in errors[0].getMessage()


async def test_handler_exception_is_500_without_internals(client, caplog):
    body = await error_body(client, "/events/raises", 500)
    assert "password" not in json.dumps(body)
    assert "password" in caplog.text


async def test_handler_http_exception_keeps_its_status(client):
    async with client.get("/events/forbidden") as resp:
        assert resp.status == 403


async def test_sse_handler_may_answer_with_its_own_response(client):
    async with client.get("/events/done") as resp:
        assert resp.status == 204


async def test_sse_route_rejects_other_methods(client):
    async with client.post("/events/ticks") as resp:
        assert resp.status == 405


async def test_route_options_override_setup_defaults(client):
    # setup() turned heartbeats off; @sse("/quick", heartbeat=0.02) turns them back on.
    async with client.get("/events/quick") as resp:
        frame = await FrameReader(resp).next(comments=True)
    assert frame.is_comment


async def test_plain_routes_convert_their_returns(client):
    async with client.get("/api/list") as resp:
        assert await resp.json() == [1, 2]
    async with client.get("/api/text") as resp:
        assert await resp.text() == "hi"
    async with client.request("DELETE", "/api/thing") as resp:
        assert resp.status == 204


async def test_plain_route_json_body_is_bound(client):
    async with client.request("PUT", "/api/thing", json={"x": 1}) as resp:
        assert resp.status == 201
        assert await resp.json() == {"got": {"x": 1}}
    async with client.post("/api/echo", json=[1, "a"]) as resp:
        assert await resp.json() == {"body": [1, "a"], "method": "POST"}


async def test_invalid_json_body_is_400(client):
    body = await error_body(client, "/api/echo", 400, method="POST", data=b"{not json")
    assert body["parameter"] == "body"


@pytest.mark.parametrize(
    "data",
    [
        b'{"x": NaN}',
        b"[Infinity]",
        b"[-Infinity]",
        b'{"x": "\\ud800"}',  # a lone surrogate: no event can carry it
        b"[" * 200_000 + b"]" * 200_000,  # deeper than the parser can go
        b"1" * 5000,  # past int()'s digit limit
        b'{"x": 1e999}',  # too large for a float: infinity
    ],
    ids=[
        *("nan", "infinity", "minus-infinity", "lone-surrogate", "200000-deep"),
        *("5000-digits", "1e999"),
    ],
)
async def test_a_json_body_the_bus_cannot_carry_is_400(client, data):
    body = await error_body(client, "/api/echo", 400, method="POST", data=data)
    assert body["parameter"] == "body"
    assert "not valid JSON" in body["error"]


async def test_a_body_with_a_valid_surrogate_pair_is_accepted(client):
    async with client.post("/api/echo", data=b'["\\ud83d\\ude00"]') as resp:
        assert resp.status == 200
        assert (await resp.json())["body"] == ["\U0001f600"]


async def test_missing_json_body_is_400(client):
    body = await error_body(client, "/api/echo", 400, method="POST")
    assert body["parameter"] == "body"


async def test_plain_route_returning_an_unsupported_value_is_500(client):
    assert await error_body(client, "/api/odd", 500) == {"error": "internal server error"}


def test_unknown_sse_option_is_rejected_at_decoration():
    with pytest.raises(TypeError, match="heartbeet"):
        sse("/x", heartbeet=1.0)


def test_unknown_setup_option_is_rejected():
    with pytest.raises(TypeError, match="heartbeet"):
        rxsse.setup(web.Application(), heartbeet=1.0)


class Unvalidatable:
    """A class pydantic knows nothing of."""


def test_unsupported_annotation_is_rejected_at_setup_naming_the_handler():
    @controller()
    class Odd:
        @sse("/odd")
        def odd(self, when: Unvalidatable) -> rx.Observable[Any]:
            return rx.empty()

    with pytest.raises(TypeError, match=r"when.*Odd.odd"):
        rxsse.setup(web.Application(), Odd())


def test_setup_rejects_an_object_that_is_not_a_controller():
    with pytest.raises(TypeError, match="not a @controller"):
        rxsse.setup(web.Application(), object())


async def test_controller_lifecycle_hooks_run_with_the_app(serve):
    calls: list[str] = []

    @controller()
    class Hooked:
        async def on_startup(self) -> None:
            calls.append("startup")

        async def on_cleanup(self) -> None:
            calls.append("cleanup")

    app = web.Application()
    rxsse.setup(app, Hooked())
    server = await serve(app)
    assert calls == ["startup"]
    await server.close()
    assert calls == ["startup", "cleanup"]


def test_json_error_rejects_statuses_it_does_not_know():
    with pytest.raises(ValueError, match="418"):
        rxsse.json_error(418, "teapot")


def app_with_errors(**setup_options: Any) -> web.Application:
    """An rxsse app with a small body limit, and two plain aiohttp routes of the user's."""

    @post("/echo")
    async def echo(body: Any) -> Any:
        return {"body": body}

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in the user's own handler")

    async def html(request: web.Request) -> web.Response:
        raise web.HTTPForbidden(text="<h1>no</h1>", content_type="text/html")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/crash", crash)
    app.router.add_get("/html", html)
    rxsse.setup(app, echo, Echo(), **setup_options)
    return app


@pytest.mark.parametrize(
    ("method", "path", "status", "kwargs"),
    [
        ("GET", "/nowhere", 404, {}),
        ("POST", "/events/ticks", 405, {}),
        ("POST", "/echo", 413, {"data": b"[" + b"1," * 1000 + b"1]"}),
        ("GET", "/crash", 500, {}),
    ],
    ids=["not-found", "method-not-allowed", "too-large", "unhandled"],
)
async def test_every_error_of_an_rxsse_app_is_json(serve, caplog, method, path, status, kwargs):
    client = await serve(app_with_errors())
    body = await error_body(client, path, status, method=method, **kwargs)
    assert isinstance(body["error"], str) and body["error"]
    if status == 500:
        assert body == {"error": "internal server error"}  # nothing of the bug leaks
        assert "a bug in the user's own handler" in caplog.text


async def test_json_errors_keep_their_headers_and_leave_other_bodies_alone(serve):
    client = await serve(app_with_errors())
    async with client.post("/events/ticks") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET"
    async with client.get("/html") as resp:
        assert resp.status == 403
        assert resp.content_type == "text/html"


async def test_json_errors_can_be_turned_off(serve):
    client = await serve(app_with_errors(json_errors=False))
    async with client.get("/nowhere") as resp:
        assert resp.status == 404
        assert resp.content_type == "text/plain"


def test_serving_metrics_without_prometheus_client_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(RuntimeError, match=r"pip install 'rxsse\[prometheus\]'"):
        rxsse.setup(web.Application(), metrics="/metrics")
    rxsse.setup(web.Application())  # the counters themselves need nothing
