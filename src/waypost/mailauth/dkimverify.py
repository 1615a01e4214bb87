"""DKIM (RFC 6376, RFC 8463) and ARC (RFC 8617) signature verification on a ``Canon``.

Our own code, with dkimpy (``dkim.DKIM.verify``, ``dkim.ARC.verify``) as the reference:
tests/unit/mailauth/test_dkimverify.py checks that every verdict (and every reason
text that reaches Authentication-Results) is dkimpy's, on generated corpora (dkimpy-,
Mail::DKIM- and our own signatures, RFC 6376/8463 examples, tampered bodies and
fields, ``l=``, several signatures, bad keys, ``t=``/``x=``, every c= combination).
Where dkimpy's reading is its own (a key record's s= it does not know leaves no key;
the bottom-up choice of the ARC fields a Seal covers) we follow it, so the verdicts
do not change under the administrator.

What it costs per message: the tags of each signature field parsed once, one
canonicalization (``Canon``), and one public-key operation per signature, by
``cryptography`` (OpenSSL).  The public keys are built once per key record text
(``public_key``; the text is the key, never a reused id, so nothing here can go stale),
at most ``KEY_CACHE`` of them.

Outcomes, in dkimpy's terms: ``True``/``False`` (the signature does or does not
verify); ``Invalid`` (dkimpy's ValidationError: a body hash mismatch, a bad or expired
tag — a failure); ``Unusable`` (dkimpy's other exceptions: the signature cannot be
checked — neutral); ``KeyUnusable`` (a key record that cannot be used).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

import gmpy2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from .canon import RELAXED, Canon, CanonError, TagListError, c_value, parse_tags

__all__ = ["CV_FAIL", "CV_NONE", "CV_PASS", "Invalid", "KeyUnusable", "PublicKey", "TagListError", "Unusable",
           "parse_tags", "public_key", "verify_chain", "verify_dkim", "KEY_CACHE"]

CV_PASS, CV_FAIL, CV_NONE = b"pass", b"fail", b"none"
#: RFC 6376 §3.3 (and RFC 8463 §3); ARC signs with rsa-sha256 only (RFC 8617 §4.1.3).
HASHES: dict[bytes, Callable[..., Any]] = {b"rsa-sha1": hashlib.sha1, b"rsa-sha256": hashlib.sha256,
                                           b"ed25519-sha256": hashlib.sha256}
ARC_HASHES: dict[bytes, Callable[..., Any]] = {b"rsa-sha256": hashlib.sha256}
DKIM_REQUIRED = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
AMS_REQUIRED = (b"i", b"a", b"b", b"bh", b"d", b"h", b"s")
AS_REQUIRED = (b"i", b"a", b"b", b"cv", b"d", b"s")
#: Clock skew allowed for t= and x= (dkimpy's: 10 hours).
SLOP = 36000
#: Key records whose public key is kept, built (their text is the cache key).
KEY_CACHE = 256

# RFC 8017 §9.2 note 1: the DigestInfo prefixes.
_DIGEST_INFO = {"sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
                "sha256": bytes.fromhex("3031300d060960864801650304020105000420")}
#: What ``\s`` matches in a bytes pattern: ``_unspace(v)`` is ``re.sub(rb"\s+", b"", v)``.
_SPACE = b" \t\n\r\f\v"
_DIGITS = re.compile(rb"\d+$")
_L_VALUE = re.compile(rb"\d{,76}$")


def _unspace(value: bytes) -> bytes:
    return value.translate(None, _SPACE)

_H_SPLIT = re.compile(rb"\s*:\s*")
_B64_VALUE = re.compile(rb"[\s0-9A-Za-z+/]+[\s=]*$")
_D_SPECIALS = re.compile(rb"[\(\)<>\[\]:;@\\,]")
_ARC_NAMES = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")
_INSTANCE = re.compile(rb"[\s;]?i\s*=\s*(\d+)", re.MULTILINE | re.IGNORECASE)


class Unusable(Exception):
    """The signature cannot be checked (a verdict of neutral for DKIM)."""


class KeyUnusable(Unusable):
    """The key record cannot be used."""


class Invalid(Exception):
    """The signature fails: a body hash mismatch, a bad or expired tag."""


def validate_fields(sig: dict[bytes, bytes], mandatory: tuple[bytes, ...], arc: bool = False) -> None:
    """RFC 6376 §3.5 / RFC 8617 §4.1: the tags a signature must have and their forms;
    ``Invalid`` naming the first problem (dkimpy's checks, in its order)."""
    for name in mandatory:
        if name not in sig:
            raise Invalid("missing %s=" % name)  # type: ignore[str-bytes-safe]
    if b"a" in sig and sig[b"a"] not in (ARC_HASHES if arc else HASHES):
        raise Invalid("unknown signature algorithm: %s" % sig[b"a"])  # type: ignore[str-bytes-safe]
    if b"b" in sig:
        if _B64_VALUE.match(sig[b"b"]) is None or len(_unspace(sig[b"b"])) % 4 != 0:
            raise Invalid("b= value is not valid base64 (%s)" % sig[b"b"])  # type: ignore[str-bytes-safe]
    if b"bh" in sig:
        # dkimpy checks b='s form here again (not bh='s), then bh='s length: its
        # verdicts are kept.  With b= present that match passed above; without b=,
        # dkimpy's ``sig[b'b']`` raises KeyError, and so do we (every caller's
        # ``mandatory`` has b=, so "missing b=" comes first).
        if b"b" not in sig:
            raise KeyError(b"b")
        if len(_unspace(sig[b"bh"])) % 4 != 0:
            raise Invalid("bh= value is not valid base64 (%s)" % sig[b"bh"])  # type: ignore[str-bytes-safe]
    if b"cv" in sig and sig[b"cv"] not in (CV_PASS, CV_FAIL, CV_NONE):
        raise Invalid("cv= value is not valid (%s)" % sig[b"cv"])  # type: ignore[str-bytes-safe]
    d = sig[b"d"]
    if d.isascii() and _D_SPECIALS.search(d):
        raise Invalid("d= value is not valid (%s)" % d)  # type: ignore[str-bytes-safe]
    if not arc and b"i" in sig:
        i = sig[b"i"]
        # (an i= equal to d= raises IndexError here, as in dkimpy: a neutral verdict)
        if not i.lower().endswith(d.lower()) or i[-len(d) - 1] not in (64, 46):
            raise Invalid("i= domain is not a subdomain of d= (i=%s d=%s)" % (i, d))  # type: ignore[str-bytes-safe]
    if b"l" in sig and _L_VALUE.match(sig[b"l"]) is None:
        raise Invalid("l= value is not a decimal integer (%s)" % sig[b"l"])  # type: ignore[str-bytes-safe]
    if b"q" in sig and sig[b"q"] != b"dns/txt":
        raise Invalid("q= value is not dns/txt (%s)" % sig[b"q"])  # type: ignore[str-bytes-safe]
    t_sign = None
    if b"t" in sig:
        if _DIGITS.match(sig[b"t"]) is None:
            raise Invalid("t= value is not a decimal integer (%s)" % sig[b"t"])  # type: ignore[str-bytes-safe]
        t_sign = int(sig[b"t"])
        if t_sign > int(time.time()) + SLOP:
            raise Invalid("t= value is in the future (%s)" % sig[b"t"])  # type: ignore[str-bytes-safe]
    if b"v" in sig and sig[b"v"] != b"1":
        raise Invalid("v= value is not 1 (%s)" % sig[b"v"])  # type: ignore[str-bytes-safe]
    if b"x" in sig:
        if _DIGITS.match(sig[b"x"]) is None:
            raise Invalid("x= value is not a decimal integer (%s)" % sig[b"x"])  # type: ignore[str-bytes-safe]
        x_sign = int(sig[b"x"])
        if x_sign < int(time.time()) - SLOP:
            raise Invalid("x= value is past (%s)" % sig[b"x"])  # type: ignore[str-bytes-safe]
        if t_sign and x_sign < t_sign:
            raise Invalid("x= value is less than t= value (x=%r t=%r)" % (sig[b"x"], sig[b"t"]))


# -- keys --------------------------------------------------------------------------------

# Ed25519 points of small order (y of the 8-torsion; RFC 8032 §5.1.3 encodings, the
# sign bit aside): libsodium, which dkimpy verifies with, refuses them as a public key
# or as R, and an encoding of y >= p as a key; OpenSSL does not.
_P25519 = 2**255 - 19
_SMALL_ORDER_Y = frozenset({
    0, 1, _P25519 - 1, _P25519, _P25519 + 1,
    2707385501144840649318225287225658788936804267575313519463743609750303402022,
    55188659117513257062467267217118295137698188065244968500265048394206261417927,
})


def _y(point: bytes) -> int:
    return int.from_bytes(point, "little") & ((1 << 255) - 1)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A key record's key: ``kind`` b"rsa" or b"ed25519" (None: a service type other
    than email, dkimpy keeps no key then); ``bits``; ``tlsrpt``: s=tlsrpt (RFC 8460)."""

    kind: bytes | None
    bits: int
    tlsrpt: bool
    n: int = 0
    e: int = 0
    ed: ed25519.Ed25519PublicKey | None = None
    ed_refused: bool = False


class _ASN1Error(Exception):
    pass


_INTEGER, _BIT_STRING, _OCTET_STRING, _NULL, _OID, _SEQUENCE = 0x02, 0x03, 0x04, 0x05, 0x06, 0x30
_SPKI = [(_SEQUENCE, [(_SEQUENCE, [(_OID,), (_NULL,)]), (_BIT_STRING,)])]
_RSA_PUBLIC = [(_SEQUENCE, [(_INTEGER,), (_INTEGER,)])]


def _asn1(template: list[Any], data: bytes) -> list[Any]:
    """DER read by a template, as dkimpy reads a key: what follows the template is
    ignored, integers are read unsigned (its messages, for the same reasons)."""
    out: list[Any] = []
    i = 0
    try:
        for t in template:
            tag = data[i]
            i += 1
            if tag != t[0]:
                raise _ASN1Error("Unexpected tag (got %02x, expecting %02x)" % (tag, t[0]))
            length = data[i]
            i += 1
            if length & 0x80:
                count, length = length & 0x7F, 0
                for _ in range(count):
                    length = (length << 8) | data[i]
                    i += 1
            if tag == _INTEGER:
                n = 0
                for _ in range(length):
                    n = (n << 8) | data[i]
                    i += 1
                out.append(n)
            elif tag == _NULL:
                if length != 0:
                    raise _ASN1Error("NULL of length %d" % length)
                out.append(None)
            elif tag == _SEQUENCE:
                out.append(_asn1(t[1], data[i:i + length]))
                i += length
            else:
                out.append(data[i:i + length])
                i += length
        return out
    except IndexError:
        raise _ASN1Error("Data truncated at byte %d" % i) from None


def _rsa_numbers(der: bytes) -> tuple[int, int]:
    """(n, e) of a SubjectPublicKeyInfo (RFC 6376 §3.6.1 p=), or of a bare RSAPublicKey."""
    try:
        spki = _asn1(_SPKI, der)
        numbers = _asn1(_RSA_PUBLIC, spki[0][1][1:])
    except _ASN1Error as e_spki:
        try:
            numbers = _asn1(_RSA_PUBLIC, der)
        except _ASN1Error as e_rsa:
            raise ValueError(f"Unparsable public key; SubjectPublicKeyInfo: {e_spki}; RSAPublicKey: {e_rsa}") from None
    return numbers[0][0], numbers[0][1]


_keys: dict[bytes, PublicKey | Exception] = {}


def public_key(name: bytes, record: bytes | None) -> PublicKey:
    """The key of a DKIM key record (RFC 6376 §3.6.1), built once per record text;
    ``KeyUnusable`` (or binascii.Error for bad base64) when it cannot be used."""
    if not record:
        raise KeyUnusable("missing public key: %s" % name)  # type: ignore[str-bytes-safe]
    got = _keys.get(record)
    if got is None:
        try:
            got = _build_key(record)
        except (KeyUnusable, ValueError) as e:  # binascii.Error is a ValueError
            got = e
        if len(_keys) >= KEY_CACHE:
            del _keys[next(iter(_keys))]
        _keys[record] = got
    if isinstance(got, Exception):
        raise type(got)(*got.args)
    return got


def _build_key(record: bytes) -> PublicKey:
    try:
        pub = parse_tags(record)
    except TagListError as e:
        raise KeyUnusable(str(e)) from None
    if b"v" in pub and pub[b"v"] != b"DKIM1":
        raise KeyUnusable("bad version")
    k = pub.get(b"k", b"rsa")
    if k == b"ed25519" and b"p" not in pub:
        k = b"rsa"  # dkimpy's reading: such a record is then an incomplete RSA key
    key: PublicKey
    if k == b"ed25519":
        raw = base64.b64decode(pub[b"p"])
        if len(raw) != 32:
            raise KeyUnusable("could not parse ed25519 public key (%s): The key must be exactly 32 bytes long"
                              % pub[b"p"])  # type: ignore[str-bytes-safe]
        try:
            ed = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except Exception:  # OpenSSL refuses it: nothing verifies with it
            ed = None
        refused = _y(raw) in _SMALL_ORDER_Y or _y(raw) >= _P25519
        key = PublicKey(b"ed25519", 256, False, ed=ed, ed_refused=refused)
    elif k == b"rsa":
        if b"p" not in pub:
            raise KeyUnusable("incomplete RSA public key: %s" % record)  # type: ignore[str-bytes-safe]
        der = base64.b64decode(pub[b"p"])
        try:
            n, exp = _rsa_numbers(der)
        except ValueError as err:
            raise KeyUnusable("could not parse RSA public key (%s): %s" % (pub[b"p"], err)) from None  # type: ignore[str-bytes-safe]
        key = PublicKey(b"rsa", max(n.bit_length(), 1), False, n, exp)
    else:
        raise KeyUnusable("unknown algorithm in k= tag: {0}".format(k))  # type: ignore[str-bytes-safe]
    service = pub.get(b"s")
    if service is not None:
        if service not in (b"*", b"email", b"tlsrpt"):
            return PublicKey(None, 0, False)
        if service == b"tlsrpt":
            return PublicKey(key.kind, key.bits, True, key.n, key.e, key.ed, key.ed_refused)
    return key


# -- one signature ------------------------------------------------------------------------


def _check(canon: Canon, sig: dict[bytes, bytes], include_headers: list[bytes], sig_header: tuple[bytes, bytes],
           key: PublicKey, minkey: int, c_default: bytes = b"simple/simple") -> bool:
    """RFC 6376 §6.1.3: the body hash, then the header hash with the signature field's
    b= emptied, checked with the key; ``c_default``: the c= of a signature without one
    (RFC 6376 §3.5 simple; RFC 8617 §4.1.2 relaxed for ARC, as dkimpy)."""
    if key.tlsrpt:
        raise Invalid("Message is not tlsrpt and Service Type is tlsrpt")
    try:
        header_alg, body_alg = c_value(sig.get(b"c", c_default))
    except CanonError as e:
        raise Unusable("invalid c= value: %s" % e.args[0]) from None
    hasher = HASHES[sig[b"a"]]
    if b"bh" in sig:
        digest = canon.body_hash(hasher, body_alg, sig.get(b"l"))
        if digest != base64.b64decode(_unspace(sig[b"bh"])):
            raise Invalid("body hash mismatch (got %r, expected %r)" % (base64.b64encode(digest), sig[b"bh"]))
    if b"from" in include_headers:
        include_headers.append(b"from")  # a second From added later breaks the signature
    h = hasher()
    canon.hash_fields(h, header_alg, include_headers, sig_header)
    signature = base64.b64decode(_unspace(sig[b"b"]))
    if key.kind == b"rsa":
        return _rsa_verify(key, h, signature, minkey)
    if key.kind == b"ed25519":
        if len(signature) != 64:
            raise ValueError("The signature must be exactly 64 bytes long")
        if key.ed is None or key.ed_refused or _y(signature[:32]) in _SMALL_ORDER_Y:
            return False
        try:
            key.ed.verify(signature, h.digest())
        except InvalidSignature:
            return False
        return True
    raise Unusable(str(key.kind))


def _rsa_verify(key: PublicKey, h: Any, signature: bytes, minkey: int) -> bool:
    """RSASSA-PKCS1-v1_5 (RFC 8017 §8.2.2: the encoded message rebuilt and compared)
    with the signature taken mod n, as dkimpy.

    The exponentiation is GMP's (``gmpy2.powmod``), which keeps the GIL for its 20
    microseconds: OpenSSL's verify (``cryptography``) lets it go, and the event loop
    then waited for a busy thread of the worker to give it back, up to the switch
    interval (5 ms), three times per checked message (DKIM, ARC-Message-Signature,
    ARC-Seal).  Python's own ``pow`` keeps it too, but costs seven times the CPU."""
    n = key.n
    modlen = max((n.bit_length() + 7) // 8, 1)
    name = h.name.lower()
    dinfo = _DIGEST_INFO[name] + h.digest()
    if len(dinfo) + 11 > modlen:
        raise KeyUnusable("digest too large for modulus: ")
    value = int.from_bytes(signature, "big")
    ok = int(gmpy2.powmod(value, key.e, n)).to_bytes(modlen, "big") == \
        b"\x00\x01" + b"\xff" * (modlen - len(dinfo) - 3) + b"\x00" + dinfo
    if ok and key.bits < minkey:
        raise KeyUnusable("public key too small: %d" % key.bits)
    return ok


def verify_dkim(canon: Canon, index: int, key: PublicKey, minkey: int) -> bool:
    """The DKIM-Signature field ``canon.headers[index]`` checked with ``key`` (RFC 6376 §6.1)."""
    try:
        sig = canon.tags(index)
    except TagListError as e:
        raise Unusable(str(e)) from None
    validate_fields(sig, DKIM_REQUIRED)
    include_headers = [x.lower() for x in _H_SPLIT.split(sig[b"h"])]
    field = canon.headers[index]
    return _check(canon, sig, include_headers, (field[0], field[1]), key, minkey)


# -- ARC ----------------------------------------------------------------------------------

KeyFunc = Callable[[bytes], "bytes | None"]


#: An ARC field: (its instance, (relaxed name, relaxed value), its index in ``Canon.headers``).
ARCField = tuple[int, tuple[bytes, bytes], int]


def _arc_headers(canon: Canon) -> tuple[int, list[ARCField]]:
    """The ARC fields (relaxed), by instance, newest first."""
    headers = []
    for i, name in enumerate(canon.header_names()):
        if name in _ARC_NAMES:  # (the relaxed name is the lower-case one)
            x, y = canon.field(RELAXED, i)
            m = _INSTANCE.search(y)
            if m is not None:
                headers.append((int(m.group(1)), (x, y), i))
    if not headers:
        return 0, []
    headers.sort(key=lambda a: [a[0], a[1][0].lower(), a[1][1].lower()])
    headers.reverse()
    return headers[0][0], headers


def _arc_sig(canon: Canon, sig: dict[bytes, bytes], include_headers: list[bytes], header: tuple[bytes, bytes],
             keyfunc: KeyFunc, minkey: int) -> bool:
    name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
    try:
        key = public_key(name, keyfunc(name))
    except (KeyUnusable, ValueError):
        return False
    try:
        return _check(canon, sig, include_headers, header, key, minkey, b"relaxed/relaxed")
    except (Unusable, Invalid):
        return False


def _verify_instance(canon: Canon, arc_headers: list[ARCField], instance: int,
                     keyfunc: KeyFunc, minkey: int) -> dict[str, Any]:
    aar = seal = None
    ams_index = seal_index = -1
    covered = []
    for i, header, index in arc_headers:
        if i > instance:
            continue
        covered.append(header)
        if i == instance:
            if header[0] == b"arc-authentication-results":
                if aar is not None:
                    raise Unusable("Duplicate ARC-Authentication-Results for instance %d" % instance)
                aar = header[1]
            elif header[0] == b"arc-message-signature":
                if ams_index >= 0:
                    raise Unusable("Duplicate ARC-Message-Signature for instance %d" % instance)
                ams_index = index
            else:
                if seal is not None:
                    raise Unusable("Duplicate ARC-Seal for instance %d" % instance)
                seal, seal_index = header[1], index
    if aar is None or ams_index < 0 or seal is None:
        raise Unusable("Incomplete ARC set for instance %d" % instance)
    out: dict[str, Any] = {"instance": instance, "aar-value": aar}

    # RFC 8617 §5.1.1 step 4: the newest Message-Signature, as a DKIM signature (its
    # relaxed value's tags, as dkimpy reads them; the raw ones were parsed already).
    try:
        sig = canon.relaxed_tags(ams_index)
    except TagListError as e:
        raise Unusable(str(e)) from None
    validate_fields(sig, AMS_REQUIRED, True)
    out["ams-domain"], out["ams-selector"] = sig[b"d"], sig[b"s"]
    include_headers = [x.lower() for x in _H_SPLIT.split(sig[b"h"])]
    if b"arc-seal" in include_headers:
        raise Unusable("The Arc-Message-Signature MUST NOT sign ARC-Seal")
    # The field as it is in the message (its own canonicalization applies), found by i=.
    marker = b" i=" + sig[b"i"] + b";"
    raw = [canon.headers[i] for i in canon.positions()[b"arc-message-signature"]
           if marker in canon.headers[i][1].lower()][0]
    out["ams-valid"] = _arc_sig(canon, sig, include_headers, (raw[0], raw[1]), keyfunc, minkey)

    # RFC 8617 §5.1.1 step 6: the Seal over every ARC field up to its own set.
    try:
        sig = canon.relaxed_tags(seal_index)
    except TagListError as e:
        raise Unusable(str(e)) from None
    validate_fields(sig, AS_REQUIRED, True)
    if b"h" in sig:
        raise Invalid("h= tag not permitted in ARC-Seal header field")
    out["as-domain"], out["as-selector"], out["cv"] = sig[b"d"], sig[b"s"], sig[b"cv"]
    names = [x[0] for x in covered]
    names.reverse()
    out["as-valid"] = _arc_sig(canon, sig, names[:-1], (b"ARC-Seal", b" " + seal), keyfunc, minkey)
    return out


def verify_chain(canon: Canon, keyfunc: KeyFunc, minkey: int) -> tuple[bytes | None, list[dict[str, Any]], str]:
    """RFC 8617 §5.2: (cv: CV_PASS, CV_FAIL, CV_NONE, or None for a chain a Seal ended
    with cv=fail; each set's results, newest first; the reason).  ``keyfunc``: the
    key record of a name (``selector._domainkey.domain.``), already fetched."""
    data: list[dict[str, Any]] = []
    newest, arc_headers = _arc_headers(canon)
    if newest == 0:
        return CV_NONE, data, "Message is not ARC signed"
    for instance in range(newest, 0, -1):
        try:
            data.append(_verify_instance(canon, arc_headers, instance, keyfunc, minkey))
        except (Unusable, Invalid) as e:
            return CV_FAIL, data, str(e)
    if not data[0]["ams-valid"]:
        return CV_FAIL, data, "Most recent ARC-Message-Signature did not validate"
    for result in data:
        if result["cv"] == CV_FAIL:
            return None, data, "ARC-Seal[%d] reported failure, the chain is terminated" % result["instance"]
        if not result["as-valid"]:
            return CV_FAIL, data, "ARC-Seal[%d] did not validate" % result["instance"]
        if result["instance"] == 1 and result["cv"] != CV_NONE:
            return CV_FAIL, data, "ARC-Seal[%d] reported invalid status %s" % (result["instance"], result["cv"])
        if result["instance"] != 1 and result["cv"] == CV_NONE:
            return CV_FAIL, data, "ARC-Seal[%d] reported invalid status %s" % (result["instance"], result["cv"])
    return CV_PASS, data, "success"
