"""The UID file beside a Maildir (``waypost.mailstore.uidfile``): SELECT of a big mailbox
in a process that just started reads the UIDs from it instead of every message record,
and never trusts it when it is not exactly the index's state (real index, real files;
one Mailstore per simulated worker or restart)."""

from __future__ import annotations

import shutil
from array import array

import pytest

from waypost.imap.session import Selected
from waypost.mailstore import Delivery, Mailstore, maildir, uidfile
from waypost.mailstore.maildir import UID_FILE_REWRITE


@pytest.fixture
def db(make_db):
    d = make_db("u.db")
    yield d
    d.close()


def worker(tmp_path, db) -> Mailstore:
    """A Mailstore as a worker process that just started has it: nothing cached."""
    return Mailstore(tmp_path / "mail", "mail.example.test", db)


def fill(store: Mailstore, name: str, n: int):
    box = store.get("example.test", "alice", name) or store.create("example.test", "alice", name)
    store.append_many(box, [(b"Subject: %d\r\n\r\nx\r\n" % i, ("\\Seen",) if i % 3 else (), None) for i in range(n)])
    store.sync(box)  # as a SELECT does: the directories' scan is shared by every worker after
    return store.get("example.test", "alice", name)


def uids_of(db, box) -> list[int]:
    return [m.uid for m in db.message_list(box.id)]


def test_a_restarted_worker_selects_from_the_file_without_the_records(tmp_path, db):
    first = worker(tmp_path, db)
    box = fill(first, "Big", 40)
    first.store(box, [5], ["$Work"], "+")
    first.selection(box)  # reads the listing, writes the file
    assert (first.box_path(box) / uidfile.NAME).is_file()
    again = worker(tmp_path, db)
    sel = again.selection(box)
    assert sel.records is None  # no message record was read
    assert list(sel.uids) == uids_of(db, box) and sel.state == db.mailbox_state(box.id)
    assert sel.keywords == {"$Work"}


def test_the_file_is_brought_up_to_date_after_changes_in_another_worker(tmp_path, db):
    a = worker(tmp_path, db)
    box = fill(a, "Big", 30)
    a.selection(box)
    b = worker(tmp_path, db)
    msgs = b.messages(box)
    b.expunge(box, [msgs[0], msgs[7]])
    b.append(box, b"Subject: new\r\n\r\nx\r\n", ("$Late",))
    b.store(box, [msgs[3].uid], ["\\Flagged"], "+")
    fresh = worker(tmp_path, db)
    sel = fresh.selection(box)
    assert sel.records is None
    assert list(sel.uids) == uids_of(db, box) and len(sel.uids) == 29
    assert "$Late" in sel.keywords
    assert uidfile.read(a.box_path(box), box.id, box.uidvalidity)[0][3] < db.mailbox_state(box.id)[1]
    # Far behind (as many rows to read besides the file as the bound): written again.
    b.append_many(box, [(b"Subject: more\r\n\r\nx\r\n", (), None)] * UID_FILE_REWRITE)
    assert worker(tmp_path, db).selection(box).records is None
    stamp, uids, _ = uidfile.read(a.box_path(box), box.id, box.uidvalidity)
    assert stamp[2:] == db.mailbox_state(box.id) and list(uids) == uids_of(db, box)


def test_a_stale_or_torn_file_is_never_trusted(tmp_path, db):
    a = worker(tmp_path, db)
    box = fill(a, "Big", 20)
    a.selection(box)
    path = a.box_path(box) / uidfile.NAME
    old = path.read_bytes()
    # A crash after the index changed and before any file was written again, then a
    # file from the index's future (a node that wrote it after our state read).
    msgs = a.messages(box)
    a.expunge(box, msgs[:3])
    path.write_bytes(old)
    assert list(worker(tmp_path, db).selection(box).uids) == uids_of(db, box)
    stamp, uids, words = uidfile.read(path.parent, box.id, box.uidvalidity)
    uidfile.write(path.parent, (stamp[0], stamp[1], stamp[2] + 5, stamp[3] + 9, stamp[4]), uids, words)
    sel = worker(tmp_path, db).selection(box)
    assert list(sel.uids) == uids_of(db, box) and sel.records is not None  # read from the index
    # Torn (a power cut): wrong length, then a changed UID under the same stamp.
    good = path.read_bytes()
    path.write_bytes(good[:-3])
    assert uidfile.read(path.parent, box.id, box.uidvalidity) is None
    bad = bytearray(good)
    bad[44] ^= 0x01
    path.write_bytes(bytes(bad))
    assert uidfile.read(path.parent, box.id, box.uidvalidity) is None
    assert list(worker(tmp_path, db).selection(box).uids) == uids_of(db, box)


def test_a_mailbox_deleted_and_made_again_does_not_read_the_old_file(tmp_path, db):
    a = worker(tmp_path, db)
    box = fill(a, "Big", 25)
    a.selection(box)
    saved = (a.box_path(box) / uidfile.NAME).read_bytes()
    a.delete(box)
    new = fill(a, "Big", 2)
    assert new.id != box.id and new.uidvalidity > box.uidvalidity
    # As if a crash had left the old directory and the new mailbox reused it.
    (a.box_path(new) / uidfile.NAME).write_bytes(saved)
    assert uidfile.read(a.box_path(new), new.id, new.uidvalidity) is None
    sel = worker(tmp_path, db).selection(new)
    assert list(sel.uids) == uids_of(db, new) == [1, 2]


def test_a_session_opened_from_the_file_shows_changes_made_before_it_read_the_records(tmp_path, db):
    """SELECT answered from the UID file; another worker expunges one message and flags
    another before this session reads its records: the expunged one keeps its number
    until its EXPUNGE is sent, the flagged one is owed its FETCH."""
    a = worker(tmp_path, db)
    box = fill(a, "Big", 12)
    a.selection(box)
    here = worker(tmp_path, db)
    sel = Selected.open(here, box, False, False)
    assert not sel.loaded and sel.exists == 12
    other = worker(tmp_path, db)
    msgs = other.messages(box)
    other.expunge(box, [msgs[2]])
    other.store(box, [msgs[5].uid], ["\\Flagged"], "+")
    sel.load(here)
    assert sel.loaded and sel.exists == 12 and sel.seq_of(msgs[2].uid) == 3
    assert sel.msgs[msgs[2].uid].flags == ()
    assert "\\Flagged" in sel.msgs[msgs[5].uid].flags and msgs[5].uid in sel.owed
    out = [r.encode() for r in sel.refresh(here, allow_expunge=True)]
    assert b"* 3 EXPUNGE\r\n" in out
    assert any(line.startswith(b"* 5 FETCH") and b"\\Flagged" in line for line in out)
    assert sel.exists == 11 and list(sel.uids) == uids_of(db, box)


def test_sessions_share_the_worker_records_until_they_change_one(tmp_path, db):
    a = worker(tmp_path, db)
    box = fill(a, "Big", 10)
    a.selection(box)
    s1 = Selected.open(a, box, False, False)
    s2 = Selected.open(a, box, False, False)
    assert s1.loaded and not isinstance(s1.msgs, dict) and s1.msgs[1] is s2.msgs[1]
    # The UIDs too, until a session changes them (then it has its own array).
    assert isinstance(s1.uids, array) and s1.uids is s2.uids and not s1.uids_own
    s1.expunged_here([1])
    assert 1 not in s1.msgs and 1 in s2.msgs and s2.exists == 10
    assert s1.uids is not s2.uids and list(s1.uids) == list(range(2, 11)) and list(s2.uids) == list(range(1, 11))


def test_file_copies_are_not_left_in_tmp(tmp_path, db):
    a = worker(tmp_path, db)
    box = fill(a, "Big", 5)
    a.selection(box)
    assert [p.name for p in (a.box_path(box) / "tmp").iterdir()] == []
    shutil.rmtree(a.box_path(box) / "tmp")
    assert not uidfile.write(a.box_path(box), (box.id, box.uidvalidity, 1, 1, 0), array("I"), frozenset())


def test_writers_carry_the_scan_of_a_big_mailbox_over_their_own_change(tmp_path, db, monkeypatch):
    """Delivery, APPEND, COPY and EXPUNGE into a mailbox whose directories are as the
    last scan left them carry that scan over (the shared mark follows their change), so
    the next SELECT in any worker does not list the Maildir again; a file another
    program dropped in before is still found by the next scan."""
    monkeypatch.setattr(maildir, "SCAN_CARRY_MIN", 5)
    a = worker(tmp_path, db)
    box = fill(a, "Big", 6)
    path = a.box_path(box)
    mark = f"maildir-scan:{box.id}"
    assert db.get_mark(mark) == list(maildir._scan_key(path))
    a.deliver_batch([Delivery("example.test", "alice", b"Subject: d\r\n\r\nx\r\n", mailbox="Big")])
    a.append(box, b"Subject: a\r\n\r\nx\r\n")
    a.expunge(box, a.messages(box)[:2])
    inbox = fill(a, "INBOX", 1)
    a.copy(inbox, a.messages(inbox), box)
    assert db.get_mark(mark) == list(maildir._scan_key(path))
    other = worker(tmp_path, db)
    assert not other.sync(box)  # nothing to scan: its index is the directories'
    # A file dropped in by another program: the next writer finds the directories
    # changed since the scan, carries nothing, and the next scan indexes the file.
    (path / "new" / "1700000000.X9.host").write_bytes(b"Subject: dropped\r\n\r\n")
    a.append(box, b"Subject: after\r\n\r\nx\r\n")
    assert db.get_mark(mark) != list(maildir._scan_key(path))
    assert other.sync(box)
    assert "1700000000.X9.host" in {m.name for m in db.message_list(box.id)}
    assert len(db.message_list(box.id)) == 6 + 1 + 1 - 2 + 1 + 1 + 1


def test_sessions_woken_by_one_dispatch_claim_the_new_message_as_recent_once(tmp_path, db, monkeypatch):
    """The owner's IDLE sessions of one worker woken by one delivery (one bus dispatch):
    the first claims the new message as \\Recent (RFC 3501 §2.3.2: one session only)
    with one write; the others read that claim from the row they share and write
    nothing.  Every session reports the new EXISTS; exactly one reports RECENT 1."""
    a = worker(tmp_path, db)
    box = fill(a, "Big", 3)
    sessions = [Selected.open(a, box, False, False) for _ in range(5)]
    a.append_many(box, [(b"Subject: new\r\n\r\nx\r\n", (), None)])
    claims: list[tuple] = []
    real = db.message_claim_recent
    monkeypatch.setattr(db, "message_claim_recent", lambda *args: claims.append(args) or real(*args))
    before = [len(s.recent) for s in sessions]
    answers = [[r.encode() for r in s.refresh(a, allow_expunge=True, woken=7)] for s in sessions]
    assert len(claims) == 1
    assert all(b"* 4 EXISTS\r\n" in out for out in answers)
    assert sum(4 in s.recent for s in sessions) == 1
    assert sorted(len(s.recent) - n for s, n in zip(sessions, before)) == [0, 0, 0, 0, 1]
    assert sum(f"* {len(s.recent)} RECENT\r\n".encode() in out for s, out in zip(sessions, answers)) == 5
    # A later dispatch reads the row again: one claim more, one session gets the message.
    a.append_many(box, [(b"Subject: newer\r\n\r\nx\r\n", (), None)])
    for s in sessions:
        s.refresh(a, allow_expunge=True, woken=8)
    assert len(claims) == 2 and sum(5 in s.recent for s in sessions) == 1
