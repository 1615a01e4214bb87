"""NOTIFY (RFC 5465) without a socket: the §6 example and the other forms parse, the
refusals of ``notify.problem``, and the LIST response with OLDNAME."""

from __future__ import annotations

import pytest

from waypost.imap.notify import problem
from waypost.imap.proto import BadCommand, ListData, Notify, NotifyGroup, parse_command
from waypost.imap.proto.state import State, is_legal


def test_rfc5465_example_parses() -> None:
    # RFC 5465 §6 (the first example, one line)
    cmd, rest = parse_command(
        b"A142 NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)])"
          b" MessageExpunge)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes (Inbox Drafts) NONE)\r\n")
    assert rest == b"" and isinstance(cmd, Notify) and cmd.status
    assert cmd.groups == (
        NotifyGroup("SELECTED", (), ("MessageNew", "MessageExpunge"),
                    "(uid body.peek[header.fields (from to subject)])"),
        NotifyGroup("SUBTREE", ("Lists",), ("MessageNew", "MessageExpunge")),
        NotifyGroup("MAILBOXES", ("INBOX", "Drafts"), ()),
    )
    assert parse_command(b"a NOTIFY NONE\r\n")[0] == Notify("a", None)
    cmd, _ = parse_command(b"a NOTIFY SET (personal (mailboxname SubscriptionChange))\r\n")
    assert cmd.groups == (NotifyGroup("PERSONAL", (), ("MailboxName", "SubscriptionChange")),)
    assert is_legal("NOTIFY", State.AUTHENTICATED) and not is_legal("NOTIFY", State.NOT_AUTHENTICATED)


@pytest.mark.parametrize("line", [
    b"a NOTIFY\r\n", b"a NOTIFY SET\r\n", b"a NOTIFY MAYBE\r\n", b"a NOTIFY SET (personal)\r\n",
    b"a NOTIFY SET (personal ())\r\n", b"a NOTIFY SET (anywhere NONE)\r\n", b"a NOTIFY SET (subtree NONE\r\n",
    b"a NOTIFY SET (personal (MessageNew (uid\r\n",
])
def test_malformed_notify_is_bad(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_command(line)


def test_problems() -> None:
    ok = (NotifyGroup("PERSONAL", (), ("MessageNew", "MessageExpunge", "FlagChange")),)
    assert problem(ok) is None
    assert problem((NotifyGroup("INBOXES", (), ("AnnotationChange",)),))[0] == "BADEVENT"
    # for the selected mailbox MessageNew and MessageExpunge go together, FlagChange
    # needs both; elsewhere (STATUS) each may come alone, as in Dovecot and imaptest
    assert problem((NotifyGroup("SELECTED", (), ("MessageNew",)),))[0] == "BAD"
    assert problem((NotifyGroup("SELECTED-DELAYED", (), ("MessageExpunge",)),))[0] == "BAD"
    assert problem((NotifyGroup("SELECTED", (), ("FlagChange",)),))[0] == "BAD"
    assert problem((NotifyGroup("INBOXES", (), ("MessageNew",)),)) is None
    assert problem((NotifyGroup("MAILBOXES", ("x",), ("MessageExpunge",)),)) is None
    assert problem((NotifyGroup("INBOXES", (), ("FlagChange",)),)) is None
    assert problem((NotifyGroup("INBOXES", (), ("MessageNew", "MessageExpunge"), "(uid)"),))[0] == "BAD"
    assert problem((NotifyGroup("SELECTED", (), ("MessageNew", "MessageExpunge"), "(uid)"),)) is None


def test_list_with_oldname() -> None:
    assert ListData((), "/", "New", old_name="Old").encode() == b'* LIST () "/" New ("OLDNAME" (Old))\r\n'
