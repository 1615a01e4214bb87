"""Races of the queue found by trying it under load (issue 13): the orphan scan against
deliveries that finish, the committer against the 250 reply."""

from __future__ import annotations

import asyncio
import collections
import re
import smtplib
import threading

from aiosmtpd.controller import Controller

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, free_port, wait_for

TOKEN = re.compile(rb"X-Token: (\S+)")


class SlowSink:
    """An SMTP server that takes ``delay`` seconds to answer DATA and counts each token."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        m = TOKEN.search(envelope.content)
        with self.lock:
            self.seen[m.group(1).decode() if m else "?"] += len(envelope.rcpt_tos)
        return "250 2.0.0 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.seen.values())


def test_orphan_scan_never_adopts_delivered_mail(tmp_path):
    # Issue 13 item 1: the scan read the index, then listed the spool; a message whose
    # delivery finished in between came back as a new entry (delivered twice, or a
    # FileNotFoundError on every retry and a bounce after queue.expire_after).
    sink = SlowSink(0.2)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"sink.test": {"MX": [(10, "mx.sink.test")]}, "mx.sink.test": {"A": ["127.0.0.1"]}})
    dns.start()
    inst = WaypostInstance(tmp_path / "data", server={"workers": 2}, dns={"nameservers": [dns.nameserver]},
                           delivery={"smtp_port": port, "max_per_host": 20},
                           queue={"poll_interval": 0.1, "orphan_scan": 0.02, "retry_intervals": [1]})
    inst.ok("account", "add", "alice@example.test", "--no-password")
    try:
        inst.start()
        tokens = [f"t{n}-{i}" for n in range(4) for i in range(20)]

        def client(n: int) -> None:
            with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
                for i in range(20):
                    c.sendmail("alice@example.test", [f"r{n}@sink.test"],
                               f"Subject: race\r\nX-Token: t{n}-{i}\r\n\r\nx\r\n".encode())

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        wait_for(lambda: sink.total() >= len(tokens), timeout=60, what="every message at the sink")
        wait_for(lambda: inst.queue_ids() == [], timeout=30, what="the queue to drain")
        assert inst.stop() == 0  # a stop lets work in flight finish and be written down
        assert inst.log_lines(r"event=orphans-adopted") == []
        assert inst.log_lines(r"FileNotFoundError") == []
        assert {t: c for t, c in sink.seen.items() if c != 1} == {}
        assert sorted(sink.seen) == sorted(tokens)
        assert inst.messages("alice@example.test") == []  # no bounce
        inst.start()
        assert inst.queue_ids() == []
    finally:
        inst.stop()
        dns.stop()
        controller.stop()
