"""STATUS=SIZE (RFC 8438) and LIST-MYRIGHTS (RFC 8440) in the sans-IO core: the
commands of the RFCs' examples parse, the responses serialise byte for byte."""

from __future__ import annotations

import pytest

from waypost.imap.proto import List, ListData, MyRightsData, Rejected, Status, StatusData, parse_command


def test_rfc8438_status_size_parses():
    # RFC 8438 §3 (example):  C: A042 STATUS blurdybloop (UIDNEXT MESSAGES SIZE)
    assert parse_command(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES SIZE)\r\n")[0] == \
        Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES", "SIZE"))
    assert parse_command(b"a STATUS INBOX (size)\r\n")[0] == Status("a", "INBOX", ("SIZE",))


def test_rfc8438_status_size_in_list_status():
    assert parse_command(b'A01 LIST "" % RETURN (STATUS (MESSAGES SIZE))\r\n')[0] == \
        List("A01", "", ("%",), (), ("STATUS",), ("MESSAGES", "SIZE"), extended=True)


def test_rfc8438_response_serialises():
    # S: * STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 SIZE 135476)
    # number64 (RFC 9051): a size beyond 2^32 is written as is.
    assert StatusData("blurdybloop", (("MESSAGES", 231), ("UIDNEXT", 44292), ("SIZE", 135476))).encode() == \
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 SIZE 135476)\r\n"
    assert StatusData("big", (("SIZE", 5 << 32),)).encode() == b"* STATUS big (SIZE 21474836480)\r\n"


def test_unknown_status_item_is_still_bad():
    with pytest.raises(Rejected) as e:
        parse_command(b"a STATUS INBOX (SIZES)\r\n")
    assert e.value.reply().encode().startswith(b"a BAD")


def test_rfc8440_list_return_myrights_parses():
    # RFC 8440 §3 (example):  C: A01 LIST "" % RETURN (MYRIGHTS)
    assert parse_command(b'A01 LIST "" % RETURN (MYRIGHTS)\r\n')[0] == \
        List("A01", "", ("%",), (), ("MYRIGHTS",), extended=True)
    assert parse_command(b'A02 LIST "" * RETURN (myrights STATUS (SIZE))\r\n')[0] == \
        List("A02", "", ("*",), (), ("MYRIGHTS", "STATUS"), ("SIZE",), extended=True)


def test_rfc8440_responses_serialise():
    # S: * LIST () "." "INBOX"
    # S: * MYRIGHTS "INBOX" lrswipkxtecda
    assert ListData((), ".", "INBOX").encode() == b'* LIST () "." INBOX\r\n'
    assert MyRightsData("INBOX", "lrswipkxtecda").encode() == b"* MYRIGHTS INBOX lrswipkxtecda\r\n"
    assert MyRightsData("foo bar", "lrs").encode() == b'* MYRIGHTS "foo bar" lrs\r\n'
