"""UIDBATCHES (draft-ietf-mailmaint-imap-uidbatches) through the real listener with two
workers: 1,193 messages with a gap cut into batches of 500 that tile the UID space
down to 1 and hold 500 messages each (counted by UID SEARCH), a range of batches, the
refusals (TOOFEW, CLIENTBUG, TOOMANY at its edge) and "$" left alone."""

from __future__ import annotations

import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

USER = "ub@example.test"
PASSWORD = "uidbatches-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapub") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN {USER} {PASSWORD}")[-1].startswith(b"L OK")
    return r


def ranges(lines: list[bytes], tag: str) -> list[tuple[int, int]]:
    [line] = [x for x in lines if x.startswith(b"* UIDBATCHES ")]
    m = re.fullmatch(rb'\* UIDBATCHES \(TAG "' + tag.encode() + rb'"\)(?: (.*))?', line)
    assert m, line
    return [] if m.group(1) is None else [tuple(int(n) for n in r.split(b":")) for r in m.group(1).split(b",")]


def uid_count(r: Raw, high: int, low: int) -> int:
    got = r.cmd(f"C UID SEARCH RETURN (COUNT) UID {low}:{high}")
    return int(re.search(rb"COUNT (\d+)", got[0]).group(1))


def test_batches_tile_the_uid_space(server):
    r = login(server)
    assert b"UIDBATCHES" in r.cmd("C CAPABILITY")[0].split()
    assert r.cmd("A CREATE Big")[-1].startswith(b"A OK")
    for start in range(0, 1203, 100):  # MULTIAPPEND of 100 with LITERAL+
        parts = []
        for i in range(start, min(start + 100, 1203)):
            msg = b"Subject: m%d\r\n\r\nbody\r\n" % i
            parts.append(b"{%d+}\r\n%s" % (len(msg), msg))
        assert r.cmd(b"P APPEND Big " + b" ".join(parts))[-1].startswith(b"P OK")
    assert r.cmd("S SELECT Big")[-1].startswith(b"S OK")
    assert r.cmd("D UID STORE 10:19 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
    assert r.cmd("X EXPUNGE")[-1].startswith(b"X OK")
    uids = [int(x) for x in r.cmd("U UID SEARCH ALL")[0].split()[2:]]
    assert len(uids) == 1193 and uids[-1] == 1203

    got = ranges(r.cmd("B UIDBATCHES 500"), "B")
    assert len(got) == 3 and got[0][0] == 1203 and got[-1][1] == 1
    for (high, low), (next_high, _) in zip(got, got[1:]):
        assert next_high == low - 1  # no gap, no overlap
    assert [uid_count(r, h, lo) for h, lo in got] == [500, 500, 193]
    assert got[0][1] == uids[-500] and got[1][1] == uids[-1000]

    # Batches 2 to 3 (and past the end: nothing more).
    assert ranges(r.cmd("B2 UIDBATCHES 500 2:5"), "B2") == got[1:]
    assert ranges(r.cmd("B3 UIDBATCHES 500 4:9"), "B3") == []
    assert ranges(r.cmd("B4 UIDBATCHES 600"), "B4") == [(1203, uids[-600]), (uids[-600] - 1, 1)]
    r.close()


def test_refusals_and_saved_result(server):
    r = login(server)
    assert r.cmd("S SELECT Big")[-1].startswith(b"S OK")
    assert r.cmd("a UIDBATCHES 499")[-1].startswith(b"a NO [TOOFEW]")
    assert r.cmd("b UIDBATCHES 500 20:10")[-1].startswith(b"b BAD [CLIENTBUG]")
    assert r.cmd("c UIDBATCHES 500 1:200")[-1].startswith(b"c OK")     # 100,000 messages: the limit
    assert r.cmd("d UIDBATCHES 500 1:201")[-1].startswith(b"d NO [TOOMANY]")
    for bad in ("UIDBATCHES", "UIDBATCHES abc", "UIDBATCHES 500 10", "UIDBATCHES 0", "UIDBATCHES 500 1:"):
        assert r.cmd(f"e {bad}")[-1].startswith(b"e BAD"), bad
    # "$" is the last SEARCH ... SAVE, not what UIDBATCHES found.
    assert r.cmd("f UID SEARCH RETURN (SAVE) UID 1:3")[-1].startswith(b"f OK")
    assert ranges(r.cmd("g UIDBATCHES 500"), "g")
    assert [line for line in r.cmd("h UID FETCH $ (UID)") if line.startswith(b"* ")] == \
        [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)"]
    r.close()
    # Not in the authenticated state.
    r = login(server)
    assert r.cmd("n UIDBATCHES 500")[-1].startswith(b"n BAD")
    r.close()
