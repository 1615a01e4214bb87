"""PREVIEW (RFC 8970) through the real listener with two workers and imaplib: the text of
delivered and appended messages, UTF-8 as a literal, LAZY, and no \\Seen set."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from support.server import WaypostInstance, wait_for

USER = "pv@example.test"
PASSWORD = "preview-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imappv") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def test_preview_of_messages(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail("x@outside.test", [USER], b"From: x@outside.test\r\nSubject: hello\r\n\r\n"
                   b"Hi there,\r\n\r\nthe   meeting moved to 3pm.\r\n> old quote\r\n-- \r\nX\r\n")
    wait_for(lambda: server.messages(USER), what="delivery")
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    assert "PREVIEW" in c.capabilities
    utf8 = ("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nSubject: u\r\n\r\n"
            "Grüße aus Köln\r\n").encode()
    assert c.append("INBOX", None, None, utf8)[0] == "OK"
    html = (b'Content-Type: text/html\r\nSubject: h\r\n\r\n<html><body><p>Big <i>sale</i> &amp; more</p>'
            b"</body></html>\r\n")
    assert c.append("INBOX", None, None, html)[0] == "OK"
    c.select("INBOX")
    typ, data = c.uid("FETCH", "1:*", "(PREVIEW)")
    assert typ == "OK"
    assert data[0] == b'1 (UID 1 PREVIEW "Hi there, the meeting moved to 3pm.")'
    text = "Grüße aus Köln".encode()
    assert data[1][0].endswith(b"PREVIEW {%d}" % len(text)) and data[1][1] == text
    assert data[3] == b'3 (UID 3 PREVIEW "Big sale & more")'
    typ, lazy = c.fetch("1", "(PREVIEW (LAZY) FLAGS)")
    assert lazy[0].startswith(b'1 (PREVIEW "Hi there') and b"\\Seen" not in lazy[0]
    typ, flags = c.fetch("1:*", "(FLAGS)")
    assert not any(b"\\Seen" in f for f in flags)  # PREVIEW sets no \Seen
    with pytest.raises(imaplib.IMAP4.error):
        c.fetch("1", "(PREVIEW (BOGUS))")
    # Made once: the previews are kept in the index with the message structure, and
    # later FETCHes (with ENVELOPE too) answer the same.
    db = server.db()
    try:
        box = db.mailbox_get("example.test", "pv", "INBOX")
        kept = db.message_cache_get(box.id, [1, 2, 3])
    finally:
        db.close()
    assert kept[1]["preview"] == "Hi there, the meeting moved to 3pm." and kept[3]["preview"] == "Big sale & more"
    assert "envelope" in kept[1]
    typ, again = c.uid("FETCH", "3", "(ENVELOPE PREVIEW)")
    assert again[0].endswith(b'PREVIEW "Big sale & more")') and b"ENVELOPE (" in again[0]
    c.logout()
