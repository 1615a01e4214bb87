"""CONTEXT=SEARCH, CONTEXT=SORT (RFC 5267) and PARTIAL (RFC 9394) through the real
listener (two workers): literal transcripts against ``waypost serve``, messages put
in with APPEND, changes made by this session and by others."""

from __future__ import annotations

import imaplib
import re
import time

import pytest

from support.imap import Raw
from support.server import WaypostInstance

PASSWORD = "ctx-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapctx") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", "ctx@example.test", "--password", PASSWORD)
    inst.ok("account", "add", "reader@example.test", "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def message(subject: str, body: str = "text\r\n") -> bytes:
    return (f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\nFrom: a@example.test\r\nTo: b@example.test\r\n"
            f"Subject: {subject}\r\n\r\n{body}").encode()


def fill(server: WaypostInstance, mailbox: str, count: int, body: str = "text\r\n") -> None:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login("ctx@example.test", PASSWORD)
    c.create(mailbox)
    for i in range(1, count + 1):
        # One minute apart: ARRIVAL (the internal date) is the order of the messages.
        typ, data = c.append(mailbox, "()", f'"01-Jan-2020 00:{i:02d}:00 +0000"',
                             message(f"s{i}", body if i % 2 else "other\r\n"))
        assert typ == "OK", data
    c.logout()


def raw(server: WaypostInstance, mailbox: str) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN ctx@example.test {PASSWORD}")[-1].startswith(b"L OK")
    assert r.cmd(f"S SELECT {mailbox}")[-1].startswith(b"S OK")
    return r


def uids_of(r: Raw) -> list[int]:
    return [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(r.cmd("F FETCH 1:* UID")))]


def test_capabilities(server):
    r = Raw(server.imap_port)
    caps = r.cmd("C CAPABILITY")[0].split()
    for cap in (b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"PARTIAL", b"ESEARCH", b"ESORT"):
        assert cap in caps
    r.close()


def test_update_follows_store_and_expunge(server):
    fill(server, "Ctx1", 6, body="body\r\n")  # 1, 3, 5 have "body" in the body
    r = raw(server, "Ctx1")
    # UPDATE alone: an ESEARCH without data, then the changes.
    assert r.cmd("T1 SEARCH RETURN (UPDATE) BODY body SEEN") == [
        b'* ESEARCH (TAG "T1")', b"T1 OK SEARCH completed"]
    assert r.cmd("A STORE 1,2,5 +FLAGS.SILENT (\\Seen)") == [
        b'* ESEARCH (TAG "T1") ADDTO (0 1,5)', b"A OK STORE completed"]
    assert r.cmd("B STORE 1,2 -FLAGS.SILENT (\\Seen)") == [
        b'* ESEARCH (TAG "T1") REMOVEFROM (0 1)', b"B OK STORE completed"]
    r.cmd("C STORE 3:6 +FLAGS.SILENT (\\Deleted)")
    # The REMOVEFROM names 5 before the EXPUNGEs renumber it.
    assert r.cmd("D EXPUNGE") == [
        b'* ESEARCH (TAG "T1") REMOVEFROM (0 5)', b"* 6 EXPUNGE", b"* 5 EXPUNGE", b"* 4 EXPUNGE",
        b"* 3 EXPUNGE", b"* 2 RECENT", b"D OK EXPUNGE completed"]  # they were \\Recent here
    assert r.cmd('E CANCELUPDATE "T1"') == [b"E OK CANCELUPDATE completed"]
    assert r.cmd("F STORE 1 +FLAGS.SILENT (\\Seen)") == [b"F OK STORE completed"]
    # A tag that is not (or no longer) updated.
    assert r.cmd('G CANCELUPDATE "T1"')[-1].startswith(b"G BAD")
    assert r.cmd("H CANCELUPDATE")[-1].startswith(b"H BAD")
    r.close()


def test_update_with_all_and_uids(server):
    fill(server, "Ctx2", 6)
    r = raw(server, "Ctx2")
    r.cmd("A STORE 1 +FLAGS.SILENT (\\Deleted)")
    r.cmd("B EXPUNGE")
    u = uids_of(r)
    r.cmd("C STORE 1,2 +FLAGS.SILENT (\\Seen)")
    assert r.cmd("T2 SEARCH RETURN (UPDATE ALL) OR SEEN SUBJECT s3")[0] == b'* ESEARCH (TAG "T2") ALL 1:2'
    assert r.cmd("T3 UID SEARCH RETURN (UPDATE ALL) OR SEEN SUBJECT s3")[0] == \
        b'* ESEARCH (TAG "T3") UID ALL %d:%d' % (u[0], u[1])
    out = r.cmd("D STORE 3:5 +FLAGS.SILENT (\\Seen)")
    assert b'* ESEARCH (TAG "T2") ADDTO (0 3:5)' in out
    assert b'* ESEARCH (TAG "T3") UID ADDTO (0 %d:%d)' % (u[2], u[4]) in out
    out = r.cmd("E STORE 1:5 -FLAGS.SILENT (\\Seen)")
    # s3 (message 2) still matches.
    assert b'* ESEARCH (TAG "T2") REMOVEFROM (0 1,3:5)' in out
    assert b'* ESEARCH (TAG "T3") UID REMOVEFROM (0 %d,%d:%d)' % (u[0], u[2], u[4]) in out
    r.cmd("F STORE 2 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd("G EXPUNGE")
    assert out.index(b'* ESEARCH (TAG "T2") REMOVEFROM (0 2)') < out.index(b"* 2 EXPUNGE")
    assert b'* ESEARCH (TAG "T3") UID REMOVEFROM (0 %d)' % u[1] in out
    r.close()


def test_updates_from_another_session_and_idle(server):
    fill(server, "Ctx3", 6)
    r = raw(server, "Ctx3")
    assert r.cmd("T4 SEARCH RETURN (UPDATE COUNT) FLAGGED")[0] == b'* ESEARCH (TAG "T4") COUNT 0'
    other = raw(server, "Ctx3")
    other.cmd("A STORE 2 +FLAGS.SILENT (\\Flagged)")
    # The next command of the first session tells it (whichever worker the other is in).
    out = r.cmd("N NOOP")
    assert b'* ESEARCH (TAG "T4") ADDTO (0 2)' in out
    other.close()
    r.send(b"I IDLE\r\n")
    assert r.line().startswith(b"+ ")

    def wait_for(what: bytes) -> list[bytes]:
        seen: list[bytes] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and what not in seen:
            seen.append(r.line())
        assert what in seen, seen
        return seen

    # In IDLE, changes made by four other connections (with two workers, most likely
    # some in the other worker): the change channel wakes the session each time.
    for n in (3, 4, 5, 6):
        changer = raw(server, "Ctx3")
        changer.cmd(f"B STORE {n} +FLAGS.SILENT (\\Flagged)")
        changer.close()
        wait_for(b'* ESEARCH (TAG "T4") ADDTO (0 %d)' % n)
    changer = raw(server, "Ctx3")
    changer.cmd("C STORE 2:3 -FLAGS.SILENT (\\Flagged)")
    changer.close()
    wait_for(b'* ESEARCH (TAG "T4") REMOVEFROM (0 2:3)')
    # An APPEND elsewhere: EXISTS first, then the ADDTO naming the new message.
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login("ctx@example.test", PASSWORD)
    assert c.append("Ctx3", "(\\Flagged)", None, message("late"))[0] == "OK"
    c.logout()
    seen = wait_for(b'* ESEARCH (TAG "T4") ADDTO (0 7)')
    assert seen.index(b"* 7 EXISTS") < seen.index(b'* ESEARCH (TAG "T4") ADDTO (0 7)')
    r.send(b"DONE\r\n")
    assert r.line().startswith(b"I OK")
    # An expunge elsewhere: REMOVEFROM before the EXPUNGE, both at the next command.
    changer = raw(server, "Ctx3")
    changer.cmd("D STORE 4 +FLAGS.SILENT (\\Deleted)")
    changer.cmd("E EXPUNGE")
    changer.close()
    out = r.cmd("F NOOP")
    assert out.index(b'* ESEARCH (TAG "T4") REMOVEFROM (0 4)') < out.index(b"* 4 EXPUNGE")
    r.close()


def test_sort_context_positions(server):
    fill(server, "Ctx4", 5)
    r = raw(server, "Ctx4")
    assert r.cmd("S1 SORT RETURN (UPDATE ALL) (REVERSE ARRIVAL) US-ASCII UNSEEN")[0] == \
        b'* ESEARCH (TAG "S1") ALL 5,4,3,2,1'
    # 4 and 2 leave (places 2 and 4: the later one first), then come back.
    assert r.cmd("A STORE 2,4 +FLAGS.SILENT (\\Seen)")[0] == \
        b'* ESEARCH (TAG "S1") REMOVEFROM (4 2) REMOVEFROM (2 4)'
    assert r.cmd("B STORE 2,4 -FLAGS.SILENT (\\Seen)")[0] == \
        b'* ESEARCH (TAG "S1") ADDTO (2 4) ADDTO (4 2)'
    assert r.cmd("C STORE 3:4 +FLAGS.SILENT (\\Seen)")[0] == b'* ESEARCH (TAG "S1") REMOVEFROM (2 4,3)'
    r.close()


def test_message_numbers_in_criteria_are_frozen(server):
    fill(server, "Ctx7", 4)
    r = raw(server, "Ctx7")
    # "2:3" names messages 2 and 3 as they are now (RFC 5267 §4.3), whatever the
    # expunge of message 1 does to their numbers.
    assert r.cmd("T7 SEARCH RETURN (UPDATE ALL) 2:3 UNSEEN")[0] == b'* ESEARCH (TAG "T7") ALL 2:3'
    r.cmd("A STORE 1 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd("B EXPUNGE")
    assert out == [b"* 1 EXPUNGE", b"* 3 RECENT", b"B OK EXPUNGE completed"]  # it was \\Recent here
    # Old 2 and 3 are now 1 and 2; old 4 (now 3) still does not match.
    assert r.cmd("C STORE 3 +FLAGS.SILENT (\\Flagged)") == [b"C OK STORE completed"]
    assert r.cmd("D STORE 1 +FLAGS.SILENT (\\Seen)") == [b'* ESEARCH (TAG "T7") REMOVEFROM (0 1)',
                                                         b"D OK STORE completed"]
    r.close()


def test_partial_search_and_sort(server):
    fill(server, "Ctx5", 5)
    r = raw(server, "Ctx5")
    assert r.cmd("P1 SEARCH RETURN (PARTIAL 1:1) ALL")[0] == b'* ESEARCH (TAG "P1") PARTIAL (1:1 1)'
    assert r.cmd("P2 SEARCH RETURN (PARTIAL 2:4) ALL")[0] == b'* ESEARCH (TAG "P2") PARTIAL (2:4 2:4)'
    assert r.cmd("P3 SEARCH RETURN (PARTIAL 4:2) ALL")[0] == b'* ESEARCH (TAG "P3") PARTIAL (2:4 2:4)'
    assert r.cmd("P4 SEARCH RETURN (PARTIAL 1:6) ALL")[0] == b'* ESEARCH (TAG "P4") PARTIAL (1:6 1:5)'
    assert r.cmd("P5 SEARCH RETURN (PARTIAL -1:-2) ALL")[0] == b'* ESEARCH (TAG "P5") PARTIAL (-1:-2 4:5)'
    assert r.cmd("P6 SEARCH RETURN (PARTIAL 7:9) ALL")[0] == b'* ESEARCH (TAG "P6") PARTIAL (7:9 NIL)'
    assert r.cmd("P7 SEARCH RETURN (COUNT PARTIAL 1:2) SUBJECT s")[0] == \
        b'* ESEARCH (TAG "P7") COUNT 5 PARTIAL (1:2 1:2)'
    u = uids_of(r)
    assert r.cmd("P8 UID SEARCH RETURN (PARTIAL -1:-1) ALL")[0] == \
        b'* ESEARCH (TAG "P8") UID PARTIAL (-1:-1 %d)' % u[4]
    # SORT, RETURN before the criteria (RFC 5267) or after the charset (Dovecot's place).
    assert r.cmd("P9 SORT RETURN (PARTIAL 2:4) (REVERSE ARRIVAL) US-ASCII ALL")[0] == \
        b'* ESEARCH (TAG "P9") PARTIAL (2:4 4,3,2)'
    assert r.cmd("PA SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 2:4) ALL")[0] == \
        b'* ESEARCH (TAG "PA") PARTIAL (2:4 2:4)'
    # SAVE with PARTIAL keeps the page.
    assert r.cmd("PB SEARCH RETURN (SAVE PARTIAL 2:3) ALL") == [b'* ESEARCH (TAG "PB") PARTIAL (2:3 2:3)',
                                                                b"PB OK SEARCH completed"]
    assert r.cmd("PC SEARCH $")[0] == b"* SEARCH 2 3"
    for bad in ("PARTIAL 1", "PARTIAL 1:*", "PARTIAL *:1", "PARTIAL 0:3", "PARTIAL -1:3", "PARTIAL 1:2 ALL",
                "PARTIAL 1:2 PARTIAL 3:4"):
        assert r.cmd(f"X SEARCH RETURN ({bad}) ALL")[-1].startswith(b"X BAD"), bad
        assert r.cmd(f"Y SORT (ARRIVAL) US-ASCII RETURN ({bad}) ALL")[-1].startswith(b"Y BAD"), bad
    assert r.cmd("Z NOOP")[-1].startswith(b"Z OK")
    # RFC 9394 §3.2: UID FETCH (PARTIAL): a page of the messages the UID set names.
    assert r.cmd("F1 UID FETCH 1:* (UID) (PARTIAL -1:-2)") == [
        b"* 4 FETCH (UID %d)" % u[3], b"* 5 FETCH (UID %d)" % u[4], b"F1 OK UID FETCH completed"]
    assert r.cmd("F2 UID FETCH %d:* (UID) (PARTIAL 1:1)" % u[1]) == [
        b"* 2 FETCH (UID %d)" % u[1], b"F2 OK UID FETCH completed"]
    assert r.cmd("F3 UID FETCH 1:* (UID) (PARTIAL 9:10)") == [b"F3 OK UID FETCH completed"]
    assert r.cmd("F4 FETCH 1:* (FLAGS) (PARTIAL 1:2)")[-1].startswith(b"F4 BAD")
    r.close()


def test_too_many_contexts(server):
    fill(server, "Ctx6", 1)
    r = raw(server, "Ctx6")
    from waypost.imap.search_context import MAX_CONTEXTS
    for i in range(MAX_CONTEXTS):
        assert r.cmd(f"K{i} SEARCH RETURN (UPDATE) SEEN") == [b'* ESEARCH (TAG "K%d")' % i,
                                                               b"K%d OK SEARCH completed" % i]
    # The tag of an updated search again: BAD, and nothing run (RFC 5267 §4.3); one
    # more context is refused (NOUPDATE, §4.3.1) and the search answered all the same.
    assert r.cmd("K0 SEARCH RETURN (UPDATE ALL) SEEN") == [b"K0 BAD Tag reuse: a search with this tag is being updated"]
    assert r.cmd("K0 SORT RETURN (UPDATE) (ARRIVAL) UTF-8 SEEN")[-1].startswith(b"K0 BAD")
    assert r.cmd("K0 SEARCH RETURN (ALL) SEEN")[-1].startswith(b"K0 OK")  # without UPDATE: fine
    out = r.cmd("KX SEARCH RETURN (UPDATE) SEEN")
    assert out[1].startswith(b'* NO [NOUPDATE "KX"]') and out[-1].startswith(b"KX OK")
    out = r.cmd("A STORE 1 +FLAGS.SILENT (\\Seen)")
    assert len([line for line in out if line.startswith(b"* ESEARCH")]) == MAX_CONTEXTS
    # Closing the mailbox ends every context.
    assert r.cmd("C UNSELECT")[-1].startswith(b"C OK")
    assert r.cmd("S SELECT Ctx6")[-1].startswith(b"S OK")
    assert not [line for line in r.cmd("B STORE 1 -FLAGS.SILENT (\\Seen)") if b"ESEARCH" in line]
    assert r.cmd('D CANCELUPDATE "K1"')[-1].startswith(b"D BAD")
    r.close()


def test_private_seen_in_another_accounts_mailbox(server):
    """In another account's mailbox \\Seen is the reader's own (RFC 4314 §5.1.2) and
    raises no mod-sequence: a context of the reader still follows it."""
    fill(server, "Shared", 3)
    owner = raw(server, "Shared")
    assert owner.cmd("A SETACL Shared reader@example.test lrs")[-1].startswith(b"A OK")
    owner.close()
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN reader@example.test {PASSWORD}")[-1].startswith(b"L OK")
    assert r.cmd("S SELECT ~ctx/Shared")[-1].startswith(b"S OK")
    assert r.cmd("T8 SEARCH RETURN (UPDATE ALL) UNSEEN")[0] == b'* ESEARCH (TAG "T8") ALL 1:3'
    assert r.cmd("B STORE 2 +FLAGS.SILENT (\\Seen)") == [b'* ESEARCH (TAG "T8") REMOVEFROM (0 2)',
                                                         b"B OK STORE completed"]
    assert r.cmd("C STORE 2 -FLAGS.SILENT (\\Seen)") == [b'* ESEARCH (TAG "T8") ADDTO (0 2)',
                                                         b"C OK STORE completed"]
    r.close()
