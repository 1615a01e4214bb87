"""STATUS=SIZE (RFC 8438) and LIST-MYRIGHTS (RFC 8440) through the real listener,
with imaplib: the numbers are checked against what FETCH and MYRIGHTS say."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.server import WaypostInstance, wait_for

ACCOUNTS = ("size", "rights", "owner")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imap-status-list") / "data",
                           imap={"plaintext_without_tls": True})
    for who in ACCOUNTS:
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    inst.start()
    yield inst
    inst.stop()


def client(srv: WaypostInstance, who: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.imap_port)
    c.login(f"{who}@example.test", "pw")
    return c


def status_size(c: imaplib.IMAP4, mailbox: str) -> int:
    typ, data = c.status(mailbox, "(MESSAGES SIZE)")
    assert typ == "OK", data
    m = re.search(rb"SIZE (\d+)", data[0])
    assert m is not None, data
    return int(m.group(1))


def fetched_sizes(c: imaplib.IMAP4, mailbox: str) -> int:
    typ, _ = c.select(mailbox, readonly=True)
    assert typ == "OK"
    typ, data = c.fetch("1:*", "(RFC822.SIZE)")
    c.close()
    if typ != "OK" or data == [None]:
        return 0
    return sum(int(m.group(1)) for d in data if (m := re.search(rb"RFC822\.SIZE (\d+)", d)))


def test_status_size(srv):
    c = client(srv, "size")
    assert "STATUS=SIZE" in c.capabilities
    assert status_size(c, "INBOX") == 0
    for i, body in enumerate((b"short\r\n", b"x" * 5000 + b"\r\n", "Grüße\r\n".encode())):
        msg = b"Subject: size %d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" % i + body
        assert c.append("INBOX", None, None, msg)[0] == "OK"
    total = status_size(c, "INBOX")
    assert total > 5000
    assert total == fetched_sizes(c, "INBOX")
    # A file dropped into the Maildir by another program, with bare LFs: counted as
    # sent (CRLF), before any FETCH measured it.
    dropped = b"Subject: dropped\n\nline one\nline two\n"
    new = srv.mailbox("size@example.test") / "new"
    (new / "1700000000.dropped.host").write_bytes(dropped)
    crlf = len(dropped.replace(b"\n", b"\r\n"))
    assert status_size(c, "INBOX") == total + crlf
    assert fetched_sizes(c, "INBOX") == total + crlf
    # In LIST-STATUS too (RFC 8438 §3), and for an empty mailbox.
    typ, data = c._simple_command("LIST", '""', "%", "RETURN", "(STATUS (SIZE MESSAGES))")  # type: ignore[attr-defined]
    assert typ == "OK"
    statuses = {s.split(b" (")[0].strip(b'"'): s for s in c.response("STATUS")[1]}
    assert statuses[b"INBOX"].endswith(b"(SIZE %d MESSAGES 4)" % (total + crlf))
    assert statuses[b"Drafts"].endswith(b"(SIZE 0 MESSAGES 0)")
    c.logout()


def _myrights(c: imaplib.IMAP4, *args: str) -> tuple[list[bytes], dict[bytes, bytes]]:
    typ, data = c._simple_command("LIST", *args)  # type: ignore[attr-defined]
    assert typ == "OK", data
    listed = [d for d in c.response("LIST")[1] if d is not None]
    rights = {}
    for d in c.response("MYRIGHTS")[1]:
        name, _, value = d.rpartition(b" ")
        rights[name.strip(b'"')] = value
    return listed, rights


def test_list_return_myrights(srv):
    owner = client(srv, "owner")
    assert "LIST-MYRIGHTS" in owner.capabilities
    assert owner.create("Shared")[0] == "OK"
    typ, data = owner._simple_command("SETACL", "Shared", "rights@example.test", "lr")  # type: ignore[attr-defined]
    assert typ == "OK", data
    listed, rights = _myrights(owner, '""', "%", "RETURN", "(MYRIGHTS)")
    names = {re.search(rb'"/" "?([^"]+)"?$', d).group(1) for d in listed}  # type: ignore[union-attr]
    assert set(rights) == names and b"INBOX" in names and b"Shared" in names
    for name in (b"INBOX", b"Shared"):
        typ, data = owner._simple_command("MYRIGHTS", name.decode())  # type: ignore[attr-defined]
        assert typ == "OK"
        assert owner.response("MYRIGHTS")[1][0].endswith(b" " + rights[name])
    owner.logout()

    # Another account sees the shared mailbox with the rights it was given, and its
    # own mailboxes with all rights, in one LIST.
    other = client(srv, "rights")
    listed, rights = _myrights(other, '""', "*", "RETURN", "(MYRIGHTS)")
    shared = [n for n in rights if n.endswith(b"/Shared")]
    assert len(shared) == 1, (listed, rights)
    assert rights[shared[0]] == b"lr"
    assert set(b"lrswipkxtea") <= set(rights[b"INBOX"])
    # Without RETURN (MYRIGHTS), no MYRIGHTS responses.
    typ, _ = other.list('""', "%")
    assert typ == "OK" and other.response("MYRIGHTS")[1] == [None]
    other.logout()
