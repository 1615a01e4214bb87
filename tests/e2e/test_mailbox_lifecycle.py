"""Mailboxes deleted, re-created and renamed while other sessions, in other workers,
use them (issue 13 items 7 and 8, issue 14 items 1 and 2).

STYLE.md 13: a cache never outlives what it describes, in any process.  Each sequence
runs with its two sessions on two different workers (``support.workers`` finds which
worker holds a connection), and again in a loop.
"""

from __future__ import annotations

import re
import threading

import pytest

from support.imap import Raw
from support.server import WaypostInstance
from support.workers import on_two_workers

ACCOUNTS = ("recreate", "recreate1", "loop", "appenddel", "appendren", "appendloop", "race", "racedel",
            "long")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("lifecycle") / "data",
                           imap={"plaintext_without_tls": True, "failure_delay": 0.05},
                           server={"workers": 2})
    for who in ACCOUNTS:
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    inst.start()
    yield inst
    inst.stop()


def session(srv: WaypostInstance, who: str) -> Raw:
    r = Raw(srv.imap_port)
    assert r.cmd(f"L LOGIN {who}@example.test pw")[-1].startswith(b"L OK")
    return r


def two_workers(srv: WaypostInstance, who: str) -> tuple[Raw, Raw]:
    assert srv.proc is not None
    return on_two_workers(lambda: session(srv, who), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)


def ok(reply: list[bytes]) -> list[bytes]:
    assert b" OK" in reply[-1], reply
    return reply


def append(r: Raw, box: str, text: str) -> list[bytes]:
    msg = text.encode()
    r.send(f"AP APPEND {box} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    out = []
    while True:
        line = r.line()
        out.append(line)
        if line.startswith(b"AP "):
            return out


def exists(r: Raw, box: str) -> int:
    reply = ok(r.cmd(f"S SELECT {box}"))
    [n] = [int(m.group(1)) for x in reply if (m := re.match(rb"\* (\d+) EXISTS", x))]
    return n


def subjects(r: Raw) -> list[str]:
    reply = ok(r.cmd("F FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    return sorted(m.group(1).decode() for x in reply if (m := re.search(rb"Subject: (\S+)", x)))


def tracebacks(srv: WaypostInstance) -> list[str]:
    return [line for line in list(srv.output) if "Traceback" in line or "Internal error" in line]


# -- issue 14 item 1: a re-created mailbox shows its messages ----------------------------


def _recreate(deleter: Raw, reader: Raw, round_: int) -> None:
    """``reader`` has Foo selected (its worker read its listing); ``deleter`` deletes
    it, makes a new Foo with three messages; both must see those three."""
    ok(deleter.cmd("D1 DELETE Foo"))
    ok(deleter.cmd("D2 CREATE Foo"))
    for i in range(3):
        ok(append(deleter, "Foo", f"Subject: r{round_}m{i}\r\n\r\nbody\r\n"))
    want = [f"r{round_}m{i}" for i in range(3)]
    for r in (reader, deleter):
        assert exists(r, "Foo") == 3
        assert subjects(r) == want
        ok(r.cmd("U UNSELECT"))


def test_recreated_mailbox_shows_its_messages_in_one_session(srv):
    r = session(srv, "recreate1")
    ok(r.cmd("C CREATE Foo"))
    for i in range(3):
        ok(append(r, "Foo", f"Subject: old{i}\r\n\r\nbody\r\n"))
    assert exists(r, "Foo") == 3
    ok(r.cmd("U UNSELECT"))
    _recreate(r, r, 0)
    r.close()


def test_recreated_mailbox_shows_its_messages_across_two_workers(srv):
    a, b = two_workers(srv, "recreate")
    ok(a.cmd("C CREATE Foo"))
    for i in range(3):
        ok(append(a, "Foo", f"Subject: old{i}\r\n\r\nbody\r\n"))
    for r in (a, b):  # both workers hold a listing of the first Foo
        assert exists(r, "Foo") == 3
        ok(r.cmd("U UNSELECT"))
    _recreate(b, a, 1)
    _recreate(a, b, 2)
    a.close()
    b.close()
    assert not tracebacks(srv)


def test_recreated_mailbox_100_times_across_two_workers(srv):
    a, b = two_workers(srv, "loop")
    ok(a.cmd("C CREATE Foo"))
    for i in range(3):
        ok(append(a, "Foo", f"Subject: old{i}\r\n\r\nbody\r\n"))
    for r in (a, b):
        assert exists(r, "Foo") == 3
        ok(r.cmd("U UNSELECT"))
    for round_ in range(100):
        deleter, reader = (a, b) if round_ % 2 else (b, a)
        _recreate(deleter, reader, round_)
    a.close()
    b.close()
    assert not tracebacks(srv)


# -- issue 14 item 2: APPEND in another worker after a DELETE or RENAME ------------------


def _append_after(srv: WaypostInstance, who: str, change: str, rounds: int) -> None:
    a, b = two_workers(srv, who)
    for round_ in range(rounds):
        ok(a.cmd("C CREATE Foo"))
        ok(append(a, "Foo", f"Subject: before{round_}\r\n\r\nbody\r\n"))  # a's worker has made .Foo
        ok(b.cmd(change))  # b's worker removes .Foo
        if change.startswith("R"):
            ok(b.cmd("D DELETE Bar"))
        ok(a.cmd("C2 CREATE Foo"))  # a's worker must not trust its memory of .Foo
        reply = append(a, "Foo", f"Subject: after{round_}\r\n\r\nbody\r\n")
        assert reply[-1].startswith(b"AP OK"), reply
        assert exists(b, "Foo") == 1
        assert subjects(b) == [f"after{round_}"]
        ok(b.cmd("U UNSELECT"))
        ok(a.cmd("D2 DELETE Foo"))
    a.close()
    b.close()
    assert not tracebacks(srv)


def test_append_in_another_worker_after_delete(srv):
    _append_after(srv, "appenddel", "D DELETE Foo", 1)


def test_append_in_another_worker_after_rename(srv):
    _append_after(srv, "appendren", "R RENAME Foo Bar", 1)


def test_append_in_another_worker_after_delete_100_times(srv):
    _append_after(srv, "appendloop", "D DELETE Foo", 100)


# -- issue 13 item 7: CREATE, DELETE and RENAME race between workers ---------------------


def _both(a: Raw, cmd_a: str, b: Raw, cmd_b: str) -> tuple[list[bytes], list[bytes]]:
    """Send both commands before reading either reply: the two workers run them at once."""
    a.send(cmd_a.encode() + b"\r\n")
    b.send(cmd_b.encode() + b"\r\n")
    out = []
    for r, cmd in ((a, cmd_a), (b, cmd_b)):
        tag = cmd.split()[0].encode()
        lines = []
        while not (line := r.line()).startswith(tag + b" "):
            lines.append(line)
        out.append(lines + [line])
    return out[0], out[1]


def _names(r: Raw) -> set[str]:
    reply = ok(r.cmd('L LIST "" *'))
    return {m.group(1).decode() for x in reply if (m := re.match(rb'\* LIST \([^)]*\) "/" "?([^"]*)"?$', x))}


def _consistent(srv: WaypostInstance, r: Raw, who: str) -> set[str]:
    """Every listed mailbox has its directory, and no directory is left without one."""
    home = srv.mailbox(f"{who}@example.test")
    names = _names(r)
    folders = {"." + n.replace("/", ".") for n in names if n != "INBOX"}
    on_disk = {p.name for p in home.iterdir() if p.name.startswith(".") and p.is_dir()}
    assert folders == on_disk, (names, on_disk)
    return names


def test_two_sessions_renaming_one_mailbox_on_two_workers(srv):
    a, b = two_workers(srv, "race")
    for i in range(30):
        ok(a.cmd(f"C CREATE Foo{i}"))
        ok(append(a, f"Foo{i}", f"Subject: m{i}\r\n\r\nbody\r\n"))
        ra, rb = _both(a, f"RA RENAME Foo{i} A{i}", b, f"RB RENAME Foo{i} B{i}")
        outcomes = sorted([ra[-1].split(b" ", 2)[1], rb[-1].split(b" ", 2)[1]])
        assert outcomes == [b"NO", b"OK"], (ra, rb)
        loser = ra if ra[-1].startswith(b"RA NO") else rb
        assert b"[NONEXISTENT]" in loser[-1], loser
        names = _consistent(srv, a, "race")
        winner = f"A{i}" if ra[-1].startswith(b"RA OK") else f"B{i}"
        assert winner in names and f"Foo{i}" not in names
        assert exists(b, winner) == 1
        ok(b.cmd("U UNSELECT"))
    a.close()
    b.close()
    assert not tracebacks(srv)


def test_delete_rename_and_create_race_on_two_workers(srv):
    a, b = two_workers(srv, "racedel")
    for i in range(30):
        ok(a.cmd("C CREATE Foo"))
        ok(append(a, "Foo", "Subject: m\r\n\r\nbody\r\n"))
        # DELETE against RENAME: one of them wins, the other finds no Foo.
        ra, rb = _both(a, "RA DELETE Foo", b, "RB RENAME Foo Bar")
        assert sorted([ra[-1][3:5], rb[-1][3:5]]) == [b"NO", b"OK"], (ra, rb)
        names = _consistent(srv, a, "racedel")
        assert "Foo" not in names
        if "Bar" in names:
            ok(a.cmd("D DELETE Bar"))
        # CREATE against CREATE: one makes it, the other is told it exists.
        ra, rb = _both(a, "RA CREATE New/Sub", b, "RB CREATE New/Sub")
        assert sorted([ra[-1][3:5], rb[-1][3:5]]) == [b"NO", b"OK"], (ra, rb)
        assert b"[ALREADYEXISTS]" in (ra[-1] if ra[-1].startswith(b"RA NO") else rb[-1])
        assert {"New", "New/Sub"} <= _consistent(srv, a, "racedel")
        ok(a.cmd("D1 DELETE New/Sub"))
        ok(a.cmd("D2 DELETE New"))
    a.close()
    b.close()
    assert not tracebacks(srv)


# -- issue 13 item 8: names the file system cannot hold -----------------------------------


def test_create_and_rename_with_a_name_too_long_for_the_file_system(srv):
    r = session(srv, "long")
    level = "x" * 300  # within the 512 octets of a name, beyond the 255 of a directory
    reply = r.cmd(f"C1 CREATE {level}")
    assert reply[-1].startswith(b"C1 NO [LIMIT]"), reply
    reply = r.cmd(f"C2 CREATE {'y' * 200}/{'z' * 100}")  # one directory holds every level
    assert reply[-1].startswith(b"C2 NO [LIMIT]"), reply
    ok(r.cmd("C3 CREATE Short"))
    reply = r.cmd(f"C4 RENAME Short {level}")
    assert reply[-1].startswith(b"C4 NO [LIMIT]"), reply
    longest = "w" * 254  # "." + 254 octets: the longest folder name there is
    ok(r.cmd(f"C5 CREATE {longest}"))
    assert (srv.mailbox("long@example.test") / f".{longest}" / "cur").is_dir()
    assert "Short" in _names(r) and level not in _names(r)
    r.close()
    assert not tracebacks(srv)
