"""The Router through the real listeners: gradual migration to an old server, a sibling
MTA on another port, an IP literal, a login bound to a server address (seed 001)."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib

import pytest

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, free_port, wait_for

HEADERS = b"From: sender@outside.example\r\nTo: <user@example.test>\r\nSubject: migrate me\r\nX-Trace: 42\r\n\r\nbody\r\n"


@pytest.fixture
def migration(tmp_path):
    """``new`` hosts example.test (few accounts); ``old`` is the old server (all accounts)."""
    old = WaypostInstance(tmp_path / "old", domain="example.test", hostname="old.example.test")
    dns = TestDNSServer({"old.example.test": {"A": ["127.0.0.1"]}})
    dns.start()
    new = WaypostInstance(tmp_path / "new", domain="example.test", hostname="new.example.test",
                          dns={"nameservers": [dns.nameserver]}, delivery={"smtp_port": old.smtp_port})
    for who in ("alice", "bob"):
        old.ok("account", "add", f"{who}@example.test", "--no-password")
    yield new, old, dns
    new.stop()
    old.stop()
    dns.stop()


def _send(inst, rcpt, body=HEADERS):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
        c.ehlo("client.example")
        c.sendmail("sender@outside.example", [rcpt], body)


def test_gradual_migration_end_to_end(migration):
    new, old, dns = migration
    new.ok("domain", "set", "example.test", "--mail-to-unknown", "*%example.test@old.example.test.via")
    new.configure(relay={"trusted_networks": []})  # the Internet: not trusted, and yet accepted
    old.start()
    new.start()
    _send(new, "alice@example.test")
    files = wait_for(lambda: old.messages("alice@example.test"), what="the old server to get alice's mail")
    raw = files[0].read_bytes()
    # Envelope recipient unchanged (it was stored in alice's mailbox there) and every
    # header field of the message unchanged; only trace fields were added in front.
    body = raw.split(b"\r\n\r\n", 1)
    assert body[1] == b"body\r\n"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("From", "To", "Subject", "X-Trace"):
        assert msg[name] == email.message_from_bytes(HEADERS, policy=email.policy.default)[name]
    assert new.messages("alice@example.test") == []
    old.expect_log(r"event=received .*rcpt=<alice@example.test>")

    # Create the account here: the next message stays here.
    new.ok("account", "add", "alice@example.test", "--no-password")
    _send(new, "alice@example.test")
    wait_for(lambda: new.messages("alice@example.test"), what="alice's mail to stay on the new server")
    assert len(old.messages("alice@example.test")) == 1
    # Someone who exists nowhere: the old server refuses, and the sender gets the bounce.
    route = json.loads(new.ok("route", "nobody@example.test", "--from", "203.0.113.5", "--json"))
    assert route["target"] == "mx:old.example.test" and route["route"]["address"] == "nobody@example.test"


def test_ip_literal_reroute_cuts_the_literal(migration):
    new, old, dns = migration
    new.ok("domain", "set", "example.test", "--mail-to-unknown", "*%example.test@[127.0.0.1]")
    old.start()
    new.start()
    _send(new, "bob@example.test")
    files = wait_for(lambda: old.messages("bob@example.test"), what="bob's mail at [127.0.0.1]")
    assert b"Subject: migrate me" in files[0].read_bytes()
    assert not dns.queries  # an IP literal needs no DNS


def test_sibling_mta_on_another_port(tmp_path):
    sibling = WaypostInstance(tmp_path / "sibling", domain="client57.test", hostname="sibling.test")
    sibling.ok("account", "add", "joe@client57.test", "--no-password")
    front = WaypostInstance(tmp_path / "front", domain="example.test", relay={"trusted_networks": []})
    router_file = tmp_path / "router.txt"
    router_file.write_text(f"# the sibling MTA (seed 004)\nother-port = 127.0.0.1.{sibling.smtp_port}.via\n"
                           "Relay: client57.test = client57.test@other-port\n")
    assert "imported 2 record(s)" in front.ok("router", "import", str(router_file))
    try:
        sibling.start()
        front.start()
        _send(front, "joe@client57.test")
        files = wait_for(lambda: sibling.messages("joe@client57.test"), what="delivery to the sibling")
        assert b"Subject: migrate me" in files[0].read_bytes()
        # Without the Relay: prefix an outside client may not use the record.
        router_file.write_text(f"client57.test = client57.test@127.0.0.1.{sibling.smtp_port}.via\n")
        front.ok("router", "import", str(router_file))
        with smtplib.SMTP("127.0.0.1", front.smtp_port) as c:
            c.ehlo("c")
            c.mail("x@outside.example")
            assert c.rcpt("joe@client57.test")[0] == 554
    finally:
        front.stop()
        sibling.stop()


def test_router_import_reports_every_bad_line_and_changes_nothing(instance, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Relay: friend.com = friend.com@friend.com.via\n")
    instance.ok("router", "import", str(good))
    bad = tmp_path / "bad.txt"
    bad.write_text("ok.com = ok.com@x.via\nBogus: a.com = b.com\n<a*b*@c.com> = d\n\nnoequals\n")
    result = instance.cli("router", "import", str(bad))
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output and f"{bad}:3:" in result.output and f"{bad}:5:" in result.output
    assert "3 bad line(s); the table was not changed" in result.output
    assert instance.ok("router", "export") == good.read_text()
    assert "friend.com" in instance.ok("router", "show")
    assert "router line 1" in instance.ok("router", "test", "joe@friend.com")


def test_login_on_an_address_bound_to_a_domain(tmp_path):
    port = free_port()
    inst = WaypostInstance(tmp_path / "data", domain="example.test",
                           listen={"submission": f"0.0.0.0:{port}"}, smtp={"auth_requires_tls": False})
    inst.submission_port = port
    inst.ok("domain", "add", "client1.test")
    inst.ok("account", "add", "info@client1.test", "--password", "client-pw")
    inst.ok("account", "add", "info@example.test", "--password", "main-pw")
    inst.ok("domain", "set", "client1.test", "--ip", "127.0.0.2")
    try:
        inst.start()
        for host, password, ok in (("127.0.0.2", "client-pw", True), ("127.0.0.2", "main-pw", False),
                                   ("127.0.0.1", "main-pw", True), ("127.0.0.1", "client-pw", False)):
            with smtplib.SMTP(host, port) as c:
                c.ehlo("c")
                try:
                    c.login("info", password)
                    logged_in = True
                except smtplib.SMTPAuthenticationError:
                    logged_in = False
                assert logged_in is ok, (host, password)
        inst.expect_log(r"event=auth .*account=info@example.test")
        inst.expect_log(r"event=auth .*account=info@client1.test")
        with smtplib.SMTP("127.0.0.3", port) as c:  # any domain via name%domain on any address
            c.ehlo("c")
            c.login("info%client1.test", "client-pw")
    finally:
        inst.stop()


