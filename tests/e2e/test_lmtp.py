"""LMTP (RFC 2033) on listen.lmtp: over TCP and over a Unix socket, by transcript,
and with a private Postfix handing mail to Waypost through its ``lmtp:`` transport."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import tempfile
from pathlib import Path

import pytest

from support.postfix import PrivatePostfix
from support.server import free_port, wait_for
from support.transcript import Transcript


class UnixTranscript(Transcript):
    """The transcript helper over a Unix socket."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:  # noqa: D107
        self.host = "localhost"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.log = []


@pytest.fixture
def socket_dir():
    """A directory every local user can reach (Postfix's lmtp client runs as postfix)."""
    d = tempfile.mkdtemp(prefix="waypost-lmtp-")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def lmtp_session(t: Transcript) -> None:
    t.expect(220)
    t.cmd("EHLO mta.example", 500, "5.5.1")  # RFC 2033 §4.1: LHLO only
    r = t.cmd("LHLO mta.example", 250)
    assert "PIPELINING" in r.lines and "CHUNKING" in r.lines and "ENHANCEDSTATUSCODES" in r.lines
    assert not any(line.startswith(("AUTH", "ETRN", "STARTTLS")) for line in r.lines)
    t.cmd("MAIL FROM:<sender@outside.example>", 250, "2.1.0")
    t.cmd("RCPT TO:<alice@example.test>", 250, "2.1.5")
    t.cmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
    t.cmd("RCPT TO:<bob@example.test>", 250, "2.1.5")
    t.cmd("DATA", 354)
    t.send("Subject: over lmtp\r\n\r\nhello\r\n.")
    # RFC 2033 §4.2: one reply per accepted recipient, in order.
    first = t.expect(250, "2.0.0")
    second = t.expect(250, "2.0.0")
    assert "queued as" in first.text and first.text == second.text
    # BDAT too: two recipients, two replies after the LAST chunk.
    t.cmd("MAIL FROM:<sender@outside.example>", 250)
    t.cmd("RCPT TO:<alice@example.test>", 250)
    t.cmd("RCPT TO:<bob@example.test>", 250)
    body = b"Subject: chunked over lmtp\r\n\r\nhi\r\n"
    t.send_raw(b"BDAT %d LAST\r\n" % len(body) + body)
    t.expect(250, "2.0.0")
    t.expect(250, "2.0.0")
    t.cmd("QUIT", 221)


def test_lmtp_over_tcp(instance):
    port = free_port()
    instance.configure(listen={"lmtp": f"127.0.0.1:{port}"})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.ok("account", "add", "bob@example.test", "--no-password")
    instance.start()
    with Transcript("127.0.0.1", port) as t:
        lmtp_session(t)
    for who in ("alice@example.test", "bob@example.test"):
        files = wait_for(lambda: len(instance.messages(who)) == 2 and instance.messages(who), what=who)
        raw = b"".join(f.read_bytes() for f in files)
        assert b"Subject: over lmtp" in raw and b"Subject: chunked over lmtp" in raw
        assert b"with LMTP id" in raw


def test_lmtp_over_a_unix_socket(instance, socket_dir):
    path = str(socket_dir / "lmtp.sock")
    instance.configure(listen={"lmtp": path})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.ok("account", "add", "bob@example.test", "--no-password")
    instance.start()
    assert any(f"listening lmtp {path}" in line for line in instance.output)
    with UnixTranscript(path) as t:
        lmtp_session(t)
    wait_for(lambda: len(instance.messages("alice@example.test")) == 2, what="alice's two messages")
    # A stale socket left by a killed server is replaced at the next start.
    instance.proc.kill()
    instance.proc.wait()
    assert os.path.exists(path)
    instance.start()
    with UnixTranscript(path) as t:
        t.expect(220)
        t.cmd("LHLO again", 250)


def test_lmtp_does_not_relay(instance):
    port = free_port()
    instance.configure(listen={"lmtp": f"127.0.0.1:{port}"}, relay={"trusted_networks": []})
    instance.start()
    with Transcript("127.0.0.1", port) as t:
        t.expect(220)
        t.cmd("LHLO mta", 250)
        t.cmd("MAIL FROM:<a@outside.example>", 250)
        t.cmd("RCPT TO:<victim@elsewhere.example>", 554, "5.7.1")


@pytest.mark.skipif(shutil.which("postfix") is None or os.geteuid() != 0,
                    reason="needs Debian's postfix and root (make test installs it)")
def test_postfix_delivers_to_waypost_over_lmtp(instance, socket_dir, tmp_path):
    path = str(socket_dir / "lmtp.sock")
    instance.configure(listen={"lmtp": path})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.ok("account", "add", "bob@example.test", "--no-password")
    instance.start()
    with PrivatePostfix(socket_dir / "postfix", port=free_port(), domain="example.test",
                        transport=f"lmtp:unix:{path}") as postfix:
        with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as c:
            c.ehlo("client.example")
            # The null sender: the bounce for the unknown recipient goes nowhere.
            refused = c.sendmail("", ["alice@example.test", "nobody@example.test", "bob@example.test"],
                                 b"Subject: via postfix\r\nFrom: someone@outside.example\r\n\r\nrelayed by Postfix\r\n")
            assert refused == {}  # Postfix takes them all; Waypost decides per recipient
        for who in ("alice@example.test", "bob@example.test"):
            files = wait_for(lambda: instance.messages(who), timeout=60, what=f"Postfix's delivery to {who}")
            raw = files[0].read_bytes()
            assert b"relayed by Postfix" in raw and b"with LMTP id" in raw
        log = wait_for(lambda: "nobody@example.test" in postfix.log() and "status=bounced" in postfix.log()
                       and postfix.log(), timeout=60, what="Postfix's log of the refused recipient")
        sent = [line for line in log.splitlines() if "status=sent" in line]
        assert len(sent) == 2 and all("250 2.0.0" in line and "lmtp" in line for line in sent), log
        bounced = [line for line in log.splitlines() if "status=bounced" in line]
        assert len(bounced) == 1 and "nobody@example.test" in bounced[0] and "550 5.1.1" in bounced[0], log
