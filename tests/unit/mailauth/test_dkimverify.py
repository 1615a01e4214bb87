"""``mailauth.dkimverify`` (our DKIM and ARC verifier) gives dkimpy's verdict on every
message of generated corpora: dkimpy-, Perl Mail::DKIM- and RFC 8463-signed messages;
tampered bodies and fields; ``l=``; several signatures; bad keys and odd signatures;
``t=``/``x=``; every simple/relaxed combination; ARC chains.  dkimpy is the reference:
what it answers (True, False, or its exception, mapped to the verdict ``verify.py``
gives) is what ours must answer, reason texts included (they reach the
Authentication-Results comment)."""

from __future__ import annotations

import base64
import binascii
import re
import subprocess
import time
from typing import Any, Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.util import InvalidTagValueList, parse_tag_value
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from support.mailauth import txt_strings
from waypost.mailauth.canon import Canon
from waypost.mailauth.dkimverify import (Invalid, KeyUnusable, TagListError, Unusable, parse_tags, public_key,
                                         verify_chain, verify_dkim)
from waypost.mailauth.verify import MIN_RSA_BITS, REQUIRED_TAGS, verify_all

MESSAGE = (b"From: Alice <alice@example.test>\r\nTo: bob@receiver.test\r\nSubject: Lunch  on\r\n\tFriday\r\n"
           b"Date: Sat, 05 Dec 2026 22:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\n"
           b"Hello Bob,\r\n\r\nsee you  at noon.\t \r\n-- \r\nAlice\r\n\r\n\r\n")
SIGNED_FIELDS = [b"from", b"to", b"subject", b"date", b"message-id"]


def _rsa(bits: int = 2048) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _ed() -> tuple[bytes, bytes]:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed), b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    rsa_private, rsa_record = _rsa()
    ed_private, ed_record = _ed()
    small_private, small_record = _rsa(1024)  # "small": checked with minkey=2048 below
    return {
        "rsa": rsa_private, "ed": ed_private, "small": small_private,
        "dns": {b"r._domainkey.example.test.": rsa_record, b"e._domainkey.example.test.": ed_record,
                b"small._domainkey.example.test.": small_record},
    }


def _dnsfunc(keys: dict[str, Any]) -> Callable[..., bytes | None]:
    return lambda name, timeout=5: keys["dns"].get(name)


def _reference(call: Callable[[], Any]) -> tuple[str, str]:
    """dkimpy's answer as a verdict class: its ValidationError is a failure, its other
    exceptions make the signature unusable (neutral)."""
    try:
        return "result", repr(call())
    except dkim.ValidationError as e:
        return "fail", str(e)
    except dkim.DKIMException as e:
        return "neutral", str(e)
    except Exception as e:
        return type(e).__name__, str(e)


def _ours(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "result", repr(call())
    except Invalid as e:
        return "fail", str(e)
    except Unusable as e:
        return "neutral", str(e)
    except Exception as e:
        return type(e).__name__, str(e)


def _ours_dkim(canon: Canon, idx: int, dnsfunc: Callable[..., bytes | None], minkey: int) -> bool:
    """dkimpy's ``DKIM.verify(idx)`` steps with ours: the tags, their checks, the key
    (False when it cannot be used), the signature."""
    from waypost.mailauth.dkimverify import DKIM_REQUIRED, validate_fields

    index = [i for i, (n, _v) in enumerate(canon.headers) if n.lower() == b"dkim-signature"][idx]
    try:
        tags = canon.tags(index)
    except TagListError as e:
        raise Unusable(str(e)) from None
    validate_fields(tags, DKIM_REQUIRED)
    name = tags[b"s"] + b"._domainkey." + tags[b"d"] + b"."
    try:
        key = public_key(name, dnsfunc(name))
    except (KeyUnusable, binascii.Error):
        return False
    return verify_dkim(canon, index, key, minkey)


def _both(message: bytes, keys: dict[str, Any], minkey: int = 1024) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """(dkimpy's outcome, ours) for every DKIM-Signature of ``message``; ours share one Canon."""
    count = sum(1 for name, _v in dkim.rfc822_parse(message)[0] if name.lower() == b"dkim-signature")
    canon = Canon(message)
    out = []
    for idx in range(count):
        reference = _reference(lambda: dkim.DKIM(message, minkey=minkey).verify(idx=idx, dnsfunc=_dnsfunc(keys)))
        ours = _ours(lambda: _ours_dkim(canon, idx, _dnsfunc(keys), minkey))
        out.append((reference, ours))
    return out


def _sign(message: bytes, keys: dict[str, Any], algorithm: bytes, canon: tuple[bytes, bytes],
          length: bool = False) -> bytes:
    selector, private = {b"rsa-sha256": (b"r", keys["rsa"]), b"rsa-sha1": (b"r", keys["rsa"]),
                         b"ed25519-sha256": (b"e", keys["ed"])}[algorithm]
    field = dkim.DKIM(message, signature_algorithm=algorithm).sign(
        selector, b"example.test", private, canonicalize=canon, include_headers=SIGNED_FIELDS, length=length)
    return field + message


TAMPERINGS: dict[str, Callable[[bytes], bytes]] = {
    "untouched": lambda m: m,
    "body appended": lambda m: m + b"-- \r\nList footer\r\n",
    "body changed": lambda m: m.replace(b"noon", b"five"),
    "body whitespace": lambda m: m.replace(b"see you  at", b"see you at  "),
    "body trailing lines": lambda m: m + b"\r\n\r\n",
    "subject changed": lambda m: m.replace(b"Lunch", b"Dinner"),
    "subject refolded": lambda m: m.replace(b"Lunch  on\r\n\tFriday", b"Lunch on Friday "),
    "header case": lambda m: m.replace(b"Subject:", b"SUBJECT:"),
    "second From": lambda m: m.replace(b"To: bob", b"From: eve@evil.test\r\nTo: bob"),
    "unsigned field added": lambda m: m.replace(b"To: bob", b"X-Mailer: any\r\nTo: bob"),
    "bare LF": lambda m: m.replace(b"\r\n", b"\n"),
}


@pytest.mark.parametrize("algorithm", [b"rsa-sha256", b"ed25519-sha256", b"rsa-sha1"])
@pytest.mark.parametrize("canon", [(b"simple", b"simple"), (b"relaxed", b"relaxed"),
                                   (b"relaxed", b"simple"), (b"simple", b"relaxed")])
@pytest.mark.parametrize("length", [False, True])
def test_same_verdict_as_dkimpy(keys, algorithm, canon, length):
    signed = _sign(MESSAGE, keys, algorithm, canon, length)
    seen = {}
    for name, tamper in TAMPERINGS.items():
        [(reference, ours)] = _both(tamper(signed), keys)
        assert ours == reference, name
        seen[name] = ours
    # Not a comparison of two broken verifiers: the signature verifies, and tampering shows.
    assert seen["untouched"] == ("result", "True")
    assert seen["bare LF"] == ("result", "True")
    assert seen["unsigned field added"] == ("result", "True")
    assert seen["subject changed"] == ("result", "False")
    assert seen["second From"] == ("result", "False")
    assert seen["body changed"][0] == "fail"
    assert seen["body appended"] == (("result", "True") if length else seen["body changed"][:1] + seen["body appended"][1:])
    assert seen["subject refolded"] == (("result", "True") if canon[0] == b"relaxed" else ("result", "False"))
    if canon[1] == b"relaxed":
        assert seen["body whitespace"] == ("result", "True")
    else:
        assert seen["body whitespace"][0] == "fail"


def test_several_signatures_of_one_message_share_one_canonicalization(keys):
    message = MESSAGE
    for algorithm, canon in [(b"rsa-sha256", (b"relaxed", b"relaxed")), (b"ed25519-sha256", (b"simple", b"simple")),
                             (b"rsa-sha256", (b"relaxed", b"simple"))]:
        message = _sign(message, keys, algorithm, canon)
    results = _both(message, keys)
    assert [ours for _ref, ours in results] == [("result", "True")] * 3
    assert all(ref == ours for ref, ours in results)
    broken = _both(message.replace(b"noon", b"one"), keys)
    assert all(ref == ours for ref, ours in broken)
    assert all(ours[0] == "fail" for _ref, ours in broken)


def _edit_signature(message: bytes, edit: Callable[[bytes], bytes]) -> bytes:
    """``message`` with the b= value of its first signature replaced by ``edit(b)``."""
    head, _, rest = message.partition(b" b=")
    value, _, tail = rest.partition(b"\r\n")  # dkimpy folds b= onto lines of its own
    while tail[:1] in (b" ", b"\t"):
        more, _, tail = tail.partition(b"\r\n")
        value += more.strip()
    return head + b" b=" + edit(value.strip()) + b"\r\n" + tail


def test_odd_signatures_and_keys_same_as_dkimpy(keys):
    rsa_signed = _sign(MESSAGE, keys, b"rsa-sha256", (b"relaxed", b"relaxed"))
    ed_signed = _sign(MESSAGE, keys, b"ed25519-sha256", (b"relaxed", b"relaxed"))
    modulus = serialization.load_pem_private_key(keys["rsa"], None).public_key().public_numbers().n

    def plus_modulus(b: bytes) -> bytes:  # the same integer mod n, longer than the modulus
        value = int.from_bytes(base64.b64decode(b), "big") + modulus
        return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))

    def flip(b: bytes) -> bytes:
        raw = bytearray(base64.b64decode(b))
        raw[10] ^= 1
        return base64.b64encode(bytes(raw))

    cases = {
        "rsa flipped": _edit_signature(rsa_signed, flip),
        "rsa plus modulus": _edit_signature(rsa_signed, plus_modulus),
        "rsa short": _edit_signature(rsa_signed, lambda b: base64.b64encode(base64.b64decode(b)[:-2])),
        "rsa empty": _edit_signature(rsa_signed, lambda b: b""),
        "ed flipped": _edit_signature(ed_signed, flip),
        "ed short": _edit_signature(ed_signed, lambda b: base64.b64encode(base64.b64decode(b)[:32])),
        "rsa signature, ed key": rsa_signed.replace(b"s=r;", b"s=e;", 1),
        "ed signature, rsa key": ed_signed.replace(b"s=e;", b"s=r;", 1),
        "no key": rsa_signed.replace(b"s=r;", b"s=none;", 1),
        "bad l=": rsa_signed.replace(b"bh=", b"l=; bh=", 1),
        "bad c=": rsa_signed.replace(b"c=relaxed/relaxed", b"c=loose/relaxed", 1),
    }
    small = dkim.DKIM(MESSAGE).sign(b"small", b"example.test", keys["small"], include_headers=SIGNED_FIELDS)
    outcomes = {}
    [(reference, ours)] = _both(small + MESSAGE, keys, minkey=2048)
    assert ours == reference
    assert ours == ("neutral", "public key too small: 1024")  # under minkey
    for name, message in cases.items():
        [(reference, ours)] = _both(message, keys)
        assert ours == reference, name
        outcomes[name] = ours
    assert outcomes["rsa plus modulus"] == ("result", "True")  # as dkimpy: s is taken mod n
    assert outcomes["rsa flipped"] == ("result", "False")
    assert outcomes["ed flipped"] == ("result", "False")


def test_signature_without_b_tag_same_as_dkimpy(keys):
    """A signature without b= (RFC 6376 §3.5: required): dkimpy's answer, by its field
    checks (``validate_signature_fields``) and on the whole DKIM and ARC paths."""
    from dkim import validate_signature_fields

    from waypost.mailauth.dkimverify import AMS_REQUIRED, AS_REQUIRED, DKIM_REQUIRED, validate_fields

    full = {b"v": b"1", b"a": b"rsa-sha256", b"bh": b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=",
            b"d": b"example.test", b"h": b"from", b"s": b"r", b"i": b"1", b"cv": b"none"}
    seen = set()
    for mandatory in (DKIM_REQUIRED, AMS_REQUIRED, AS_REQUIRED, (b"d",), ()):
        for sig in (full, dict(full, bh=b"abc"), {b"d": b"example.test", b"bh": b"AAAA"}):
            arc = mandatory != DKIM_REQUIRED
            ours = _outcome_of(lambda: validate_fields(dict(sig), mandatory, arc))
            reference = _outcome_of(lambda: validate_signature_fields(dict(sig), list(mandatory), arc))
            reference = ("Invalid", reference[1]) if reference[0] == "ValidationError" else reference
            assert ours == reference, (mandatory, sig)
            seen.add(ours[0])
    # "missing b=" while b= is required (every caller), dkimpy's KeyError when it is not.
    assert seen == {"Invalid", "KeyError"}, seen

    signed = _sign(MESSAGE, keys, b"rsa-sha256", (b"relaxed", b"relaxed"))
    head, _, rest = signed.partition(b" b=")
    while True:  # the b= value and its continuation lines go
        _, _, rest = rest.partition(b"\r\n")
        if rest[:1] not in (b" ", b"\t"):
            break
    unsigned = head + (b"" if head.endswith(b"\r\n") else b"\r\n") + rest
    header = unsigned.split(b"\r\n\r\n")[0]
    assert b" b=" not in header and b"bh=" in header and b"\r\nFrom: " in header
    [(reference, ours)] = _both(unsigned, keys)
    assert ours == reference == ("fail", "missing b'b'=")  # (dkimpy's text, bytes repr and all)

    ar = b"Authentication-Results: fwd.example.test; dkim=pass header.d=example.test\r\n"
    sealed = b"".join(dkim.ARC(ar + signed).sign(b"r", b"example.test", keys["rsa"], b"fwd.example.test",
                                                  include_headers=[b"from", b"to"])) + ar + signed
    for name in (b"ARC-Message-Signature", b"ARC-Seal"):
        start = sealed.index(name + b":")
        cut = sealed.index(b" b=", start)
        end = cut + 3
        while True:
            end = sealed.index(b"\r\n", end) + 2
            if sealed[end:end + 1] not in (b" ", b"\t"):
                break
        assert sealed[cut - 2:cut] == b"\r\n"  # (dkimpy folds b= onto lines of its own)
        reference, ours = _arc_both(sealed[:cut] + sealed[end:], keys)
        assert ours == reference, name
        assert ours[0] == dkim.CV_Fail and ours[2] == "missing b'b'=", ours


RFC8463 = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
    b"\r\n"
)
RFC8463_KEYS = {"dns": {
    b"brisbane._domainkey.football.example.com.": b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    b"test._domainkey.football.example.com.": (
        b"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
        b"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
        b"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
        b"Ip3G+2kryOTIKT+l/K4w3QIDAQAB"),
}}


def test_rfc8463_example():
    """RFC 8463 Appendix A: the Ed25519 and the (1024-bit) RSA signature of the example
    both verify; a changed body or subject fails both, as with dkimpy."""
    results = _both(RFC8463, RFC8463_KEYS)
    assert results == [(("result", "True"), ("result", "True"))] * 2
    for tampered in (RFC8463.replace(b"hungry", b"angry"), RFC8463.replace(b"dinner", b"lunch")):
        results = _both(tampered, RFC8463_KEYS)
        assert all(ref == ours and ours != ("result", "True") for ref, ours in results)


def _arc_both(message: bytes, keys: dict[str, Any]) -> tuple[Any, Any]:
    def run(checker: Any) -> Any:
        try:
            cv, data, reason = checker.verify(dnsfunc=_dnsfunc(keys))
        except Exception as e:
            return type(e).__name__, str(e)
        return cv, [sorted(r.items()) for r in data], reason

    def ours() -> Any:
        try:
            cv, data, reason = verify_chain(Canon(message), lambda name: _dnsfunc(keys)(name), 1024)
        except Exception as e:
            return type(e).__name__, str(e)
        return cv, [sorted(r.items()) for r in data], reason

    return run(dkim.ARC(message, minkey=1024)), ours()


def test_arc_chains_same_as_dkimpy(keys):
    ar = b"Authentication-Results: fwd.example.test; dkim=pass header.d=example.test; dmarc=pass header.from=example.test\r\n"
    signed = _sign(MESSAGE, keys, b"rsa-sha256", (b"relaxed", b"relaxed"))
    first = ar + signed
    sealed = b"".join(dkim.ARC(first).sign(b"r", b"example.test", keys["rsa"], b"fwd.example.test",
                                           include_headers=[b"from", b"subject", b"to", b"date"])) + first
    ar2 = ar.replace(b"fwd.example.test;", b"list.example.test; arc=pass;")
    second_in = ar2 + sealed.replace(b"Subject: Lunch", b"Subject: [list] Lunch")
    sealed2 = b"".join(dkim.ARC(second_in).sign(b"r", b"example.test", keys["rsa"], b"list.example.test",
                                                include_headers=[b"from", b"subject", b"to"])) + second_in
    outcomes = {}
    for name, message in {"one set": sealed, "two sets": sealed2,
                          "tampered after sealing": sealed2.replace(b"noon", b"one"),
                          "seal edited": sealed2.replace(b"cv=pass", b"cv=none", 1),
                          "no chain": MESSAGE}.items():
        reference, ours = _arc_both(message, keys)
        assert ours == reference, name
        outcomes[name] = ours[0]
    assert outcomes["one set"] == dkim.CV_Pass and outcomes["two sets"] == dkim.CV_Pass
    assert outcomes["tampered after sealing"] == dkim.CV_Fail
    assert outcomes["no chain"] == dkim.CV_None


def _chain(keys: dict[str, Any], hops: int, list_tag_at: int = 0) -> bytes:
    """MESSAGE DKIM-signed, then sealed by ``hops`` forwarders in turn (dkimpy), each
    recording the previous chain as passing; hop ``list_tag_at`` tags the Subject
    before it seals (a mailing list), which breaks the earlier Message-Signatures."""
    message = _sign(MESSAGE, keys, b"rsa-sha256", (b"relaxed", b"relaxed"))
    for hop in range(1, hops + 1):
        ar = (b"Authentication-Results: hop%d.example.test;%s dkim=pass header.d=example.test;"
              b" dmarc=pass header.from=example.test\r\n" % (hop, b" arc=pass;" if hop > 1 else b""))
        message = ar + message
        if hop == list_tag_at:
            message = message.replace(b"Subject: Lunch", b"Subject: [list] Lunch")
        message = b"".join(dkim.ARC(message).sign(b"r", b"example.test", keys["rsa"], b"hop%d.example.test" % hop,
                                                  include_headers=[b"from", b"subject", b"to"])) + message
    return message


def _field_span(message: bytes, name: bytes, instance: int) -> tuple[int, int]:
    """Where the field ``name`` of ARC instance ``instance`` is in ``message`` (with its CRLF)."""
    start = 0
    while True:
        start = message.index(b"\r\n" + name + b": i=%d;" % instance, start) + 2 if start or not \
            message.startswith(name + b": i=%d;" % instance) else 0
        end = start
        while True:
            end = message.index(b"\r\n", end) + 2
            if message[end:end + 1] not in (b" ", b"\t"):
                return start, end


def _edit_field(message: bytes, name: bytes, instance: int, edit: Callable[[bytes], bytes]) -> bytes:
    start, end = _field_span(message, name, instance)
    return message[:start] + edit(message[start:end]) + message[end:]


def test_arc_prepass_tags_same_as_the_fields_own_tags():
    """``arc._prepass_tags`` (i=, d=, s= for the key look-ups, read from the relaxed
    tags verify_chain parses) gives what parsing the field's own value gives: the same
    i= (or the same refusal of it), d=, s=, and a TagListError exactly when that parse
    raises one; on random values of the characters that matter (folding, runs of
    spaces and tabs, bare CR, ";", "=", repeated tags)."""
    import random

    from waypost.mailauth.arc import _prepass_tags

    pieces = [b" ", b"  ", b"\t", b"\r\n ", b"\r\n\t", b" \r\n ", b"\r", b";", b"=", b"i", b"d", b"s", b"i=",
              b"d=", b"s=", b"1", b"2", b"x", b"ex.test", b"\x0b", b"_"]
    rng = random.Random(8617)
    kinds: dict[str, int] = {}
    for _ in range(20000):
        value = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 24)))
        canon = Canon(b"ARC-Seal:" + value + b"\r\nFrom: a@ex.test\r\n\r\nbody\r\n")
        if canon.header_names()[:1] != [b"arc-seal"]:
            continue  # (a value ending in a bare line break: not one field)

        def outcome(get: Callable[[], dict[bytes, bytes]]) -> tuple[Any, ...]:
            try:
                tags = get()
            except TagListError:
                return ("TagListError",)
            try:
                instance: Any = int(tags.get(b"i", b"0"))
            except ValueError:
                instance = "bad i="
            return instance, tags.get(b"d", b""), tags.get(b"s", b"")

        ours = outcome(lambda: _prepass_tags(canon, 0))
        assert ours == outcome(lambda: parse_tags(canon.headers[0][1])), value
        relaxed_differs = outcome(lambda: canon.relaxed_tags(0)) != ours
        kind = ours[0] if ours[0] in ("TagListError", "bad i=") else "parsed"
        kinds[kind + (" (relaxed differs)" if relaxed_differs else "")] = 1 + kinds.get(
            kind + (" (relaxed differs)" if relaxed_differs else ""), 0)
    # Every outcome seen, and the values whose relaxed tags differ (the raw value is
    # parsed for them) too.
    assert all(kinds.get(k, 0) > 100 for k in ("TagListError", "bad i=", "parsed")), kinds
    assert sum(n for k, n in kinds.items() if "differs" in k) > 100, kinds


async def test_verify_arc_on_several_sets_and_broken_seals_same_as_dkimpy(dns, corpus_lookup, keys, monkeypatch):
    """Chains of three sets, intact and broken in the ways a forwarder or an attacker
    breaks them: ``verify_arc`` (the production path: its pre-pass, the key look-ups
    through a real DNS server, verify_chain) gives dkimpy's verdict and reason, and,
    with ``verify_all`` on the same Canon, each signature field's tag list is parsed
    once per message (13 parses for three sets before: each Seal and Message-Signature
    was parsed raw by the pre-pass and relaxed by the chain check)."""
    from waypost.mailauth import canon as canon_module
    from waypost.mailauth.arc import verify_arc

    dns.set("r._domainkey.example.test", "TXT", [txt_strings(keys["dns"][b"r._domainkey.example.test."].decode())])
    three = _chain(keys, 3)

    def flip_b(field: bytes) -> bytes:
        head, _, rest = field.partition(b" b=")
        return head + b" b=" + (b"A" if rest[:1] != b"A" else b"B") + rest[1:]

    cases = {
        "three sets": three,
        "one set": _chain(keys, 1),
        "seal 2 broken": _edit_field(three, b"ARC-Seal", 2, flip_b),
        "seal 1 broken": _edit_field(three, b"ARC-Seal", 1, flip_b),
        "newest message signature broken": _edit_field(three, b"ARC-Message-Signature", 3, flip_b),
        "oldest message signature broken": _edit_field(three, b"ARC-Message-Signature", 1, flip_b),
        "list tag at hop 2": _chain(keys, 3, list_tag_at=2),
        "seal 3 says cv=fail": _edit_field(three, b"ARC-Seal", 3, lambda f: f.replace(b"cv=pass", b"cv=fail")),
        "seal 2 says cv=none": _edit_field(three, b"ARC-Seal", 2, lambda f: f.replace(b"cv=pass", b"cv=none")),
        "set 2 without its seal": _edit_field(three, b"ARC-Seal", 2, lambda f: b""),
        "seal 2 twice": _edit_field(three, b"ARC-Seal", 2, lambda f: f + f),
        "body changed after the last seal": three.replace(b"see you", b"see them"),
        "seal 2 d= folded": _edit_field(three, b"ARC-Seal", 2, lambda f: f.replace(b" d=example.test",
                                                                                  b" d=example\r\n\t.test")),
        "seal 2 s= spaced": _edit_field(three, b"ARC-Seal", 2, lambda f: f.replace(b" s=r;", b" s=r \\t x;")),
        "seal 1 tags repeated once relaxed": _edit_field(three, b"ARC-Seal", 1,
                                                         lambda f: f.replace(b" i=1;", b" i=1; x y=1; x  y=2;")),
        "message signature 2 without b=": _edit_field(
            three, b"ARC-Message-Signature", 2, lambda f: f[:f.index(b" b=")].rstrip(b"\r\n;") + b"\r\n"),
    }
    count = 0
    real = canon_module.parse_tags

    def counting(value: bytes) -> dict[bytes, bytes]:
        nonlocal count
        count += 1
        return real(value)

    monkeypatch.setattr(canon_module, "parse_tags", counting)
    outcomes = {}
    for name, message in cases.items():
        cv, _results, reason = dkim.ARC(message, minkey=1024).verify(dnsfunc=_dnsfunc(keys))
        reference = "pass" if cv == dkim.CV_Pass else "fail"
        count = 0
        canon = Canon(message)
        trace: list[str] = []
        ours = await verify_arc(corpus_lookup, message, trace, canon)
        [dkim_result] = await verify_all(corpus_lookup, message, trace, canon)
        assert dkim_result.result == ("fail" if "body changed" in name or "list tag" in name else "pass"), name
        assert ours.result == reference, (name, ours, reason, trace)
        if ours.result != "pass":
            assert ours.reason == reason, (name, ours, reason)
        fields = sum(1 for n in canon.header_names() if n in (b"arc-seal", b"arc-message-signature",
                                                               b"dkim-signature"))
        folded = name in ("seal 2 d= folded", "seal 2 s= spaced", "seal 1 tags repeated once relaxed")
        assert count == fields + folded, (name, count, fields)  # once each (the raw value too where they differ)
        outcomes[name] = (ours.result, ours.sets, ours.oldest_pass)
    assert outcomes["three sets"] == ("pass", 3, 1) and outcomes["one set"] == ("pass", 1, 1)
    assert outcomes["list tag at hop 2"] == ("pass", 3, 2)  # RFC 8617 §4.4 header.oldest-pass
    assert sum(1 for result, *_ in outcomes.values() if result == "fail") == len(cases) - 3


def test_b_tag_emptied_as_dkimpy_does():
    """Our RE_BTAG (b= emptied for the header hash) replaces exactly what dkimpy's does,
    on random strings of the characters that matter."""
    import random

    from waypost.mailauth.canon import RE_BTAG

    pieces = [b" ", b"\t", b"\r", b"\n", b";", b"b", b"=", b"A", b"/", b"x", b"h", b"\r\n", b"b=", b" b=", b";b="]
    rng = random.Random(6376)
    changed = 0
    for _ in range(20000):
        value = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        ours = RE_BTAG.sub(b"\\1", value)
        assert ours == dkim.RE_BTAG.sub(b"\\1", value), value
        changed += ours != value
    assert changed > 1000


def _outcome_of(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "result", call()
    except Exception as e:
        return type(e).__name__, str(e)


def test_relaxed_canonicalization_and_parsing_same_as_dkimpy():
    """``relaxed_headers``, ``relaxed_body`` and ``parse_message`` give dkimpy's output
    (``Relaxed``, ``rfc822_parse``) octet for octet, exceptions included, on random
    texts of the characters that matter (runs of spaces and tabs, bare CR and LF, empty
    lines, continuation lines, mbox "From " lines, fields without a colon)."""
    import random

    from dkim.canonicalization import Relaxed

    from waypost.mailauth.canon import parse_message, relaxed_body, relaxed_headers

    pieces = [b" ", b"  ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\r\n ", b"\r\n\t", b"a", b"Bc", b":",
              b"From ", b"Subject:", b"x-y:", b"\x7f", b"\xe9", b" \r\n", b"\t\r\n", b"\r\n\r\n\r\n"]
    rng = random.Random(6376)
    kinds: dict[str, int] = {}
    for _ in range(20000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        assert relaxed_body(raw) == Relaxed.canonicalize_body(raw), raw
        fields = [[b"Name ", raw], [b"X", raw + b" \t x"]]
        assert relaxed_headers(fields) == Relaxed.canonicalize_headers(fields), raw
        message = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as Canon has it
        ours, reference = _outcome_of(lambda: parse_message(message)), _outcome_of(lambda: dkim.rfc822_parse(message))
        assert ours == reference, message
        kinds[ours[0]] = kinds.get(ours[0], 0) + 1
    # Both outcomes (a parse, and dkimpy's refusals) were seen many times.
    assert kinds.get("result", 0) > 1000 and kinds.get("MessageFormatError", 0) > 1000, kinds


def test_hash_fields_selects_and_hashes_as_dkimpy():
    """``Canon.hash_fields`` feeds the hash dkimpy's ``hash_headers`` feeds (the fields
    it selects, canonicalized, then the signature field without b=), octet for octet,
    with both algorithms: repeated names in h=, names absent from the message, mixed
    case and folded or spaced values in the message."""
    import random

    from dkim.canonicalization import Relaxed, Simple

    class Record:
        def __init__(self) -> None:
            self.data: list[bytes] = []

        def update(self, data: bytes) -> None:
            self.data.append(data)

    names = [b"From", b"from", b"To", b"Subject", b"ARC-Seal", b"arc-seal", b"X"]
    values = [b" a", b"  b\tc ", b" d\r\n\te", b"\tf  g\r\n h ", b""]
    sigheaders = [(b"DKIM-Signature", b" v=1; h=from:to;\r\n b=AbC/\r\n dEf=; bh=xyz=\r\n"),
                  (b"ARC-Seal", b"\ti=1;  cv=none; \t d=x.test;\r\n\tb=Ab\r\n\t Cd== \t\r\n"),
                  (b"Dkim-Signature ", b" b=;h=from \r\n"), (b"DKIM-Signature", b"b=x; b=y;\r\n")]
    rng = random.Random(5422)
    selected = 0
    for _ in range(3000):
        fields = [(rng.choice(names), rng.choice(values) + b"%d" % i) for i in range(rng.randint(0, 12))]
        include = [rng.choice(names).lower() for _ in range(rng.randint(0, 8))]
        message = b"".join(n + b":" + v + b"\r\n" for n, v in fields) + b"\r\nbody\r\n"
        canon = Canon(message)
        headers = dkim.rfc822_parse(message)[0]
        for algorithm, policy in ((b"simple", Simple), (b"relaxed", Relaxed)):
            ours, reference = Record(), Record()
            sigheader = rng.choice(sigheaders)
            canon.hash_fields(ours, algorithm, list(include), sigheader)
            picked = dkim.hash_headers(reference, policy, policy.canonicalize_headers(headers), include,
                                       sigheader, {})
            assert b"".join(ours.data) == b"".join(reference.data), (message, include, algorithm)
            selected += len(picked)
    assert selected > 10000  # most cases select fields (and some select none)


# -- the production path (verify_all, a real DNS server) against dkimpy, on a corpus --


def _reference_all(message: bytes, records: dict[str, str]) -> list[tuple[str, ...]]:
    """What ``verify_all`` answered when dkimpy verified (its steps, dkimpy's calls)."""
    import re

    normal = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    fields = [v for n, v in dkim.rfc822_parse(normal)[0] if n.lower() == b"dkim-signature"]
    out: list[tuple[str, ...]] = []
    for idx, raw in enumerate(fields[:5]):
        try:
            tags = parse_tag_value(raw)
        except InvalidTagValueList as e:
            out.append(("neutral", f"signature syntax: {e}", "", "", "", ""))
            continue
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace").lower()
        algorithm = tags.get(b"a", b"").decode("ascii", "replace").lower()
        b = re.sub(rb"\s+", b"", tags.get(b"b", b""))[:8].decode("ascii", "replace")
        ident = (domain, selector, algorithm, b)
        missing = [t.decode() for t in REQUIRED_TAGS if not tags.get(t)]
        if missing:
            out.append(("neutral", f"signature lacks {', '.join(t + '=' for t in missing)} (RFC 6376 §3.5)") + ident)
            continue
        if b"from" not in {h.lower() for h in re.split(rb"\s*:\s*", tags[b"h"].strip())}:
            # Our one step ahead of dkimpy (which verifies such a signature): RFC 6376 §6.1.1.
            out.append(("permerror", "From field not signed (RFC 6376 §6.1.1)") + ident)
            continue
        name = f"{selector}._domainkey.{domain}"
        if name not in records:
            out.append(("permerror", f"no key at {name}") + ident)
            continue
        key = records[name].encode()
        try:
            _pk, bits, ktag, _t = dkim.evaluate_pk(name.encode(), key)
        except (dkim.KeyFormatError, binascii.Error, ValueError) as e:
            out.append(("permerror", f"unusable key at {name}: {e}") + ident)
            continue
        if ktag == b"rsa" and bits < MIN_RSA_BITS:
            out.append(("permerror", f"RSA key of {bits} bits (RFC 8301 §3.2: at least {MIN_RSA_BITS})") + ident)
            continue
        try:
            ok = dkim.DKIM(message, minkey=MIN_RSA_BITS).verify(idx=idx, dnsfunc=lambda _n, timeout=5: key)
        except dkim.ValidationError as e:
            result, reason = "fail", str(e)
        except dkim.DKIMException as e:
            result, reason = "neutral", f"signature not usable: {e}"
        except Exception as e:
            result, reason = "neutral", f"signature not usable: {type(e).__name__}: {e}"
        else:
            result, reason = ("pass", "") if ok else ("fail", "signature did not verify")
            if ok and algorithm == "rsa-sha1":
                result, reason = "fail", "rsa-sha1 signature verified, but SHA-1 is not accepted (RFC 8301 §3.1)"
        out.append((result, reason) + ident)
    return out


async def _ours_all(lookup: Any, message: bytes) -> list[tuple[str, ...]]:
    return [(r.result, r.reason, r.domain, r.selector, r.algorithm, r.b)
            for r in await verify_all(lookup, message, [])]


def _der_rsa_public(private_pem: bytes, fmt: Any = serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
    key = serialization.load_pem_private_key(private_pem, None)
    return key.public_key().public_bytes(serialization.Encoding.DER, fmt)


@pytest.fixture(scope="module")
def corpus_keys() -> dict[str, Any]:
    """Signing keys, and the records published for each selector: good ones, and
    records that are bad in every way a verifier meets."""
    rsa_private, rsa_record = _rsa()
    ed_private, ed_record = _ed()
    k1024_private, k1024_record = _rsa(1024)
    # (cryptography will not make a key under 1024 bits; OpenSSL's command will)
    k512_private = subprocess.run(["openssl", "genrsa", "-traditional", "512"], capture_output=True,
                                  check=True).stdout
    k512_record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(_der_rsa_public(k512_private))
    der = _der_rsa_public(rsa_private)
    p = base64.b64encode(der).decode()
    ed_p = ed_record.decode().split("p=")[1]
    records = {
        "r": rsa_record.decode(), "e": ed_record.decode(), "k1024": k1024_record.decode(),
        "k512": k512_record.decode(),
        "nokver": f"p={p}",
        "pkcs1": "v=DKIM1; k=rsa; p=" + base64.b64encode(
            _der_rsa_public(rsa_private, serialization.PublicFormat.PKCS1)).decode(),
        "revoked": "v=DKIM1; k=rsa; p=",
        "badpad": f"v=DKIM1; k=rsa; p={p[:-3]}",
        "truncated": "v=DKIM1; k=rsa; p=" + base64.b64encode(der[:150]).decode(),
        "garbage": "v=DKIM1; k=rsa; p=" + base64.b64encode(b"\x30\x03\x02\x01\x05" + der[5:40]).decode(),
        "dsa": f"v=DKIM1; k=dsa; p={p}",
        "v2": f"v=DKIM2; k=rsa; p={p}",
        "tlsrpt": f"v=DKIM1; k=rsa; s=tlsrpt; p={p}",
        "email": f"v=DKIM1; k=rsa; s=email; p={p}",
        "othersvc": f"v=DKIM1; k=rsa; s=web; p={p}",
        "notags": "v=DKIM1; k=rsa; ==; p=x",
        "dup": f"v=DKIM1; k=rsa; k=rsa; p={p}",
        "edshort": "v=DKIM1; k=ed25519; p=" + base64.b64encode(b"\x01" * 16).decode(),
        "ednop": "v=DKIM1; k=ed25519",
        "edlow": "v=DKIM1; k=ed25519; p=" + base64.b64encode(b"\x01" + b"\x00" * 31).decode(),
        "edswap": f"v=DKIM1; k=ed25519; p={ed_p}",
        "rsa_as_ed": f"v=DKIM1; k=ed25519; p={p}",
    }
    return {"rsa": rsa_private, "ed": ed_private, "k1024": k1024_private, "k512": k512_private,
            "records": {f"{s}._domainkey.example.test": v for s, v in records.items()}, "selectors": list(records)}


@pytest.fixture
def corpus_lookup(settings):
    """A resolver with a time-out that a loaded test host keeps (the corpus compares
    verdicts on keys, not DNS time-outs: a temperror here would be the host's), and
    the worker's answer cache."""
    from waypost.mailauth import AnswerCache, Lookup

    return Lookup(settings.replace("dns", timeout=10.0), cache=AnswerCache())


def _publish(dns: Any, records: dict[str, str]) -> None:
    for name, value in records.items():
        dns.set(name, "TXT", [txt_strings(value)])


BODIES = st.lists(st.sampled_from(["Hello", " ", "  ", "\t", "world.", "", "-- ", "x" * 70, "\r\n", "\n",
                                   "trailing \t", "\u00e9t\u00e9"]), max_size=12)
SIG_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "none": lambda f: f,
    "x past": lambda f: f.replace(b"v=1; ", b"v=1; x=1000000000; ", 1),
    "x before t": lambda f: f.replace(b"v=1; ", b"v=1; x=%d; " % (time.time() + 50000), 1)
    .replace(b" t=", b" t=%d; z=" % (time.time() + 60000), 1),
    "x future": lambda f: f.replace(b"v=1; ", b"v=1; x=%d; " % (time.time() + 86400), 1),
    "t future": lambda f: f.replace(b" t=", b" t=9999999999; y=", 1),
    "v=2": lambda f: f.replace(b"v=1; ", b"v=2; ", 1),
    "a unknown": lambda f: f.replace(b"a=", b"a=rsa-sha512; z=", 1),
    "c bad": lambda f: f.replace(b" c=", b" c=strict/simple; z=", 1),
    "c one": lambda f: f.replace(b" c=", b" c=relaxed; z=", 1),
    "l empty": lambda f: f.replace(b" q=", b" l=; q=", 1),
    "l huge": lambda f: f.replace(b" q=", b" l=99999999; q=", 1),
    "q other": lambda f: f.replace(b" q=dns/txt", b" q=http", 1),
    "i other": lambda f: f.replace(b" i=@", b" i=@other.", 1).replace(b" i=@other.example.test", b" i=@evil.test", 1),
    "i equals d": lambda f: f.replace(b" i=@", b" i=", 1),
    "d special": lambda f: f.replace(b" d=example.test", b" d=exa(mple.test", 1),
    "no h": lambda f: f.replace(b" h=", b" hh=", 1),
    "dup tag": lambda f: f.replace(b"v=1; ", b"v=1; v=1; ", 1),
    "bad tag": lambda f: f.replace(b"v=1; ", b"v=1; 9=x; ", 1),
    "b not base64": lambda f: f.replace(b" b=", b" b=%%", 1),
    "bh odd": lambda f: f.replace(b" bh=", b" bh=A", 1),
    "h with arc-seal": lambda f: f.replace(b" h=", b" h=arc-seal : ", 1),
    "h without from": lambda f: re.sub(rb"(?<=[=:])\s*from\s*(:|;)", lambda m: b"x-from" + m.group(1), f, count=1),
}


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_verify_all_gives_dkimpys_verdicts_on_a_generated_corpus(dns, corpus_lookup, corpus_keys, data):
    """Generated messages, signed by dkimpy (one or two signatures), with a key good or
    bad, a tag edited, the message tampered with: ``verify_all``'s results (verdict,
    reason, d, s, a, b) are those of the dkimpy-based verifier, signature by signature."""
    _publish(dns, corpus_keys["records"])
    body = "\r\n".join(data.draw(BODIES, label="body")).encode() + data.draw(st.sampled_from([b"", b"\r\n"]))
    subject = data.draw(st.sampled_from([b"Lunch", b"Lunch  on\r\n\tFriday", b"x\t y ", b"\xc3\xa9t\xc3\xa9"]))
    message = (b"From: Alice <alice@example.test>\r\nTo: bob@receiver.test\r\nSubject: " + subject +
               b"\r\nDate: Sat, 05 Dec 2026 22:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\n" + body)
    for _ in range(data.draw(st.integers(1, 2), label="signatures")):
        algorithm = data.draw(st.sampled_from([b"rsa-sha256", b"ed25519-sha256", b"rsa-sha1"]))
        # Half with a good key, so that what follows the key (the tags, the hashes) is reached.
        selector = data.draw(st.one_of(st.sampled_from(["r", "e", "k1024", "nokver", "email"]),
                                       st.sampled_from(corpus_keys["selectors"])), label="selector")
        private = corpus_keys["ed"] if algorithm == b"ed25519-sha256" else corpus_keys.get(selector, corpus_keys["rsa"])
        if algorithm == b"ed25519-sha256" and selector in ("k1024", "k512"):
            algorithm = b"rsa-sha256"
            private = corpus_keys[selector]
        canon = (data.draw(st.sampled_from([b"simple", b"relaxed"])), data.draw(st.sampled_from([b"simple", b"relaxed"])))
        field = dkim.DKIM(message, signature_algorithm=algorithm).sign(
            selector.encode(), b"example.test", private, canonicalize=canon, length=data.draw(st.booleans()),
            include_headers=data.draw(st.sampled_from([SIGNED_FIELDS, [b"from"], SIGNED_FIELDS + [b"from", b"x-absent"]])))
        edit = data.draw(st.sampled_from(sorted(SIG_EDITS)), label="edit")
        message = SIG_EDITS[edit](field) + message
    tamper = data.draw(st.sampled_from(sorted(TAMPERINGS)), label="tamper")
    message = TAMPERINGS[tamper](message)
    assert await _ours_all(corpus_lookup, message) == _reference_all(message, corpus_keys["records"])


async def test_corpus_verdicts_are_not_all_alike(dns, corpus_lookup, corpus_keys):
    """The corpus reaches every verdict (the comparison above is not one of two
    verifiers that always say the same thing)."""
    _publish(dns, corpus_keys["records"])
    seen: dict[str, str] = {}
    for selector in corpus_keys["selectors"]:
        private = corpus_keys.get(selector, corpus_keys["rsa"])
        signed = _sign_with(MESSAGE, private, selector)
        for edit in (SIG_EDITS if selector in ("r", "e") else ("none", "x past", "l empty")):
            message = SIG_EDITS[edit](signed[: signed.index(b"From:")]) + signed[signed.index(b"From:"):]
            ours = await _ours_all(corpus_lookup, message)
            assert ours == _reference_all(message, corpus_keys["records"]), (selector, edit)
            seen[f"{selector}/{edit}"] = ours[0][0]
    assert seen["r/none"] == "pass" and seen["r/x past"] == "fail"
    assert seen["r/l empty"] == "neutral" and seen["revoked/none"] == "permerror"
    assert seen["othersvc/none"] == "neutral" and seen["tlsrpt/none"] == "fail"
    assert seen["pkcs1/none"] == "pass" and seen["k512/none"] == "permerror"
    assert seen["r/t future"] == seen["e/x before t"] == "fail" and seen["r/c bad"] == "neutral"
    assert seen["r/h without from"] == seen["e/h without from"] == "permerror"
    assert {seen[f"r/{edit}"] for edit in SIG_EDITS} >= {"pass", "fail", "neutral", "permerror"}


def _sign_with(message: bytes, private: bytes, selector: str) -> bytes:
    algorithm = b"ed25519-sha256" if not private.startswith(b"-----") else b"rsa-sha256"
    return dkim.DKIM(message, signature_algorithm=algorithm).sign(
        selector.encode(), b"example.test", private, canonicalize=(b"relaxed", b"simple"),
        include_headers=SIGNED_FIELDS) + message


PERL_SIGN = r"""
use strict; use Mail::DKIM::Signer; use Mail::DKIM::TextWrap;
my ($keyfile, $method) = @ARGV;
my $dkim = Mail::DKIM::Signer->new(Algorithm => 'rsa-sha256', Method => $method, Domain => 'example.test',
                                   Selector => 'r', KeyFile => $keyfile,
                                   Headers => 'from:to:subject:date:message-id');
local $/; my $msg = <STDIN>; $msg =~ s/\r?\n/\015\012/g;
$dkim->PRINT($msg); $dkim->CLOSE;
print $dkim->signature->as_string, "\015\012", $msg;
"""


@pytest.mark.parametrize("method", ["relaxed", "simple", "relaxed/simple", "simple/relaxed"])
async def test_perl_mail_dkim_signatures_same_as_dkimpy(dns, corpus_lookup, corpus_keys, tmp_path, method):
    """Signatures made by another implementation (Debian's libmail-dkim-perl), as they
    are and tampered with: our verdict is dkimpy's, and the untouched one passes."""
    _publish(dns, corpus_keys["records"])
    keyfile = tmp_path / "r.pem"
    keyfile.write_bytes(corpus_keys["rsa"])
    out = subprocess.run(["perl", "-e", PERL_SIGN, str(keyfile), method], input=MESSAGE, capture_output=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    signed = out.stdout
    assert signed.startswith(b"DKIM-Signature:")
    verdicts = {}
    for name, tamper in TAMPERINGS.items():
        message = tamper(signed)
        ours = await _ours_all(corpus_lookup, message)
        assert ours == _reference_all(message, corpus_keys["records"]), name
        verdicts[name] = ours[0][0]
    assert verdicts["untouched"] == "pass" and verdicts["subject changed"] == "fail"


def test_ed25519_small_order_keys_and_r_refused_as_libsodium_does():
    """dkimpy verifies Ed25519 with libsodium, which refuses a public key or an R of
    small order (any message "verifies" with them under plain RFC 8032 arithmetic, as
    OpenSSL's): the verdict stays False, as dkimpy's."""
    identity = b"\x01" + b"\x00" * 31
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(identity)
    sig = dkim.DKIM(MESSAGE, signature_algorithm=b"ed25519-sha256").sign(
        b"low", b"example.test", _ed()[0], canonicalize=(b"relaxed", b"relaxed"), include_headers=SIGNED_FIELDS)
    forged = _edit_signature(sig + MESSAGE, lambda b: base64.b64encode(identity + b"\x00" * 32))
    keys = {"dns": {b"low._domainkey.example.test.": record}}
    [(reference, ours)] = _both(forged, keys)
    assert reference == ours == ("result", "False")
    # The same forgery against a key of large order: R of small order is refused too.
    _priv, good = _ed()
    keys = {"dns": {b"low._domainkey.example.test.": good}}
    [(reference, ours)] = _both(forged, keys)
    assert reference == ours == ("result", "False")


def test_key_cache_is_keyed_by_record_text_and_bounded():
    """A key is built once per record text; a selector republished with another key
    gets the new key at once (the text is the cache key, not the name); the cache
    never holds more than KEY_CACHE keys."""
    from waypost.mailauth import dkimverify

    name = b"s._domainkey.example.test."
    first, second = _ed()[1], _ed()[1]
    key = public_key(name, first)
    assert public_key(name, first) is key
    assert public_key(name, second) is not key and public_key(name, second).ed is not None
    for _ in range(dkimverify.KEY_CACHE + 20):
        public_key(name, _ed()[1])
    assert len(dkimverify._keys) <= dkimverify.KEY_CACHE
    with pytest.raises(KeyUnusable, match="bad version"):  # refusals are kept too, and raised each time
        public_key(name, b"v=DKIM2; p=x")
    with pytest.raises(KeyUnusable, match="bad version"):
        public_key(name, b"v=DKIM2; p=x")


@hsettings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=70 * 1024), st.sampled_from(["sha1", "sha256"]))
def test_a_body_hashed_in_pieces_has_the_digest_of_the_whole(size: int, name: str) -> None:
    """``held_digest`` (the body hash that keeps the GIL) around the piece size and past
    the size it hashes in one call: the digest is hashlib's of the whole body."""
    import hashlib

    from waypost.mailauth.canon import held_digest

    data = bytes(i % 251 for i in range(size))
    assert held_digest(getattr(hashlib, name), data) == hashlib.new(name, data).digest()
    for edge in (2046, 2047, 2048, 4094, 4095, 65536, 65537):
        data = b"x" * edge
        assert held_digest(getattr(hashlib, name), data) == hashlib.new(name, data).digest()


def test_an_rsa_signature_with_a_wrong_digest_or_padding_fails() -> None:
    """The RSA check rebuilds the encoded digest (RFC 8017 §8.2.2) and compares: a
    signature of another digest, or a block that is not PKCS #1 v1.5, does not pass."""
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    from waypost.mailauth.dkimverify import PublicKey, _rsa_verify

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    pub = PublicKey(b"rsa", 2048, False, numbers.n, numbers.e)
    h = hashlib.sha256(b"signed text")
    good = key.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    assert _rsa_verify(pub, h, good, 1024)
    other = key.sign(hashlib.sha256(b"other text").digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    assert not _rsa_verify(pub, h, other, 1024)
    pss = key.sign(h.digest(), padding.PSS(padding.MGF1(hashes.SHA256()), 32), utils.Prehashed(hashes.SHA256()))
    assert not _rsa_verify(pub, h, pss, 1024)
    assert not _rsa_verify(pub, h, good[:-1] + bytes([good[-1] ^ 1]), 1024)
    with pytest.raises(KeyUnusable, match="public key too small"):
        _rsa_verify(pub, h, good, 4096)
