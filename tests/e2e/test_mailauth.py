"""DKIM signing end to end: mail submitted with AUTH to a remote domain leaves
signed and verifies with dkimverify (a separate program) against the local DNS server;
a DSN Waypost makes is signed; inbound mail sent on by a forwarder is not.  Also
``waypost mailauth check`` on the delivered message and ``waypost dns``."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys

import pytest

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, wait_for
from support.tls import client_context
from support.workers import on_two_workers

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

BODY = (b"From: Alice <alice@example.test>\r\nTo: rita@remote.test\r\nSubject: signed\r\n"
        b"Message-ID: <e2e-1@example.test>\r\n\r\nHello Rita.\r\n")


def dkimverify(dns: TestDNSServer, message: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DKIMVERIFY, str(dns.port)], input=message, capture_output=True,
                          timeout=60)


def publish_key(a: WaypostInstance, dns: TestDNSServer) -> dict:
    """``waypost dkim generate --json`` and its record put in DNS."""
    out = json.loads(a.ok("dkim", "generate", "example.test", "--selector", "e2e", "--json"))
    value = out["value"]
    dns.set(out["name"], "TXT", [[value[i:i + 255] for i in range(0, len(value), 255)]])
    return out


@pytest.fixture
def pair(tmp_path):
    """``a`` (example.test, signing) delivers to ``b`` (remote.test) through DNS."""
    b = WaypostInstance(tmp_path / "b", domain="remote.test")
    dns = TestDNSServer({
        "remote.test": {"MX": [(10, "mx.remote.test")]},
        "mx.remote.test": {"A": ["127.0.0.1"]},
        "example.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "_dmarc.example.test": {"TXT": ["v=DMARC1; p=reject"]},
    })
    dns.start()
    a = WaypostInstance(tmp_path / "a", domain="example.test",
                        dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                        delivery={"smtp_port": b.smtp_port, "connect_timeout": 3.0},
                        queue={"poll_interval": 0.2, "retry_intervals": [1]})
    a.ok("account", "add", "alice@example.test", "--password", "alice-password")
    b.ok("account", "add", "rita@remote.test", "--no-password")
    b.configure(dns={"nameservers": [dns.nameserver], "timeout": 2.0})
    yield a, b, dns
    a.stop()
    b.stop()
    dns.stop()


def test_submitted_mail_leaves_signed_and_verifies(pair):
    a, b, dns = pair
    key = publish_key(a, dns)
    a.start()
    b.start()
    with smtplib.SMTP("127.0.0.1", a.submission_port) as c:
        c.starttls(context=client_context())
        c.login("alice@example.test", "alice-password")
        assert c.sendmail("alice@example.test", ["rita@remote.test"], BODY) == {}
    [path] = wait_for(lambda: b.messages("rita@remote.test"), what="the message at remote.test")
    raw = path.read_bytes()
    assert b"DKIM-Signature:" in raw and b"d=example.test" in raw and b"s=e2e" in raw
    a.expect_log(r"event=dkim-signed .*d=example.test s=e2e")
    out = dkimverify(dns, raw)
    assert out.returncode == 0 and b"signature ok" in out.stdout, out.stdout + out.stderr
    # The receiving side's verdict, as an administrator would ask for it.
    msg = path.parent / "copy.eml"
    msg.write_bytes(raw)
    result = b.cli("mailauth", "check", str(msg), "--client-ip", "127.0.0.1", "--helo", "mail.example.test",
                   "--mail-from", "alice@example.test", "--json")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output)
    assert [d["result"] for d in verdict["dkim"]] == ["pass"] and verdict["spf"]["result"] == "pass"
    assert verdict["dmarc"]["result"] == "pass" and "dmarc=pass" in verdict["authentication_results"]
    assert key["algorithm"] == "rsa"


def test_forwarded_inbound_mail_is_not_signed_and_dsns_are(pair):
    a, b, dns = pair
    publish_key(a, dns)
    a.ok("forwarder", "add", "fwd@example.test", "rita@remote.test")
    a.ok("group", "add", "team@example.test", "--member", "ghost")
    a.start()
    b.start()
    spoof = BODY.replace(b"Subject: signed", b"Subject: from outside")
    with smtplib.SMTP("127.0.0.1", a.smtp_port) as c:
        c.ehlo("outside.example")
        # Mail from outside with a From in our domain, sent on by a forwarder: never vouched for.
        assert c.sendmail("someone@outside.example", ["fwd@example.test"], spoof) == {}
        # To a group whose member does not exist: the DSN goes back to remote.test, made by us.
        assert c.sendmail("rita@remote.test", ["team@example.test"],
                          b"From: rita@remote.test\r\nSubject: to the team\r\n\r\nhi\r\n") == {}
    files = wait_for(lambda: (lambda f: f if len(f) >= 2 else None)(b.messages("rita@remote.test")),
                     what="two messages")
    by_subject = {("from outside" if b"Subject: from outside" in p.read_bytes() else "dsn"): p.read_bytes()
                  for p in files}
    assert b"DKIM-Signature:" not in by_subject["from outside"]
    dsn = by_subject["dsn"]
    assert b"multipart/report" in dsn and b"DKIM-Signature:" in dsn and b"d=example.test" in dsn
    out = dkimverify(dns, dsn)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dns_command_reports_each_record(pair):
    a, _b, dns = pair
    publish_key(a, dns)
    a.ok("dkim", "generate", "example.test", "--selector", "next", "--algorithm", "ed25519", "--inactive")
    dns.set("example.test", "MX", [(10, "mail.example.test")])
    dns.set("_smtp._tls.example.test", "TXT", ["v=TLSRPTv1; rua=mailto:tls@example.test"])
    result = a.cli("dns", "example.test", "--json")
    assert result.exit_code == 1  # not everything is published
    rows = {(r["name"], r["type"]): r for r in json.loads(result.output)}
    assert rows[("example.test", "MX")]["status"] == "ok"
    assert rows[("example.test", "TXT")]["status"] == "ok"  # any SPF record: the administrator's choice
    assert rows[("e2e._domainkey.example.test", "TXT")]["status"] == "ok"
    assert rows[("next._domainkey.example.test", "TXT")]["status"] == "missing"
    assert rows[("_dmarc.example.test", "TXT")]["status"] == "ok"
    assert rows[("_mta-sts.example.test", "TXT")]["status"] == "missing"
    assert rows[("_smtp._tls.example.test", "TXT")]["status"] == "ok"
    assert rows[(f"_submission._tcp.example.test", "SRV")]["expected"] == f"0 1 {a.submission_port} mail.example.test"
    dns.set("_dmarc.example.test", "TXT", ["v=DMARC1; p=maybe"])
    dns.set("e2e._domainkey.example.test", "TXT", ["v=DKIM1; k=rsa; p=AAAA"])
    rows = {(r["name"], r["type"]): r for r in json.loads(a.cli("dns", "example.test", "--json").output)}
    assert rows[("_dmarc.example.test", "TXT")]["status"] == "different"
    assert rows[("e2e._domainkey.example.test", "TXT")]["status"] == "different"
    dns.drop("example.test", "MX")
    rows = {(r["name"], r["type"]): r for r in json.loads(a.cli("dns", "example.test", "--json").output)}
    assert rows[("example.test", "MX")]["status"] == "error"
    table = a.cli("dns", "example.test").output
    assert "DNS records of example.test" in table and "missing" in table and "error" in table


def test_dkim_commands_and_bad_input(instance, tmp_path):
    """The key life cycle through the CLI, and each refusal as one line and exit 1."""
    out = instance.ok("dkim", "generate", "example.test", "--selector", "one")
    assert "one._domainkey.example.test. IN TXT (" in out and '" "' in out  # an RSA key takes two strings
    instance.ok("dkim", "generate", "example.test", "--selector", "two", "--algorithm", "ed25519", "--inactive")
    states = {r["selector"]: r["state"] for r in json.loads(instance.ok("dkim", "list", "--json"))}
    assert states == {"one": "signing", "two": "inactive"}
    instance.ok("dkim", "activate", "example.test", "two")
    states = {r["selector"]: r["state"] for r in json.loads(instance.ok("dkim", "list", "example.test", "--json"))}
    assert states == {"one": "active", "two": "signing"}
    assert "one signs" in instance.ok("dkim", "deactivate", "example.test", "two")
    instance.ok("dkim", "remove", "example.test", "two")
    for args, message in [
        (("dkim", "generate", "nowhere.test"), "nowhere.test is not a local domain"),
        (("dkim", "generate", "example.test", "--selector", "one"), "already has a DKIM key with selector one"),
        (("dkim", "generate", "example.test", "--selector", "no_pe"), "not a valid DKIM selector"),
        (("dkim", "activate", "example.test", "zz"), "has no DKIM key with selector zz"),
        (("dkim", "remove", "example.test", "two"), "has no DKIM key with selector two"),
        (("mailauth", "check", str(tmp_path / "none.eml"), "--client-ip", "192.0.2.1"), "No such file"),
        (("mailauth", "check", "-", "--client-ip", "not-an-ip"), "is not an IP address"),
        (("dns", "nowhere.test"), "not a local domain"),
    ]:
        result = instance.cli(*args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output



def test_key_removed_and_recreated_is_seen_by_every_worker(pair):
    """STYLE 13: each of two workers signs (and so has read the key), the key is
    removed and made again under the same selector; both workers sign the next message
    with the new key: it verifies against the new record."""
    a, b, dns = pair
    a.configure(server={"workers": 2})
    publish_key(a, dns)
    a.start()
    b.start()

    def connect() -> smtplib.SMTP:
        c = smtplib.SMTP("127.0.0.1", a.submission_port)
        c.starttls(context=client_context())
        c.login("alice@example.test", "alice-password")
        return c

    first, second = on_two_workers(connect, lambda c: c.sock, lambda c: c.close(), a.proc.pid)
    try:
        for n, c in enumerate((first, second)):
            c.sendmail("alice@example.test", ["rita@remote.test"], BODY.replace(b"signed", f"before {n}".encode()))
        wait_for(lambda: len(b.messages("rita@remote.test")) >= 2, what="the first two")
        a.ok("dkim", "remove", "example.test", "e2e")
        publish_key(a, dns)  # same selector, a new key, its new record
        for n, c in enumerate((first, second)):
            c.sendmail("alice@example.test", ["rita@remote.test"], BODY.replace(b"signed", f"after {n}".encode()))
    finally:
        first.close()
        second.close()
    files = wait_for(lambda: (lambda f: f if len(f) >= 4 else None)(b.messages("rita@remote.test")),
                     what="the two after")
    after = [p.read_bytes() for p in files if b"Subject: after" in p.read_bytes()]
    assert len(after) == 2
    for raw in after:
        out = dkimverify(dns, raw)
        assert out.returncode == 0, out.stdout + out.stderr


PERL_ARC_VERIFY = r"""
use strict; use Mail::DKIM::ARC::Verifier; use Mail::DKIM::DNS; use Net::DNS::Resolver;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $ARGV[0],
                                                   recurse => 1, udp_timeout => 3, tcp_timeout => 3));
my $msg = do { local $/; <STDIN> }; $msg =~ s/\r?\n/\r\n/g;
my $arc = Mail::DKIM::ARC::Verifier->new(Strict => 1);
$arc->PRINT($msg); $arc->CLOSE;
print $arc->result, "\n";
"""


def test_forwarded_inbound_mail_is_arc_sealed_and_trusted_by_the_next_hop(pair):
    """Mail from outside, checked at ``a`` (DMARC pass by SPF), sent on by a forwarder to
    ``b``: ``a`` seals it; ``b`` sees the chain pass and, trusting ``a``'s seal, does
    not refuse it though DMARC fails there (the forwarder's MAIL FROM does not align)."""
    a, b, dns = pair
    dns.set("sender.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    dns.set("_dmarc.sender.test", "TXT", ["v=DMARC1; p=reject"])
    publish_key(a, dns)
    # a sends from 127.0.0.2, which sender.test's SPF does not list: DMARC fails at b.
    a.configure(relay={"trusted_networks": []}, mailauth={"inbound": "tag"},
                delivery={"smtp_port": b.smtp_port, "connect_timeout": 3.0, "bind_address": "127.0.0.2"})
    b.configure(relay={"trusted_networks": []},
                mailauth={"inbound": "enforce", "arc_trusted_sealers": ["example.test"]})
    a.ok("forwarder", "add", "fwd@example.test", "rita@remote.test")
    a.start()
    b.start()
    text = (b"From: Sam <sam@sender.test>\r\nTo: fwd@example.test\r\nSubject: sealed hop\r\n"
            b"Message-ID: <arc-1@sender.test>\r\n\r\nHello via a forwarder.\r\n")
    with smtplib.SMTP("127.0.0.1", a.smtp_port) as c:
        c.ehlo("mx.sender.test")
        assert c.sendmail("sam@sender.test", ["fwd@example.test"], text) == {}
    a.expect_log(r"event=arc-sealed .*d=example.test s=e2e i=1 cv=none")
    got = wait_for(lambda: (lambda f: f[0].read_bytes() if f else None)(b.messages("rita@remote.test")),
                   what="the forwarded message", timeout=20)
    head = got.split(b"\r\n\r\n", 1)[0].decode()
    assert "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=example.test; s=e2e;" in head
    assert "ARC-Authentication-Results: i=1; mail.example.test;" in head
    ours = head.split("Authentication-Results: mail.remote.test;", 1)[1]
    assert "arc=pass" in ours and "smtp.remote-ip=127.0.0.2" in ours
    assert "dmarc=fail (p=reject dis=none arc trusted sealer example.test)" in ours
    # Independent verifiers of a's seal, on the message as b stored it.
    out = subprocess.run([sys.executable, "-c", DKIMVERIFY.replace("from dkim.dkimverify import main",
                                                                   "from dkim.arcverify import main")
                          .replace('"dkimverify"', '"arcverify"'), str(dns.port)],
                         input=got, capture_output=True, timeout=60)
    assert b"arc verification: cv=b'pass' success" in out.stdout, out.stdout + out.stderr
    perl = subprocess.run(["perl", "-e", PERL_ARC_VERIFY, str(dns.port)], input=got, capture_output=True,
                          timeout=60)
    assert perl.stdout.decode().split("\n")[0] == "pass", perl.stdout + perl.stderr
    b.expect_log(r"event=mailauth .*header_from=sender.test .*arc=pass:example.test dmarc=fail policy=reject "
                 r"disposition=none action=accept .*override=.arc trusted sealer example.test")
