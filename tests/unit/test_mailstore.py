"""The Mailstore: Maildir files and the mailbox index in step (real SQLite, real files)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time

import pytest

from waypost.db import Conflict
from waypost.db.sqlite import SQLiteDatabase
from waypost.mailstore import Delivery, MailboxNameError, Mailstore, folder_of, normalize_name


@pytest.fixture
def store(tmp_path, make_db):
    db = make_db("w.db")
    yield Mailstore(tmp_path / "mail", "mail.example.test", db)
    db.close()


def test_delivery_is_indexed_in_arrival_order(store):
    results = store.deliver_batch([Delivery("example.test", "alice", b"Subject: %d\r\n\r\nx\r\n" % i)
                                   for i in range(3)])
    assert all(isinstance(r, str) for r in results)
    box = store.get("example.test", "alice", "inbox")
    msgs = store.messages(box)
    assert [m.uid for m in msgs] == [1, 2, 3]
    assert [m.name for m in msgs] == results
    assert store.read(box, msgs[1]) == b"Subject: 1\r\n\r\nx\r\n"
    assert box.uidvalidity > 0


def test_new_account_gets_special_use_folders_and_subscriptions(store):
    names = {b.name: b.special_use for b in store.mailboxes("example.test", "bob")}
    assert names == {"INBOX": "", "Drafts": "\\Drafts", "Sent": "\\Sent", "Junk": "\\Junk", "Trash": "\\Trash"}
    assert set(store.subscriptions("example.test", "bob")) == set(names)
    assert (store.account_path("example.test", "bob") / ".Sent" / "cur").is_dir()


def test_sync_indexes_foreign_files_and_forgets_vanished_ones(store):
    box = store.get("example.test", "alice", "INBOX")
    path = store.box_path(box)
    (path / "cur" / "1700000000.X1.host:2,FS").write_bytes(b"Subject: dropped\r\n\r\n")
    (path / "new" / "1700000001.X2.host").write_bytes(b"Subject: dropped 2\r\n\r\n")
    assert store.sync(box)
    msgs = store.messages(box)
    assert [(m.uid, m.flags) for m in msgs] == [(1, ("\\Flagged", "\\Seen")), (2, ())]
    os.unlink(path / "new" / "1700000001.X2.host")
    store.sync(box, force=True)
    assert [m.uid for m in store.messages(box)] == [1]
    # UIDs are never reused: the next file gets 3.
    (path / "new" / "1700000002.X3.host").write_bytes(b"x")
    store.sync(box, force=True)
    assert [m.uid for m in store.messages(box)] == [1, 3]


def test_threads_building_one_index_at_once_take_turns(tmp_path, make_db):
    """A login warms INBOX in one thread while the SELECT that follows syncs it in
    another (and a second session may log in too): every file is indexed once, with
    dense UIDs, and the account's mailboxes are created once."""
    import threading

    db = make_db("w.db")
    try:
        store = Mailstore(tmp_path / "mail", "mail.example.test", db)
        path = store.mailbox_path("example.test", "alice")
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        for i in range(400):
            (path / "cur" / f"{1700000000 + i}.X{i}.host:2,S").write_bytes(b"Subject: %d\r\n\r\nbody\r\n" % i)
        start = threading.Barrier(6)
        errors: list[BaseException] = []
        offered: list[int] = []
        add = db.message_add

        def counting_add(mailbox_id, items):  # type: ignore[no-untyped-def]
            offered.append(len(items))
            return add(mailbox_id, items)

        db.message_add = counting_add  # type: ignore[method-assign]

        def warm() -> None:
            try:
                start.wait()
                store.sync(store.ensure_account("example.test", "alice"))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=warm) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert offered == [400]  # one thread scanned; the others found it done
        box = store.get("example.test", "alice", "INBOX")
        assert [m.uid for m in store.messages(box)] == list(range(1, 401))
        assert db.mailbox_by_id(box.id).uidnext == 401
        names = sorted(b.name for b in store.mailboxes("example.test", "alice"))
        assert names == ["Drafts", "INBOX", "Junk", "Sent", "Trash"]
    finally:
        db.close()


def test_a_crash_between_file_and_index_is_repaired_by_sync(store):
    store.db, db = None, store.db  # deliver as if the index write never happened
    store.deliver_batch([Delivery("example.test", "carol", b"lost?\r\n")])
    store.db = db
    box = store.get("example.test", "carol", "INBOX")
    assert store.messages(box) == []
    store.sync(box, force=True)
    assert len(store.messages(box)) == 1


def test_append_store_copy_expunge(store):
    box = store.get("example.test", "alice", "INBOX")
    m = store.append(box, b"Subject: a\r\n\r\nbody\r\n", ["\\Seen"], 1_700_000_000.0)
    assert m.uid == 1 and m.flags == ("\\Seen",) and m.internaldate == 1_700_000_000.0
    assert m.name.endswith(":2,S")
    records, refused = store.store(box, [1], ["\\Flagged"], "+")
    assert records[0].flags == ("\\Seen", "\\Flagged") and refused == []
    before = records[0].modseq
    records, refused = store.store(box, [1], ["\\Draft"], "+", unchanged_since=before - 1)
    assert refused == [1]
    trash = store.get("example.test", "alice", "Trash")
    [copy] = store.copy(box, store.messages(box), trash)
    assert copy.flags == ("\\Seen", "\\Flagged") and copy.internaldate == 1_700_000_000.0
    src = store.file_path(box, store.messages(box)[0])
    dst = store.file_path(trash, copy)
    assert os.stat(src).st_ino == os.stat(dst).st_ino  # one file on disk
    assert store.expunge(box, store.messages(box)) == [1]
    assert not src.exists() and dst.exists()
    changed, gone = store.db.message_changes(box.id, 0)
    assert changed == [] and gone == [1]


def test_create_rename_delete(store):
    store.create("example.test", "alice", "Archive/2026/Q1")
    names = [b.name for b in store.mailboxes("example.test", "alice")]
    assert {"Archive", "Archive/2026", "Archive/2026/Q1"} <= set(names)
    with pytest.raises(Conflict):
        store.create("example.test", "alice", "Archive")
    box = store.get("example.test", "alice", "Archive")
    store.append(store.get("example.test", "alice", "Archive/2026"), b"x\r\n")
    store.rename(box, "Old")
    names = {b.name for b in store.mailboxes("example.test", "alice")}
    assert {"Old", "Old/2026", "Old/2026/Q1"} <= names and "Archive" not in names
    moved = store.get("example.test", "alice", "Old/2026")
    assert len(store.messages(moved)) == 1 and store.read(moved, store.messages(moved)[0]) == b"x\r\n"
    with pytest.raises(MailboxNameError):
        store.delete(store.get("example.test", "alice", "INBOX"))
    store.delete(store.get("example.test", "alice", "Old/2026/Q1"))
    assert store.get("example.test", "alice", "Old/2026/Q1") is None


def test_renaming_inbox_moves_its_messages(store):
    inbox = store.get("example.test", "alice", "INBOX")
    store.append(inbox, b"one\r\n")
    store.rename(inbox, "Before")
    assert store.messages(store.get("example.test", "alice", "INBOX")) == []
    assert len(store.messages(store.get("example.test", "alice", "Before"))) == 1


@pytest.mark.parametrize("bad", ["", "a//b", "a/../b", "x\x01y", "/".join("a" * 1 for _ in range(20))])
def test_bad_names(bad):
    with pytest.raises(MailboxNameError):
        normalize_name(bad)


def test_names_and_folders():
    assert normalize_name("inbox") == "INBOX"
    assert normalize_name("Inbox/Sub/") == "INBOX/Sub"
    assert folder_of("INBOX") == ""
    assert folder_of("Archive/2026") == ".Archive.2026"
    assert folder_of("v1.2/100%") == ".v1%2E2.100%25"


def test_sizes_of_foreign_files_are_checked_when_first_needed(store):
    box = store.get("example.test", "alice", "INBOX")
    path = store.box_path(box)
    (path / "cur" / "1700000000.A.host:2,").write_bytes(b"Subject: lf\n\nbody\n")          # bare LF
    (path / "cur" / "1700000001.B.host:2,").write_bytes(b"Subject: crlf\r\n\r\nbody\r\n")
    (path / "cur" / "1700000002.C.host,S=10,W=99:2,").write_bytes(b"0123456789")            # Dovecot's W=
    store.sync(box)
    msgs = store.messages(box)
    assert [m.size < 0 for m in msgs] == [True, True, False]  # not read at sync: like Dovecot
    checked = store.sized(box, msgs)
    assert {u: m.size for u, m in checked.items()} == {1: 21, 2: 23}
    assert [m.size for m in store.messages(box)] == [21, 23, 99]  # kept in the index
    assert store.read(box, store.messages(box)[0]) == b"Subject: lf\r\n\r\nbody\r\n"
    assert store.sized(box, store.messages(box)) == {}


def test_dates_from_names_only_of_the_maildir_form(tmp_path):
    from waypost.mailstore.maildir import _size_from_name

    f = tmp_path / "x"
    f.write_bytes(b"x")
    os.utime(f, (1600000000, 1600000000))
    assert _size_from_name(str(f), "1700000000.M1P2.host,W=123:2,S") == (123, 1700000000.0)
    # No "." after the seconds, non-ASCII digits, a leading zero: not the Maildir
    # form, so the date is the file's (and nothing raises).
    for name in ("1700000000", "\u00b2" * 10 + ".x", "0700000000.x", "17000.x"):
        assert _size_from_name(str(f), name) == (-1, 1600000000.0)


def test_a_sync_that_need_not_wait_gives_way_to_one_under_way(store):
    import threading

    box = store.get("example.test", "alice", "INBOX")
    (store.box_path(box) / "new" / "1700000001.Y1.host").write_bytes(b"Subject: x\r\n\r\n")
    lock = store._sync_locks[box.id % len(store._sync_locks)]
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    try:
        assert store.sync(box, wait=False) is False  # the event loop is not blocked
    finally:
        release.set()
        t.join()
    assert store.sync(box, wait=False) is True
    assert len(store.messages(box)) == 1


def test_header_blocks_of_a_deleted_mailbox_never_land_in_its_successor(tmp_path, make_db):
    db = make_db("w.db")
    try:
        store = Mailstore(tmp_path / "mail", "h", db)
        store.ensure_account("example.test", "bob")
        old = store.create("example.test", "alice", "Old")
        db.message_add(old.id, [("1700000000.A.h", "new", (), 10, 1700000000.0)])
        store.delete(old)
        new = store.create("example.test", "bob", "Fresh")
        assert new.id != old.id  # the freed id is never given again
        db.message_add(new.id, [("1700000001.B.h", "new", (), 10, 1700000001.0)])
        # A late write for the old mailbox, made under its UIDVALIDITY:
        db.message_headers_set(old.id, [(1, b"Subject: alice secret\r\n\r\n")], old.uidvalidity)
        assert db.message_headers_get(new.id, [1]) == {}
        assert db.message_headers_get(old.id, [1]) == {}
        db.message_headers_set(new.id, [(1, b"Subject: bob\r\n\r\n")], new.uidvalidity)
        assert db.message_headers_get(new.id, [1]) == {1: b"Subject: bob\r\n\r\n"}
    finally:
        db.close()


def test_a_queued_delivery_made_again_is_recognised(store):
    # Issue 13 item 4: stored, then killed before the queue recorded it; the retry
    # after the restart must find the file, not store a second copy.
    first = Delivery("example.test", "alice", (b"Return-Path: <x@y>\r\n", b"Subject: once\r\n\r\nx\r\n"),
                     key="0190ABCDEF0123456789_0", date=1_700_000_000.5)
    [name] = store.deliver_batch([first])
    assert isinstance(name, str) and name.startswith("1700000000.Q0190ABCDEF0123456789_0.")
    again = Delivery(first.domain, first.account, first.data, key=first.key, date=first.date, retry=True)
    assert store.deliver_batch([again]) == [name]
    box = store.get("example.test", "alice", "INBOX")
    assert [m.name for m in store.messages(box)] == [name]
    assert len(os.listdir(store.box_path(box) / "new")) == 1
    assert os.listdir(store.box_path(box) / "tmp") == []
    # Another recipient of the same message (another key) is a message of its own.
    other = Delivery(first.domain, first.account, first.data, key="0190ABCDEF0123456789_1", date=first.date,
                     retry=True)
    assert store.deliver_batch([other])[0] != name
    assert len(store.messages(box)) == 2


def test_a_mailbox_id_is_never_given_twice(store):
    """SQLite reuses the rowid of the row with the highest id once it is deleted; every
    process keys caches and bus topics by mailbox id (issue 14 item 1)."""
    store.ensure_account("example.test", "alice")
    seen = set()
    for _ in range(5):
        box = store.create("example.test", "alice", "Foo")
        assert box.id not in seen
        seen.add(box.id)
        store.delete(box)


def test_a_directory_removed_by_another_process_is_made_again(tmp_path, make_db):
    """Two Mailstores on one data directory stand for two workers: one deletes a
    mailbox the other has written to; the other then creates it anew and appends
    (issue 14 item 2)."""
    db = make_db("w.db")
    one = Mailstore(tmp_path / "mail", "mail.example.test", db)
    two = Mailstore(tmp_path / "mail", "mail.example.test", db)
    box = one.create("example.test", "alice", "Foo")
    one.append(box, b"Subject: 1\r\n\r\nx\r\n")
    two.delete(two.get("example.test", "alice", "Foo"))
    again = one.create("example.test", "alice", "Foo")
    msg = one.append(again, b"Subject: 2\r\n\r\nx\r\n")
    assert [m.name for m in two.messages(two.get("example.test", "alice", "Foo"))] == [msg.name]
    db.close()


def test_listings_in_memory_are_bounded_by_message_records(tmp_path, make_db):
    """Issue 13 item 11: the listings a worker keeps hold at most ``listing_cache``
    message records in all (the newest is kept even alone above it), and what they
    answer stays right when the least recently used are dropped."""
    db = make_db("w.db")
    store = Mailstore(tmp_path / "mail", "h", db, listing_cache=25)
    boxes = []
    for i in range(6):
        box = store.create("example.test", "alice", f"Box{i}")
        for j in range(10):
            store.append(box, b"Subject: %d.%d\r\n\r\nx\r\n" % (i, j))
        boxes.append(box)
    for _round in range(2):
        for box in boxes:
            assert len(store.messages(box)) == 10
            assert store._listed == sum(len(e[1]) for e in store._listings.values()) <= 25
    big = store.create("example.test", "alice", "Big")
    for j in range(30):
        store.append(big, b"Subject: big %d\r\n\r\nx\r\n" % j)
    assert len(store.messages(big)) == 30
    assert list(store._listings) == [big.id] and store._listed == 30
    store.forget_listings()
    assert store._listed == 0 and not store._listings
    db.close()


def _sync_until(root: str, engine: str, where: str, stop: str) -> None:
    """Another worker: its own index connection and Mailstore, syncing INBOX again and
    again (as SELECT and NOOP do) until ``stop`` exists."""
    from pathlib import Path

    from waypost.db.postgres import PostgresDatabase

    db = SQLiteDatabase(Path(where)) if engine == "sqlite" else PostgresDatabase(where, Path(f"{stop}-changes"))
    other = Mailstore(Path(root), "mail.example.test", db)
    box = other.get("example.test", "alice", "INBOX")
    assert box is not None
    other.sync(box, force=True)
    Path(f"{stop}-syncing").touch()
    while not os.path.exists(stop):
        other.sync(box, force=True)
    db.close()


def test_a_sync_in_another_process_never_takes_a_file_an_append_is_indexing(make_db, tmp_path):
    """imaptest's stress mode: a sync in another worker that ran between an APPEND's move
    of its file into cur/ and its indexing took the file for one another program dropped
    in: size unknown (RFC822.SIZE -1 once sent) and internal date from the name, and the
    APPEND's own record lost.  Writers and sync now take turns (Mailstore.indexing)."""
    import multiprocessing

    db = make_db("w.db")
    store = Mailstore(tmp_path / "mail", "mail.example.test", db)
    box = store.get("example.test", "alice", "INBOX")
    stop = tmp_path / "stop"
    where = str(tmp_path / "w.db") if make_db.engine == "sqlite" else db.url
    child = multiprocessing.get_context("spawn").Process(
        target=_sync_until, args=(str(tmp_path / "mail"), make_db.engine, where, str(stop)))
    child.start()
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{stop}-syncing"):  # the child's first sync went through
            assert child.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        made = []
        for i in range(150):
            data = b"Subject: %d\r\n\r\n" % i + b"x" * i + b"\r\n"
            if i % 3 == 0:
                made += [(m, len(d)) for m, d in zip(
                    store.append_many(box, [(data, (), 1_000_000_000.0), (data + b"!", (), 1_000_000_000.0)]),
                    (data, data + b"!"))]
            else:
                made.append((store.append(box, data, (), 1_000_000_000.0), len(data)))
    finally:
        stop.touch()
        child.join(30)
    assert child.exitcode == 0
    records = {m.uid: m for m in store.messages(box)}
    assert len(records) == len(made) == 200
    for m, size in made:
        assert m.size == size and m.internaldate == 1_000_000_000.0, m
        assert records[m.uid] == m  # the APPEND's record is the index's


def test_recent_is_claimed_only_up_to_what_the_claiming_session_knows(store):
    """imaptest's stress mode once saw a message \\Recent in two sessions: a SELECT
    claimed \\Recent up to the UIDNEXT of the moment and then listed the mailbox, so a
    message appended in between was in its listing (and \\Recent there) but not in its
    claim, and the next session claimed it too.  A claim now stops at the UIDNEXT the
    session knows, and the rest is left to the next claim (on both engines)."""
    box = store.get("example.test", "alice", "INBOX")
    for i in range(3):
        store.append(box, b"Subject: %d\r\n\r\nx\r\n" % i)
    db = store.db
    assert db.message_claim_recent(box.id, 3) == 1  # a session that knows UIDs 1 and 2
    assert db.message_claim_recent(box.id, 2) == 3  # knows less: claims nothing, takes nothing
    assert db.message_claim_recent(box.id, 4) == 3  # UID 3, then none left
    assert db.message_claim_recent(box.id, 4) == 4
    store.append(box, b"Subject: 4\r\n\r\nx\r\n")
    assert db.message_claim_recent(box.id, 99) == 4  # never beyond UIDNEXT
    assert db.message_claim_recent(box.id) == 5


def test_listing_is_patched_from_the_change_log_not_read_again(tmp_path, make_db):
    """A cached listing is brought up to date from ``message_changes`` (adds, flag
    changes, expunges) instead of ``message_list``; the result equals a fresh read, and
    the list sessions already hold is not changed."""
    db = make_db("patch.db")
    store = Mailstore(tmp_path / "mail", "h", db)
    box = store.get("example.test", "alice", "INBOX")
    for i in range(200):
        store.append(box, b"Subject: %d\r\n\r\nx\r\n" % i)
    reads = []
    real = db.message_list
    db.message_list = lambda mailbox_id: reads.append(mailbox_id) or real(mailbox_id)  # type: ignore[method-assign]
    first = store.listing(box)[1]
    assert len(reads) == 1 and len(first) == 200
    held = list(first)
    store.store(box, [3, 150], ["\\Seen"], "+")
    store.expunge(box, [m for m in first if m.uid in (5, 6, 199)])
    store.append(box, b"Subject: new\r\n\r\nx\r\n", ["\\Flagged"])
    store.store(box, [201], ["\\Answered"], "+")
    state, patched = store.listing(box)
    assert len(reads) == 1  # patched, not read again
    assert first == held  # what a session held is unchanged
    fresh = real(box.id)
    assert patched == fresh and state == db.mailbox_state(box.id)
    assert [m.flags for m in patched if m.uid in (3, 150, 201)] == [("\\Seen",), ("\\Seen",),
                                                                     ("\\Flagged", "\\Answered")]
    assert store.listing(box)[1] is patched  # unchanged state: the same list
    # Many changes at once: one read of the whole listing is cheaper.
    store.store(box, [m.uid for m in patched], ["\\Deleted"], "+")
    assert store.listing(box)[1] == real(box.id) and len(reads) == 2
    db.close()


def test_listing_index_is_shared_while_its_listing_lasts(store):
    """SELECT of a big mailbox copies the worker's index of the listing (UIDs, records by
    UID, keywords) instead of walking every record: the same index while the listing is
    the same, a new one when the mailbox changed, and copies that sessions may change."""
    store.deliver_batch([Delivery("example.test", "alice", b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(4)])
    box = store.get("example.test", "alice", "INBOX")
    assert box is not None
    store.db.message_store(box.id, [2], ["$Work", "\\Seen"], "+")
    _, msgs = store.listing(box)
    index = store.listing_index(box.id, msgs)
    assert list(index.uids) == [1, 2, 3, 4] and index.keywords == {"$Work"}
    assert [index.by_uid[u].uid for u in index.uids] == list(index.uids)
    assert store.listing_index(box.id, store.listing(box)[1]) is index  # unchanged: shared
    mine = index.uids[:]
    mine.pop()  # a session's own copy
    assert list(index.uids) == [1, 2, 3, 4]
    store.db.message_expunge(box.id, [1])
    _, after = store.listing(box)
    fresh = store.listing_index(box.id, after)
    assert fresh is not index and list(fresh.uids) == [2, 3, 4]


def test_an_account_add_is_not_kept_waiting_by_a_busy_domains_deliveries(store):
    """``names_locked``: deliveries hold the domain's names shared, overlapping one
    another; an exclusive holder (account add or remove) that comes meanwhile gets the
    lock while they still come, not only once they stop (flock alone lets shared
    holders that overlap keep it waiting as long as they come: found by review)."""
    import threading

    give_up = time.monotonic() + 10.0
    writer_has_it = threading.Event()

    def deliveries(offset: float) -> None:
        time.sleep(offset)
        while not writer_has_it.is_set() and time.monotonic() < give_up:
            with store.names_locked("example.com", shared=True):
                time.sleep(0.02)

    threads = [threading.Thread(target=deliveries, args=(i * 0.003,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the deliveries overlap by now
    with store.names_locked("example.com"):
        writer_has_it.set()
        stopped_waiting = time.monotonic()
    for t in threads:
        t.join()
    assert stopped_waiting < give_up, "the exclusive holder waited until the deliveries stopped"
    # ... and the deliveries go on after it (they wait at the gate, they are not refused).
    with store.names_locked("example.com", shared=True):
        pass


def test_threads_asking_for_one_listing_at_once_read_it_once(tmp_path, make_db):
    """Sessions woken together after a restart each ask for a big mailbox's listing that
    this process does not hold yet: one thread reads it, the others wait and take it."""
    db = make_db("once.db")
    store = Mailstore(tmp_path / "mail", "h", db)
    box = store.get("example.test", "alice", "INBOX")
    for i in range(50):
        store.append(box, b"Subject: %d\r\n\r\nx\r\n" % i)
    store = Mailstore(tmp_path / "mail", "h", db)  # a process that has read nothing yet
    reads = []
    real = db.message_list
    inside = threading.Event()

    def slow_read(mailbox_id):
        reads.append(mailbox_id)
        inside.set()
        time.sleep(0.3)  # the other threads ask meanwhile
        return real(mailbox_id)
    db.message_list = slow_read  # type: ignore[method-assign]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda _: store.listing(box), range(6)))
    assert len(reads) == 1 and inside.is_set()
    assert all(g is got[0] for g in got) and len(got[0][1]) == 50
    db.close()
