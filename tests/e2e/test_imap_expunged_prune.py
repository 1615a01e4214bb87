"""The index's expunge records (QRESYNC's VANISHED, RFC 7162) are pruned after
``imap.expunged_keep``; each mailbox keeps the mod-sequence at or below which detail
was dropped.  Two workers, over the real listener: the exact answer while the records
are there, and after the prune every UID of the client's range that is not in the
mailbox (RFC 7162 §3.2.5.1 allows UIDs the client never had), never one at or above
UIDNEXT; a session that still shows a message whose expunge record went is told of
it all the same.  Also on PostgreSQL (PG_E2E)."""

from __future__ import annotations

import re
import time

import pytest

from support.imap import Raw
from support.server import WaypostInstance
from support.workers import on_two_workers

USER = "prune@example.test"
PASSWORD = "prune-password"


def _server(tmp_path_factory, name: str, **imap: object):
    inst = WaypostInstance(tmp_path_factory.mktemp(name) / "data",
                           imap={"plaintext_without_tls": True, **imap}, server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    return inst


@pytest.fixture(scope="module")
def keeping(tmp_path_factory):
    inst = _server(tmp_path_factory, "expunged-kept")  # the default: a week
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def pruning(tmp_path_factory):
    inst = _server(tmp_path_factory, "expunged-pruned", expunged_keep=1.0)  # pruned every second
    yield inst
    inst.stop()


def login(server: WaypostInstance, qresync: bool = False) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN {USER} {PASSWORD}")[-1].startswith(b"L OK")
    if qresync:
        assert r.cmd("E ENABLE QRESYNC")[-1].startswith(b"E OK")
    return r


def code(name: bytes, lines: list[bytes]) -> int:
    found = [int(m.group(1)) for line in lines if (m := re.search(rb"\[" + name + rb" (\d+)\]", line))]
    assert len(found) == 1, (name, lines)
    return found[0]


def expunge(r: Raw, uid: int) -> None:
    assert r.cmd(f"D UID STORE {uid} +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
    reply = r.cmd(f"X UID EXPUNGE {uid}")
    assert reply[-1].startswith(b"X OK") and reply[0].endswith(b" EXPUNGE"), reply


def vanished(server: WaypostInstance, known: str) -> list[bytes]:
    """What a QRESYNC client coming back with ``known`` (uidvalidity modseq [uids]) is sent."""
    c = login(server, qresync=True)
    reply = c.cmd(f"S SELECT INBOX (QRESYNC ({known}))")
    c.close()
    assert reply[-1].startswith(b"S OK"), reply
    return [line for line in reply if line.startswith(b"* VANISHED")]


def scene(server: WaypostInstance) -> tuple[Raw, Raw, int, int]:
    """Six messages; UID 1 expunged; then a QRESYNC client's state (uidvalidity,
    modseq) is taken, a session ``d`` on the other worker than ``b`` selects INBOX,
    and ``b`` expunges UID 3."""
    b, d = on_two_workers(lambda: login(server), lambda r: r.sock, lambda r: r.close(), server.proc.pid)
    for n in range(1, 7):
        text = b"Subject: p%d\r\n\r\nbody\r\n" % n
        b.send(b"A APPEND INBOX {%d+}\r\n" % len(text) + text + b"\r\n")
        while not (line := b.line()).startswith(b"A "):
            pass
        assert line.startswith(b"A OK"), line
    assert b.cmd("S SELECT INBOX")[-1].startswith(b"S OK")
    expunge(b, 1)
    a = login(server, qresync=True)
    selected = a.cmd("S SELECT INBOX")
    uidvalidity, modseq = code(b"UIDVALIDITY", selected), code(b"HIGHESTMODSEQ", selected)
    a.close()
    assert b"* 5 EXISTS" in d.cmd("S SELECT INBOX")
    expunge(b, 3)
    return b, d, uidvalidity, modseq


def test_vanished_is_exact_while_the_records_are_kept(keeping):
    b, d, v, m0 = scene(keeping)
    assert vanished(keeping, f"{v} {m0}") == [b"* VANISHED (EARLIER) 3"]
    c = login(keeping, qresync=True)
    assert c.cmd("S SELECT INBOX")[-1].startswith(b"S OK")
    reply = c.cmd(f"F UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0} VANISHED)")
    assert reply[0] == b"* VANISHED (EARLIER) 3", reply
    assert b"* 2 EXPUNGE" in d.cmd("N NOOP")
    for r in (b, c, d):
        r.close()


def test_vanished_after_the_records_are_pruned_names_every_missing_uid(pruning):
    b, d, v, m0 = scene(pruning)
    # Until the prune the answer is the exact one ("3"); then the floor is above m0
    # and every UID below UIDNEXT that is not there is named, UID 1 too.
    deadline = time.monotonic() + 30
    while (got := vanished(pruning, f"{v} {m0}")) != [b"* VANISHED (EARLIER) 1,3"]:
        assert got == [b"* VANISHED (EARLIER) 3"], got
        assert time.monotonic() < deadline, "the expunge records were not pruned"
        time.sleep(0.3)
    assert vanished(pruning, f"{v} {m0} 2:6") == [b"* VANISHED (EARLIER) 3"]
    assert vanished(pruning, f"{v} {m0} 1:100") == [b"* VANISHED (EARLIER) 1,3"]  # never UIDNEXT or above
    c = login(pruning, qresync=True)
    selected = c.cmd("S SELECT INBOX")
    assert b"* 4 EXISTS" in selected and code(b"UIDNEXT", selected) == 7, selected
    reply = c.cmd(f"F UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0} VANISHED)")
    assert reply[0] == b"* VANISHED (EARLIER) 1,3", reply
    # d selected before UID 3 went, and its record is gone: it is told all the same
    reply = d.cmd("N NOOP")
    assert b"* 2 EXPUNGE" in reply and reply[-1].startswith(b"N OK"), reply
    assert d.cmd("F UID SEARCH ALL")[0] == b"* SEARCH 2 4 5 6"
    # and so is a later one (by its record, or by comparison if that went already)
    expunge(b, 5)
    reply = d.cmd("N NOOP")
    assert b"* 3 EXPUNGE" in reply, reply
    for r in (b, c, d):
        r.close()
