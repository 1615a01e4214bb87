"""SELECT from the UID file (``waypost.uids`` beside the Maildir) across two workers and
restarts: right after changes made in the other worker, after a crash that left the file
stale or torn, and after the mailbox was deleted and made again under its name (the old
file then never describes the new mailbox).  Real server, two workers, imaplib-free raw
IMAP (exact responses)."""

from __future__ import annotations

import re
import struct
from array import array

import pytest

from waypost.mailstore import uidfile as files

from support.imap import Raw
from support.server import WaypostInstance
from support.workers import on_two_workers

ADDRESS = "z@example.test"


@pytest.fixture
def srv(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "failure_delay": 0.05},
                           server={"workers": 2})
    inst.ok("account", "add", ADDRESS, "--password", "pw-Secret1")
    inst.start()
    yield inst
    inst.stop()


def login(srv: WaypostInstance) -> Raw:
    r = Raw(srv.imap_port)
    assert r.cmd(f"L LOGIN {ADDRESS} pw-Secret1")[-1].startswith(b"L OK")
    return r


def two(srv: WaypostInstance) -> tuple[Raw, Raw]:
    assert srv.proc is not None
    return on_two_workers(lambda: login(srv), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)


def ok(reply: list[bytes]) -> list[bytes]:
    assert b" OK" in reply[-1], reply
    return reply


def append(r: Raw, box: str, n: int, flags: str = "") -> None:
    for i in range(n):
        msg = f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode()
        r.send(f"AP APPEND {box} {flags}{{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        while not (line := r.line()).startswith(b"AP "):
            pass
        assert line.startswith(b"AP OK"), line


def number(reply: list[bytes], pattern: bytes) -> int:
    return next(int(m.group(1)) for x in reply if (m := re.search(pattern, x)))


def uids(r: Raw) -> list[int]:
    reply = ok(r.cmd("US UID SEARCH ALL"))
    line = next(x for x in reply if x.startswith(b"* SEARCH"))
    return [int(u) for u in line.split()[2:]]


def uidfile(srv: WaypostInstance, folder: str = ""):
    return srv.mailbox(ADDRESS) / folder / "waypost.uids"


def test_select_after_a_restart_follows_changes_made_in_the_other_worker(srv: WaypostInstance) -> None:
    a = login(srv)
    append(a, "INBOX", 30, "(\\Seen) ")
    append(a, "INBOX", 2)
    ok(a.cmd("S SELECT INBOX"))
    a.close()
    assert uidfile(srv).is_file()
    srv.stop()
    srv.start()
    a, b = two(srv)
    reply = ok(a.cmd("S SELECT INBOX"))  # from the file: no record read yet
    assert number(reply, rb"^\* (\d+) EXISTS") == 32
    assert number(reply, rb"\[UNSEEN (\d+)\]") == 31
    assert number(reply, rb"\[UIDNEXT (\d+)\]") == 33
    ok(b.cmd("S SELECT INBOX"))
    ok(b.cmd("ST STORE 3,31 +FLAGS.SILENT (\\Deleted)"))
    ok(b.cmd("E EXPUNGE"))
    append(b, "INBOX", 1, "($Late) ")
    ok(b.cmd("F STORE 5 +FLAGS.SILENT (\\Flagged)"))
    # The first command after SELECT reads the records: the other worker's changes
    # reach the client as EXPUNGE, EXISTS and FETCH, highest number first.
    reply = ok(a.cmd("N NOOP"))
    assert reply.index(b"* 31 EXPUNGE") < reply.index(b"* 3 EXPUNGE"), reply
    assert b"* 31 EXISTS" in reply
    assert any(x.startswith(b"* 5 FETCH") and b"\\Flagged" in x for x in reply), reply
    assert uids(a) == uids(b) == [u for u in range(1, 34) if u not in (3, 31)]
    flags = ok(a.cmd("FF FETCH 31 (FLAGS)"))
    assert any(b"$Late" in x for x in flags), flags
    # And a SELECT in either worker now (the file brought up to date from the change log).
    for r in (a, b):
        assert number(ok(r.cmd("S2 SELECT INBOX")), rb"^\* (\d+) EXISTS") == 31
        assert uids(r) == [u for u in range(1, 34) if u not in (3, 31)]
    a.close()
    b.close()


@pytest.mark.parametrize("damage", ["stale", "torn"])
def test_a_crash_leaving_the_file_stale_or_torn(srv: WaypostInstance, damage: str) -> None:
    a = login(srv)
    append(a, "INBOX", 12)
    ok(a.cmd("S SELECT INBOX"))
    old = uidfile(srv).read_bytes()
    ok(a.cmd("ST STORE 1:4 +FLAGS.SILENT (\\Deleted)"))
    ok(a.cmd("E EXPUNGE"))
    append(a, "INBOX", 2)
    a.close()
    srv.kill9()
    # The file as a crash may leave it: from before the changes, or cut short.
    uidfile(srv).write_bytes(old if damage == "stale" else old[:-2])
    srv.start()
    a, b = two(srv)
    for r in (a, b):
        reply = ok(r.cmd("S SELECT INBOX"))
        assert number(reply, rb"^\* (\d+) EXISTS") == 10
        assert uids(r) == list(range(5, 15))
    a.close()
    b.close()


def test_delete_and_create_of_the_same_name_never_reads_the_old_file(srv: WaypostInstance) -> None:
    a, b = two(srv)
    ok(a.cmd("C CREATE Big"))
    append(a, "Big", 7)
    first = ok(a.cmd("S SELECT Big"))
    old = uidfile(srv, ".Big").read_bytes()
    ok(a.cmd("U UNSELECT"))
    ok(b.cmd("D DELETE Big"))
    ok(b.cmd("C CREATE Big"))
    append(b, "Big", 7)
    ok(b.cmd("S SELECT Big"))
    ok(b.cmd("ST UID STORE 7 +FLAGS.SILENT (\\Deleted)"))
    ok(b.cmd("E EXPUNGE"))
    status = ok(b.cmd("T STATUS Big (UIDNEXT HIGHESTMODSEQ MESSAGES)"))
    state = (number(status, rb"UIDNEXT (\d+)"), number(status, rb"HIGHESTMODSEQ (\d+)"),
             number(status, rb"MESSAGES (\d+)"))
    a.close()
    b.close()
    # As if a crash between DELETE's two steps had left the old directory, reused by
    # the new mailbox, with a file of the old mailbox whose UIDNEXT, HIGHESTMODSEQ and
    # count happen to be the new one's (only its id and UIDVALIDITY tell it apart);
    # read by workers that just started.
    srv.stop()
    box_id, validity = struct.unpack_from("<8sQI", old)[1:]
    assert files.write(uidfile(srv, ".Big").parent, (box_id, validity, *state), array("I", range(2, 8)),
                       frozenset())
    srv.start()
    a, b = two(srv)
    for r in (a, b):
        again = ok(r.cmd("S SELECT Big"))
        assert number(again, rb"^\* (\d+) EXISTS") == 6
        assert number(again, rb"\[UIDVALIDITY (\d+)\]") > number(first, rb"\[UIDVALIDITY (\d+)\]")
        assert uids(r) == [1, 2, 3, 4, 5, 6]
    a.close()
    b.close()
