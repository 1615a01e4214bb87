"""The PostgreSQL engine as a client sees it: a server whose database cannot be reached
answers "try again later" (451 4.3.0), says so in one log line, and recovers by itself
when the database's port comes up.  (PostgreSQL itself is shared on this machine and is
never stopped: the port that comes up is a forwarder to it, support/tcpproxy.py.)
Also: ``init --database``, ``storage migrate`` from SQLite, ``cluster status``."""

from __future__ import annotations

import imaplib
import smtplib

import pytest

from support import pg
from support.server import WaypostInstance, free_port, wait_for
from support.tcpproxy import TCPProxy
from support.tls import client_context


def test_unreachable_database_gives_451_then_mail_flows_when_it_comes_back(tmp_path):
    url = pg.new_url()
    inst = WaypostInstance(tmp_path / "data", database=url)
    inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
    port = free_port()
    inst.configure(storage={"database": pg.at_port(url, port), "pool_timeout": 1.0})
    with inst:
        inst.start()  # the server starts although its database is down
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
            c.ehlo("client.example")
            assert c.mail("someone@outside.example")[0] == 250
            code, text = c.rcpt("alice@example.test")
            assert (code, text[:5]) == (451, b"4.3.0")
        line = inst.expect_log(r"event=storage-unavailable")[0]
        assert f"127.0.0.1:{port}" in line
        with imaplib.IMAP4("127.0.0.1", inst.imap_port) as m:  # RFC 5530 UNAVAILABLE, not BYE
            m.starttls(client_context())
            with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
                m.login("alice@example.test", "alice-password")
            assert m.noop()[0] == "OK"
        inst.expect_log(r"event=storage-unavailable .*command=LOGIN")
        assert "Traceback" not in "\n".join(inst.output)

        with TCPProxy(port, ("127.0.0.1", 5432)):
            def accepted() -> bool:
                with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
                    c.ehlo("client.example")
                    c.mail("someone@outside.example")
                    if c.rcpt("alice@example.test")[0] != 250:
                        return False
                    code, _ = c.data(b"Subject: back\r\n\r\nthe database is back\r\n")
                    if code == 451:  # start-up recovery has not run yet: still "later"
                        return False
                    assert code == 250
                    return True
            wait_for(accepted, timeout=30, interval=0.5, what="a 250 once the database is reachable")
            wait_for(lambda: len(inst.messages("alice@example.test")) == 1, what="the message delivered")
            inst.stop()


def test_init_with_a_postgresql_url_writes_it_and_makes_the_schema(tmp_path):
    url = pg.new_url()
    inst = WaypostInstance(tmp_path / "data", database=url)
    assert inst.settings.storage.database == url
    assert not (inst.data / "waypost.db").exists()
    assert "postmaster" in inst.ok("account", "list")
    bad = inst.cli("init", str(tmp_path / "other"), "--database", "postgresql://postgres@127.0.0.1:1", use_data=False)
    assert bad.exit_code != 0 and "names no database" in bad.output


def test_storage_migrate_copies_a_sqlite_installation_that_then_serves_from_postgresql(tmp_path):
    import json
    import subprocess
    import sys

    from support.server import ROOT

    inst = WaypostInstance(tmp_path / "data", database="waypost.db")  # SQLite, whatever the run's engine
    inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
    inst.ok("alias", "add", "al@example.test", "alice")
    inst.ok("router", "import", "-", input="<*@old.test> = alice@example.test\n")
    with inst:
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
            c.sendmail("x@outside.example", ["al@example.test"], b"Subject: before the move\r\n\r\nkept\r\n")
        wait_for(lambda: len(inst.messages("alice@example.test")) == 1, what="the message delivered")
        with imaplib.IMAP4("127.0.0.1", inst.imap_port) as m:  # index, flags: in the database
            m.starttls(client_context())
            m.login("alice@example.test", "alice-password")
            m.select("INBOX")
            m.store("1", "+FLAGS", "(\\Flagged)")
        inst.stop()

    url = pg.new_url()

    def waypost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "waypost", "--data", str(inst.data), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    done = waypost("storage", "migrate", "--to", url)
    assert done.returncode == 0, done.stderr
    assert "counts match" in done.stdout and "messages" in done.stdout
    again = waypost("storage", "migrate", "--to", url)  # the target is not empty now
    assert again.returncode == 1 and "not empty" in again.stderr and "Traceback" not in again.stderr
    assert waypost("storage", "migrate", "--to", url, "--force").returncode == 0

    before = json.loads(inst.ok("account", "list", "--json"))
    inst.configure(storage={"database": url})
    assert json.loads(inst.ok("account", "list", "--json")) == before
    assert "alice@example.test" in inst.ok("route", "joe@old.test")
    with inst:
        inst.start()
        with imaplib.IMAP4("127.0.0.1", inst.imap_port) as m:
            m.starttls(client_context())
            m.login("alice@example.test", "alice-password")
            m.select("INBOX")
            typ, data = m.fetch("1", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK" and b"\\Flagged" in data[0][0] and b"before the move" in data[0][1]
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:  # new mail gets the next UID
            c.sendmail("x@outside.example", ["alice@example.test"], b"Subject: after\r\n\r\nnew\r\n")
        wait_for(lambda: len(inst.messages("alice@example.test")) == 2, what="the second message")
        with imaplib.IMAP4("127.0.0.1", inst.imap_port) as m:
            m.starttls(client_context())
            m.login("alice@example.test", "alice-password")
            m.select("INBOX")
            assert wait_for(lambda: m.uid("SEARCH", "ALL")[1][0].split() == [b"1", b"2"] or None,
                            what="UIDs 1 and 2")
        inst.stop()


def test_cluster_status_shows_the_running_workers_of_two_nodes(tmp_path):
    import json

    url = pg.new_url()
    a = WaypostInstance(tmp_path / "a", database=url, hostname="mail-a.example.test")
    b = WaypostInstance(tmp_path / "b", database=url, hostname="mail-b.example.test", host="127.0.0.2")
    with a, b:
        a.start()
        rows = wait_for(lambda: json.loads(a.ok("cluster", "status", "--json")) or None, what="a heartbeat")
        [row] = rows
        assert row["node"] == "mail-a.example.test" and row["state"] == "up"
        assert f"smtp=127.0.0.1:{a.smtp_port}" in row["addresses"]
        assert "1 node(s) up" in b.ok("cluster", "status")  # seen from the other data directory too
        b.start()  # a second node on the same database (docs/cluster.md)
        b.expect_log(r"event=cluster-nodes node=mail-b.example.test others=mail-a.example.test")
        rows = wait_for(lambda: len(r := json.loads(a.ok("cluster", "status", "--json"))) == 2 and r,
                        what="two heartbeats")
        assert sorted(r["node"] for r in rows) == ["mail-a.example.test", "mail-b.example.test"]
        a.stop()
        assert [r["node"] for r in json.loads(b.ok("cluster", "status", "--json"))] == ["mail-b.example.test"]


def test_no_250_before_the_message_is_in_the_postgresql_index(tmp_path):
    """The PostgreSQL twin of test_queue_races' SQLite test: a transaction holds a lock
    that every insert into the queue index waits for while a message is sent; the 250
    may come only once the index took the entry, and the file is in queue/ by then."""
    import threading

    import psycopg

    from support.server import free_port as _port

    url = pg.new_url()
    inst = WaypostInstance(tmp_path / "data", database=url,
                           delivery={"smtp_port": _port(), "connect_timeout": 1.0},
                           dns={"nameservers": ["127.0.0.1:9"], "timeout": 0.5}, queue={"retry_intervals": [3600]})
    seen: list[tuple[int, bytes, bool, bool, bool]] = []
    replied = threading.Event()

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=60) as c:
            c.ehlo("client.example")
            c.mail("x@example.test")
            c.rcpt("joe@unreachable.test")
            code, text = c.data(b"Subject: order\r\n\r\nx\r\n")
        early = not locked.is_set()
        qid = text.rsplit(b" ", 1)[-1].decode()
        with psycopg.connect(url) as reader:
            indexed = reader.execute("SELECT 1 FROM queue_messages WHERE id=%s", (qid,)).fetchone() is not None
        seen.append((code, text, indexed, (inst.data / "spool" / "queue" / qid).exists(), early))
        replied.set()

    locked = threading.Event()  # set once the lock is given back
    with inst, psycopg.connect(url) as holder:
        inst.start()
        for _ in range(3):
            replied.clear()
            locked.clear()
            with holder.transaction():
                holder.execute("LOCK TABLE queue_messages IN EXCLUSIVE MODE")  # inserts wait for it
                t = threading.Thread(target=send)
                t.start()
                assert not replied.wait(1.5), "250 while the index could not take the entry"
                locked.set()
            t.join(30)
        inst.stop()
    assert len(seen) == 3, seen
    for code, text, indexed, on_disk, early in seen:
        assert code == 250 and text.startswith(b"2.0.0"), (code, text)
        assert indexed and on_disk and not early, (text, indexed, on_disk, early)


def test_config_check_warns_when_the_database_cannot_be_reached(tmp_path):
    url = pg.new_url()
    inst = WaypostInstance(tmp_path / "data", database=url)
    assert inst.cli("config", "check").exit_code == 0
    port = free_port()
    inst.configure(storage={"database": pg.at_port(url, port)})
    check = inst.cli("config", "check")
    assert check.exit_code == 0, check.output  # a warning: serve would start and answer 451
    assert f"warning: storage.database: database postgresql://postgres@127.0.0.1:{port}/" in check.output
    assert "unreachable" in check.output


def test_the_engine_fails_fast_while_the_server_is_down_and_reconnects_by_itself(tmp_path):
    """A PostgreSQL server of the test's own (the machine's is never stopped) goes down
    under an open pool: the first call that meets it raises StorageUnavailable, and
    every call after it at once, not after ``pool_timeout`` (5 s here); once the server
    is back the same engine answers again within 5 s, with no restart."""
    import time

    from support.pgprivate import PrivatePostgres, available
    from waypost.db import StorageUnavailable
    from waypost.db.postgres import PostgresDatabase

    if available() is not None:
        pytest.skip(str(available()))
    with PrivatePostgres() as server:
        db = PostgresDatabase(server.new_database(), tmp_path / "changes", pool_size=4, timeout=5.0)
        try:
            db.add_domain("example.test")
            assert [d.name for d in db.list_domains()] == ["example.test"]
            server.stop("fast")
            with pytest.raises(StorageUnavailable):
                db.list_domains()
            waits = []
            for _ in range(20):
                started = time.monotonic()
                with pytest.raises(StorageUnavailable, match="unreachable"):
                    db.list_domains()
                waits.append(time.monotonic() - started)
                time.sleep(0.05)
            assert max(waits) < 1.0, waits  # not pool_timeout (5 s) each
            server.start()
            up = time.monotonic()

            def answers() -> bool:
                try:
                    return [d.name for d in db.list_domains()] == ["example.test"]
                except StorageUnavailable:
                    return False
            wait_for(answers, timeout=10, interval=0.05, what="the engine answering after the restart")
            assert time.monotonic() - up < 5.0
        finally:
            db.close()


def test_storage_migrate_force_copies_sieve_and_counts_quota_once(tmp_path):
    """A second ``migrate --force`` replaces the target: quota usage and mailbox counts
    are those of the source (not twice them), and Sieve scripts, vacation memory, URLAUTH
    keys and WebUser sessions come along."""
    from waypost.db.copy import copy_sqlite_to_postgres
    from waypost.db.postgres import PostgresDatabase
    from waypost.db.sqlite import SQLiteDatabase

    source = tmp_path / "waypost.db"
    db = SQLiteDatabase(source)
    box = db.mailbox_create("example.test", "alice", "INBOX", "", 1)
    db.message_add(box.id, [("m1", "cur", (), 100, 1.0), ("m2", "new", ("\\Seen",), 50, 2.0)])
    db.sieve_put("example.test", "alice", "main", "keep;")
    db.sieve_activate("example.test", "alice", "main")
    key = db.urlauth_key(box.id, "example.test", "alice", create=True)
    db.web_session_add("hash1", "alice@example.test", "csrf", 1.0, 4e9)
    db.close()

    url = pg.new_url()
    copy_sqlite_to_postgres(source, url)
    copy_sqlite_to_postgres(source, url, force=True)
    target = PostgresDatabase(url, pool_size=1)
    try:
        assert target.quota_usage("example.test", "alice") == (150, 2)
        assert target.mailbox_state(box.id) is not None and target.mailbox_state(box.id)[2] == 2
        assert target.sieve_active("example.test", "alice") == ("main", "keep;")
        assert target.urlauth_key(box.id, "example.test", "alice") == key
        assert target.web_session_get("hash1", 2.0) == ("alice@example.test", "csrf", 1.0)
    finally:
        target.close()
