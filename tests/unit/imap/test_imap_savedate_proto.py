"""SAVEDATE (RFC 8514) in the protocol core: the FETCH item and the search keys parse,
the search on the save date (a message without one is searched by its internal date)
and the FETCH answer's form, NIL included."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime

import pytest

from waypost.db import MessageRecord
from waypost.imap.commands.fetch import _INDEX_VALUES
from waypost.imap.message import evaluate
from waypost.imap.proto import All, Att, BadCommand, DateKey, Fetch, Params, Rejected, Search, SequenceSet
from waypost.imap.proto import parse_command

from waypost.imap.message import MessageView


@dataclass
class Stored:
    """A search target of the index's items only."""

    data: bytes
    internaldate: float
    savedate: float | None = None
    seq: int = 1
    uid: int = 100
    flags: tuple[str, ...] = ()
    size: int = 0
    modseq: int = 5

    def view(self) -> MessageView:
        return MessageView(lambda: self.data)


@pytest.mark.parametrize("line,expected", [
    # RFC 8514 §4.1 and §4.2
    (b"a FETCH 1:* (SAVEDATE)\r\n", Fetch("a", SequenceSet.of((1, None)), (Att.SAVEDATE,))),
    (b"b UID SEARCH SAVEDBEFORE 1-Jan-2021\r\n",
     Search("b", DateKey("BEFORE", date(2021, 1, 1), saved=True), uid=True)),
    (b"c SEARCH SAVEDON 31-Dec-2020\r\n", Search("c", DateKey("ON", date(2020, 12, 31), saved=True))),
    (b"d SEARCH SAVEDSINCE \"5-Mar-2019\"\r\n", Search("d", DateKey("SINCE", date(2019, 3, 5), saved=True))),
    (b"e SEARCH SAVEDATESUPPORTED\r\n", Search("e", All())),
])
def test_rfc8514_commands_parse(line: bytes, expected: object) -> None:
    assert parse_command(line, Params())[0] == expected


@pytest.mark.parametrize("line", [b"a SEARCH SAVEDON\r\n", b"a SEARCH SAVEDON 1-Foo-2020\r\n",
                                  b"a SEARCH SAVEDATE\r\n", b"a FETCH 1 (SAVEDATES)\r\n"])
def test_malformed_is_bad(line: bytes) -> None:
    with pytest.raises((BadCommand, Rejected)):
        parse_command(line, Params())


def test_search_on_the_save_date() -> None:
    internal = datetime(2020, 2, 1, 12).timestamp()
    saved = datetime(2024, 6, 15, 12).timestamp()
    msg = Stored(b"Subject: x\r\n\r\n", internaldate=internal, savedate=saved)
    assert evaluate(DateKey("ON", date(2024, 6, 15), saved=True), msg, 1, 100)
    assert evaluate(DateKey("ON", date(2020, 2, 1)), msg, 1, 100)
    assert not evaluate(DateKey("BEFORE", date(2024, 6, 15), saved=True), msg, 1, 100)
    assert evaluate(DateKey("SINCE", date(2024, 6, 15), saved=True), msg, 1, 100)
    # Indexed before save dates were kept: the internal date stands in.
    old = Stored(b"Subject: x\r\n\r\n", internaldate=internal)
    assert evaluate(DateKey("ON", date(2020, 2, 1), saved=True), old, 1, 100)


def test_fetch_savedate_form() -> None:
    when = time.mktime((2024, 6, 15, 9, 30, 5, 0, 0, -1))
    m = MessageRecord(1, "n", "cur", (), 1, 10, 0.0, when)
    form = _INDEX_VALUES[Att.SAVEDATE](m)
    assert form.startswith(b'"15-Jun-2024 09:30:05 ') and len(form) == len(b'"15-Jun-2024 09:30:05 +0000"')
    assert _INDEX_VALUES[Att.SAVEDATE](MessageRecord(1, "n", "cur", (), 1, 10, 0.0)) == b"NIL"
