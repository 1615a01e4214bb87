"""DANE certificate matching (RFC 7672 §3.1, RFC 6698 §2.1) on real certificates from
a trustme CA: DANE-EE by certificate and key with each matching type, DANE-TA through
an intermediate, the name and date checks of DANE-TA only, and bad chains."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from waypost.config import Settings
from waypost.delivery.dane import TLSARecord, check_chain, trusted_resolver


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def spki(d: bytes) -> bytes:
    return x509.load_der_x509_certificate(d).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


ROOT = trustme.CA()
MIDDLE = ROOT.create_child_ca()
LEAF = MIDDLE.issue_cert("mx.example.test")
CHAIN = [der(p.bytes()) for p in LEAF.cert_chain_pems]      # leaf, intermediate
ROOT_DER = der(ROOT.cert_pem.bytes())


def test_dane_ee_every_selector_and_matching_type():
    leaf = CHAIN[0]
    for selector, data in ((0, leaf), (1, spki(leaf))):
        for mtype, digest in ((0, data), (1, hashlib.sha256(data).digest()), (2, hashlib.sha512(data).digest())):
            assert check_chain([TLSARecord(3, selector, mtype, digest)], CHAIN, ["other.name"]) is None
    # DANE-EE checks neither the name nor the dates (RFC 7672 §3.1.1).
    early = datetime(1990, 1, 1, tzinfo=timezone.utc)
    assert check_chain([TLSARecord(3, 1, 1, hashlib.sha256(spki(leaf)).digest())], CHAIN, ["x"], now=early) is None


def test_dane_ta_on_the_intermediate_with_name_and_date_checks():
    ta = TLSARecord(2, 0, 1, hashlib.sha256(CHAIN[1]).digest())
    assert check_chain([ta], CHAIN, ["mx.example.test"]) is None
    assert check_chain([ta], CHAIN, ["mx.other.test"])[0] == "certificate-host-mismatch"
    early = datetime(1990, 1, 1, tzinfo=timezone.utc)  # before the leaf's notBefore (trustme's end far away)
    assert check_chain([ta], CHAIN, ["mx.example.test"], now=early)[0] == "certificate-expired"
    # A TA that the server did not send (the root) cannot be matched: validation failure.
    assert check_chain([TLSARecord(2, 0, 1, hashlib.sha256(ROOT_DER).digest())], CHAIN,
                       ["mx.example.test"])[0] == "validation-failure"
    # A chain whose leaf was not issued by the certificate that matches.
    stranger = der(trustme.CA().issue_cert("mx.example.test").cert_chain_pems[0].bytes())
    assert check_chain([ta], [stranger, CHAIN[1]], ["mx.example.test"])[0] == "validation-failure"


def test_nothing_to_match():
    rec = TLSARecord(3, 1, 1, b"\0" * 32)
    assert check_chain([], CHAIN, ["mx.example.test"])[0] == "tlsa-invalid"
    assert check_chain([rec], [], ["mx.example.test"])[0] == "validation-failure"
    assert check_chain([rec], [b"not a certificate"], ["mx.example.test"])[0] == "validation-failure"
    assert check_chain([rec], CHAIN, ["mx.example.test"]) == ("validation-failure",
                                                              "no certificate matches the TLSA records")


def test_the_ad_bit_is_trusted_only_from_this_host():
    s = Settings()
    assert not trusted_resolver(s.replace("dns", nameservers=["127.0.0.1:5353"]))  # trust_ad off
    assert trusted_resolver(s.replace("dns", nameservers=["127.0.0.1:5353", "[::1]:53"], trust_ad=True))
    assert not trusted_resolver(s.replace("dns", nameservers=[], trust_ad=True))
    assert not trusted_resolver(s.replace("dns", nameservers=["127.0.0.1", "192.0.2.53"], trust_ad=True))
