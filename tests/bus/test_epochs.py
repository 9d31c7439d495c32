"""Epochs: which data set issued an id, and where a data set that went back in time diverges."""

from __future__ import annotations

import pytest

from rxsse.bus._broker import parse_event_id
from rxsse.bus.redis._epochs import contains, cover, diverges_after, parse_epochs


def test_each_sequence_number_belongs_to_the_epoch_that_started_last_before_it():
    epochs = [("a", 1), ("b", 101), ("c", 151)]
    assert [cover(epochs, n) for n in (0, 1, 100, 101, 150, 151, 10**9)] == [
        "a", "a", "a", "b", "b", "c", "c",
    ]  # fmt: skip
    assert cover([], 5) is None


def test_of_two_epochs_that_begin_at_the_same_number_the_later_one_counts():
    # Redis restarted twice with no event in between: b, then c, both from 101.
    epochs = [("a", 1), ("b", 101), ("c", 101)]
    assert cover(epochs, 120) == "c"
    assert not contains(epochs, 120, "b", head=150)
    assert contains(epochs, 100, "b", head=150)  # b's reset point, before any event of it
    assert diverges_after([("a", 1), ("b", 101)], epochs, 150) == 100


def test_epochs_are_read_as_redis_keeps_them():
    assert parse_epochs(["a1:1", "b2:101"]) == [("a1", 1), ("b2", 101)]


@pytest.mark.parametrize(
    ("seq", "epoch", "held"),
    [
        (100, "a", True),  # before b began: the same event in both
        (0, "a", True),  # the origin
        (101, "a", False),  # a's 101 was lost; b's 101 is another event
        (120, "b", True),
        (151, "b", False),  # past the head: never issued, or lost
        (5, "zz", False),  # an epoch this data set never had
    ],
)
def test_an_id_is_held_while_its_epoch_is_known_and_no_later_epoch_replaced_it(seq, epoch, held):
    assert contains([("a", 1), ("b", 101)], seq, epoch, head=150) is held


@pytest.mark.parametrize(
    ("before", "now", "seq", "kept"),
    [
        ([("a", 1)], [("a", 1)], 500, 500),  # nothing changed
        ([("a", 1)], [("a", 1), ("b", 501)], 500, 500),  # a restart that kept everything
        ([("a", 1)], [("a", 1), ("b", 101)], 500, 100),  # an older snapshot, kept up to 100
        ([("a", 1)], [("c", 1)], 500, 0),  # came back empty
        ([("a", 1), ("b", 101)], [("a", 1), ("c", 96)], 150, 95),  # older than b, then c
    ],
)
def test_a_reader_finds_where_the_data_set_it_delivered_diverged(before, now, seq, kept):
    assert diverges_after(before, now, seq) == kept


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("42-9f3a2b1c", (42, "9f3a2b1c")),
        ("0-x", (0, "x")),
        ("9" * 20 + "-x", None),  # longer than any 64-bit counter
        ("9" * 5000 + "-x", None),
        ("\u00b2-x", None),
        ("42", None),
        ("42-", None),
        ("-x", None),
        ("42-a-b", None),
    ],
)
def test_event_ids_are_parsed_strictly(text, parsed):
    assert parse_event_id(text) == parsed
