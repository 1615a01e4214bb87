"""The queue end to end: local objects, remote delivery by MX to a second Waypost,
per-recipient results, retries, DSNs, loops.  Two real servers, a real DNS server."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib

import pytest

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, wait_for


def send(inst, sender, rcpts, body=b"Subject: test\r\n\r\nhello\r\n", port=None, **kw):
    with smtplib.SMTP("127.0.0.1", port or inst.smtp_port) as c:
        c.ehlo("client.example")
        return c.sendmail(sender, rcpts, body, **kw)


def parsed(path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_aliases_forwarders_and_groups(server):
    server.ok("alias", "add", "sales@example.test", "alice")
    server.ok("group", "add", "staff@example.test", "--member", "alice", "--member", "bob", "--member", "sales")
    server.ok("forwarder", "add", "boss@example.test", "bob@example.test")
    send(server, "x@outside.example", ["sales@example.test", "staff@example.test", "boss@example.test"])
    # alice: via the alias and via the group (the group's sales is alice again) -> two routes
    # (sales@, alice@) to one account; bob: via the group and via the forwarder.
    wait_for(lambda: len(server.messages("alice@example.test")) >= 1 and len(server.messages("bob@example.test")) >= 1)
    wait_for(lambda: server.queue_ids() == [])
    assert len(server.messages("bob@example.test")) == 1  # group member and forwarder target: one copy
    assert not (server.data / "mail" / "example.test" / "staff").exists()


def test_group_member_unknown_bounces_to_sender(server):
    server.ok("group", "add", "team@example.test", "--member", "alice", "--member", "ghost")
    send(server, "bob@example.test", ["team@example.test"])
    wait_for(lambda: server.messages("alice@example.test"))
    dsn = wait_for(lambda: server.messages("bob@example.test"), what="the DSN for ghost")
    report = parsed(dsn[0])
    assert report.get_content_type() == "multipart/report"
    assert "ghost@example.test" in dsn[0].read_text()


def test_changes_are_seen_at_once(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as c:
        c.ehlo("c")
        c.mail("x@outside.example")
        assert c.rcpt("carol@example.test")[0] == 550
        server.ok("account", "add", "carol@example.test", "--no-password")
        assert c.rcpt("carol@example.test")[0] == 250
        server.ok("account", "set", "carol@example.test", "--disable")
        assert c.rcpt("carol@example.test")[0] == 550


@pytest.fixture
def pair(tmp_path):
    """Two servers: ``a`` (example.test) delivers to ``b`` (remote.test) through DNS."""
    b = WaypostInstance(tmp_path / "b", domain="remote.test")
    dns = TestDNSServer({
        "remote.test": {"MX": [(10, "mx.remote.test")]},
        "mx.remote.test": {"A": ["127.0.0.1"]},
    })
    dns.start()
    a = WaypostInstance(tmp_path / "a", domain="example.test",
                        dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                        delivery={"smtp_port": b.smtp_port, "connect_timeout": 3.0},
                        queue={"poll_interval": 0.2, "retry_intervals": [1]})
    a.ok("account", "add", "alice@example.test", "--password", "alice-password")
    b.ok("account", "add", "rita@remote.test", "--no-password")
    yield a, b, dns
    a.stop()
    b.stop()
    dns.stop()


def test_remote_delivery_by_mx(pair):
    a, b, dns = pair
    a.start()
    b.start()
    send(a, "alice@example.test", ["rita@remote.test"], b"Subject: over there\r\nX-Test: 1\r\n\r\nhi\r\n")
    files = wait_for(lambda: b.messages("rita@remote.test"), what="delivery on b")
    msg = parsed(files[0])
    assert msg["Subject"] == "over there" and msg["X-Test"] == "1"
    assert files[0].read_bytes().startswith(b"Return-Path: <alice@example.test>\r\n")
    assert len(msg.get_all("Received")) == 2  # a's and b's
    assert dns.asked("remote.test", "MX")
    wait_for(lambda: a.queue_ids() == [])
    a.expect_log(r"event=delivered .*rcpt=<rita@remote.test> relay=\"mx.remote.test \[127.0.0.1\]\" reply=\"250 2.0.0")


def test_per_recipient_results_and_bounce(pair):
    a, b, dns = pair
    a.start()
    b.start()
    send(a, "alice@example.test", ["rita@remote.test", "nobody@remote.test"])
    wait_for(lambda: b.messages("rita@remote.test"))
    dsn = wait_for(lambda: a.messages("alice@example.test"), what="the DSN for nobody@")
    report = parsed(dsn[0])
    assert report.get_content_type() == "multipart/report"
    status = dsn[0].read_text()
    assert "Final-Recipient: rfc822; nobody@remote.test" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    wait_for(lambda: a.queue_ids() == [])


def test_temporary_failure_is_retried(pair):
    a, b, dns = pair
    a.start()  # b is not running: connection refused -> deferred
    send(a, "alice@example.test", ["rita@remote.test"])
    wait_for(lambda: a.log_lines(r"event=deferred .*rcpt=<rita@remote.test>"), what="a deferral")
    # The log line can come before the queue index records the reply.
    [entry] = wait_for(lambda: [e for e in json.loads(a.ok("queue", "list", "--json")) if e["last_reply"]],
                       what="the deferral in the queue index")
    assert entry["targets"] == ["mx:remote.test"] and entry["last_reply"].startswith("4")
    b.start()
    wait_for(lambda: b.messages("rita@remote.test"), timeout=15, what="the retry to deliver")
    wait_for(lambda: a.queue_ids() == [])
    assert a.messages("alice@example.test") == []  # no bounce


def test_mx_pointing_at_ourselves_bounces_as_loop(tmp_path):
    dns = TestDNSServer({})
    dns.start()
    a = WaypostInstance(tmp_path / "a", domain="example.test", dns={"nameservers": [dns.nameserver]})
    dns.set("loop.test", "MX", [(10, "mx.loop.test")])
    dns.set("mx.loop.test", "A", ["127.0.0.1"])
    a.configure(delivery={"smtp_port": a.smtp_port})
    a.ok("account", "add", "alice@example.test", "--no-password")
    try:
        a.start()
        send(a, "alice@example.test", ["joe@loop.test"])
        dsn = wait_for(lambda: a.messages("alice@example.test"), what="the loop bounce")
        text = dsn[0].read_text()
        assert "Status: 5.4.6" in text and "loops back to myself" in text
        wait_for(lambda: a.queue_ids() == [])
    finally:
        a.stop()
        dns.stop()


def test_too_many_received_headers_bounce_as_loop(server):
    hops = b"".join(b"Received: from hop%d by relay%d; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % (i, i) for i in range(31))
    send(server, "bob@example.test", ["alice@example.test"], hops + b"Subject: loop\r\n\r\nx\r\n")
    dsn = wait_for(lambda: server.messages("bob@example.test"), what="the loop bounce")
    assert "Status: 5.4.6" in dsn[0].read_text()
    assert server.messages("alice@example.test") == []


def test_null_sender_is_never_bounced(server):
    server.ok("group", "add", "g@example.test", "--member", "ghost")
    send(server, "", ["g@example.test"])
    wait_for(lambda: server.log_lines(r"event=bounced .*rcpt=<g@example.test>"), what="the failed member")
    wait_for(lambda: server.queue_ids() == [])
    assert not server.log_lines(r"event=dsn-sent")


def test_dsn_parameters_are_kept_and_honoured(pair):
    a, b, dns = pair
    a.start()  # b down: the message waits, and shows its parameters
    with smtplib.SMTP("127.0.0.1", a.smtp_port) as c:
        c.ehlo("c")
        c.sendmail("alice@example.test", ["rita@remote.test"], b"Subject: dsn\r\n\r\nx\r\n",
                   mail_options=["RET=HDRS", "ENVID=QQ314159"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;rita+40remote.test"])
    [entry] = json.loads(a.ok("queue", "list", "--json"))
    shown = json.loads(a.ok("queue", "show", entry["id"], "--json"))
    assert shown["params"]["ret"] == "HDRS" and shown["params"]["envid"] == "QQ314159"
    assert shown["recipients"][0]["notify"] == "SUCCESS,FAILURE"
    assert shown["recipients"][0]["orcpt"] == "rfc822;rita+40remote.test"
    b.start()
    wait_for(lambda: b.messages("rita@remote.test"), timeout=15)


def test_json_log_format(instance):
    instance.configure(server={"log_format": "json", "workers": 1})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.start()
    send(instance, "x@outside.example", ["alice@example.test"])
    wait_for(lambda: instance.log_lines(r'"event": "delivered"'))
    line = instance.log_lines(r'"event": "delivered"')[0]
    rec = json.loads(line)
    assert rec["rcpt"] == "<alice@example.test>" and rec["sender"] == "<x@outside.example>" and rec["id"]


def test_expired_mail_is_bounced(tmp_path):
    dns = TestDNSServer({"gone.test": {"A": ["127.0.0.1"]}})
    dns.start()
    a = WaypostInstance(tmp_path / "a", dns={"nameservers": [dns.nameserver]},
                        delivery={"smtp_port": free_port_closed(), "connect_timeout": 1.0},
                        queue={"poll_interval": 0.2, "retry_intervals": [1], "expire_after": 3})
    a.ok("account", "add", "alice@example.test", "--no-password")
    try:
        a.start()
        send(a, "alice@example.test", ["joe@gone.test"])
        dsn = wait_for(lambda: a.messages("alice@example.test"), timeout=20, what="the expiry bounce")
        text = dsn[0].read_text()
        assert "Status: 4.4.7" in text and "Action: failed" in text
        a.expect_log(r"event=expired .*rcpt=<joe@gone.test>")
        a.expect_log(r"event=deferred .*rcpt=<joe@gone.test>")
        wait_for(lambda: a.queue_ids() == [])
    finally:
        a.stop()
        dns.stop()


def free_port_closed() -> int:
    from support.server import free_port

    return free_port()  # nothing listens there: connections are refused


class _SlowCounter:
    """An aiosmtpd handler that records how many sessions are in DATA at once."""

    def __init__(self) -> None:
        import threading

        self.now = 0
        self.peak = 0
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.3)
        with self.lock:
            self.now -= 1
            self.count += 1
        return "250 2.0.0 OK"


def test_concurrency_limit_per_destination(tmp_path):
    from aiosmtpd.controller import Controller

    from support.server import free_port

    handler = _SlowCounter()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"slow.test": {"MX": [(10, "mx.slow.test")]}, "mx.slow.test": {"A": ["127.0.0.1"]}})
    dns.start()
    a = WaypostInstance(tmp_path / "a", dns={"nameservers": [dns.nameserver]},
                        delivery={"smtp_port": port, "max_per_host": 2})
    try:
        a.start()
        with smtplib.SMTP("127.0.0.1", a.smtp_port) as c:
            for i in range(6):
                c.sendmail("x@example.test", [f"r{i}@slow.test"], b"Subject: slow\r\n\r\nx\r\n")
        wait_for(lambda: handler.count == 6, timeout=20, what="six deliveries")
        assert handler.peak == 2
    finally:
        a.stop()
        dns.stop()
        controller.stop()


def test_queue_flush_and_delete(pair):
    a, b, dns = pair
    a.configure(queue={"poll_interval": 0.2, "retry_intervals": [3600]})
    a.start()  # b is down: both messages are deferred for an hour
    send(a, "alice@example.test", ["rita@remote.test"], b"Subject: one\r\n\r\nx\r\n")
    send(a, "alice@example.test", ["rita@remote.test"], b"Subject: two\r\n\r\nx\r\n")
    wait_for(lambda: len(a.log_lines(r"event=deferred")) == 2)
    first, second = a.queue_ids()
    assert "Subject: one" in a.ok("queue", "show", first, "--body")
    assert "deleted" in a.ok("queue", "delete", second)
    assert a.cli("queue", "delete", second).exit_code == 1
    assert not (a.data / "spool" / "queue" / second).exists()
    b.start()
    assert "1 recipient(s) due now" in a.ok("queue", "flush")
    files = wait_for(lambda: b.messages("rita@remote.test"), what="the flushed message")
    assert len(files) == 1 and b"Subject: one" in files[0].read_bytes()
    wait_for(lambda: a.queue_ids() == [])
    assert a.messages("alice@example.test") == []  # deleting does not bounce


def test_concurrent_sessions_share_flushes(server):
    import threading

    def client(n):
        with smtplib.SMTP("127.0.0.1", server.smtp_port) as c:
            for i in range(5):
                c.sendmail("x@outside.example", ["alice@example.test"], b"Subject: gc\r\n\r\nx\r\n")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wait_for(lambda: len(server.messages("alice@example.test")) == 100, timeout=30)
    server.stop()
    [stats] = server.log_lines(r"event=spool-stats")
    fields = dict(kv.split("=") for kv in stats.split() if "=" in kv)
    assert int(fields["messages"]) == 100
    assert int(fields["flushes"]) < 100  # group commit: fewer flushes than messages


def test_a_loop_the_cli_cannot_see_bounces_with_a_log_line(server):
    """Issue 13 item 2: a forwarder whose target comes back to it through a Router
    record (which ``forwarder add`` cannot see) is bounced, with a log line, never
    kept in the queue with no recipients."""
    server.ok("forwarder", "add", "ring@example.test", "round@example.test")
    server.ok("router", "import", "-", input="<round@example.test> = ring@example.test\n")
    send(server, "bob@example.test", ["ring@example.test"])
    server.expect_log(r"event=bounced .*rcpt=<ring@example.test>")
    dsn = wait_for(lambda: server.messages("bob@example.test"), what="the DSN for the loop")
    text = dsn[0].read_text()
    assert "Status: 5.4.6" in text and "ring@example.test" in text
    wait_for(lambda: server.queue_ids() == [], what="an empty queue")


def test_an_empty_group_bounces_with_a_log_line(server):
    """Issue 13 item 2: a group with no members is no black hole either."""
    server.ok("group", "add", "nobody@example.test")
    send(server, "bob@example.test", ["nobody@example.test"])
    server.expect_log(r"event=bounced .*rcpt=<nobody@example.test>")
    dsn = wait_for(lambda: server.messages("bob@example.test"), what="the DSN for the empty group")
    assert "Status: 5.2.4" in dsn[0].read_text()
    wait_for(lambda: server.queue_ids() == [], what="an empty queue")
