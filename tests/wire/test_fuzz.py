"""Fuzzing: user data can never forge frames, bad input never gives a 500, and the parser
never raises."""

from __future__ import annotations

import random
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from examples import demo
from rxsse import MessageEvent, Parser

_any_text = st.text(max_size=40)  # any code points, surrogates included


def is_unicode(text: str | None) -> bool:
    try:
        text is None or text.encode()
    except UnicodeEncodeError:
        return False
    return True


def build(data: Any, id: Any, type: Any, comment: Any) -> bytes | None:
    """The frame, or None when rxsse refuses the input with a ValueError: when the event is
    built, or, for data that UTF-8 cannot carry, when it is encoded."""
    try:
        event = MessageEvent(data, id=id, type=type, comment=comment)
    except ValueError:
        return None
    assert all(is_unicode(field) for field in (id, type, comment))  # refused when built
    try:
        return event.encode()
    except ValueError:
        assert not is_unicode(data)  # the only thing left to refuse
        return None


@settings(max_examples=500, deadline=None)
@given(
    data=st.one_of(st.none(), _any_text),
    id=st.one_of(st.none(), _any_text),
    type=st.one_of(st.none(), _any_text),
    comment=st.one_of(st.none(), _any_text),
)
def test_any_strings_are_refused_or_read_back_as_exactly_that_event(data, id, type, comment):
    frame = build(data, id, type, comment)
    if frame is None:
        return
    parser = Parser()
    events = parser.feed(frame)
    if data is None:
        assert events == []  # nothing dispatched, whatever the other fields held
    else:
        assert len(events) == 1  # no injected event
        (event,) = events
        assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")
        assert event.type == (type or "message")
        assert event.id == (id if id is not None else "")
    assert parser.last_event_id == (id if id is not None else "")


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=20))
def test_the_parser_never_raises_on_arbitrary_bytes(chunks):
    parser = Parser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            assert isinstance(event.data, str)
    parser.finish()


def random_text(rng: random.Random) -> str:
    alphabet = string.printable + "\u2028\u0085é…😀\x00\x7f"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))


async def test_arbitrary_query_strings_and_last_event_ids_never_give_a_500(serve):
    client = await serve(demo.create_app())
    rng = random.Random(2026)
    paths = ["/ticks", "/custom-events", "/notifications", "/tasks/x/progress"]
    params = ["period", "tz", "limit", "batch", "retry", "email", "lastEventId", "x"]
    for _ in range(300):
        query = "&".join(
            f"{rng.choice(params)}={random_text(rng)}" for _ in range(rng.randrange(0, 4))
        )
        # (HTTP clients refuse control characters in headers, so none are sent)
        header = "".join(c for c in random_text(rng) if c.isprintable() or c == " ")
        headers = {"Last-Event-ID": header} if rng.random() < 0.5 else {}
        path = rng.choice(paths)
        async with client.session.get(
            client.url(path), params=_pairs(query), headers=headers, timeout=10
        ) as resp:
            assert resp.status != 500 and resp.status < 500, (path, query, header)
            if resp.status >= 400:
                assert resp.content_type == "application/json"


def _pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs
