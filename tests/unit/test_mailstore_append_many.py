"""Mailstore.append_many, the store behind MULTIAPPEND: all messages or none
(real SQLite, real files)."""

from __future__ import annotations

import dataclasses

import pytest

from waypost.db import NotFound
from waypost.mailstore import Mailstore


@pytest.fixture
def store(tmp_path, make_db):
    db = make_db("w.db")
    yield Mailstore(tmp_path / "mail", "mail.example.test", db)
    db.close()


def _files(store, box) -> list[str]:
    path = store.box_path(box)
    return sorted(p.name for sub in ("tmp", "new", "cur") for p in (path / sub).iterdir())


def test_append_many_stores_all_in_order_with_flags_and_dates(store):
    box = store.get("example.test", "alice", "INBOX")
    msgs = store.append_many(box, [(b"Subject: a\r\n\r\n1\r\n", ("\\Seen",), 1_000_000_000.0),
                                   (b"Subject: b\r\n\r\n2\r\n", (), None)])
    assert [m.uid for m in msgs] == [1, 2]
    assert msgs[0].flags == ("\\Seen",) and msgs[0].internaldate == 1_000_000_000.0
    assert [store.read(box, m) for m in store.messages(box)] == [b"Subject: a\r\n\r\n1\r\n", b"Subject: b\r\n\r\n2\r\n"]


def test_append_many_leaves_nothing_when_indexing_fails(store):
    box = store.get("example.test", "alice", "INBOX")
    before = _files(store, box)
    gone = dataclasses.replace(box, id=box.id + 1000)  # a mailbox row that does not exist
    with pytest.raises(NotFound):
        store.append_many(gone, [(b"Subject: a\r\n\r\n1\r\n", (), None), (b"Subject: b\r\n\r\n2\r\n", (), None)])
    assert _files(store, box) == before
    assert store.messages(box) == []
