"""The storage engines themselves: schema versions and migrations on both engines, and
the PostgreSQL engine's behaviour when its server cannot be reached."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import psycopg
import pytest
from support import pg
from support.server import free_port, wait_for
from support.tcpproxy import TCPProxy

from waypost.db import SchemaError, SQLiteDatabase, StorageUnavailable, open_database
from waypost.db import postgres as pg_engine
from waypost.db import sqlite as sqlite_engine
from waypost.db.postgres import PostgresDatabase


def test_a_sqlite_database_of_the_unversioned_schema_is_upgraded_and_keeps_its_rows(tmp_path):
    """A file made before versioning (the version 1 tables, user_version 0, the old
    'schema_version' meta row) is migrated in place; its rows are kept."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(sqlite_engine._V1)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO domains (name, settings, created) VALUES ('example.test', '{}', 1.0)")
    conn.execute("INSERT INTO objects (domain, name, kind, data, created) VALUES"
                 " ('example.test', 'alice', 'account', '{\"real_name\": \"Alice\"}', 2.0)")
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    conn.close()
    db = SQLiteDatabase(path)
    try:
        assert db.get_object("example.test", "alice").data == {"real_name": "Alice"}
        assert db.get_domain("example.test") is not None
    finally:
        db.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == sqlite_engine.SCHEMA_VERSION >= 1
    conn.close()


def test_a_sqlite_database_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "new.db"
    SQLiteDatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={sqlite_engine.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer Waypost"):
        SQLiteDatabase(path)


def test_postgresql_migrations_are_numbered_rows_applied_once():
    url = pg.new_url()
    one, two = PostgresDatabase(url), PostgresDatabase(url)
    try:
        one.add_domain("example.test")           # the first connection migrates
        assert two.get_domain("example.test") is not None  # the second finds it done
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, pg_engine.SCHEMA_VERSION + 1))
        assert one.schema_version() == pg_engine.SCHEMA_VERSION
    finally:
        one.close()
        two.close()


def test_a_postgresql_schema_newer_than_the_code_is_refused():
    url = pg.new_url()
    db = PostgresDatabase(url)
    db.list_domains()
    db.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, applied) VALUES (%s, 0)", (pg_engine.SCHEMA_VERSION + 1,))
    db = PostgresDatabase(url)
    try:
        with pytest.raises(SchemaError, match="newer Waypost"):
            db.list_domains()
    finally:
        db.close()


def test_an_unreachable_server_raises_storage_unavailable_then_recovers_when_its_port_comes_up(tmp_path):
    port = free_port()
    url = pg.closed_port_url(port)
    db = open_database(url, tmp_path, pool_size=2, pool_timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{port}"):
            db.get_domain("example.test")
        assert time.monotonic() - started < 5  # bounded by pool_timeout, not hung
        with TCPProxy(port, ("127.0.0.1", 5432)):
            deadline = time.monotonic() + 30
            while True:
                try:
                    db.add_domain("example.test")
                    break
                except StorageUnavailable:
                    assert time.monotonic() < deadline, "the engine never reconnected"
            assert db.get_domain("example.test") is not None
        # The proxy is gone with its connections: the next use fails cleanly again.
        with pytest.raises(StorageUnavailable):
            db.list_domains()
    finally:
        db.close()


def test_the_password_of_the_url_never_appears_in_errors(tmp_path):
    port = free_port()
    db = PostgresDatabase(f"postgresql://waypost:s3cret-pw@127.0.0.1:{port}/x", timeout=0.5)
    try:
        with pytest.raises(StorageUnavailable) as info:
            db.list_domains()
        assert "s3cret-pw" not in str(info.value)
    finally:
        db.close()


def test_bad_postgresql_urls_are_reported_without_connecting(tmp_path):
    from waypost.db import database_problem

    assert database_problem("postgresql://postgres@127.0.0.1:1/waypost", tmp_path) is None
    assert "names no database" in (database_problem("postgresql://postgres@127.0.0.1:1", tmp_path) or "")
    assert "not a valid" in (database_problem("postgresql://x@127.0.0.1:1/db?bogus=1", tmp_path) or "")


def test_a_postgresql_backup_is_a_pg_dump_archive_that_restores(tmp_path):
    import shutil
    import subprocess

    url = pg.new_url()
    db = PostgresDatabase(url)
    try:
        db.add_domain("example.test")
        db.backup_to(tmp_path / "waypost.pgdump")
    finally:
        db.close()
    assert (tmp_path / "waypost.pgdump").read_bytes()[:5] == b"PGDMP"
    listing = subprocess.run([shutil.which("pg_restore") or "pg_restore", "--list", str(tmp_path / "waypost.pgdump")],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA" in listing and " domains " in listing


def test_a_change_on_one_machine_reaches_the_cache_of_another_through_notify(tmp_path):
    """Two engines with separate change tokens stand for two machines sharing the
    database: what one changes, the other's cache drops once the NOTIFY arrives."""
    url = pg.new_url()
    a = PostgresDatabase(url, tmp_path / "a-changes")
    b = PostgresDatabase(url, tmp_path / "b-changes")
    try:
        a.add_domain("example.test")
        deadline = time.monotonic() + 10
        while not b._listening.is_set():  # the first cached read starts b's listener
            assert b.get_domain("example.test") is not None
            assert time.monotonic() < deadline, "the listener never came up"
            time.sleep(0.05)
        assert b.get_domain("example.test").settings == {}          # cached now
        with psycopg.connect(url) as conn:  # a read behind b's back shows it is cached
            conn.execute("UPDATE domains SET settings='{\"x\": 1}'")
        assert b.get_domain("example.test").settings == {}
        a.update_domain_settings("example.test", {"y": 2})           # another machine
        deadline = time.monotonic() + 5
        while b.get_domain("example.test").settings != {"x": 1, "y": 2}:
            assert time.monotonic() < deadline, "b never heard the change"
            time.sleep(0.02)
    finally:
        a.close()
        b.close()


def test_heartbeats_list_workers_with_the_leases_they_hold(make_db):
    from waypost.db import QueuedMessage, QueuedRecipient

    db = make_db()
    db.node_heartbeat("mx1/100", "mx1", ["smtp=127.0.0.1:25"], 0.5, 1000.0)
    db.node_heartbeat("mx2/200", "mx2", ["smtp=127.0.0.2:25"], 1.5, 1000.0)
    db.node_heartbeat("mx1/100", "mx1", ["smtp=127.0.0.1:25"], 0.7, 1010.0)  # a later beat
    m = QueuedMessage("0190000000000AAAAAAAAAA", "x@example.test", 1.0, 10, {})
    m.recipients += [QueuedRecipient(m.msg_id, i, f"r{i}@far.test", "mx:far.test", {}) for i in range(3)]
    db.queue_insert([m], lease_owner="mx2/200", lease_until=2000.0)
    nodes = db.node_list(1500.0)
    assert [(n.worker, n.node, n.started, n.seen, n.load, n.leases) for n in nodes] == [
        ("mx1/100", "mx1", 1000.0, 1010.0, 0.7, 0), ("mx2/200", "mx2", 1000.0, 1000.0, 1.5, 3)]
    assert nodes[1].addresses == ["smtp=127.0.0.2:25"]
    assert [n.leases for n in db.node_list(2500.0)] == [0, 0]  # leases that ran out are not held
    db.node_forget("mx1/100")
    assert [n.worker for n in db.node_list(1500.0)] == ["mx2/200"]


def test_a_postgresql_schema_of_version_1_is_migrated_to_the_current_one():
    url = pg.new_url()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
            for st in pg_engine.MIGRATIONS[0]:
                conn.execute(st)
            conn.execute("INSERT INTO schema_version VALUES (1, 0)")
            conn.execute("INSERT INTO domains (name, settings, created) VALUES ('example.test', '{}', 1)")
    db = PostgresDatabase(url)
    try:
        assert db.get_domain("example.test") is not None
        assert db.schema_version() == pg_engine.SCHEMA_VERSION == 13
        db.node_heartbeat("w/1", "w", [], 0.0, 1.0)  # the table version 2 added
        assert [n.worker for n in db.node_list(1.0)] == ["w/1"]
        db.sieve_put("example.test", "al", "s", "keep;")  # the tables version 3 added
        assert db.sieve_list("example.test", "al") == [("s", False)]
        assert db.quota_usage("example.test", "al") == (0, 0)
        assert db.urlauth_key(1, "example.test", "al") is None  # the table version 4 added
        assert db.api_token_list() == []  # the table version 7 added
        assert db.expunged_prune(1.0, 1.0) == 0  # the columns version 9 added
        assert db.message_sort_keys_get(1) == {}  # the columns version 11 added
        with db._read() as c:  # the index version 12 added
            assert c.execute("SELECT 1 FROM pg_indexes WHERE tablename='seen' AND indexname='seen_reader'").fetchone()
    finally:
        db.close()


def test_expunge_records_are_pruned_and_the_floor_kept(make_db):
    """``expunged_prune`` drops old expunge records, raising the mailbox's floor: asked
    from below it, ``message_changes`` answers None for the expunged UIDs (compare
    ``message_uids``); the header blocks kept of expunged messages go with them, or
    sooner."""
    db = make_db()
    box = db.mailbox_create("example.test", "al", "INBOX", "", 1234)
    db.message_add(box.id, [(f"m{i}", "cur", (), 10, 1.0) for i in range(1, 5)])
    db.message_headers_set(box.id, [(u, b"Subject: %d\r\n\r\n" % u) for u in (1, 2, 3)])
    db.message_expunge(box.id, [1])
    assert db.message_headers_get(box.id, [1]) == {1: b"Subject: 1\r\n\r\n"}  # kept after the expunge
    assert db.message_headers_missing(box.id, [1, 2, 4]) == [4]
    after_first = db.mailbox_state(box.id)[1]
    assert db.message_changes(box.id, 0)[1] == [1]
    assert db.expunged_prune(time.time() - 3600, time.time() - 3600) == 0  # nothing that old
    db.message_expunge(box.id, [2])
    assert db.expunged_prune(0.0, time.time() + 1) == 0  # the header blocks only
    assert db.message_headers_get(box.id, [1, 2, 3]) == {3: b"Subject: 3\r\n\r\n"}
    assert db.message_changes(box.id, 0)[1] == [1, 2]
    assert db.expunged_prune(time.time() + 1, 0.0) == 2
    assert db.message_changes(box.id, 0)[1] is None  # below the floor
    assert db.message_changes(box.id, after_first)[1] is None
    assert db.message_changes(box.id, db.mailbox_state(box.id)[1])[1] == []
    assert db.message_uids(box.id) == [3, 4]
    db.message_expunge(box.id, [4])
    assert db.message_changes(box.id, db.mailbox_state(box.id)[1] - 1)[1] == [4]  # exact above it
    db.message_headers_prune(box.id)
    assert db.message_headers_get(box.id) == {3: b"Subject: 3\r\n\r\n"}


def test_a_postgresql_prune_raises_the_floor_for_a_record_committed_while_it_runs(tmp_path):
    """An expunge on another node commits while a prune is under way, its record's time
    already older than the prune's bound (that node's clock is behind).  Whatever the
    prune drops raises the floor: asked from before that expunge, ``message_changes``
    gives its UID or None (compare the UIDs), never an empty list.  Read and deleted in
    two statements, the prune dropped the record read by neither and the answer was []."""
    db = PostgresDatabase(pg.new_url(), tmp_path / "changes", pool_size=4)
    try:
        box = db.mailbox_create("example.test", "al", "INBOX", "", 1234)
        db.message_add(box.id, [(f"m{i}", "cur", (), 10, 1.0) for i in range(1, 4)])
        db.message_expunge(box.id, [1])
        known = db.mailbox_state(box.id)[1]  # what a client saw before the other expunge
        with psycopg.connect(db.url, autocommit=True) as other:
            # message_expunge's statements, held open: the mailbox row stays locked.
            other.execute("BEGIN")
            top = other.execute("SELECT highestmodseq FROM mailboxes WHERE id=%s FOR UPDATE",
                                (box.id,)).fetchone()[0]
            other.execute("DELETE FROM messages WHERE mailbox_id=%s AND uid=2", (box.id,))
            other.execute("INSERT INTO expunged (mailbox_id, uid, modseq, at) VALUES (%s, 2, %s, %s)",
                          (box.id, top + 1, time.time()))
            other.execute("UPDATE mailboxes SET highestmodseq=%s WHERE id=%s", (top + 1, box.id))
            dropped: list[int] = []
            prune = threading.Thread(target=lambda: dropped.append(db.expunged_prune(time.time() + 3600, 0.0)))
            prune.start()
            blocked = "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
            with psycopg.connect(db.url, autocommit=True) as watch:
                wait_for(lambda: watch.execute(blocked, (other.info.backend_pid,)).fetchone()[0],
                         what="the prune waiting for the other expunge")
            other.execute("COMMIT")
            prune.join(30)
        assert not prune.is_alive() and dropped
        assert db.message_uids(box.id) == [3]
        assert db.message_changes(box.id, known)[1] in (None, [2])
        assert db.message_changes(box.id, 0)[1] in (None, [1, 2])
    finally:
        db.close()


def test_a_postgresql_select_with_no_recent_message_to_claim_writes_nothing(tmp_path):
    """SELECT claims \\Recent (``message_claim_recent``) each time; with nothing new to
    claim it must not write: an UPDATE that changes nothing still makes a new version
    of the mailbox row (its ctid moves) and a flush at commit, a disk wait per SELECT."""
    db = PostgresDatabase(pg.new_url(), tmp_path / "changes", pool_size=2)
    try:
        box = db.mailbox_create("example.test", "al", "INBOX", "", 1234)
        db.message_add(box.id, [(f"m{i}", "cur", (), 10, 1.0) for i in range(1, 4)])
        with psycopg.connect(db.url, autocommit=True) as c:
            def version() -> tuple[str, str]:
                return c.execute("SELECT ctid::text, xmin::text FROM mailboxes WHERE id=%s", (box.id,)).fetchone()
            assert db.message_claim_recent(box.id, 4) == 1  # UIDs 1-3 claimed: a write
            claimed = version()
            assert db.message_claim_recent(box.id, 4) == 4  # nothing left
            assert db.message_claim_recent(box.id, 2) == 4  # a session that knows less
            assert version() == claimed
            db.message_add(box.id, [("m4", "cur", (), 10, 1.0)])
            moved = version()
            assert db.message_claim_recent(box.id, 5) == 4  # UID 4: claimed
            assert version() != moved
    finally:
        db.close()


def test_connections_cut_while_resting_in_the_pool_are_replaced_before_use(tmp_path):
    """A PostgreSQL restart as the pool sees it: every connection it holds is cut.  The
    next command after a rest longer than idle_check still succeeds (the pool tries a
    resting connection first and makes a new one); with no rest allowed it fails once."""
    port = free_port()
    url = pg.at_port(pg.new_url(), port)
    checked = PostgresDatabase(url, pool_size=2, timeout=2.0, idle_check=0.0)
    unchecked = PostgresDatabase(url, pool_size=2, timeout=2.0, idle_check=3600.0)
    try:
        proxy = TCPProxy(port, ("127.0.0.1", 5432))
        checked.add_domain("example.test")
        assert unchecked.get_domain("example.test") is not None
        proxy.close()                                # "the server restarts"
        proxy = TCPProxy(port, ("127.0.0.1", 5432))  # ... and is back
        try:
            assert [d.name for d in checked.list_domains()] == ["example.test"]
            with pytest.raises(StorageUnavailable):  # the cut connection, used as it was
                unchecked.list_domains()
            assert [d.name for d in unchecked.list_domains()] == ["example.test"]  # then a new one
        finally:
            proxy.close()
    finally:
        checked.close()
        unchecked.close()


def test_a_resting_connection_nothing_came_on_is_used_without_a_round_trip(tmp_path):
    """The check before use is a look at the socket: after a rest, a command sends what
    it sends when no check is made at all (no empty query first); after the server cut
    the connection, the next command still succeeds, on a new one."""
    port = free_port()
    url = pg.at_port(pg.new_url(), port)
    looks = PostgresDatabase(url, pool_size=1, timeout=2.0, idle_check=0.0)
    never = PostgresDatabase(url, pool_size=1, timeout=2.0, idle_check=3600.0)
    proxy = TCPProxy(port, ("127.0.0.1", 5432))
    try:
        looks.add_domain("example.test")
        assert never.get_domain("example.test") is not None  # each has its connection now

        def sent_by(db: PostgresDatabase) -> int:
            time.sleep(0.2)  # a rest
            before = proxy.sent
            assert db.get_domain("example.test") is not None
            time.sleep(0.1)  # the proxy's thread has counted what it forwarded
            return proxy.sent - before
        sent = {name: {sent_by(db) for _ in range(3)} for name, db in (("looks", looks), ("never", never))}
        assert sent["looks"] == sent["never"] and len(sent["looks"]) == 1 and sent["looks"] != {0}
        proxy.close()                                # "the server restarts"
        proxy = TCPProxy(port, ("127.0.0.1", 5432))  # ... and is back
        time.sleep(0.2)
        assert [d.name for d in looks.list_domains()] == ["example.test"]
    finally:
        proxy.close()
        looks.close()
        never.close()


def test_web_sessions_store_hash_expire_and_delete(make_db):
    """WebUser sessions (migration 4), on both engines: found until they expire, gone
    after delete; the row holds what it was given (a hash, never a session id)."""
    db = make_db()
    db.web_session_add("h1", "alice@example.test", "csrf1", 1000.0, 2000.0)
    assert db.web_session_get("h1", 1500.0) == ("alice@example.test", "csrf1", 1000.0)
    assert db.web_session_get("h1", 2500.0) is None
    assert db.web_session_get("nope", 1500.0) is None
    # Adding another session later drops the expired ones.
    db.web_session_add("h2", "bob@example.test", "csrf2", 3000.0, 4000.0)
    assert db.web_session_get("h1", 1500.0) is None
    db.web_session_delete("h2")
    assert db.web_session_get("h2", 3500.0) is None
    # A password change ends the account's other sessions, not its own nor others'.
    for h, who in (("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("b1", "bob")):
        db.web_session_add(h, f"{who}@example.test", "c", 5000.0, 6000.0)
    assert db.web_session_end_others("alice@example.test", "a2") == 2
    assert [h for h in ("a1", "a2", "a3", "b1") if db.web_session_get(h, 5500.0)] == ["a2", "b1"]


def _savedate_checks(db) -> None:
    """Migration 8 (RFC 8514 save dates): a message indexed before has none; one
    added now has the time it was stored, whatever its internal date."""
    box = db.mailbox_create("example.test", "sd", "INBOX", "", 7)
    before = time.time()
    [new] = db.message_add(box.id, [("1.M1.h", "new", (), 10, 1_000_000.0)])
    assert new.internaldate == 1_000_000.0 and before - 1 <= new.savedate <= time.time() + 1
    assert [m.savedate for m in db.message_list(box.id)] == [new.savedate]


def test_sqlite_migration_8_keeps_old_messages_without_a_save_date(tmp_path):
    path = tmp_path / "v7.db"
    conn = sqlite3.connect(path)
    for statements in sqlite_engine.MIGRATIONS[:7]:
        for st in statements:
            conn.execute(st)
    conn.execute("PRAGMA user_version=7")
    conn.execute("INSERT INTO mailboxes (id, domain, account, name, folder, uidvalidity, uidnext)"
                 " VALUES (1, 'example.test', 'old', 'INBOX', '', 5, 2)")
    conn.execute("INSERT INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate)"
                 " VALUES (1, 1, '0.M0.h', 'cur', '', 1, 10, 5.0)")
    conn.commit()
    conn.close()
    db = SQLiteDatabase(path)
    try:
        assert [m.savedate for m in db.message_list(1)] == [None]
        _savedate_checks(db)
    finally:
        db.close()


def test_postgresql_migration_8_keeps_old_messages_without_a_save_date():
    url = pg.new_url()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
            for n, statements in enumerate(pg_engine.MIGRATIONS[:7], start=1):
                for st in statements:
                    conn.execute(st)
                conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (n,))
            row = conn.execute("INSERT INTO mailboxes (domain, account, name, folder, uidvalidity, uidnext)"
                               " VALUES ('example.test', 'old', 'INBOX', '', 5, 2) RETURNING id").fetchone()
            conn.execute("INSERT INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate)"
                         " VALUES (%s, 1, '0.M0.h', 'cur', '', 1, 10, 5.0)", (row[0],))
    db = PostgresDatabase(url)
    try:
        assert [m.savedate for m in db.message_list(row[0])] == [None]
        _savedate_checks(db)
    finally:
        db.close()


def test_sqlite_message_add_of_new_names_inserts_each_row_once(tmp_path):
    """Names none of which is indexed go in with one INSERT each and no DELETE: the
    count of rows inserted leaves out what the quota and count triggers change (a first
    scan of a 100,000-message Maildir inserted, deleted and inserted every row again,
    one statement each: 15 s)."""
    db = SQLiteDatabase(tmp_path / "add.db")
    box = db.mailbox_create("example.test", "alice", "INBOX", "", 7)
    statements: list[str] = []
    db._conn().set_trace_callback(statements.append)
    added = db.message_add(box.id, [(f"{i}.x", "cur", (), 10, 1.0) for i in range(5)])
    assert [m.uid for m in added] == [1, 2, 3, 4, 5]
    assert not [s for s in statements if s.startswith("DELETE")]
    assert len({s for s in statements if s.startswith("INSERT OR IGNORE INTO messages")}) == 5  # (traced per trigger too)
    # A name indexed already keeps its UID; the new ones follow, dense.
    again = db.message_add(box.id, [("9.x", "cur", (), 10, 1.0), ("2.x", "cur", (), 10, 1.0),
                                    ("10.x", "cur", (), 10, 1.0)])
    assert [(m.name, m.uid) for m in again] == [("9.x", 6), ("2.x", 3), ("10.x", 7)]
    assert [m.uid for m in db.message_list(box.id)] == [1, 2, 3, 4, 5, 6, 7]
    assert db.mailbox_state(box.id) == (8, 3, 7)
    db._conn().set_trace_callback(None)
    db.close()


def test_postgresql_migration_10_fills_the_domain_columns_of_a_queue_indexed_before():
    """Rows queued under schema 9 get their recipient's and sending account's domain."""
    from waypost.db import QueueFilter

    url = pg.new_url()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
            for n, statements in enumerate(pg_engine.MIGRATIONS[:9], start=1):
                for st in statements:
                    conn.execute(st)
                conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (n,))
            conn.execute("INSERT INTO queue_messages (id, sender, created, size, envelope) VALUES"
                         " ('M1', 'x@out.test', 1.0, 10, '{\"params\": {\"auth\": \"Bob@B.test\"}}'),"
                         " ('M2', 'bob@b.test', 2.0, 10, '{\"params\": {}}')")
            conn.execute("INSERT INTO queue_recipients (msg_id, idx, address, target, route, status, next_attempt)"
                         " VALUES ('M1', 0, 'r@far.test', 'mx:far.test', '{}', 'queued', 0),"
                         " ('M2', 0, '\"a@b\"@A.Test', 'local', '{}', 'queued', 0)")
    db = PostgresDatabase(url)
    try:
        assert [e.msg_id for e in db.queue_entries(QueueFilter(domain="b.test"))] == ["M1"]
        assert [e.msg_id for e in db.queue_entries(QueueFilter(domain="a.test"))] == ["M2"]
        assert [e.msg_id for e in db.queue_entries(QueueFilter(recipient="*@a.test"))] == ["M2"]
    finally:
        db.close()


def test_the_seen_marks_of_a_reader_are_found_through_an_index(make_db):
    """``account_forget`` drops a removed account's \\Seen marks on others' mailboxes
    (``DELETE FROM seen`` by reader): through an index, not a scan of every mark."""
    db = make_db()
    db.mailbox_list("example.test", "x")  # (the schema is made)
    if make_db.engine == "sqlite":
        plan = " ".join(str(r[-1]) for r in db._conn().execute(
            "EXPLAIN QUERY PLAN DELETE FROM seen WHERE user=?", ("z@example.test",)).fetchall())
        assert "USING" in plan and "INDEX" in plan and "(user=?)" in plan, plan
    else:
        with db._read() as c:
            defs = [r[0] for r in c.execute("SELECT indexdef FROM pg_indexes WHERE tablename='seen'").fetchall()]
        assert any(d.rstrip().endswith("(reader)") for d in defs), defs


def test_bulk_values_of_mixed_python_types_go_in_whole(make_db):
    """The mailbox index's bulk writes take whatever numbers their callers hold: an
    internal date or a sort date given as an int beside floats, empty lists, None and
    non-ASCII text (PostgreSQL sends these arrays in binary, where a list may not mix
    ints and floats: they are made floats first)."""
    from waypost.db.base import SortKeys

    db = make_db()
    box = db.mailbox_create("example.test", "al", "INBOX", "", 77)
    added = db.message_add(box.id, [("a", "new", (), 10, 1700000000), ("b", "cur", ("\\Seen", "$Label"), -1, 1.5),
                                    ("c", "cur", (), 2**33, 1700000001.25)],
                           keys=[SortKeys(1700000000, "änne", "grüße"), None, SortKeys(3.5, "", "")])
    assert [(m.uid, m.internaldate, m.size) for m in added] == [(1, 1700000000.0, 10), (2, 1.5, -1),
                                                                  (3, 1700000001.25, 2**33)]
    assert db.message_sort_keys_get(box.id) == {1: SortKeys(1700000000.0, "änne", "grüße"), 3: SortKeys(3.5, "", "")}
    db.message_sort_keys_set(box.id, [(2, SortKeys(7, "x", "y")), (3, SortKeys(8.25, "z", "ü"))], 77)
    assert db.message_sort_keys_get(box.id, [2, 3]) == {2: SortKeys(7.0, "x", "y"), 3: SortKeys(8.25, "z", "ü")}
    assert db.message_add(box.id, []) == []
    db.message_set_sizes(box.id, [(2, 5)])
    records, refused = db.message_store(box.id, [1, 2, 3, 99], ["\\Flagged"], "+")
    assert [m.uid for m in records] == [1, 2, 3] and refused == []
    db.message_headers_set(box.id, [(1, b"Subject: \xc3\xa4\r\n\r\n"), (3, b"\x00")])
    assert db.message_headers_get(box.id, [1, 3, 42]) == {1: b"Subject: \xc3\xa4\r\n\r\n", 3: b"\x00"}
    assert db.message_headers_missing(box.id, [1, 2, 3]) == [2]
    db.seen_set(box.id, "bo@example.test", [1, 3], True)
    assert db.seen_get(box.id, "bo@example.test") == {1, 3}
    assert [m.uid for m in db.message_expunge(box.id, [2, 3, 1000])] == [2, 3]
    assert db.message_expunge(box.id, []) == []
    assert [(m.uid, m.size) for m in db.message_list(box.id)] == [(1, 10)]


def test_domain_names_and_values_follow_changes_made_by_another_process(make_db):
    """What the Router asks for every address, from each engine's settings cache: a
    domain's name by its name or an alias (none for any other name, asked twice), and
    server-wide values (a list given out is the caller's own).  A change by a second
    engine on the same database (another process) is seen at once."""
    import time

    one, two = make_db(), make_db()
    one.add_domain("example.test")
    one.rename_domain_aliases("example.test", ["alias.test"])
    for _ in range(2):  # the second time from the cache
        assert one.domain_name("example.test") == "example.test"
        assert one.domain_name("alias.test") == "example.test"
        assert one.domain_name("far.test") is None
        assert one.get_domain("far.test") is None
        assert one.get_domain("alias.test").name == "example.test"
    two.rename_domain_aliases("example.test", ["other.test"])
    two.add_domain("far.test")
    deadline = time.monotonic() + 10  # PostgreSQL: the NOTIFY reaches the other engine
    while one.domain_name("alias.test") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert one.domain_name("alias.test") is None
    assert one.domain_name("other.test") == "example.test"
    assert one.domain_name("far.test") == "far.test"
    assert one.get_domain("far.test").name == "far.test"

    assert one.get_value("held") is None
    two.set_value("held", [])
    while one.get_value("held") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first = one.get_value("held")
    assert first == []
    first.append("changed by its caller")
    assert one.get_value("held") == []
    two.set_value("held", ["far.test"])
    while one.get_value("held") == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    got = one.get_value("held")
    got.append("x")
    assert one.get_value("held") == ["far.test"]
    two.set_value("version", 3)
    while one.get_value("version") != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert one.get_value("version") == 3


def test_a_worker_pool_starts_with_every_thread_connected_and_a_failure_is_only_logged(tmp_path, caplog):
    """``server._warm_executor``: every thread of a worker's pool has its SQLite
    connection open (with the common reads compiled) before the first command, so no
    command waits the 0.8 ms of opening one; nothing is written.  A database that
    cannot be prepared leaves a pool that still runs work."""
    from waypost.server import _warm_executor

    db = SQLiteDatabase(tmp_path / "w.db")
    before = db._conn().total_changes
    pool = _warm_executor(db)
    try:
        size = pool._max_workers
        assert len(pool._threads) == size == min(32, (os.cpu_count() or 1) + 4)
        assert len(db._all) == size + 1  # each thread's and the event loop's own
        # Work handed to the pool finds a connection ready: none is opened.
        assert pool.submit(db.mailbox_by_id, -1).result(10) is None
        assert len(db._all) == size + 1
        assert db._conn().total_changes == before  # reads only
    finally:
        pool.shutdown()
        db.close()

    class Broken:
        def prepare_thread(self) -> None:
            raise OSError("disk gone")

    pool = _warm_executor(Broken())
    try:
        assert pool.submit(lambda: 42).result(10) == 42
        assert any(getattr(r, "fields", {}).get("event") == "thread-prepare-failed" for r in caplog.records)
    finally:
        pool.shutdown()
