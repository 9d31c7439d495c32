"""The outbox: frames waiting for one client, bounded by how far the client lags behind."""

from __future__ import annotations

import pytest

from rxsse import StreamOptions
from rxsse.streaming._outbox import Outbox


def frames(count: int, size: int = 10) -> list[bytes]:
    return [b"%0*d" % (size, n) for n in range(count)]


def test_frames_that_arrive_while_the_client_keeps_up_are_not_lag():
    box = Outbox(StreamOptions(max_buffer_frames=3, max_buffer_bytes=100))
    assert not any(box.add(frame, lagging=False) for frame in frames(1000))
    assert len(box) == 1000 and box.bytes == 10_000
    assert box.lag == (0, 0)


def test_lagging_frames_past_the_frame_bound_overflow_under_disconnect():
    box = Outbox(StreamOptions(max_buffer_frames=3))
    verdicts = [box.add(frame, lagging=True) for frame in frames(4)]
    assert verdicts == [False, False, False, True]


def test_lagging_bytes_past_the_byte_bound_overflow_under_disconnect():
    box = Outbox(StreamOptions(max_buffer_bytes=25))
    assert [box.add(frame, lagging=True) for frame in frames(3)] == [False, False, True]


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop_oldest", [b"3", b"4"]), ("drop_newest", [b"0", b"1"])]
)
def test_drop_policies_keep_the_lag_within_the_bound_and_count_drops(policy, kept):
    box = Outbox(StreamOptions(max_buffer_frames=2, overflow=policy))
    assert not any(box.add(b"%d" % n, lagging=True) for n in range(5))
    assert box.dropped == 3
    assert box.take_all() == kept


def test_drop_oldest_drops_the_burst_before_the_lagging_frames():
    box = Outbox(StreamOptions(max_buffer_frames=2, overflow="drop_oldest"))
    for frame in (b"a", b"b"):  # a burst the client was keeping up with
        box.add(frame, lagging=False)
    for frame in (b"1", b"2", b"3"):  # then it fell behind
        box.add(frame, lagging=True)
    assert box.take_all() == [b"2", b"3"]
    assert box.dropped == 3


def test_take_joins_the_oldest_frames_up_to_a_limit_and_keeps_the_lag_exact():
    box = Outbox(StreamOptions())
    for frame in frames(5):
        box.add(frame, lagging=False)
    for frame in frames(3, size=20):
        box.add(frame, lagging=True)
    assert box.lag == (3, 60)
    assert box.take(25) == b"".join(frames(2))  # whole frames, at most 25 bytes
    assert box.lag == (3, 60)  # the lagging frames are the newest: still all there
    assert box.take(40) == b"".join(frames(5)[2:])
    assert box.take(25) == frames(3, size=20)[0]  # at least one frame, even past the limit
    assert box.lag == (2, 40)
    assert box.take(1 << 20) == b"".join(frames(3, size=20)[1:])
    assert not box and box.bytes == 0 and box.lag == (0, 0)


def test_add_now_takes_a_frame_only_while_nothing_lagging_waits():
    box = Outbox(StreamOptions(max_buffer_frames=3))
    assert box.add_now(b"a") and box.lag == (0, 0)
    assert not box.add(b"bb", lagging=True)  # a write waits: lag
    assert not box.add_now(b"c")  # lagging frames still wait: this one is lag too, add() it
    assert len(box) == 2 and box.bytes == 3
    box.take_all()
    assert box.add_now(b"d")
