"""Inbound SPF, DKIM and DMARC at the SMTP listener (``mailauth.inbound = enforce``),
against the real DNS server on 127.0.0.1: a passing message gets one
Authentication-Results field of ours, a DMARC p=reject failure gets 550 (or Junk where
the recipient's domain says so), p=quarantine goes into Junk, a forged field claiming
our host name is removed, a DNS failure gets 451 (never 550), and trusted or logged-in
senders are not checked."""

from __future__ import annotations

import smtplib
import time

import dkim
import pytest

from support.dnsserver import TestDNSServer
from support.mailauth import txt_strings
from support.server import WaypostInstance, wait_for
from support.tls import client_context
from waypost.mailauth import generate_key
from waypost.mailauth.keys import dns_record

ZONE = {
    "good.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "_dmarc.good.test": {"TXT": ["v=DMARC1; p=reject"]},
    "bank.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.bank.test": {"TXT": ["v=DMARC1; p=reject"]},
    "shop.test": {"TXT": ["v=spf1 ip4:192.0.2.1 -all"]},
    "_dmarc.shop.test": {"TXT": ["v=DMARC1; p=quarantine"]},
    "list.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
    "_dmarc.list.test": {"TXT": ["v=DMARC1; p=reject"]},
    "slow.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
}


def message(sender: str, subject: str, extra: str = "") -> bytes:
    return (f"{extra}From: <{sender}>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\nHello Bob.\r\n").encode()


@pytest.fixture(scope="module")
def dns():
    with TestDNSServer(ZONE) as server:
        server.fail("_dmarc.slow.test", "SERVFAIL")
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory, dns):
    inst = WaypostInstance(tmp_path_factory.mktemp("inbound") / "data",
                           dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                           relay={"trusted_networks": []},
                           mailauth={"inbound": "enforce"})
    inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
    inst.ok("account", "add", "carol@example.test", "--password", "carol-password")
    inst.ok("domain", "add", "other.test")
    inst.ok("account", "add", "dave@other.test", "--no-password")
    with inst:
        inst.start()
        yield inst


def delivered(inst: WaypostInstance, address: str, subject: str, mailbox: str = "INBOX") -> bytes:
    from support.server import maildir_messages

    root = inst.mailbox(address) if mailbox == "INBOX" else inst.mailbox(address) / f".{mailbox}"

    def find():
        for p in maildir_messages(root):
            data = p.read_bytes()
            if f"Subject: {subject}\r\n".encode() in data:
                return data
        return None

    return wait_for(find, what=f"{subject!r} in {address}'s {mailbox}")


def send(inst: WaypostInstance, sender: str, data: bytes, to: str = "bob@example.test", helo: str = "mx.good.test"):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
        c.ehlo(helo)
        return c.sendmail(sender, [to], data)


def header_of(data: bytes) -> str:
    return data.split(b"\r\n\r\n", 1)[0].decode()


def test_aligned_spf_pass_is_delivered_with_our_authentication_results(server):
    assert send(server, "alice@good.test", message("alice@good.test", "spf pass")) == {}
    head = header_of(delivered(server, "bob@example.test", "spf pass"))
    assert head.count("Authentication-Results:") == 1
    assert f"Authentication-Results: {server.hostname};" in head
    assert "spf=pass" in head and "smtp.mailfrom=alice@good.test" in head and "dmarc=pass" in head
    # After our Received field, before the message's own fields.
    assert head.index("Received:") < head.index("Authentication-Results:") < head.index("From:")
    server.expect_log(r"event=mailauth .*spf=pass .*dmarc=pass .*action=accept")


def test_dkim_pass_without_spf_is_delivered(server, dns):
    key = generate_key("rsa")
    dns.set("sel._domainkey.list.test", "TXT", [txt_strings(dns_record("rsa", key.public))])
    raw = message("news@list.test", "dkim pass")
    signed = dkim.sign(raw, b"sel", b"list.test", key.private.encode(), include_headers=[b"from", b"subject"])
    # Sent on by a forwarder: its MAIL FROM fails SPF, the signature still aligns.
    assert send(server, "someone@bank.test", signed + raw, helo="fwd.bank.test") == {}
    head = header_of(delivered(server, "bob@example.test", "dkim pass"))
    assert "dkim=pass" in head and "header.d=list.test" in head and "dmarc=pass" in head


def test_dmarc_reject_gets_550(server):
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(server, "ceo@bank.test", message("ceo@bank.test", "wire money"))
    assert e.value.smtp_code == 550 and b"5.7.1" in e.value.smtp_error and b"bank.test" in e.value.smtp_error
    server.expect_log(r"event=mailauth .*header_from=bank.test .*dmarc=fail .*action=reject")
    assert not [p for p in server.messages("bob@example.test") if b"wire money" in p.read_bytes()]


def test_dmarc_reject_goes_to_junk_where_the_domain_says_so(server):
    server.ok("domain", "set", "other.test", "--dmarc-reject", "junk")
    try:
        assert send(server, "ceo@bank.test", message("ceo@bank.test", "junked reject"), to="dave@other.test") == {}
        head = header_of(delivered(server, "dave@other.test", "junked reject", mailbox="Junk"))
        assert "dmarc=fail" in head and "p=reject" in head
        server.expect_log(r"event=mailauth .*header_from=bank.test .*action=junk")
    finally:
        server.ok("domain", "set", "other.test", "--dmarc-reject", "default")


def test_dmarc_quarantine_goes_to_junk(server):
    assert send(server, "sales@shop.test", message("sales@shop.test", "cheap pills")) == {}
    head = header_of(delivered(server, "bob@example.test", "cheap pills", mailbox="Junk"))
    assert "dmarc=fail" in head and "p=quarantine" in head and "spf=fail" in head


def test_forged_authentication_results_are_removed(server):
    forged = (f"Authentication-Results: {server.hostname.upper()};\r\n\tdmarc=pass header.from=bank.test\r\n"
              f"Authentication-Results: (comment) {server.hostname}; spf=pass\r\n"
              "Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=x@good.test\r\n")
    assert send(server, "alice@good.test", message("alice@good.test", "forged ar", extra=forged)) == {}
    head = header_of(delivered(server, "bob@example.test", "forged ar"))
    ours = [line for line in head.split("\r\n") if line.lower().startswith("authentication-results:")]
    assert len(ours) == 2, head
    assert "header.from=bank.test" not in head and "mx.elsewhere.test; spf=pass" in head
    server.expect_log(r"event=forged-authentication-results .*removed=2")


def test_dns_failure_gets_451_not_550(server):
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(server, "x@good.test", message("ceo@slow.test", "temp failure"))
    assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.7.1")
    server.expect_log(r"event=mailauth .*header_from=slow.test .*dmarc=temperror .*action=defer")


def test_logged_in_senders_are_not_checked(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as c:
        c.starttls(context=client_context())
        c.login("carol@example.test", "carol-password")
        # (carol may not send as ceo@bank.test in From:, so her own address: no DMARC record, not checked anyway)
        assert c.sendmail("carol@example.test", ["bob@example.test"],
                          message("carol@example.test", "from carol")) == {}
    head = header_of(delivered(server, "bob@example.test", "from carol"))
    assert "Authentication-Results:" not in head


def test_trusted_networks_are_not_checked(tmp_path, dns):
    inst = WaypostInstance(tmp_path / "data", dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                           mailauth={"inbound": "enforce"})
    inst.ok("account", "add", "bob@example.test", "--no-password")
    forged = f"Authentication-Results: {inst.hostname}; dmarc=pass\r\n"
    with inst:
        inst.start()
        dns.clear_queries()
        assert send(inst, "ceo@bank.test", message("ceo@bank.test", "from inside", extra=forged)) == {}
        head = header_of(delivered(inst, "bob@example.test", "from inside"))
    # Not checked: delivered as sent (our own network vouches for it), no DNS asked.
    assert head.count("Authentication-Results:") == 1 and not dns.asked("_dmarc.bank.test")


def test_checks_longer_than_mailauth_timeout_defer_or_tag(tmp_path, dns):
    """A check that does not finish within ``mailauth.timeout`` (a DMARC look-up that
    gets no answer, with a longer dns.timeout): 451 4.7.1 under enforce, the message
    taken with dmarc=temperror under tag; each logged."""
    dns.set("silent.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    dns.drop("_dmarc.silent.test")
    for mode in ("enforce", "tag"):
        inst = WaypostInstance(tmp_path / mode, dns={"nameservers": [dns.nameserver], "timeout": 8.0},
                               relay={"trusted_networks": []}, mailauth={"inbound": mode, "timeout": 1.0})
        inst.ok("account", "add", "bob@example.test", "--no-password")
        with inst:
            inst.start()
            started = time.monotonic()
            if mode == "enforce":
                with pytest.raises(smtplib.SMTPDataError) as e:
                    send(inst, "alice@silent.test", message("alice@silent.test", "slow check"))
                assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.7.1")
                inst.expect_log(r"event=mailauth .*result=temperror .*longer than 1.0s.* action=defer")
            else:
                assert send(inst, "alice@silent.test", message("alice@silent.test", "slow check")) == {}
                head = header_of(delivered(inst, "bob@example.test", "slow check"))
                assert "dmarc=temperror (checks did not finish in 1 s)" in head
                inst.expect_log(r"event=mailauth .*result=temperror .*action=tag")
            assert time.monotonic() - started < 6  # the check's time-out, not the DNS one
