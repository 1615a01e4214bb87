"""ManageSieve (RFC 5804) on a real listener: literal transcripts of the RFC's
commands over a socket (STARTTLS, AUTHENTICATE PLAIN, PUTSCRIPT ... RENAMESCRIPT), and
Debian's sieve-connect uploading and activating a script that then files mail."""

from __future__ import annotations

import base64
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess

import pytest

from support import tls
from support.server import WaypostInstance, free_port, maildir_messages, wait_for


class Raw:
    """A ManageSieve transcript: send exact bytes, read exact lines."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        m = re.search(rb"\{(\d+)\}$", line)
        if m:  # a literal: its octets and the line end after them
            n = int(m.group(1))
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            rest = self.line()
            line += rest
        return line

    def upto_status(self) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            out.append(line)
            if re.match(rb"(OK|NO|BYE)\b", line):
                return out

    def cmd(self, data: bytes) -> list[bytes]:
        self.sock.sendall(data + b"\r\n")
        return self.upto_status()

    def starttls(self, hostname: str) -> list[bytes]:
        assert self.cmd(b"STARTTLS")[-1].startswith(b"OK")
        self.sock = tls.client_context().wrap_socket(self.sock, server_hostname=hostname)
        return self.upto_status()


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    port = free_port()
    inst = WaypostInstance(tmp_path_factory.mktemp("managesieve") / "data", listen={"managesieve": f"127.0.0.1:{port}"},
                           managesieve={"max_scripts": 3, "max_script_size": 2000})
    inst.sieve_port = port
    for who in ("alice", "bob", "carol"):
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    inst.start()
    inst.expect_log(r"listening managesieve")
    yield inst
    inst.stop()


def test_rfc5804_transcript(srv):
    c = Raw(srv.sieve_port)
    greeting = c.upto_status()
    assert greeting[0] == b'"IMPLEMENTATION" "Waypost"'
    assert b'"STARTTLS"' in greeting and b'"SASL" ""' in greeting  # no password before TLS
    assert re.match(rb'"SIEVE" ".*\bfileinto\b.*\bvacation\b', next(x for x in greeting if x.startswith(b'"SIEVE"')))
    assert greeting[-1].startswith(b"OK") and b'"UNAUTHENTICATE"' in greeting
    assert c.cmd(b'AUTHENTICATE "PLAIN" "' + plain("alice@example.test", "pw") + b'"') == \
        [b'NO (ENCRYPT-NEEDED) "Use STARTTLS before sending a password"']
    assert c.cmd(b"LISTSCRIPTS") == [b'NO "Authenticate first"']
    after = c.starttls(srv.hostname)
    assert b'"SASL" "PLAIN"' in after and b'"STARTTLS"' not in after and after[-1].startswith(b"OK")
    assert c.cmd(b'AUTHENTICATE "PLAIN" "' + plain("alice@example.test", "wrong") + b'"')[-1].startswith(b"NO")
    # RFC 5804 §2.1: without an initial response, an empty challenge, then the response.
    c.sock.sendall(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""'
    c.sock.sendall(b'{%d+}\r\n' % len(plain("alice@example.test", "pw")) + plain("alice@example.test", "pw") + b"\r\n")
    assert c.upto_status() == [b'OK "Authenticated"']
    # §2.5 HAVESPACE; §2.6 PUTSCRIPT with a literal; a script with an error: NO with its line.
    assert c.cmd(b'HAVESPACE "myscript" 999') == [b'OK "Putscript would succeed"']
    assert c.cmd(b'HAVESPACE "myscript" 99999')[0].startswith(b"NO (QUOTA/MAXSIZE)")
    script = b'require "fileinto";\r\nif envelope :contains "to" "lists" { fileinto "Lists"; }\r\n'
    out = c.cmd(b'PUTSCRIPT "myscript" {%d+}\r\n' % len(script) + script)
    assert out[0].startswith(b'NO "line 2, column 4: envelope needs require'), out
    script = b'require ["fileinto", "envelope"];\r\nif envelope :contains "to" "lists" { fileinto "Lists"; }\r\n'
    assert c.cmd(b'PUTSCRIPT "myscript" {%d+}\r\n' % len(script) + script) == [b'OK "PUTSCRIPT completed"']
    assert c.cmd(b'PUTSCRIPT "other" "keep;"') == [b'OK "PUTSCRIPT completed"']
    # §2.7 LISTSCRIPTS, §2.8 SETACTIVE, §2.9 GETSCRIPT
    assert c.cmd(b"LISTSCRIPTS") == [b'"myscript"', b'"other"', b'OK "LISTSCRIPTS completed"']
    assert c.cmd(b'SETACTIVE "nosuch"')[0].startswith(b"NO (NONEXISTENT)")
    assert c.cmd(b'SETACTIVE "myscript"') == [b'OK "SETACTIVE completed"']
    assert c.cmd(b"LISTSCRIPTS")[:2] == [b'"myscript" ACTIVE', b'"other"']
    got = c.cmd(b'GETSCRIPT "myscript"')
    assert got[0] == b"{%d}\r\n" % len(script) + script and got[-1] == b'OK "GETSCRIPT completed"', got
    # §2.10 DELETESCRIPT: not the active one; §2.11 RENAMESCRIPT
    assert c.cmd(b'DELETESCRIPT "myscript"')[0].startswith(b"NO (ACTIVE)")
    assert c.cmd(b'RENAMESCRIPT "other" "myscript"')[0].startswith(b"NO (ALREADYEXISTS)")
    assert c.cmd(b'RENAMESCRIPT "other" "third"') == [b'OK "RENAMESCRIPT completed"']
    assert c.cmd(b'DELETESCRIPT "third"') == [b'OK "DELETESCRIPT completed"']
    assert c.cmd(b'DELETESCRIPT "third"')[0].startswith(b"NO (NONEXISTENT)")
    # §2.12 CHECKSCRIPT, §2.13 NOOP with a tag
    assert c.cmd(b'CHECKSCRIPT "keep;"') == [b'OK "Script is valid"']
    assert c.cmd(b'CHECKSCRIPT "keep"')[0].startswith(b'NO "line 1, column 5')
    assert c.cmd(b'NOOP "STARTTLS-SYNC-42"') == [b'OK (TAG "STARTTLS-SYNC-42") "Done"']
    # MAXSCRIPTS (3 here), bad names, bad input: NO, the session goes on.
    for n in (b"s2", b"s3"):
        assert c.cmd(b'PUTSCRIPT "' + n + b'" "keep;"')[0].startswith(b"OK")
    assert c.cmd(b'PUTSCRIPT "s4" "keep;"')[0].startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert c.cmd(b'PUTSCRIPT "bad\x01name" "keep;"')[0].startswith(b"NO")
    assert c.cmd(b"FROBNICATE")[0].startswith(b"NO")
    assert c.cmd(b'PUTSCRIPT "x" {5+}\r\nab\xffcd')[0].startswith(b"NO")
    assert c.cmd(b"NOOP") == [b'OK "Done"']
    # §2.14 UNAUTHENTICATE: back to the start, TLS kept.
    assert c.cmd(b"UNAUTHENTICATE") == [b'OK "Unauthenticated"']
    assert c.cmd(b"LISTSCRIPTS") == [b'NO "Authenticate first"']
    assert c.cmd(b'AUTHENTICATE "PLAIN" "' + plain("alice@example.test", "pw") + b'"') == [b'OK "Authenticated"']
    assert c.cmd(b"LOGOUT") == [b'OK "Logout completed"']
    srv.expect_log(r"event=auth-failed .*managesieve")


def test_sieve_connect_uploads_a_script_that_files_mail(srv, tmp_path):
    exe = shutil.which("sieve-connect")
    assert exe, "sieve-connect is installed by 'make test' (Debian package sieve-connect)"
    script = tmp_path / "main.sieve"
    script.write_text('require ["fileinto", "reject", "vacation"];\n'
                      'if exists "List-Id" { fileinto "Lists"; stop; }\n'
                      'if address :is "from" "carol@example.test" { reject "Not from you."; stop; }\n'
                      'vacation :days 3 :subject "Away" "I am away.";\n')
    ca = tls.write_ca_file(tmp_path / "ca.pem")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r, w = os.pipe()
        os.write(w, b"pw\n")
        os.close(w)
        try:
            return subprocess.run([exe, "--server", "127.0.0.1", "--port", str(srv.sieve_port),
                                   "--user", "bob@example.test", "--passwordfd", str(r), "--authmech", "PLAIN",
                                   "--tlscafile", str(ca), *args],
                                  capture_output=True, text=True, timeout=60, pass_fds=(r,),
                                  env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        finally:
            os.close(r)

    up = run("--upload", "--localsieve", str(script), "--remotesieve", "main")
    assert up.returncode == 0, up.stdout + up.stderr
    act = run("--activate", "--remotesieve", "main")
    assert act.returncode == 0, act.stdout + act.stderr
    listed = run("--list")
    assert listed.returncode == 0 and listed.stdout.strip() == "\"main\" ACTIVE", listed.stdout + listed.stderr
    bad = tmp_path / "bad.sieve"
    bad.write_text('fileinto "x";\n')
    refused = run("--upload", "--localsieve", str(bad), "--remotesieve", "bad")
    assert refused.returncode != 0 and "line 1" in (refused.stdout + refused.stderr)
    def send(sender: str, subject: str, extra: str = "") -> None:
        with smtplib.SMTP("127.0.0.1", srv.smtp_port) as s:
            s.sendmail(sender, ["bob@example.test"],
                       f"From: {sender}\r\nTo: bob@example.test\r\n{extra}Subject: {subject}\r\n\r\nx\r\n".encode())

    send("news@lists.example", "issue 1", "List-Id: <n.lists.example>\r\n")
    send("carol@example.test", "hello")
    send("alice@example.test", "one")
    send("alice@example.test", "two")
    wait_for(lambda: maildir_messages(srv.mailbox("bob@example.test") / ".Lists"), what="filed into Lists")
    wait_for(lambda: len(srv.messages("bob@example.test")) == 2, what="alice's two in INBOX")
    # carol's message refused: the DSN; alice: one vacation reply for two messages.
    dsn = wait_for(lambda: srv.messages("carol@example.test"), what="the rejection")
    assert b"Not from you." in dsn[0].read_bytes()
    replies = wait_for(lambda: srv.messages("alice@example.test"), what="the vacation reply")
    srv.expect_log(r'event=vacation-skipped .*sender=<alice@example.test> reason="replied within the period"')
    assert len(srv.messages("alice@example.test")) == 1 and b"Subject: Away" in replies[0].read_bytes()


def test_a_session_ends_when_its_account_is_removed_and_made_again(srv, tmp_path):
    """The old owner's session, still open across ``account remove`` and ``account add``
    of its name, must not put scripts on the new owner's account (a redirect of its mail):
    its next command ends it (issue 13: one customer must never act as another)."""
    srv.ok("account", "add", "dora@example.test", "--password", "old-pw")
    c = Raw(srv.sieve_port)
    c.upto_status()
    c.starttls(srv.hostname)
    assert c.cmd(b'AUTHENTICATE "PLAIN" "' + plain("dora@example.test", "old-pw") + b'"') == [b'OK "Authenticated"']
    assert c.cmd(b"LISTSCRIPTS")[-1].startswith(b"OK")
    srv.ok("account", "remove", "dora@example.test")
    srv.ok("account", "add", "dora@example.test", "--password", "new-pw")
    script = b'redirect "thief@example.net";'
    reply = c.cmd(b'PUTSCRIPT "steal" {%d+}\r\n' % len(script) + script)
    assert reply[-1].startswith(b"BYE"), reply
    with pytest.raises((EOFError, ConnectionError)):
        c.line()
    srv.expect_log(r"event=managesieve-account-gone .*account=dora@example.test")
    assert "steal" not in srv.ok("sieve", "list", "dora@example.test")
