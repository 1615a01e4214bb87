"""OBJECTID (RFC 8474) in the protocol core and the id helpers: the RFC's command
forms parse, the response forms serialise byte for byte, and ids keep the grammar."""

from __future__ import annotations

import pytest

from waypost.db import MailboxRecord, MessageRecord
from waypost.imap.objectid import OBJECTID, email_id, mailbox_id
from waypost.imap.proto import Att, Code, Fetch, Params, Rejected, Search, SequenceSet, Status, StatusData, Tagged
from waypost.imap.proto import parse_command
from waypost.imap.proto.search import ObjectIdKey


@pytest.mark.parametrize("line,expected", [
    (b"27 SEARCH EMAILID M6d99ac3275bb4e\r\n", Search("27", ObjectIdKey("EMAILID", "M6d99ac3275bb4e"))),
    (b"28 UID SEARCH THREADID T64b478a75b7ea9\r\n",
     Search("28", ObjectIdKey("THREADID", "T64b478a75b7ea9"), uid=True)),
    (b"29 FETCH 1:2 (EMAILID THREADID)\r\n",
     Fetch("29", SequenceSet.of((1, 2)), (Att.EMAILID, Att.THREADID))),
    (b"30 STATUS foo (MAILBOXID)\r\n", Status("30", "foo", ("MAILBOXID",))),
])
def test_rfc8474_commands_parse(line, expected):
    assert parse_command(line, Params())[0] == expected


@pytest.mark.parametrize("line", [
    b"A SEARCH EMAILID\r\n",
    b"A SEARCH EMAILID a.b\r\n",
    b"A SEARCH THREADID \"x\"\r\n",
    b"A SEARCH EMAILID " + b"x" * 256 + b"\r\n",
])
def test_bad_object_ids(line):
    with pytest.raises(Rejected):
        parse_command(line, Params())


def test_rfc8474_responses_serialise():
    # RFC 8474 §4.1 and §4.2 examples.
    assert Tagged("3", "OK", "Completed", Code("MAILBOXID", "(F2212ea87-6097-4256-9d51-71338625)")).encode() == \
        b"3 OK [MAILBOXID (F2212ea87-6097-4256-9d51-71338625)] Completed\r\n"
    assert StatusData("foo", (("MAILBOXID", "F2212ea87-6097-4256-9d51-71338625"),)).encode() == \
        b"* STATUS foo (MAILBOXID (F2212ea87-6097-4256-9d51-71338625))\r\n"
    assert StatusData("foo", (("MESSAGES", 3), ("MAILBOXID", "F1"))).encode() == \
        b"* STATUS foo (MESSAGES 3 MAILBOXID (F1))\r\n"


def test_ids_keep_the_grammar_and_differ():
    box = MailboxRecord(7, "example.test", "u", "INBOX", "", 1, 1, 0, 1)
    assert mailbox_id(box) == "F7" and OBJECTID.match(mailbox_id(box))
    a = MessageRecord(1, "1733300000.M1P2Q3.host,S=120", "cur", (), 1, 120, 0.0)
    b = MessageRecord(1, "1733300000.M1P2Q4.host,S=120", "cur", (), 1, 120, 0.0)
    assert OBJECTID.match(email_id(a)) and len(email_id(a)) == 25
    assert email_id(a) != email_id(b)
    # The id is the file's, whatever UID or flags the message has.
    assert email_id(a) == email_id(MessageRecord(9, a.name, "new", ("\\Seen",), 5, 120, 1.0))
