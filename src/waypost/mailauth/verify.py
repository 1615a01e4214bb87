"""DKIM verification (RFC 6376 §6) of every signature on a message.

The public keys are fetched first, asynchronously, through ``Lookup``
(``dns.nameservers``, the time-out, temporary failures told apart); ``dkimverify``
then checks each signature against the key already in hand, so it never does I/O
itself, on the message canonicalized once for all its signatures (``canon.Canon``).

Results per signature (RFC 8601 §2.7.1): ``pass``; ``fail`` (the signature or body
hash does not match, or it has expired); ``neutral`` (the signature cannot be parsed);
``permerror`` (no key, a key that cannot be used, a key too short); ``temperror``
(the key could not be fetched now).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .canon import Canon
from .dkimverify import Invalid, KeyUnusable, TagListError, Unusable, public_key, verify_dkim
from .lookup import DNSTempError, Lookup

__all__ = ["DKIMResult", "verify_all", "MAX_SIGNATURES", "MIN_RSA_BITS"]

#: Signatures checked on one message; more are reported as not checked (each costs a
#: DNS look-up and a public-key operation: a flood of them must stay cheap).
MAX_SIGNATURES = 5
#: RFC 8301 §3.2: verifiers MUST NOT consider signatures with RSA keys under 1024 bits valid.
MIN_RSA_BITS = 1024

#: RFC 6376 §3.5: the tags every signature has (a signature without one is unusable).
REQUIRED_TAGS = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
_H_LIST = re.compile(rb"\s*:\s*")



@dataclass(slots=True)
class DKIMResult:
    result: str
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    b: str = ""          # the first characters of b= (RFC 6008 header.b) to tell signatures apart
    reason: str = ""


async def verify_all(lookup: Lookup, message: bytes, trace: list[str], canon: Canon | None = None) -> list[DKIMResult]:
    """``canon``: the message already split (``check_message`` shares one with ``verify_arc``)."""
    if canon is None:
        canon = Canon(message)
    # The fields dkimpy's verify_headerprep sees, topmost first, by their index in the
    # header: their tags are parsed once for this look and the check (Canon.tags).
    fields = [i for i, name in enumerate(canon.header_names()) if name == b"dkim-signature"]
    if not fields:
        trace.append("dkim: no DKIM-Signature field: none")
        return []
    results: list[DKIMResult] = []
    for idx, index in enumerate(fields):
        if idx >= MAX_SIGNATURES:
            trace.append(f"dkim: {len(fields) - MAX_SIGNATURES} more signature(s) not checked (limit {MAX_SIGNATURES})")
            break
        results.append(await _verify_one(lookup, canon, idx, index, trace))
    return results


async def _verify_one(lookup: Lookup, canon: Canon, idx: int, index: int, trace: list[str]) -> DKIMResult:
    try:
        tags = canon.tags(index)
    except TagListError as e:
        trace.append(f"dkim[{idx}]: signature does not parse ({e}): neutral")
        return DKIMResult("neutral", reason=f"signature syntax: {e}")
    domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
    selector = tags.get(b"s", b"").decode("ascii", "replace").lower()
    algorithm = tags.get(b"a", b"").decode("ascii", "replace").lower()
    b = tags.get(b"b", b"").translate(None, b" \t\n\r\f\v")[:8].decode("ascii", "replace")  # (re's \s)
    res = DKIMResult("neutral", domain, selector, algorithm, b)
    missing = [t.decode() for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        res.reason = f"signature lacks {', '.join(t + '=' for t in missing)} (RFC 6376 §3.5)"
        trace.append(f"dkim[{idx}]: {res.reason}: neutral")
        return res
    if b"from" not in {h.lower() for h in _H_LIST.split(tags[b"h"].strip())}:
        # RFC 6376 §6.1.1: PERMFAIL (dkimpy verifies it): one that covers no From could be
        # copied onto a message with any From of its domain and pass DMARC.
        res.result, res.reason = "permerror", "From field not signed (RFC 6376 §6.1.1)"
        trace.append(f"dkim[{idx}] d={domain} s={selector}: {res.reason}: permerror")
        return res
    name = f"{selector}._domainkey.{domain}"
    try:
        records = await lookup.query(name, "TXT")
    except DNSTempError as e:
        res.result, res.reason = "temperror", f"key look-up: {e}"
        trace.append(f"dkim[{idx}] d={domain} s={selector}: {res.reason}: temperror")
        return res
    if not records:
        res.result, res.reason = "permerror", f"no key at {name}"
        trace.append(f"dkim[{idx}] d={domain} s={selector}: {res.reason}: permerror")
        return res
    key = records[0].encode("utf-8")
    try:
        public = public_key(name.encode(), key)
    except (KeyUnusable, ValueError) as e:  # binascii.Error is a ValueError
        res.result, res.reason = "permerror", f"unusable key at {name}: {e}"
        trace.append(f"dkim[{idx}] d={domain} s={selector}: {res.reason}: permerror")
        return res
    if public.kind == b"rsa" and public.bits < MIN_RSA_BITS:
        res.result, res.reason = "permerror", f"RSA key of {public.bits} bits (RFC 8301 §3.2: at least {MIN_RSA_BITS})"
        trace.append(f"dkim[{idx}] d={domain} s={selector}: {res.reason}: permerror")
        return res
    try:
        ok = verify_dkim(canon, index, public, MIN_RSA_BITS)
    except Invalid as e:
        res.result, res.reason = "fail", str(e)
    except Unusable as e:
        res.result, res.reason = "neutral", f"signature not usable: {e}"
    except Exception as e:  # input nobody foresaw: a verdict, never a crash
        res.result, res.reason = "neutral", f"signature not usable: {type(e).__name__}: {e}"
    else:
        res.result = "pass" if ok else "fail"
        res.reason = "" if ok else "signature did not verify"
        if ok and algorithm == "rsa-sha1":
            # RFC 8301 §3.1: verifiers MUST NOT consider rsa-sha1 signatures valid.
            res.result, res.reason = "fail", "rsa-sha1 signature verified, but SHA-1 is not accepted (RFC 8301 §3.1)"
    trace.append(f"dkim[{idx}] d={domain} s={selector} a={algorithm}: {res.result}"
                 + (f" ({res.reason})" if res.reason else ""))
    return res
