"""DKIM and ARC verification with dkimpy's parsing and rules, OpenSSL's public-key
operations and one canonicalization per message.

dkimpy (``dkim.DKIM``, ``dkim.ARC``) stays the reference for everything but two costs it
pays on every signature: RSA verification in pure Python (``pow`` on Python integers
and its byte conversions) and canonicalizing the header and the body again for each
signature (the DKIM signature, the ARC-Message-Signature and the ARC-Seal of a signed and
sealed message: three times).  ``Canon`` holds one message, normalised to CRLF and split
once, and remembers each canonicalized header list (per header algorithm) and each body
hash (per hash, body algorithm and ``l=``); ``FastDKIM`` and ``FastARC`` are dkimpy's
classes with ``verify_sig_process`` replaced by the same steps (RFC 6376 §6.1.3: body
hash, then the header hash with the signature field's ``b=`` emptied, via dkimpy's own
``hash_headers``) on those cached parts, the signature checked by ``cryptography``:

- RSA: RSASSA-PKCS1-v1_5 with the DigestInfo of the hash (SHA-256, or SHA-1 for
  rsa-sha1 — refused later, RFC 8301) over the prehashed header hash.  dkimpy computes
  ``s^e mod n`` for any length of ``s``; the signature is reduced mod n and written at
  the modulus' length first, so the verdict is the same for every input.
- Ed25519 (RFC 8463): the signature over the SHA-256 header hash.

The message is split (``parse_message``) and canonicalized "relaxed"
(``relaxed_headers``, ``relaxed_body``) by functions that give dkimpy's output octet
for octet (``dkim.rfc822_parse``, ``Relaxed``) with fewer passes: dkimpy's whitespace
rules replace every single space by itself (one regex match per word of the body) and
split the whole body into lines to join them again, which cost more than the three
RSA verifications together.  tests/unit/mailauth/test_fastverify.py compares them
with dkimpy's on generated text.

Whatever is unusual — a key under ``minkey``, one ``cryptography`` will not build, an
Ed25519 signature not 64 octets long — goes to dkimpy's own ``verify_sig_process``,
so its verdict (or exception) stays what it was.  tests/unit/mailauth/test_fastverify.py
compares the verdicts of both on good, tampered, ``l=``, simple/relaxed and RFC 8463
messages.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.util import InvalidTagValueList, parse_tag_value
from dkim.canonicalization import (CanonicalizationPolicy, InvalidCanonicalizationPolicyError, Relaxed,
                                   correct_empty_body, strip_trailing_lines)

__all__ = ["Canon", "FastARC", "FastDKIM", "parse_message", "relaxed_body", "relaxed_headers"]

#: Public keys built by ``cryptography``, keyed by their own content (a key is never
#: reused with another meaning, so nothing here can be stale).
KEY_CACHE = 256
_rsa_keys: dict[tuple[int, int], rsa.RSAPublicKey | None] = {}
_ed_keys: dict[bytes, ed25519.Ed25519PublicKey | None] = {}

#: dkimpy's ``RE_BTAG`` (the b= tag whose value is emptied for the header hash, RFC 6376
#: §3.7) matches the same spans: its FWS before each base64 character is ``\s*`` as a
#: language, so "base64 and white space, ending in base64" is the same value, matched
#: without a regex group per character (10x less CPU; compared on 300,000 random strings
#: when this was written, and by tests/unit/mailauth/test_fastverify.py).
RE_BTAG = re.compile(rb"([;\s]b" + dkim.FWS + rb"=)(?:[\sa-zA-Z0-9+/=]*[a-zA-Z0-9+/=])?(?:\r?\n\Z)?")

# dkimpy's split of h= (verify_headerprep).
_H_SPLIT = re.compile(rb"\s*:\s*")

_parsed_keys: dict[bytes, tuple[Any, Any, Any, Any]] = {}

_PREHASHED: dict[str, Any] = {"sha256": hashes.SHA256(), "sha1": hashes.SHA1()}


# dkimpy's compress_whitespace is ``re.sub(b"[\t ]+", b" ", s)``: a run of one space is
# replaced by itself, so only the runs with a tab or of two or more need a match.
_WSP_RUN = re.compile(rb"[\t ]{2,}|\t")
# dkimpy's strip_trailing_whitespace.
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
# dkimpy's rfc822_parse: a field name, then the colon.
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")


def _compress(content: bytes) -> bytes:
    """``dkim.canonicalization.compress_whitespace``."""
    if b"\t" in content or b"  " in content:
        return _WSP_RUN.sub(b" ", content)
    return content


def _unfold(content: bytes) -> bytes:
    """``dkim.canonicalization.unfold_header_value`` (``re.sub(b"\r?\n", b"", s)``): every
    LF goes, with the one CR before it."""
    if b"\n" in content:
        return content.replace(b"\r\n", b"").replace(b"\n", b"")
    return content


def relaxed_headers(headers: list[Any]) -> list[tuple[bytes, bytes]]:
    """``Relaxed.canonicalize_headers`` (RFC 6376 §3.4.2)."""
    return [(x[0].lower().rstrip(), _compress(_unfold(x[1])).strip() + b"\r\n") for x in headers]


def relaxed_body(body: bytes) -> bytes:
    """``Relaxed.canonicalize_body`` (RFC 6376 §3.4.4)."""
    if b" \r\n" in body or b"\t\r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    return correct_empty_body(strip_trailing_lines(_compress(body)))


def canonicalize_headers(algorithm: Any, headers: list[Any]) -> list[tuple[bytes, bytes]]:
    return relaxed_headers(headers) if algorithm is Relaxed else algorithm.canonicalize_headers(headers)


def canonicalize_body(algorithm: Any, body: bytes) -> bytes:
    return relaxed_body(body) if algorithm is Relaxed else algorithm.canonicalize_body(body)


def parse_message(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """``dkim.rfc822_parse`` of a message whose every LF has a CR before it (``Canon``
    makes it so): (header fields as [name, value with CRLF], body).  The header
    section is cut into lines, the body is a slice: dkimpy splits the body into lines
    and joins them again with the same CRLF."""
    end = message.find(b"\r\n\r\n")
    if message.startswith(b"\r\n"):
        return [], message[2:]
    if end < 0:
        lines = message.split(b"\r\n")
        body = b""
    else:
        lines = message[:end].split(b"\r\n")
        body = message[end + 4:]
    headers: list[list[bytes]] = []
    for line in lines:
        if not line:  # the message ended in CRLF and has no body: dkimpy's last, empty line
            break
        if line[0] in (0x09, 0x20):
            headers[-1][1] += line + b"\r\n"  # (an IndexError before any field, as in dkimpy)
            continue
        m = _FIELD_NAME.match(line)
        if m is not None:
            headers.append([m.group(1), line[m.end(0):] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise dkim.MessageFormatError("Unexpected characters in RFC822 header: %s" % line)  # type: ignore[str-bytes-safe]
    return headers, body


class Canon:
    """One message, split into dkimpy's (headers, body) once, with the canonicalized
    forms every signature of it needs computed once."""

    __slots__ = ("message", "headers", "body", "_headers", "_names", "_bodies", "_hashes", "_tags")

    def __init__(self, message: bytes) -> None:
        self.message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.headers, self.body = parse_message(self.message)
        self._headers: dict[Any, list[tuple[bytes, bytes]]] = {}
        self._bodies: dict[Any, bytes] = {}
        self._hashes: dict[tuple[Any, Any, bytes | None], bytes] = {}
        self._tags: dict[bytes, dict[bytes, bytes]] = {}
        self._names: dict[Any, list[bytes]] = {}

    def tags(self, value: bytes) -> dict[bytes, bytes]:
        """``parse_tag_value(value)`` (a new dict each time: dkimpy adds to it), parsed
        once per message; what it refuses raises as it does, each time."""
        got = self._tags.get(value)
        if got is None:
            got = self._tags[value] = parse_tag_value(value)
        return dict(got)

    def canonical_headers(self, algorithm: Any) -> list[tuple[bytes, bytes]]:
        got = self._headers.get(algorithm)
        if got is None:
            got = self._headers[algorithm] = canonicalize_headers(algorithm, self.headers)
        return got

    def header_names(self, algorithm: Any) -> list[bytes]:
        """The lower-case names of ``canonical_headers(algorithm)``."""
        got = self._names.get(algorithm)
        if got is None:
            got = self._names[algorithm] = [x[0].lower() for x in self.canonical_headers(algorithm)]
        return got

    def body_hash(self, hasher: Callable[..., Any], algorithm: Any, length: bytes | None) -> bytes:
        """The digest of the body under ``algorithm``, cut to ``l=`` when given."""
        key = (hasher, algorithm, length)
        digest = self._hashes.get(key)
        if digest is None:
            body = self._bodies.get(algorithm)
            if body is None:
                body = self._bodies[algorithm] = canonicalize_body(algorithm, self.body)
            if length is not None:
                body = body[: int(length)]  # as dkimpy: a bad l= raises the same ValueError
            digest = self._hashes[key] = hasher(body).digest()
        return digest


def _rsa_key(pk: dict[str, int]) -> rsa.RSAPublicKey | None:
    key = (pk["modulus"], pk["publicExponent"])
    if key not in _rsa_keys:
        if len(_rsa_keys) >= KEY_CACHE:
            _rsa_keys.clear()
        try:
            _rsa_keys[key] = rsa.RSAPublicNumbers(key[1], key[0]).public_key()
        except Exception:  # OpenSSL refuses it (even modulus, exponent 1...): dkimpy decides
            _rsa_keys[key] = None
    return _rsa_keys[key]


def _ed_key(pk: Any) -> ed25519.Ed25519PublicKey | None:
    raw = bytes(pk)
    if raw not in _ed_keys:
        if len(_ed_keys) >= KEY_CACHE:
            _ed_keys.clear()
        try:
            _ed_keys[raw] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except Exception:
            _ed_keys[raw] = None
    return _ed_keys[raw]


def select_headers(headers: list[tuple[bytes, bytes]], names: list[bytes],
                   include_headers: list[bytes]) -> list[tuple[bytes, bytes]]:
    """``dkim.select_headers`` (RFC 6376 §5.4.2: each name in ``h=`` takes the lowest
    field of that name not taken yet) with the fields' lower-case ``names`` given."""
    sign_headers = []
    lastindex: dict[bytes, int] = {}
    for h in include_headers:
        assert h == h.lower()  # as dkimpy
        i = lastindex.get(h, len(headers))
        while i > 0:
            i -= 1
            if h == names[i]:
                sign_headers.append(headers[i])
                break
        lastindex[h] = i
    return sign_headers


def hash_headers(hasher: Any, canonicalize_headers_policy: Any, headers: list[tuple[bytes, bytes]],
                 include_headers: list[bytes], sigheader: tuple[bytes, bytes],
                 names: list[bytes] | None = None) -> list[tuple[bytes, bytes]]:
    """``dkim.hash_headers`` with ``RE_BTAG`` above; ``names``: the lower-case names of
    ``headers`` when known (``Canon.header_names``)."""
    if names is None:
        names = [x[0].lower() for x in headers]
    sign_headers = select_headers(headers, names, include_headers)
    cheaders = canonicalize_headers(canonicalize_headers_policy.header_algorithm,
                                    [(sigheader[0], RE_BTAG.sub(b"\\1", sigheader[1]))])
    for x, y in sign_headers + [(x, y.rstrip()) for x, y in cheaders]:
        hasher.update(x)
        hasher.update(b":")
        hasher.update(y)
    return sign_headers


def evaluate_pk(name: bytes, record: bytes | str | None) -> tuple[Any, Any, Any, Any]:
    """``dkim.evaluate_pk`` (pk, bits, k=, s=tlsrpt) of a key record, parsed once per
    record (its ASN.1 parser is pure Python); what it refuses raises as it does, each time."""
    key = record.encode("ascii") if isinstance(record, str) else record
    if not key:
        return dkim.evaluate_pk(name, record)  # raises KeyFormatError ("missing public key")
    got = _parsed_keys.get(key)
    if got is None:
        got = dkim.evaluate_pk(name, key)
        if len(_parsed_keys) >= KEY_CACHE:
            _parsed_keys.clear()
        _parsed_keys[key] = got
    return got


class _Fast:
    """The replacement of ``DomainSigner.verify_sig_process`` (dkimpy 1.1.8), same
    order of checks, same exceptions."""

    _canon: Canon
    # dkimpy's attributes (set by DomainSigner.__init__ and verify_sig)
    tlsrpt: Any
    seqtlsrpt: Any
    pk: Any
    ktag: Any
    keysize: Any
    minkey: int
    timeout: Any
    headers: Any
    body: Any
    signed_headers: Any

    def _bind(self, canon: Canon) -> None:
        self._canon = canon
        self.headers, self.body = canon.headers, canon.body

    def verify_sig(self, sig: dict[bytes, bytes], include_headers: list[bytes],
                   sig_header: tuple[bytes, bytes], dnsfunc: Any) -> bool:
        """dkimpy's ``verify_sig`` with the key record parsed once (``evaluate_pk``)."""
        name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
        try:
            self.pk, self.keysize, self.ktag, self.seqtlsrpt = evaluate_pk(name, dnsfunc(name, timeout=self.timeout))
        except (dkim.KeyFormatError, binascii.Error, dkim.DnsTimeoutError):
            return False  # as dkimpy (which logs it; our callers trace the key's problems)
        return self.verify_sig_process(sig, include_headers, sig_header, dnsfunc)

    def verify_sig_process(self, sig: dict[bytes, bytes], include_headers: list[bytes],
                           sig_header: tuple[bytes, bytes], dnsfunc: Any) -> bool:
        slow = super().verify_sig_process  # type: ignore[misc]
        if self.tlsrpt or self.seqtlsrpt or (self.ktag == b"rsa" and self.keysize < self.minkey):
            return bool(slow(sig, include_headers, sig_header, dnsfunc))
        try:
            canon_policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        except InvalidCanonicalizationPolicyError as e:
            raise dkim.MessageFormatError("invalid c= value: %s" % e.args[0])
        hasher = dkim.HASH_ALGORITHMS[sig[b"a"]]
        if b"bh" in sig:
            bodyhash = self._canon.body_hash(hasher, canon_policy.body_algorithm, sig.get(b"l"))
            try:
                bh = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]))
            except TypeError as e:
                raise dkim.MessageFormatError(str(e))
            if bodyhash != bh:
                raise dkim.ValidationError(
                    "body hash mismatch (got %r, expected %r)" % (base64.b64encode(bodyhash), sig[b"bh"]))
        if b"from" in include_headers:
            include_headers.append(b"from")  # dkimpy's bug#644046: a second From breaks the signature
        h = hasher()
        headers = self._canon.canonical_headers(canon_policy.header_algorithm)
        self.signed_headers = hash_headers(h, canon_policy, headers, include_headers, sig_header,
                                           self._canon.header_names(canon_policy.header_algorithm))
        signature = base64.b64decode(re.sub(rb"\s+", b"", sig[b"b"]))
        if self.ktag == b"rsa":
            public = _rsa_key(self.pk)
            prehashed = _PREHASHED.get(h.name.lower())
            if public is None or prehashed is None:
                return bool(slow(sig, include_headers[:-1] if b"from" in include_headers else include_headers,
                                 sig_header, dnsfunc))
            n = self.pk["modulus"]
            value = int.from_bytes(signature, "big") % n
            try:
                public.verify(value.to_bytes((n.bit_length() + 7) // 8, "big"), h.digest(),
                              padding.PKCS1v15(), utils.Prehashed(prehashed))
            except InvalidSignature:
                return False
            return True
        if self.ktag == b"ed25519":
            public_ed = _ed_key(self.pk)
            if public_ed is None or len(signature) != 64:
                return bool(slow(sig, include_headers[:-1] if b"from" in include_headers else include_headers,
                                 sig_header, dnsfunc))
            try:
                public_ed.verify(signature, h.digest())
            except InvalidSignature:
                return False
            return True
        raise dkim.UnknownKeyTypeError(self.ktag)


class FastDKIM(_Fast, dkim.DKIM):
    """``dkim.DKIM`` on a ``Canon``, for verification."""

    def __init__(self, canon: Canon, minkey: int) -> None:
        dkim.DKIM.__init__(self, None, minkey=minkey)
        self._bind(canon)

    def verify_headerprep(self, idx: int = 0) -> Any:
        """dkimpy's, with the signature's tags from ``Canon.tags`` (``verify.py`` parsed
        them already) and its debug line formatted only when it is logged."""
        sigheaders = [(x, y) for x, y in self.headers if x.lower() == b"dkim-signature"]
        if len(sigheaders) <= idx:
            return False
        try:
            sig = self._canon.tags(sigheaders[idx][1])
            self.signature_fields = sig
        except InvalidTagValueList as e:
            raise dkim.MessageFormatError(e)
        self.logger.debug("sig: %r", sig)
        dkim.validate_signature_fields(sig)
        self.domain = sig[b"d"]
        self.selector = sig[b"s"]
        include_headers = [x.lower() for x in _H_SPLIT.split(sig[b"h"])]
        self.include_headers = tuple(include_headers)
        return sig, include_headers, sigheaders


class FastARC(_Fast, dkim.ARC):
    """``dkim.ARC`` on a ``Canon``, for verification."""

    def __init__(self, canon: Canon, minkey: int) -> None:
        dkim.ARC.__init__(self, None, minkey=minkey)
        self._bind(canon)

    def sorted_arc_headers(self) -> tuple[int, list[Any]]:
        """dkimpy's, on the message's relaxed header list computed once."""
        headers = []
        for x, y in self._canon.canonical_headers(Relaxed):
            if x.lower() in dkim.ARC.ARC_HEADERS:
                m = dkim.ARC.INSTANCE_RE.search(y)
                if m is not None:
                    try:
                        headers.append((int(m.group(1)), (x, y)))
                    except ValueError:
                        pass
        if not headers:
            return 0, []
        headers = sorted(headers, key=lambda a: [a[0], a[1][0].lower(), a[1][1].lower()])
        headers.reverse()
        return headers[0][0], headers
