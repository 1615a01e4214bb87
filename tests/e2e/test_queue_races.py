"""Races of the queue found by trying it under load (issue 13): the orphan scan against
deliveries that finish, the committer against the 250 reply."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import smtplib
import threading
import time

import pytest
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


@pytest.mark.sqlite_only
def test_no_250_before_the_message_is_fsynced_and_indexed(tmp_path):
    # Issue 13 item 24: waking the senders in the spool before the queue index commits
    # survived the suite.  The test holds SQLite's write lock while a message is sent:
    # the server may answer 250 only once its index transaction went through, so at
    # the moment the 250 arrives the entry must be readable and the file in queue/.
    import sqlite3

    inst = WaypostInstance(tmp_path / "data", delivery={"smtp_port": free_port(), "connect_timeout": 1.0},
                           dns={"nameservers": ["127.0.0.1:9"], "timeout": 0.5},
                           queue={"retry_intervals": [3600]})
    inst.start()
    db = sqlite3.connect(inst.data / "waypost.db", isolation_level=None, timeout=30)
    seen: list[tuple[int, bytes, bool, bool]] = []
    replied = threading.Event()

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=60) as c:
            c.ehlo("client.example")
            c.mail("x@example.test")
            c.rcpt("joe@unreachable.test")
            code, text = c.data(b"Subject: order\r\n\r\nx\r\n")
            qid = text.rsplit(b" ", 1)[-1].decode()
            reader = sqlite3.connect(inst.data / "waypost.db", timeout=30)
            indexed = reader.execute("SELECT 1 FROM queue_messages WHERE id=?", (qid,)).fetchone() is not None
            reader.close()
            seen.append((code, text, indexed, (inst.data / "spool" / "queue" / qid).exists()))
        replied.set()

    try:
        for _ in range(3):
            replied.clear()
            db.execute("BEGIN IMMEDIATE")  # the committer's index insert now waits
            t = threading.Thread(target=send)
            t.start()
            replied.wait(1.5)  # bounded: long enough for a wrong order to answer first
            db.execute("COMMIT")
            t.join(30)
        assert len(seen) == 3, seen
        for code, text, indexed, on_disk in seen:
            assert code == 250 and text.startswith(b"2.0.0"), (code, text)
            assert indexed, f"250 sent before the index entry was committed: {text!r}"
            assert on_disk, f"250 sent before the file was in queue/: {text!r}"
    finally:
        db.close()
        inst.stop()


class QuitHolder(SlowSink):
    """A sink that answers DATA at once and keeps the QUIT waiting until released."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.release = threading.Event()
        self.quit_seen = threading.Event()

    async def handle_QUIT(self, server, session, envelope):
        self.quit_seen.set()
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        return "221 Bye"


def test_a_remote_250_survives_kill9_before_the_index_update(tmp_path):
    # Issue 13 item 4 (remote): the next hop answered 250 and Waypost was killed before
    # the index recorded it (here: while the hop holds QUIT); after the restart the
    # message went out again.  The journal written at the 250 prevents that.
    sink = QuitHolder()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"sink.test": {"MX": [(10, "mx.sink.test")]}, "mx.sink.test": {"A": ["127.0.0.1"]}})
    dns.start()
    inst = WaypostInstance(tmp_path / "data", dns={"nameservers": [dns.nameserver]},
                           delivery={"smtp_port": port}, queue={"poll_interval": 0.1, "retry_intervals": [1]})
    try:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
            c.sendmail("x@example.test", ["rita@sink.test"], b"Subject: once\r\nX-Token: only\r\n\r\nx\r\n")
        # Killed once Waypost has said QUIT: it says it only after reading the 250 (the
        # sink's own count comes before the 250 is even sent, and a kill in that gap
        # rightly means a second delivery: RFC 5321 §6.1, at least once).
        assert sink.quit_seen.wait(20), "Waypost never said QUIT to the sink"
        assert sink.total() == 1
        inst.kill9()
        sink.release.set()
        inst.start()
        wait_for(lambda: inst.queue_ids() == [], timeout=20, what="the queue to be empty")
        inst.expect_log(r"event=journal-replayed recipients=1")
        assert inst.stop() == 0
        assert sink.seen == {"only": 1}
        assert list((inst.data / "spool" / "queue").iterdir()) == []
    finally:
        inst.stop()
        dns.stop()
        controller.stop()


def test_a_remote_250_is_journaled_as_it_is_read(tmp_path):
    # Issue 13 item 4 (remote): the 250 to the end of data was journaled only once
    # aiosmtplib's coroutine had returned it; a kill -9 after the reply was read and
    # before that coroutine ran again lost the fact, and the message went out again
    # after the restart.  The server here is killed at exactly that point.
    from support.kill_at_reply import wrapper

    sink = SlowSink(0.0)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"sink.test": {"MX": [(10, "mx.sink.test")]}, "mx.sink.test": {"A": ["127.0.0.1"]}})
    dns.start()
    inst = WaypostInstance(tmp_path / "data", dns={"nameservers": [dns.nameserver]},
                           delivery={"smtp_port": port}, queue={"poll_interval": 0.1, "retry_intervals": [1]})
    try:
        inst.start(python=wrapper(tmp_path))
        with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
            c.sendmail("x@example.test", ["rita@sink.test"], b"Subject: once\r\nX-Token: only\r\n\r\nx\r\n")
        proc = inst.proc
        assert proc is not None
        wait_for(lambda: proc.poll() is not None, timeout=20, what="the kill at the reply to the end of data")
        assert proc.returncode == -9 and sink.seen == {"only": 1}
        inst.kill9()  # reaps it (and any worker left)
        inst.start()
        wait_for(lambda: inst.queue_ids() == [], timeout=20, what="the queue to be empty")
        inst.expect_log(r"event=journal-replayed recipients=1")
        assert inst.stop() == 0
        assert sink.seen == {"only": 1}
    finally:
        inst.stop()
        dns.stop()
        controller.stop()


def test_a_dead_workers_journal_is_replayed_before_its_leases_go(tmp_path):
    # Issue 13 item 4 (remote, 2 workers): when one worker died after a next hop's 250
    # was journaled and before the index recorded it, the supervisor gave its leases
    # back at once and the other worker sent the message again before the replacement
    # worker had read the dead one's journal.
    sink = QuitHolder()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"sink.test": {"MX": [(10, "mx.sink.test")]}, "mx.sink.test": {"A": ["127.0.0.1"]}})
    dns.start()
    inst = WaypostInstance(tmp_path / "data", server={"workers": 2}, dns={"nameservers": [dns.nameserver]},
                           delivery={"smtp_port": port}, queue={"poll_interval": 0.05, "retry_intervals": [1]})
    from waypost.queue.manager import cluster_node
    from waypost.queue.spool import node_dir

    journals = node_dir(inst.data / "spool", cluster_node(inst.settings)) / "journal"  # per node on PostgreSQL

    def journaled() -> list[int]:
        return [int(p.name) for p in journals.iterdir() if p.name.isdigit() and p.stat().st_size > 0]

    try:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
            c.sendmail("x@example.test", ["rita@sink.test"], b"Subject: once\r\nX-Token: only\r\n\r\nx\r\n")
        [pid] = wait_for(journaled, timeout=20, what="the 250 in a worker's journal")
        assert sink.total() == 1
        os.kill(pid, signal.SIGKILL)  # that worker only; the other one keeps polling
        sink.release.set()
        inst.expect_log(rf"event=worker-died pid={pid}")
        inst.expect_log(r"event=worker-ready", count=3)  # the replacement is up
        wait_for(lambda: inst.queue_ids() == [], timeout=20, what="the queue to be empty")
        inst.expect_log(r"event=journal-replayed recipients=1")
        assert inst.stop() == 0
        assert sink.seen == {"only": 1}
        assert list((inst.data / "spool" / "queue").iterdir()) == []
    finally:
        inst.stop()
        dns.stop()
        controller.stop()


class GateSink(SlowSink):
    """A sink that keeps each DATA waiting until ``gate`` opens, then answers ``reply``."""

    def __init__(self, reply: str = "250 2.0.0 OK") -> None:
        super().__init__(0.0)
        self.gate = threading.Event()
        self.waiting = 0
        self.reply = reply

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.waiting += 1
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 60)
        await super().handle_DATA(server, session, envelope)
        return self.reply


@pytest.mark.sqlite_only
def test_a_full_disk_under_the_index_holds_nothing_once_it_recovers(tmp_path):
    # Issue 13 item 3: outcomes the index could not write (a full disk) left their
    # recipients leased for queue.lease (600 s) after the disk recovered; and
    # ``waypost queue list`` ended in a traceback while the disk was full.
    import subprocess
    import sys

    from support.server import ROOT

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(small)], check=True)
    sink = GateSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"sink.test": {"MX": [(10, "mx.sink.test")]}, "mx.sink.test": {"A": ["127.0.0.1"]}})
    dns.start()
    inst = WaypostInstance(small / "data", dns={"nameservers": [dns.nameserver]}, delivery={"smtp_port": port},
                           queue={"poll_interval": 0.1, "retry_intervals": [3600]})
    filler = small / "filler"
    try:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
            for n in range(3):
                c.sendmail("x@example.test", [f"r{n}@sink.test"], f"Subject: full\r\nX-Token: t{n}\r\n\r\nx\r\n".encode())
        wait_for(lambda: sink.waiting == 3, timeout=20, what="three deliveries in DATA")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # until ENOSPC
        sink.gate.set()  # the next hop accepts; the index cannot record it
        inst.expect_log(r"event=index-write-failed", timeout=20)

        listed = subprocess.run([sys.executable, "-m", "waypost", "--data", str(inst.data), "queue", "list", "--json"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
        assert len(__import__("json").loads(listed.stdout)) == 3

        filler.unlink()  # the disk recovers
        wait_for(lambda: inst.queue_ids() == [], timeout=15, what="the queue to drain (not after queue.lease)")
        inst.expect_log(r"event=index-writable-again")
        assert inst.stop() == 0
        assert sink.seen == {"t0": 1, "t1": 1, "t2": 1}
    finally:
        inst.stop()
        dns.stop()
        controller.stop()
        subprocess.run(["umount", "-l", str(small)], check=False)  # -l: this process may hold the db open


def test_queue_list_reads_a_closed_database_on_a_full_disk(tmp_path):
    # Issue 13 item 3: with every connection closed, opening the database in WAL mode
    # must create its -wal and -shm files; on a full disk that failed with a traceback.
    import json
    import subprocess
    import sys

    from support.server import ROOT

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True)
    try:
        data = small / "data"

        def waypost(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "waypost", "--data", str(data), *args], cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)

        subprocess.run([sys.executable, "-m", "waypost", "init", str(data), "--domain", "example.test"],
                       cwd=ROOT, check=True, capture_output=True)
        from waypost.db import QueuedMessage, QueuedRecipient, SQLiteDatabase

        db = SQLiteDatabase(data / "waypost.db")
        m = QueuedMessage("0190000000000AAAAAAAAAA", "x@example.test", 1.7e9, 10, {})
        m.recipients.append(QueuedRecipient(m.msg_id, 0, "joe@far.test", "mx:far.test", {"kind": "remote"}))
        db.queue_insert([m], lease_owner="", lease_until=0.0)
        db.close()  # the last connection: the -wal and -shm files go
        assert not (data / "waypost.db-wal").exists()
        subprocess.run(["dd", "if=/dev/zero", f"of={small / 'filler'}", "bs=64k"], capture_output=True)

        listed = waypost("queue", "list", "--json")
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == [m.msg_id]
        refused = waypost("queue", "delete", "--all", "--yes")  # a write: one line, no traceback
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("error: the database refused the command"), refused.stderr
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_finished_message_whose_file_a_kill_left_is_not_delivered_again(tmp_path):
    # Killed after the index recorded the delivery and before the spool file went: the
    # file must not come back as an orphan (it did when the entry went first).
    import json as _json

    from waypost.db import QueuedMessage, QueuedRecipient

    inst = WaypostInstance(tmp_path / "data", queue={"poll_interval": 0.1, "orphan_scan": 0.2})
    inst.ok("account", "add", "alice@example.test", "--no-password")
    route = {"kind": "local", "address": "alice@example.test", "domain": "example.test", "name": "alice",
             "object_kind": "account", "account": "alice"}
    msg_id = "0190000000000DONE000001"
    envelope = {"sender": "x@outside.example", "created": time.time() - 5, "size": 20, "hops": 0, "params": {},
                "recipients": [{"idx": 0, "address": "alice@example.test", "target": "local", "route": route}]}
    db = inst.db()
    m = QueuedMessage(msg_id, "x@outside.example", envelope["created"], 20, {"hops": 0, "params": {}})
    m.recipients.append(QueuedRecipient(msg_id, 0, "alice@example.test", "local", route, "delivered", 1))
    db.queue_insert([m], lease_owner="", lease_until=0.0)
    db.close()
    spool = inst.data / "spool" / "queue"
    spool.mkdir(parents=True, exist_ok=True)
    env = _json.dumps(envelope).encode()
    (spool / msg_id).write_bytes(b"WAYPOST-SPOOL 1\n" + str(len(env)).encode() + b"\n" + env + b"\n"
                                 + b"Subject: done\r\n\r\nx\r\n")
    with inst:
        inst.start()
        inst.expect_log(r"event=recovered")
        assert not (spool / msg_id).exists()
        assert inst.queue_ids() == []
        assert inst.stop() == 0
        assert inst.log_lines(r"orphans-adopted|event=delivered") == []
        assert inst.messages("alice@example.test") == []
