"""THREAD (RFC 5256 §3): the RFC's command examples parse, its THREAD responses
serialise byte for byte, and the ORDEREDSUBJECT and REFERENCES algorithms
(``waypost.imap.sorting``) build the threads §3 describes."""

from __future__ import annotations

import re
from datetime import date

import pytest

from waypost.imap import sorting
from waypost.imap.proto import (
    All,
    Command,
    DateKey,
    Params,
    Rejected,
    Text,
    Thread,
    ThreadData,
    ThreadNode,
    parse_command,
)

COMMANDS: list[tuple[bytes, Command]] = [
    # RFC 5256 §4
    (b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n",
     Thread("A283", "ORDEREDSUBJECT", DateKey("SINCE", date(2000, 3, 5)), "UTF-8")),
    (b'A284 THREAD ORDEREDSUBJECT US-ASCII TEXT "gewp"\r\n',
     Thread("A284", "ORDEREDSUBJECT", Text("gewp"), "US-ASCII")),
    (b"A285 UID THREAD REFERENCES US-ASCII SINCE 5-MAR-2000\r\n",
     Thread("A285", "REFERENCES", DateKey("SINCE", date(2000, 3, 5)), "US-ASCII", uid=True)),
]


@pytest.mark.parametrize("line,expected", COMMANDS)
def test_rfc_command_parses(line: bytes, expected: Command) -> None:
    command, rest = parse_command(line, Params())
    assert command == expected
    assert rest == b""


@pytest.mark.parametrize("line", [
    b"A1 THREAD FOO UTF-8 ALL\r\n",
    b"A1 THREAD REFERENCES\r\n",
    b"A1 THREAD (REFERENCES) UTF-8 ALL\r\n",
])
def test_malformed_thread_is_bad(line: bytes) -> None:
    with pytest.raises(Rejected):
        parse_command(line, Params())


def parse_threads(text: bytes) -> tuple[ThreadNode, ...]:
    """The thread lists of a THREAD response, back into nodes (for the round trip)."""
    tokens = re.findall(rb"\(|\)|\d+", text)
    pos = 0

    def thread_list() -> ThreadNode:
        nonlocal pos
        assert tokens[pos] == b"("
        pos += 1
        numbers: list[int] = []
        nested: list[ThreadNode] = []
        while tokens[pos] != b")":
            if tokens[pos] == b"(":
                nested.append(thread_list())
            else:
                assert not nested
                numbers.append(int(tokens[pos]))
                pos += 1
        pos += 1
        node = ThreadNode(numbers[-1], tuple(nested)) if numbers else ThreadNode(None, tuple(nested))
        for n in reversed(numbers[:-1]):
            node = ThreadNode(n, (node,))
        return node

    out = []
    while pos < len(tokens):
        out.append(thread_list())
    return tuple(out)


RFC_THREADS = [
    # RFC 5256 §4
    b"(166)(167)(168)(169)(172)(170)(171)(173)(174 (175)(176)(178)(181)(180))(179)(177 (183)(182)(188)(184)"
    b"(185)(186)(187)(189))(190)(191)(192)(193)(194 195)(196 (197)(198))(199)(200 202)(201)(203)(204)(205)"
    b"(206 207)(208)",
    b"(166)(167)(168)(169)(172)((170)(179))(171)(173)((174)(175)(176)(178)(181)(180))((177)(183)(182)(188 (184)"
    b"(189))(185 186)(187))(190)(191)(192)(193)((194)(195 196))(197 198)(199)(200 202)(201)(203)(204)(205 206 207)"
    b"(208)",
    # RFC 5256 §5, thread-list examples
    b"(2)(3 6 (4 23)(44 7 96))",
    b"((3)(5))",
]


@pytest.mark.parametrize("wire", RFC_THREADS)
def test_rfc_thread_response_round_trips(wire: bytes) -> None:
    assert ThreadData(parse_threads(wire)).encode() == b"* THREAD " + wire + b"\r\n"


def test_empty_thread_response() -> None:
    # RFC 5256 §4, A284
    assert ThreadData(()).encode() == b"* THREAD\r\n"


def test_rfc_example_tree_shape() -> None:
    # RFC 5256 §5: "(3 6 (4 23)(44 7 96))": 3's child 6 has two replies, 4 and 44.
    (_, t) = parse_threads(RFC_THREADS[2])
    assert t == ThreadNode(3, (ThreadNode(6, (ThreadNode(4, (ThreadNode(23),)),
                                              ThreadNode(44, (ThreadNode(7, (ThreadNode(96),)),)))),))


# -- the algorithms ---------------------------------------------------------------------------


def msgs(*headers: str, dates: tuple[int, ...] = ()) -> list[sorting.Item]:
    out = []
    for i, h in enumerate(headers, start=1):
        day = dates[i - 1] if dates else 1
        head = f"Date: {day} Feb 2008 12:00:00 +0000\r\n{h}\r\n\r\n".encode()
        out.append(sorting.Item(i, i, 0.0, 10, head))
    return out


def wire(threads: list[ThreadNode]) -> bytes:
    return ThreadData(tuple(threads)).encode()[len(b"* THREAD "):-2]


def test_orderedsubject_groups_base_subjects() -> None:
    items = msgs("Subject: a", "Subject: C", "Subject: b", "Subject: _",
                 "Subject: [foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "Subject: b (a)", "Subject: Re: [FWD: c]",
                 "Subject: [xyz]", "", "Subject: =?iso-8859-1?q?_?=", "Subject: Re: =?utf-8?q?b?=",
                 "Subject: =?iso-8859-1?q?RE:_C?=", "Subject: =?us-ascii?b?UmU6IGM=?=")
    assert wire(sorting.ordered_subject(items)) == b"(1)(2 (7)(12)(13))(3 (5)(11))(4)(6)(8)(9 10)"


def test_orderedsubject_threads_by_first_date() -> None:
    items = msgs("Subject: late", "Subject: early", "Subject: re: late", "Subject: Re: early",
                 dates=(5, 9, 1, 2))
    # "late" runs 3 (1st), 1 (5th); "early" runs 4 (2nd), 2 (9th).
    assert wire(sorting.ordered_subject(items)) == b"(3 1)(4 2)"


def refs(*headers: str, dates: tuple[int, ...] = ()) -> bytes:
    return wire(sorting.references(msgs(*headers, dates=dates)))


def test_references_parent_and_replies() -> None:
    assert refs("Message-ID: <1@b>", "Message-ID: <2@b>\r\nIn-Reply-To: <1@b>",
                "Message-ID: <3@b>\r\nIn-Reply-To: <1@b>", "Message-ID: <4@b>\r\nIn-Reply-To: <2@b>",
                dates=(1, 2, 3, 4)) == b"(1 (2 4)(3))"


def test_references_missing_parent_is_a_dummy() -> None:
    # Two replies to a message that is not here: a dummy at the top.
    assert refs("References: <a@b>", "References: <a@b>") == b"((1)(2))"
    # One reply only: no dummy.
    assert refs("Message-ID: <x@b>\r\nReferences: <a@b>") == b"(1)"


def test_references_duplicate_message_ids_are_unique() -> None:
    assert refs("Message-Id: <a@b>", "Message-Id: <a@b>") == b"(1)(2)"


def test_references_loop_is_not_made() -> None:
    # 2 says a <- c <- 2; then 3 (which is c) says it replies to 2: the link that
    # would close the loop is dropped and c leaves a.
    assert refs("Message-ID: <a@b>", "Message-Id: <b@b>\r\nReferences: <a@b> <c@b>",
                "Message-Id: <c@b>\r\nReferences: <b@b>", dates=(3, 1, 2)) == b"(3 2)(1)"


def test_references_subject_merging() -> None:
    # No references, but one base subject: the reply goes under the original.
    assert refs("Message-Id: <a@b>\r\nSubject: foo", "Message-Id: <b@b>\r\nSubject: Re: foo") == b"(1 2)"
    # Unknown reference and a reply subject: still joined under "foo".
    assert refs("Message-Id: <a@b>\r\nSubject: foo",
                "Message-Id: <b@b>\r\nReferences: <c@b>\r\nSubject: Re: foo") == b"(1 2)"
    # Two originals of one subject: a dummy above both.
    assert refs("Subject: foo", "Subject: foo", "Subject: bar", dates=(1, 2, 3)) == b"((1)(2))(3)"


def test_references_siblings_by_date() -> None:
    assert refs("Message-ID: <1@b>", "Message-ID: <2@b>\r\nIn-Reply-To: <1@b>",
                "Message-ID: <3@b>\r\nIn-Reply-To: <1@b>", dates=(1, 9, 5)) == b"(1 (3)(2))"


def test_references_uses_in_reply_to_only_without_references() -> None:
    assert refs("Message-ID: <1@b>", "Message-ID: <2@b>",
                "Message-ID: <3@b>\r\nReferences: <2@b>\r\nIn-Reply-To: <1@b>") == b"(1)(2 3)"


# -- THREAD=REFS -------------------------------------------------------------------------------


def by_refs(*headers: str, dates: tuple[int, ...] = ()) -> bytes:
    return wire(sorting.refs(msgs(*headers, dates=dates)))


def test_refs_parses() -> None:
    assert parse_command(b"a UID THREAD REFS UTF-8 ALL\r\n", Params())[0] == \
        Thread("a", "REFS", All(), "UTF-8", uid=True)


def test_refs_links_as_references() -> None:
    assert by_refs("Message-ID: <1@b>", "Message-ID: <2@b>\r\nIn-Reply-To: <1@b>",
                   "Message-ID: <3@b>\r\nIn-Reply-To: <1@b>", "Message-ID: <4@b>\r\nIn-Reply-To: <2@b>",
                   dates=(1, 2, 3, 4)) == b"(1 (2 4)(3))"
    assert by_refs("References: <a@b>", "References: <a@b>") == b"((1)(2))"


def test_refs_does_not_join_by_subject() -> None:
    headers = ("Message-Id: <a@b>\r\nSubject: foo", "Message-Id: <b@b>\r\nSubject: Re: foo")
    assert refs(*headers) == b"(1 2)"
    assert by_refs(*headers) == b"(1)(2)"


def test_refs_threads_by_their_newest_message() -> None:
    # Thread 1 (days 1 and 9) has the latest reply: it comes after thread 2 (day 5),
    # though it started first.  REFERENCES orders them by their first messages.
    headers = ("Message-ID: <1@b>\r\nSubject: one", "Message-ID: <2@b>\r\nSubject: two",
               "Message-ID: <3@b>\r\nIn-Reply-To: <1@b>\r\nSubject: Re: one")
    assert refs(*headers, dates=(1, 5, 9)) == b"(1 3)(2)"
    assert by_refs(*headers, dates=(1, 5, 9)) == b"(2)(1 3)"
