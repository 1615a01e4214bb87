"""DKIM signing keys (RFC 6376 §3.6, RFC 8463): making them, their DNS records, and
choosing the one that signs a domain's mail.

Keys live in the database (table ``dkim_keys``) so that every worker and every node of
a cluster signs with the same key; the private half is sealed with the data directory's
key (``waypost.secrets``) like every other secret.  A domain may have several keys
(selectors) at once, so that a new key can be published in DNS before it signs:
``activated`` orders them, and the active key activated last signs.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass

import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..db import Database, DKIMKeyRecord

__all__ = ["ALGORITHMS", "RSA_BITS", "KeyMaterial", "generate_key", "dns_record", "dns_name", "signing_key",
           "check_selector", "new_selector"]

#: ``--algorithm`` values and the ``a=`` tag each signs with.
ALGORITHMS = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
#: RSA modulus length: RFC 8301 §3.2 asks for at least 1024, 2048 is today's norm and
#: still fits one DNS TXT record (RFC 6376 §3.3.3).
RSA_BITS = 2048

# RFC 6376 §3.1: selector = sub-domain *( "." sub-domain )
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A fresh key: ``private`` in the form dkimpy signs with (PKCS#1 PEM for RSA, the
    base64 seed for Ed25519), ``public`` the base64 value of the record's ``p=`` tag."""

    algorithm: str
    private: str
    public: str


def check_selector(selector: str) -> str:
    s = selector.strip().lower()
    if not _SELECTOR.match(s) or len(s) > 253:
        raise ValueError(f"{selector!r}: not a valid DKIM selector (RFC 6376 §3.1: DNS labels, letters, digits, '-')")
    return s


def new_selector(algorithm: str, now: float | None = None) -> str:
    """A selector that names its month and algorithm (``wp202612r``), the usual scheme
    for keys that are rotated now and then."""
    stamp = time.strftime("%Y%m%d", time.gmtime(now if now is not None else time.time()))
    return f"wp{stamp}{'e' if algorithm == 'ed25519' else 'r'}"


def generate_key(algorithm: str) -> KeyMaterial:
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode("ascii")
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        return KeyMaterial(algorithm, private, base64.b64encode(public).decode("ascii"))
    if algorithm == "ed25519":
        # RFC 8463 §4: p= is the base64 of the 32-octet public key, not a SPKI structure.
        signing = nacl.signing.SigningKey.generate()
        return KeyMaterial(algorithm, base64.b64encode(bytes(signing)).decode("ascii"),
                           base64.b64encode(bytes(signing.verify_key)).decode("ascii"))
    raise ValueError(f"unknown algorithm {algorithm!r} (choose {' or '.join(ALGORITHMS)})")


def dns_name(domain: str, selector: str) -> str:
    """RFC 6376 §3.6.2.1: the record lives at ``selector._domainkey.domain``."""
    return f"{selector}._domainkey.{domain}"


def dns_record(algorithm: str, public: str) -> str:
    """The TXT record's value (RFC 6376 §3.6.1; ``k=ed25519`` from RFC 8463 §4)."""
    return f"v=DKIM1; k={algorithm}; p={public}"


def signing_key(db: Database, domain: str) -> DKIMKeyRecord | None:
    """The key that signs ``domain``'s mail now: the active one activated last."""
    active = [k for k in db.dkim_keys(domain) if k.activated > 0]
    return max(active, key=lambda k: (k.activated, k.created)) if active else None
