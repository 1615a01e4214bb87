"""Signing outgoing mail with the From domain's DKIM key (RFC 6376 §5, RFC 8463).

What "outgoing mail of the domain" is, precisely (``should_sign``): a message is signed
when, at ``QueueManager.submit`` (after the rules, before the queue),

1. at least one of its recipients leaves for a remote target (not ``local``, not a
   refusal or a discard): mail that only stays here is not signed;
2. it is ours to vouch for: it came from an authenticated session (``params["auth"]``:
   submission, or AUTH on the relay port; a copy made from such a message for a
   forwarder, a group or a rule keeps that parameter), or Waypost made it itself
   (``params["client"] == "local"``: DSNs).  Mail relayed from outside — including an
   inbound message that a local forwarder or group sends on — is never signed, whatever
   its From says: signing it would vouch for a sender nobody checked;
3. its header has exactly one From field with one address, and that address's domain
   (or a parent of it up to the organisational domain, which still aligns under relaxed
   DMARC alignment, RFC 7489 §3.1.1) has an active key.

dkimpy canonicalizes, selects and hashes; for RSA the one private-key operation is
done by ``cryptography`` (OpenSSL) instead of dkimpy's pure-Python ``pow``, which cost
several milliseconds of CPU per message (tests/unit/mailauth/test_dkim.py checks the
result with dkimpy's own verifier, run as a separate program).

The signature covers the RFC 6376 §5.4.1 recommended fields that the message has, plus
From once more (over-signing: no second From can be added without breaking it), with
relaxed/relaxed canonicalization.  A key that cannot be used (damaged, sealed with
another data directory's key) is logged and the message queued unsigned: a signature is
never worth a lost message.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from email.utils import getaddresses
from functools import lru_cache
from typing import Any, Iterable

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

from ..db import Database, DKIMKeyRecord
from ..log import event
from .keys import ALGORITHMS
from .psl import organizational_domain

__all__ = ["Signer", "SIGNED_FIELDS", "field_values", "from_domain", "header_fields", "should_sign"]

log = logging.getLogger("waypost.mailauth")

#: RFC 6376 §5.4.1: the fields a signature SHOULD cover when present.
SIGNED_FIELDS = (
    "from", "reply-to", "subject", "date", "to", "cc", "resent-date", "resent-from", "resent-to", "resent-cc",
    "in-reply-to", "references", "list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post",
    "list-owner", "list-archive", "message-id", "sender", "mime-version", "content-type",
    "content-transfer-encoding",
)
#: Targets that do not leave this server.
LOCAL_TARGETS = frozenset({"local", "refuse", "bounce", "discard"})
#: Unsealed private keys kept in memory, keyed by their sealed text (random, never reused).
KEY_CACHE = 256


def header_fields(data: bytes) -> list[tuple[str, str]]:
    """The header fields of a message as (lower-case name, unfolded value)."""
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[: end + 2]
    fields: list[tuple[str, str]] = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if fields:
                last_name, last_value = fields[-1]
                fields[-1] = (last_name, last_value + " " + line.strip().decode("utf-8", "replace"))
            continue
        raw_name, sep, raw_value = line.partition(b":")
        if sep:
            fields.append((raw_name.strip().lower().decode("ascii", "replace"),
                           raw_value.strip().decode("utf-8", "replace")))
    return fields


def field_values(data: bytes, name: str) -> list[tuple[str, str]]:
    """``header_fields(data)`` with only the fields called ``name`` (lower case): the
    others are not decoded."""
    end = data.find(b"\r\n\r\n")
    block = data if end < 0 else data[: end + 2]
    wanted_name = name.encode("ascii")
    if block.lower().find(wanted_name) < 0:
        return []
    fields: list[tuple[str, str]] = []
    wanted = False  # the last field seen is one of ours (its continuation lines are)
    for line in block.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t"):
            if wanted:
                last_name, last_value = fields[-1]
                fields[-1] = (last_name, last_value + " " + line.strip().decode("utf-8", "replace"))
            continue
        raw_name, sep, raw_value = line.partition(b":")
        if sep:
            # (Compared as bytes: a name with a non-ASCII octet, decoded with
            # "replace", never equals an ASCII name either.)
            wanted = raw_name.strip().lower() == wanted_name
            if wanted:
                fields.append((name, raw_value.strip().decode("utf-8", "replace")))
    return fields


#: From values whose address list is kept (``getaddresses`` is a pure function of the
#: text; a sender's From is the same text in each of its messages).
ADDRESS_CACHE = 1024


@lru_cache(maxsize=ADDRESS_CACHE)
def _addresses(value: str) -> tuple[str, ...]:
    return tuple(a for _n, a in getaddresses([value]) if a)


def from_domain(fields: Iterable[tuple[str, str]]) -> tuple[str | None, str]:
    """The RFC 5322.From domain (lower case), or None and why (RFC 7489 §6.6.1: one
    From field with one address, else no DMARC evaluation and no signature)."""
    values = [v for n, v in fields if n == "from"]
    if not values:
        return None, "no From field"
    if len(values) > 1:
        return None, "several From fields"
    addresses = _addresses(values[0])
    if len(addresses) != 1:
        return None, f"From has {len(addresses)} addresses"
    _local, at, domain = addresses[0].rpartition("@")
    if not at or not domain:
        return None, f"From address {addresses[0]!r} has no domain"
    return domain.strip().rstrip(".").lower(), ""


def should_sign(params: dict[str, Any], targets: Iterable[str]) -> str | None:
    """None when the message is outgoing mail of ours (points 1 and 2 above), else why not."""
    if all(t in LOCAL_TARGETS for t in targets):
        return "no remote recipient"
    if params.get("auth") or params.get("client") == "local":
        return None
    return "not authenticated or locally generated"


class Signer:
    """Signs outgoing messages; one per worker.  ``secrets`` unseals the keys."""

    __slots__ = ("db", "secrets", "_keys")

    def __init__(self, db: Database, secrets: Any) -> None:
        self.db = db
        self.secrets = secrets
        self._keys: dict[str, Any] = {}

    def key_for(self, domain: str) -> DKIMKeyRecord | None:
        """The key that signs for ``domain``: its own, or that of the nearest parent up
        to the organisational domain."""
        from .keys import signing_key

        org = organizational_domain(domain)
        name = domain
        while True:
            key = signing_key(self.db, name)
            if key is not None:
                return key
            if name == org or "." not in name:
                return None
            name = name.split(".", 1)[1]

    def _private(self, key: DKIMKeyRecord) -> Any:
        """An RSA key object, or the Ed25519 seed as dkimpy takes it."""
        private = self._keys.get(key.private_key)
        if private is None:
            text = self.secrets.open(key.private_key).encode("ascii")
            if key.algorithm == "rsa":
                private = serialization.load_pem_private_key(text, password=None)
                if not isinstance(private, rsa.RSAPrivateKey):
                    raise ValueError("not an RSA private key")
            else:
                private = text
            if len(self._keys) >= KEY_CACHE:
                self._keys.clear()
            self._keys[key.private_key] = private
        return private

    def sign(self, data: bytes, msg_id: str = "") -> bytes:
        """``data`` with a DKIM-Signature field in front, or unchanged when its From
        domain has no key or the key cannot be used (logged)."""
        fields = header_fields(data)
        domain, why = from_domain(fields)
        if domain is None:
            event(log, "dkim-unsigned", level=logging.DEBUG, id=msg_id, reason=why)
            return data
        key = self.key_for(domain)
        if key is None:
            event(log, "dkim-unsigned", level=logging.DEBUG, id=msg_id, reason=f"no active key for {domain}")
            return data
        present = {n for n, _v in fields}
        signed = [f for f in SIGNED_FIELDS if f in present] + ["from"]
        try:
            private = self._private(key)
            if key.algorithm == "rsa":
                signature = _sign_rsa(data, key, private, signed)
            else:
                signature = dkim.DKIM(data, signature_algorithm=ALGORITHMS[key.algorithm].encode()).sign(
                    key.selector.encode("ascii"), key.domain.encode("ascii"), private,
                    canonicalize=(b"relaxed", b"relaxed"), include_headers=[f.encode() for f in signed])
        except Exception as e:  # a damaged key, a key of another data directory, a message dkimpy rejects
            event(log, "dkim-sign-failed", level=logging.ERROR, id=msg_id, domain=key.domain, selector=key.selector,
                  error=str(e) or type(e).__name__)
            return data
        event(log, "dkim-signed", id=msg_id, d=key.domain, s=key.selector, a=ALGORITHMS[key.algorithm])
        return bytes(signature) + data


def _sign_rsa(data: bytes, key: DKIMKeyRecord, private: rsa.RSAPrivateKey, signed: list[str]) -> bytes:
    """An rsa-sha256 relaxed/relaxed DKIM-Signature field (RFC 6376 §3.7, §5), as
    dkimpy's ``DKIM.sign`` builds it, with the RSA operation done by OpenSSL."""
    message = dkim.DKIM(data)
    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    include = [f.encode("ascii") for f in signed]
    body_hash = base64.b64encode(hashlib.sha256(policy.canonicalize_body(message.body)).digest())
    fields = [
        (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"), (b"d", key.domain.encode("ascii")),
        (b"i", b"@" + key.domain.encode("ascii")), (b"q", b"dns/txt"), (b"s", key.selector.encode("ascii")),
        (b"t", str(int(time.time())).encode("ascii")), (b"h", b" : ".join(include)), (b"bh", body_hash),
        # As dkimpy does: a placeholder long enough to put b= on a line of its own, so
        # that the folding of the other tags is the same once the real value is in.
        (b"b", b"0" * 60),
    ]
    name = b"DKIM-Signature"
    value = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(name), linesep=b"\r\n")
    hasher = hashlib.sha256()
    dkim.hash_headers(hasher, policy, policy.canonicalize_headers(message.headers), include, (name, b" " + value),
                      dict(fields))
    signature = private.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    fields[-1] = (b"b", base64.b64encode(signature))
    value = dkim.fold(b"; ".join(b"=".join(f) for f in fields) + b"\r\n", namelen=len(name), linesep=b"\r\n")
    return name + b": " + value
