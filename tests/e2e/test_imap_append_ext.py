"""APPEND extensions through the real listener: MULTIAPPEND (RFC 3502) with its
APPENDUID uid-set (RFC 4315), literal8 and FETCH BINARY (RFC 3516), CATENATE (RFC 4469)."""

from __future__ import annotations

import base64
import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapappend") / "data",
                           imap={"plaintext_without_tls": True, "max_append_messages": 3,
                                 "max_append_size": 200_000})
    for who in ("alice", "bob"):
        inst.ok("account", "add", f"{who}@example.test", "--password", f"{who}-password")
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance, who: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(f"{who}@example.test", f"{who}-password")
    return c


def raw(server: WaypostInstance, who: str) -> Raw:
    r = Raw(server.imap_port)
    r.cmd(f"a0 LOGIN {who}@example.test {who}-password")
    return r


def msg(subject: str) -> bytes:
    return b"From: a@example.test\r\nSubject: %s\r\n\r\nbody of %s\r\n" % (subject.encode(), subject.encode())


def test_capability_lists_multiappend(imap_server):
    c = login(imap_server, "alice")
    assert "MULTIAPPEND" in c.capabilities
    c.logout()


def test_multiappend_stores_all_with_a_uid_set(imap_server):
    r = raw(imap_server, "alice")
    m1, m2, m3 = msg("one"), msg("two"), msg("three")
    r.send(b"a1 APPEND INBOX (\\Seen) {%d}\r\n" % len(m1))
    assert r.line().startswith(b"+ ")
    r.send(m1 + b' (\\Flagged) " 7-Feb-1994 22:43:04 -0800" {%d}\r\n' % len(m2))
    assert r.line().startswith(b"+ ")
    r.send(m2 + b" {%d+}\r\n" % len(m3) + m3 + b"\r\n")
    done = r.line()
    m = re.match(rb"a1 OK \[APPENDUID (\d+) (\d+):(\d+)\] ", done)
    assert m is not None, done
    first, last = int(m.group(2)), int(m.group(3))
    assert last - first == 2
    r.close()
    c = login(imap_server, "alice")
    c.select("INBOX")
    typ, data = c.uid("FETCH", f"{first}:{last}", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    metas = [d[0] for d in data if isinstance(d, tuple)]
    assert bodies == [m1, m2, m3]
    assert b"\\Seen" in metas[0] and b"\\Flagged" in metas[1]
    assert b'"08-Feb-1994 06:43:04 +0000"' in metas[1]  # the same instant, in UTC
    c.logout()


def test_multiappend_is_all_or_nothing(imap_server):
    c = login(imap_server, "bob")
    typ, data = c.status("INBOX", "(MESSAGES UIDNEXT)")
    before = data[0]
    r = raw(imap_server, "bob")
    m1 = msg("kept back")
    # the second message is empty: the whole command fails, the first is not stored
    reply = r.cmd(b"b1 APPEND INBOX {%d+}\r\n" % len(m1) + m1 + b" {0+}\r\n")
    assert reply[-1].startswith(b"b1 NO ")
    # one message more than imap.max_append_messages (3): BAD [LIMIT] before its data
    one = b" {%d+}\r\n" % len(m1) + m1
    reply = r.cmd(b"b2 APPEND INBOX" + one * 4)
    assert reply[-1].startswith(b"b2 BAD [LIMIT]")
    assert r.cmd(b"b3 NOOP")[-1].startswith(b"b3 OK")
    r.close()
    typ, data = c.status("INBOX", "(MESSAGES UIDNEXT)")
    assert data[0] == before
    c.logout()


def test_append_literal8_keeps_nul_octets(imap_server):
    data = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\xff\r\n"
    r = raw(imap_server, "bob")
    r.send(b"c1 APPEND INBOX ~{%d}\r\n" % len(data))
    assert r.line().startswith(b"+ ")
    r.send(data + b"\r\n")
    m = re.match(rb"c1 OK \[APPENDUID \d+ (\d+)\]", r.line())
    assert m is not None
    r.close()


BINARY_MESSAGE = (
    b"From: a@example.test\r\nSubject: parts\r\nMime-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECaGVs\r\nbG8=\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nzzz\r\n"
    b"--b--\r\n"
)


def test_fetch_binary_decodes_parts(imap_server):
    c = login(imap_server, "alice")
    assert "BINARY" in c.capabilities
    c.create("Binary")
    typ, data = c.append("Binary", None, None, BINARY_MESSAGE)
    assert typ == "OK"
    c.select("Binary")
    typ, data = c.fetch("1", "(BINARY.SIZE[2] BINARY.PEEK[2] BINARY.PEEK[1]<6.20> FLAGS)")
    assert typ == "OK", data
    head = data[0][0]
    assert b"BINARY.SIZE[2] 8" in head and b"BINARY[2] ~{8}" in head
    assert data[0][1] == b"\x00\x01\x02hello"
    assert b'BINARY[1]<6> "text"' in data[1] and b"\\Seen" not in data[1]
    # without .PEEK, \Seen is set
    typ, data = c.fetch("1", "(BINARY[1])")
    assert typ == "OK" and b"\\Seen" in data[0]
    # RFC 3516 §4.2: an encoding we cannot undo fails the FETCH with UNKNOWN-CTE
    r = raw(imap_server, "alice")
    r.cmd(b"d1 SELECT Binary")
    assert r.cmd(b"d2 FETCH 1 BINARY.PEEK[3]")[-1].startswith(b"d2 NO [UNKNOWN-CTE]")
    assert r.cmd(b"d3 FETCH 1 BINARY.SIZE[1]")[-1].startswith(b"d3 OK")
    r.close()
    c.logout()


def test_a_literal8_message_is_kept_with_its_nul_parts_in_base64(imap_server):
    """RFC 3516: a literal8 is only a BINARY response (BODY sections are nstrings, which
    cannot carry NUL), so the parts of an APPENDed message that hold NUL are kept in
    base64 with a Content-Transfer-Encoding saying so, as Dovecot shows them; BINARY
    gives the octets back.  imaptest's append-binary group, byte for byte."""
    body = b"\x00-\xe4\r\n\r\n\r\n\r\n"
    data = (b"From: user@domain.org\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\nMime-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body)
    kept = data.replace(b"binary\r\n\r\n" + body, b"base64\r\n\r\n" + base64.b64encode(body))
    r = raw(imap_server, "alice")
    r.send(b"e1 APPEND INBOX ~{%d+}\r\n" % len(data) + data + b"\r\n")
    uid = int(re.match(rb"e1 OK \[APPENDUID \d+ (\d+)\]", r.line()).group(1))  # type: ignore[union-attr]
    r.close()
    c = login(imap_server, "alice")
    c.select("INBOX")
    typ, got = c.uid("FETCH", str(uid), "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1])")
    assert typ == "OK"
    assert b"RFC822.SIZE %d BODY[] {%d}" % (len(kept), len(kept)) in got[0][0] and got[0][1] == kept
    assert got[1][0] == b' BODY[1] "%s" BINARY.SIZE[1] %d BINARY[1] ~{%d}' % (
        base64.b64encode(body), len(body), len(body))
    assert got[1][1] == body
    typ, got = c.uid("FETCH", str(uid), "(BODYSTRUCTURE)")
    assert b'BODYSTRUCTURE ("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 16 NIL NIL NIL NIL)' in got[0]
    c.logout()


DRAFT = (b"From: alice@example.test\r\nSubject: draft\r\nMime-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n'
         b"--q\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--q--\r\n")


def test_catenate_builds_a_message_from_urls_and_text(imap_server):
    c = login(imap_server, "alice")
    assert "CATENATE" in c.capabilities
    c.create("Drafts2")
    typ, data = c.append("Drafts2", None, None, DRAFT)
    m = re.search(rb"APPENDUID (\d+) (\d+)", data[0])
    assert m is not None
    validity, uid = int(m.group(1)), int(m.group(2))
    base = f"/Drafts2;UIDVALIDITY={validity}/;UID={uid}"
    sep = b"\r\n--q\r\n"
    r = raw(imap_server, "alice")
    r.send(b'f1 APPEND Drafts2 (\\Draft) CATENATE (URL "%s/;section=HEADER" TEXT {%d}\r\n'
           % (base.encode(), len(sep)))
    assert r.line().startswith(b"+ ")
    r.send(sep + b' URL "%s/;section=1.MIME" URL "%s/;SECTION=1" TEXT {9+}\r\n\r\n--q--\r\n)\r\n'
           % (base.encode(), base.encode()))
    done = r.line()
    m2 = re.match(rb"f1 OK \[APPENDUID \d+ (\d+)\]", done)
    assert m2 is not None, done
    # BADURL: no such UID, a wrong UIDVALIDITY, another user's mailbox, another server
    for url in (f"/Drafts2/;UID={uid + 100}", f"/Drafts2;UIDVALIDITY={validity + 1}/;UID={uid}",
                f"/~bob@example.test/INBOX/;UID={uid}", f"imap://alice@example.test{base}"):
        reply = r.cmd(b'f2 APPEND Drafts2 CATENATE (URL "%s")' % url.encode())
        assert reply[-1].startswith(b"f2 NO [BADURL %s]" % url.encode()), reply
    # TOOBIG: more than imap.max_append_size (200,000) octets once put together
    big = b"Subject: big\r\n\r\n" + b"x" * 90_000 + b"\r\n"
    typ, data = c.append("Drafts2", None, None, big)
    big_uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))  # type: ignore[union-attr]
    url = b'URL "/Drafts2/;UID=%d"' % big_uid
    assert r.cmd(b"f3 APPEND Drafts2 CATENATE (%s %s %s)" % (url, url, url))[-1].startswith(b"f3 NO [TOOBIG]")
    r.close()
    c.select("Drafts2")
    typ, got = c.uid("FETCH", m2.group(1).decode(), "(BODY.PEEK[] FLAGS)")
    header = DRAFT[: DRAFT.index(b"\r\n\r\n") + 4]
    assert got[0][1] == header + sep + b"Content-Type: text/plain\r\n\r\n" + b"first part" + b"\r\n--q--\r\n"
    assert b"\\Draft" in got[1]  # FLAGS, after the literal
    typ, data = c.status("Drafts2", "(MESSAGES)")
    assert b"MESSAGES 3" in data[0]  # the draft, the catenated one and the big one: the refused ones stored nothing
    c.logout()
