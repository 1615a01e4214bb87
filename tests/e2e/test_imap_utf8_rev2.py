"""UTF8=ACCEPT (RFC 6855) and IMAP4rev2 (RFC 9051) through ENABLE, against the real
listener: UTF-8 mailbox names and quoted strings, and the IMAP4rev2 answers a client
sees (no RECENT, ESEARCH for SEARCH, STATUS DELETED)."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

PASSWORD = "u8-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapu8") / "data", imap={"plaintext_without_tls": True})
    inst.ok("account", "add", "u8@example.test", "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN u8@example.test {PASSWORD}")[-1].startswith(b"L OK")
    return r


def append(server: WaypostInstance, mailbox: str, subject: str, flags: str = "()") -> None:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login("u8@example.test", PASSWORD)
    msg = f"From: a@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    assert c.append(mailbox, flags, None, msg)[0] == "OK"
    c.logout()


def test_capabilities(server):
    r = Raw(server.imap_port)
    caps = r.cmd("C CAPABILITY")[0].split()
    assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps and b"UTF8=ACCEPT" in caps
    r.close()


def test_utf8_accept_mailbox_names(server):
    name = "Réunion/Ordre du jour".encode()
    r = login(server)
    # Before ENABLE: 8-bit octets only in literals, names in modified UTF-7.
    assert r.cmd(b'A CREATE "' + name + b'"')[-1].startswith(b"A BAD")
    assert r.cmd("B ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT", b"B OK ENABLE completed"]
    assert r.cmd(b'C CREATE "' + name + b'"')[-1].startswith(b"C OK")
    listed = r.cmd('D LIST "" "R*"')
    assert b'* LIST (\\HasChildren) "/" {8}\r\nR\xc3\xa9union' in listed
    assert b'* LIST (\\HasNoChildren) "/" {22}\r\n' + name in listed
    assert r.cmd(b'E SELECT "' + name + b'"')[-1].startswith(b"E OK")
    assert r.cmd(b'F STATUS "' + name + b'" (MESSAGES)')[0] == \
        b"* STATUS {22}\r\n" + name + b" (MESSAGES 0)"
    # Not valid UTF-8: still BAD.
    assert r.cmd(b'G CREATE "bad\xff"')[-1].startswith(b"G BAD")
    # A session that did not enable it sees the same mailbox in modified UTF-7.
    other = login(server)
    assert b'* LIST (\\HasNoChildren) "/" "R&AOk-union/Ordre du jour"' in other.cmd('H LIST "" "R*"')
    assert other.cmd('I SELECT "R&AOk-union/Ordre du jour"')[-1].startswith(b"I OK")
    other.close()
    r.close()


def test_imap4rev2_answers(server):
    r0 = login(server)
    r0.cmd("A CREATE Rev2")
    r0.close()
    append(server, "Rev2", "one")
    append(server, "Rev2", "two", "(\\Deleted)")
    r = login(server)
    assert r.cmd("B ENABLE IMAP4rev2") == [b"* ENABLED IMAP4REV2", b"B OK ENABLE completed"]
    selected = r.cmd("C SELECT Rev2")
    assert b"* 2 EXISTS" in selected
    assert not [line for line in selected if b"RECENT" in line or b"[UNSEEN" in line]
    assert r.cmd("D FETCH 1:* FLAGS")[:2] == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS (\\Deleted))"]
    assert r.cmd("E SEARCH ALL")[0] == b'* ESEARCH (TAG "E") ALL 1:2'
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(r.cmd("F FETCH 1:* UID")))]
    assert r.cmd("G UID SEARCH DELETED")[0] == b'* ESEARCH (TAG "G") UID ALL %d' % uids[1]
    assert r.cmd("H SEARCH SUBJECT nothing")[0] == b'* ESEARCH (TAG "H")'
    assert r.cmd("I STATUS Rev2 (MESSAGES DELETED)")[0] == b"* STATUS Rev2 (MESSAGES 2 DELETED 1)"
    # New mail: EXISTS, no RECENT.
    append(server, "Rev2", "three")
    out = r.cmd("J NOOP")
    assert b"* 3 EXISTS" in out and not [line for line in out if b"RECENT" in line]
    # A SELECT with a mailbox selected: [CLOSED] first (RFC 9051 §7.1).
    again = r.cmd("J2 EXAMINE Rev2")
    assert again[0] == b"* OK [CLOSED] Previous mailbox closed" and again[-1].startswith(b"J2 OK")
    assert r.cmd("J3 EXAMINE Rev2")[0] == b"* OK [CLOSED] Previous mailbox closed"
    assert r.cmd("J4 SELECT Nowhere") == [b"* OK [CLOSED] Previous mailbox closed",
                                         b"J4 NO [NONEXISTENT] No such mailbox"]
    assert not [line for line in r.cmd("J5 SELECT Rev2") if b"CLOSED" in line]
    # Names are UTF-8 with IMAP4rev2 too (RFC 9051 §5.1).
    assert r.cmd('K CREATE "Bücher"'.encode())[-1].startswith(b"K OK")
    assert b'* LIST (\\HasNoChildren) "/" {7}\r\nB\xc3\xbccher' in r.cmd('L LIST "" "B*"')
    r.close()
    # Without ENABLE the session stays IMAP4rev1.
    r1 = login(server)
    selected = r1.cmd("M SELECT Rev2")
    assert [line for line in selected if line.endswith(b"RECENT")]
    assert not [line for line in r1.cmd("M2 SELECT Rev2") if b"CLOSED" in line]
    assert r1.cmd("N SEARCH DELETED")[0] == b"* SEARCH 2"
    r1.close()
