"""NOTIFY (RFC 5465) through the real listener: one session asks, another changes
things, and the first hears of it unasked — STATUS for message events in other
mailboxes (the imaptest `notify` script's initial STATUS as well), LIST for mailbox
names and subscriptions, the selected mailbox's EXISTS/FETCH at once, and the refusals."""

from __future__ import annotations

import re
import socket

import pytest

from support.imap import Raw
from support.server import WaypostInstance


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("notify") / "data", imap={"plaintext_without_tls": True})
    inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
    inst.start()
    yield inst
    inst.stop()


def raw(server: WaypostInstance) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd("a0 LOGIN alice@example.test alice-password")[-1].startswith(b"a0 OK")
    return r


def append(r: Raw, mailbox: str, text: bytes = b"Subject: x\r\n\r\nx\r\n") -> None:
    r.send(b"ap APPEND %s {%d+}\r\n" % (mailbox.encode(), len(text)) + text + b"\r\n")
    line = r.line()
    while line.startswith(b"* "):
        line = r.line()
    assert line.startswith(b"ap OK"), line


def nothing_more(r: Raw, wait: float = 1.5) -> bool:
    r.sock.settimeout(wait)
    try:
        r.line()
    except (socket.timeout, TimeoutError):
        return True
    finally:
        r.sock.settimeout(10)
    return False


def test_capability(imap_server):
    r = Raw(imap_server.imap_port)
    assert b"NOTIFY" in r.cmd("c CAPABILITY")[0].split()
    r.close()


def test_initial_status_as_imaptest_asks(imap_server):
    r = raw(imap_server)
    r.cmd("c CREATE box2")
    append(r, "box2")
    out = r.cmd("n NOTIFY SET STATUS (mailboxes box2 (MessageNew MessageExpunge))")
    assert re.fullmatch(rb"\* STATUS box2 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)", out[0]), out
    assert out[-1].startswith(b"n OK") and len(out) == 2
    out = r.cmd("n NOTIFY SET STATUS (mailboxes box2 (MessageNew MessageExpunge FlagChange))")
    assert re.fullmatch(rb"\* STATUS box2 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)", out[0]), out
    out = r.cmd("n NOTIFY SET (mailboxes box2 (MessageNew MessageExpunge FlagChange))")
    assert len(out) == 1 and out[0].startswith(b"n OK")  # without STATUS: none
    # imaptest's notify group: each event alone for a mailbox that is not selected
    out = r.cmd("n NOTIFY SET STATUS (mailboxes box2 (MessageExpunge))")
    assert re.fullmatch(rb"\* STATUS box2 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)", out[0]), out
    assert out[-1].startswith(b"n OK") and len(out) == 2
    out = r.cmd("n NOTIFY SET STATUS (mailboxes box2 (MessageNew))")
    assert re.fullmatch(rb"\* STATUS box2 \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)", out[0]), out
    out = r.cmd("n NOTIFY SET STATUS (mailboxes box2 (FlagChange))")
    assert re.fullmatch(rb"\* STATUS box2 \(UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)", out[0]), out
    assert out[-1].startswith(b"n OK") and len(out) == 2
    r.cmd("n NOTIFY NONE")
    r.close()


def test_message_expunge_alone_in_another_mailbox(imap_server):
    # MessageExpunge alone for a mailbox that is not selected: its STATUS comes when
    # a message goes from it (another session's EXPUNGE)
    r, other = raw(imap_server), raw(imap_server)
    r.cmd("c CREATE box3")
    append(r, "box3")
    append(r, "box3")
    assert r.cmd("n NOTIFY SET (mailboxes box3 (MessageExpunge))")[-1].startswith(b"n OK")
    assert other.cmd("s SELECT box3")[-1].startswith(b"s OK")
    other.cmd("t STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert other.cmd("x EXPUNGE")[-1].startswith(b"x OK")
    line = r.line()  # unasked, within NOTIFY's wake-up
    assert re.fullmatch(rb"\* STATUS box3 \(MESSAGES 1 UIDNEXT 3 UIDVALIDITY \d+\)", line), line
    r.cmd("n NOTIFY NONE")
    r.close()
    other.close()


def test_message_events_in_other_mailboxes_arrive_unasked(imap_server):
    watcher, other = raw(imap_server), raw(imap_server)
    assert watcher.cmd("n NOTIFY SET (personal (MessageNew MessageExpunge))")[-1].startswith(b"n OK")
    append(other, "Drafts")
    assert re.fullmatch(rb"\* STATUS Drafts \(MESSAGES \d+ UIDNEXT \d+ UIDVALIDITY \d+\)", watcher.line())
    # a flag change is not asked for: nothing
    other.cmd("s SELECT Drafts")
    other.cmd("f STORE 1 +FLAGS (\\Flagged)")
    assert nothing_more(watcher)
    other.cmd("f STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd("e EXPUNGE")
    assert re.fullmatch(rb"\* STATUS Drafts \(MESSAGES 0 UIDNEXT \d+ UIDVALIDITY \d+\)", watcher.line())
    assert watcher.cmd("n NOTIFY NONE")[-1].startswith(b"n OK")
    append(other, "Drafts")
    assert nothing_more(watcher)
    watcher.close()
    other.close()


def test_mailbox_names_and_subscriptions(imap_server):
    watcher, other = raw(imap_server), raw(imap_server)
    assert watcher.cmd("n NOTIFY SET (personal (MailboxName SubscriptionChange))")[-1].startswith(b"n OK")
    other.cmd("c CREATE Projects")
    assert watcher.line() == b'* LIST () "/" Projects'
    other.cmd("r RENAME Projects Archive")
    assert watcher.line() == b'* LIST () "/" Archive ("OLDNAME" (Projects))'
    other.cmd("s SUBSCRIBE Archive")
    assert watcher.line() == b'* LIST (\\Subscribed) "/" Archive'
    other.cmd("u UNSUBSCRIBE Archive")
    assert watcher.line() == b'* LIST () "/" Archive'
    other.cmd("d DELETE Archive")
    assert watcher.line() == b'* LIST (\\NonExistent) "/" Archive'
    watcher.close()
    other.close()


def test_selected_mailbox_updates_come_at_once(imap_server):
    watcher, other = raw(imap_server), raw(imap_server)
    selected = watcher.cmd("s SELECT INBOX")
    exists = int(re.search(rb"\* (\d+) EXISTS", b"\n".join(selected)).group(1))
    out = watcher.cmd("n NOTIFY SET (selected (MessageNew MessageExpunge FlagChange)) (personal NONE)")
    assert out[-1].startswith(b"n OK")
    append(other, "INBOX")
    got = [watcher.line()]
    if got[0].startswith(b"* STATUS"):
        got.append(watcher.line())
    assert b"* %d EXISTS" % (exists + 1) in got, got
    other.cmd("s SELECT INBOX")
    other.cmd(f"f STORE {exists + 1} +FLAGS.SILENT (\\Flagged)")
    line = watcher.line()
    while b"RECENT" in line:
        line = watcher.line()
    assert re.match(rb"\* %d FETCH \(.*FLAGS \(.*\\Flagged" % (exists + 1), line), line
    watcher.close()
    other.close()


@pytest.mark.parametrize("line, reply", [
    ("n NOTIFY SET (personal (AnnotationChange))", b"n NO [BADEVENT (MessageNew MessageExpunge FlagChange "
                                                   b"MailboxName SubscriptionChange)]"),
    ("n NOTIFY SET (selected (MessageNew))", b"n BAD"),
    ("n NOTIFY SET (selected-delayed (MessageExpunge))", b"n BAD"),
    ("n NOTIFY SET (selected (FlagChange))", b"n BAD"),
    ("n NOTIFY SET (personal (MessageNew (uid) MessageExpunge))", b"n BAD"),
    ("n NOTIFY SET (everywhere (MessageNew MessageExpunge))", b"n BAD"),
    ("n NOTIFY SET", b"n BAD"),
    ("n NOTIFY SET (personal ())", b"n BAD"),
    ("n NOTIFY MAYBE", b"n BAD"),
])
def test_refusals(imap_server, line, reply):
    r = raw(imap_server)
    out = r.cmd(line)
    assert len(out) == 1 and out[0].startswith(reply), out
    r.close()
    n = Raw(imap_server.imap_port)
    assert n.cmd("n NOTIFY NONE")[-1].startswith(b"n BAD")  # not logged in
    n.close()


def test_changes_made_in_any_worker_are_heard(tmp_path):
    """With two workers the sessions land in either; every change reaches the watcher
    (through the change channel, or its 5-second recheck)."""
    with WaypostInstance(tmp_path / "data", server={"workers": 2}, imap={"plaintext_without_tls": True}) as inst:
        inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
        inst.start()
        watcher = raw(inst)
        assert watcher.cmd("n NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")[-1].startswith(b"n OK")
        for i in range(4):
            other = raw(inst)
            other.cmd(f"c CREATE Box{i}")
            assert watcher.line() == b'* LIST () "/" Box%d' % i
            append(other, f"Box{i}")
            assert re.fullmatch(rb"\* STATUS Box%d \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)" % i, watcher.line())
            other.close()
        watcher.close()

