"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524) through the real IMAP listener:
GENURLAUTH, URLFETCH and RESETKEY as RFC 4467 §7 shows them (with our users), each
access identifier, EXPIRE, a tampered or reset URL (NIL), refused URLs (NO [BADURL])
with their log lines, and imaplib driving the commands."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

MULTI = (b"From: joe@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
         b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
         b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nFirst part\r\n"
         b"--b1\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         b"aGVsbG8gd29ybGQ=\r\n"
         b"--b1\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-unprintable\r\n\r\nnothing\r\n"
         b"--b1--\r\n")


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("urlauth") / "data", imap={"plaintext_without_tls": True})
    for who in ("alice", "bob"):
        inst.ok("account", "add", f"{who}@example.test", "--password", f"{who}-password")
    inst.start()
    yield inst
    inst.stop()


def raw(server: WaypostInstance, who: str) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"a0 LOGIN {who}@example.test {who}-password")[-1].startswith(b"a0 OK")
    return r


def append(r: Raw, data: bytes, mailbox: str = "INBOX") -> int:
    r.send(b"ap APPEND %s {%d+}\r\n" % (mailbox.encode(), len(data)) + data + b"\r\n")
    while True:
        line = r.line()
        if line.startswith(b"ap "):
            break
    m = re.search(rb"APPENDUID \d+ (\d+)", line)
    assert m is not None, line
    return int(m.group(1))


def gen(r: Raw, rump: str) -> str:
    out = r.cmd(f'g GENURLAUTH "{rump}" INTERNAL')
    assert out[-1].startswith(b"g OK"), out
    m = re.match(rb'\* GENURLAUTH "([^"]+)"$', out[0])
    assert m is not None, out
    return m.group(1).decode()


def fetch(r: Raw, url: str) -> bytes | None:
    out = r.cmd(f'f URLFETCH "{url}"')
    assert out[-1].startswith(b"f OK"), out
    head = b'* URLFETCH "' + url.encode() + b'" '
    assert out[0].startswith(head), out
    value = out[0][len(head):]
    if value == b"NIL":
        return None
    m = re.match(rb"\{(\d+)\}\r\n", value)
    if m:
        return value[m.end():]
    assert value.startswith(b'"') and value.endswith(b'"')
    return value[1:-1]


def test_capability_lists_urlauth(imap_server):
    r = Raw(imap_server.imap_port)
    caps = r.cmd("c CAPABILITY")[0].split()
    assert b"URLAUTH" in caps and b"URLAUTH=BINARY" in caps
    r.close()


def test_rfc4467_flow_generate_fetch_and_reset(imap_server):
    # RFC 4467 §7 (A001-A003), with alice for joe: a URL authorized for her own use is
    # fetched, then RESETKEY makes every URL of the mailbox worthless.
    r = raw(imap_server, "alice")
    msg = b"From: alice@example.test\r\nSubject: draft\r\n\r\nHello, fred.\r\n"
    uid = append(r, msg, "Drafts")
    url = gen(r, f"imap://alice@example.test/Drafts/;uid={uid};urlauth=user+alice%40example.test")
    assert re.search(r";urlauth=user\+alice%40example\.test:INTERNAL:[0-9a-f]{40}$", url)
    assert fetch(r, url) == msg
    # the same URL authorized again gives the same verifier (one key per mailbox)
    assert gen(r, f"imap://alice@example.test/Drafts/;uid={uid};urlauth=user+alice%40example.test") == url
    # tampering with the rump or the verifier breaks it
    assert fetch(r, url.replace(f";uid={uid}", f";uid={uid + 1}")) is None
    assert fetch(r, url[:-1] + ("0" if url[-1] != "0" else "1")) is None
    assert r.cmd("k RESETKEY Drafts INTERNAL")[-1].startswith(b"k OK")
    assert fetch(r, url) is None
    fresh = gen(r, f"imap://alice@example.test/Drafts/;uid={uid};urlauth=user+alice%40example.test")
    assert fresh != url and fetch(r, fresh) == msg
    assert r.cmd("k RESETKEY")[-1].startswith(b"k OK")  # every mailbox
    assert fetch(r, fresh) is None
    r.close()


def test_access_identifiers(imap_server):
    alice, bob = raw(imap_server, "alice"), raw(imap_server, "bob")
    msg = b"From: alice@example.test\r\nSubject: shared\r\n\r\nFor whoever holds the URL.\r\n"
    uid = append(alice, msg)
    base = f"imap://alice@example.test/INBOX/;uid={uid};urlauth="
    anonymous, authuser = gen(alice, base + "anonymous"), gen(alice, base + "authuser")
    for_bob, for_alice = gen(alice, base + "user+bob"), gen(alice, base + "user+alice")
    submit = gen(alice, base + "submit+alice")
    assert fetch(bob, anonymous) == msg and fetch(bob, authuser) == msg and fetch(bob, for_bob) == msg
    assert fetch(bob, for_alice) is None and fetch(alice, for_bob) is None
    assert fetch(alice, for_alice) == msg
    assert fetch(bob, submit) is None and fetch(alice, submit) is None  # only the submission server
    # the URL's user must still read the message: gone from the mailbox, gone from the URL
    assert alice.cmd("s SELECT INBOX")[-1].startswith(b"s OK")
    alice.cmd(f"u UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
    alice.cmd(f"x UID EXPUNGE {uid}")
    assert fetch(bob, anonymous) is None
    alice.close()
    bob.close()


def test_expire(imap_server):
    r = raw(imap_server, "alice")
    msg = b"Subject: soon gone\r\n\r\nx\r\n"
    uid = append(r, msg)
    past = gen(r, f"imap://alice@example.test/INBOX/;uid={uid};expire=2001-01-01T00:00:00Z;urlauth=authuser")
    future = gen(r, f"imap://alice@example.test/INBOX/;uid={uid};expire=2999-01-01T00:00:00+02:00;urlauth=authuser")
    assert fetch(r, past) is None and fetch(r, future) == msg
    r.close()


def test_sections_partial_and_bare_user(imap_server):
    # the form imaptest sends: a bare user name and the domain as the URL's host
    r = raw(imap_server, "alice")
    uid = append(r, MULTI)
    url = gen(r, f"imap://alice@example.test/INBOX/;uid={uid}/;section=1;urlauth=user+alice@example.test")
    assert fetch(r, url) == b"First part"
    url = gen(r, f"imap://alice@example.test/INBOX/;uid={uid}/;section=2/;partial=4.4;urlauth=authuser")
    assert fetch(r, url) == b"bG8g"  # of the stored base64 text
    r.close()


def test_urlauth_binary_extended_fetch(imap_server):
    r = raw(imap_server, "alice")
    uid = append(r, MULTI)
    b64 = gen(r, f"imap://alice@example.test/INBOX/;uid={uid}/;section=2;urlauth=authuser")
    out = r.cmd(f'f URLFETCH ("{b64}" BINARY BODYPARTSTRUCTURE)')
    assert out[-1].startswith(b"f OK")
    # with BINARY, the size and lines of the decoded part, and for its encoding the
    # domain of the decoded data (RFC 5524 §4's examples; imaptest's newest urlauth-binary)
    assert out[0] == (b'* URLFETCH "' + b64.encode() + b'" (BODYPARTSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" '
                      b'"us-ascii") NIL NIL "7BIT" 11 0 NIL NIL NIL NIL)) (BINARY "hello world")')
    out = r.cmd(f'f URLFETCH ("{b64}" BODYPARTSTRUCTURE BODY)')
    assert out[0].endswith(b'(BODYPARTSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "BASE64" 16 0'
                           b' NIL NIL NIL NIL)) (BODY "aGVsbG8gd29ybGQ=")'), out
    odd = gen(r, f"imap://alice@example.test/INBOX/;uid={uid}/;section=3;urlauth=authuser")
    out = r.cmd(f'f URLFETCH ("{odd}" BINARY)')
    assert out[0] == b'* URLFETCH "' + odd.encode() + b'" (BINARY NIL)'  # an encoding not undone
    out = r.cmd(f'f URLFETCH ("{odd[:-2]}00" BINARY)')
    assert out[0].endswith(b'" NIL')  # not authorized: NIL, as in RFC 4467
    r.close()


FORWARD = (b"From: joe@example.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
           b"--o\r\nContent-Type: message/rfc822\r\n\r\n"
           b'From: sub@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary="i"\r\n\r\n'
           b"--i\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8gd29y\r\nbGQ=\r\n\r\n"
           b"--i\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
           b"--i--\r\n"
           b"--o--\r\n")
FORWARD_INNER = (b'From: sub@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary="i"\r\n\r\n'
                 b"--i\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nhello world\r\n"
                 b"--i\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
                 b"--i--")


def test_binary_of_a_message_part_converts_its_parts(imap_server):
    # imaptest's urlauth-binary: BINARY of a MESSAGE/RFC822 part has each part inside
    # decoded, its Content-Transfer-Encoding saying binary, and BODYPARTSTRUCTURE the
    # decoded sizes and lines; FETCH BINARY[1] and BINARY.SIZE[1] give the same octets
    r = raw(imap_server, "alice")
    uid = append(r, FORWARD)
    url = gen(r, f"imap://alice@example.test/INBOX/;uid={uid}/;section=1;urlauth=authuser")
    out = r.cmd(f'f URLFETCH ("{url}" BINARY BODYPARTSTRUCTURE)')
    assert out[-1].startswith(b"f OK"), out
    head = (b'* URLFETCH "' + url.encode() + b'" (BODYPARTSTRUCTURE ("MESSAGE" "RFC822" NIL NIL NIL "7BIT" %d ('
            % len(FORWARD_INNER))
    assert out[0].startswith(head), out
    assert (b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 11 0 NIL NIL NIL NIL)'
            b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL) "ALTERNATIVE" '
            b'("BOUNDARY" "i") NIL NIL NIL) %d NIL NIL NIL NIL)) (BINARY {%d}\r\n'
            % (FORWARD_INNER.count(b"\n"), len(FORWARD_INNER))) in out[0], out
    assert out[0].endswith(FORWARD_INNER + b")"), out
    r.close()
    with imaplib.IMAP4("127.0.0.1", imap_server.imap_port) as m:
        m.login("alice@example.test", "alice-password")
        m.select("INBOX", readonly=True)
        typ, data = m.uid("FETCH", str(uid), "(BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1.1])")
        assert typ == "OK", data
        assert data[0][1] == FORWARD_INNER, data
        assert data[1] == b' BINARY.SIZE[1] %d BINARY[1.1] "hello world")' % len(FORWARD_INNER), data


@pytest.mark.parametrize("rump, why", [
    ("imap://bob@example.test/INBOX/;uid=1;urlauth=anonymous", "another user"),
    ("imap://alice@example.test/Nowhere/;uid=1;urlauth=anonymous", "no mailbox"),
    ("imap://alice@example.test/INBOX/;uid=1", "no URLAUTH"),
    ("/INBOX/;uid=1;urlauth=anonymous", "not imap://"),
    ("imap://alice@example.test/INBOX/;uid=1;urlauth=user+nobody", "no such user"),
    ("imap://alice@example.test/INBOX/;uid=1;urlauth=anonymous:INTERNAL:" + "0" * 40, "authorized already"),
])
def test_genurlauth_refuses_bad_urls_with_badurl_and_a_log_line(imap_server, rump, why):
    r = raw(imap_server, "alice")
    out = r.cmd(f'g GENURLAUTH "{rump}" INTERNAL')
    assert len(out) == 1 and out[0].startswith(b"g NO [BADURL "), (why, out)
    r.close()
    assert imap_server.expect_log("event=imap-urlauth-badurl")


def test_unknown_mechanism_and_mailbox(imap_server):
    r = raw(imap_server, "alice")
    out = r.cmd('g GENURLAUTH "imap://alice@example.test/INBOX/;uid=1;urlauth=anonymous" XSECRET')
    assert out[-1].startswith(b"g BAD")
    assert r.cmd("k RESETKEY INBOX XSECRET")[-1].startswith(b"k BAD")
    assert r.cmd("k RESETKEY Nowhere")[-1].startswith(b"k NO [NONEXISTENT]")
    assert r.cmd('f URLFETCH "garbage"')[0] == b'* URLFETCH "garbage" NIL'
    assert r.cmd("f URLFETCH (x BOGUS)")[-1].startswith(b"f BAD")
    r.close()
    n = Raw(imap_server.imap_port)  # not logged in
    assert n.cmd('f URLFETCH "x"')[-1].startswith(b"f BAD")
    n.close()


def test_imaplib_drives_genurlauth_and_urlfetch(imap_server):
    for name in ("GENURLAUTH", "URLFETCH", "RESETKEY"):
        imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    c = imaplib.IMAP4("127.0.0.1", imap_server.imap_port, timeout=10)
    c.login("bob@example.test", "bob-password")
    msg = b"From: bob@example.test\r\nSubject: imaplib\r\n\r\nvia imaplib\r\n"
    typ, data = c.append("INBOX", None, None, msg)
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    typ, data = c._simple_command("GENURLAUTH", f'"imap://bob@example.test/INBOX/;uid={uid};urlauth=authuser"',
                                  "INTERNAL")
    assert typ == "OK"
    typ, urls = c._untagged_response(typ, data, "GENURLAUTH")
    url = urls[0].decode().strip('"')
    typ, data = c._simple_command("URLFETCH", f'"{url}"')
    assert typ == "OK"
    typ, got = c._untagged_response(typ, data, "URLFETCH")
    assert got[0][1] == msg
    assert c.xatom("RESETKEY")[0] == "OK"
    c.logout()
