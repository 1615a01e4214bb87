"""Implicit TLS (RFC 8314): ``listen.submissions``, ``listen.imaps`` and ``listen.pop3s``
speak TLS from the first octet with the certificate of the STARTTLS listeners, checked
by the clients against the test CA; SIGHUP makes every worker read the certificate and
key again, and the next handshake shows the new certificate without a restart."""

from __future__ import annotations

import imaplib
import poplib
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess

import pytest
import trustme

from support.server import WaypostInstance, free_port, wait_for
from support.tls import client_context, install_certificate, write_ca_file

MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: over 465\r\n\r\nHello.\r\n"


def _instance(base, workers: int = 1) -> WaypostInstance:
    ports = {name: free_port() for name in ("submissions", "imaps", "pop3s")}
    inst = WaypostInstance(base, listen={name: f"127.0.0.1:{port}" for name, port in ports.items()},
                           server={"workers": workers})
    inst.submissions_port, inst.imaps_port, inst.pop3s_port = ports["submissions"], ports["imaps"], ports["pop3s"]
    inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
    inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
    return inst


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with _instance(tmp_path_factory.mktemp("implicit") / "data") as inst:
        inst.start()
        yield inst


def test_submissions_takes_mail_after_auth_over_tls(server):
    seen = set(server.messages("bob@example.test"))
    with smtplib.SMTP_SSL("127.0.0.1", server.submissions_port, context=client_context(), timeout=20) as c:
        code, caps = c.ehlo("client.test")
        assert code == 250 and b"STARTTLS" not in caps and b"AUTH" in caps
        # AUTH before MAIL, as on listen.submission.
        with pytest.raises(smtplib.SMTPSenderRefused):
            c.sendmail("alice@example.test", ["bob@example.test"], MESSAGE)
        c.rset()
        c.login("alice@example.test", "alice-password")
        assert c.sendmail("alice@example.test", ["bob@example.test"], MESSAGE) == {}
    [path] = wait_for(lambda: [p for p in server.messages("bob@example.test") if p not in seen],
                      what="the message for bob")
    received = path.read_bytes().split(b"\r\n\r\n")[0]
    assert b"with ESMTPSA" in received and b"using TLS" in received


def test_swaks_tlsc_checks_the_certificate(server, tmp_path):
    swaks = shutil.which("swaks")
    assert swaks, "swaks is installed by 'make test' (Debian package swaks)"
    out = subprocess.run(
        [swaks, "--server", f"127.0.0.1:{server.submissions_port}", "--tlsc", "--tls-verify",
         "--tls-ca-path", str(write_ca_file(tmp_path / "ca.pem")), "--auth", "PLAIN",
         "--auth-user", "alice@example.test", "--auth-password", "alice-password",
         "--from", "alice@example.test", "--to", "bob@example.test", "--timeout", "20"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "250 2.0.0" in out.stdout


def test_imaps_login_and_select(server):
    with imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=client_context(), timeout=20) as c:
        assert "STARTTLS" not in c.capabilities and "LOGINDISABLED" not in c.capabilities
        c.login("bob@example.test", "bob-password")
        status, _ = c.select("INBOX")
        assert status == "OK"
        c.logout()


def test_pop3s_login_and_stat(server):
    c = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=client_context(), timeout=20)
    try:
        assert "STLS" not in c.capa()
        c.user("bob@example.test")
        c.pass_("bob-password")
        count, _size = c.stat()
        assert count >= 0
    finally:
        c.quit()


@pytest.mark.parametrize("listener", ["submissions", "imaps", "pop3s"])
def test_a_client_speaking_plain_text_gets_no_greeting(server, listener):
    port = getattr(server, f"{listener}_port")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"EHLO plain.test\r\n")
        sock.settimeout(10)
        try:
            data = sock.recv(100)
        except ConnectionResetError:
            data = b""
        # No greeting in clear text: whatever comes back is a TLS alert or nothing.
        assert not data.startswith((b"220", b"* OK", b"+OK"))
    # The server goes on serving TLS clients on that listener.
    test = {"submissions": test_submissions_takes_mail_after_auth_over_tls, "imaps": test_imaps_login_and_select,
            "pop3s": test_pop3s_login_and_stat}[listener]
    test(server)


def _peer_certificate(port: int, hostname: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context().wrap_socket(raw, server_hostname=hostname) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der


def test_sighup_reloads_the_certificate_in_every_worker(tmp_path):
    inst = _instance(tmp_path / "data", workers=2)
    settings = inst.settings
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    with inst:
        inst.start()
        before = _peer_certificate(inst.imaps_port, inst.hostname)
        install_certificate(cert, key, inst.hostname, "127.0.0.1")
        new = ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert new != before
        assert inst.proc is not None
        inst.proc.send_signal(signal.SIGHUP)
        inst.expect_log(r"event=tls-reloaded", count=2)
        # Both workers, every listener (STARTTLS ones too): the new certificate.
        for _ in range(6):
            for port in (inst.imaps_port, inst.pop3s_port, inst.submissions_port):
                assert _peer_certificate(port, inst.hostname) == new
        with imaplib.IMAP4("127.0.0.1", inst.imap_port, timeout=20) as c:
            c.starttls(ssl_context=client_context())
            assert c.sock.getpeercert(binary_form=True) == new

        # A key that does not belong to the certificate: logged, the working pair stays.
        other = trustme.CA().issue_cert(inst.hostname)
        other.private_key_pem.write_to_path(str(key))
        inst.proc.send_signal(signal.SIGHUP)
        inst.expect_log(r"event=tls-reload-failed", count=2)
        assert _peer_certificate(inst.pop3s_port, inst.hostname) == new
        assert inst.proc.poll() is None


def test_a_worker_forked_after_sighup_serves_the_new_certificate(tmp_path):
    """The workers are forked with the supervisor's TLS context; one forked after a
    SIGHUP (a replacement for one that died) read the old certificate again until the
    next SIGHUP.  It now reads the files at its start."""
    import os

    inst = _instance(tmp_path / "data", workers=2)
    settings = inst.settings
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    with inst:
        inst.start()
        ready = inst.expect_log(r"event=worker-ready", count=2, timeout=30)
        install_certificate(cert, key, inst.hostname, "127.0.0.1")
        new = ssl.PEM_cert_to_DER_cert(cert.read_text())
        assert inst.proc is not None
        inst.proc.send_signal(signal.SIGHUP)
        inst.expect_log(r"event=tls-reloaded", count=2)
        victim = int(ready[0].split("pid=")[1].split()[0])
        os.kill(victim, signal.SIGKILL)
        inst.expect_log(r"event=worker-died", count=1, timeout=30)
        inst.expect_log(r"event=worker-ready", count=3, timeout=30)
        for _ in range(8):  # connections land on either worker
            assert _peer_certificate(inst.imaps_port, inst.hostname) == new
