"""OBJECTID (RFC 8474) through the real listener: MAILBOXID in SELECT, EXAMINE,
CREATE, STATUS and LIST-STATUS; EMAILID and THREADID in FETCH and SEARCH; ids that
stay with their object and are never given to another one."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

PASSWORD = "oid-password"
OBJECTID = rb"[A-Za-z0-9_-]{1,255}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapoid") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", "oid@example.test", "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN oid@example.test {PASSWORD}")[-1].startswith(b"L OK")
    return r


def append(server: WaypostInstance, mailbox: str, subject: str) -> None:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login("oid@example.test", PASSWORD)
    msg = f"From: a@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    assert c.append(mailbox, "()", None, msg)[0] == "OK"
    c.logout()


def one(pattern: bytes, lines: list[bytes]) -> bytes:
    found = [m.group(1) for line in lines if (m := re.search(pattern, line))]
    assert len(found) == 1, (pattern, lines)
    return found[0]


def test_mailboxid_follows_the_mailbox(server):
    r = login(server)
    assert b"OBJECTID" in r.cmd("C CAPABILITY")[0].split()
    created = r.cmd("A CREATE Projects")
    assert len(created) == 1
    box_id = one(rb"^A OK \[MAILBOXID \((" + OBJECTID + rb")\)\] ", created)
    assert one(rb"\[MAILBOXID \((" + OBJECTID + rb")\)\]", r.cmd("B SELECT Projects")) == box_id
    assert one(rb"\[MAILBOXID \((" + OBJECTID + rb")\)\]", r.cmd("B2 EXAMINE Projects")) == box_id
    assert r.cmd("D STATUS Projects (MESSAGES MAILBOXID)")[0] == \
        b'* STATUS Projects (MESSAGES 0 MAILBOXID (%s))' % box_id
    listed = r.cmd('E LIST "" "Projects" RETURN (STATUS (MAILBOXID))')
    assert b"* STATUS Projects (MAILBOXID (%s))" % box_id in listed
    inbox_id = one(rb"MAILBOXID \((" + OBJECTID + rb")\)", r.cmd("F STATUS INBOX (MAILBOXID)"))
    assert inbox_id != box_id
    # RENAME keeps the id (RFC 8474 §4.1); a mailbox created anew under the old name,
    # or after a DELETE, gets one never used before.
    r.cmd("G UNSELECT")
    assert r.cmd("H RENAME Projects Archive")[-1].startswith(b"H OK")
    assert one(rb"MAILBOXID \((" + OBJECTID + rb")\)", r.cmd("I STATUS Archive (MAILBOXID)")) == box_id
    again = one(rb"\[MAILBOXID \((" + OBJECTID + rb")\)\]", r.cmd("J CREATE Projects"))
    assert again not in (box_id, inbox_id)
    assert r.cmd("K DELETE Archive")[-1].startswith(b"K OK")
    fresh = one(rb"\[MAILBOXID \((" + OBJECTID + rb")\)\]", r.cmd("M CREATE Archive"))
    assert fresh not in (box_id, inbox_id, again)
    r.close()


def test_emailid_and_threadid(server):
    r = login(server)
    r.cmd("A CREATE Mail")
    for s in ("one", "two", "three"):
        append(server, "Mail", s)
    r.cmd("S SELECT Mail")
    lines = r.cmd("F FETCH 1:* (EMAILID THREADID)")
    ids = re.findall(rb"^\* \d+ FETCH \(EMAILID \((" + OBJECTID + rb")\) THREADID NIL\)$",
                     b"\n".join(lines[:-1]), re.M)
    assert len(ids) == 3 and len(set(ids)) == 3
    # The same ids in another session (maybe the other worker), and from UID FETCH
    # with the items a FETCH reads from the file.
    other = login(server)
    other.cmd("S EXAMINE Mail")
    got = other.cmd("G UID FETCH 2 (EMAILID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"EMAILID (%s)" % ids[1] in got[0]
    other.close()
    # SEARCH EMAILID finds that message only; THREADID finds none (all are NIL).
    assert r.cmd(b"H SEARCH EMAILID " + ids[2])[0] == b"* SEARCH 3"
    assert r.cmd(b"I SEARCH OR EMAILID " + ids[0] + b" EMAILID " + ids[1])[0] == b"* SEARCH 1 2"
    assert r.cmd("J SEARCH EMAILID Mnone")[0] == b"* SEARCH"
    assert r.cmd("K SEARCH THREADID T1")[0] == b"* SEARCH"
    assert r.cmd("L SEARCH EMAILID a.b")[-1].startswith(b"L BAD")
    assert r.cmd("L2 SEARCH EMAILID " + "x" * 256)[-1].startswith(b"L2 BAD")
    # A copy is a new file with an id of its own; the original keeps its id.
    assert r.cmd("M COPY 1 Mail")[-1].startswith(b"M OK")
    lines = r.cmd("N FETCH 1:* EMAILID")
    after = re.findall(rb"EMAILID \((" + OBJECTID + rb")\)", b"\n".join(lines))
    assert after[:3] == ids and after[3] not in ids
    # Expunged ids are not given again.
    r.cmd("O STORE 1 +FLAGS.SILENT (\\Deleted)")
    r.cmd("P EXPUNGE")
    append(server, "Mail", "four")
    r.cmd("Q NOOP")
    lines = r.cmd("R FETCH 1:* EMAILID")
    last = re.findall(rb"EMAILID \((" + OBJECTID + rb")\)", b"\n".join(lines))
    assert len(last) == 4 and last[-1] not in ids + after
    r.close()
