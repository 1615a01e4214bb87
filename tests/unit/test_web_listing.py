"""WebUser's list order, search and row cache (``waypost.web.listing``) on a real
Mailstore (SQLite or PostgreSQL, real Maildir files)."""

from __future__ import annotations

import pytest

from waypost.mailstore import Mailstore
from waypost.web import listing


@pytest.fixture(autouse=True)
def _empty_row_caches():
    """The row caches are per process and keyed by (mailbox id, UIDVALIDITY, UID), which
    one database never gives out twice. Each test here makes a new database whose first
    mailbox has id 1 and, within the same second, the same UIDVALIDITY: a server process
    never sees two databases, so the caches start empty for each test as they would."""
    def clear():
        with listing._lock:
            listing._keys.clear()
            listing._summaries.clear()
            listing._chars.update(keys=0, summaries=0)
            listing._found.clear()
            listing._found_uids[0] = 0
    clear()
    yield
    clear()


def _store(tmp_path, make_db):
    db = make_db("listing.db")
    store = Mailstore(tmp_path / "mail", "h", db)
    box = store.get("example.test", "alice", "INBOX")
    return db, store, box


def test_order_and_search_from_the_headers(tmp_path, make_db):
    db, store, box = _store(tmp_path, make_db)
    for sender, subject, date in (("Zed <z@x.test>", "b report", "Tue, 02 Jan 2024 10:00:00 +0000"),
                                  ("amy <a@x.test>", "=?utf-8?q?=C3=A9t=C3=A9?= report", "Mon, 01 Jan 2024 10:00:00 +0000"),
                                  ("Bob <b@x.test>", "another", "garbage date")):
        store.append(box, f"From: {sender}\r\nSubject: {subject}\r\nDate: {date}\r\n\r\nbody\r\n".encode())
    msgs = store.listing(box)[1]
    subj = lambda ms: [listing.summaries(store, box, ms)[m.uid].subject for m in ms]  # noqa: E731
    assert subj(listing.ordered(store, box, msgs, "arrival", True, "")) == ["another", "été report", "b report"]
    assert subj(listing.ordered(store, box, msgs, "from", False, "")) == ["été report", "another", "b report"]
    assert subj(listing.ordered(store, box, msgs, "subject", False, "")) == ["another", "b report", "été report"]
    # A Date that cannot be read sorts by arrival time (today: after 2024).
    assert subj(listing.ordered(store, box, msgs, "date", False, "")) == ["été report", "b report", "another"]
    assert subj(listing.ordered(store, box, msgs, "date", False, "REPORT été")) == ["été report"]
    assert listing.ordered(store, box, msgs, "size", False, "nothing") == []
    db.close()


def test_the_row_caches_are_bounded_in_characters(tmp_path, make_db, monkeypatch):
    db, store, box = _store(tmp_path, make_db)
    monkeypatch.setattr(listing, "MAX_CHARS", 5000)
    for i in range(40):
        store.append(box, f"From: s{i}@x.test\r\nSubject: {'long words ' * 25}{i}\r\n\r\nx\r\n".encode())
    msgs = store.listing(box)[1]
    first = listing.summaries(store, box, msgs)
    listing.keys(store, box, msgs)
    assert listing._chars["summaries"] <= 5000 and listing._chars["keys"] <= 5000
    assert listing._chars["summaries"] == sum(listing._cost(v) for v in listing._summaries.values())
    assert len(listing._summaries) < 40
    again = listing.summaries(store, box, msgs)  # the evicted ones are read again, the same
    assert again == first and first[msgs[7].uid].subject.endswith(" 7")
    db.close()


def test_search_finds_words_in_the_decoded_body_as_imap_search_does(tmp_path, make_db):
    import base64

    db, store, box = _store(tmp_path, make_db)
    latin = base64.b64encode("Grüße aus Köln, Geheimnis".encode("iso-8859-1")).decode()
    hidden = base64.b64encode(b"secret in an attachment").decode()
    for raw in (
        # quoted-printable with a soft line break inside the word, and UTF-8
        "From: a@x.test\r\nSubject: one\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\nthe sec=\r\nret word caf=C3=A9\r\n",
        # base64 text in ISO-8859-1 beside a base64 attachment that is not text
        "From: b@x.test\r\nSubject: two\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{latin}\r\n--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{hidden}\r\n--zz--\r\n",
        # the word in the header only
        "From: Secret Sender <c@x.test>\r\nSubject: three\r\n\r\nnothing here\r\n",
    ):
        store.append(box, raw.encode())
    msgs = store.listing(box)[1]
    subj = lambda ms: [listing.summaries(store, box, ms)[m.uid].subject for m in ms]  # noqa: E731
    assert subj(listing.ordered(store, box, msgs, "arrival", False, "SECRET")) == ["one", "three"]
    assert subj(listing.ordered(store, box, msgs, "arrival", False, "café word")) == ["one"]
    assert subj(listing.ordered(store, box, msgs, "arrival", False, "köln GRÜSSE")) == ["two"]
    assert subj(listing.ordered(store, box, msgs, "arrival", False, "attachment")) == []
    # The same search after new mail looks only at the new message, and finds it.
    store.append(box, b"From: d@x.test\r\nSubject: four\r\n\r\nmore secret\r\n")
    msgs = store.listing(box)[1]
    assert subj(listing.ordered(store, box, msgs, "subject", True, "secret")) == ["three", "one", "four"]
    # An expunged message is no longer found.
    store.expunge(box, [m for m in msgs if m.uid == msgs[0].uid])
    msgs = store.listing(box)[1]
    assert subj(listing.ordered(store, box, msgs, "arrival", False, "secret")) == ["three", "four"]
    db.close()


def test_a_sort_keeps_the_header_blocks_in_the_index_as_imap_cuts_them(tmp_path, make_db):
    """The header blocks a sort reads from the files go into the index's header cache
    (the same blocks IMAP SEARCH keeps): another worker, or a restart, sorts without
    the files."""
    from waypost.imap import message as mime

    db, store, box = _store(tmp_path, make_db)
    raws = [b"From: b@x.test\r\nSubject: second\r\nDate: Tue, 02 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n",
            b"Subject: first\r\nFrom: a@x.test\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n",
            b"From: c@x.test\nSubject: no empty line, bare LF"]
    for raw in raws:
        store.append(box, raw)
    msgs = store.listing(box)[1]
    assert db.message_headers_get(box.id) == {}
    assert [m.uid for m in listing.ordered(store, box, msgs, "date", False, "")] == [2, 1, 3]
    kept = db.message_headers_get(box.id)
    for m in msgs:
        data = store.read(box, m)
        end = mime.header_end(data)
        assert kept[m.uid] == (data if end is None else data[:end])
    # Another process (empty row caches), the files gone: the same order from the index.
    with listing._lock:
        listing._keys.clear()
        listing._chars["keys"] = 0
    for m in msgs:
        store.file_path(box, m).unlink()
    assert [m.uid for m in listing.ordered(store, box, msgs, "date", False, "")] == [2, 1, 3]
    assert [m.uid for m in listing.ordered(store, box, msgs, "from", True, "")] == [3, 1, 2]
    db.close()


def test_date_from_subject_reads_the_first_of_each_field_unfolded():
    from waypost.imap import message as mime

    block = (b"Received: from x\r\n\tby y; Mon, 01 Jan 2024\r\nsubject: folded\r\n  words\r\nFROM: a@x.test\r\n"
             b"Subject: second one\r\nX-Date: no\r\nDate: Tue, 02 Jan 2024 10:00:00 +0000\r\n\r\nSubject: body\r\n")
    assert mime.date_from_subject(block) == (b"Tue, 02 Jan 2024 10:00:00 +0000", b"a@x.test", b"folded  words")
    assert mime.date_from_subject(b"From: only@x.test\n\n") == (None, b"only@x.test", None)
    assert mime.date_from_subject(b"") == (None, None, None)
