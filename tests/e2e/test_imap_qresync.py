"""QRESYNC (RFC 7162 §3.2) through the real listener with two workers: ENABLE QRESYNC,
SELECT/EXAMINE (QRESYNC ...) after changes made by other connections (which may be
served by the other worker), UID FETCH (CHANGEDSINCE n VANISHED), VANISHED instead of
EXPUNGE, [CLOSED] and [HIGHESTMODSEQ] on EXPUNGE; imaplib resynchronising as a client
does, and the refusals (tagged BAD) the RFC asks for."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

USER = "qr@example.test"
PASSWORD = "qresync-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapqr") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance, qresync: bool = True) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN {USER} {PASSWORD}")[-1].startswith(b"L OK")
    if qresync:
        assert r.cmd("E ENABLE QRESYNC") == [b"* ENABLED QRESYNC", b"E OK ENABLE completed"]
    return r


def fill(server: WaypostInstance, mailbox: str, count: int) -> None:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    c.create(mailbox)
    for i in range(count):
        msg = f"From: a@example.test\r\nSubject: m{i + 1}\r\n\r\nbody {i + 1}\r\n".encode()
        assert c.append(mailbox, "()", None, msg)[0] == "OK"
    c.logout()


def code(name: bytes, lines: list[bytes]) -> int:
    found = [int(m.group(1)) for line in lines if (m := re.search(rb"\[" + name + rb" (\d+)\]", line))]
    assert len(found) == 1, (name, lines)
    return found[0]


def change_elsewhere(server: WaypostInstance, mailbox: str) -> None:
    """Another client (maybe in the other worker): \\Seen on UID 3, UIDs 5 and 6 expunged."""
    for _ in range(4):  # several connections, so that both workers serve some
        other = login(server, qresync=False)
        other.cmd("N NOOP")
        other.close()
    other = login(server, qresync=False)
    assert other.cmd(f"S SELECT {mailbox}")[-1].startswith(b"S OK")
    assert other.cmd("F UID STORE 3 +FLAGS.SILENT (\\Seen)")[-1].startswith(b"F OK")
    assert other.cmd("D UID STORE 5:6 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
    expunged = other.cmd("X EXPUNGE")
    assert expunged[:2] == [b"* 6 EXPUNGE", b"* 5 EXPUNGE"] and expunged[-1].startswith(b"X OK")
    assert other.cmd("O LOGOUT")[-1].startswith(b"O OK")
    other.close()


def test_capability_and_refusals(server):
    r = login(server, qresync=False)
    assert b"QRESYNC" in r.cmd("C CAPABILITY")[0].split()
    fill(server, "Refusals", 2)
    # RFC 7162 §3.2.5: QRESYNC before ENABLE QRESYNC is BAD, and selects nothing.
    assert r.cmd("A SELECT Refusals (QRESYNC (1 1))")[-1].startswith(b"A BAD")
    assert r.cmd("B FETCH 1 FLAGS")[-1].startswith(b"B BAD")  # still not selected
    assert r.cmd("S SELECT Refusals")[-1].startswith(b"S OK")
    # §3.2.6: VANISHED needs ENABLE QRESYNC, UID FETCH and CHANGEDSINCE.
    assert r.cmd("V UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"V BAD")
    r.close()
    r = login(server)
    assert r.cmd("S SELECT Refusals")[-1].startswith(b"S OK")
    assert r.cmd("V1 UID FETCH 1:* FLAGS (VANISHED)")[-1].startswith(b"V1 BAD")
    assert r.cmd("V2 FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"V2 BAD")
    assert r.cmd("Q1 SELECT Refusals (QRESYNC (1 1 1:*))")[-1].startswith(b"Q1 BAD")  # no "*"
    assert r.cmd("Q2 SELECT Refusals (QRESYNC (0 1))")[-1].startswith(b"Q2 BAD")
    assert r.cmd("Q3 SELECT Refusals (QRESYNC (1 0))")[-1].startswith(b"Q3 BAD")
    # ENABLE QRESYNC also enables CONDSTORE: FETCH answers carry MODSEQ.
    assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \([^)]*\\Flagged[^)]*\) MODSEQ \(\d+\)\)",
                    r.cmd("U UID STORE 1 +FLAGS (\\Flagged)")[0])
    r.close()


def test_select_qresync_after_changes_elsewhere(server):
    fill(server, "Sync", 10)
    r = login(server)
    selected = r.cmd("A SELECT Sync")
    assert not any(b"[CLOSED]" in line for line in selected)  # nothing was selected before
    uidvalidity = code(b"UIDVALIDITY", selected)
    before = code(b"HIGHESTMODSEQ", selected)
    r.close()

    change_elsewhere(server, "Sync")

    r = login(server)
    got = r.cmd(f"B SELECT Sync (QRESYNC ({uidvalidity} {before} 1:10))")
    assert b"* 8 EXISTS" in got
    assert b"* VANISHED (EARLIER) 5:6" in got
    fetches = [line for line in got if b" FETCH " in line]
    assert len(fetches) == 1 and re.fullmatch(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Seen( \\Recent)?\) MODSEQ \((\d+)\)\)",
                                              fetches[0])
    now = code(b"HIGHESTMODSEQ", got)
    assert now > before
    # VANISHED comes before the FETCHes, both after the usual responses (§3.2.5.1).
    assert got.index(b"* VANISHED (EARLIER) 5:6") < got.index(fetches[0])
    assert got.index(b"* 8 EXISTS") < got.index(b"* VANISHED (EARLIER) 5:6")
    assert got[-1].startswith(b"B OK [READ-WRITE]")

    # Again, from the mod-sequence just learnt: nothing to tell; [CLOSED] first.
    again = r.cmd(f"C EXAMINE Sync (QRESYNC ({uidvalidity} {now}))")
    assert again[0] == b"* OK [CLOSED] Previous mailbox closed"
    assert not any(b"VANISHED" in line or b" FETCH " in line for line in again)
    assert again[-1].startswith(b"C OK [READ-ONLY]")

    # Known UIDs limit both answers (§3.2.5): 1:4 knows nothing of 5 and 6.
    limited = r.cmd(f"D SELECT Sync (QRESYNC ({uidvalidity} {before} 1:4))")
    assert not any(b"VANISHED" in line for line in limited)
    assert [line for line in limited if b" FETCH " in line] == fetches
    # With seq-match-data as well (RFC 7162 §3.2.5.2's form).
    matched = r.cmd(f"D2 SELECT Sync (QRESYNC ({uidvalidity} {before} 1:10 (1:3 1:3)))")
    assert b"* VANISHED (EARLIER) 5:6" in matched and matched[-1].startswith(b"D2 OK")

    # Another UIDVALIDITY: a plain SELECT, the client must forget what it knew.
    plain = r.cmd(f"E SELECT Sync (QRESYNC ({uidvalidity + 1} {before} 1:10))")
    assert not any(b"VANISHED" in line or b" FETCH " in line for line in plain)
    assert plain[-1].startswith(b"E OK")

    # UID FETCH (CHANGEDSINCE n VANISHED): the expunged UIDs of the set, then the FETCHes.
    fetched = r.cmd(f"F UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before} VANISHED)")
    assert fetched[0] == b"* VANISHED (EARLIER) 5:6"
    assert len(fetched) == 3 and b"UID 3 " in fetched[1] and fetched[2].startswith(b"F OK")
    assert r.cmd(f"G UID FETCH 7:* (FLAGS) (CHANGEDSINCE {before} VANISHED)") == [b"G OK UID FETCH completed"]
    # The highest UID expunged: "*" in the set still names it.
    assert r.cmd("H UID STORE 10 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"H OK")
    assert r.cmd("I UID EXPUNGE 10")[0] == b"* VANISHED 10"
    assert r.cmd(f"J UID FETCH 9:* (FLAGS) (CHANGEDSINCE {now} VANISHED)")[0] == b"* VANISHED (EARLIER) 10"
    r.close()


def test_vanished_replaces_expunge(server):
    fill(server, "Live", 6)
    r = login(server)
    selected = r.cmd("A SELECT Live")
    assert b"* 6 EXISTS" in selected
    other = login(server, qresync=False)
    assert other.cmd("S SELECT Live")[-1].startswith(b"S OK")
    assert other.cmd("D UID STORE 2,4 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
    assert other.cmd("X EXPUNGE")[:2] == [b"* 4 EXPUNGE", b"* 2 EXPUNGE"]
    # RFC 7162 §3.2.10: after ENABLE QRESYNC, VANISHED (UIDs) and never EXPUNGE.
    seen = r.cmd("N NOOP")
    assert b"* VANISHED 2,4" in seen and not any(b"EXPUNGE" in line for line in seen)
    # Not during FETCH (RFC 3501 §7.4.1 holds for VANISHED too).
    assert other.cmd("D2 UID STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D2 OK")
    assert other.cmd("X2 EXPUNGE")[0] == b"* 1 EXPUNGE"
    during = r.cmd("F FETCH 1:* (UID)")
    assert not any(b"VANISHED" in line for line in during)
    # Its own EXPUNGE: VANISHED for all (the pending one too), [HIGHESTMODSEQ] in the OK.
    # (UID STORE may tell of the pending one: a UID command, RFC 3501 §7.4.1.)
    stored = r.cmd("S UID STORE 6 +FLAGS.SILENT (\\Deleted)")
    assert stored[-1].startswith(b"S OK")
    done = r.cmd("X EXPUNGE")
    vanished = [line for line in stored + done if line.startswith(b"* VANISHED")]
    assert vanished in ([b"* VANISHED 1", b"* VANISHED 6"], [b"* VANISHED 1,6"])
    assert re.fullmatch(rb"X OK \[HIGHESTMODSEQ \d+\] EXPUNGE completed", done[-1])
    state = r.cmd("T UID FETCH 1:* (UID)")
    assert [re.search(rb"UID (\d+)", line).group(1) for line in state[:-1]] == [b"3", b"5"]
    # MOVE too answers with VANISHED.
    assert r.cmd("C CREATE LiveMoved")[-1].startswith(b"C OK")
    moved = r.cmd("M UID MOVE 3 LiveMoved")
    assert moved[0].startswith(b"* OK [COPYUID ") and moved[1] == b"* VANISHED 3"
    other.close()
    r.close()


def test_imaplib_resynchronises(server):
    """What a client does: remember UIDVALIDITY and HIGHESTMODSEQ, come back later,
    SELECT with QRESYNC and apply VANISHED and FETCH to its copy."""
    fill(server, "Cache", 8)
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    assert c.enable("QRESYNC")[0] == "OK"
    assert c.select("Cache")[0] == "OK"
    uidvalidity = int(c.response("UIDVALIDITY")[1][0])
    modseq = int(c.response("HIGHESTMODSEQ")[1][0])
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    cache = {int(re.search(rb"UID (\d+)", d).group(1)): d for d in data}
    assert sorted(cache) == list(range(1, 9))
    c.logout()

    change_elsewhere(server, "Cache")

    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    assert c.enable("QRESYNC")[0] == "OK"
    known = ",".join(str(u) for u in sorted(cache))
    typ, _ = c.select(f"Cache (QRESYNC ({uidvalidity} {modseq} {known}))")
    assert typ == "OK"
    _, vanished = c.response("VANISHED")
    assert vanished == [b"(EARLIER) 5:6"]
    _, fetched = c.response("FETCH")
    assert len(fetched) == 1 and b"UID 3 " in fetched[0] and b"\\Seen" in fetched[0]
    for d in vanished:
        for part in d.split()[-1].split(b","):
            lo, _, hi = part.partition(b":")
            for u in range(int(lo), int(hi or lo) + 1):
                cache.pop(u, None)
    assert sorted(cache) == [1, 2, 3, 4, 7, 8]
    # The client's copy now matches the server.
    typ, data = c.uid("SEARCH", "ALL")
    assert [int(x) for x in data[0].split()] == sorted(cache)
    c.logout()


def test_vanished_during_idle_from_another_connection(server):
    fill(server, "Idle", 3)
    r = login(server)
    assert r.cmd("S SELECT Idle")[-1].startswith(b"S OK")
    r.send(b"I IDLE\r\n")
    assert r.line().startswith(b"+ ")
    other = login(server, qresync=False)  # maybe in the other worker
    assert other.cmd("S SELECT Idle")[-1].startswith(b"S OK")
    assert other.cmd("D UID STORE 2 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
    assert other.cmd("X EXPUNGE")[0] == b"* 2 EXPUNGE"
    heard = r.line()
    while heard.startswith(b"* ") and b"VANISHED" not in heard:  # a FETCH of the \Deleted flag first
        heard = r.line()
    assert heard == b"* VANISHED 2"
    r.send(b"DONE\r\n")
    done = r.line()
    while done.startswith(b"* "):  # a new RECENT count may follow
        done = r.line()
    assert done.startswith(b"I OK")
    other.close()
    r.close()


def test_held_expunge_keeps_highestmodseq_below_it(server):
    """RFC 7162 §3.2: while a VANISHED waits (no expunge during FETCH), the MODSEQs sent
    come with a [HIGHESTMODSEQ] below the expunge's mod-sequence."""
    fill(server, "Held", 4)
    r = login(server)
    assert r.cmd("S SELECT Held")[-1].startswith(b"S OK")
    other = login(server, qresync=False)
    assert other.cmd("S SELECT Held")[-1].startswith(b"S OK")
    assert other.cmd("D UID STORE 1 +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"D OK")
    before = int(re.search(rb"HIGHESTMODSEQ (\d+)", other.cmd("T STATUS Held (HIGHESTMODSEQ)")[0]).group(1))
    assert other.cmd("X EXPUNGE")[0] == b"* 1 EXPUNGE"          # its mod-sequence: before + 1
    assert other.cmd("F UID STORE 3 +FLAGS.SILENT (\\Flagged)")[-1].startswith(b"F OK")  # later still
    during = r.cmd("F FETCH 1:* (UID)")
    assert not any(b"VANISHED" in line for line in during)
    assert any(re.fullmatch(rb"\* 3 FETCH \(UID 3 FLAGS \([^)]*\\Flagged[^)]*\) MODSEQ \(\d+\)\)", line)
               for line in during), during
    held = [int(m.group(1)) for line in during if (m := re.search(rb"^\* OK \[HIGHESTMODSEQ (\d+)\]", line))]
    assert held and all(h <= before for h in held), (held, before)
    told = r.cmd("N NOOP")
    assert b"* VANISHED 1" in told and not any(b"HIGHESTMODSEQ" in line for line in told)
    other.close()
    r.close()
