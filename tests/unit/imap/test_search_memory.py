"""The headers SEARCH keeps in a worker's memory are bounded, the joined copy that a
search scans included (issue 13 item 11)."""

from __future__ import annotations

from waypost.imap.commands import search


def _headers(n: int, size: int) -> list[tuple[int, bytes]]:
    return [(uid, b"Subject: " + b"x" * size + b"\r\n\r\n") for uid in range(1, n + 1)]


def test_the_joined_copy_counts_and_the_budget_holds(monkeypatch):
    memory = search._Memory(300_000)
    one = memory.get((1, 1))
    for uid, block in _headers(100, 1000):
        one.add(uid, block)
    before = one.size
    assert one.scan(b"subject") == list(range(1, 101))
    assert one.size > before + 100 * 1000  # the joined copy is counted
    one.add(101, b"Subject: y\r\n\r\n")  # drops the joined copy, and its count
    assert one.size == before + len(b"Subject: y\r\n\r\n") + search._ENTRY_OVERHEAD
    two = memory.get((2, 1))
    for uid, block in _headers(100, 1000):
        two.add(uid, block)
    two.scan(b"subject")
    memory.trim()
    assert sum(b.size for b in memory.boxes.values()) <= 300_000
    assert list(memory.boxes) == [(2, 1)]  # the least recently used went first


def test_the_number_of_mailboxes_is_bounded():
    memory = search._Memory(1 << 30)
    for i in range(search._MEMORY_BOXES + 50):
        memory.get((i, 1))
    memory.trim()
    assert len(memory.boxes) == search._MEMORY_BOXES
    assert (search._MEMORY_BOXES + 49, 1) in memory.boxes
