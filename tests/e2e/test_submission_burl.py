"""BURL (RFC 4468) on the submission listener: a message, or a part of it, taken from
our own store through a URLAUTH URL (RFC 4467) made over IMAP, with smtplib and raw
transcripts: the EHLO keyword, BURL alone and mixed with BDAT, and each refusal with its
reply code and log line."""

from __future__ import annotations

import base64
import re
import smtplib

import pytest

from support.imap import Raw
from support.server import WaypostInstance, wait_for
from support.tls import client_context
from support.transcript import Transcript

DRAFT = (b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: sent by URL\r\n"
         b"Message-ID: <burl-1@example.test>\r\n\r\nThis text never crossed the submission port.\r\n")


@pytest.fixture(scope="module")
def burl_server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("burl") / "data", imap={"plaintext_without_tls": True})
    for who in ("alice", "bob"):
        inst.ok("account", "add", f"{who}@example.test", "--password", f"{who}-password")
    inst.start()
    yield inst
    inst.stop()


def imap(server: WaypostInstance, who: str) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"a0 LOGIN {who}@example.test {who}-password")[-1].startswith(b"a0 OK")
    return r


def draft_url(server: WaypostInstance, access: str, section: str = "", data: bytes = DRAFT) -> str:
    """Alice stores ``data`` in Drafts and authorizes a URL to it (or its section)."""
    r = imap(server, "alice")
    r.send(b"ap APPEND Drafts {%d+}\r\n" % len(data) + data + b"\r\n")
    line = r.line()
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", line).group(1))
    rump = f"imap://alice@example.test/Drafts/;uid={uid}{section};urlauth={access}"
    out = r.cmd(f'g GENURLAUTH "{rump}" INTERNAL')
    assert out[-1].startswith(b"g OK"), out
    r.close()
    return re.match(rb'\* GENURLAUTH "([^"]+)"', out[0]).group(1).decode()


def submission(server: WaypostInstance, who: str | None) -> Transcript:
    t = Transcript("127.0.0.1", server.submission_port)
    t.expect(220)
    t.cmd("EHLO c", 250)
    t.starttls()
    t.cmd("EHLO c", 250)
    if who is not None:
        t.cmd("AUTH PLAIN " + base64.b64encode(f"\0{who}@example.test\0{who}-password".encode()).decode(), 235)
    return t


def test_ehlo_offers_burl_imap_after_auth_only_on_submission(burl_server):
    t = submission(burl_server, None)
    assert [line for line in t.cmd("EHLO c", 250).lines if line.startswith("BURL")] == ["BURL"]
    t.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-password").decode(), 235)
    assert [line for line in t.cmd("EHLO c", 250).lines if line.startswith("BURL")] == ["BURL imap"]
    t.close()
    s = Transcript("127.0.0.1", burl_server.smtp_port)
    s.expect(220)
    assert not [line for line in s.cmd("EHLO c", 250).lines if line.startswith("BURL")]
    s.cmd("BURL imap://alice@example.test/INBOX/;uid=1;urlauth=anonymous LAST", 502, "5.5.1")
    s.close()


def test_smtplib_sends_a_draft_by_url(burl_server):
    url = draft_url(burl_server, "submit+alice@example.test")
    with smtplib.SMTP("127.0.0.1", burl_server.submission_port, timeout=10) as c:
        c.starttls(context=client_context())
        c.login("alice@example.test", "alice-password")
        c.ehlo()
        assert c.has_extn("burl") and c.esmtp_features["burl"] == "imap"
        c.mail("alice@example.test")
        c.rcpt("bob@example.test")
        code, text = c.docmd("BURL", url + " LAST")
        assert code == 250 and b"queued as" in text, (code, text)
    files = wait_for(lambda: burl_server.messages("bob@example.test"))
    got = files[0].read_bytes()
    assert got.endswith(DRAFT) and b"(Waypost) with ESMTPSA id" in got


def test_bdat_and_burl_mix_in_one_message(burl_server):
    body = (b"From: alice@example.test\r\nSubject: the draft's text\r\n\r\nQuoted from the draft:\r\n"
            b"the body part.\r\n")
    text_url = draft_url(burl_server, "submit+alice", "/;section=TEXT", body)
    head = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: mixed\r\n\r\n"
    t = submission(burl_server, "alice")
    t.cmd("MAIL FROM:<alice@example.test>", 250)
    t.cmd("RCPT TO:<bob@example.test>", 250)
    t.send_raw(b"BDAT %d\r\n" % len(head) + head)
    t.expect(250, "2.0.0")
    t.cmd(f"BURL {text_url}", 250, "2.5.0")  # not LAST: more may follow
    t.send_raw(b"BDAT 0 LAST\r\n")
    assert "queued as" in t.expect(250, "2.0.0").text
    t.close()
    msgs = wait_for(lambda: [f for f in burl_server.messages("bob@example.test")
                             if b"Subject: mixed" in f.read_bytes()])
    assert msgs[0].read_bytes().endswith(head + b"Quoted from the draft:\r\nthe body part.\r\n")


def test_refusals(burl_server):
    for_alice = draft_url(burl_server, "submit+alice")
    only_user = draft_url(burl_server, "user+alice")
    alices = draft_url(burl_server, "authuser")
    anyone = draft_url(burl_server, "authuser", data=DRAFT.replace(b"From: alice@", b"From: bob@"))
    t = submission(burl_server, "bob")
    t.cmd(f"BURL {anyone} LAST", 503)  # no transaction yet
    t.cmd("MAIL FROM:<bob@example.test>", 250)
    t.cmd(f"BURL {anyone} LAST", 503)  # no recipient yet
    t.cmd("RCPT TO:<alice@example.test>", 250)
    t.cmd("BURL", 501, "5.5.4")
    t.cmd("BURL not a url", 501, "5.5.4")
    # alice's submit+alice URL is not bob's to send: the transaction fails
    t.cmd(f"BURL {for_alice} LAST", 554, "5.6.6")
    t.cmd(f"BURL {anyone} LAST", 503)  # the transaction is over
    for url in (only_user, "https://example.test/x", for_alice[:-1] + ("0" if for_alice[-1] != "0" else "1")):
        t.cmd("MAIL FROM:<bob@example.test>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd(f"BURL {url} LAST", 554, "5.6.6")
    # "authuser": the submission server acts for an authenticated user; the message is
    # checked as any other: bob may not send alice's From
    t.cmd("MAIL FROM:<bob@example.test>", 250)
    t.cmd("RCPT TO:<alice@example.test>", 250)
    t.cmd(f"BURL {alices} LAST", 550, "5.7.1")
    t.cmd("MAIL FROM:<bob@example.test>", 250)
    t.cmd("RCPT TO:<alice@example.test>", 250)
    t.cmd(f"BURL {anyone} LAST", 250, "2.0.0")
    t.close()
    assert burl_server.expect_log("event=burl-failed", count=4)
    n = submission(burl_server, None)  # not logged in
    n.cmd(f"BURL {anyone} LAST", 530)
    n.close()
