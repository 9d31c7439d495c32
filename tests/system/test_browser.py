"""The demo app in a real headless Chromium (Debian's chromium, driven by Playwright):
what a browser's own EventSource does with rxsse streams."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from examples import demo
from rxsse import MessageEvent

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


@pytest.fixture
async def demo_page(browser, serve) -> Any:
    """A page on the demo app (served as `make demo` serves it), and the app's request log."""
    seen: list[tuple[str, str | None, float]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append((request.path_qs, request.headers.get("Last-Event-ID"), time.monotonic()))
        return await handler(request)

    app = demo.create_app()
    app.middlewares.append(record)
    server = await serve(app)
    page = await browser.new_page(viewport={"width": 1200, "height": 820})
    await page.goto(server.url("/"))
    page.seen = seen
    yield page
    await page.close()


# Each helper below runs in the page; setTimeout is only a deadline.
COLLECT = """([url, type, count]) => new Promise((resolve, reject) => {
  const source = new EventSource(url);
  const got = [], other = [];
  const on = (e) => {
    got.push({data: e.data, lastEventId: e.lastEventId, type: e.type});
    if (got.length === count) { source.close(); resolve({got, other}); }
  };
  if (type === "message") source.onmessage = on;
  else { source.addEventListener(type, on); source.onmessage = (e) => other.push(e.data); }
  const fail = () => { source.close(); reject(new Error("timed out: " + JSON.stringify(got))); };
  setTimeout(fail, 20000);
})"""


async def test_json_data_arrives_through_onmessage(demo_page):
    result = await demo_page.evaluate(COLLECT, ["/ticks?period=0.05", "message", 3])
    data = [json.loads(event["data"]) for event in result["got"]]
    assert [d["count"] for d in data] == [0, 1, 2]
    assert all("timestamp" in d for d in data)


async def test_named_events_reach_only_add_event_listener_with_their_last_event_id(demo_page):
    url = "/custom-events?period=0.02&limit=3"
    result = await demo_page.evaluate(COLLECT, [url, "UPDATE", 3])
    assert [e["type"] for e in result["got"]] == ["UPDATE"] * 3
    assert [e["lastEventId"] for e in result["got"]] == ["0", "1", "2"]
    assert result["other"] == []  # onmessage never saw a named event


async def test_browser_reconnects_with_last_event_id_and_the_stream_resumes(demo_page):
    # Each response ends after 3 events; the browser reconnects (retry: 50 ms) and resumes.
    url = "/custom-events?period=0.02&limit=9&batch=3&retry=50"
    result = await demo_page.evaluate(COLLECT, [url, "UPDATE", 9])
    assert [e["lastEventId"] for e in result["got"]] == [str(n) for n in range(9)]
    sent = [last_id for path, last_id, _ in demo_page.seen if path == url]
    assert sent[:3] == [None, "2", "5"]


async def test_retry_field_sets_the_browsers_reconnection_delay(demo_page):
    # retry: 4000 is longer than Chromium's default (3 s): a browser that ignored it would
    # come back sooner than 4 s.
    url = "/custom-events?period=0.02&limit=2&batch=1&retry=4000"
    await demo_page.evaluate(COLLECT, [url, "UPDATE", 2])
    times = [t for path, _, t in demo_page.seen if path == url]
    assert len(times) >= 2
    assert times[1] - times[0] >= 4.0


async def test_screenshot_of_the_live_demo_page(demo_page):
    await demo_page.wait_for_function(
        "document.querySelectorAll('#ticks li').length >= 2"
        " && document.querySelector('#custom .state').textContent === 'open'",
        timeout=15000,
    )
    await demo_page.click("[data-action=verify]")
    await demo_page.wait_for_function(
        "[...document.querySelectorAll('#notifications li')]"
        ".some((li) => li.textContent.startsWith('verified:'))",
        timeout=15000,
    )
    await demo_page.click("[data-action=start]")
    await demo_page.wait_for_function(
        "document.querySelector('#progress progress').value >= 20", timeout=15000
    )
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "demo.png"
    await demo_page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- cross-origin streams -----------------------------------------------------------------------

CROSS_ORIGIN = """([url, count]) => new Promise((resolve, reject) => {
  const source = new EventSource(url, {withCredentials: true});
  const got = [];
  source.onmessage = (e) => {
    got.push({data: e.data, lastEventId: e.lastEventId});
    if (got.length === count) { source.close(); resolve({got, closed: false}); }
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) resolve({got, closed: true});
  };
  setTimeout(() => { source.close(); reject(new Error("timed out: " + JSON.stringify(got))); },
             20000);
})"""

# A JSON POST is not a "simple" request: the browser asks a preflight first.
POST_JSON = """async (url) => {
  try {
    const response = await fetch(url, {method: "POST", credentials: "include",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({text: "hi"})});
    return {status: response.status, body: await response.json()};
  } catch (error) {
    return {failed: String(error)};
  }
}"""

USER = web.RequestKey("user", str)
Seen = list[tuple[str, str, "str | None", "str | None"]]


def cross_origin_api(allowed: str, seen: Seen) -> web.Application:
    """For the user of the session cookie: a stream that sends 2 events per response (the
    browser reconnects with Last-Event-ID), and a JSON POST route."""

    async def session_user(request: web.Request) -> None:
        if request.cookies.get("session") != "ann-token":
            raise rxsse.json_error(401, "no session")
        request[USER] = "ann"

    @rxsse.controller(guards=[session_user])
    class Api:
        @rxsse.sse("/mine")
        def mine(self, request: web.Request, last_event_id: int | None = None) -> Any:
            first = 0 if last_event_id is None else last_event_id + 1
            user = request[USER]
            return rx.range(first, min(first + 2, 6)).pipe(
                ops.map(lambda n: MessageEvent(f"{user}:{n}", id=n, retry=10))
            )

        @rxsse.post("/say")
        async def say(self, request: web.Request) -> dict[str, str]:
            return {"user": request[USER], "text": (await request.json())["text"]}

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        headers, cookies = request.headers, request.cookies
        seen.append(
            (request.method, request.path, headers.get("Last-Event-ID"), cookies.get("session"))
        )
        return await handler(request)

    app = web.Application(middlewares=[record])
    rxsse.setup(
        app,
        Api(),
        options=rxsse.StreamOptions(heartbeat=None),
        cors=rxsse.CORS([allowed], credentials=True),
    )
    return app


async def cross_origin_page(browser: Any, origin: Any, api: Any) -> Any:
    page = await browser.new_page()
    cookie = {"name": "session", "value": "ann-token", "url": api.url("/")}
    await page.context.add_cookies([cookie])
    await page.goto(origin.url("/"))  # a 404 page is still a page of that origin
    return page


async def test_a_named_origin_streams_with_credentials_and_resumes(browser, serve):
    page_server = await serve(web.Application())  # the other origin
    seen: Seen = []
    api = await serve(cross_origin_api(page_server.base_url, seen))
    page = await cross_origin_page(browser, page_server, api)
    result = await page.evaluate(CROSS_ORIGIN, [api.url("/mine"), 6])
    assert [e["data"] for e in result["got"]] == [f"ann:{n}" for n in range(6)]
    assert [e["lastEventId"] for e in result["got"]] == [str(n) for n in range(6)]
    streams = [(last_id, cookie) for method, path, last_id, cookie in seen if path == "/mine"]
    assert streams == [(None, "ann-token"), ("1", "ann-token"), ("3", "ann-token")]
    said = await page.evaluate(POST_JSON, api.url("/say"))
    assert said == {"status": 200, "body": {"user": "ann", "text": "hi"}}
    assert [method for method, path, _, _ in seen if path == "/say"] == ["OPTIONS", "POST"]
    await page.close()


async def test_an_origin_not_named_can_read_nothing_and_post_nothing(browser, serve):
    allowed, other = await serve(web.Application()), await serve(web.Application())
    seen: Seen = []
    api = await serve(cross_origin_api(allowed.base_url, seen))
    page = await cross_origin_page(browser, other, api)
    result = await page.evaluate(CROSS_ORIGIN, [api.url("/mine"), 6])
    assert result["closed"] and result["got"] == []  # the browser refused the response
    said = await page.evaluate(POST_JSON, api.url("/say"))
    assert "failed" in said
    # the preflight was refused, so the POST itself never reached the handler
    assert [method for method, path, _, _ in seen if path == "/say"] == ["OPTIONS"]
    await page.close()
