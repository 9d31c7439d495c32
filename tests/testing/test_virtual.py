"""rxsse.testing.run_virtual: a stream's frames in virtual time, as the server would send them."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex as rx
from aiohttp import web
from reactivex import operators as ops

import rxsse
from rxsse import MessageEvent
from rxsse.testing import LiveSubscriptions, run_virtual


def test_an_interval_and_its_heartbeats_run_in_virtual_time():
    stream = run_virtual(rx.interval(60.0), until=130, heartbeat=25.0)
    stream.expect([
        (25, "heartbeat"),
        (50, "heartbeat"),
        (60, MessageEvent(0)),
        (85, "heartbeat"),  # a full period after the event, not after the last ping
        (110, "heartbeat"),
        (120, MessageEvent(1)),
    ])  # fmt: skip
    assert stream.ended is None  # still open at `until`


def test_frames_are_the_bytes_the_server_writes():
    source = rx.of(MessageEvent("two\nlines", id=7, type="update"), {"a": 1})
    stream = run_virtual(source, until=1, heartbeat=None)
    assert stream.wire == (
        b"id: 7\nevent: update\ndata: two\ndata: lines\n\n"
        b'data: {"a":1}\n\n'  # a plain value is sent as MessageEvent(data=value)
    )
    assert [(f.time, f.kind) for f in stream.frames] == [(0, "event"), (0, "event"), (0, "end")]


def test_a_stream_with_nothing_to_send_at_once_opens_with_a_comment_line_then_pings():
    stream = run_virtual(rx.never(), until=30, heartbeat=15.0)
    assert stream.wire == b": open\n: ping\n: ping\n"


def test_completion_ends_the_stream_and_nothing_more_is_sent():
    stream = run_virtual(rx.timer(10.0).pipe(ops.map(lambda _: "last")), until=100, heartbeat=4.0)
    stream.expect([
        (4, "heartbeat"),
        (8, "heartbeat"),
        (10, MessageEvent("last")),
        (10, "end"),
    ])  # fmt: skip
    assert (stream.ended, stream.ended_at) == ("completed", 10)


def test_max_lifetime_ends_an_hourly_stream_cleanly():
    stream = run_virtual(
        rx.interval(600.0), until=7200, heartbeat=None, max_lifetime=3600.0, lifetime_jitter=0
    )
    assert [e.data for e in stream.events] == [0, 1, 2, 3, 4]  # 600 s .. 3000 s
    assert stream.timeline[-1] == (3600, "end")
    assert (stream.ended, stream.ended_at) == ("expired", 3600)


def test_a_shutdown_sends_the_final_event_and_ends_the_stream():
    bye = MessageEvent({"reason": "restart"}, type="shutdown", retry=1000)
    stream = run_virtual(rx.interval(10.0), until=60, shutdown_at=25, shutdown_event=bye)
    stream.expect([(10, MessageEvent(0)), (20, MessageEvent(1)), (25, bye), (25, "end")])
    assert (stream.ended, stream.ended_at) == ("shutdown", 25)


def test_the_lifetime_is_shortened_by_its_jitter_as_on_the_server():
    ends = {
        run_virtual(rx.never(), until=7200, max_lifetime=3600.0, lifetime_jitter=0.5).ended_at
        for _ in range(20)
    }
    assert all(end is not None and 1800 <= end <= 3600 for end in ends)
    assert len(ends) > 1


def test_a_failure_after_the_start_sends_the_failure_event_resuming_the_last_id():
    def fail(_: Any) -> rx.Observable[Any]:
        return rx.throw(web.HTTPConflict())

    source = rx.concat(
        rx.timer(5.0).pipe(ops.map(lambda _: MessageEvent("x", id=41))),
        rx.timer(1.0).pipe(ops.flat_map(fail)),
    )
    stream = run_virtual(source, until=60, heartbeat=None)
    failure = stream.events[-1]
    assert (failure.type, failure.id, failure.retry) == ("stream-error", "rxsse-failed:1:41", 2000)
    assert failure.data == '{"status": 409, "message": "Conflict", "failures": 1}'
    assert stream.timeline[-1] == (6, "end")
    assert stream.ended == "error"


def test_a_failure_counts_on_from_the_last_event_id_the_client_sent():
    source = rx.timer(5.0).pipe(ops.flat_map(lambda _: rx.throw(ValueError("boom"))))
    stream = run_virtual(source, until=60, last_event_id="rxsse-failed:2:17")
    failure = stream.events[-1]
    assert (failure.id, failure.retry) == ("rxsse-failed:3:17", 8000)  # backed off


def test_a_failure_at_once_is_an_http_status_and_no_stream():
    forbidden = run_virtual(rx.throw(web.HTTPForbidden()), until=10)
    assert (forbidden.status, forbidden.frames, forbidden.wire) == (403, (), b"")
    assert run_virtual(rx.throw(RuntimeError("bug")), until=10).status == 500


def test_unencodable_data_fails_the_stream():
    stream = run_virtual(rx.timer(1.0).pipe(ops.map(lambda _: float("nan"))), until=10)
    assert stream.ended == "error"
    assert stream.events[-1].type == "stream-error"


def test_the_subscription_is_disposed_when_the_client_leaves_at_until():
    live = LiveSubscriptions()
    stream = run_virtual(live.track(rx.interval(1.0)), until=3600, heartbeat=None)
    assert len(stream.events) == 3600
    assert (live.live, live.total) == (0, 1)


def test_a_factory_gets_the_scheduler():
    stream = run_virtual(lambda scheduler: rx.interval(3600.0, scheduler=scheduler), until=7200)
    assert [(time, event.data) for time, event in stream.timeline if event != "heartbeat"] == [
        (3600, 0),
        (7200, 1),
    ]


def test_a_routes_own_options_apply_over_the_defaults_given():
    @rxsse.sse("/ticks", heartbeat=5.0)
    def ticks() -> rx.Observable[int]:
        return rx.never()

    stream = run_virtual(ticks(), route=ticks, until=11, heartbeat=30.0)  # as setup(heartbeat=30)
    stream.expect([(5, "heartbeat"), (10, "heartbeat")])


def test_expect_names_the_first_difference():
    stream = run_virtual(rx.interval(60.0), until=130, heartbeat=25.0)
    with pytest.raises(AssertionError, match=r"frame 2: expected b'data: 7\\n\\n' at 60, got"):
        stream.expect([(25, "heartbeat"), (50, "heartbeat"), (60, MessageEvent(7))])
    with pytest.raises(AssertionError, match="expected 2 frames, got 6"):
        stream.expect([(25, "heartbeat"), (50, "heartbeat")])
    with pytest.raises(
        AssertionError, match="frame 1: expected 'heartbeat' at 45, got 'heartbeat' at 50"
    ):
        stream.expect([(25, "heartbeat"), (45, "heartbeat")], until=59)  # a time is compared
    stream.expect([(25, "heartbeat"), (50, "heartbeat")], until=59)  # the first minute only


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="until"):
        run_virtual(rx.never(), until=0)
    with pytest.raises(TypeError, match="@sse handler"):
        run_virtual(rx.never(), until=1, route=lambda: None)
    with pytest.raises(TypeError, match="Observable"):
        run_virtual(lambda scheduler: [1, 2], until=1)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="unknown option"):
        run_virtual(rx.never(), until=1, heartbeats=5)  # type: ignore[call-arg]
