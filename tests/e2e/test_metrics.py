"""Metrics (issue 18, point 4): ``/metrics`` on ``listen.metrics`` in the Prometheus text
format, counted by two workers and summed whatever worker answers; a worker killed -9
keeps its counts; the bearer token; bad requests refused with a log line; ``waypost
status`` showing the same figures, and saying when the server is not running."""

from __future__ import annotations

import imaplib
import os
import poplib
import signal
import smtplib
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.server import free_port, wait_for

TOKEN = "metrics-token-0123456789"


def _start(instance) -> str:
    port = free_port()
    instance.configure(listen={"metrics": f"127.0.0.1:{port}"}, metrics={"token": TOKEN},
                       server={"workers": 2},
                       imap={"plaintext_without_tls": True, "failure_delay": 0.0},
                       pop3={"plaintext_without_tls": True, "failure_delay": 0.0})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.ok("account", "add", "bob@example.test", "--password", "bob-password")
    instance.start()
    return f"http://127.0.0.1:{port}/metrics"


def _get(url: str, token: str | None = TOKEN, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body, headers = _get(url)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _send(instance, rcpt: str, source: str = "127.0.0.1") -> None:
    with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=30, source_address=(source, 0)) as s:
        s.sendmail("someone@remote.test", [rcpt], f"Subject: for {rcpt}\r\n\r\nhello\r\n".encode())


def test_metrics_are_counted_by_two_workers_and_survive_a_killed_worker(instance):
    url = _start(instance)
    for _ in range(4):  # one connection each: the two workers share them
        _send(instance, "alice@example.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        _send(instance, "nobody@example.test")  # refused at RCPT: a connection, nothing received
    imap = imaplib.IMAP4("127.0.0.1", instance.imap_port, timeout=30)
    imap.login("alice@example.test", "alice-password")
    imap.logout()
    pop = poplib.POP3("127.0.0.1", instance.pop3_port, timeout=30)
    pop.user("bob@example.test")
    pop.pass_("bob-password")
    pop.quit()
    pop = poplib.POP3("127.0.0.1", instance.pop3_port, timeout=30)
    pop.user("bob@example.test")
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong-password")
    pop.close()

    s = wait_for(lambda: (m := _samples(url)) and _value(m, "waypost_recipients_delivered_total",
                                                         target_kind="local") == 4 and m,
                 timeout=20, what="four local deliveries counted")
    assert _value(s, "waypost_messages_received_total", listener="smtp") == 4
    imap = imaplib.IMAP4("127.0.0.1", instance.imap_port, timeout=30)
    imap.login("alice@example.test", "alice-password")
    imap.select("INBOX")
    assert imap.search(None, "SUBJECT", "alice")[1][0].split() == [b"1", b"2", b"3", b"4"]
    imap.logout()
    # What the search keeps is reported by the worker that keeps it (every few seconds).
    s = wait_for(lambda: (m := _samples(url)) and any(
        v > 0 for (n, _), v in m.items() if n == "waypost_imap_search_cache_bytes") and m,
        timeout=20, what="the SEARCH cache reported")
    assert _value(s, "waypost_connections_total", listener="smtp") == 5
    assert _value(s, "waypost_connections_total", listener="imap") == 2
    assert _value(s, "waypost_connections_total", listener="pop3") == 2
    assert _value(s, "waypost_logins_total", proto="imap") == 2
    assert _value(s, "waypost_logins_total", proto="pop3") == 1
    assert _value(s, "waypost_login_failures_total", proto="pop3", reason="credentials") == 1
    assert _value(s, "waypost_recipients_bounced_total", target_kind="local", reason="failed") == 0
    # Four messages made durable, in at most four flushes (fewer when commits were shared).
    assert _value(s, "waypost_spool_group_commit_size_sum") == 4
    assert 1 <= _value(s, "waypost_spool_flushes_total") <= 4
    assert _value(s, "waypost_spool_group_commit_size_count") == _value(s, "waypost_spool_flushes_total")
    assert _value(s, "waypost_queue_messages") == 0
    assert _value(s, "waypost_queue_oldest_age_seconds") == 0
    pids = {int(dict(labels)["pid"]) for name, labels in s if name == "waypost_worker_resident_memory_bytes"}
    assert len(pids) == 2
    assert all(_value(s, "waypost_worker_resident_memory_bytes", pid=str(p)) > 10 * 2**20 for p in pids)

    # A worker killed -9: its counts stay (not lost, not doubled), its memory gauge goes.
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    instance.expect_log(rf"event=worker-died pid={victim}")
    after = wait_for(lambda: (m := _samples(url)) and len(
        {dict(lb)["pid"] for n, lb in m if n == "waypost_worker_resident_memory_bytes"} - {str(victim)}) == 2 and m,
        timeout=20, what="the new worker's memory gauge")
    assert str(victim) not in {dict(lb)["pid"] for n, lb in after if n == "waypost_worker_resident_memory_bytes"}
    for name, labels in (("waypost_messages_received_total", {"listener": "smtp"}),
                         ("waypost_recipients_delivered_total", {"target_kind": "local"}),
                         ("waypost_logins_total", {"proto": "imap"}),
                         ("waypost_login_failures_total", {"proto": "pop3", "reason": "credentials"}),
                         ("waypost_spool_group_commit_size_sum", {})):
        assert _value(after, name, **labels) == _value(s, name, **labels), name
    _send(instance, "bob@example.test")
    wait_for(lambda: _value(_samples(url), "waypost_recipients_delivered_total", target_kind="local") == 5,
             timeout=20, what="the fifth delivery counted")
    assert _value(_samples(url), "waypost_messages_received_total", listener="smtp") == 5

    # waypost status: the same figures, read from the same files.
    out = instance.ok("status")
    assert "server running: 2 worker(s)" in out
    assert any("messages received" in line and "listener=smtp" in line and line.rstrip("│ ").endswith("5")
               for line in out.splitlines()), out
    assert any("failed logins" in line and "proto=pop3" in line for line in out.splitlines()), out
    import json

    data = json.loads(instance.ok("status", "--json"))
    assert data["running"] is True and len(data["workers"]) == 2
    assert {"name": "waypost_logins_total", "labels": {"proto": "imap"}, "value": 2.0} in data["metrics"]

    instance.stop()
    out = instance.ok("status")
    assert "server not running" in out
    assert "worker memory" not in out
    assert json.loads(instance.ok("status", "--json"))["running"] is False


def test_the_token_and_bad_requests(instance):
    url = _start(instance)
    assert _get(url, token=None)[0] == 401
    status, _, headers = _get(url, token="wrong")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(url)[0] == 200
    assert _get(url.replace("/metrics", "/other"))[0] == 404
    assert _get(url, method="POST")[0] == 405
    host, port = url.split("/")[2].split(":")
    for raw, code in ((b"NONSENSE\r\n\r\n", b"400"), (b"GET /metrics HTTP/1.1\r\nbroken header\r\n\r\n", b"400"),
                      (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n", b"431")):
        with socket.create_connection((host, int(port)), timeout=10) as c:
            c.sendall(raw)
            reply = b""
            while chunk := c.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 " + code), reply
    instance.expect_log(r"event=metrics-refused client=127\.0\.0\.1 status=401 reason=token", count=2)
    instance.expect_log(r"event=metrics-refused client=127\.0\.0\.1 status=400 reason=\"malformed request line\"")
    instance.expect_log(r"event=metrics-refused client=127\.0\.0\.1 status=431")


def test_status_without_a_server(instance):
    out = instance.ok("status")
    assert "server not running: no counts" in out
    assert "queue: messages" in out


def test_minger_lookups_and_cache_hits_are_counted(tmp_path):
    """Domain Sharing (seed 002): a look-up a peer answers "found", one nobody has, then
    the cached positive answer used without asking."""
    from support.server import WaypostInstance

    secret = "office-secret-0123456789"
    minger = free_port()
    b = WaypostInstance(tmp_path / "b", hostname="b.example.test", listen={"minger": f"127.0.0.1:{minger}"},
                        sharing={"secret": secret})
    b.ok("account", "add", "bob@example.test", "--no-password")
    port = free_port()
    a = WaypostInstance(tmp_path / "a", hostname="a.example.test", listen={"metrics": f"127.0.0.1:{port}"})
    a.ok("share", "peer", "add", f"127.0.0.1:{b.smtp_port}", "--minger-port", str(minger), "--secret", secret)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        b.start()
        a.start()
        # From 127.0.0.9: mail from the peer's own address (127.0.0.1) is never asked about.
        _send(a, "bob@example.test", "127.0.0.9")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            _send(a, "nobody@example.test", "127.0.0.9")
        _send(a, "bob@example.test", "127.0.0.9")  # the cached answer: no second look-up
        wait_for(lambda: len(b.messages("bob@example.test")) == 2, timeout=20, what="bob's two messages on b")
        s = _samples(url)
        assert _value(s, "waypost_minger_lookups_total", result="found") == 1
        assert _value(s, "waypost_minger_lookups_total", result="not_found") == 1
        assert _value(s, "waypost_minger_cache_hits_total") == 1
        assert _value(s, "waypost_recipients_delivered_total", target_kind="host") == 2
        assert len(a.log_lines(r"event=minger-lookup address=bob@example.test")) == 1
    finally:
        a.stop()
        b.stop()


def test_bounced_and_deferred_are_counted_by_target_kind_and_the_queue_shows_what_waits(tmp_path):
    """A next hop that refuses the recipient (550: bounced, reason failed) and one that is
    down (deferred, the message stays queued: the queue gauges show it)."""
    from support.server import WaypostInstance

    sibling = WaypostInstance(tmp_path / "sibling", domain="client57.test", hostname="sibling.test")
    closed = free_port()
    port = free_port()
    front = WaypostInstance(tmp_path / "front", listen={"metrics": f"127.0.0.1:{port}"},
                            queue={"retry_intervals": [600]})
    (tmp_path / "router.txt").write_text(f"Relay: client57.test = client57.test@127.0.0.1.{sibling.smtp_port}.via\n"
                                         f"Relay: down.test = down.test@127.0.0.1.{closed}.via\n")
    front.ok("router", "import", str(tmp_path / "router.txt"))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        sibling.start()
        front.start()
        for rcpt in ("nobody@client57.test", "someone@down.test"):
            with smtplib.SMTP("127.0.0.1", front.smtp_port, timeout=30) as c:
                c.sendmail("", [rcpt], b"Subject: x\r\n\r\nx\r\n")  # null sender: no DSN
        s = wait_for(lambda: (m := _samples(url)) and _value(m, "waypost_recipients_bounced_total",
                                                             target_kind="host", reason="failed") == 1
                     and _value(m, "waypost_recipients_deferred_total", target_kind="host") == 1
                     # (an outcome is counted before the queue records it: the next scrape sees both)
                     and _value(m, "waypost_queue_messages") == 1 and m,
                     timeout=30, what="one bounce and one deferral counted, one message left queued")
        assert _value(s, "waypost_messages_received_total", listener="smtp") == 2
        assert _value(s, "waypost_recipients_delivered_total", target_kind="host") == 0
        assert _value(s, "waypost_queue_messages") == 1
        assert _value(s, "waypost_queue_recipients", state="waiting") == 1
        assert 0 < _value(s, "waypost_queue_oldest_age_seconds") < 60
    finally:
        front.stop()
        sibling.stop()
