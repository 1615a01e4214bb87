"""Search contexts (RFC 5267 CONTEXT=SEARCH, CONTEXT=SORT) and paged results (RFC 9394
PARTIAL): the PARTIAL range, and the parts of an ESEARCH
response they add (``PARTIAL (...)``, ``ADDTO (...)``, ``REMOVEFROM (...)``, written by
``response.ESearchData``).  CANCELUPDATE is in ``commands/context.py``.

A context is kept by the server after ``SEARCH``/``SORT RETURN (UPDATE ...)``: it
tells its client, by unsolicited ESEARCH responses correlated by the command's tag,
how the result changes while the mailbox stays selected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from .lexer import Reader, Reason

T = TypeVar("T")

__all__ = [
    "PartialRange",
    "parse_partial_range",
]


@dataclass(frozen=True, slots=True)
class PartialRange:
    """RFC 9394 §3:
      partial-range-first = nz-number ":" nz-number
          ;; Request to search from oldest (lowest UIDs) to
          ;; more recent messages.
          ;; A range 500:400 is the same as 400:500.
      partial-range-last  = MINUS nz-number ":" MINUS nz-number
          ;; Request to search from newest (highest UIDs) to
          ;; oldest messages.
          ;; A range -500:-400 is the same as -400:-500.
      partial-range = partial-range-first / partial-range-last

    Kept as ``first <= last`` (absolute positions, 1 = the first result, or the
    last one when ``from_end``)."""

    first: int
    last: int
    from_end: bool = False

    def pick(self, results: Sequence[T]) -> list[T]:
        """The results this range names, in their order (fewer or none when the
        result is shorter)."""
        n = len(results)
        if self.from_end:
            lo, hi = n - self.last, n - self.first + 1
            return list(results[max(lo, 0):max(hi, 0)])
        return list(results[self.first - 1:self.last])

    def encode(self) -> bytes:
        if self.from_end:
            return b"-%d:-%d" % (self.first, self.last)
        return b"%d:%d" % (self.first, self.last)


def parse_partial_range(r: Reader) -> PartialRange:
    """partial-range, the cursor on its first octet (see ``PartialRange``)."""
    from_end = r.peek() == 0x2D
    if from_end:
        r.pos += 1
    a = r.nz_number("PARTIAL range")
    r.expect(0x3A, "':' in a PARTIAL range")
    if from_end:
        if r.peek() != 0x2D:
            r.fail(Reason.SYNTAX, "PARTIAL -m:-n needs both ends negative")
        r.pos += 1
    elif r.peek() == 0x2D:
        r.fail(Reason.SYNTAX, "PARTIAL m:n needs both ends positive")
    b = r.nz_number("PARTIAL range")
    return PartialRange(min(a, b), max(a, b), from_end)
