"""What a process keeps of the settings (waypost.db.changes.SettingsCache): a flood of
unknown RCPTs (names that are no local domain, names a local domain does not have) is
answered from memory, and a change made by another process is still seen at once.
The engine tests run on both engines; the SettingsCache tests count the loads it asks
for."""

from __future__ import annotations


import pytest
from waypost.db import changes
from waypost.db.changes import SettingsCache
from waypost.directory import Directory


@pytest.fixture
def dom(two):
    """``two`` (tests/unit/conftest.py), with five accounts in dom.dom."""
    here, there = two
    for i in range(5):
        here.add_account(f"user{i}@dom.dom", None)
    return here, there


def _flood(d: Directory, n: int, tag: str = "") -> None:
    for i in range(n):
        assert d.db.get_object("dom.dom", f"nobody{tag}{i}") is None


def test_after_a_flood_of_unknown_names_a_new_object_is_seen_at_once(dom):
    here, there = dom
    _flood(here, changes.MISSES_BEFORE_NAMES * 3)
    assert here.db._settings.names_held == 5  # its names are now kept
    assert here.db.get_object("dom.dom", "user3").name == "user3"
    assert here.db.get_object("dom.dom", "ann") is None
    there.add_account("ann@dom.dom", None)  # another worker, or the CLI
    assert here.db.get_object("dom.dom", "ann").kind == "account"
    _flood(here, changes.MISSES_BEFORE_NAMES * 3, "b")
    assert here.db._settings.names_held == 6  # read again under the new token, ann with them
    assert here.db.get_object("dom.dom", "ann").kind == "account"
    there.remove("ann@dom.dom", "account")
    assert here.db.get_object("dom.dom", "ann") is None
    there.add_forwarder("ann@dom.dom", "ann@elsewhere.example")  # the same name, made again
    assert here.db.get_object("dom.dom", "ann").kind == "forwarder"


def test_domain_names_from_memory_see_a_change_at_once(dom):
    here, there = dom
    for i in range(50):
        assert here.db.domain_name(f"host{i}.example.com") is None
    assert here.db.domain_name("dom.dom") == "dom.dom"
    there.add_domain("new.dom")
    assert here.db.domain_name("new.dom") == "new.dom"
    there.set_domain("new.dom", aliases=["alias.dom"])
    assert here.db.domain_name("alias.dom") == "new.dom"
    assert here.db.domain_name("Alias.dom") is None  # as the database compares: exactly
    there.remove_domain("new.dom")
    assert here.db.domain_name("new.dom") is None and here.db.domain_name("alias.dom") is None


@pytest.mark.sqlite_only
def test_a_flood_of_unknown_rcpts_costs_no_query(tmp_path):
    """On the real SQLite connection, counted by its trace callback."""
    from waypost.db import SQLiteDatabase

    d = Directory(SQLiteDatabase(tmp_path / "w.db"), "main.dom")
    d.add_domain("main.dom")
    d.add_domain("dom.dom")
    d.add_account("user@dom.dom", None)
    asked: list[str] = []
    d.db._conn().set_trace_callback(asked.append)  # type: ignore[attr-defined]
    _flood(d, changes.MISSES_BEFORE_NAMES)
    for i in range(20):
        assert d.db.domain_name(f"host{i}.example.com") is None
    before = len(asked)
    _flood(d, 1000, "x")
    for i in range(1000):
        assert d.db.domain_name(f"other{i}.example.net") is None
    assert asked[before:] == []
    assert d.db.get_object("dom.dom", "user").kind == "account"  # a name it has: its row is read
    assert any("FROM objects" in q for q in asked[before:])
    d.db.close()


class _Loads:
    """The loads a SettingsCache asks for, on a list of one domain's names."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.rows = 0
        self.lists = 0

    def row(self, domain: str, name: str):
        self.rows += 1
        return (name,) if name in self.names else None

    def all(self, domain: str, limit: int) -> list[str]:
        self.lists += 1
        return self.names[: limit + 1]


def test_a_domain_with_too_many_names_is_asked_name_by_name(monkeypatch):
    monkeypatch.setattr(changes, "OBJECT_NAMES", 3)
    cache = SettingsCache(lambda: b"12345678")
    loads = _Loads([f"n{i}" for i in range(5)])
    for i in range(changes.MISSES_BEFORE_NAMES + 10):
        assert cache.object_row("dom", f"x{i}", loads.row, loads.all) is None
    assert loads.lists == 1  # once under the token, not at every miss after
    assert loads.rows == changes.MISSES_BEFORE_NAMES + 10
    assert cache.names_held == 0


def test_the_name_sets_are_bounded(monkeypatch):
    monkeypatch.setattr(changes, "NAMES_HELD", 25)
    cache = SettingsCache(lambda: b"12345678")
    for d in range(6):
        loads = _Loads([f"n{i}" for i in range(10)])
        for i in range(changes.MISSES_BEFORE_NAMES):
            cache.object_row(f"dom{d}", f"x{i}", loads.row, loads.all)
        assert loads.lists == 1
        assert 10 <= cache.names_held <= 25
        before = loads.rows
        assert cache.object_row(f"dom{d}", "x-more", loads.row, loads.all) is None
        assert loads.rows == before  # answered by the set
        assert cache.object_row(f"dom{d}", "n4", loads.row, loads.all) == ("n4",)
        assert loads.rows == before + 1


def test_a_new_token_drops_the_sets_and_no_token_keeps_nothing():
    token: list[bytes | None] = [b"aaaaaaaa"]
    cache = SettingsCache(lambda: token[0])
    loads = _Loads(["ann"])
    for i in range(changes.MISSES_BEFORE_NAMES):
        cache.object_row("dom", f"x{i}", loads.row, loads.all)
    assert cache.names_held == 1
    loads.names.append("bob")  # written by another process: the token changes
    token[0] = b"bbbbbbbb"
    assert cache.object_row("dom", "bob", loads.row, loads.all) == ("bob",)
    token[0] = None
    rows = loads.rows
    for _ in range(3):
        assert cache.object_row("dom", "bob", loads.row, loads.all) == ("bob",)
        assert cache.domain_names(lambda limit: [("dom", "dom")]) is None
    assert loads.rows == rows + 3


def test_too_many_domains_are_not_kept_whole(monkeypatch):
    monkeypatch.setattr(changes, "DOMAIN_NAMES", 2)
    cache = SettingsCache(lambda: b"12345678")
    lists = []

    def all_names(limit):
        lists.append(limit)
        return [("a.dom", "a.dom"), ("b.dom", "b.dom"), ("c.dom", "c.dom")][: limit + 1]
    assert cache.domain_names(all_names) is None
    assert cache.domain_names(all_names) is None
    assert lists == [2]  # asked once under the token
    monkeypatch.setattr(changes, "DOMAIN_NAMES", 3)
    cache = SettingsCache(lambda: b"12345678")
    assert cache.domain_names(all_names) == {"a.dom": "a.dom", "b.dom": "b.dom", "c.dom": "c.dom"}


def test_too_many_domains_are_answered_one_by_one(two, monkeypatch):
    here, there = two
    monkeypatch.setattr(changes, "DOMAIN_NAMES", 2)
    there.add_domain("c.dom", aliases=["cc.dom"])
    for _ in range(2):  # asked, then cached one by one
        assert [here.db.domain_name(n) for n in ("main.dom", "c.dom", "cc.dom", "x.dom")] == [
            "main.dom", "c.dom", "c.dom", None]
    assert here.db._settings.domain_names(lambda limit: []) is None  # not kept whole: 3 domains
    assert here.db._settings._rows[("n", "cc.dom")][1] == "c.dom"


def test_a_big_domain_is_read_again_only_after_as_many_misses_as_it_costs(monkeypatch):
    token = [b"aaaaaaaa"]
    cache = SettingsCache(lambda: token[0])
    loads = _Loads([f"n{i}" for i in range(changes.NAMES_PER_MISS * 100)])
    for i in range(changes.MISSES_BEFORE_NAMES):
        cache.object_row("dom", f"x{i}", loads.row, loads.all)
    assert loads.lists == 1 and cache.names_held == len(loads.names)
    token[0] = b"bbbbbbbb"  # any settings change
    for i in range(99):
        cache.object_row("dom", f"y{i}", loads.row, loads.all)
    assert loads.lists == 1  # 6,400 names: read again at the 100th miss, not the 32nd
    cache.object_row("dom", "y-last", loads.row, loads.all)
    assert loads.lists == 2
