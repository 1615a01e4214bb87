"""DKIM: Waypost's signatures checked by a verifier run as a separate program
(dkimpy's dkimverify, its DNS pointed at the test server), signatures made by other
signers (OpenDKIM's opendkim-testmsg, dkimpy's dkimsign) checked by Waypost, and bad
signatures and keys."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.mailauth import MESSAGE, add_key, txt_strings
from waypost.db import Conflict, NotFound
from waypost.mailauth import Signer, signing_key
from waypost.mailauth.keys import dns_name, dns_record, generate_key
from waypost.mailauth.sign import SIGNED_FIELDS, should_sign
from waypost.mailauth.verify import MAX_SIGNATURES, verify_all
from waypost.secrets import Secrets

#: dkimpy's own command-line verifier, with dnspython's default resolver pointed at
#: the test DNS server (dkimverify has no option for it; its code is not touched).
DKIMVERIFY = """
import sys, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv.pop(1))
r.lifetime = 2.0
dns.resolver.default_resolver = r
from dkim.dkimverify import main
sys.argv[0] = "dkimverify"
main()
"""


def dkimverify(dns, message: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DKIMVERIFY, str(dns.port)], input=message, capture_output=True,
                          timeout=60)


def opendkim_testmsg() -> str:
    path = shutil.which("opendkim-testmsg") or shutil.which("opendkim-testmsg", path="/usr/sbin:/usr/bin")
    assert path, "opendkim-testmsg is required (Debian opendkim-tools; make test installs it)"
    return path


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_waypost_signature_verifies_with_dkimverify(db, secrets, dns, algorithm):
    add_key(db, secrets, dns, "example.test", "sel1", algorithm)
    signed = Signer(db, secrets).sign(MESSAGE, "Q1")
    assert signed.startswith(b"DKIM-Signature: ")
    header = signed[: signed.index(b"From:")].decode()
    assert "c=relaxed/relaxed" in header and "d=example.test" in header and "s=sel1" in header
    assert f"a={'rsa' if algorithm == 'rsa' else 'ed25519'}-sha256" in header
    h = header.split("h=", 1)[1].split(";", 1)[0]
    signed_fields = [f.strip().lower() for f in h.split(":")]
    # RFC 6376 §5.4.1 fields present, From over-signed, Received never (§5.4).
    assert signed_fields.count("from") == 2 and "received" not in signed_fields
    assert set(signed_fields) <= set(SIGNED_FIELDS)
    assert {"subject", "date", "to", "message-id", "mime-version", "content-type"} <= set(signed_fields)
    out = dkimverify(dns, signed)
    assert out.returncode == 0 and b"signature ok" in out.stdout, out.stdout + out.stderr
    # Relaxed body: trailing spaces may change in transit, the words may not.
    assert dkimverify(dns, signed.replace(b"spaces.   \r\n", b"spaces.\r\n")).returncode == 0
    tampered = signed.replace(b"Hello there.", b"Hello thEre.")
    out = dkimverify(dns, tampered)
    assert out.returncode == 1, out.stdout


async def test_opendkim_signature_checked_by_waypost(dns, lookup, tmp_path):
    """OpenDKIM's signer (libopendkim, another implementation) signs; Waypost's
    canonicalization and crypto agree with it.  opendkim-testmsg signs rsa-sha1 only,
    which RFC 8301 §3.1 forbids accepting: the verdict says exactly that."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "odk.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    dns.set("odk._domainkey.example.test", "TXT", [txt_strings(f"v=DKIM1; k=rsa; p={public}")])
    out = subprocess.run([opendkim_testmsg(), "-C", "-d", "example.test", "-s", "odk", "-k", str(pem)],
                         input=MESSAGE.replace(b"\r\n", b"\n"), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    signed = out.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert b"d=example.test" in signed
    trace: list[str] = []
    [res] = await verify_all(lookup, signed, trace)
    assert (res.result, res.domain, res.selector) == ("fail", "example.test", "odk")
    assert "verified" in res.reason and "RFC 8301" in res.reason, trace
    [bad] = await verify_all(lookup, signed.replace(b"Hello there.", b"Hello thEre."), [])
    assert bad.result == "fail" and "body hash" in bad.reason


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
async def test_dkimsign_signature_verified_by_waypost(dns, lookup, tmp_path, algorithm):
    """dkimpy's dkimsign program signs (relaxed/simple, as it defaults); Waypost verifies."""
    material = generate_key("rsa" if algorithm.startswith("rsa") else "ed25519")
    keyfile = tmp_path / "key"
    keyfile.write_text(material.private)
    dns.set("ext._domainkey.example.test", "TXT",
            [txt_strings(dns_record(material.algorithm, material.public))])
    out = subprocess.run([sys.executable, "-m", "dkim.dkimsign", "ext", "example.test", str(keyfile),
                          "--signalg", algorithm], input=MESSAGE, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    [res] = await verify_all(lookup, out.stdout, [])
    assert res.result == "pass" and res.algorithm == algorithm, res


def test_signer_chooses_the_key_activated_last(db, secrets, dns):
    add_key(db, secrets, dns, "example.test", "old")
    new = add_key(db, secrets, dns, "example.test", "new", "ed25519", active=False)
    assert signing_key(db, "example.test").selector == "old"  # an inactive key never signs
    db.dkim_key_activate("example.test", "new", new.created + 10)
    assert signing_key(db, "example.test").selector == "new"  # the cache saw the change
    assert b"s=new" in Signer(db, secrets).sign(MESSAGE)[:400]
    db.dkim_key_activate("example.test", "new", 0.0)
    assert signing_key(db, "example.test").selector == "old"
    db.dkim_key_remove("example.test", "old")
    assert signing_key(db, "example.test") is None
    assert Signer(db, secrets).sign(MESSAGE) == MESSAGE
    with pytest.raises(NotFound):
        db.dkim_key_remove("example.test", "old")
    with pytest.raises(Conflict):
        add_key(db, secrets, dns, "example.test", "new")


def test_sub_domain_signed_with_the_organisational_domain_key(db, secrets, dns):
    add_key(db, secrets, dns, "example.test", "org")
    msg = MESSAGE.replace(b"alice@example.test", b"alice@news.example.test")
    assert b"d=example.test" in Signer(db, secrets).sign(msg)[:400]
    other = MESSAGE.replace(b"alice@example.test", b"alice@example.net")
    assert Signer(db, secrets).sign(other) == other


@pytest.mark.parametrize("header,reason", [
    (b"", "no From"),
    (b"From: a@example.test\r\nFrom: b@example.test\r\n", "several From"),
    (b"From: a@example.test, b@example.test\r\n", "2 addresses"),
])
def test_no_signature_without_one_from_address(db, secrets, dns, header, reason, caplog):
    add_key(db, secrets, dns, "example.test", "s")
    msg = header + b"Subject: x\r\n\r\nbody\r\n"
    caplog.set_level("DEBUG", "waypost.mailauth")
    assert Signer(db, secrets).sign(msg) == msg
    assert any(reason in r.fields.get("reason", "") for r in caplog.records if r.getMessage() == "dkim-unsigned")


def test_key_of_another_data_directory_is_logged_and_the_message_kept(db, secrets, dns, tmp_path, caplog):
    add_key(db, secrets, dns, "example.test", "s")
    other = tmp_path / "other"
    other.mkdir()
    assert Signer(db, Secrets(other)).sign(MESSAGE, "Q9") == MESSAGE
    [failed] = [r for r in caplog.records if r.getMessage() == "dkim-sign-failed"]
    assert failed.levelname == "ERROR" and failed.fields["id"] == "Q9" and failed.fields["selector"] == "s"


def test_what_is_outgoing_mail_of_ours():
    assert should_sign({"auth": "alice@example.test"}, ["mx:example.net"]) is None
    assert should_sign({"client": "local", "dsn_for": "X"}, ["mx:example.net"]) is None
    assert should_sign({"auth": "alice@example.test"}, ["local"]) == "no remote recipient"
    # Inbound mail relayed on (a forwarder to an outside address) is never signed.
    assert should_sign({"client": "198.51.100.7", "auth": None}, ["mx:example.net", "local"]) is not None


async def test_bad_signatures_and_keys(db, secrets, dns, lookup):
    add_key(db, secrets, dns, "example.test", "good")
    signed = Signer(db, secrets).sign(MESSAGE)
    sig_end = signed.index(b"From:")
    sig, rest = signed[:sig_end], signed[sig_end:]

    async def one(message: bytes) -> tuple[str, str]:
        trace: list[str] = []
        [r] = await verify_all(lookup, message, trace)
        return r.result, r.reason

    assert (await one(signed))[0] == "pass"
    # A signature that is not tag=value at all.
    assert (await one(b"DKIM-Signature: this is ; not ; = tags\r\n" + rest))[0] == "neutral"
    # Required tags missing (no bh=).
    assert (await one(b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=good; h=from; b=AAAA\r\n" + rest))[0] \
        == "neutral"
    # No key published for the selector.
    assert await one(sig.replace(b"s=good", b"s=nokey") + rest) == ("permerror", "no key at nokey._domainkey.example.test")
    # A key record that is not a key.
    dns.set("broken._domainkey.example.test", "TXT", ["v=DKIM1; k=rsa; p=!!!notbase64"])
    assert (await one(sig.replace(b"s=good", b"s=broken") + rest))[0] == "permerror"
    # An RSA key of 512 bits (RFC 8301 §3.2).
    # (cryptography refuses to make one: openssl still does)
    small = subprocess.run(["openssl", "genrsa", "512"], capture_output=True, check=True, timeout=60).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=small, capture_output=True,
                         check=True, timeout=60).stdout
    p = base64.b64encode(der).decode()
    dns.set("small._domainkey.example.test", "TXT", [f"v=DKIM1; k=rsa; p={p}"])
    result, reason = await one(sig.replace(b"s=good", b"s=small") + rest)
    assert result == "permerror" and "512 bits" in reason
    # The key look-up times out: temperror, so the sender is asked to retry.
    dns.drop("slow._domainkey.example.test")
    assert (await one(sig.replace(b"s=good", b"s=slow") + rest))[0] == "temperror"
    # A damaged b=.
    b_at = sig.index(b" b=") + 3
    damaged = sig[:b_at] + (b"A" if sig[b_at:b_at + 1] != b"A" else b"B") + sig[b_at + 1:]
    assert (await one(damaged + rest))[0] == "fail"


async def test_signature_count_is_bounded(db, secrets, dns, lookup):
    add_key(db, secrets, dns, "example.test", "good")
    signed = Signer(db, secrets).sign(MESSAGE)
    sig = signed[: signed.index(b"From:")]
    many = sig * (MAX_SIGNATURES + 3) + MESSAGE
    trace: list[str] = []
    results = await verify_all(lookup, many, trace)
    assert len(results) == MAX_SIGNATURES and all(r.result == "pass" for r in results)
    assert "3 more signature(s) not checked" in trace[-1]
    assert dns.queries.count(("good._domainkey.example.test", "TXT", "udp")) == MAX_SIGNATURES
