"""Sequence sets: parsing, resolution against a mailbox, compact forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waypost.imap.proto import SequenceError, SequenceSet, resolve


def numbers(ranges: tuple[range, ...]) -> list[int]:
    return [n for r in ranges for n in r]


def test_rfc3501_examples() -> None:
    """RFC 3501 §9 sequence-set: "2,4:7,9,12:* for a mailbox with 15 messages is
    equivalent to 2,4,5,6,7,9,12,13,14,15"; "*:4,5:7 for a mailbox with 10 messages
    is equivalent to ... 4,5,6,7,8,9,10"."""
    assert numbers(SequenceSet.parse("2,4:7,9,12:*").resolve(15)) == [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
    assert numbers(SequenceSet.parse("*:4,5:7").resolve(10)) == [4, 5, 6, 7, 8, 9, 10]
    # "2:4 and 4:2 are equivalent and indicate values 2, 3, and 4"
    assert SequenceSet.parse("4:2").resolve(5) == SequenceSet.parse("2:4").resolve(5) == (range(2, 5),)


def test_parse_keeps_the_clients_order_and_star() -> None:
    s = SequenceSet.parse(b"1:*,*,7,3:2")
    assert s.items == ((1, None), (None, None), (7, 7), (3, 2))
    assert str(s) == "1:*,*,7,3:2"
    assert s.uses_star


@pytest.mark.parametrize("bad", ["", "0", "01", "1:", ":1", "1,,2", ",1", "1,", "1:2:3", "a", "**", "4294967296", "1 2"])
def test_invalid_sets(bad: str) -> None:
    with pytest.raises(SequenceError):
        SequenceSet.parse(bad)


def test_largest_number() -> None:
    assert SequenceSet.parse("4294967295").items == ((4294967295, 4294967295),)


def test_item_limit() -> None:
    SequenceSet.parse("1,2,3", max_items=3)
    with pytest.raises(SequenceError) as e:
        SequenceSet.parse("1,2,3,4", max_items=3)
    assert e.value.too_many


def test_message_numbers_out_of_range_are_errors() -> None:
    """RFC 3501 §9 seq-number: BAD for a number above the mailbox size, "This
    includes "*" if the selected mailbox is empty"."""
    with pytest.raises(SequenceError):
        SequenceSet.parse("5").resolve(4)
    with pytest.raises(SequenceError):
        SequenceSet.parse("*").resolve(0)
    with pytest.raises(SequenceError):
        resolve(SequenceSet.parse("1:*"), 0)
    assert SequenceSet.parse("4:*").resolve(4) == (range(4, 5),)


def test_uids_are_clipped_not_errors() -> None:
    """RFC 3501 §6.4.8: "A non-existent unique identifier is ignored"; "a UID range
    of 559:* always includes the UID of the last message in the mailbox"."""
    assert SequenceSet.parse("559:*").resolve(500, uid=True) == (range(500, 501),)
    assert SequenceSet.parse("443:557").resolve(500, uid=True) == (range(443, 501),)
    assert SequenceSet.parse("600:700").resolve(500, uid=True) == ()
    assert SequenceSet.parse("*").resolve(0, uid=True) == ()


def test_overlaps_are_merged() -> None:
    assert SequenceSet.parse("1:3,2:5,7,8,10:*").resolve(12) == (range(1, 6), range(7, 9), range(10, 13))


def test_from_numbers_is_compact() -> None:
    """RFC 4315 §3 example: [COPYUID 38505 304,319:320 3956:3958]."""
    assert str(SequenceSet.from_numbers([320, 304, 319])) == "304,319:320"
    assert str(SequenceSet.from_numbers([3956, 3957, 3958])) == "3956:3958"
    with pytest.raises(SequenceError):
        SequenceSet.from_numbers([])
    with pytest.raises(SequenceError):
        SequenceSet.from_numbers([0])


@given(st.sets(st.integers(1, 10_000), min_size=1, max_size=200))
def test_from_numbers_round_trips(values: set[int]) -> None:
    s = SequenceSet.from_numbers(values)
    assert set(numbers(s.resolve(10_000))) == values
    assert SequenceSet.parse(str(s)) == s


@given(
    st.lists(st.tuples(st.integers(1, 60) | st.none(), st.integers(1, 60) | st.none()), min_size=1, max_size=20),
    st.integers(1, 60),
)
def test_resolve_matches_the_definition(items: list[tuple[int | None, int | None]], largest: int) -> None:
    s = SequenceSet(tuple(items))
    expected: set[int] = set()
    for a, b in items:
        lo, hi = (largest if a is None else a), (largest if b is None else b)
        expected.update(range(min(lo, hi), max(lo, hi) + 1))
    uid = numbers(s.resolve(largest, uid=True))
    assert uid == sorted(n for n in expected if n <= largest)
    if max(expected) <= largest:
        assert numbers(s.resolve(largest)) == sorted(expected)
    else:
        with pytest.raises(SequenceError):
            s.resolve(largest)
