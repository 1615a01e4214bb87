"""Every STARTTLS listener of ``waypost serve`` shows the certificate of its settings,
and the tests' TLS clients check it: the chain against the test CA (support.tls) and
the name they asked for.  A certificate from another CA, or one for another name, fails
the handshake, so a test that talks TLS to a server with the wrong certificate fails.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess

import pytest
import trustme

from support.server import WaypostInstance
from support.tls import client_context, write_ca_file


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("tls") / "data") as inst:
        inst.start()
        yield inst


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        assert chunk, f"closed by the server after {data!r}"
        data += chunk
    return data


def _smtp_reply(sock: socket.socket) -> bytes:
    while (line := _line(sock))[3:4] == b"-":
        pass
    return line


def _starttls(protocol: str, port: int) -> socket.socket:
    """A plain connection taken to the point where the TLS handshake starts."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if protocol in ("smtp", "submission"):
        assert _smtp_reply(sock).startswith(b"220")
        sock.sendall(b"EHLO client.test\r\n")
        assert _smtp_reply(sock).startswith(b"250")
        sock.sendall(b"STARTTLS\r\n")
        assert _smtp_reply(sock).startswith(b"220")
    elif protocol == "imap":
        assert _line(sock).startswith(b"* OK")
        sock.sendall(b"a1 STARTTLS\r\n")
        assert _line(sock).startswith(b"a1 OK")
    else:
        assert _line(sock).startswith(b"+OK")
        sock.sendall(b"STLS\r\n")
        assert _line(sock).startswith(b"+OK")
    return sock


PROTOCOLS = ["smtp", "submission", "imap", "pop3"]


def _port(server, protocol: str) -> int:
    return int(getattr(server, f"{protocol}_port"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_certificate_is_checked_for_the_name_and_the_address(server, protocol):
    for name in (server.hostname, "127.0.0.1"):
        with _starttls(protocol, _port(server, protocol)) as plain:
            with client_context().wrap_socket(plain, server_hostname=name) as tls:
                names = [v for _k, v in tls.getpeercert()["subjectAltName"]]
                assert server.hostname in names


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_certificate_for_another_name_fails_the_handshake(server, protocol):
    with _starttls(protocol, _port(server, protocol)) as plain:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|doesn't match|not valid for"):
            client_context().wrap_socket(plain, server_hostname="mail.other.test")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_certificate_from_another_ca_fails_the_handshake(server, protocol):
    other = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode("ascii"))
    with _starttls(protocol, _port(server, protocol)) as plain:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer|self.signed"):
            other.wrap_socket(plain, server_hostname=server.hostname)


def test_swaks_checks_the_certificate(server, tmp_path):
    # The swaks test of test_submission.py passes --tls-verify with the test CA; with
    # another CA the same command fails, so that flag does check.
    swaks = shutil.which("swaks")
    assert swaks, "swaks is installed by 'make test' (Debian package swaks)"
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))

    def run(ca_file):
        return subprocess.run(
            [swaks, "--server", f"127.0.0.1:{server.submission_port}", "--tls", "--tls-verify",
             "--tls-ca-path", str(ca_file), "--quit-after", "TLS", "--timeout", "20"],
            capture_output=True, text=True, timeout=60)

    assert run(write_ca_file(tmp_path / "ca.pem")).returncode == 0
    refused = run(other)
    assert refused.returncode != 0 and "certificate verify failed" in refused.stdout + refused.stderr
