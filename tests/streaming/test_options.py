"""Stream options: one typed, frozen object, checked when it is made (at decoration or
``setup``), merged once per route, never checked again when a request comes."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex as rx
from aiohttp import web

import rxsse
from rxsse import MessageEvent, StreamOptions
from rxsse.streaming._options import DEFAULTS, StreamKeywords
from tests.conftest import FrameReader, wait_until

BAD_VALUES: list[tuple[str, Any]] = [
    ("heartbeat", 0),
    ("heartbeat", float("nan")),
    ("headers", {"X-A": 1}),
    ("max_buffer_frames", 0),
    ("max_buffer_bytes", True),
    ("overflow", "sometimes"),
    ("send_timeout", -1),
    ("max_lifetime", float("inf")),
    ("lifetime_jitter", 1.0),
    ("error_event", "error"),
    ("error_retry", 61),
    ("max_failures", 0),
    ("shutdown_event", {"reason": "restart"}),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_a_bad_value_is_a_value_error_where_the_options_are_made(name, value):
    with pytest.raises(ValueError, match=name):
        StreamOptions(**{name: value})
    with pytest.raises(ValueError, match=name):
        rxsse.sse("/x", **{name: value})  # at decoration, not when a request comes


def test_an_unknown_keyword_names_where_it_was_given():
    with pytest.raises(TypeError, match=r"@sse\('/x'\): unknown option\(s\) \['hearbeat'\]"):
        rxsse.sse("/x", hearbeat=3.0)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'overflowing'"):
        rxsse.setup(web.Application(), overflowing="drop_oldest")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("keyword", "new_form"),
    [
        ("heartbeat", r"options=rxsse.StreamOptions\(heartbeat=...\)"),
        ("shutdown_event", r"options=rxsse.StreamOptions\(shutdown_event=...\)"),
        ("max_streams", r"limits=rxsse.Limits\(max_streams=...\)"),
        ("retry_after", r"limits=rxsse.Limits\(retry_after=...\)"),
        ("metrics_path", r"metrics=..."),
    ],
)
def test_a_keyword_setup_no_longer_takes_names_its_new_form(keyword, new_form):
    app = web.Application()
    with pytest.raises(
        TypeError, match=rf"setup\({keyword}=...\) is now setup\(app, ..., {new_form}\)"
    ):
        rxsse.setup(app, **{keyword: 1})
    assert not app.router.routes() and not app.middlewares  # refused before anything was done


@pytest.mark.parametrize(("keyword", "value"), [("options", {"heartbeat": 1.0}), ("limits", 10)])
def test_setup_says_which_value_an_argument_takes(keyword, value):
    with pytest.raises(TypeError, match=rf"{keyword} must be an rxsse"):
        rxsse.setup(web.Application(), **{keyword: value})


def test_the_keywords_are_the_options_fields():
    assert set(StreamKeywords.__annotations__) == StreamOptions.names()


def test_options_are_frozen_and_replace_checks_again():
    options = StreamOptions(heartbeat=30.0)
    with pytest.raises(AttributeError):
        options.heartbeat = 1.0  # type: ignore[misc]
    assert options.replace(max_lifetime=60.0).max_lifetime == 60.0
    with pytest.raises(ValueError, match="max_lifetime"):
        options.replace(max_lifetime=-1.0)
    assert options.replace() is options
    assert StreamOptions() == DEFAULTS and hash(StreamOptions()) == hash(DEFAULTS)


def test_equal_options_share_their_failure_policy():
    first, second = StreamOptions(send_timeout=5.0), StreamOptions(send_timeout=5.0)
    assert first.failures is second.failures


async def test_app_defaults_route_options_and_keywords_merge(serve):
    @rxsse.sse("/own", headers={"X-Route": "own"}, max_failures=None)
    def own() -> rx.Observable[int]:
        return rx.of(1)

    @rxsse.sse("/inherited")
    def inherited() -> rx.Observable[int]:
        return rx.of(1)

    async def direct(request: web.Request) -> web.StreamResponse:
        options = StreamOptions(headers={"X-Direct": "options"})
        return await rxsse.stream(request, rx.of(1), options, headers={"X-Direct": "keyword"})

    app = web.Application()
    defaults = StreamOptions(headers={"X-App": "default"})
    rxsse.setup(app, own, inherited, options=defaults.replace(max_failures=1))
    app.router.add_get("/direct", direct)
    client = await serve(app)
    async with client.get("/own") as resp:
        assert resp.headers["X-Route"] == "own" and "X-App" not in resp.headers
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    async with client.get("/inherited") as resp:
        assert resp.headers["X-App"] == "default"
    # The app's max_failures=1 applies where the route does not say otherwise: one failure
    # marked in Last-Event-ID is enough for a 204 on /inherited, not on /own.
    failed = {"Last-Event-ID": "rxsse-failed:1:7"}
    async with client.get("/inherited", headers=failed) as resp:
        assert resp.status == 204
    async with client.get("/own", headers=failed) as resp:
        assert resp.status == 200
    async with client.get("/direct") as resp:
        assert resp.headers["X-Direct"] == "keyword"


async def test_each_stream_gets_its_own_shutdown_event_or_the_apps(serve):
    @rxsse.sse("/own", shutdown_event=MessageEvent("own", type="shutdown"))
    def own() -> rx.Observable[int]:
        return rx.never()

    @rxsse.sse("/inherited")
    def inherited() -> rx.Observable[int]:
        return rx.never()

    @rxsse.sse("/none", shutdown_event=None)
    def none() -> rx.Observable[int]:
        return rx.never()

    app = web.Application()
    app_wide = StreamOptions(heartbeat=None, shutdown_event=MessageEvent("app", type="shutdown"))
    rxsse.setup(app, own, inherited, none, options=app_wide)
    client = await serve(app)
    responses = {path: await client.get(path) for path in ("/own", "/inherited", "/none")}
    await wait_until(lambda: len(rxsse.open_streams(app)) == 3)
    await app.shutdown()  # (what SIGTERM runs: the app's on_shutdown hooks)
    got = {}
    for path, resp in responses.items():
        got[path] = [(f.get("event"), f.data) for f in await FrameReader(resp).rest()]
    assert got == {
        "/own": [("shutdown", "own")],
        "/inherited": [("shutdown", "app")],
        "/none": [],
    }
