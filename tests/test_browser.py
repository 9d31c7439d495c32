"""The demo app in a real headless Chromium (Debian's chromium, driven by Playwright):
what a browser's own EventSource does with rxsse streams."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from examples import demo

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "Chromium is not installed (Debian packages chromium and chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the playwright package is not installed (pip install -e '.[test]')")
        pytest.skip("the playwright package is not installed")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        await browser.close()


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
