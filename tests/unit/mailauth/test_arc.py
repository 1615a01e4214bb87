"""ARC (RFC 8617): our seals checked by two independent verifiers (dkimpy's, and Perl's
Mail::DKIM from Debian's libmail-dkim-perl, run as a separate program against the test
DNS server), chains sealed by those tools checked by us, broken and tampered chains,
and the trusted-sealer override of a DMARC failure."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import dkim
import pytest

from support.mailauth import MESSAGE, add_key
from waypost.mailauth import Lookup, Sealer, should_seal
from waypost.mailauth.arc import MAX_SETS, verify_arc
from waypost.mailauth.verdict import check_message

CLIENT = "192.0.2.10"
STRANGER = "198.51.100.99"
#: The Authentication-Results our inbound check put in (mailauth.inbound = tag|enforce).
OUR_AR = (b"Authentication-Results: mx.receiver.test;\r\n\tspf=pass smtp.mailfrom=alice@example.test;\r\n"
          b"\tdkim=none;\r\n\tdmarc=pass (p=reject dis=none) header.from=example.test\r\n")

PERL_VERIFY = r"""
use strict; use Mail::DKIM::ARC::Verifier; use Mail::DKIM::DNS; use Net::DNS::Resolver;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0],
                                                   recurse => 1, udp_timeout => 3, tcp_timeout => 3));
my $msg = do { local $/; <STDIN> }; $msg =~ s/\r?\n/\r\n/g;
my $arc = Mail::DKIM::ARC::Verifier->new(Strict => 1);
$arc->PRINT($msg); $arc->CLOSE;
print $arc->result, "\n", ($arc->result_detail // ''), "\n";
"""

PERL_SEAL = r"""
use strict; use Mail::DKIM::ARC::Signer; use Mail::DKIM::PrivateKey;
my $msg = do { local $/; <STDIN> }; $msg =~ s/\r?\n/\r\n/g;
my $arc = Mail::DKIM::ARC::Signer->new(Algorithm => 'rsa-sha256', Domain => $ARGV[0], Selector => $ARGV[1],
    SrvId => $ARGV[2], KeyFile => $ARGV[3], Chain => 'ar', Headers => 'from:subject:to:date:message-id');
$arc->PRINT($msg); $arc->CLOSE;
die 'not sealed: ' . $arc->result . ' ' . ($arc->result_detail // '') unless $arc->result eq 'sealed';
print join("\r\n", $arc->as_strings), "\r\n";
"""


def perl_available() -> bool:
    return shutil.which("perl") is not None and subprocess.run(
        ["perl", "-MMail::DKIM::ARC::Verifier", "-e", "1"], capture_output=True).returncode == 0


needs_perl = pytest.mark.skipif(not perl_available(), reason="Debian's libmail-dkim-perl (Makefile DEBIAN_TEST_TOOLS)")


def perl_verify(dns, message: bytes) -> str:
    out = subprocess.run(["perl", "-e", PERL_VERIFY, str(dns.port)], input=message, capture_output=True,
                         timeout=60, check=True)
    return out.stdout.decode()


def dkimpy_verify(server, message: bytes) -> tuple[bytes, str]:
    """dkimpy's own ARC verifier, with TXT answers taken from the test DNS server."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = ["127.0.0.1"], server.port

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), "TXT")
        except Exception:
            return None
        return b"".join(b"".join(r.strings) for r in answer)

    cv, _results, reason = dkim.arc_verify(message, dnsfunc=txt)
    return cv, reason


@pytest.fixture
def sealer(db, secrets, dns):
    add_key(db, secrets, dns, "receiver.test", "arc1")
    return Sealer(db, secrets, "mx.receiver.test")


def test_our_seal_verifies_with_dkimpy_and_mail_dkim(sealer, dns):
    sealed = sealer.seal(OUR_AR + MESSAGE, "q1")
    head = sealed.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=receiver.test; s=arc1;")
    assert b"ARC-Message-Signature: i=1;" in head and b"ARC-Authentication-Results: i=1; mx.receiver.test;" in head
    assert b"dmarc=pass" in head.split(b"ARC-Authentication-Results:", 1)[1]
    assert dkimpy_verify(dns, sealed) == (dkim.CV_Pass, "success")
    if perl_available():
        assert perl_verify(dns, sealed).split("\n")[0] == "pass"


@needs_perl
def test_a_second_seal_over_a_changed_message_still_passes_both_verifiers(sealer, dns, db, secrets):
    first = sealer.seal(OUR_AR + MESSAGE, "q1")
    # The next hop (a list) adds a footer, checks the chain (pass) and seals again.
    add_key(db, secrets, dns, "lists.test", "l1")
    footer = first + b"-- \r\nlist footer\r\n"
    hop_ar = b"Authentication-Results: lists.test; arc=pass smtp.remote-ip=192.0.2.10\r\n"
    second = Sealer(db, secrets, "lists.test").seal(hop_ar + footer, "q2")
    assert b"ARC-Seal: i=2; cv=pass;" in second
    assert dkimpy_verify(dns, second) == (dkim.CV_Pass, "success")
    assert perl_verify(dns, second).split("\n")[0] == "pass"


async def test_our_verifier_on_sealed_tampered_and_absent_chains(sealer, dns, settings):
    sealed = sealer.seal(OUR_AR + MESSAGE, "q1")
    trace: list[str] = []
    res = await verify_arc(Lookup(settings), sealed, trace)
    assert (res.result, res.sets, res.sealers, res.oldest_pass) == ("pass", 1, ["receiver.test"], 1)
    tampered = sealed.replace(b"Hello there.", b"Hello there!")
    res = await verify_arc(Lookup(settings), tampered, [])
    assert res.result == "fail" and "Message-Signature" in res.reason
    # A changed ARC-Authentication-Results breaks the Seal.
    assert sealed.index(b"spf=pass") < sealed.index(b"\r\nAuthentication-Results:")  # in the AAR
    forged = sealed.replace(b"spf=pass", b"spf=fail", 1)
    assert (await verify_arc(Lookup(settings), forged, [])).result == "fail"
    res = await verify_arc(Lookup(settings), MESSAGE, trace)
    assert res.result == "none" and "arc: no ARC fields: none" in trace


@needs_perl
async def test_a_chain_sealed_by_mail_dkim_passes_here(db, secrets, dns, settings, tmp_path):
    from waypost.mailauth.keys import generate_key, dns_record
    from support.mailauth import txt_strings

    key = generate_key("rsa")
    (tmp_path / "k.pem").write_text(key.private)
    dns.set("perl1._domainkey.forwarder.test", "TXT", [txt_strings(dns_record("rsa", key.public))])
    ar = b"Authentication-Results: fwd.forwarder.test; spf=pass smtp.mailfrom=alice@example.test\r\n"
    out = subprocess.run(["perl", "-e", PERL_SEAL, "forwarder.test", "perl1", "fwd.forwarder.test",
                          str(tmp_path / "k.pem")], input=ar + MESSAGE, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr.decode()
    sealed = out.stdout + ar + MESSAGE
    res = await verify_arc(Lookup(settings), sealed, [])
    assert (res.result, res.sealers) == ("pass", ["forwarder.test"]), res.reason
    res = await verify_arc(Lookup(settings), sealed.replace(b"Subject: hello", b"Subject: hullo"), [])
    assert res.result == "fail"


async def test_bad_input_is_a_fail_never_a_crash(sealer, dns, settings):
    sealed = sealer.seal(OUR_AR + MESSAGE, "q1")
    cases = [
        b"ARC-Seal: i=1; cv=none; a=rsa-sha256; d=x.test; s=s; b=!!!\r\n" + MESSAGE,       # no AMS, no AAR
        b"ARC-Seal: garbage without tags\r\n" + MESSAGE,
        b"ARC-Seal: i=x; cv=none\r\n" + MESSAGE,
        sealed.replace(b"cv=none", b"cv=pass"),                                            # i=1 must say none
        sealed.replace(b"s=arc1", b"s=nokey"),                                             # no key in DNS
    ]
    for data in cases:
        res = await verify_arc(Lookup(settings), data, [])
        assert res.result == "fail", (data[:80], res)
    many = b"".join(f"ARC-Authentication-Results: i={i}; x.test; spf=pass\r\n".encode()
                    for i in range(1, MAX_SETS + 2)) + MESSAGE
    res = await verify_arc(Lookup(settings), many, [])
    assert res.result == "fail" and "more than" in res.reason
    dns.fail("arc1._domainkey.receiver.test", "SERVFAIL")
    res = await verify_arc(Lookup(settings), sealed, [])
    assert res.result == "fail" and "for now" in res.reason


def test_no_seal_without_our_authentication_results_or_key(db, secrets, dns, sealer):
    foreign = b"Authentication-Results: elsewhere.test; spf=pass smtp.mailfrom=a@example.test\r\n" + MESSAGE
    assert sealer.seal(foreign, "q") == foreign
    assert not sealer.has_our_results(foreign) and sealer.has_our_results(OUR_AR + MESSAGE)
    assert Sealer(db, secrets, "mx.nokey.test").seal(OUR_AR + MESSAGE) == OUR_AR + MESSAGE
    assert should_seal({"client": "203.0.113.5", "auth": None}, ["mx:example.net"]) is None
    assert should_seal({"client": "203.0.113.5", "auth": None}, ["local"]) == "no remote recipient"
    assert should_seal({"client": "203.0.113.5", "auth": "ann@example.test"}, ["mx:example.net"]) is not None
    assert should_seal({"client": "local"}, ["mx:example.net"]) is not None


async def test_trusted_sealer_turns_a_dmarc_failure_into_disposition_none(db, secrets, dns, settings):
    """example.test publishes p=reject; a list at lists.test received the message with
    DMARC pass, added a footer (the author's signature breaks) and sent it on from its
    own address (SPF does not align): DMARC fails here, unless lists.test is trusted."""
    dns.set("example.test", "TXT", ["v=spf1 ip4:192.0.2.10 -all"])
    dns.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=reject"])
    dns.set("lists.test", "TXT", ["v=spf1 ip4:198.51.100.99 -all"])
    add_key(db, secrets, dns, "lists.test", "l1")
    list_ar = (b"Authentication-Results: mx.lists.test; spf=pass smtp.mailfrom=alice@example.test;\r\n"
               b"\tdmarc=pass header.from=example.test\r\n")
    sealed = Sealer(db, secrets, "mx.lists.test").seal(list_ar + MESSAGE + b"-- \r\nfooter\r\n")
    v = await check_message(settings, sealed, STRANGER, "mx.lists.test", "list-bounces@lists.test")
    assert (v.arc.result, v.dmarc.result, v.dmarc.disposition) == ("pass", "fail", "reject")
    assert "arc=pass (1 set, sealed by lists.test) header.oldest-pass=1 smtp.remote-ip=198.51.100.99" in v.header
    trusted = dataclasses.replace(settings, mailauth=dataclasses.replace(settings.mailauth,
                                                                         arc_trusted_sealers=["lists.test"]))
    v = await check_message(trusted, sealed, STRANGER, "mx.lists.test", "list-bounces@lists.test")
    assert (v.dmarc.result, v.dmarc.disposition, v.dmarc.override) == ("fail", "none", "arc trusted sealer lists.test")
    assert "dmarc=fail (p=reject dis=none arc trusted sealer lists.test)" in v.header
    # A trusted sealer's chain that is broken, or a set that did not record a pass, is no override.
    v = await check_message(trusted, sealed.replace(b"footer", b"footer!"), STRANGER, "mx.lists.test",
                            "list-bounces@lists.test")
    assert (v.arc.result, v.dmarc.disposition) == ("fail", "reject")
    other = Sealer(db, secrets, "mx.lists.test").seal(
        list_ar.replace(b"dmarc=pass", b"dmarc=fail") + MESSAGE + b"-- \r\nfooter\r\n")
    v = await check_message(trusted, other, STRANGER, "mx.lists.test", "list-bounces@lists.test")
    assert (v.arc.result, v.dmarc.disposition) == ("pass", "reject")


def test_a_dkim_signed_message_is_sealed(sealer, dns, db, secrets):
    """The author's DKIM-Signature stays out of the AMS h= (dkimpy refuses it there):
    a signed message from outside is sealed, not left unsealed."""
    from waypost.mailauth import Signer

    add_key(db, secrets, dns, "example.test", "s1")
    signed = Signer(db, secrets).sign(MESSAGE)
    sealed = sealer.seal(OUR_AR + signed, "q3")
    assert sealed.startswith(b"ARC-Seal: i=1; cv=none;")
    assert dkimpy_verify(dns, sealed) == (dkim.CV_Pass, "success")


def test_openssl_seal_is_dkimpys_octet_for_octet(db, secrets, dns):
    """``arc_sign`` (the RSA operations by OpenSSL) writes exactly the set dkimpy's own
    ``ARC.sign`` writes (RSASSA-PKCS1-v1_5 is deterministic): a first set, a second one
    over a chain that passed, and one over a failed chain; then dkimpy verifies it."""
    from waypost.mailauth.arc import arc_sign

    key = add_key(db, secrets, dns, "receiver.test", "arcx")
    pem = secrets.open(key.private_key).encode("ascii")
    fields = [b"from", b"to", b"subject", b"date", b"message-id"]
    first = b"".join(arc_sign(OUR_AR + MESSAGE, b"arcx", b"receiver.test", pem, b"mx.receiver.test", fields,
                              timestamp=1765000000)) + OUR_AR + MESSAGE
    cases = {
        "first": OUR_AR + MESSAGE,
        "second": b"Authentication-Results: mx.receiver.test; arc=pass\r\n" + first,
        "after a failure": b"Authentication-Results: mx.receiver.test; arc=fail\r\n" + first,
    }
    for name, message in cases.items():
        ours = arc_sign(message, b"arcx", b"receiver.test", pem, b"mx.receiver.test", fields, timestamp=1765000000)
        reference = dkim.ARC(message, linesep=b"\r\n").sign(b"arcx", b"receiver.test", pem, b"mx.receiver.test",
                                                           include_headers=fields, timestamp=1765000000)
        assert ours and ours == reference, name
    assert dkimpy_verify(dns, first) == (dkim.CV_Pass, "success")
    # No Authentication-Results of ours: no set, as dkimpy.
    assert arc_sign(MESSAGE, b"arcx", b"receiver.test", pem, b"mx.receiver.test", fields) == []
