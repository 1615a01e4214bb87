"""RFC 3502 MULTIAPPEND and RFC 3516 literal8 in APPEND: the RFC examples parse, the
APPENDUID uid-set (RFC 4315) serialises, and the message-count limit holds at its edge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from waypost.imap.proto import (
    Append,
    AppendMessage,
    AppendUid,
    BadCommand,
    Codes,
    NeedMore,
    Params,
    SequenceSet,
    Tagged,
    parse_command,
)
from waypost.imap.proto.lexer import Reason
from waypost.imap.proto.replies import BAD_COMMAND

# RFC 3502 §6.3.11 example (the two messages of the example, shortened).
MSG1 = (b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example.COM>\r\n"
        b"Subject: afternoon meeting\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n")
MSG2 = (b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\nFrom: Joe Mooch <mooch@OWATAGU.example.net>\r\n"
        b"Subject: Re: afternoon meeting\r\n\r\n3:30 is fine with me.\r\n")
PST = timezone(-timedelta(hours=8))


def test_rfc3502_example_parses_into_two_messages() -> None:
    # C: A003 APPEND saved-messages (\Seen) {329}
    # S: + Ready for literal data
    # C: Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)
    # ...
    # C:  (\Seen) " 7-Feb-1994 22:43:04 -0800" {295}
    line = (b"A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(MSG1) + MSG1
            + b' (\\Seen) " 7-Feb-1994 22:43:04 -0800" {%d}\r\n' % len(MSG2) + MSG2 + b"\r\n")
    cmd, rest = parse_command(line)
    assert rest == b""
    assert isinstance(cmd, Append)
    assert cmd.messages == (
        AppendMessage(MSG1, ("\\Seen",)),
        AppendMessage(MSG2, ("\\Seen",), datetime(1994, 2, 7, 22, 43, 4, tzinfo=PST)),
    )


def test_multiappend_waits_for_the_second_literal_and_checks_the_line_before_it() -> None:
    head = b"A003 APPEND saved-messages (\\Seen) {5}\r\nhello"
    with pytest.raises(NeedMore) as more:  # the client waits for "+" after the second header
        parse_command(head + b" (\\Seen) {5}\r\n")
    assert more.value.continuation_required
    with pytest.raises(BadCommand) as bad:  # a bad second flag list is refused before its literal
        parse_command(head + b" (\\Seen {5}\r\n")
    assert bad.value.tag == "A003"


def test_appenduid_with_a_uid_set() -> None:
    # RFC 4315 §3 / RFC 3502 §6.3.11: S: A003 OK [APPENDUID 38505 3955:3956] APPEND completed
    ok = Tagged("A003", "OK", "APPEND completed", AppendUid(38505, SequenceSet.from_numbers([3955, 3956])))
    assert ok.encode() == b"A003 OK [APPENDUID 38505 3955:3956] APPEND completed\r\n"
    assert AppendUid(38505, 3955).encode() == b"APPENDUID 38505 3955"


def test_message_count_limit_at_its_edge() -> None:
    params = Params(max_append_messages=3)
    one = b" {1}\r\nx"
    cmd, _ = parse_command(b"A1 APPEND INBOX" + one * 3 + b"\r\n", params)
    assert isinstance(cmd, Append) and len(cmd.messages) == 3
    # the fourth is refused when its header arrives, before its data is read
    with pytest.raises(BadCommand) as bad:
        parse_command(b"A1 APPEND INBOX" + one * 3 + b" {1}\r\n", params)
    assert bad.value.reason is Reason.TOO_MANY_MESSAGES
    reply = BAD_COMMAND[Reason.TOO_MANY_MESSAGES]
    assert (reply.status, reply.code) == ("BAD", Codes.LIMIT)


def test_literal8_in_append_may_carry_nul() -> None:
    # RFC 3516 §4.4: APPEND with literal8; C: A003 APPEND Drafts ~{n} ...
    data = b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n"
    cmd, _ = parse_command(b"A003 APPEND Drafts ~{%d}\r\n" % len(data) + data + b"\r\n")
    assert isinstance(cmd, Append) and cmd.message == data and cmd.binary
    cmd, _ = parse_command(b"A004 APPEND Drafts ~{%d+}\r\n" % len(data) + data + b"\r\n")
    assert isinstance(cmd, Append) and cmd.message == data
    # an ordinary literal still may not
    with pytest.raises(BadCommand) as bad:
        parse_command(b"A005 APPEND Drafts {%d}\r\n" % len(data) + data + b"\r\n")
    assert bad.value.reason is Reason.NUL
