"""A stream that fails after it started: the failure is an event of its own type, clients back
off, resume from the last real id, and stop after too many failures in a row, in Chromium too."""

from __future__ import annotations

import json
from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import EventSource, MessageEvent
from rxsse.streaming._failures import made_progress
from tests.conftest import FrameReader


def failing_app(calls: list[str | None], **options: Any) -> web.Application:
    """``GET /fails?ids=1`` sends the events after its resume point (with ids if ``ids``),
    one each, then fails; ``calls`` records each call's ``last_event_id``."""

    @rxsse.sse("/fails")
    def fails(ids: bool = True, last_event_id: str | None = None) -> rx.Observable[Any]:
        calls.append(last_event_id)
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        event = MessageEvent("next", id=after + 1) if ids else MessageEvent("next")
        return rx.of(event).pipe(ops.concat(rx.throw(RuntimeError("a bug"))))

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>rxsse</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    rxsse.setup(app, fails, options=rxsse.StreamOptions(heartbeat=None, **options))
    return app


async def failure_frame(client: Any, path: str, last_event_id: str | None = None) -> Any:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    async with client.get(path, headers=headers) as response:
        assert response.status == 200
        frames = await FrameReader(response).rest()
    assert frames[-1].get("event") == "stream-error"
    return frames[-1]


async def test_a_failure_is_marked_and_the_next_attempt_resumes_from_the_last_real_id(serve):
    calls: list[str | None] = []
    client = await serve(failing_app(calls))
    frame = await failure_frame(client, "/fails")
    assert frame.get("id") == "rxsse-failed:1:1"  # one failure; the last real id was 1
    assert frame.get("retry") == "2000"
    assert json.loads(frame.data) == {
        "status": 500,
        "message": "internal server error",
        "failures": 1,
    }
    frame = await failure_frame(client, "/fails", frame.get("id"))
    assert calls == [None, "1"]  # the handler resumed from the real id, the mark taken off
    # It sent event 2 before failing: the client moved on, so this is a first failure again.
    assert frame.get("id") == "rxsse-failed:1:2"


async def test_failures_in_a_row_back_off_then_the_reconnect_is_204(serve):
    calls: list[str | None] = []
    client = await serve(failing_app(calls, error_retry=0.5, max_failures=3))
    mark = None
    retries = []
    for _ in range(3):
        frame = await failure_frame(client, "/fails?ids=false", mark)
        mark = frame.get("id")
        retries.append(frame.get("retry"))
    assert mark == "rxsse-failed:3:"
    assert retries == ["500", "1000", "2000"]  # doubled for each failure in a row
    async with client.get("/fails?ids=false", headers={"Last-Event-ID": mark}) as response:
        assert response.status == 204  # which stops a browser's EventSource
    assert len(calls) == 3  # the handler did not run for the 204


@pytest.mark.parametrize(
    "made_up", ["rxsse-failed:x:1", "rxsse-failed:9999999:1", "rxsse-failed:", "rxsse-failed:9"]
)
async def test_a_mark_a_client_made_up_is_an_id_like_any_other(serve, made_up):
    calls: list[str | None] = []
    client = await serve(failing_app(calls))
    await failure_frame(client, "/fails", made_up)
    assert calls == [made_up]


def test_an_error_event_type_browsers_would_misread_is_refused_at_setup():
    for bad in ("error", "message", "", "two\nlines"):
        with pytest.raises(ValueError):
            failing_app([], error_event=bad)
    with pytest.raises(ValueError, match="max_failures"):
        failing_app([], max_failures=0)


async def test_rxsses_client_stops_after_the_failures(serve):
    calls: list[str | None] = []
    client = await serve(failing_app(calls, error_retry=0.01, max_failures=3))
    types = []
    async with EventSource(client.url("/fails?ids=false"), retry=0.01) as source:
        async for event in source:
            types.append(event.type)
    assert types == ["message", "stream-error"] * 3  # then the 204 ended the iteration
    assert len(calls) == 3


CHROMIUM_COUNTS_FAILURES = """() => new Promise(resolve => {
  const source = new EventSource("/fails?ids=false");
  const failures = [];
  source.addEventListener("stream-error", (e) => failures.push(JSON.parse(e.data)));
  const check = setInterval(() => {
    if (source.readyState === EventSource.CLOSED) {
      clearInterval(check);
      resolve({failures});
    }
  }, 20);
  setTimeout(() => { clearInterval(check); resolve({failures, open: true}); }, 15000);
})"""


async def test_a_failing_stream_is_no_reconnect_storm_in_chromium(serve, browser):
    calls: list[str | None] = []
    server = await serve(failing_app(calls, error_retry=0.25, max_failures=3))
    page = await browser.new_page()
    await page.goto(server.url("/"))
    result = await page.evaluate(CHROMIUM_COUNTS_FAILURES)
    # The failures reach the listener of their own type (not onerror), with their count; then
    # the fourth attempt is a 204 and Chromium gives up: no more reconnects.
    assert "open" not in result, "Chromium was still reconnecting after 15 s"
    assert [f["failures"] for f in result["failures"]] == [1, 2, 3]
    assert len(calls) == 3
    await page.close()


@pytest.mark.parametrize(
    ("started_from", "sent", "progress"),
    [
        (None, None, False),  # failed before any id
        (None, "0", True),
        ("1", "1", False),  # sent 0 and 1 again: back where it started
        ("7-ab", "3-ab", False),  # the bus's ids: an earlier sequence number
        ("7-ab", "8-ab", True),
        ("41", "9", False),
        ("order-1", "order-2", True),  # the application's own ids: another one
        ("1", None, False),
    ],
)
def test_only_ids_past_the_resume_point_are_progress(started_from, sent, progress):
    assert made_progress(started_from, sent) is progress


async def test_a_stream_that_sends_the_same_ids_each_time_fails_in_a_row(serve):
    """Ids 0 and 1, then the failure, whatever the resume point: the count goes on (1, 2, 3)
    and the fourth reconnect is a 204, instead of starting again at 1 each time."""

    @rxsse.sse("/stubborn", error_retry=0.01, max_failures=3)
    def stubborn() -> rx.Observable[MessageEvent]:
        events = rx.of(MessageEvent("a", id="0"), MessageEvent("b", id="1"))
        return events.pipe(ops.concat(rx.throw(RuntimeError("the same failure"))))

    app = web.Application()
    rxsse.setup(app, stubborn)
    client = await serve(app)
    counts = []
    async with EventSource(client.url("/stubborn"), retry=0.01) as source:
        async for event in source:
            if event.type == "stream-error":
                counts.append(
                    json.loads(event.data)["failures"]
                    if isinstance(event.data, str)
                    else event.data["failures"]
                )
    assert counts == [1, 2, 3]  # then the 204 ended the iteration
