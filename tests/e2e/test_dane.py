"""DANE for SMTP (RFC 7672) end to end: Waypost ``a`` delivers to Waypost ``b`` with
TLSA records served by the DNS server on 127.0.0.1, which sets the AD bit for the
names it is told are "secure" (as a validating resolver on this host would); ``a``
trusts that bit (``dns.trust_ad``, allowed for a resolver on 127.0.0.1 only).
DANE-EE and DANE-TA records that match deliver; a wrong key, a certificate without
the MX name under DANE-TA and a failed TLSA look-up defer; an insecure MX set or
TLSA set is no DANE."""

from __future__ import annotations

import hashlib
import os
import smtplib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, wait_for
from support.tls import CA
from waypost.config import ConfigError, load_settings

HOSTS = ["mail.remote.test", "mx-ta.remote.test", "mx-other.remote.test", "mx-bad.remote.test",
         "mx-u.remote.test", "mx-f.remote.test"]
DOMAINS = {  # domain: its MX host
    "dee.test": "mail.remote.test", "dta.test": "mx-ta.remote.test", "dtaname.test": "mx-other.remote.test",
    "deewrong.test": "mx-bad.remote.test", "insecure.test": "mx-bad.remote.test", "insectlsa.test": "mx-u.remote.test",
    "tlsafail.test": "mx-f.remote.test",
}


def spki_sha256(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)).digest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("dane")
    dns = TestDNSServer({h: {"A": ["127.0.0.1"]} for h in HOSTS}).start()
    b = WaypostInstance(base / "b", domain="remote.test", dns={"nameservers": [dns.nameserver]})
    # b's certificate names two of the MX hosts and is sent with its CA (a DANE-TA chain).
    s = load_settings(b.data)
    leaf = CA.issue_cert("mail.remote.test", "mx-ta.remote.test", "127.0.0.1")
    s.path(s.tls.certificate).write_bytes(leaf.cert_chain_pems[0].bytes() + CA.cert_pem.bytes())
    fd = os.open(s.path(s.tls.key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(leaf.private_key_pem.bytes())
    leaf_cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    ca_der = x509.load_pem_x509_certificate(CA.cert_pem.bytes()).public_bytes(serialization.Encoding.DER)
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    port = b.smtp_port
    tlsa = {
        "mail.remote.test": [(3, 1, 1, spki_sha256(leaf_cert))],
        "mx-ta.remote.test": [(2, 0, 1, hashlib.sha256(ca_der).digest())],
        "mx-other.remote.test": [(2, 0, 1, hashlib.sha256(ca_der).digest())],
        "mx-bad.remote.test": [(3, 1, 1, hashlib.sha256(other_key).digest()), (1, 1, 1, spki_sha256(leaf_cert))],
        "mx-u.remote.test": [(3, 1, 1, hashlib.sha256(other_key).digest())],
    }
    for host, records in tlsa.items():
        dns.set(f"_{port}._tcp.{host}", "TLSA", records)
    dns.fail(f"_{port}._tcp.mx-f.remote.test", "SERVFAIL")
    for domain, host in DOMAINS.items():
        dns.set(domain, "MX", [(10, host)])
        b.ok("domain", "add", domain)
        b.ok("account", "add", f"rita@{domain}", "--no-password")
    secure = [d for d in DOMAINS if d != "insecure.test"]
    secure += [f"_{port}._tcp.{h}" for h in HOSTS if h != "mx-u.remote.test"]
    dns.secure(*secure)
    a = WaypostInstance(base / "a", domain="example.test",
                        dns={"nameservers": [dns.nameserver], "timeout": 2.0, "trust_ad": True},
                        delivery={"smtp_port": port, "connect_timeout": 3.0},
                        queue={"poll_interval": 0.2, "retry_intervals": [3600]})
    b.start()
    a.start()
    yield a, b, dns
    a.stop()
    b.stop()
    dns.stop()


def send(a: WaypostInstance, to: str) -> None:
    with smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=30) as c:
        assert c.sendmail("alice@example.test", [to], f"From: alice@example.test\r\nTo: {to}\r\n"
                          f"Subject: to {to}\r\n\r\nhello\r\n".encode()) == {}


def arrived(b: WaypostInstance, to: str) -> bytes:
    return wait_for(lambda: (lambda f: f[0].read_bytes() if f else None)(b.messages(to)), timeout=20,
                    what=f"a message at {to}")


def test_dane_ee_match_delivers(world):
    a, b, _dns = world
    send(a, "rita@dee.test")
    assert b"with cipher" in arrived(b, "rita@dee.test").split(b"\r\n\r\n")[0]
    a.expect_log(r"event=dane destination=dee.test hosts=mail.remote.test")


def test_dane_ta_match_with_the_mx_name_delivers(world):
    a, b, _dns = world
    send(a, "rita@dta.test")
    arrived(b, "rita@dta.test")


def test_dane_ta_without_the_mx_name_is_deferred(world):
    a, b, _dns = world
    send(a, "rita@dtaname.test")
    a.expect_log(r"event=tls-policy-failed host=.mx-other.remote.test \[127.0.0.1\]. policy=DANE "
                 r"result=certificate-host-mismatch")
    a.expect_log(r"event=deferred .*rcpt=<rita@dtaname.test> .*4.7.5")
    assert not b.messages("rita@dtaname.test")


def test_dane_ee_mismatch_is_deferred_and_pkix_usages_are_ignored(world):
    a, b, _dns = world
    send(a, "rita@deewrong.test")
    a.expect_log(r"event=tls-policy-failed host=.mx-bad.remote.test \[127.0.0.1\]. policy=DANE "
                 r"result=validation-failure detail=.no certificate matches the TLSA records")
    a.expect_log(r"event=deferred .*rcpt=<rita@deewrong.test> .*4.7.5")
    assert not b.messages("rita@deewrong.test")


def test_insecure_mx_or_tlsa_is_no_dane(world):
    a, b, _dns = world
    send(a, "rita@insecure.test")      # the MX answer has no AD bit: mx-bad's TLSA is not asked
    arrived(b, "rita@insecure.test")
    send(a, "rita@insectlsa.test")     # secure MX, TLSA without the AD bit: ignored
    arrived(b, "rita@insectlsa.test")


def test_a_failed_tlsa_look_up_defers(world):
    a, b, _dns = world
    send(a, "rita@tlsafail.test")
    a.expect_log(r"event=tls-policy-failed host=.mx-f.remote.test \[127.0.0.1\]. policy=DANE result=tlsa-invalid")
    a.expect_log(r"event=deferred .*rcpt=<rita@tlsafail.test> .*4.7.5")
    assert not b.messages("rita@tlsafail.test")


def test_trust_ad_is_refused_for_a_resolver_elsewhere(tmp_path):
    inst = WaypostInstance(tmp_path / "x")
    with pytest.raises(ConfigError, match="dns.trust_ad: name server 192.0.2.53 is not on this host"):
        inst.configure(dns={"nameservers": ["192.0.2.53"], "trust_ad": True})
    inst.configure(dns={"nameservers": ["127.0.0.1:5353", "[::1]:53"], "trust_ad": True})
    assert load_settings(inst.data).dns.trust_ad
