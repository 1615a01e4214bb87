"""One test certificate authority (trustme) for every Waypost server the tests start.

Each ``WaypostInstance`` gets a certificate from ``CA`` for its host name and its
listening address in place of the self-signed one ``waypost init`` writes, and clients
check it with ``client_context()``: the chain against the test CA and the name they
connected to, as a real client does.  A wrong certificate or name fails the handshake.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import trustme

__all__ = ["CA", "client_context", "install_certificate", "write_ca_file"]

#: The test CA, one for the whole test session.
CA = trustme.CA(organization_name="Waypost tests")


def install_certificate(cert_path: Path, key_path: Path, *names: str) -> None:
    """Write a certificate from ``CA`` for ``names`` (host names or IP addresses), and
    its key readable by the owner only, as ``waypost init`` does."""
    leaf = CA.issue_cert(*names, common_name=names[0])
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    leaf.cert_chain_pems[0].write_to_path(str(cert_path))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(leaf.private_key_pem.bytes())


def client_context() -> ssl.SSLContext:
    """A client context that trusts the test CA only and checks the host name."""
    ctx = ssl.create_default_context(cadata=CA.cert_pem.bytes().decode("ascii"))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    return ctx


def write_ca_file(path: Path) -> Path:
    """The CA certificate as a PEM file, for clients that read one (swaks, fetchmail)."""
    CA.cert_pem.write_to_path(str(path))
    return path
