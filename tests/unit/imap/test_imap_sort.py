"""SORT (RFC 5256), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267): the RFCs' command
examples parse, their responses serialise byte for byte; base subjects (RFC 5256
§2.1) and sort orders from header blocks (``waypost.imap.sorting``)."""

from __future__ import annotations

from datetime import date

import pytest

from waypost.imap import sorting
from waypost.imap.proto import (
    All,
    And,
    Command,
    DateKey,
    ESearchData,
    HasFlag,
    Params,
    Rejected,
    Sort,
    SortData,
    Text,
    parse_command,
)
from waypost.imap.proto.errors import BadCharset

COMMANDS: list[tuple[bytes, Command]] = [
    # RFC 5256 §4
    (b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n",
     Sort("A282", (("SUBJECT", False),), DateKey("SINCE", date(1994, 2, 1)), "UTF-8")),
    (b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n",
     Sort("A283", (("SUBJECT", False), ("DATE", True)), All(), "UTF-8")),
    (b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"\r\n',
     Sort("A284", (("SUBJECT", False),), Text("not in mailbox"), "US-ASCII")),
    (b"A285 UID SORT (REVERSE ARRIVAL SIZE CC FROM TO) UTF-8 UNSEEN DELETED\r\n",
     Sort("A285", (("ARRIVAL", True), ("SIZE", False), ("CC", False), ("FROM", False), ("TO", False)),
          And((HasFlag("\\Seen", False), HasFlag("\\Deleted"))), "UTF-8", uid=True)),
    # RFC 5957 §4
    (b"A01 SORT (DISPLAYFROM) UTF-8 ALL\r\n", Sort("A01", (("DISPLAYFROM", False),), All(), "UTF-8")),
    (b"A02 SORT (REVERSE DISPLAYTO) UTF-8 ALL\r\n", Sort("A02", (("DISPLAYTO", True),), All(), "UTF-8")),
    # RFC 5267 §3.2
    (b"A282 SORT RETURN (MIN) (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n",
     Sort("A282", (("SUBJECT", False),), DateKey("SINCE", date(1994, 2, 1)), "UTF-8", returns=("MIN",))),
    (b"A283 UID SORT RETURN (COUNT ALL) (DATE) UTF-8 ALL\r\n",
     Sort("A283", (("DATE", False),), All(), "UTF-8", uid=True, returns=("COUNT", "ALL"))),
]


@pytest.mark.parametrize("line,expected", COMMANDS)
def test_rfc_command_parses(line: bytes, expected: Command) -> None:
    command, rest = parse_command(line, Params())
    assert command == expected
    assert rest == b""


@pytest.mark.parametrize("line", [
    b"A1 SORT SUBJECT UTF-8 ALL\r\n",          # criteria in parentheses
    b"A1 SORT () UTF-8 ALL\r\n",               # at least one
    b"A1 SORT (REVERSE) UTF-8 ALL\r\n",        # REVERSE needs a key
    b"A1 SORT (SUBJECT FOO) UTF-8 ALL\r\n",    # unknown key
    b"A1 SORT (SUBJECT) UTF-8\r\n",            # no search key
    b"A1 SORT (SUBJECT)\r\n",                  # no charset
])
def test_malformed_sort_is_bad(line: bytes) -> None:
    with pytest.raises(Rejected) as refused:
        parse_command(line, Params())
    assert refused.value.reply().status == "BAD"


def test_unknown_charset_is_badcharset() -> None:
    with pytest.raises(BadCharset):
        parse_command(b"A1 SORT (SUBJECT) KOI9 ALL\r\n", Params())


RESPONSES: list[tuple[object, bytes]] = [
    # RFC 5256 §4
    (SortData((2, 84, 882)), b"* SORT 2 84 882\r\n"),
    (SortData((5, 3, 4, 1, 2)), b"* SORT 5 3 4 1 2\r\n"),
    (SortData(()), b"* SORT\r\n"),
    # RFC 7162 §3.1.5 with SORT
    (SortData((5, 3), modseq=917162500), b"* SORT 5 3 (MODSEQ 917162500)\r\n"),
    # RFC 5957 §4
    (SortData((2, 81, 83, 84, 82, 882)), b"* SORT 2 81 83 84 82 882\r\n"),
    # RFC 5267 §3.2: ALL in sort order
    (ESearchData("A282", min=2), b'* ESEARCH (TAG "A282") MIN 2\r\n'),
    (ESearchData("A283", all=(5, 3, 4, 1, 2)), b'* ESEARCH (TAG "A283") ALL 5,3:4,1:2\r\n'),
]


@pytest.mark.parametrize("response,wire", RESPONSES)
def test_rfc_response_serialises(response, wire: bytes) -> None:
    assert response.encode() == wire


# -- base subject, RFC 5256 §2.1 -----------------------------------------------------------

SUBJECTS = [
    ("hello", "hello", False),
    ("Re: hello", "hello", True),
    ("RE: Re: re:hello", "hello", True),
    ("Fw: hello", "hello", True),
    ("FWD: hello", "hello", True),
    ("Re[2]: hello", "hello", True),
    ("Re [2]: hello", "hello", True),
    ("[list] Re: hello", "hello", True),
    ("[list] hello", "hello", False),
    ("[list]", "[list]", False),                        # the blob would leave nothing
    ("hello (fwd)", "hello", True),
    ("hello (FWD) (fwd)  ", "hello", True),
    ("[Fwd: hello]", "hello", True),
    ("[fwd: Re: [list] hello (fwd)]", "hello", True),
    ("  hello \t  world  ", "hello world", False),
    ("Reality: check", "Reality: check", False),
    ("=?utf-8?q?Re:_=C3=A9t=C3=A9?=", "été", True),
    ("=?iso-8859-1?q?foo?= =?iso-8859-1?q?bar?=", "foobar", False),
    ("", "", False),
]


@pytest.mark.parametrize("raw,base,refwd", SUBJECTS)
def test_base_subject(raw: str, base: str, refwd: bool) -> None:
    assert sorting.base_subject(raw) == (base, refwd)


def test_no_subject_is_empty() -> None:
    assert sorting.base_subject(None) == ("", False)


def test_casemap_is_unicode_casemap() -> None:
    # i;unicode-casemap (RFC 5051 §2): titlecase, then NFKD, as UTF-8 octets.
    assert sorting.casemap("abc") == sorting.casemap("ABC") == b"ABC"
    assert sorting.casemap("é") == sorting.casemap("É") == sorting.casemap("E\u0301") == "E\u0301".encode()
    assert sorting.casemap("ǆ") == sorting.casemap("Ǆ") == sorting.casemap("ǅ")  # the titlecase digraph
    assert sorting.casemap("ℌ") == sorting.casemap("h") and sorting.casemap("ＡＢＣ") == b"ABC"
    assert sorting.casemap("ß") == "ß".encode()  # no simple titlecase: stays
    # "é" sorts with E now, before "z".
    assert sorting.casemap("d") < sorting.casemap("é") < sorting.casemap("z")


def test_sort_orders_accented_subjects_with_their_letter() -> None:
    items = [sorting.Item(i, i, 0.0, 10, f"Subject: {s}\r\n\r\n".encode())
             for i, s in enumerate(("zebra", "Éclair", "apple", "eclipse", "=?utf-8?q?=C3=A9t=C3=A9?="), start=1)]
    # apple, eclipse, Éclair (E + U+0301: the combining mark's octets come after "C"), été, zebra
    assert [m.seq for m in sorting.sort(items, [("SUBJECT", False)])] == [3, 4, 2, 5, 1]


def test_sent_date_falls_back_to_internal_date() -> None:
    assert sorting.sent_date("Mon, 7 Feb 1994 21:52:25 -0800", 0.0) == 760686745.0
    assert sorting.sent_date("garbage", 123.0) == 123.0
    assert sorting.sent_date(None, 456.0) == 456.0


# -- sort orders ----------------------------------------------------------------------------


def items(*headers: str, sizes: tuple[int, ...] = (), arrivals: tuple[float, ...] = ()) -> list[sorting.Item]:
    out = []
    for i, h in enumerate(headers, start=1):
        size = sizes[i - 1] if sizes else 100
        arrival = arrivals[i - 1] if arrivals else 1000.0
        out.append(sorting.Item(i, i, arrival, size, (h + "\r\n\r\n").encode()))
    return out


def order(msgs: list[sorting.Item], *keys: tuple[str, bool]) -> list[int]:
    return [m.number for m in sorting.sort(msgs, keys)]


def test_ties_keep_message_number_order_also_reversed() -> None:
    msgs = items("Subject: b", "Subject: a", "Subject: b", "Subject: a")
    assert order(msgs, ("SUBJECT", False)) == [2, 4, 1, 3]
    assert order(msgs, ("SUBJECT", True)) == [1, 3, 2, 4]
    assert order(msgs, ("SUBJECT", False), ("ARRIVAL", True)) == [2, 4, 1, 3]


def test_rfc5256_subject_reverse_date() -> None:
    # The shape of RFC 5256 §4's A283: subjects first, newest first within one.
    msgs = items("Subject: b\r\nDate: Mon, 7 Feb 1994 10:00:00 +0000",
                 "Subject: Re: b\r\nDate: Mon, 7 Feb 1994 11:00:00 +0000",
                 "Subject: a\r\nDate: Mon, 7 Feb 1994 10:00:00 +0000",
                 "Subject: a\r\nDate: Mon, 7 Feb 1994 12:00:00 +0000",
                 "Subject: [fwd: a]\r\nDate: Mon, 7 Feb 1994 13:00:00 +0000")
    assert order(msgs, ("SUBJECT", False), ("DATE", True)) == [5, 4, 3, 2, 1]


def test_addresses_and_display_names() -> None:
    msgs = items("From: Zed <a@example.org>\r\nTo: b@example.org",
                 "From: =?iso-8859-1?q?Andr=E9?= <z@example.org>\r\nTo: A@example.org",
                 "From: m@example.org\r\nTo: team: x@example.org;",
                 "To: c@example.org")
    assert order(msgs, ("FROM", False)) == [4, 1, 3, 2]          # "", a, m, z
    assert order(msgs, ("DISPLAYFROM", False)) == [4, 2, 3, 1]   # "", André, m@..., Zed
    assert order(msgs, ("TO", False)) == [2, 1, 4, 3]            # A, b, c, team
    assert order(msgs, ("DISPLAYTO", True)) == [3, 4, 1, 2]


def test_size_arrival_and_date() -> None:
    msgs = items("Date: Tue, 8 Feb 1994 00:00:00 +0000", "Date: Mon, 7 Feb 1994 23:00:00 -0800",
                 "Date: nonsense", sizes=(30, 10, 20), arrivals=(3.0, 2.0, 1.0))
    assert order(msgs, ("SIZE", False)) == [2, 3, 1]
    assert order(msgs, ("ARRIVAL", False)) == [3, 2, 1]
    assert order(msgs, ("DATE", False)) == [3, 1, 2]   # 3 has its arrival, 1970
