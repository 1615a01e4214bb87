"""Shared mailboxes (seeds 000 and 004): ACLs (RFC 4314), ~account/mailbox names,
subscriptions and aliases of foreign mailboxes, account templates, the ``public``
account pattern and administrators — over ``waypost serve`` with imaplib, mbsync and
the CLI."""

from __future__ import annotations

import imaplib
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.server import WaypostInstance, maildir_messages, wait_for

for _name in ("LISTRIGHTS", "DELETEACL"):
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))  # type: ignore[attr-defined]

POST = (b"From: Marketing <marketing@example.test>\r\nTo: all@example.test\r\nSubject: Spring sale\r\n"
        b"Message-ID: <sale@example.test>\r\n\r\nEverything half price.\r\n")


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("shared") / "data", imap={"plaintext_without_tls": True})
    inst.ok("domain", "add", "other.test")
    for who in ("marketing", "bob", "carol", "admin", "dadmin"):
        inst.ok("account", "add", f"{who}@example.test", "--password", f"{who}-pw")
    inst.ok("account", "add", "info@other.test", "--password", "info-pw")
    inst.ok("account", "add", "public@example.test", "--no-password")
    inst.ok("account", "set", "admin@example.test", "--right", "AllUsers")
    inst.ok("account", "set", "dadmin@example.test", "--right", "CanAccessMailboxes")
    inst.start()
    # The marketing department's shared mailbox: everyone reads, marketing posts.
    m = login(inst, "marketing")
    assert m.create("announce")[0] == "OK"
    assert m._simple_command("SETACL", "announce", "anyone", "lrs")[0] == "OK"  # type: ignore[attr-defined]
    assert m.append("announce", None, None, POST)[0] == "OK"
    assert m.create("private")[0] == "OK"
    assert m.append("private", None, None, b"Subject: plans\r\n\r\nsecret\r\n")[0] == "OK"
    m.logout()
    yield inst
    inst.stop()


def login(server: WaypostInstance, who: str, domain: str = "example.test") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(f"{who}@{domain}", f"{who}-pw")
    return c


def cmd(c: imaplib.IMAP4, name: str, *args: str) -> tuple[str, list]:
    typ, data = c._simple_command(name, *args)  # type: ignore[attr-defined]
    return typ, data


def untagged(c: imaplib.IMAP4, name: str) -> list:
    return c.response(name)[1]


def test_namespace_announces_other_users(office):
    c = login(office, "bob")
    typ, data = c.namespace()
    assert data == [b'(("" "/")) (("~" "/")) NIL']
    assert "ACL" in c.capabilities and "RIGHTS=KXTE" in c.capabilities
    c.logout()


def test_a_reader_sees_the_post_with_a_seen_flag_of_its_own(office):
    bob, carol = login(office, "bob"), login(office, "carol")
    typ, lines = bob.list('""', "*")
    assert b'"/" ~marketing/announce' in b"\n".join(lines)
    assert b"private" not in b"\n".join(lines)  # no "l": not even the name
    assert bob.select("~marketing/announce")[1] == [b"1"]
    typ, data = bob.fetch("1", "(FLAGS BODY[])")  # sets bob's \Seen
    assert data[0][1] == POST
    typ, data = bob.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    carol.select("~marketing/announce")
    typ, data = carol.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # carol's own \Seen
    typ, data = cmd(carol, "MYRIGHTS", "~marketing/announce")
    assert untagged(carol, "MYRIGHTS") == [b'~marketing/announce lrs']
    # Reading rights only: no posting, no deleting, no managing.
    assert carol.append("~marketing/announce", None, None, b"Subject: x\r\n\r\ny\r\n")[0] == "NO"
    assert carol.store("1", "+FLAGS", "\\Deleted")[0] == "NO"
    assert cmd(carol, "GETACL", "~marketing/announce")[0] == "NO"
    bob.logout()
    carol.logout()
    m = login(office, "marketing")
    m.select("announce")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # the owner's flags are not the readers'
    m.logout()
    # One copy serves every reader.
    assert len(maildir_messages(office.mailbox("marketing@example.test") / ".announce")) == 1
    assert maildir_messages(office.mailbox("bob@example.test")) == []


def test_no_rights_means_no_leak(office):
    c = login(office, "carol")
    for name in ("~marketing/private", "~marketing/nothing-here"):
        assert c.select(name)[0] == "NO"
        assert c.response("NO") or True
        typ, data = cmd(c, "GETACL", name)
        assert typ == "NO" and b"[NONEXISTENT]" in data[0]
        assert cmd(c, "MYRIGHTS", name)[0] == "NO"
        assert c.status(name, "(MESSAGES)")[0] == "NO"
        assert c.subscribe(name)[0] == "NO"
    typ, lines = c.list('""', "~marketing/*")
    assert lines == [b'(\\HasNoChildren) "/" ~marketing/announce']
    c.logout()


def test_acl_commands_and_their_bad_input(office):
    m = login(office, "marketing")
    typ, data = cmd(m, "GETACL", "announce")
    assert untagged(m, "ACL") == [b'announce marketing@example.test lrswipkxtea anyone lrs']
    assert cmd(m, "SETACL", "announce", "bob", "+lrswi")[0] == "OK"
    assert cmd(m, "GETACL", "announce")[0] == "OK"
    assert b"bob@example.test lrswi" in untagged(m, "ACL")[0]
    # invalid rights letters: BAD (RFC 4314 §3.1)
    with pytest.raises(imaplib.IMAP4.error):
        cmd(m, "SETACL", "announce", "bob", "lrz")
    typ, data = cmd(m, "SETACL", "announce", "nobody-like-this", "lr")
    assert typ == "NO"
    typ, data = cmd(m, "SETACL", "announce", "marketing", "lr")  # its own "a" cannot go
    assert typ == "NO" and b"[CANNOT]" in data[0]
    assert cmd(m, "SETACL", "nope", "bob", "lr")[0] == "NO"
    typ, data = cmd(m, "LISTRIGHTS", "announce", "bob")
    assert untagged(m, "LISTRIGHTS") == [b'announce bob "" l r s w i p k x t e a']
    assert cmd(m, "DELETEACL", "announce", "bob")[0] == "OK"
    cmd(m, "GETACL", "announce")
    assert b"bob" not in untagged(m, "ACL")[0]
    # bob may post for a moment, then not
    assert cmd(m, "SETACL", "announce", "bob@example.test", "lri")[0] == "OK"
    b = login(office, "bob")
    assert b.append("~marketing/announce", None, None, b"Subject: from bob\r\n\r\nhi\r\n")[0] == "OK"
    assert cmd(m, "DELETEACL", "announce", "bob@example.test")[0] == "OK"
    assert b.append("~marketing/announce", None, None, b"Subject: again\r\n\r\nhi\r\n")[0] == "NO"
    b.logout()
    m.select("announce")
    m.store("2", "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()


def test_cli_acl_and_the_public_account(office):
    # Seed pattern: shared mailboxes live in "public"; the real owner gets every right
    # and manages them with its own login.
    office.ok("mailbox", "create", "public@example.test/news")
    office.ok("acl", "set", "public@example.test/news", "marketing@example.test", "lrswipkxtea")
    out = office.ok("acl", "get", "public@example.test/news", "--json")
    assert '"marketing@example.test"' in out and '"lrswipkxtea"' in out
    m = login(office, "marketing")
    assert cmd(m, "SETACL", "~public/news", "carol", "lr")[0] == "OK"
    assert m.create("~public/news/2027")[0] == "OK"
    assert m.append("~public/news", None, None, b"Subject: news\r\n\r\nnews\r\n")[0] == "OK"
    assert m.create("~public/elsewhere")[0] == "NO"  # no "k" on public's INBOX
    m.logout()
    c = login(office, "carol")
    # "lr" only: the mailbox opens read-only (RFC 4314 §4).
    assert c.select("~public/news", readonly=True)[1] == [b"1"]
    typ, data = cmd(c, "SELECT", "~public/news")
    assert typ == "OK" and b"[READ-ONLY]" in data[-1]
    c.logout()
    result = office.cli("acl", "set", "public@example.test/news", "carol", "lrq")
    assert result.exit_code != 0 and "not a right" in result.output
    result = office.cli("acl", "set", "public@example.test/news", "public", "lr")
    assert result.exit_code != 0 and "owner" in result.output


def test_subscriptions_aliases_and_the_template_for_a_new_account(office):
    office.ok("domain", "template", "example.test", "--subscribe", "~marketing/announce",
              "--alias", "mkt-announce=~marketing/announce")
    office.ok("account", "add", "erin@example.test", "--password", "erin-pw")  # a new employee
    e = login(office, "erin")
    typ, lines = e.lsub('""', "*")
    assert b'"/" ~marketing/announce' in b"\n".join(lines)
    typ, lines = e.list('""', "%")
    listing = b"\n".join(lines)
    assert b'"/" mkt-announce' in listing  # an ordinary-looking mailbox for simple clients
    assert e.select("mkt-announce")[1] == [b"1"]
    typ, data = e.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: Spring sale\r\n\r\n"
    typ, data = cmd(e, "LIST", '(SUBSCRIBED)', '""', "*")
    assert any(b"~marketing/announce" in x for x in untagged(e, "LIST"))
    assert e.delete("mkt-announce")[0] == "NO"  # an alias is the administrator's
    e.logout()
    out = office.ok("mailbox", "alias", "list", "erin@example.test", "--json")
    assert "mkt-announce" in out
    # Bad aliases are refused by the CLI: a loop, and a target erin may not see.
    office.ok("mailbox", "alias", "add", "erin@example.test", "a1", "~marketing/announce")
    result = office.cli("mailbox", "alias", "add", "erin@example.test", "a2", "a3")
    assert result.exit_code != 0
    office.ok("mailbox", "alias", "add", "erin@example.test", "a3", "a1")
    result = office.cli("mailbox", "alias", "add", "erin@example.test", "a1", "a3")
    assert result.exit_code != 0 and "loop" in result.output
    result = office.cli("mailbox", "alias", "add", "erin@example.test", "secret", "~marketing/private")
    assert result.exit_code != 0 and "may not see" in result.output
    office.ok("mailbox", "alias", "remove", "erin@example.test", "a3")
    office.ok("domain", "template", "example.test", "--clear")


def test_administrators_open_other_inboxes(office):
    office.ok("mailbox", "list", "bob@example.test")
    with __import__("smtplib").SMTP("127.0.0.1", office.smtp_port) as s:
        s.sendmail("spam@example.test", ["bob@example.test"], b"Subject: junk\r\n\r\nbuy\r\n")
    wait_for(lambda: office.messages("bob@example.test"))
    a = login(office, "admin")  # AllUsers: every mailbox of every domain
    assert a.select("~bob/INBOX")[0] == "OK"
    assert a.store("1", "+FLAGS", "\\Deleted")[0] == "OK"
    assert a.expunge()[0] == "OK"
    assert a.select("~info@other.test/INBOX")[0] == "OK"
    a.logout()
    assert office.messages("bob@example.test") == []
    d = login(office, "dadmin")  # CanAccessMailboxes: this domain only
    assert d.select("~carol/INBOX")[0] == "OK"
    assert d.select("~info@other.test/INBOX")[0] == "NO"
    d.logout()
    b = login(office, "bob")  # a plain user may not
    assert b.select("~carol/INBOX")[0] == "NO"
    b.logout()


def test_mbsync_as_two_users_on_the_shared_mailbox(office, tmp_path):
    exe = shutil.which("mbsync")
    assert exe, "mbsync is installed by 'make test' (Debian package isync)"
    for who in ("bob", "carol"):
        local = tmp_path / who
        local.mkdir()
        rc = tmp_path / f"{who}.rc"
        rc.write_text(f"""IMAPAccount a
Host 127.0.0.1
Port {office.imap_port}
User {who}@example.test
Pass {who}-pw
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account a

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel c
Far :remote:
Near :local:
Patterns * !Junk
Create Near
Sync Pull
SyncState *
""")
        out = subprocess.run([exe, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60,
                             env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stdout + out.stderr
        got = maildir_messages(local / "~marketing" / "announce")
        assert len(got) == 1 and b"Spring sale" in got[0].read_bytes()
        assert not (local / "~marketing" / "private").exists()


def test_a_reader_replacing_flags_keeps_the_owners_seen(office):
    m = login(office, "marketing")
    assert m.create("board")[0] == "OK"
    assert cmd(m, "SETACL", "board", "bob", "lrswt")[0] == "OK"  # FLAGS replaces: s, t and w
    assert m.append("board", "(\\Seen)", None, b"Subject: memo\r\n\r\nm\r\n")[0] == "OK"
    b = login(office, "bob")
    b.select("~marketing/board")
    assert b.store("1", "FLAGS", "(\\Flagged)")[0] == "OK"     # replaces: bob's \Seen off
    assert b.store("1", "FLAGS", "(\\Seen $Later)")[0] == "OK"  # bob's \Seen on
    typ, data = b.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0] and b"$Later" in data[0] and b"\\Flagged" not in data[0]
    b.logout()
    m.select("board")
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0] and b"$Later" in data[0]  # the owner's \Seen untouched
    m.logout()
