"""The counts the index keeps with each mailbox (migration 6): messages, unseen, size and
messages of unknown size, kept by each engine's triggers in the transaction of every
change, so that SELECT and STATUS read one row.  Checked against a count of the rows
after every kind of change, for a mailbox deleted and created anew under its old name
(the new one starts from nothing; the old id answers nothing), with two processes
writing to one mailbox at once, and for a database made before the counts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

from waypost.db import Database, SQLiteDatabase


def _recount(db: Database, mailbox_id: int) -> tuple[int, int, int, int]:
    msgs = db.message_list(mailbox_id)
    return (len(msgs), sum(1 for m in msgs if "\\Seen" not in m.flags),
            sum(max(m.size, 0) for m in msgs), sum(1 for m in msgs if m.size < 0))


def _counts(db: Database, mailbox_id: int) -> tuple[int, int, int, int]:
    box = db.mailbox_by_id(mailbox_id)
    assert box is not None
    return (box.exists, box.unseen, box.size, box.unsized)


def _check(db: Database, mailbox_id: int, expected: tuple[int, int, int, int]) -> None:
    assert _counts(db, mailbox_id) == _recount(db, mailbox_id) == expected
    state = db.mailbox_state(mailbox_id)
    assert state is not None and state[2] == expected[0]


def test_counts_follow_every_change(make_db):
    db = make_db()
    box = db.mailbox_create("a.test", "al", "INBOX", "", 1)
    assert _counts(db, box.id) == (0, 0, 0, 0)
    db.message_add(box.id, [("n1", "cur", ("\\Seen",), 100, 1.0), ("n2", "new", (), 200, 1.0),
                            ("n3", "new", ("\\Flagged", "$Work"), -1, 1.0),
                            ("n4", "cur", ("\\Answered", "\\Seen"), 40, 1.0)])
    _check(db, box.id, (4, 2, 340, 1))
    db.message_add(box.id, [("n2", "new", (), 200, 1.0), ("n5", "new", (), 5, 1.0)])  # n2 indexed already
    _check(db, box.id, (5, 3, 345, 1))
    db.message_store(box.id, [2, 3], ["\\Seen"], "+")
    _check(db, box.id, (5, 1, 345, 1))
    db.message_store(box.id, [1, 2, 3, 4, 5], ["\\Seen"], "-")
    _check(db, box.id, (5, 5, 345, 1))
    db.message_store(box.id, [1], ["\\Seen", "\\Deleted"], "")
    db.message_store(box.id, [5], ["$Seen-not", "\\SeenX"], "")  # not \Seen
    _check(db, box.id, (5, 4, 345, 1))
    db.message_set_sizes(box.id, [(3, 70)])
    _check(db, box.id, (5, 4, 415, 0))
    db.message_cache_set(box.id, [(1, {"x": 1}), (2, {"y": 2})])  # not a count
    _check(db, box.id, (5, 4, 415, 0))
    db.message_expunge(box.id, [1, 2, 99])
    _check(db, box.id, (3, 3, 115, 0))
    assert db.message_count_from(box.id, 4) == 2
    assert db.message_count_from(box.id, 6) == 0
    assert db.message_count_from(box.id, 1) == 3
    listed = db.mailbox_list("a.test", "al")
    assert [(b.exists, b.unseen, b.size) for b in listed] == [(3, 3, 115)]


def test_deleted_and_recreated_mailbox_across_two_processes(make_db):
    one, two = make_db("w.db"), make_db("w.db")  # two workers on one database
    old = one.mailbox_create("a.test", "al", "Lists", ".Lists", 1)
    one.message_add(old.id, [(f"m{i}", "new", ("\\Seen",) if i % 2 else (), 10, 1.0) for i in range(6)])
    seen_by_two = two.mailbox_get("a.test", "al", "Lists")
    assert seen_by_two is not None and (seen_by_two.exists, seen_by_two.unseen, seen_by_two.size) == (6, 3, 60)
    one.mailbox_delete(old.id)
    assert two.mailbox_by_id(old.id) is None
    assert two.mailbox_state(old.id) is None
    assert two.message_count_from(old.id, 1) == 0
    new = two.mailbox_create("a.test", "al", "Lists", ".Lists", 1)
    assert new.id != old.id and new.uidvalidity > old.uidvalidity
    assert (new.exists, new.unseen, new.size, new.unsized) == (0, 0, 0, 0)
    again = one.mailbox_get("a.test", "al", "Lists")
    assert again is not None and again.id == new.id and (again.exists, again.unseen) == (0, 0)
    two.message_add(new.id, [("x1", "new", (), 7, 1.0)])
    _check(one, new.id, (1, 1, 7, 0))
    # The other account's mailbox of the same name is its own.
    other = one.mailbox_create("a.test", "bo", "Lists", ".Lists", 1)
    _check(two, other.id, (0, 0, 0, 0))


_WRITER = textwrap.dedent("""
    import sys
    engine, where, box, who = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if engine == "sqlite":
        from waypost.db import SQLiteDatabase
        db = SQLiteDatabase(where)
    else:
        from waypost.db.postgres import PostgresDatabase
        db = PostgresDatabase(where, sys.argv[5], pool_size=2)
    for batch in range(10):
        added = db.message_add(box, [(f"{who}-{batch}-{i}", "new", ("\\\\Seen",) if i % 3 == 0 else (), 100 + i, 1.0)
                                     for i in range(30)])
        uids = [m.uid for m in added]
        db.message_store(box, uids[::2], ["\\\\Seen"], "+")
        db.message_store(box, uids[1::4], ["\\\\Seen"], "-")
        db.message_expunge(box, uids[-3:])
    db.close()
""")


def test_two_processes_writing_one_mailbox_at_once(make_db, tmp_path):
    db = make_db("w.db")
    box = db.mailbox_create("a.test", "al", "INBOX", "", 1)
    if make_db.engine == "sqlite":
        args = [str(tmp_path / "w.db")]
    else:
        args = [db.url, str(tmp_path / "w.db-changes")]  # type: ignore[attr-defined]
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, make_db.engine, args[0], str(box.id), who, *args[1:]])
             for who in ("w1", "w2")]
    for p in procs:
        assert p.wait(timeout=120) == 0
    counts = _counts(db, box.id)
    assert counts == _recount(db, box.id)
    assert counts[0] == 2 * 10 * 27 and counts[3] == 0


def test_database_made_before_the_counts_is_counted_once_when_opened(tmp_path):
    path = tmp_path / "w.db"
    db = SQLiteDatabase(path)
    box = db.mailbox_create("a.test", "al", "INBOX", "", 1)
    empty = db.mailbox_create("a.test", "al", "Empty", ".Empty", 1)
    db.message_add(box.id, [("n1", "cur", ("\\Seen",), 10, 1.0), ("n2", "new", (), -1, 1.0)])
    db.close()
    conn = sqlite3.connect(path)  # as version 5 left it: no table, no triggers
    for name in ("counts_mailbox", "counts_add", "counts_remove", "counts_change"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE mailbox_counts")
    conn.execute("PRAGMA user_version=5")
    conn.execute("INSERT INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate)"
                 " VALUES (?, 9, 'n9', 'new', '', 9, 1000, 1.0)", (box.id,))
    conn.commit()
    conn.close()
    db = SQLiteDatabase(path)
    _check(db, box.id, (3, 2, 1010, 1))
    _check(db, empty.id, (0, 0, 0, 0))
    db2 = SQLiteDatabase(path)  # a second process opening it counts nothing twice
    _check(db2, box.id, (3, 2, 1010, 1))


def test_a_large_add_counts_as_row_by_row(make_db):
    """The first index of a big Maildir adds thousands of messages at once; on SQLite
    they are counted once for all (``_bulk_add``), on PostgreSQL by the statement's
    trigger: mailbox counts and quota exactly as message by message, also when some
    names were indexed already, and the count triggers still count afterwards."""
    db = make_db()
    box = db.mailbox_create("a.test", "al", "INBOX", "", 1)
    other = db.mailbox_create("a.test", "al", "Other", ".Other", 2)
    db.message_add(other.id, [("o1", "new", (), 7, 1.0)])
    items = [(f"m{i:05d}", "cur" if i % 3 else "new", ("\\Seen",) if i % 2 else ("\\Flagged",),
              -1 if i % 500 == 0 else 10 + i % 7, 1.0) for i in range(3000)]
    added = db.message_add(box.id, items)
    assert [m.uid for m in added] == list(range(1, 3001))
    _check(db, box.id, _recount(db, box.id))
    assert _counts(db, box.id)[:2] == (3000, 1500)
    assert db.quota_usage("a.test", "al") == (7 + sum(max(s, 0) for *_, s, _ in items), 3001)
    # Some of a second large batch indexed already: one by one, still exact.
    again = items[2990:] + [(f"n{i:05d}", "new", (), 3, 1.0) for i in range(2000)]
    db.message_add(box.id, again)
    _check(db, box.id, _recount(db, box.id))
    assert _counts(db, box.id)[0] == 5000
    assert db.quota_usage("a.test", "al") == (7 + sum(max(s, 0) for *_, s, _ in items) + 6000, 5001)
    # The triggers are there again: a small add, an expunge and a flag change count.
    db.message_add(box.id, [("z1", "new", (), 1, 1.0)])
    db.message_expunge(box.id, [1, 2, 3])
    db.message_store(box.id, [4, 5], ["\\Seen"], "+")
    _check(db, box.id, _recount(db, box.id))
    assert db.quota_usage("a.test", "al")[1] == 4999
