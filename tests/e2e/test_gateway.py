"""The SMTP gateway (seed 003) through real servers: forwarding to internal servers with a
domain rewrite, everything through an upstream that requires AUTH (LOGIN, CRAM-MD5), per-
sender upstream accounts, an upstream that refuses AUTH."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from support.server import WaypostInstance, free_port, wait_for

ACCOUNTS = {"relay-common": "common-pw", "user1-upstream": "user1-pw"}


class Upstream:
    """An ISP's submission server: AUTH required (PLAIN and LOGIN), records what it got
    and how each session authenticated."""

    def __init__(self, refuse=False):
        self.received = []
        self.auths = []
        self.refuse = refuse
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, auth_required=True,
                                     auth_require_tls=False, authenticator=self._check)

    def _check(self, server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and not self.refuse and \
            ACCOUNTS.get(data.login.decode()) == data.password.decode()
        session.how = (mechanism, data.login.decode(), ok)
        self.auths.append(session.how)
        return AuthResult(success=ok, handled=False, auth_data=data)

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.how))
        return "250 2.0.0 accepted upstream"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


class CramUpstream(Upstream):
    """The same, also offering CRAM-MD5 (RFC 2195)."""

    async def auth_CRAM__MD5(self, server, args):  # aiosmtpd takes auth_* mechanisms from the handler
        challenge = f"<{time.time_ns()}@upstream.test>".encode()
        blob = await server.challenge_auth(challenge)
        user, _, digest = blob.decode().rpartition(" ")
        secret = ACCOUNTS.get(user, "")
        ok = not self.refuse and hmac.compare_digest(hmac.new(secret.encode(), challenge, hashlib.md5).hexdigest(), digest)
        server.session.how = ("CRAM-MD5", user, ok)
        self.auths.append(server.session.how)
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user.encode(), b""))


def _gateway(tmp_path, rules, **overrides):
    gw = WaypostInstance(tmp_path / "gw", domain="example.test", hostname="gw.example.test", **overrides)
    (tmp_path / "rules.txt").write_text(rules)
    gw.ok("gateway", "import", str(tmp_path / "rules.txt"))
    return gw


def _send(inst, sender, rcpts, port=None):
    with smtplib.SMTP("127.0.0.1", port or inst.smtp_port) as c:
        c.ehlo("lan-terminal")
        return c.sendmail(sender, rcpts, b"Subject: via the gateway\r\nX-Keep: yes\r\n\r\nbody\r\n")


def test_all_outgoing_mail_through_an_authenticating_upstream(tmp_path):
    # Seed 003 example 2: a LAN server forwards everything (*) to the ISP, with SMTP AUTH.
    with CramUpstream() as isp:
        gw = _gateway(tmp_path, f"* 127.0.0.1:{isp.port}\n", smtp={"auth_requires_tls": False})
        gw.ok("account", "add", "user1@example.test", "--password", "user1-local")
        gw.ok("account", "add", "user2@example.test", "--no-password")
        gw.ok("gateway", "auth", "set", "--user", "relay-common", "--password", "common-pw")
        gw.ok("gateway", "auth", "set", "--for", "user1@example.test", "--user", "user1-upstream", "--password", "user1-pw")
        stored = gw.stored_text()  # sealed at rest, on either engine
        assert "user1@example.test" in stored and "common-pw" not in stored
        listed = json.loads(gw.ok("gateway", "auth", "list", "--json"))
        assert {r["for"]: r["user"] for r in listed} == {"*": "relay-common", "user1@example.test": "user1-upstream"}
        try:
            gw.start()
            _send(gw, "user2@example.test", ["friend@far-away.test"])
            with smtplib.SMTP("127.0.0.1", gw.submission_port) as c:  # user1 logs in: its own upstream account
                c.login("user1@example.test", "user1-local")
                c.sendmail("user1@example.test", ["other@far-away.test"], b"Subject: mine\r\nX-Keep: yes\r\n\r\nx\r\n")
            _send(gw, "user1@example.test", ["third@far-away.test"])  # MAIL FROM alone proves nothing
            _send(gw, "user2@example.test", ["user1@example.test"])  # a local user stays local
            wait_for(lambda: len(isp.received) == 3, what="three messages upstream")
            by_rcpt = {r[1][0]: r for r in isp.received}
            assert by_rcpt["friend@far-away.test"][3] == ("CRAM-MD5", "relay-common", True)
            assert by_rcpt["other@far-away.test"][3] == ("CRAM-MD5", "user1-upstream", True)
            assert by_rcpt["third@far-away.test"][3] == ("CRAM-MD5", "relay-common", True)
            assert b"X-Keep: yes" in by_rcpt["other@far-away.test"][2]
            wait_for(lambda: gw.messages("user1@example.test"))
            route = json.loads(gw.ok("route", "friend@far-away.test", "--from", "127.0.0.1", "--json"))
            assert route["route"]["auth"] == "gateway" and route["target"] == f"127.0.0.1:{isp.port}"
        finally:
            gw.stop()


def test_plain_when_the_upstream_offers_no_cram_md5(tmp_path):
    with Upstream() as isp:
        gw = _gateway(tmp_path, f"* 127.0.0.1:{isp.port}\n")
        gw.ok("gateway", "auth", "set", "--user", "relay-common", "--password", "common-pw")
        try:
            gw.start()
            _send(gw, "someone@example.test", ["friend@far-away.test"])
            wait_for(lambda: isp.received, what="the message upstream")
            assert isp.received[0][3] == ("PLAIN", "relay-common", True)  # PLAIN before LOGIN
        finally:
            gw.stop()


def test_an_upstream_that_refuses_auth_defers_and_reports(tmp_path):
    with CramUpstream(refuse=True) as isp:
        gw = _gateway(tmp_path, f"* 127.0.0.1:{isp.port}\n", queue={"poll_interval": 0.2, "retry_intervals": [3600]})
        gw.ok("account", "add", "user2@example.test", "--no-password")
        gw.ok("gateway", "auth", "set", "--user", "relay-common", "--password", "common-pw")
        try:
            gw.start()
            _send(gw, "user2@example.test", ["friend@far-away.test"])
            wait_for(lambda: gw.log_lines(r"event=deferred .*rcpt=<friend@far-away.test>"), what="a deferral\n" + "\n".join(gw.output[-20:]))
            [entry] = json.loads(gw.ok("queue", "list", "--json"))
            assert "refused AUTH" in entry["last_reply"] and entry["last_reply"].startswith("4")
            assert gw.messages("user2@example.test") == []  # no bounce
            assert "common-pw" not in "\n".join(gw.output)  # never logged
        finally:
            gw.stop()


def test_gateway_in_front_of_internal_servers_with_rewrite(tmp_path):
    # Seed 003 example 1: server A receives everything; mail2/mail3 domains go to servers
    # B and C on their own ports, their domain rewritten to example.test.
    b = WaypostInstance(tmp_path / "b", domain="example.test", hostname="b.example.test")
    c = WaypostInstance(tmp_path / "c", domain="example.test", hostname="c.example.test")
    b.ok("account", "add", "bob@example.test", "--no-password")
    c.ok("account", "add", "carol@example.test", "--no-password")
    rules = (f"@mail2.example.test 127.0.0.1:{b.smtp_port} rewrite=example.test  # server B\n"
             f"@mail3.example.test 127.0.0.1:{c.smtp_port} rewrite=example.test  # server C\n")
    a = _gateway(tmp_path, rules, relay={"trusted_networks": []}, gateway={"relay_matched": True})
    a.ok("account", "add", "anna@example.test", "--no-password")
    try:
        for inst in (a, b, c):
            inst.start()
        _send(a, "x@outside.example", ["bob@mail2.example.test"])
        _send(a, "x@outside.example", ["carol@mail3.example.test"])
        _send(a, "x@outside.example", ["anna@example.test"])
        wait_for(lambda: b.messages("bob@example.test") and c.messages("carol@example.test")
                 and a.messages("anna@example.test"), what="each message on its server")
        b.expect_log(r"event=received .*rcpt=<bob@example.test>")
        # Without relay_matched an outside client may not use the rules.
        a.stop()
        a.configure(gateway={"relay_matched": False})
        a.start()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            _send(a, "x@outside.example", ["bob@mail2.example.test"])
    finally:
        for inst in (a, b, c):
            inst.stop()




def test_account_forwarding_with_srs_and_loops(tmp_path):
    from support.dnsserver import TestDNSServer

    b = WaypostInstance(tmp_path / "b", domain="remote.test", hostname="mx.remote.test")
    b.ok("account", "add", "rita@remote.test", "--no-password")
    dns = TestDNSServer({"remote.test": {"MX": [(10, "mx.remote.test")]}, "mx.remote.test": {"A": ["127.0.0.1"]}})
    dns.start()
    a = WaypostInstance(tmp_path / "a", domain="example.test", hostname="mail.example.test",
                        dns={"nameservers": [dns.nameserver]}, delivery={"smtp_port": b.smtp_port})
    for who in ("alice", "carol", "loop1", "loop2"):
        a.ok("account", "add", f"{who}@example.test", "--no-password")
    a.ok("account", "set", "alice@example.test", "--forward", "rita@remote.test", "--keep-copy")
    a.ok("account", "set", "loop1@example.test", "--forward", "loop2@example.test")
    # The command refuses the loop it can see (issue 13 item 2); a Router record closes it.
    assert a.cli("account", "set", "loop2@example.test", "--forward", "loop1@example.test").exit_code == 1
    a.ok("account", "set", "loop2@example.test", "--forward", "back@example.test")
    a.ok("router", "import", "-", input="<back@example.test> = loop1@example.test\n")
    try:
        b.start()
        a.start()
        _send(a, "carol@example.test", ["alice@example.test"])
        wait_for(lambda: a.messages("alice@example.test"), what="the copy kept for alice")
        got = wait_for(lambda: b.messages("rita@remote.test"), what="the forwarded copy")
        first_line = got[0].read_bytes().split(b"\r\n", 1)[0].decode()
        assert first_line.startswith("Return-Path: <SRS0=") and first_line.endswith("=example.test=carol@example.test>")
        srs_address = first_line[len("Return-Path: <"):-1]
        # A bounce to the SRS address reaches the original sender.
        with smtplib.SMTP("127.0.0.1", a.smtp_port) as c:
            c.sendmail("", [srs_address], b"Subject: bounce of the forwarded copy\r\n\r\nx\r\n")
        back = wait_for(lambda: [p for p in a.messages("carol@example.test") if b"bounce of the forwarded" in p.read_bytes()])
        assert back
        # A forged SRS address is refused.
        with smtplib.SMTP("127.0.0.1", a.smtp_port) as c:
            c.ehlo("x")
            c.mail("")
            assert c.rcpt(srs_address.replace("=carol@", "=mallory@"))[0] == 550
        # Two accounts forwarding to each other: bounced once, never round and round.
        _send(a, "carol@example.test", ["loop1@example.test"])
        dsn = wait_for(lambda: [p for p in a.messages("carol@example.test") if b"forwarding loop" in p.read_bytes()])
        assert len(dsn) == 1 and b"Status: 5.4.6" in dsn[0].read_bytes()
        wait_for(lambda: a.queue_ids() == [])
        assert a.messages("loop1@example.test") == [] and a.messages("loop2@example.test") == []
    finally:
        a.stop()
        b.stop()
        dns.stop()


def test_a_rule_pointing_back_at_this_server_ends_as_a_bounced_loop(tmp_path):
    # Seed 003's warning: relaying for rule domains while DNS points the destination here.
    from support.dnsserver import TestDNSServer

    dns = TestDNSServer({"inside.test": {"A": ["127.0.0.1"]}})
    dns.start()
    gw = _gateway(tmp_path, "@other.test inside.test\n", gateway={"relay_matched": True},
                  dns={"nameservers": [dns.nameserver]})
    gw.configure(delivery={"smtp_port": gw.smtp_port})
    gw.ok("account", "add", "sender@example.test", "--no-password")
    try:
        gw.start()
        _send(gw, "sender@example.test", ["user@other.test"])
        dsn = wait_for(lambda: gw.messages("sender@example.test"), what="the loop bounce")
        text = dsn[0].read_text()
        assert "Status: 5.4.6" in text and "loops back to myself" in text
        wait_for(lambda: gw.queue_ids() == [])
        assert len(gw.log_lines(r"event=received .*rcpt=<user@other.test>")) == 1  # never re-received
    finally:
        gw.stop()
        dns.stop()
