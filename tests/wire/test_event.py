"""The wire format: how MessageEvent encodes, and what it refuses."""

from __future__ import annotations

import pytest

from rxsse import MessageEvent
from rxsse._event import comment_line


def test_str_data_is_one_data_line():
    assert MessageEvent("hello").encode() == b"data: hello\n\n"


def test_lf_data_is_split_into_data_lines():
    assert MessageEvent("a\nb").encode() == b"data: a\ndata: b\n\n"


def test_crlf_data_is_split_into_data_lines():
    assert MessageEvent("a\r\nb").encode() == b"data: a\ndata: b\n\n"


def test_cr_only_data_is_split_into_data_lines():
    assert MessageEvent("a\rb\rc").encode() == b"data: a\ndata: b\ndata: c\n\n"


def test_mixed_line_breaks_and_trailing_break_keep_every_line():
    assert MessageEvent("a\r\n\rb\n").encode() == b"data: a\ndata: \ndata: b\ndata: \n\n"


def test_empty_string_data_is_kept():
    assert MessageEvent("").encode() == b"data: \n\n"


def test_none_data_sends_no_data_field():
    assert MessageEvent(id="7").encode() == b"id: 7\n\n"


def test_objects_are_compact_utf8_json():
    event = MessageEvent({"name": "Zoë", "n": [1, 2]})
    assert event.encode() == '{"name":"Zoë","n":[1,2]}'.join(["data: ", "\n\n"]).encode()


def test_json_strings_with_line_breaks_stay_on_one_line():
    assert MessageEvent({"text": "a\nb\rc"}).encode() == b'data: {"text":"a\\nb\\rc"}\n\n'


def test_numbers_and_booleans_are_json():
    assert MessageEvent(0).encode() == b"data: 0\n\n"
    assert MessageEvent(False).encode() == b"data: false\n\n"


def test_id_zero_is_kept():
    assert MessageEvent("x", id="0").encode() == b"id: 0\ndata: x\n\n"
    assert MessageEvent("x", id=0).encode() == b"id: 0\ndata: x\n\n"


def test_retry_zero_is_kept():
    assert MessageEvent(retry=0).encode() == b"retry: 0\n\n"


def test_all_fields_in_one_frame():
    event = MessageEvent({"a": 1}, id="42", type="update", retry=5000, comment="hi")
    assert event.encode() == b': hi\nid: 42\nevent: update\nretry: 5000\ndata: {"a":1}\n\n'


def test_event_is_accepted_for_type():
    assert MessageEvent("x", event="update") == MessageEvent("x", type="update")
    assert MessageEvent("x", event="update").type == "update"


def test_type_and_event_that_disagree_are_rejected():
    with pytest.raises(ValueError, match="once"):
        MessageEvent("x", type="a", event="b")


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n", "x\x00y"])
def test_id_with_line_break_or_nul_is_rejected(bad):
    with pytest.raises(ValueError, match="id"):
        MessageEvent("x", id=bad)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "evil\n\ndata: forged"])
def test_type_with_line_break_is_rejected(bad):
    with pytest.raises(ValueError, match="type"):
        MessageEvent("x", type=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, "100", True])
def test_retry_must_be_non_negative_int(bad):
    with pytest.raises(ValueError, match="retry"):
        MessageEvent(retry=bad)


def test_id_must_be_str_or_int():
    with pytest.raises(ValueError, match="id"):
        MessageEvent(id=1.5)  # type: ignore[arg-type]


def test_data_cannot_forge_fields_or_events():
    frame = MessageEvent("legit\n\nid: 999\nevent: admin\ndata: forged").encode()
    # every line of the frame starts with "data: ": nothing can become another field
    lines = frame.decode().split("\n")
    assert lines[-2:] == ["", ""]
    assert all(line.startswith("data: ") for line in lines[:-2])


def test_multiline_comment_becomes_several_comment_lines():
    assert MessageEvent(comment="a\nb\rc").encode() == b": a\n: b\n: c\n\n"
    assert comment_line("x\ny") == b": x\n: y\n"  # no blank line: no client sees an event


def test_encoding_is_cached():
    event = MessageEvent({"a": 1})
    assert event.encode() is event.encode()


def test_unserialisable_data_raises_a_value_error_on_encode():
    with pytest.raises(ValueError, match="cannot be sent as JSON"):
        MessageEvent(object()).encode()


def test_events_are_immutable():
    event = MessageEvent("x")
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]


def test_repr_shows_the_fields_that_are_set():
    assert repr(MessageEvent("x", id="1")) == "MessageEvent(data='x', id='1')"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"x": float("-inf")}])
def test_nan_and_infinity_are_refused_as_browsers_cannot_parse_them(bad):
    with pytest.raises(ValueError):
        MessageEvent(bad).encode()


def test_fast_path_and_general_path_encode_alike():
    data = {"n": 1, "name": "Zoë", "list": [1.5, None, True]}
    assert MessageEvent(data).encode() == MessageEvent(data, comment="x").encode()[4:]


@pytest.mark.parametrize("field", ["id", "type", "comment"])
def test_lone_surrogates_in_id_type_or_comment_are_refused_when_built(field):
    with pytest.raises(ValueError, match=f"{field} is not valid Unicode"):
        MessageEvent("x", **{field: "ok\ud800"})


def test_lone_surrogates_in_data_are_refused_when_encoded():
    event = MessageEvent("ok\udfff")  # data is not scanned per event when built
    with pytest.raises(ValueError):
        event.encode()


def test_an_event_off_the_in_memory_bus_is_parsed_only_when_its_data_is_read(monkeypatch):
    from rxsse import _payload as payload
    from rxsse._event import own_json_event

    parsed: list[str] = []
    loads = payload.loads
    monkeypatch.setattr(payload, "loads", lambda text: parsed.append(text) or loads(text))
    text = payload.dumps({"n": [1, 2], "when": "2026-11-21"})
    lazy = own_json_event(text, id="3-a", type="tick")
    eager = MessageEvent.from_json(text, id="3-a", type="tick")
    parsed.clear()
    assert (
        lazy.encode() == eager.encode() == b"id: 3-a\nevent: tick\ndata: " + text.encode() + b"\n\n"
    )
    assert parsed == []  # sent without being parsed
    assert lazy.data == {"n": [1, 2], "when": "2026-11-21"}
    assert lazy.data is lazy.data and parsed == [text]  # parsed once, when read
    assert lazy == eager and repr(lazy) == repr(eager)
    for scalar in ('"a\\nb"', "null", "7"):  # not an object or a list: as from_json makes it
        assert own_json_event(scalar, id="1-a", type=None) == MessageEvent.from_json(
            scalar, id="1-a"
        )
        assert (
            own_json_event(scalar, id="1-a", type=None).encode()
            == MessageEvent.from_json(scalar, id="1-a").encode()
        )
