"""ESEARCH (RFC 4731) and SEARCHRES (RFC 5182): the RFCs' command examples parse,
their response examples serialise byte for byte."""

from __future__ import annotations

import pytest

from waypost.imap.proto import (
    SAVED,
    And,
    Command,
    Copy,
    DateKey,
    EnvelopeField,
    ESearchData,
    Fetch,
    HasFlag,
    Not,
    Or,
    Params,
    Rejected,
    Search,
    SequenceKey,
    SequenceSet,
    parse_command,
)
from waypost.imap.proto import Att
from datetime import date

S = SequenceSet.of
FLAGGED_SINCE_NOT_SMITH = And((HasFlag("\\Flagged"), DateKey("SINCE", date(1994, 2, 1)),
                               Not(EnvelopeField("FROM", "Smith"))))

COMMANDS: list[tuple[bytes, Command]] = [
    # RFC 4731 §3.1
    (b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
     Search("A282", FLAGGED_SINCE_NOT_SMITH, returns=("MIN", "COUNT"))),
    (b'A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
     Search("A283", FLAGGED_SINCE_NOT_SMITH, returns=())),
    (b"A284 SEARCH RETURN (MIN) UNSEEN\r\n", Search("A284", HasFlag("\\Seen", False), returns=("MIN",))),
    (b"A285 UID SEARCH RETURN (MIN MAX) 1:5000\r\n",
     Search("A285", SequenceKey(S((1, 5000))), uid=True, returns=("MIN", "MAX"))),
    (b"A286 SEARCH CHARSET UTF-8 RETURN (MIN MAX) 1:5000\r\n", None),  # RETURN comes first
    # RFC 5182 §2.3 and §2.4
    (b'A282 SEARCH RETURN (SAVE) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
     Search("A282", FLAGGED_SINCE_NOT_SMITH, returns=("SAVE",))),
    (b"A283 FETCH $ (UID INTERNALDATE FLAGS)\r\n",
     Fetch("A283", SAVED, (Att.UID, Att.INTERNALDATE, Att.FLAGS))),
    (b'A284 UID COPY $ "Other Messages"\r\n', Copy("A284", SAVED, "Other Messages", uid=True)),
    (b"A302 SEARCH RETURN (SAVE MIN) UNSEEN\r\n", Search("A302", HasFlag("\\Seen", False), returns=("SAVE", "MIN"))),
    (b"A303 SEARCH RETURN (SAVE) OR $ 1:5\r\n",
     Search("A303", Or(SequenceKey(SAVED), SequenceKey(S((1, 5)))), returns=("SAVE",))),
    (b"A304 UID SEARCH UID $ SMALLER 4096\r\n", None),  # checked below
]


@pytest.mark.parametrize("line,expected", [c for c in COMMANDS if c[1] is not None])
def test_rfc_command_parses(line: bytes, expected: Command) -> None:
    command, rest = parse_command(line, Params())
    assert command == expected
    assert rest == b""


def test_return_must_come_before_charset() -> None:
    with pytest.raises(Rejected):
        parse_command(COMMANDS[4][0], Params())


def test_uid_dollar_in_search_keys() -> None:
    command, _ = parse_command(b"A304 UID SEARCH UID $ SMALLER 4096\r\n", Params())
    assert isinstance(command, Search)
    assert isinstance(command.criteria, And)
    assert command.criteria.keys[0] == SequenceKey(SAVED, uid=True)


@pytest.mark.parametrize("line", [
    b"A1 SEARCH RETURN (MIN FOO) ALL\r\n",   # unknown option
    b"A1 SEARCH RETURN MIN ALL\r\n",         # no parentheses
    b"A1 SEARCH RETURN (MIN)\r\n",           # no criteria
    b"A1 FETCH $1 FLAGS\r\n",                # "$" stands alone
])
def test_bad_return_options_and_dollar(line: bytes) -> None:
    with pytest.raises(Rejected):
        parse_command(line, Params())


RESPONSES: list[tuple[ESearchData, bytes]] = [
    # RFC 4731 §3.1
    (ESearchData("A282", min=2, count=3), b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'),
    (ESearchData("A283", all=(2, 10, 11)), b'* ESEARCH (TAG "A283") ALL 2,10:11\r\n'),
    (ESearchData("A284", min=4), b'* ESEARCH (TAG "A284") MIN 4\r\n'),
    (ESearchData("A285", uid=True, min=7, max=3800), b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n'),
    (ESearchData("A286", count=15), b'* ESEARCH (TAG "A286") COUNT 15\r\n'),
    # Nothing found: MIN, MAX and ALL are left out (RFC 4731 §3.1).
    (ESearchData("A287"), b'* ESEARCH (TAG "A287")\r\n'),
    (ESearchData("A288", uid=True, count=0), b'* ESEARCH (TAG "A288") UID COUNT 0\r\n'),
    # RFC 5182 §2.4
    (ESearchData("A302", uid=True, min=17), b'* ESEARCH (TAG "A302") UID MIN 17\r\n'),
    # RFC 7162 §3.1.5 with RFC 4731
    (ESearchData("a", all=(1, 2, 3, 5), modseq=917162500), b'* ESEARCH (TAG "a") ALL 1:3,5 MODSEQ 917162500\r\n'),
]


@pytest.mark.parametrize("response,wire", RESPONSES)
def test_rfc_response_serialises(response: ESearchData, wire: bytes) -> None:
    assert response.encode() == wire


def test_saved_set_prints_as_dollar() -> None:
    assert str(SAVED) == "$"
    assert SAVED.resolve(10) == ()


@pytest.mark.parametrize("line,saving", [
    (b"A1 SEARCH RETURN (SAVE) BOGUS\r\n", True),
    (b"A1 uid search return (min save) x\r\n", True),
    (b"A1 SORT RETURN (SAVE) (FOO) UTF-8 ALL\r\n", True),
    (b"A1 SEARCH RETURN (MIN) SAVE\r\n", False),
    (b"A1 SEARCH SAVE\r\n", False),
    (b"A1 FETCH 1 (SAVE)\r\n", False),
])
def test_saves_result_spots_a_refused_save(line: bytes, saving: bool) -> None:
    from waypost.imap.proto.commands.selected import saves_result
    assert saves_result(line) is saving
