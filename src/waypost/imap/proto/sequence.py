"""Sequence sets: ``2,4:7,9,12:*`` as a value, and its resolution against a mailbox.

The parser turns the wire form into a ``SequenceSet`` and never looks at a mailbox;
``SequenceSet.resolve`` (also ``resolve``) is what the command handlers call with the
mailbox size (message numbers) or the highest UID (UID commands).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_NUMBER", "SAVED", "SequenceError", "SequenceSet", "resolve"]

#: RFC 3501 §9: ``nz-number = digit-nz *DIGIT ; Non-zero unsigned 32-bit integer
#: (0 < n < 4,294,967,296)``.
MAX_NUMBER = 4_294_967_295

#: RFC 3501 §9:
#:   seq-number      = nz-number / "*"
#:   seq-range       = seq-number ":" seq-number
#:   sequence-set    = (seq-number / seq-range) *("," sequence-set)
_ITEM = re.compile(rb"([1-9][0-9]{0,9}|\*)(?::([1-9][0-9]{0,9}|\*))?\Z")

#: The octets a sequence set is made of; the lexer cuts the token with this.
SEQUENCE_CHARS = re.compile(rb"[0-9*:,]+")


class SequenceError(ValueError):
    """A sequence set that is malformed, too long, or out of range for the mailbox.

    The server answers it with a tagged BAD (RFC 3501 §9, seq-number: "The server
    should respond with a tagged BAD response to a command that uses a message
    sequence number greater than the number of messages in the selected mailbox").
    ``too_many`` is set when the only fault is the item count.
    """

    def __init__(self, message: str, *, too_many: bool = False) -> None:
        super().__init__(message)
        self.too_many = too_many


#: One item: (first, last) with ``None`` standing for "*".  A single number n is (n, n).
Item = tuple[int | None, int | None]


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed sequence-set, in the client's order, ``None`` meaning "*".

    ``saved`` is RFC 5182's "$" (``SAVED``): the result a SEARCH saved with RETURN
    (SAVE); it has no items, and the selected mailbox, not ``resolve``, says what it
    names.
    """

    items: tuple[Item, ...]
    saved: bool = False

    @classmethod
    def parse(cls, text: str | bytes, *, max_items: int | None = None) -> SequenceSet:
        """Parse the wire form; ``SequenceError`` when it is not a sequence-set."""
        raw = text.encode("ascii", "replace") if isinstance(text, str) else bytes(text)
        if not raw:
            raise SequenceError("empty sequence set")
        parts = raw.split(b",")
        if max_items is not None and len(parts) > max_items:
            raise SequenceError(f"more than {max_items} items in a sequence set", too_many=True)
        items: list[Item] = []
        for part in parts:
            m = _ITEM.match(part)
            if m is None:
                raise SequenceError(f"invalid sequence set item {part!r}")
            first = _number(m.group(1))
            last = first if m.group(2) is None else _number(m.group(2))
            items.append((first, last))
        return cls(tuple(items))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The shortest set naming exactly ``numbers`` (e.g. for ``[COPYUID ...]``)."""
        ordered = sorted(set(numbers))
        if not ordered:
            raise SequenceError("a sequence set names at least one number")
        if ordered[0] < 1 or ordered[-1] > MAX_NUMBER:
            raise SequenceError("sequence numbers are 1 to 4294967295")
        items: list[Item] = []
        start = prev = ordered[0]
        for n in ordered[1:]:
            if n != prev + 1:
                items.append((start, prev))
                start = n
            prev = n
        items.append((start, prev))
        return cls(tuple(items))

    @classmethod
    def of(cls, *items: int | None | tuple[int | None, int | None]) -> SequenceSet:
        """Build a set in code: ``SequenceSet.of(2, (4, 7), (12, None))``."""
        built: list[Item] = []
        for item in items:
            built.append(item if isinstance(item, tuple) else (item, item))
        return cls(tuple(built))

    @property
    def uses_star(self) -> bool:
        return any(first is None or last is None for first, last in self.items)

    def resolve(self, largest: int, *, uid: bool = False) -> tuple[range, ...]:
        """The numbers this set names, as sorted, merged, non-overlapping ranges.

        ``largest`` is what "*" stands for: the number of messages for message
        sequence numbers, the highest UID (or, in an empty mailbox, UIDNEXT) for a
        UID command (RFC 3501 §9, seq-number).

        Message numbers: any number above ``largest``, and "*" in an empty mailbox,
        raises ``SequenceError`` (answer tagged BAD).  UIDs: numbers that do not
        exist are ignored (RFC 3501 §6.4.8), so the ranges are clipped to
        ``1..largest`` and never raise; ``559:*`` still names the last message.
        """
        spans: list[tuple[int, int]] = []
        for first, last in self.items:
            lo = largest if first is None else first
            hi = largest if last is None else last
            if lo > hi:
                lo, hi = hi, lo
            if uid:
                hi = min(hi, largest)
                lo = max(lo, 1)
                if lo > hi:
                    continue
            else:
                if largest == 0:
                    raise SequenceError("the mailbox is empty")
                if hi > largest:
                    raise SequenceError(f"message {hi} does not exist (mailbox has {largest})")
            spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return tuple(range(lo, hi + 1) for lo, hi in merged)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_item_str(item) for item in self.items)


#: RFC 5182 §4:  seq-last-command = "$";  sequence-set =/ seq-last-command
SAVED = SequenceSet((), saved=True)


def resolve(sequence: SequenceSet, largest: int, *, uid: bool = False) -> tuple[range, ...]:
    """``sequence.resolve(largest, uid=uid)``; see ``SequenceSet.resolve``."""
    return sequence.resolve(largest, uid=uid)


def _number(token: bytes) -> int | None:
    if token == b"*":
        return None
    value = int(token)
    if value > MAX_NUMBER:
        raise SequenceError(f"{value} is larger than a 32-bit number")
    return value


def _item_str(item: Item) -> str:
    first, last = item
    a = "*" if first is None else str(first)
    if first == last:
        return a
    return f"{a}:{'*' if last is None else last}"
