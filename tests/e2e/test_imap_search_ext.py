"""ESEARCH, SEARCHRES, SORT, ESORT and THREAD through the real listener: imaplib
and literal transcripts against ``waypost serve``, messages put in with APPEND."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

PASSWORD = "ext-password"


@pytest.fixture(scope="module")
def ext_server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapext") / "data", imap={"plaintext_without_tls": True})
    for who in ("esearch", "sort", "thread"):
        inst.ok("account", "add", f"{who}@example.test", "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance, who: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(f"{who}@example.test", PASSWORD)
    return c


def raw(server: WaypostInstance, who: str, mailbox: str = "INBOX") -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN {who}@example.test {PASSWORD}")[-1].startswith(b"L OK")
    assert r.cmd(f"S SELECT {mailbox}")[-1].startswith(b"S OK")
    return r


def message(subject: str, date: str = "Mon, 7 Feb 1994 21:52:25 -0800", frm: str = "a@example.test",
            to: str = "b@example.test", cc: str | None = None, extra: str = "", body: str = "text\r\n") -> bytes:
    head = f"Date: {date}\r\nFrom: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if cc:
        head += f"Cc: {cc}\r\n"
    return (head + extra + "\r\n" + body).encode()


def append(c: imaplib.IMAP4, mailbox: str, msg: bytes, flags: str = "()",
           when: str = '"01-Jan-2020 00:00:00 +0000"') -> None:
    typ, data = c.append(mailbox, flags, when, msg)
    assert typ == "OK", data


def untagged(c: imaplib.IMAP4, name: str) -> list[bytes]:
    typ, data = c._untagged_response("OK", [None], name)  # type: ignore[attr-defined]
    return [d for d in data if d is not None]


def test_capabilities_are_advertised(ext_server):
    c = login(ext_server, "esearch")
    caps = c.capability()[1][0].split()
    for cap in (b"ESEARCH", b"SEARCHRES"):
        assert cap in caps
    c.logout()


# -- ESEARCH and SEARCHRES -------------------------------------------------------------


@pytest.fixture(scope="module")
def esearch_box(ext_server):
    """Six messages: 2 and 4 \\Flagged, 2 from Smith."""
    c = login(ext_server, "esearch")
    c.create("ES")
    for i in range(1, 7):
        frm = "Smith <smith@example.test>" if i == 2 else f"user{i}@example.test"
        append(c, "ES", message(f"message {i}", frm=frm), "(\\Flagged)" if i in (2, 4, 5) else "()")
    c.logout()
    return "ES"


def test_esearch_rfc4731_examples(ext_server, esearch_box):
    r = raw(ext_server, "esearch", esearch_box)
    # RFC 4731 §3.1, with this mailbox's answers: flagged 2, 4, 5; 2 is from Smith.
    assert r.cmd('A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == [
        b'* ESEARCH (TAG "A282") MIN 4 COUNT 2', b"A282 OK SEARCH completed"]
    assert r.cmd('A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"')[0] == \
        b'* ESEARCH (TAG "A283") ALL 4:5'
    assert r.cmd("A284 SEARCH RETURN (MIN MAX ALL COUNT) ALL")[0] == \
        b'* ESEARCH (TAG "A284") MIN 1 MAX 6 ALL 1:6 COUNT 6'
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(r.cmd("F FETCH 1:* UID")))]
    assert r.cmd("A285 UID SEARCH RETURN (MIN MAX) 1:5000")[0] == \
        b'* ESEARCH (TAG "A285") UID MIN %d MAX %d' % (uids[0], uids[5])
    # Nothing found: no MIN, MAX, ALL; COUNT 0.
    assert r.cmd("A286 SEARCH RETURN (MIN MAX ALL COUNT) SUBJECT nowhere")[0] == \
        b'* ESEARCH (TAG "A286") COUNT 0'
    assert r.cmd("A287 UID SEARCH RETURN () SUBJECT nowhere")[0] == b'* ESEARCH (TAG "A287") UID'
    # Without RETURN the answer stays a SEARCH response.
    assert r.cmd("A288 SEARCH FLAGGED")[0] == b"* SEARCH 2 4 5"
    assert r.cmd("A289 SEARCH RETURN (MIN BOGUS) ALL")[0].startswith(b"A289 BAD")
    r.close()


def test_searchres_rfc5182(ext_server, esearch_box):
    r = raw(ext_server, "esearch", esearch_box)
    # Nothing saved yet: "$" names no message.
    assert r.cmd("A1 FETCH $ FLAGS") == [b"A1 OK FETCH completed"]
    # SAVE alone: no ESEARCH response; "$" then serves later commands.
    assert r.cmd("A282 SEARCH RETURN (SAVE) FLAGGED NOT FROM Smith") == [b"A282 OK SEARCH completed"]
    lines = r.cmd("A283 FETCH $ (FLAGS)")
    assert [l.split(b" FETCH")[0] for l in lines[:-1]] == [b"* 4", b"* 5"]
    assert r.cmd("A284 SEARCH $ SUBJECT \"message 5\"")[0] == b"* SEARCH 5"
    assert r.cmd("A285 SEARCH OR $ 1 RETURN")[-1].startswith(b"A285 BAD")
    assert r.cmd("A286 SEARCH OR $ 1")[0] == b"* SEARCH 1 4 5"
    # SAVE with MIN: only the smallest is saved (RFC 5182 §2.4).
    assert r.cmd("A287 SEARCH RETURN (SAVE MIN) FLAGGED")[0] == b'* ESEARCH (TAG "A287") MIN 2'
    assert r.cmd("A288 SEARCH $")[0] == b"* SEARCH 2"
    assert r.cmd("A289 SEARCH RETURN (SAVE MIN MAX) FLAGGED")[0] == b'* ESEARCH (TAG "A289") MIN 2 MAX 5'
    assert r.cmd("A290 SEARCH $")[0] == b"* SEARCH 2 5"
    # With ALL or COUNT everything found is saved.
    assert r.cmd("A291 SEARCH RETURN (SAVE COUNT MIN) FLAGGED")[0] == b'* ESEARCH (TAG "A291") MIN 2 COUNT 3'
    assert r.cmd("A292 SEARCH $")[0] == b"* SEARCH 2 4 5"
    # UID commands read "$" as UIDs; STORE and COPY take it too.
    assert r.cmd("A293 UID STORE $ +FLAGS.SILENT (\\Seen)")[-1].startswith(b"A293 OK")
    assert r.cmd("A294 SEARCH SEEN")[0] == b"* SEARCH 2 4 5"
    assert r.cmd("A295 UID COPY $ INBOX")[-1].startswith(b"A295 OK")
    # A SAVE that finds nothing saves the empty set.
    assert r.cmd("A296 SEARCH RETURN (SAVE) SUBJECT nowhere") == [b"A296 OK SEARCH completed"]
    assert r.cmd("A297 SEARCH $")[0] == b"* SEARCH"
    # The saved result goes with the mailbox: a new SELECT starts empty.
    r.cmd("A298 SEARCH RETURN (SAVE) ALL")
    assert r.cmd(f"A299 SELECT {esearch_box}")[-1].startswith(b"A299 OK")
    assert r.cmd("A300 SEARCH $")[0] == b"* SEARCH"
    r.close()


def test_searchres_after_expunge(ext_server):
    c = login(ext_server, "esearch")
    c.create("ES2")
    for i in range(1, 5):
        append(c, "ES2", message(f"expunge {i}"))
    c.logout()
    r = raw(ext_server, "esearch", "ES2")
    r.cmd("A1 SEARCH RETURN (SAVE) 2:4")
    r.cmd("A2 STORE 3 +FLAGS.SILENT (\\Deleted)")
    assert r.cmd("A3 EXPUNGE")[0] == b"* 3 EXPUNGE"
    # The expunged message has left "$"; the others are renumbered.
    assert r.cmd("A4 SEARCH $")[0] == b"* SEARCH 2 3"
    r.close()


def test_esearch_with_imaplib(ext_server, esearch_box):
    c = login(ext_server, "esearch")
    c.select(esearch_box)
    typ, data = c._simple_command("SEARCH", "RETURN", "(COUNT)", "FLAGGED")  # type: ignore[attr-defined]
    assert typ == "OK"
    assert untagged(c, "ESEARCH")[0].endswith(b"COUNT 3")
    c.logout()
