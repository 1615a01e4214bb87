"""ARC (RFC 8617): validating the chain of a message we receive, and sealing a message
from outside that we send on to another server.

Theory of operation.  An ARC set is three fields with the same instance ``i=``:
ARC-Authentication-Results (what that hop concluded), ARC-Message-Signature (a DKIM-like
signature of the message as that hop sent it) and ARC-Seal (a signature over every ARC
field up to and including its own set).  The chain *passes* (RFC 8617 §5.2) when the
newest Message-Signature verifies and every Seal verifies with ``cv=none`` at ``i=1``
and ``cv=pass`` above; it *fails* otherwise; a message without ARC fields is ``none``.
``dkimverify.verify_chain`` checks the signatures (our code, dkimpy's verdicts: the
tests compare them); the public keys are fetched first through ``Lookup``
(asynchronous, ``dns.nameservers``), so the check never does I/O, as in ``verify.py``,
and the message is canonicalized once for the DKIM and ARC signatures together.

What a pass is worth: nothing by itself (anyone can seal).  A receiver trusts the
verdicts of the sealers it knows (``mailauth.arc_trusted_sealers``): when DMARC fails
and the chain passes and a set sealed by a trusted domain recorded ``dmarc=pass`` for the
same From domain, the DMARC disposition becomes ``none`` (RFC 7489 §6.7 local policy;
RFC 8617 §7.2) — a mailing list or forwarder that broke the author's signature does
not get its mail refused.

Sealing (``Sealer``): a message from outside (checked by ``mailauth.inbound``, which
left our Authentication-Results field in it) that leaves for another server gets a new
set at ``QueueManager.submit``, after the rules changed it (gateway rewrites,
forwarders, groups, lists): the receiver can then see what we saw before we changed it.
dkimpy builds the set from our Authentication-Results field (its ``arc=`` result gives
the new Seal's ``cv=``); the two RSA private-key operations (the Message-Signature and
the Seal) are OpenSSL's (``cryptography``, as ``sign.py`` does for DKIM) instead of
dkimpy's pure-Python ``pow``, about 13 ms of CPU per set (``arc_sign``: the same octets
as dkimpy's, RSASSA-PKCS1-v1_5 being deterministic; tests/unit/mailauth/test_arc.py
compares them and has dkimpy and Perl's Mail::DKIM verify our seals).  The private key
is loaded once per worker (``cryptography`` checks an RSA key when loading it: ~35 ms).
ARC signs with rsa-sha256 only (RFC 8617 §4.1.3), so the sealing domain needs an active
RSA key (``waypost dkim generate``).
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import authres
import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from ..db import Database, DKIMKeyRecord
from ..log import event
from .canon import Canon
from .dkimverify import CV_NONE, CV_PASS, TagListError, parse_tags, verify_chain
from .lookup import DNSTempError, Lookup
from .psl import organizational_domain
from .verify import MIN_RSA_BITS

__all__ = ["ARCResult", "Sealer", "arc_sign", "should_seal", "verify_arc", "trusted_override", "MAX_SETS"]

log = logging.getLogger("waypost.mailauth")

#: ARC sets checked on one message.  RFC 8617 §4.2.1 allows 50; each costs two DNS
#: look-ups and two public-key operations, so a chain longer than this fails unchecked
#: (real chains have one to three sets: one per list or forwarder on the way).
MAX_SETS = 10
#: The instance of an ARC-Authentication-Results value (RFC 8617 §4.1.1: ``i=N;`` first).
_AAR_INSTANCE = re.compile(rb"\s*i\s*=\s*(\d+)\s*;")



@dataclass(slots=True)
class ARCResult:
    """``result``: none, pass or fail (RFC 8617 §4.4); ``sets``: the instances found;
    ``sealers``: the Seal domain of each set, newest first; ``aar``: the
    ARC-Authentication-Results value of each set, newest first."""

    result: str
    reason: str = ""
    sets: int = 0
    sealers: list[str] = field(default_factory=list)
    aar: list[str] = field(default_factory=list)
    oldest_pass: int = 0


_ARC_NAMES = {b"arc-seal": "arc-seal", b"arc-message-signature": "arc-message-signature",
              b"arc-authentication-results": "arc-authentication-results"}


def _arc_fields(canon: Canon) -> list[tuple[str, int]]:
    """The ARC fields of the header, (lower-case name, index in ``Canon.headers``), in
    order: the fields dkimpy's verifier sees."""
    out: list[tuple[str, int]] = []
    for index, name in enumerate(canon.header_names()):
        known = _ARC_NAMES.get(name)
        if known is not None:
            out.append((known, index))
    return out


def _prepass_tags(canon: Canon, index: int) -> dict[bytes, bytes]:
    """The i=, d= and s= of the Seal or Message-Signature ``canon.headers[index]`` as its
    own value gives them (``Canon.tags``; ``TagListError`` when that does not parse),
    read from its relaxed value's tags, which ``verify_chain`` reads too: one parse of
    each field for both, where the two agree.

    Why they agree: the relaxed value is ``strip(compress(unfold(value)))`` (RFC 6376
    §3.4.2); unfolding and compressing change only runs of white space, never a ";" or
    "=", nor the first or last character of a stripped tag or value.  So the relaxed
    parse's tags are the raw parse's with each white-space run inside them made one
    space: a raw value that does not parse gives a relaxed one that does not either; an
    i= reads as the same integer or fails in both (``int`` refuses inner white space,
    and a run stays a run); a d= or s= without a space in the relaxed tags had no white
    space to change.  In every other case (a relaxed value that does not parse, a d= or
    s= with inner white space) the raw value is parsed, as before."""
    try:
        tags = canon.relaxed_tags(index)
    except TagListError:
        return canon.tags(index)
    if b" " in tags.get(b"d", b"") or b" " in tags.get(b"s", b""):
        return canon.tags(index)
    return tags


async def verify_arc(lookup: Lookup, message: bytes, trace: list[str], canon: Canon | None = None) -> ARCResult:
    """The chain validation status of ``message`` (RFC 8617 §5.2); ``canon``: the
    message already split (``check_message`` shares one with ``verify_all``)."""
    if canon is None:
        canon = Canon(message)
    fields = _arc_fields(canon)
    if not fields:
        trace.append("arc: no ARC fields: none")
        return ARCResult("none")
    keys: dict[str, bytes | None] = {}
    instances: set[int] = set()
    for name, index in fields:
        if name == "arc-authentication-results":
            m = _AAR_INSTANCE.match(canon.headers[index][1])
            if m:
                instances.add(int(m.group(1)))
            continue
        try:
            tags = _prepass_tags(canon, index)
        except TagListError as e:
            trace.append(f"arc: {name} does not parse ({e}): fail")
            return ARCResult("fail", f"{name} does not parse")
        try:
            instances.add(int(tags.get(b"i", b"0")))
        except ValueError:
            trace.append(f"arc: {name} has a bad i=: fail")
            return ARCResult("fail", f"{name} has a bad i= tag")
        d = tags.get(b"d", b"").decode("ascii", "replace").lower().strip()
        s = tags.get(b"s", b"").decode("ascii", "replace").lower().strip()
        if d and s:
            keys[f"{s}._domainkey.{d}"] = None
    if len(instances) > MAX_SETS or max(instances, default=0) > MAX_SETS:
        reason = f"{max(len(instances), max(instances, default=0))} sets, more than the {MAX_SETS} checked"
        trace.append(f"arc: {reason}: fail")
        return ARCResult("fail", reason, sets=len(instances))
    for name in keys:
        try:
            records = await lookup.query(name, "TXT")
        except DNSTempError as e:
            # RFC 8617 has no temperror: the chain cannot be shown to pass.
            trace.append(f"arc: key look-up {name}: {e}: fail")
            return ARCResult("fail", f"key look-up of {name} failed for now", sets=len(instances))
        keys[name] = records[0].encode("utf-8") if records else None

    def dnsfunc(name: bytes) -> bytes | None:
        return keys.get(name.decode("ascii", "replace").rstrip(".").lower())

    try:
        cv, data, reason = verify_chain(canon, dnsfunc, MIN_RSA_BITS)
    except Exception as e:  # input nobody foresaw: a verdict, never a crash
        trace.append(f"arc: chain not usable ({type(e).__name__}: {e}): fail")
        return ARCResult("fail", f"chain not usable: {e}", sets=len(instances))
    sealers = [r.get("as-domain", b"").decode("ascii", "replace").lower() for r in data]
    aar = [r.get("aar-value", b"").decode("utf-8", "replace") for r in data]
    result = {CV_PASS: "pass", CV_NONE: "none"}.get(cv, "fail") if cv is not None else "fail"
    if cv is None:  # a Seal said cv=fail: the chain ended there, and is a failure for us
        result = "fail"
    if result == "none" and data:
        result = "fail"
    out = ARCResult(result, "" if result == "pass" else str(reason), len(data), sealers, aar)
    if result == "pass":
        # RFC 8617 §4.4 header.oldest-pass: the oldest instance whose Message-Signature still verifies.
        valid = [r["instance"] for r in data if r.get("ams-valid")]
        out.oldest_pass = min(valid) if valid else 0
    trace.append(f"arc: {len(data)} set(s), sealed by {', '.join(sealers) or '-'}: {result}"
                 + (f" ({out.reason})" if out.reason else ""))
    return out


def _aar_dmarc_pass(aar: str, from_domain: str) -> bool:
    """The ARC-Authentication-Results value ``i=N; authserv-id; ...`` records a DMARC pass
    for ``from_domain``."""
    text = re.sub(r"^\s*i\s*=\s*\d+\s*;", "", aar.replace("\r\n", " "))
    try:
        parsed = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + text.strip())
    except Exception:  # authres raises its own SyntaxError and others on odd input
        return False
    for res in parsed.results:
        if res.method == "dmarc" and str(res.result).lower() == "pass":
            props = {f"{p.type}.{p.name}".lower(): str(p.value).lower() for p in res.properties}
            if props.get("header.from", from_domain) == from_domain:
                return True
    return False


def trusted_override(arc: ARCResult, from_domain: str, trusted: list[str]) -> str | None:
    """The trusted sealer whose set recorded a DMARC pass for ``from_domain``, when the
    chain passes; else None."""
    if arc.result != "pass" or not trusted or not from_domain:
        return None
    wanted = {t.rstrip(".").lower() for t in trusted}
    for sealer, aar in zip(arc.sealers, arc.aar):
        if sealer in wanted and _aar_dmarc_pass(aar, from_domain):
            return sealer
    return None


def should_seal(params: dict[str, Any], targets: list[str]) -> str | None:
    """None when the message is mail from outside that leaves for another server (the
    case ``should_sign`` leaves out), else why it is not sealed."""
    from .sign import LOCAL_TARGETS

    if all(t in LOCAL_TARGETS for t in targets):
        return "no remote recipient"
    if params.get("auth") or params.get("client") in (None, "local"):
        return "ours: DKIM-signed, not sealed"
    return None


#: Loaded private keys a Sealer keeps, keyed by their sealed text (random, never reused).
KEY_CACHE = 64

_PREHASHED = {b"rsa-sha256": hashes.SHA256(), b"rsa-sha1": hashes.SHA1()}


class _OpenSSLARC(dkim.ARC):
    """dkimpy's ARC signer with the RSA operation of each signature done by OpenSSL."""

    def __init__(self, message: bytes, private: rsa.RSAPrivateKey, **kw: Any) -> None:
        super().__init__(message, **kw)
        self._private = private

    def gen_header(self, fields: list[tuple[bytes, bytes]], include_headers: Any, canon_policy: Any,
                   header_name: bytes, pk: Any, standardize: bool = False) -> bytes:
        """``DomainSigner.gen_header`` of dkimpy 1.1.8, step for step, but for the
        signature: RSASSA-PKCS1-v1_5 over the header hash by ``cryptography``."""
        prehashed = _PREHASHED.get(self.signature_algorithm)
        if standardize or prehashed is None:
            return bytes(super().gen_header(fields, include_headers, canon_policy, header_name, pk, standardize))
        header_value = dkim.fold(b"; ".join(b"=".join(x) for x in fields), namelen=len(header_name), linesep=b"\r\n")
        header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
        header = (header_name, b" " + header_value)
        h = self.hasher()
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(h, canon_policy, headers, include_headers, header, dict(fields))
        signature = self._private.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(prehashed))
        idx = [i for i in range(len(fields)) if fields[i][0] == b"b"][0]
        fields[idx] = (b"b", base64.b64encode(signature))
        header_value = b"; ".join(b"=".join(x) for x in fields) + self.linesep
        return bytes(dkim.fold(header_value, namelen=len(header_name), linesep=self.linesep))


def arc_sign(message: bytes, selector: bytes, domain: bytes, private_pem: bytes, srv_id: bytes,
             include_headers: list[bytes], private: rsa.RSAPrivateKey | None = None,
             timestamp: int | None = None) -> list[bytes]:
    """``dkim.ARC(message).sign(...)``: the new ARC set's fields (Seal first), or [] when
    there is no Authentication-Results field of ``srv_id``; ``private``: the key of
    ``private_pem`` already loaded by ``cryptography`` (loaded here when None)."""
    if private is None:
        private = _load_rsa(private_pem)
    signer = _OpenSSLARC(message, private, minkey=MIN_RSA_BITS, linesep=b"\r\n")
    return [bytes(f) for f in signer.sign(selector, domain, private_pem, srv_id, include_headers=include_headers,
                                          timestamp=timestamp)]


def _load_rsa(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


class Sealer:
    """Adds an ARC set to messages from outside that we send on; one per worker."""

    __slots__ = ("db", "secrets", "hostname", "domain", "_keys")

    def __init__(self, db: Database, secrets: Any, hostname: str, domain: str = "") -> None:
        self.db = db
        self.secrets = secrets
        self.hostname = hostname
        self.domain = (domain or hostname).rstrip(".").lower()
        self._keys: dict[str, tuple[bytes, rsa.RSAPrivateKey]] = {}

    def _private(self, key: DKIMKeyRecord) -> tuple[bytes, rsa.RSAPrivateKey]:
        """The key's PEM and its ``cryptography`` object, unsealed and loaded once."""
        got = self._keys.get(key.private_key)
        if got is None:
            pem = self.secrets.open(key.private_key).encode("ascii")
            got = (pem, _load_rsa(pem))
            if len(self._keys) >= KEY_CACHE:
                self._keys.clear()
            self._keys[key.private_key] = got
        return got

    def has_our_results(self, data: bytes) -> bool:
        """The header has an Authentication-Results field of ours (the inbound check
        ran): without it there is nothing to seal (a cheap test before any key look-up)."""
        end = data.find(b"\r\n\r\n")
        head = (data if end < 0 else data[:end]).lower()
        return b"authentication-results: " + self.hostname.lower().encode("ascii", "replace") + b";" in head

    def key(self) -> DKIMKeyRecord | None:
        """The sealing key: the last activated active RSA key of the sealing domain, or
        of its nearest parent up to the organisational domain."""
        org = organizational_domain(self.domain)
        name = self.domain
        while True:
            active = [k for k in self.db.dkim_keys(name) if k.activated > 0 and k.algorithm == "rsa"]
            if active:
                return max(active, key=lambda k: (k.activated, k.created))
            if name == org or "." not in name:
                return None
            name = name.split(".", 1)[1]

    def seal(self, data: bytes, msg_id: str = "") -> bytes:
        """``data`` with a new ARC set in front, or unchanged (logged) when there is no
        Authentication-Results field of ours to seal, no key, or dkimpy refuses."""
        key = self.key()
        if key is None:
            event(log, "arc-unsealed", level=logging.DEBUG, id=msg_id, reason=f"no active RSA key for {self.domain}")
            return data
        try:
            pem, private = self._private(key)
            message = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            fields = arc_sign(message, key.selector.encode("ascii"), key.domain.encode("ascii"), pem,
                              self.hostname.encode("ascii"), _sealed_fields(message), private)
        except Exception as e:  # a damaged key, a message dkimpy refuses: send it on unsealed
            event(log, "arc-seal-failed", level=logging.ERROR, id=msg_id, domain=key.domain, selector=key.selector,
                  error=str(e) or type(e).__name__)
            return data
        if not fields:
            event(log, "arc-unsealed", level=logging.DEBUG, id=msg_id,
                  reason="no Authentication-Results of ours (mailauth.inbound off or not checked)")
            return data
        event(log, "arc-sealed", id=msg_id, d=key.domain, s=key.selector,
              i=_instance(fields[0]), cv=_tag(fields[0], b"cv"))
        return b"".join(fields) + data


def _sealed_fields(message: bytes) -> list[bytes]:
    """The fields the ARC-Message-Signature covers: the DKIM recommended ones the
    message has, From always (RFC 8617 §4.1.2 as RFC 6376 §5.4)."""
    from .sign import SIGNED_FIELDS, header_fields

    present = {n for n, _v in header_fields(message)}
    # (Not DKIM-Signature: dkimpy refuses it in h=, and the author's signature is
    # checked on its own; RFC 8617 §4.1.2 leaves the choice to the sealer.)
    return [b"from"] + [f.encode() for f in SIGNED_FIELDS if f in present and f != "from"]


def _tag(field_line: bytes, tag: bytes) -> str:
    try:
        return parse_tags(field_line.split(b":", 1)[1]).get(tag, b"").decode("ascii", "replace")
    except (TagListError, IndexError):
        return ""


def _instance(field_line: bytes) -> str:
    return _tag(field_line, b"i")
