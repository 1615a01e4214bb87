"""``mailauth.fastverify`` (OpenSSL's RSA and Ed25519, one canonicalization per message)
gives the verdict dkimpy's own verifier gives, signature by signature: good, tampered,
``l=``, every simple/relaxed combination, odd signatures and keys, ARC chains, and the
published example of RFC 8463 (Appendix A)."""

from __future__ import annotations

import base64
from typing import Any, Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from waypost.mailauth.fastverify import Canon, FastARC, FastDKIM

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


def _outcome(call: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "result", repr(call())
    except Exception as e:  # the exception is a verdict too: it must be the same one
        return type(e).__name__, str(e)


def _both(message: bytes, keys: dict[str, Any], minkey: int = 1024) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """(dkimpy's outcome, ours) for every DKIM-Signature of ``message``; ours share one Canon."""
    count = sum(1 for name, _v in dkim.rfc822_parse(message)[0] if name.lower() == b"dkim-signature")
    canon = Canon(message)
    fast = FastDKIM(canon, minkey)
    out = []
    for idx in range(count):
        reference = _outcome(lambda: dkim.DKIM(message, minkey=minkey).verify(idx=idx, dnsfunc=_dnsfunc(keys)))
        ours = _outcome(lambda: fast.verify(idx=idx, dnsfunc=_dnsfunc(keys)))
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
    assert seen["body changed"][0] == "ValidationError"
    assert seen["body appended"] == (("result", "True") if length else seen["body changed"][:1] + seen["body appended"][1:])
    assert seen["subject refolded"] == (("result", "True") if canon[0] == b"relaxed" else ("result", "False"))
    if canon[1] == b"relaxed":
        assert seen["body whitespace"] == ("result", "True")
    else:
        assert seen["body whitespace"][0] == "ValidationError"


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
    assert all(ours[0] == "ValidationError" for _ref, ours in broken)


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
    assert ours[0] == "KeyFormatError"  # under minkey
    for name, message in cases.items():
        [(reference, ours)] = _both(message, keys)
        assert ours == reference, name
        outcomes[name] = ours
    assert outcomes["rsa plus modulus"] == ("result", "True")  # as dkimpy: s is taken mod n
    assert outcomes["rsa flipped"] == ("result", "False")
    assert outcomes["ed flipped"] == ("result", "False")


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

    return run(dkim.ARC(message, minkey=1024)), run(FastARC(Canon(message), 1024))


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


def test_b_tag_emptied_as_dkimpy_does():
    """Our RE_BTAG (b= emptied for the header hash) replaces exactly what dkimpy's does,
    on random strings of the characters that matter."""
    import random

    from waypost.mailauth.fastverify import RE_BTAG

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

    from waypost.mailauth.fastverify import parse_message, relaxed_body, relaxed_headers

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


def test_select_headers_same_as_dkimpy():
    """``select_headers`` with the names given picks dkimpy's fields (repeated names in
    h=, names absent from the message, mixed case in the message)."""
    import random

    from waypost.mailauth.fastverify import select_headers

    names = [b"From", b"from", b"To", b"Subject", b"ARC-Seal", b"arc-seal", b"X"]
    rng = random.Random(5422)
    for _ in range(5000):
        headers = [(rng.choice(names), b"v%d" % i) for i in range(rng.randint(0, 12))]
        include = [rng.choice(names).lower() for _ in range(rng.randint(0, 8))]
        assert select_headers(headers, [x[0].lower() for x in headers], include) == \
            dkim.select_headers(headers, include), (headers, include)
