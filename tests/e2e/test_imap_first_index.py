"""The first index of a big Maildir dropped in by another program (issue 20: the index
of 100,000 files is built in one batch, counted once for all on SQLite): SELECT shows
every message, and STATUS, the quota and the counts after later changes are what
message-by-message indexing gives.  Real server, two workers, raw IMAP."""

from __future__ import annotations

import os
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance
from support.workers import on_two_workers

ADDRESS = "f@example.test"
COUNT = 1500


@pytest.fixture
def srv(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "failure_delay": 0.05},
                           server={"workers": 2})
    inst.ok("account", "add", ADDRESS, "--password", "pw-Secret1")
    inst.ok("account", "set", ADDRESS, "--quota", "100M")
    inst.start()
    yield inst
    inst.stop()


def login(srv: WaypostInstance) -> Raw:
    r = Raw(srv.imap_port)
    assert r.cmd(f"L LOGIN {ADDRESS} pw-Secret1")[-1].startswith(b"L OK")
    return r


def ok(reply: list[bytes]) -> list[bytes]:
    assert b" OK" in reply[-1], reply
    return reply


def status(r: Raw) -> tuple[int, int, int]:
    reply = ok(r.cmd("T STATUS INBOX (MESSAGES UNSEEN SIZE)"))
    line = next(x for x in reply if x.startswith(b"* STATUS"))
    return tuple(int(re.search(rb"%s (\d+)" % k, line).group(1)) for k in (b"MESSAGES", b"UNSEEN", b"SIZE"))


def quota(r: Raw) -> int:
    reply = ok(r.cmd("Q GETQUOTAROOT INBOX"))
    line = next(x for x in reply if x.startswith(b"* QUOTA "))
    return int(re.search(rb"STORAGE (\d+)", line).group(1))


def test_a_dropped_in_maildir_is_indexed_and_counted_as_one_by_one(srv: WaypostInstance) -> None:
    maildir = srv.mailbox(ADDRESS)
    sizes = []
    for i in range(COUNT):
        body = f"Subject: dropped {i}\r\n\r\n{'x' * (i % 50)}\r\n".encode()
        sizes.append(len(body))
        info = ":2,S" if i % 3 else ":2,"
        (maildir / "cur" / f"{1700000000 + i}.M{i}P1.other{info}").write_bytes(body)
    os.utime(maildir / "cur")
    assert srv.proc is not None
    a, b = on_two_workers(lambda: login(srv), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)
    reply = ok(a.cmd("S SELECT INBOX"))
    assert f"* {COUNT} EXISTS".encode() in reply
    unseen = sum(1 for i in range(COUNT) if i % 3 == 0)
    for r in (a, b):
        assert status(r) == (COUNT, unseen, sum(sizes))
        assert quota(r) == (sum(sizes) + 1023) // 1024
    # The counts go on from there, in the other worker too.
    ok(b.cmd("S SELECT INBOX"))
    ok(b.cmd("ST UID STORE 1:3 +FLAGS.SILENT (\\Seen \\Deleted)"))
    ok(b.cmd("E EXPUNGE"))
    assert status(a) == (COUNT - 3, unseen - 1, sum(sizes) - sum(sizes[:3]))
    a.close()
    b.close()
