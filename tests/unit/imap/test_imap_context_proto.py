"""CONTEXT=SEARCH, CONTEXT=SORT (RFC 5267) and PARTIAL (RFC 9394) in the protocol
core: the commands parse, the ESEARCH items serialise byte for byte, and the
bookkeeping of a kept result (positions of REMOVEFROM) is right."""

from __future__ import annotations

import pytest

from waypost.imap.proto import (All, Att, ESearchData, Fetch, HasFlag, Params, Rejected, Search, SequenceSet, Sort,
                                parse_command)
from waypost.imap.proto.commands.context import CancelUpdate
from waypost.imap.proto.context import PartialRange
from waypost.imap.search_context import SearchContext, expunging, removals, runs

COMMANDS = [
    # RFC 5267 §4.2 (UPDATE, CONTEXT) and §4.3
    (b"B282 SEARCH RETURN (UPDATE) KEYWORD $Junk\r\n", Search("B282", HasFlag("$Junk"), returns=("UPDATE",))),
    (b"C1 UID SEARCH RETURN (CONTEXT UPDATE COUNT) SEEN\r\n",
     Search("C1", HasFlag("\\Seen"), uid=True, returns=("CONTEXT", "UPDATE", "COUNT"))),
    (b'B283 CANCELUPDATE "B282"\r\n', CancelUpdate("B283", ("B282",))),
    (b'B284 CANCELUPDATE "a" "b" "a"\r\n', CancelUpdate("B284", ("a", "b"))),
    # RFC 9394 §3.1 (PARTIAL), both ends and reversed ranges
    (b"A01 SEARCH RETURN (PARTIAL 1:500) UNDELETED\r\n",
     Search("A01", HasFlag("\\Deleted", False), returns=("PARTIAL",), partial=PartialRange(1, 500))),
    (b"A02 UID SEARCH RETURN (PARTIAL -1:-100) UNDELETED\r\n",
     Search("A02", HasFlag("\\Deleted", False), uid=True, returns=("PARTIAL",),
            partial=PartialRange(1, 100, from_end=True))),
    (b"A03 SEARCH RETURN (PARTIAL 500:400 COUNT) ALL\r\n",
     Search("A03", All(), returns=("PARTIAL", "COUNT"), partial=PartialRange(400, 500))),
    (b"A04 SORT RETURN (PARTIAL 2:4) (DATE) UTF-8 ALL\r\n",
     Sort("A04", (("DATE", False),), All(), "UTF-8", returns=("PARTIAL",), partial=PartialRange(2, 4))),
    # RFC 9394 §3.2: the PARTIAL modifier of UID FETCH
    (b"E01 UID FETCH 1:* (FLAGS) (PARTIAL -1:-30)\r\n",
     Fetch("E01", SequenceSet.of((1, None)), (Att.FLAGS,), uid=True, partial=PartialRange(1, 30, from_end=True))),
    (b"E02 UID FETCH 1:* (UID) (CHANGEDSINCE 5 PARTIAL 31:60)\r\n",
     Fetch("E02", SequenceSet.of((1, None)), (Att.UID,), uid=True, changed_since=5,
           partial=PartialRange(31, 60))),
    # Dovecot's place for SORT's RETURN: after the charset.
    (b"A05 SORT (ARRIVAL) US-ASCII RETURN (UPDATE ALL) ALL\r\n",
     Sort("A05", (("ARRIVAL", False),), All(), "US-ASCII", returns=("UPDATE", "ALL"))),
]


@pytest.mark.parametrize("line,expected", COMMANDS)
def test_commands_parse(line, expected):
    cmd, rest = parse_command(line, Params())
    assert cmd == expected and rest == b""


@pytest.mark.parametrize("line", [
    b"A SEARCH RETURN (PARTIAL 1) ALL\r\n",
    b"A SEARCH RETURN (PARTIAL 1:*) ALL\r\n",
    b"A SEARCH RETURN (PARTIAL *:1) ALL\r\n",
    b"A SEARCH RETURN (PARTIAL 0:3) ALL\r\n",
    b"A SEARCH RETURN (PARTIAL 1:-3) ALL\r\n",
    b"A SEARCH RETURN (PARTIAL -1:3) ALL\r\n",
    b"A SEARCH RETURN (PARTIAL) ALL\r\n",
    b"A SEARCH RETURN (ALL PARTIAL 1:3) ALL\r\n",   # RFC 9394 §3.1: not with ALL
    b"A SEARCH RETURN (UPDATE) RETURN ALL\r\n",
    b"A SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 1) ALL\r\n",
    b"A SORT RETURN (ALL) (ARRIVAL) US-ASCII RETURN (ALL) ALL\r\n",
    b"A FETCH 1:* (FLAGS) (PARTIAL 1:10)\r\n",          # UID FETCH only
    b"A UID FETCH 1:* (FLAGS) (PARTIAL 1:10 PARTIAL 2:3)\r\n",
    b"A UID FETCH 1:* (FLAGS) (PARTIAL 1:*)\r\n",
    b"A CANCELUPDATE\r\n",
    b"A CANCELUPDATE B282\r\n",
])
def test_bad_commands(line):
    with pytest.raises(Rejected):
        parse_command(line, Params())


def test_esearch_items_serialise():
    # RFC 5267 §4.3 and RFC 9394 §3.1 examples' shapes.
    assert ESearchData("B282", addto=((0, (32768, 32769)),)).encode() == \
        b'* ESEARCH (TAG "B282") ADDTO (0 32768:32769)\r\n'
    assert ESearchData("B282", uid=True, removefrom=((2, (5,)),), addto=((1, (3, 9)),)).encode() == \
        b'* ESEARCH (TAG "B282") UID REMOVEFROM (2 5) ADDTO (1 3,9)\r\n'
    assert ESearchData("A01", partial=(PartialRange(1, 500), (1, 2, 3, 9))).encode() == \
        b'* ESEARCH (TAG "A01") PARTIAL (1:500 1:3,9)\r\n'
    assert ESearchData("A02", uid=True, count=0, partial=(PartialRange(1, 100, True), ())).encode() == \
        b'* ESEARCH (TAG "A02") UID COUNT 0 PARTIAL (-1:-100 NIL)\r\n'


def test_partial_pick():
    results = [10, 20, 30, 40, 50]
    assert PartialRange(2, 4).pick(results) == [20, 30, 40]
    assert PartialRange(4, 9).pick(results) == [40, 50]
    assert PartialRange(6, 9).pick(results) == []
    assert PartialRange(1, 2, from_end=True).pick(results) == [40, 50]
    assert PartialRange(4, 9, from_end=True).pick(results) == [10, 20]
    assert PartialRange(6, 9, from_end=True).pick(results) == []


class _Sel:
    """What ``search_context`` reads of a selected mailbox."""

    def __init__(self, uids: list[int]) -> None:
        self.uids = uids
        self.arrived: list[int] = []
        self.state = (0, 0, 0)
        self.contexts: dict[str, SearchContext] = {}

    def seq_of(self, uid: int) -> int | None:
        return self.uids.index(uid) + 1 if uid in self.uids else None


def test_runs():
    assert runs([]) == []
    assert runs([0, 1, 3, 5, 6, 7]) == [[0, 1], [3], [5, 6, 7]]


def test_sort_removals_go_from_the_last_place_back():
    sel = _Sel([100, 200, 300, 400, 500])
    ctx = SearchContext("S", False, All(), (("ARRIVAL", True),), [500, 400, 300, 200, 100], (0, 0, 0))
    # Places 2, 3 (400, 300) and 5 (100): the later run first.
    assert removals(sel, ctx, {400, 300, 100}) == ((5, (1,)), (2, (4, 3)))
    assert ctx.result == [500, 200]


def test_expunging_names_numbers_before_the_expunge():
    sel = _Sel([100, 200, 300])
    sel.contexts["T"] = SearchContext("T", False, All(), None, [100, 300], (0, 0, 0))
    sel.contexts["U"] = SearchContext("U", True, All(), None, [200], (0, 0, 0))
    out = expunging(sel, [300])  # type: ignore[arg-type]
    assert [r.encode() for r in out] == [b'* ESEARCH (TAG "T") REMOVEFROM (0 3)\r\n']
    assert sel.contexts["T"].result == [100]
    assert expunging(sel, [300]) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("line,saving", [
    (b"A SORT (ARRIVAL) UTF-8 RETURN (SAVE) BOGUS", True),
    (b"A UID SORT (REVERSE DATE) US-ASCII RETURN (MIN SAVE) ALL", True),
    (b"A SORT (ARRIVAL) UTF-8 RETURN (ALL) SUBJECT SAVE", False),
])
def test_a_refused_sort_with_save_after_the_charset_is_spotted(line: bytes, saving: bool) -> None:
    from waypost.imap.proto.commands.selected import saves_result
    assert saves_result(line) is saving
