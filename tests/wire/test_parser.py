"""The WHATWG parsing rules, one test each; a round-trip property; the WPT vectors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxsse import MessageEvent, Parser

# A copy of the web-platform-tests eventsource vectors (provenance: wpt_vectors.meta.json).
VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "conformance" / "wpt_vectors.json").read_text()
)


def parse(*chunks: bytes | str) -> list[MessageEvent]:
    parser = Parser()
    events: list[MessageEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk.encode() if isinstance(chunk, str) else chunk)
    return events


def fields(events: list[MessageEvent]) -> list[tuple[str | None, Any, str | None]]:
    return [(e.type, e.data, e.id) for e in events]


def test_utf8_bom_at_the_start_is_dropped():
    assert fields(parse(b"\xef\xbb\xbfdata: a\n\n")) == [("message", "a", "")]


def test_bom_split_across_chunks_is_dropped():
    assert fields(parse(b"\xef", b"\xbb", b"\xbfdata: a\n\n")) == [("message", "a", "")]


def test_only_one_bom_is_dropped():
    # the second BOM becomes part of the field name, which is then unknown
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []


def test_a_bom_later_in_the_stream_is_not_dropped():
    assert fields(parse("data: a\n\n\ufeffdata: b\n\ndata: c\n\n")) == [
        ("message", "a", ""),
        ("message", "c", ""),
    ]


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
def test_lines_end_in_lf_cr_or_crlf(eol):
    stream = f"data: a{eol}data: b{eol}{eol}"
    assert fields(parse(stream)) == [("message", "a\nb", "")]


def test_crlf_split_across_two_chunks_is_one_line_break():
    assert fields(parse("data: a\r", "\ndata: b\r", "\n\r", "\n")) == [("message", "a\nb", "")]


def test_cr_at_a_chunk_end_followed_by_a_field_is_a_line_break():
    assert fields(parse("data: a\r", "data: b\r\r")) == [("message", "a\nb", "")]


def test_other_unicode_line_separators_are_not_line_breaks():
    text = "a\u2028b\x85c\x0bd\x0ce"
    assert fields(parse(f"data: {text}\n\n")) == [("message", text, "")]


def test_comments_are_ignored():
    assert fields(parse(": hello\n:\ndata: a\n: in between\n\n")) == [("message", "a", "")]


def test_one_leading_space_is_stripped_from_the_value():
    assert fields(parse("data:  two spaces\n\n")) == [("message", " two spaces", "")]


def test_a_leading_tab_is_kept():
    assert fields(parse("data:\tx\n\n")) == [("message", "\tx", "")]


def test_value_without_space_after_colon():
    assert fields(parse("data:x\n\n")) == [("message", "x", "")]


def test_value_may_contain_colons():
    assert fields(parse("data: a:b: c\n\n")) == [("message", "a:b: c", "")]


def test_field_names_are_case_sensitive():
    assert parse("Data: a\nDATA: b\n\n") == []


def test_unknown_fields_are_ignored():
    assert fields(parse("foo: bar\ndata: a\nretries: 5\n\n")) == [("message", "a", "")]


def test_line_without_colon_is_a_field_with_empty_value():
    assert fields(parse("data\ndata\n\n")) == [("message", "\n", "")]


def test_event_field_sets_the_type():
    assert fields(parse("event: update\ndata: a\n\n")) == [("update", "a", "")]


def test_type_defaults_to_message_and_resets_after_dispatch():
    assert [e.type for e in parse("event: a\ndata: 1\n\ndata: 2\n\n")] == ["a", "message"]


def test_empty_event_field_means_message():
    assert [e.type for e in parse("event:\ndata: 1\n\n")] == ["message"]


def test_id_field_sets_the_last_event_id():
    assert fields(parse("id: 7\ndata: a\n\n")) == [("message", "a", "7")]


def test_id_with_nul_is_ignored():
    parser = Parser()
    events = parser.feed(b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]
    assert parser.last_event_id == "1"


def test_last_event_id_persists_across_events():
    assert [e.id for e in parse("id: 1\ndata: a\n\ndata: b\n\n")] == ["1", "1"]


def test_empty_id_resets_the_last_event_id():
    assert [e.id for e in parse("id: 1\ndata: a\n\nid\ndata: b\n\n")] == ["1", ""]


def test_id_is_committed_by_a_blank_line_even_without_data():
    parser = Parser()
    assert parser.feed(b"id: 5\n\n") == []
    assert parser.last_event_id == "5"


def test_retry_sets_the_reconnection_time_in_milliseconds():
    parser = Parser()
    parser.feed(b"retry: 03000\n\n")
    assert parser.retry == 3000


@pytest.mark.parametrize("value", ["1000x", "", "  1000", "-5", "1.5", "\uff11\uff12", "\u0661"])
def test_retry_that_is_not_all_ascii_digits_is_ignored(value):
    parser = Parser()
    parser.feed(f"retry: 2000\nretry:{value}\n\n".encode())
    assert parser.retry == 2000


def test_retry_is_none_until_the_server_sends_one():
    assert Parser().retry is None


def test_dispatch_removes_one_trailing_lf_of_the_data_buffer():
    assert [e.data for e in parse("data: a\ndata:\n\n")] == ["a\n"]


def test_nothing_is_dispatched_without_data():
    assert parse("event: x\nid: 1\n\n\n\n") == []


def test_empty_data_line_dispatches_an_empty_event():
    assert fields(parse("data:\n\n")) == [("message", "", "")]


def test_unfinished_event_at_the_end_of_the_stream_is_discarded():
    parser = Parser()
    assert parser.feed(b"data: a\n\nid: 9\ndata: b\n") == [MessageEvent("a", id="", type="message")]
    parser.finish()
    assert parser.last_event_id == ""  # the uncommitted id is gone too
    assert parser.feed(b"\n") == []  # the next stream starts clean


def test_last_event_id_and_retry_survive_the_end_of_a_stream():
    parser = Parser()
    parser.feed(b"id: 3\nretry: 10\ndata: a\n\n")
    parser.finish()
    assert [e.id for e in parser.feed(b"data: b\n\n")] == ["3"]
    assert parser.retry == 10


def test_a_new_stream_may_start_with_its_own_bom():
    parser = Parser()
    parser.feed(b"data: a\n\n")
    parser.finish()
    assert [e.data for e in parser.feed(b"\xef\xbb\xbfdata: b\n\n")] == ["b"]


def test_invalid_utf8_decodes_to_replacement_characters():
    assert [e.data for e in parse(b"data: a\xff\xfeb\n\n")] == ["a\ufffd\ufffdb"]


def test_utf8_sequence_split_across_chunks():
    raw = "data: ok…\n\n".encode()
    assert [e.data for e in parse(*(raw[i : i + 1] for i in range(len(raw))))] == ["ok…"]


def test_nul_in_data_is_kept():
    assert [e.data for e in parse("data: a\x00b\n\n")] == ["a\x00b"]


# -- round trip: what rxsse encodes, rxsse parses back ------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_one_line = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12
)
_events = st.builds(
    MessageEvent,
    data=st.one_of(st.none(), _text, st.dictionaries(_one_line, st.integers(), max_size=3)),
    id=st.one_of(st.none(), _one_line),
    type=st.one_of(st.none(), _one_line),
    retry=st.one_of(st.none(), st.integers(0, 10**9)),
    comment=st.one_of(st.none(), _text),
)


def expected_events(sent: list[MessageEvent]) -> tuple[list[MessageEvent], str, int | None]:
    received, last_id, retry = [], "", None
    for event in sent:
        if event.id is not None:
            last_id = event.id
        if event.retry is not None:
            retry = event.retry
        if event.data is None:
            continue
        data = event.data
        if isinstance(data, str):
            data = data.replace("\r\n", "\n").replace("\r", "\n")
        else:
            data = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        received.append(MessageEvent(data, id=last_id, type=event.type or "message"))
    return received, last_id, retry


@settings(max_examples=300, deadline=None)
@given(sent=st.lists(_events, max_size=8), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_encoded_events_parse_back_whatever_the_chunking(sent, cuts):
    stream = b"".join(event.encode() for event in sent)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    parser = Parser()
    received = []
    for start, end in itertools.pairwise(bounds):
        received += parser.feed(stream[start:end])
    expected, last_id, retry = expected_events(sent)
    assert received == expected
    assert parser.last_event_id == last_id
    assert parser.retry == retry


# -- the web-platform-tests vectors -------------------------------------------------------------


def parser_vectors() -> list[Any]:
    """Vectors whose every response is a 200 text/event-stream (the parser's part), each fed
    whole, one byte at a time, and in the vector's own chunks where it has some."""
    chosen = []
    for vector in VECTORS:
        connections = vector.get("connections") or [{"body": vector["stream"]}]
        statuses = {vector.get("status", 200), *(c.get("status", 200) for c in connections)}
        essence = vector.get("content_type", "text/event-stream").split(";")[0].strip()
        if statuses == {200} and essence == "text/event-stream":
            feedings = ["whole", "byte-by-byte"] + (["wpt-chunks"] if "chunks" in vector else [])
            chosen += [pytest.param(vector, f, id=f"{vector['name']}-{f}") for f in feedings]
    return chosen


@pytest.mark.parametrize(("vector", "feeding"), parser_vectors())
def test_wpt_vector_parses_as_a_browser_does(vector, feeding):
    bodies = [c["body"] for c in vector.get("connections", [])] or [vector["stream"]]
    parser = Parser()
    received = []
    for number, body in enumerate(bodies):
        raw = body.encode()
        if feeding == "whole":
            chunks = [raw]
        elif feeding == "byte-by-byte":
            chunks = [raw[i : i + 1] for i in range(len(raw))]
        else:
            chunks = [c.encode() for c in vector["chunks"]] if number == 0 else [raw]
        for chunk in chunks:
            received += parser.feed(chunk)
        parser.finish()
    expected = [e for e in vector["expected"] if e["type"] not in ("open", "error")]
    if vector.get("expected_connection") == "open":
        expected = [{"type": "message", "data": "data", "lastEventId": ""}]  # the test checks open
    assert [(e.type, e.data, e.id) for e in received] == [
        (e["type"], e["data"], e["lastEventId"]) for e in expected
    ]
    if "expected_reconnection_time_ms" in vector:
        assert parser.retry == vector["expected_reconnection_time_ms"]


def test_all_58_wpt_vectors_are_used():
    assert len(VECTORS) == 58
