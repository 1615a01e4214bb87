"""Certificates: a self-signed one for a new data directory (``waypost init``), and the
server's TLS context, whose certificate and key are read again on SIGHUP.

``ServerTLS`` is the one ``ssl.SSLContext`` every listener is given (STARTTLS and the
implicit-TLS listeners of RFC 8314 alike).  Each handshake is moved, in the TLS
server-name callback (which OpenSSL calls for every ClientHello, with or without SNI),
onto the context last loaded from the files: ``reload`` swaps that context, so a
renewed certificate is served to the next connection without a restart, and a failed
reload (a key that does not match, a half-written file) keeps the old one.""" 

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .log import event

__all__ = ["ServerTLS", "certificate_summary", "make_tls_context", "write_self_signed"]

log = logging.getLogger("waypost.tls")


def make_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for the PEM certificate chain and key (no client certificates)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_summary(cert_path: str) -> dict[str, str]:
    """Serial, subject and expiry of the first certificate of a PEM file (for the log)."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as e:
        return {"error": str(e)}
    return {"serial": format(cert.serial_number, "x"), "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat()}


class ServerTLS(ssl.SSLContext):
    """The listeners' context; see the module docstring.  Made by ``ServerTLS.load``."""

    cert_path: str
    key_path: str
    current: ssl.SSLContext

    @classmethod
    def load(cls, cert: str, key: str) -> "ServerTLS":
        current = make_tls_context(cert, key)  # raises on a bad pair, as before
        front = cls(ssl.PROTOCOL_TLS_SERVER)
        front.check_hostname = False
        front.verify_mode = ssl.CERT_NONE
        front.load_cert_chain(cert, key)
        front.cert_path, front.key_path, front.current = cert, key, current
        front.sni_callback = front._choose
        return front

    def _choose(self, sslobj: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.context = self.current
        return None

    def reload(self) -> bool:
        """Read the certificate and key files again; True when the new pair is in use
        (logged either way)."""
        try:
            fresh = make_tls_context(self.cert_path, self.key_path)
        except (ssl.SSLError, OSError, ValueError) as e:
            event(log, "tls-reload-failed", level=logging.ERROR, certificate=self.cert_path, key=self.key_path,
                  error=str(e), hint="the previous certificate stays in use")
            return False
        self.current = fresh
        info = certificate_summary(self.cert_path)
        event(log, "tls-reloaded", level=logging.WARNING, pid=os.getpid(), certificate=self.cert_path,
              serial=info.get("serial", "?"), not_after=info.get("not_after", "?"))
        return True



def write_self_signed(cert_path: Path, key_path: Path, hostname: str, days: int = 3650) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname)]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(hostname)))
    except ValueError:
        pass
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
