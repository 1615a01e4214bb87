"""Quota usage in the database: kept exact by the engine with every change to the
message index, counted once when an older database is opened, and the limits that
the directory gives (account, then domain; 0 is a limit; "unlimited" overrides)."""

from __future__ import annotations

import sqlite3

from waypost.db import Database, ObjectRecord, SQLiteDatabase
from waypost.mailstore import OverQuota, quota_of

import pytest


def _fill(db: Database) -> tuple[int, int]:
    inbox = db.mailbox_create("a.test", "al", "INBOX", "", 1)
    other = db.mailbox_create("a.test", "al", "Foo", ".Foo", 1)
    db.message_add(inbox.id, [("n1", "new", (), 100, 1.0), ("n2", "new", (), -1, 1.0)])
    db.message_add(other.id, [("n3", "new", (), 50, 1.0)])
    db.mailbox_create("a.test", "bo", "INBOX", "", 1)
    return inbox.id, other.id


def test_triggers_follow_add_size_expunge_and_mailbox_delete(make_db):
    """On both engines (the triggers are each engine's own)."""
    db = make_db()
    inbox, other = _fill(db)
    assert db.quota_usage("a.test", "al") == (150, 3)  # unknown size: 0 until measured
    db.message_set_sizes(inbox, [(2, 30)])
    assert db.quota_usage("a.test", "al") == (180, 3)
    db.message_add(inbox, [("n1", "new", (), 100, 1.0)])  # indexed already: not again
    assert db.quota_usage("a.test", "al") == (180, 3)
    db.message_expunge(inbox, [1])
    assert db.quota_usage("a.test", "al") == (80, 2)
    db.mailbox_delete(other)
    assert db.quota_usage("a.test", "al") == (30, 1)
    assert db.quota_recount("a.test", "al") == (30, 1)
    assert db.quota_usage("a.test", "bo") == (0, 0)


def test_statements_of_many_messages_and_accounts_are_counted_exactly(make_db):
    """One INSERT of many messages, one expunge of many, a mailbox deleted with its
    messages, over several accounts: the usage equals a recount after each (PostgreSQL
    keeps it by statement-level triggers, migration 13; SQLite by row-level ones)."""
    db = make_db()
    boxes = {(a, n): db.mailbox_create("a.test", a, n, "" if n == "INBOX" else "." + n, 1)
             for a in ("al", "bo") for n in ("INBOX", "Arch")}
    for (a, n), box in boxes.items():
        db.message_add(box.id, [(f"{a}{n}{i}", "cur", ("\\Seen",) if i % 3 else (), 100 + i if i % 7 else -1, 1.0)
                                for i in range(500)])
    def same() -> None:
        for a in ("al", "bo"):
            assert db.quota_usage("a.test", a) == db.quota_recount("a.test", a)
    same()
    assert db.quota_usage("a.test", "al")[1] == 1000
    db.message_expunge(boxes[("al", "INBOX")].id, list(range(1, 401)))
    same()
    assert db.quota_usage("a.test", "al")[1] == 600
    db.message_set_sizes(boxes[("bo", "Arch")].id, [(1, 5000), (8, 70)])  # a -1 measured, one resized
    same()
    db.mailbox_delete(boxes[("bo", "Arch")].id)
    same()
    assert db.quota_usage("a.test", "bo") == db.quota_recount("a.test", "bo") and db.quota_usage("a.test", "bo")[1] == 500


def test_a_postgresql_schema_of_version_12_keeps_its_usage_across_migration_13():
    from support import pg
    from waypost.db import postgres as pg_engine
    from waypost.db.postgres import PostgresDatabase
    import psycopg

    url = pg.new_url()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
            for n, statements in enumerate(pg_engine.MIGRATIONS[:12], start=1):
                for st in statements:
                    conn.execute(st)
                conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (n,))
            conn.execute("INSERT INTO mailboxes (domain, account, name, folder, uidvalidity, uidnext, highestmodseq,"
                         " recent_uid) VALUES ('a.test', 'al', 'INBOX', '', 1, 3, 1, 1)")
            conn.execute("INSERT INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate)"
                         " SELECT id, u, 'm' || u, 'cur', '', 1, 10 * u, 1.0 FROM mailboxes, generate_series(1, 2) u")
    db = PostgresDatabase(url)
    try:
        assert db.quota_usage("a.test", "al") == (30, 2)  # kept by version 3's row-level triggers
        assert db.schema_version() == 13
        box = db.mailbox_get("a.test", "al", "INBOX")
        assert box is not None
        db.message_add(box.id, [("m3", "new", (), 5, 1.0), ("m4", "new", (), 6, 1.0)])
        assert db.quota_usage("a.test", "al") == (41, 4) == db.quota_recount("a.test", "al")
        db.message_expunge(box.id, [1, 3])
        assert db.quota_usage("a.test", "al") == (26, 2) == db.quota_recount("a.test", "al")
    finally:
        db.close()


def test_old_database_is_counted_once_when_opened(tmp_path):
    path = tmp_path / "w.db"
    db = SQLiteDatabase(path)
    inbox, _ = _fill(db)
    db.close()
    # As a version without quotas left it: no table, no triggers.
    conn = sqlite3.connect(path)
    for name in ("quota_add", "quota_remove", "quota_mailbox_delete", "quota_size"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE quota_usage")
    conn.execute("DROP TABLE sieve_scripts")
    conn.execute("DROP TABLE sieve_vacation")
    conn.execute("PRAGMA user_version=2")  # schema version 2: before quotas and Sieve
    conn.execute("INSERT INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate)"
                 " VALUES (?, 9, 'n9', 'new', '', 9, 1000, 1.0)", (inbox,))
    conn.commit()
    conn.close()
    db = SQLiteDatabase(path)
    assert db.quota_usage("a.test", "al") == (1150, 4)
    db2 = SQLiteDatabase(path)  # a second process opening it counts nothing twice
    assert db2.quota_usage("a.test", "al") == (1150, 4)


def test_limits_account_then_domain(make_db):
    db = make_db()
    db.add_domain("a.test", {"quota_storage": 1000})
    db.add_object(ObjectRecord("a.test", "al", "account"))
    db.add_object(ObjectRecord("a.test", "bo", "account", {"quota_storage": "unlimited"}))
    db.add_object(ObjectRecord("a.test", "cy", "account", {"quota_storage": 0}))
    _fill(db)
    q = quota_of(db, "a.test", "al")
    assert (q.storage_limit, q.message_limit, q.storage, q.messages) == (1000, None, 150, 3)
    assert q.room_for(850) and not q.room_for(851)
    assert not q.full and q.percent() == 15
    with pytest.raises(OverQuota):
        q.refuse(851)
    assert not quota_of(db, "a.test", "bo").limited
    cy = quota_of(db, "a.test", "cy")
    assert cy.full and not cy.room_for(1) and cy.percent() == 100


def test_removed_account_leaves_no_filters_to_a_new_one(make_db):
    db = make_db()
    db.add_domain("a.test")
    db.add_object(ObjectRecord("a.test", "al", "account"))
    db.sieve_put("a.test", "al", "fwd", 'redirect "old-owner@else.example";')
    db.sieve_activate("a.test", "al", "fwd")
    assert db.vacation_claim("a.test", "al", "h", "x@y.example", 1.0, 1e12)
    db.remove_object("a.test", "al")
    db.add_object(ObjectRecord("a.test", "al", "account"))
    assert db.sieve_active("a.test", "al") is None and db.sieve_list("a.test", "al") == []
    assert db.vacation_claim("a.test", "al", "h", "x@y.example", 2.0, 1e12)
    db.sieve_put("a.test", "al", "s", "keep;")
    db.remove_domain("a.test")
    db.add_domain("a.test")
    assert db.sieve_list("a.test", "al") == []


def test_sieve_scripts_one_active(make_db):
    from waypost.db import Conflict, NotFound

    db = make_db()
    db.sieve_put("a.test", "al", "one", "keep;")
    db.sieve_put("a.test", "al", "two", "discard;")
    db.sieve_activate("a.test", "al", "one")
    db.sieve_activate("a.test", "al", "two")
    assert db.sieve_list("a.test", "al") == [("one", False), ("two", True)]
    assert db.sieve_active("a.test", "al") == ("two", "discard;")
    db.sieve_put("a.test", "al", "two", "keep;")  # replacing keeps it active
    assert db.sieve_active("a.test", "al") == ("two", "keep;")
    with pytest.raises(Conflict):
        db.sieve_delete("a.test", "al", "two")
    with pytest.raises(Conflict):
        db.sieve_rename("a.test", "al", "one", "two")
    with pytest.raises(NotFound):
        db.sieve_activate("a.test", "al", "three")
    db.sieve_rename("a.test", "al", "two", "main")
    assert db.sieve_active("a.test", "al") == ("main", "keep;")
    db.sieve_activate("a.test", "al", None)
    assert db.sieve_active("a.test", "al") is None
    db.sieve_delete("a.test", "al", "main")
    assert db.sieve_usage("a.test", "al") == (1, 5)
