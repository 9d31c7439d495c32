"""CORS: off by default; named origins get the headers (with credentials), preflights are
answered for them and refused for others."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import CORS, MessageEvent
from tests.conftest import FrameReader, LiveSubscriptions

ALLOWED = "http://app.example:8080"


def cors_app(cors: CORS | None, live: LiveSubscriptions | None = None) -> web.Application:
    tracker = live or LiveSubscriptions()

    @rxsse.controller("/events")
    class Events:
        @rxsse.sse("/numbers")
        def numbers(self) -> rx.Observable[MessageEvent]:
            return tracker.track(rx.of(1, 2).pipe(ops.map(lambda n: MessageEvent(n, id=n))))

        @rxsse.post("/ping")
        def ping(self) -> dict[str, bool]:
            return {"ok": True}

        @rxsse.get("/need/{thing}")
        def need(self, thing: int) -> dict[str, int]:
            return {"thing": thing}

    app = web.Application()

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="not an rxsse route")

    app.router.add_get("/plain", plain)
    rxsse.setup(app, Events(), options=rxsse.StreamOptions(heartbeat=None), cors=cors)
    return app


def preflight(client: Any, path: str, method: str, request_headers: str | None = None) -> Any:
    """A browser's preflight from ALLOWED for ``method`` (and ``request_headers``) on ``path``."""
    headers = {"Origin": ALLOWED, "Access-Control-Request-Method": method}
    if request_headers is not None:
        headers["Access-Control-Request-Headers"] = request_headers
    return client.request("OPTIONS", path, headers=headers)


async def test_without_cors_no_cross_origin_headers_are_sent(serve):
    client = await serve(cors_app(None))
    async with client.get("/events/numbers", headers={"Origin": ALLOWED}) as resp:
        assert resp.status == 200
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with preflight(client, "/events/numbers", "GET") as resp:
        assert resp.status == 405  # no preflight route: the browser refuses the request


async def test_allowed_origin_with_credentials_gets_the_stream_and_its_headers(serve):
    client = await serve(cors_app(CORS([ALLOWED], credentials=True)))
    async with client.get("/events/numbers", headers={"Origin": ALLOWED}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Vary"] == "Origin"
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert [f.data for f in await FrameReader(resp).rest()] == ["1", "2"]


async def test_other_origins_get_no_cors_headers(serve):
    client = await serve(cors_app(CORS([ALLOWED], credentials=True)))
    for origin in ("http://evil.example", "http://app.example:8081", "null"):
        async with client.get("/events/numbers", headers={"Origin": origin}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
            assert "Access-Control-Allow-Credentials" not in resp.headers
            assert resp.headers["Vary"] == "Origin"  # a shared cache keeps answers apart


async def test_errors_and_plain_routes_carry_the_headers_but_foreign_routes_do_not(serve):
    client = await serve(cors_app(CORS([ALLOWED])))
    async with client.get("/events/need/abc", headers={"Origin": ALLOWED}) as resp:
        assert resp.status == 400  # the page can read why its request failed
        assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert "Access-Control-Allow-Credentials" not in resp.headers
    async with client.post("/events/ping", headers={"Origin": ALLOWED}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert await resp.json() == {"ok": True}
    async with client.get("/plain", headers={"Origin": ALLOWED}) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers  # not rxsse's to open


async def test_preflight_for_a_reconnect_with_an_unsafe_last_event_id_is_answered(serve):
    client = await serve(cors_app(CORS([ALLOWED], credentials=True, max_age=60)))
    async with preflight(client, "/events/numbers", "GET", "last-event-id") as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Access-Control-Allow-Methods"] == "GET"
        assert resp.headers["Access-Control-Allow-Headers"] == "last-event-id"
        assert resp.headers["Access-Control-Max-Age"] == "60"


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}, "origin"),
        ({"Origin": ALLOWED, "Access-Control-Request-Method": "DELETE"}, "method"),
        (
            {
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id, x-secret",
            },
            "request headers",
        ),
        ({"Origin": ALLOWED}, "not a CORS preflight"),
    ],
)
async def test_preflights_outside_the_policy_are_refused(serve, headers, refused):
    client = await serve(cors_app(CORS([ALLOWED])))
    async with client.request("OPTIONS", "/events/numbers", headers=headers) as resp:
        assert resp.status in (400, 403)
        assert refused in (await resp.json())["error"]
        assert "Access-Control-Allow-Methods" not in resp.headers
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_any_origin_without_credentials(serve):
    client = await serve(cors_app(CORS(["*"])))
    async with client.get("/events/numbers", headers={"Origin": "http://x.example"}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in resp.headers


async def test_preflight_names_every_method_of_the_path(serve):
    client = await serve(cors_app(CORS([ALLOWED], allow_headers=["Authorization"])))
    async with preflight(client, "/events/ping", "POST", "authorization,content-type") as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Methods"] == "POST"
        assert resp.headers["Access-Control-Allow-Headers"] == "authorization, content-type"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"origins": ["*"], "credentials": True}, "must name its origins"),
        ({"origins": []}, "at least one origin"),
        ({"origins": "http://a.example"}, "list of origins"),
        ({"origins": ["http://a.example/"]}, "is not scheme://host"),
        ({"origins": ["a.example"]}, "is not scheme://host"),
        ({"origins": ["http://a.example:99999"]}, "is not scheme://host"),
        ({"origins": ["http://user@a.example"]}, "is not scheme://host"),
        ({"origins": ["http://a.example"], "max_age": -1}, "max_age"),
    ],
)
def test_bad_cors_settings_are_rejected(options: dict[str, Any], message: str):
    with pytest.raises(ValueError, match=message):
        CORS(**options)


def test_configured_origins_match_what_browsers_send():
    cors = CORS(["HTTPS://App.Example.com", "http://a.example:80", "https://[::1]:443"])
    assert cors.allows("https://app.example.com")
    assert cors.allows("http://a.example")  # browsers never send a default port
    assert cors.allows("https://[::1]")
    assert not cors.allows("https://app.example.com.evil.example")
    assert not cors.allows("https://app.example.com.")
    assert not cors.allows("http://app.example.com")


async def test_vary_keeps_what_the_response_already_varies_on(serve):
    @rxsse.get("/varied")
    def varied() -> web.Response:
        response = web.Response(text="x")
        response.headers.add("Vary", "Accept-Encoding")
        response.headers.add("Vary", "Cookie, origin")
        return response

    @rxsse.get("/plain")
    def plain() -> web.Response:
        response = web.Response(text="x")
        response.headers["Vary"] = "Accept-Language"
        return response

    app = web.Application()
    rxsse.setup(app, varied, plain, cors=CORS([ALLOWED]))
    client = await serve(app)
    async with client.get("/varied", headers={"Origin": ALLOWED}) as resp:
        assert resp.headers.getall("Vary") == ["Accept-Encoding, Cookie, origin"]
    async with client.get("/plain", headers={"Origin": ALLOWED}) as resp:
        assert resp.headers.getall("Vary") == ["Accept-Language, Origin"]


async def test_a_second_setup_shares_the_apps_policy(serve):
    @rxsse.get("/first")
    def first() -> str:
        return "first"

    @rxsse.post("/first")
    def first_post() -> str:
        return "posted"

    @rxsse.get("/second")
    def second() -> str:
        return "second"

    app = web.Application()
    policy = CORS([ALLOWED])
    rxsse.setup(app, first)  # before the policy: covered once it is given
    rxsse.setup(app, second, cors=policy)
    rxsse.setup(app, first_post, cors=policy)  # the same policy again is fine
    with pytest.raises(ValueError, match="another CORS policy"):
        rxsse.setup(app, cors=CORS(["http://other.example"]))
    client = await serve(app)
    for path in ("/first", "/second"):
        async with client.get(path, headers={"Origin": ALLOWED}) as resp:
            assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED
    async with preflight(client, "/first", "POST") as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
