"""The submission port (RFC 6409) and AUTH (RFC 4954), with smtplib and Debian's swaks."""

from __future__ import annotations

import base64
import shutil
import smtplib
import ssl
import subprocess

import pytest

from support.server import wait_for
from support.tls import client_context, write_ca_file
from support.transcript import Transcript


def tls() -> ssl.SSLContext:
    """Checks the server's certificate against the test CA, for the address dialled."""
    return client_context()


def sub(server) -> Transcript:
    t = Transcript("127.0.0.1", server.submission_port)
    t.expect(220)
    return t


def test_auth_is_offered_only_after_starttls(server):
    with sub(server) as t:
        r = t.cmd("EHLO c", 250)
        # No mechanism before TLS: no password crosses in clear, and CRAM-MD5, which
        # works only for accounts with a sealed secret, is not offered (smtp.cram_md5).
        assert [line for line in r.lines if line.startswith("AUTH")] == []
        t.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-password").decode(), 538, "5.7.11")
        t.cmd("MAIL FROM:<alice@example.test>", 530, "5.7.0")
        t.starttls()
        r = t.cmd("EHLO c", 250)
        assert [line for line in r.lines if line.startswith("AUTH")] == ["AUTH LOGIN PLAIN"]
        t.cmd("AUTH CRAM-MD5", 504, "5.5.4")


def _cram(t, user, secret):
    import hashlib
    import hmac

    r = t.cmd("AUTH CRAM-MD5", 334)
    challenge = base64.b64decode(r.lines[0])
    t.send(base64.b64encode(f"{user} {hmac.new(secret.encode(), challenge, hashlib.md5).hexdigest()}".encode()).decode())
    return t.reply()


def test_cram_md5_is_offered_only_when_set(instance):
    """A client that sees CRAM-MD5 picks it first (neomutt, libsasl): it is offered on
    the SMTP and submission ports only with smtp.cram_md5, for accounts that keep a
    sealed secret (account passwd --cram-md5)."""
    instance.configure(smtp={"cram_md5": True})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.ok("account", "passwd", "alice@example.test", "--password", "alice-password", "--cram-md5")
    instance.start()
    with sub(instance) as t:
        r = t.cmd("EHLO c", 250)
        assert [line for line in r.lines if line.startswith("AUTH")] == ["AUTH CRAM-MD5"]
        t.starttls()
        r = t.cmd("EHLO c", 250)
        assert [line for line in r.lines if line.startswith("AUTH")] == ["AUTH CRAM-MD5 LOGIN PLAIN"]
        reply = _cram(t, "alice@example.test", "alice-password")
        assert (reply.code, reply.enhanced) == (235, "2.7.0")


def test_auth_plain_and_relay(server):
    with smtplib.SMTP("127.0.0.1", server.submission_port) as c:
        c.starttls(context=tls())
        c.login("alice@example.test", "alice-password")  # smtplib picks PLAIN
        refused = c.sendmail("alice@example.test", ["bob@example.test", "someone@far-away.test"],
                             b"Subject: from alice\r\n\r\nhi\r\n")
        assert refused == {}
    files = wait_for(lambda: server.messages("bob@example.test"))
    raw = files[0].read_bytes()
    assert b" with ESMTPSA " in raw
    assert b"\r\nDate: " in raw and b"\r\nMessage-ID: <" in raw  # added for the submitter (RFC 6409 §8)
    server.expect_log(r"event=auth .*account=alice@example.test")


def test_auth_login_with_login_name_forms(server):
    for login in ("bob@example.test", "bob%example.test", "bob"):
        with smtplib.SMTP("127.0.0.1", server.submission_port) as c:
            c.starttls(context=tls())
            c.ehlo("c")
            c.user, c.password = login, "bob-password"
            code, _ = c.auth("LOGIN", c.auth_login, initial_response_ok=False)
            assert code == 235, login


def test_wrong_password_is_refused_slowly_and_logged(server):
    with sub(server) as t:
        t.cmd("EHLO c", 250)
        t.starttls()
        t.cmd("EHLO c", 250)
        bad = base64.b64encode(b"\0alice@example.test\0wrong").decode()
        t.cmd("AUTH PLAIN " + bad, 535, "5.7.8")
        t.cmd("AUTH PLAIN " + base64.b64encode(b"\0nobody@example.test\0x").decode(), 535, "5.7.8")
        t.cmd("AUTH PLAIN " + bad, 421, "4.7.0")
        assert t.closed()
    assert len(server.expect_log(r"event=auth-failed", count=3)) == 3


def test_malformed_auth(server):
    with sub(server) as t:
        t.cmd("EHLO c", 250)
        t.starttls()
        t.cmd("EHLO c", 250)
        t.cmd("AUTH PLAIN !!notbase64", 501, "5.5.2")
        t.cmd("AUTH PLAIN " + base64.b64encode(b"no-nuls").decode(), 501, "5.5.2")
        t.cmd("AUTH DIGEST-MD5", 504, "5.5.4")
        t.cmd("AUTH LOGIN", 334)
        t.send("*")  # the client cancels (RFC 4954 §4)
        t.expect(501)
        t.cmd("AUTH PLAIN", 334)
        t.send(base64.b64encode(b"\0alice@example.test\0alice-password").decode())
        t.expect(235, "2.7.0")
        t.cmd("AUTH PLAIN", 503, "5.5.1")  # already authenticated


def test_plaintext_auth_when_allowed_by_setting(instance):
    instance.configure(smtp={"auth_requires_tls": False})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.start()
    with smtplib.SMTP("127.0.0.1", instance.submission_port) as c:
        c.login("alice", "alice-password")
        c.sendmail("alice@example.test", ["alice@example.test"], b"Subject: self\r\n\r\nx\r\n")
    wait_for(lambda: instance.messages("alice@example.test"))


def test_untrusted_client_relays_only_after_auth(instance):
    instance.configure(relay={"trusted_networks": []})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.start()
    with smtplib.SMTP("127.0.0.1", instance.smtp_port) as c:
        c.ehlo("c")
        c.mail("alice@example.test")
        assert c.rcpt("someone@far-away.test")[0] == 554
        c.rset()
        c.starttls(context=tls())
        c.login("alice@example.test", "alice-password")
        c.mail("alice@example.test")
        assert c.rcpt("someone@far-away.test")[0] == 250


def test_swaks_submission_with_starttls_and_auth(server, tmp_path):
    swaks = shutil.which("swaks")
    assert swaks, "swaks is installed by 'make test' (Debian package swaks)"
    ca_file = write_ca_file(tmp_path / "ca.pem")
    out = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{server.submission_port}", "--tls", "--tls-verify",
         "--tls-ca-path", str(ca_file), "--auth", "LOGIN",
         "--auth-user", "alice@example.test", "--auth-password", "alice-password",
         "--from", "alice@example.test", "--to", "bob@example.test", "--header", "Subject: via swaks",
         "--body", "sent by swaks", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "<~  235 2.7.0" in out.stdout and "<~  250 2.0.0 OK: queued as" in out.stdout
    files = wait_for(lambda: server.messages("bob@example.test"))
    assert b"Subject: via swaks" in files[0].read_bytes()


def test_swaks_plain_smtp_with_pipelining(server):
    out = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{server.smtp_port}", "--pipeline",
         "--from", "x@outside.example", "--to", "alice@example.test,nobody@example.test",
         "--body", "greetings from swaks", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )
    assert "<** 550 5.1.1" in out.stdout, out.stdout
    assert "250 2.0.0 OK: queued as" in out.stdout, out.stdout
    files = wait_for(lambda: server.messages("alice@example.test"))
    assert b"greetings from swaks" in files[0].read_bytes()


@pytest.mark.parametrize("kind", ["smtp", "submission"])
def test_mail_before_helo_is_refused_on_both_ports(server, kind):
    port = server.smtp_port if kind == "smtp" else server.submission_port
    with Transcript("127.0.0.1", port) as t:
        t.expect(220)
        t.cmd("MAIL FROM:<a@b.example>", 503, "5.5.1")


def test_auth_is_refused_inside_a_mail_transaction(instance):
    # RFC 4954 §4: "The AUTH command is not permitted during a mail transaction."
    instance.configure(relay={"trusted_networks": []}, smtp={"auth_requires_tls": False})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.start()
    with Transcript("127.0.0.1", instance.smtp_port) as t:
        t.expect(220)
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@remote.test>", 250)
        t.cmd("RCPT TO:<v@remote.test>", 554, "5.7.1")
        t.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-password").decode(), 503, "5.5.1")
        t.cmd("RCPT TO:<v@remote.test>", 554, "5.7.1")
