"""Serving customers whose servers are online now and then (seed 004): Hold Mail for
Domains, ETRN (RFC 1985), ODMR/ATRN (RFC 2645) — with smtplib, raw transcripts, a
customer server that is a second Waypost, and Debian's fetchmail as the ODMR client."""

from __future__ import annotations

import base64
import json
import shutil
import smtplib
import subprocess
import re

import pytest

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, wait_for
from support.transcript import Transcript


@pytest.fixture
def provider(tmp_path):
    """``isp`` (main domain isp.test) relays and holds mail for customer.test, whose own
    server ``cust`` is reachable by MX (10) when it runs; the ISP is the backup MX (20)."""
    cust = WaypostInstance(tmp_path / "cust", domain="customer.test", hostname="mail.customer.test")
    cust.ok("domain", "add", "domain2.test")
    cust.ok("account", "add", "joe@customer.test", "--no-password")
    cust.ok("account", "add", "ann@domain2.test", "--no-password")
    dns = TestDNSServer({
        "customer.test": {"MX": [(10, "mail.customer.test"), (20, "mx.isp.test")]},
        "mail.customer.test": {"A": ["127.0.0.1"]},
        "mx.isp.test": {"A": ["127.0.0.9"]},
    })
    dns.start()
    isp = WaypostInstance(tmp_path / "isp", domain="isp.test", hostname="mx.isp.test",
                          dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                          delivery={"smtp_port": cust.smtp_port, "connect_timeout": 2.0},
                          relay={"trusted_networks": []}, smtp={"auth_requires_tls": False})
    (tmp_path / "router.txt").write_text("Relay: customer.test = customer.test@customer.test.via\n"
                                         "Relay: domain2.test = domain2.test@customer.test.via\n")
    isp.ok("router", "import", str(tmp_path / "router.txt"))
    isp.ok("queue", "hold", "customer.test")
    isp.ok("account", "add", "customer.test@isp.test", "--password", "cust-pw")  # seed 004: named after the domain
    isp.ok("account", "add", "sender@isp.test", "--no-password")
    yield isp, cust, dns
    isp.stop()
    cust.stop()
    dns.stop()


def send(inst, rcpts, subject="held"):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
        c.ehlo("outside.example")
        return c.sendmail("sender@isp.test", rcpts, f"Subject: {subject}\r\nX-Keep: 1\r\n\r\nbody\r\n".encode())


def test_held_mail_waits_for_etrn(provider):
    isp, cust, dns = provider
    isp.start()
    cust.start()
    # The queue manager says when it leaves a recipient waiting: no need to wait and see
    # that nothing happens.  (A local recipient of the same message is delivered.)
    send(isp, ["joe@customer.test", "sender@isp.test"])
    isp.expect_log(r"event=held .*rcpt=<joe@customer.test> target=mx:customer.test")
    wait_for(lambda: isp.messages("sender@isp.test"), what="the local copy")
    entry = wait_for(lambda: [e for e in json.loads(isp.ok("queue", "list", "--json"))
                              if e["targets"] == ["mx:customer.test"]], what="only the held recipient queued")[0]
    assert entry["held"]
    assert not isp.log_lines(r"event=(delivered|deferred|bounced) .*rcpt=<joe@customer.test>")
    with smtplib.SMTP("127.0.0.1", isp.smtp_port) as c:
        c.ehlo("mail.customer.test")
        assert "etrn" in c.esmtp_features
        code, msg = c.docmd("ETRN", "customer.test")
        assert code == 253 and msg.startswith(b"2.0.0 OK, 1 pending messages for node customer.test started")
    files = wait_for(lambda: cust.messages("joe@customer.test"), what="delivery after ETRN")
    assert b"X-Keep: 1" in files[0].read_bytes()
    wait_for(lambda: isp.queue_ids() == [])
    isp.expect_log(r"event=etrn .*node=customer.test messages=1")
    # Delivered once, and not before the ETRN: nothing went out while the mail was held.
    assert len(cust.messages("joe@customer.test")) == 1
    log = list(isp.output)
    [delivered] = [i for i, line in enumerate(log) if re.search(r"event=delivered .*rcpt=<joe@customer.test>", line)]
    assert delivered > min(i for i, line in enumerate(log) if "event=etrn" in line)


def test_one_etrn_releases_several_domains(provider):
    isp, cust, dns = provider
    isp.start()
    cust.start()
    send(isp, ["joe@customer.test"], "one")
    send(isp, ["ann@domain2.test"], "two")
    assert json.loads(isp.ok("queue", "holds", "--json")) == [{"domain": "customer.test", "messages": 2}]
    with smtplib.SMTP("127.0.0.1", isp.smtp_port) as c:
        c.ehlo("x")
        assert c.docmd("ETRN", "@customer.test")[0] == 253
    wait_for(lambda: cust.messages("joe@customer.test") and cust.messages("ann@domain2.test"))
    # ann's envelope was kept: it arrived as ann@domain2.test on the customer's server.
    cust.expect_log(r"event=received .*rcpt=<ann@domain2.test>")


def test_etrn_replies(provider):
    isp, cust, dns = provider
    isp.start()
    with Transcript("127.0.0.1", isp.smtp_port) as t:
        t.expect(220)
        t.cmd("ETRN customer.test", 503, "5.5.1")  # before EHLO
        t.cmd("EHLO x", 250)
        t.cmd("ETRN", 501, "5.5.4")
        t.cmd("ETRN customer.test", 251, "2.0.0")  # held, nothing waiting
        t.cmd("ETRN #customer.test", 251, "2.0.0")
        t.cmd("ETRN unknown.test", 459, "4.7.1")
        t.cmd("ETRN bad..name", 501, "5.5.4")
        t.cmd("MAIL FROM:<a@isp.test>", 250)
        t.cmd("ETRN customer.test", 503, "5.5.1")  # inside a transaction


def test_etrn_clients_setting(provider):
    isp, cust, dns = provider
    isp.configure(etrn={"clients": ["192.0.2.0/24"]})
    isp.start()
    with Transcript("127.0.0.1", isp.smtp_port) as t:
        t.expect(220)
        t.cmd("EHLO x", 250)
        t.cmd("ETRN customer.test", 459, "4.7.1")
    isp.expect_log(r"event=etrn-refused")


def test_release_delivers_and_stops_holding(provider):
    isp, cust, dns = provider
    isp.start()
    cust.start()
    send(isp, ["joe@customer.test"])
    isp.ok("queue", "release", "customer.test")
    wait_for(lambda: cust.messages("joe@customer.test"), what="delivery after release")
    send(isp, ["joe@customer.test"], "second")
    wait_for(lambda: len(cust.messages("joe@customer.test")) == 2, what="no longer held")


def _odmr(isp) -> Transcript:
    t = Transcript("127.0.0.1", isp.odmr_port)
    t.expect(220)
    return t


def _auth(t, user="customer.test@isp.test", password="cust-pw"):
    t.cmd("AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode(), 235, "2.7.0")


def test_odmr_refusals(provider):
    isp, cust, dns = provider
    isp.start()
    with _odmr(isp) as t:
        r = t.cmd("EHLO mail.customer.test", 250)
        assert "ATRN" in r.lines and any(line.startswith("AUTH") for line in r.lines)
        t.cmd("ATRN customer.test", 530, "5.7.0")
        t.cmd("TURN", 530, "5.7.0")
        t.cmd("MAIL FROM:<a@b.test>", 502, "5.5.1")
        _auth(t)
        t.cmd("ATRN other.test", 450, "4.7.1")
        t.cmd("ATRN customer.test,other.test", 450, "4.7.1")
        t.cmd("ATRN customer.test", 453, "4.2.4")  # no mail
    with Transcript("127.0.0.1", isp.smtp_port) as t:
        t.expect(220)
        t.cmd("EHLO x", 250)
        t.cmd("ATRN customer.test", 502, "5.5.1")  # ODMR port only


def test_atrn_turns_the_connection_around(provider):
    """The customer side is played by this test, byte for byte (RFC 2645 §4 example)."""
    isp, cust, dns = provider
    isp.start()
    send(isp, ["joe@customer.test", "nobody@customer.test", "later@customer.test"], "turned")
    send(isp, ["ann@domain2.test"], "second")
    with _odmr(isp) as t:
        t.cmd("EHLO mail.customer.test", 250)
        _auth(t)
        t.cmd("ATRN customer.test", 250, "2.0.0")
        t.send("220 mail.customer.test ready to receive email")
        seen = []
        data_count = 0
        while True:
            line = t._line()
            assert line is not None, "the provider closed too early"
            seen.append(line)
            if line.startswith("EHLO"):
                t.send("250-mail.customer.test")
                t.send("250 SIZE")
            elif line.startswith("MAIL FROM:"):
                t.send("250 2.1.0 OK")
            elif line.startswith("RCPT TO:<nobody@"):
                t.send("550 5.1.1 no such user")
            elif line.startswith("RCPT TO:<later@"):
                t.send("451 4.2.0 mailbox busy, try later")
            elif line.startswith("RCPT TO:"):
                t.send("250 2.1.5 OK")
            elif line == "DATA":
                t.send("354 go ahead")
                while (body_line := t._line()) != ".":
                    seen.append("  " + body_line)
                data_count += 1
                t.send("250 2.0.0 received")
            elif line == "QUIT":
                t.send("221 bye")
                break
        assert t.closed()
    assert seen[0] == "EHLO mx.isp.test"
    assert "RCPT TO:<joe@customer.test>" in seen and "RCPT TO:<ann@domain2.test>" in seen
    assert data_count == 2
    # later@ answered 451: it stays queued (and held) for the next ATRN; no bounce for it.
    wait_for(lambda: [m["recipients"] for m in json.loads(isp.ok("queue", "list", "--json"))]
             == [["later@customer.test"]])
    [entry] = json.loads(isp.ok("queue", "list", "--json"))
    assert entry["held"] and entry["last_reply"].startswith("451 4.2.0")
    # nobody@ got a 550: the sender is told (one DSN), joe's and ann's copies were delivered.
    dsn = wait_for(lambda: isp.messages("sender@isp.test"), what="the DSN for nobody@")
    assert "nobody@customer.test" in dsn[0].read_text() and "Status: 5.1.1" in dsn[0].read_text()
    assert "later@customer.test" not in dsn[0].read_text()
    isp.expect_log(r"event=delivered .*rcpt=<joe@customer.test> relay=odmr:customer.test@isp.test")


def test_atrn_customer_drops_the_connection(provider):
    isp, cust, dns = provider
    isp.start()
    send(isp, ["joe@customer.test"], "survives")
    with _odmr(isp) as t:
        t.cmd("EHLO mail.customer.test", 250)
        _auth(t)
        t.cmd("ATRN", 250, "2.0.0")  # no argument: every domain of the account
        t.send("220 ready")
        assert t._line().startswith("EHLO")
        t.send("250 ok")
        assert t._line().startswith("MAIL FROM:")
    wait_for(lambda: isp.log_lines(r"event=atrn-aborted"))
    [entry] = json.loads(isp.ok("queue", "list", "--json"))
    assert entry["held"] and entry["recipients"] == ["joe@customer.test"]
    # ... and it is still there for the next ATRN or ETRN.
    cust.start()
    with smtplib.SMTP("127.0.0.1", isp.smtp_port) as c:
        c.ehlo("x")
        assert c.docmd("ETRN", "customer.test")[0] == 253
    wait_for(lambda: cust.messages("joe@customer.test"))
def test_fetchmail_odmr_hands_held_mail_to_the_customer_server(provider, tmp_path):
    fetchmail = shutil.which("fetchmail")
    assert fetchmail, "fetchmail is installed by 'make test' (Debian package fetchmail)"
    isp, cust, dns = provider
    # fetchmail's ODMR speaks CRAM-MD5 only (RFC 2645 requires servers to offer it).
    isp.ok("account", "passwd", "customer.test@isp.test", "--password", "cust-pw", "--cram-md5")
    isp.configure(smtp={"auth_requires_tls": True})
    isp.start()
    cust.start()
    send(isp, ["joe@customer.test"], "via fetchmail")
    send(isp, ["ann@domain2.test"], "via fetchmail too")
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {isp.odmr_port} protocol ODMR\n'
        f'  user "customer.test@isp.test" password "cust-pw"\n'
        f'  fetchdomains customer.test\n'
        f'  smtphost 127.0.0.1/{cust.smtp_port}\n'
        f'  sslproto ""\n'
    )
    rc.chmod(0o600)
    out = subprocess.run([fetchmail, "-f", str(rc), "-v", "--nosyslog", "--idfile", str(tmp_path / "ids"),
                          "--pidfile", str(tmp_path / "pid")],
                         capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode in (0, 1), out.stdout + out.stderr  # 1: "no mail" on a second poll
    files = wait_for(lambda: cust.messages("joe@customer.test") and cust.messages("ann@domain2.test"),
                     what="fetchmail to hand both messages over", timeout=20)
    assert files
    assert b"Subject: via fetchmail" in cust.messages("joe@customer.test")[0].read_bytes()
    wait_for(lambda: isp.queue_ids() == [])


def test_cram_md5_on_the_odmr_port(provider):
    import hashlib
    import hmac

    isp, cust, dns = provider
    isp.ok("account", "passwd", "customer.test@isp.test", "--password", "cram-secret", "--cram-md5")
    isp.configure(smtp={"auth_requires_tls": True})
    isp.start()
    secret_file = isp.data / "secret.key"
    assert secret_file.stat().st_mode & 0o077 == 0
    stored = json.loads(isp.ok("account", "list", "--json"))
    assert "cram-secret" not in json.dumps(stored)
    db = isp.db()  # every engine: the objects as stored hold no clear secret
    try:
        assert "cram-secret" not in json.dumps([o.data for o in db.list_objects()])
    finally:
        db.close()
    assert "cram-secret" not in isp.stored_text()  # nor anywhere in the database's bytes or dump

    def cram(t, user, secret):
        r = t.cmd("AUTH CRAM-MD5", 334)
        challenge = base64.b64decode(r.lines[0])
        digest = hmac.new(secret.encode(), challenge, hashlib.md5).hexdigest()
        t.send(base64.b64encode(f"{user} {digest}".encode()).decode())
        return t.reply()

    with _odmr(isp) as t:
        r = t.cmd("EHLO c", 250)
        assert "AUTH CRAM-MD5" in r.lines  # before TLS: only the challenge-response mechanism
        t.cmd("AUTH PLAIN " + base64.b64encode(b"\0customer.test@isp.test\0cram-secret").decode(), 538, "5.7.11")
        assert cram(t, "customer.test@isp.test", "wrong").code == 535
        assert cram(t, "sender@isp.test", "anything").code == 535  # no sealed secret: no CRAM-MD5
    with _odmr(isp) as t:
        t.cmd("EHLO c", 250)
        reply = cram(t, "customer.test@isp.test", "cram-secret")
        assert (reply.code, reply.enhanced) == (235, "2.7.0")
        t.cmd("ATRN customer.test", 453, "4.2.4")
    # A new password without --cram-md5 drops the sealed copy.
    isp.ok("account", "passwd", "customer.test@isp.test", "--password", "other")
    with _odmr(isp) as t:
        t.cmd("EHLO c", 250)
        assert cram(t, "customer.test@isp.test", "other").code == 535


def test_relay_to_all_hosts_we_backup(tmp_path):
    dns = TestDNSServer({
        "backedup.test": {"MX": [(10, "primary.backedup.test"), (20, "mx.isp.test")]},
        "primary.backedup.test": {"A": ["127.0.0.1"]},
        "primaryonly.test": {"MX": [(10, "mx.isp.test")]},
        "stranger.test": {"MX": [(10, "primary.backedup.test")]},
    })
    dns.start()
    isp = WaypostInstance(tmp_path / "isp", domain="isp.test", hostname="mx.isp.test",
                          dns={"nameservers": [dns.nameserver]}, relay={"trusted_networks": [], "backup_mx": True},
                          delivery={"smtp_port": 9, "connect_timeout": 1.0})
    try:
        isp.start()
        with Transcript("127.0.0.1", isp.smtp_port) as t:
            t.expect(220)
            t.cmd("EHLO outside.example", 250)
            t.cmd("MAIL FROM:<a@outside.example>", 250)
            t.cmd("RCPT TO:<joe@backedup.test>", 250, "2.1.5")  # we are its backup MX
            t.cmd("RCPT TO:<joe@primaryonly.test>", 554, "5.7.1")  # we are its only MX: not a backup
            t.cmd("RCPT TO:<joe@stranger.test>", 554, "5.7.1")  # we are not listed
        assert dns.asked("backedup.test", "MX")
    finally:
        isp.stop()
        dns.stop()


BATTERY = ["victim@elsewhere.test", "user%victim.test@isp.test", '"user@victim.test"@isp.test',
           "@isp.test:user@victim.test", "victim.test!user@isp.test", "user%victim.test@[127.0.0.1]",
           "USER%VICTIM.TEST@ISP.TEST", "user%victim.test@isp.test.", "victim@ELSEWHERE.TEST."]


def test_open_relay_battery_through_the_listener(tmp_path):
    isp = WaypostInstance(tmp_path / "isp", domain="isp.test", hostname="mx.isp.test",
                          relay={"trusted_networks": []}, smtp={"auth_requires_tls": False},
                          dns={"nameservers": ["127.0.0.1:9"], "timeout": 0.5},
                          delivery={"smtp_port": 9, "connect_timeout": 1.0})
    isp.ok("account", "add", "user@isp.test", "--password", "user-pw")
    try:
        isp.start()
        with Transcript("127.0.0.1", isp.smtp_port) as t:
            t.expect(220)
            t.cmd("EHLO outside.example", 250)
            t.cmd("MAIL FROM:<spammer@outside.example>", 250)
            for rcpt in BATTERY:
                t.cmd(f"RCPT TO:<{rcpt}>", 554, "5.7.1")
            t.cmd("RCPT TO:<user@victim.test@isp.test>", 501, "5.1.3")  # not an address at all
            t.cmd("DATA", 503, "5.5.1")  # nothing was accepted
        assert isp.queue_ids() == []
        with Transcript("127.0.0.1", isp.submission_port) as t:  # the same, authenticated
            t.expect(220)
            t.cmd("EHLO c", 250)
            t.cmd("AUTH PLAIN " + base64.b64encode(b"\0user@isp.test\0user-pw").decode(), 235)
            t.cmd("MAIL FROM:<user@isp.test>", 250)
            for rcpt in BATTERY:
                t.cmd(f"RCPT TO:<{rcpt}>", 250, "2.1.5")
    finally:
        isp.stop()
