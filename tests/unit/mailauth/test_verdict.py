"""The inbound verdict (check_message): SPF for MAIL FROM and HELO, DKIM, DMARC with
alignment and the published policy, the Authentication-Results field, and bad input:
DNS time-outs (temperror), looping and oversized SPF records, DMARC syntax errors."""

from __future__ import annotations

import asyncio
import random

import pytest

from support.mailauth import MESSAGE, add_key
from waypost.mailauth import AnswerCache, Lookup, Signer
from waypost.mailauth.dmarc import DMARCSyntaxError, aligned, parse_record
from waypost.mailauth.spf import MAX_DNS_MECHANISMS, check_spf
from waypost.mailauth.verdict import check_message

CLIENT = "192.0.2.10"      # example.test's A record (see the dns fixture)
STRANGER = "198.51.100.99"


@pytest.fixture
def zone(dns):
    dns.set("example.test", "TXT", ["v=spf1 a -all"])
    dns.set("mx.example.test", "A", [CLIENT])
    dns.set("mx.example.test", "TXT", ["v=spf1 a -all"])
    return dns


async def test_dmarc_pass_by_aligned_dkim_and_spf(db, secrets, zone, settings):
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject; rua=mailto:d@example.test"])
    add_key(db, secrets, zone, "example.test", "s1")
    signed = Signer(db, secrets).sign(MESSAGE)
    v = await check_message(settings, signed, CLIENT, "mx.example.test", "bounce@example.test")
    assert v.spf.result == "pass" and v.helo is not None and v.helo.result == "pass"
    assert [d.result for d in v.dkim] == ["pass"]
    assert (v.dmarc.result, v.dmarc.policy, v.dmarc.disposition) == ("pass", "reject", "none")
    assert v.header.startswith("Authentication-Results: mx.receiver.test;\r\n\t")
    assert "spf=pass smtp.mailfrom=bounce@example.test" in v.header
    assert "spf=pass smtp.helo=mx.example.test" in v.header
    assert "dkim=pass header.d=example.test header.s=s1 header.a=rsa-sha256 header.b=" in v.header
    assert "dmarc=pass (p=reject dis=none) header.from=example.test" in v.header
    assert v.header.endswith("\r\n") and all(len(line) < 998 for line in v.header.split("\r\n"))
    assert any("dmarc:" in line and "pass" in line for line in v.trace)


async def test_dmarc_pass_by_relaxed_spf_alone_and_strict_alignment_refuses_it(zone, settings):
    zone.set("bounces.example.test", "TXT", ["v=spf1 ip4:192.0.2.0/24 -all"])
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject"])
    v = await check_message(settings, MESSAGE, CLIENT, "mx.example.test", "b@bounces.example.test")
    assert (v.spf.result, v.dmarc.result) == ("pass", "pass")
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject; aspf=s"])
    v = await check_message(settings, MESSAGE, CLIENT, "mx.example.test", "b@bounces.example.test")
    assert (v.dmarc.result, v.dmarc.disposition) == ("fail", "reject")
    assert "not aligned" in v.dmarc.reason


async def test_dmarc_fail_reject_and_quarantine(zone, settings):
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject"])
    v = await check_message(settings, MESSAGE, STRANGER, "mail.stranger.test", "alice@example.test")
    assert v.spf.result == "fail" and v.dkim == []
    assert (v.dmarc.result, v.dmarc.policy, v.dmarc.disposition) == ("fail", "reject", "reject")
    assert "spf=fail" in v.header and "dkim=none" in v.header
    assert "dmarc=fail (p=reject dis=reject) header.from=example.test" in v.header
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=quarantine"])
    v = await check_message(settings, MESSAGE, STRANGER, "mail.stranger.test", "alice@example.test")
    assert (v.dmarc.result, v.dmarc.disposition) == ("fail", "quarantine")


async def test_sub_domain_policy_and_pct(zone, settings):
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject; sp=quarantine; pct=0"])
    msg = MESSAGE.replace(b"alice@example.test", b"alice@news.example.test")
    v = await check_message(settings, msg, STRANGER, "h.stranger.test", "x@news.example.test")
    # Found at the organisational domain: sp applies; pct=0: the next milder policy.
    assert (v.dmarc.result, v.dmarc.record_domain, v.dmarc.policy, v.dmarc.disposition) == \
        ("fail", "example.test", "quarantine", "none")
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject; pct=50"])
    dispositions = set()
    rng = random.Random(7)
    for _ in range(30):
        v = await check_message(settings, MESSAGE, STRANGER, "h.stranger.test", "x@example.test", rng=rng)
        dispositions.add(v.dmarc.disposition)
    assert dispositions == {"reject", "quarantine"}


async def test_no_policy_and_no_from(zone, settings):
    v = await check_message(settings, MESSAGE, STRANGER, "h.stranger.test", "alice@example.test")
    assert (v.dmarc.result, v.dmarc.reason) == ("none", "no policy published")
    v = await check_message(settings, b"Subject: x\r\n\r\nbody\r\n", STRANGER, "h.stranger.test", "")
    assert v.dmarc.result == "none" and "no From" in v.dmarc.reason


@pytest.mark.parametrize("record,problem", [
    ("v=DMARC1; p=block", "p='block'"),
    ("v=DMARC1; p=reject; adkim=x", "adkim"),
    ("v=DMARC1; p=reject; pct=150", "pct"),
    ("v=DMARC1; p=reject; p=none", "twice"),
    ("v=DMARC1; p=reject; garbage", "not tag=value"),
])
async def test_dmarc_syntax_errors_are_permerror(zone, settings, record, problem):
    zone.set("_dmarc.example.test", "TXT", [record])
    v = await check_message(settings, MESSAGE, STRANGER, "h.stranger.test", "alice@example.test")
    assert v.dmarc.result == "permerror" and problem in v.dmarc.reason
    assert "dmarc=permerror" in v.header


def test_dmarc_record_parsing_edges():
    # RFC 7489 §6.6.3 step 6: a bad p with a valid rua is p=none.
    assert parse_record("v=DMARC1; p=bogus; rua=mailto:x@example.test").p == "none"
    assert parse_record("v=DMARC1;p=reject;sp=none;adkim=s").sp == "none"
    with pytest.raises(DMARCSyntaxError):
        parse_record("v=DMARC2; p=reject")
    with pytest.raises(DMARCSyntaxError):
        parse_record("v=DMARC1; p=reject; x=" + "y" * 3000)
    assert aligned("mail.example.co.uk", "example.co.uk", "r")
    assert not aligned("other.co.uk", "example.co.uk", "r")  # co.uk is a public suffix
    assert not aligned("mail.example.test", "example.test", "s")


async def test_dns_timeouts_are_temperror(db, secrets, zone, settings):
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject"])
    zone.drop("example.test", "TXT")  # the SPF record cannot be fetched
    v = await check_message(settings, MESSAGE, STRANGER, "h.stranger.test", "alice@example.test")
    assert v.spf.result == "temperror"
    # DMARC cannot pass without SPF or DKIM, but SPF may pass later: temperror (451), not fail (550).
    assert v.dmarc.result == "temperror" and v.dmarc.disposition == "none"
    assert "spf=temperror" in v.header and "dmarc=temperror" in v.header
    zone.heal("example.test")
    zone.drop("_dmarc.example.test")
    v = await check_message(settings, MESSAGE, CLIENT, "mx.example.test", "alice@example.test")
    assert v.spf.result == "pass" and v.dmarc.result == "temperror"


async def test_spf_loops_and_limits_are_permerror(zone, settings):
    lookup = Lookup(settings)
    zone.set("loop.test", "TXT", ["v=spf1 include:loop.test -all"])
    r = await check_spf(lookup, STRANGER, "a@loop.test", "h")
    assert r.result == "permerror" and f"more than {MAX_DNS_MECHANISMS}" in r.reason
    assert zone.queries.count(("loop.test", "TXT", "udp")) == MAX_DNS_MECHANISMS + 1  # then it stopped
    zone.set("many.test", "TXT", ["v=spf1 " + " ".join(f"a:h{i}.many.test" for i in range(11)) + " -all"])
    for i in range(11):
        zone.set(f"h{i}.many.test", "A", ["203.0.113.1"])
    r = await check_spf(lookup, STRANGER, "a@many.test", "h")
    assert r.result == "permerror" and "(a:h10.many.test)" in r.reason
    zone.set("void.test", "TXT", ["v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"])
    r = await check_spf(lookup, STRANGER, "a@void.test", "h")
    assert r.result == "permerror" and "void look-ups" in r.reason
    zone.set("two.test", "TXT", ["v=spf1 -all", "v=spf1 +all"])
    assert (await check_spf(lookup, STRANGER, "a@two.test", "h")).result == "permerror"
    # One record of 26 strings, 4,800 octets: over UDP's size, fetched over TCP, refused.
    zone.set("big.test", "TXT", [["v=spf1 "] + ["ip4:203.0.113.1 " * 12] * 25])
    r = await check_spf(lookup, STRANGER, "a@big.test", "h")
    assert r.result == "permerror" and "longer than" in r.reason


async def test_null_sender_uses_the_helo_identity(zone, settings):
    v = await check_message(settings, MESSAGE, CLIENT, "mx.example.test", "")
    assert v.spf.result == "pass" and v.spf.domain == "mx.example.test"
    assert "smtp.mailfrom" not in v.header and "spf=pass smtp.helo=mx.example.test" in v.header
    v = await check_message(settings, MESSAGE, CLIENT, "[192.0.2.10]", "")
    assert v.helo is None and v.spf.result == "none"


async def test_authentication_results_cannot_be_forged_through_its_values(zone, settings):
    """What the client chose (HELO, MAIL FROM, a signature's d= and s=) is quoted or
    cleaned: it can never add a method result of its own to the field (RFC 8601 §2.2)."""
    evil_sig = (b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test;dkim=pass; s=a(b)c; h=from; bh=AAAA; b=AAAA\r\n")
    v = await check_message(settings, evil_sig + MESSAGE, STRANGER, "h;dkim=pass", 'a"b;spf=pass@example.test')
    fields = v.header.split(";\r\n\t")
    assert fields[0] == "Authentication-Results: mx.receiver.test"
    assert [f.split("=", 1)[0].split()[0] for f in fields[1:]] == ["spf", "spf", "dkim", "dmarc"]
    assert 'smtp.mailfrom="a\\"b;spf=pass@example.test"' in v.header
    assert 'smtp.helo="h;dkim=pass"' in v.header
    assert "\r\n" not in v.header[:-2].replace(";\r\n\t", "")


def test_field_values_are_header_fields_of_that_name():
    """``field_values`` (the From scan of every check) keeps exactly the fields of that
    name ``header_fields`` gives, on random header sections (continuation lines after a
    From, after another field, after a line without a colon, before any field)."""
    import random

    from waypost.mailauth.sign import field_values, header_fields

    pieces = [b"From: a@b.test", b"from :x", b"FROM:", b"To: c", b"\r\n", b"\r\n ", b"\r\n\t", b" y", b"garbage",
              b"\xe9", b":", b"\r\n\r\n", b"Fromage: no", b"Fr\xc3\xb6m: z", b"\xefrom: w", b"\x0bfrom\r: v"]
    rng = random.Random(5322)
    seen = 0
    for _ in range(5000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        expected = [f for f in header_fields(data) if f[0] == "from"]
        assert field_values(data, "from") == expected, data
        seen += bool(expected)
    assert seen > 1000


def test_comment_keeps_what_the_character_filter_kept():
    """``_comment`` (one str.translate) leaves out exactly the characters the former
    per-character filter did: those below " " and "(", ")", "\\"; 200 at most."""
    import random

    from waypost.mailauth.verdict import _comment

    def reference(text: str) -> str:
        clean = "".join(ch for ch in text if ch >= " " and ch not in "()\\")
        return f" ({clean[:200]})" if clean else ""

    alphabet = [chr(c) for c in range(0x00, 0x80)] + ["\u00e9", "\u2028", "\x7f", "\x85", "\U0001f600"]
    rng = random.Random(8601)
    dropped = 0
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 260)))
        assert _comment(text) == reference(text), text
        dropped += len(_comment(text)) < len(text) + 3
    assert dropped > 1000


async def test_checks_at_once_on_one_lookup_count_their_own_queries(zone, settings):
    # The SMTP worker's checks share one Lookup (and its cache); while one waits for an
    # answer, another runs.  Each verdict says what its own check asked, as alone.
    zone.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=none"])
    zone.set("other.test", "TXT", ["v=spf1 include:example.test -all"])
    zone.set("_dmarc.other.test", "TXT", ["v=DMARC1; p=none"])
    other = MESSAGE.replace(b"example.test>", b"other.test>", 1)
    alone = [await check_message(settings, MESSAGE, CLIENT, "mx.example.test", "a@example.test"),
             await check_message(settings, other, CLIENT, "mx.example.test", "b@other.test")]
    assert all(v.dns_queries > 0 for v in alone)
    shared = Lookup(settings, cache=AnswerCache())
    together = await asyncio.gather(
        check_message(settings, MESSAGE, CLIENT, "mx.example.test", "a@example.test", shared),
        check_message(settings, other, CLIENT, "mx.example.test", "b@other.test", shared))
    assert [v.dns_queries for v in together] == [v.dns_queries for v in alone]
    assert [v.header for v in together] == [v.header for v in alone]
    assert shared.queries == 0  # each check counted on its own view, none on the shared one
