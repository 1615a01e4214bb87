"""SEARCH of HEADER and the envelope keys from the strings a worker keeps per field
(``search._Field``): a mailbox whose whole headers exceed ``imap.search_cache`` is
still answered from memory the next time, and the answers follow new mail, expunges
and a mailbox deleted and made again under its name, made in the other worker.
Real server, two workers, raw IMAP."""

from __future__ import annotations

import re
import shutil

import pytest

from support.imap import Raw
from support.server import WaypostInstance
from support.workers import on_two_workers

ADDRESS = "s@example.test"
PAD = "p" * 1500  # a whole header of ~1,600 octets: 120 of them, and their joined copy, exceed the budget


@pytest.fixture
def srv(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "failure_delay": 0.05,
                                                     "search_cache": 200_000},
                           server={"workers": 2})
    inst.ok("account", "add", ADDRESS, "--password", "pw-Secret1")
    inst.start()
    yield inst
    inst.stop()


def login(srv: WaypostInstance) -> Raw:
    r = Raw(srv.imap_port)
    assert r.cmd(f"L LOGIN {ADDRESS} pw-Secret1")[-1].startswith(b"L OK")
    return r


def ok(reply: list[bytes]) -> list[bytes]:
    assert re.match(rb"\S+ OK (?!\[EXPUNGEISSUED\])", reply[-1]), reply
    return reply


def append(r: Raw, box: str, i: int, tag: str | None) -> None:
    head = f"From: Sender {i} <sender{i}@origin.test>\r\nSubject: message {i}\r\nX-Pad: {PAD}\r\n"
    if tag is not None:
        head += f"X-Tag: {tag}\r\n"
    msg = (head + f"\r\nbody {i}\r\n").encode()
    r.send(f"AP APPEND {box} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    while not (line := r.line()).startswith(b"AP "):
        pass
    assert line.startswith(b"AP OK"), line


def found(r: Raw, criteria: str) -> list[int]:
    reply = ok(r.cmd(f"US UID SEARCH {criteria}"))
    line = next(x for x in reply if x.startswith(b"* SEARCH"))
    return [int(u) for u in line.split()[2:]]


def fill(r: Raw, box: str, n: int, tag: str) -> list[int]:
    """n messages, every tenth with ``X-Tag: tag``; their UIDs (1..n in a new box)."""
    for i in range(1, n + 1):
        append(r, box, i, tag if i % 10 == 0 else None)
    return [i for i in range(1, n + 1) if i % 10 == 0]


def test_a_mailbox_larger_than_the_budget_is_answered_from_memory_the_next_time(srv: WaypostInstance) -> None:
    r = login(srv)
    tagged = fill(r, "INBOX", 120, "needle-7f3a")
    ok(r.cmd("S SELECT INBOX"))
    assert found(r, "HEADER X-Tag needle-7f3a") == tagged
    assert found(r, "FROM sender3@origin.test") == [3]
    assert found(r, "HEADER x-tag 7F3A SUBJECT \"message 30\"") == [30]
    # Take away what a search would read again: the index's header blocks and the files.
    db = srv.db()
    try:
        box = db.mailbox_get("example.test", "s", "INBOX")
        db.message_headers_delete(box.id, list(range(1, 121)))
        assert db.message_headers_get(box.id) == {}
    finally:
        db.close()
    maildir = srv.mailbox(ADDRESS)
    aside = maildir.parent / "aside"
    shutil.move(str(maildir / "cur"), str(aside))
    try:
        assert found(r, "HEADER X-Tag needle-7f3a") == tagged  # plain OK: nothing was lost
        assert found(r, "FROM sender3@origin.test") == [3]
        assert found(r, "HEADER x-tag 7F3A SUBJECT \"message 30\"") == [30]
    finally:
        shutil.move(str(aside), str(maildir / "cur"))
    r.close()


def test_answers_follow_changes_made_in_the_other_worker(srv: WaypostInstance) -> None:
    assert srv.proc is not None
    a, b = on_two_workers(lambda: login(srv), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)
    tagged = fill(a, "INBOX", 40, "needle-7f3a")
    for r in (a, b):
        ok(r.cmd("S SELECT INBOX"))
        assert found(r, "HEADER X-Tag needle-7f3a") == tagged
        assert found(r, "NOT HEADER X-Tag needle") == [u for u in range(1, 41) if u not in tagged]
    # New mail and an expunge in b: a sees both at its next search (it is told of them).
    append(b, "INBOX", 41, "NEEDLE-7F3A later")
    append(b, "INBOX", 42, None)
    ok(b.cmd("ST UID STORE 20 +FLAGS.SILENT (\\Deleted)"))
    ok(b.cmd("E EXPUNGE"))
    ok(a.cmd("N NOOP"))
    now = [10, 30, 40, 41]
    for r in (a, b):
        assert found(r, "HEADER X-Tag needle-7f3a") == now
        assert found(r, "OR HEADER X-Tag later FROM sender42@origin.test") == [41, 42]
        assert found(r, "HEADER X-Tag \"\"") == now
    # The same name made again in b with other content: never the old mailbox's answers.
    ok(a.cmd("C CREATE Box"))
    fill(a, "Box", 20, "old-tag")
    for r in (a, b):
        ok(r.cmd("S SELECT Box"))
        assert found(r, "HEADER X-Tag old-tag") == [10, 20]
        ok(r.cmd("U UNSELECT"))
    ok(b.cmd("D DELETE Box"))
    ok(b.cmd("C CREATE Box"))
    for i in range(1, 4):
        append(b, "Box", i, "new-tag")
    for r in (a, b):
        ok(r.cmd("S SELECT Box"))
        assert found(r, "HEADER X-Tag old-tag") == []
        assert found(r, "HEADER X-Tag new-tag") == [1, 2, 3]
    a.close()
    b.close()
