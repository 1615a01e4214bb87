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


# -- SORT, SORT=DISPLAY, ESORT ------------------------------------------------------------


def _sort(r: Raw, command: str) -> bytes:
    lines = r.cmd(command)
    assert lines[-1].split(b" ")[1] == b"OK", lines
    return lines[0]


@pytest.fixture(scope="module")
def sort_boxes(ext_server):
    """Mailboxes shaped like Dovecot imaptest's sort-* groups."""
    c = login(ext_server, "sort")
    # Sizes: bodies of 1, 2, 3... octets (imaptest sort-size), arrival in order.
    c.create("SIZE")
    for i, body in enumerate(["1", "22", "333", "4\r\n4", "555", "66", "7777", "8"], start=1):
        append(c, "SIZE", f"Date: Sat, 24 Mar 2007 23:00:00 +0200\r\n\r\n{body}\r\n".encode(),
               when=f'"22-Feb-2008 0{i}:06:23 +0000"')
    # Addresses (imaptest sort-addresses): a group's name sorts as its first mailbox.
    c.create("ADDR")
    for hour, (frm, to, cc) in enumerate([
            ("user2@domain2.org", "foo bar <user2@domain2.org>", "user2@domain2.org (foo bar)"),
            ("user2@domain1.org", "user2@domain1.org", "user2: blah@domain1.org;"),
            ("user1@domain1.org", "user1@domain1.org", "user1@domain1.org")]):
        append(c, "ADDR", f"From: {frm}\r\nTo: {to}\r\nCc: {cc}\r\n\r\nx\r\n".encode(),
               when=f'"22-Feb-2008 0{hour}:06:23 +0000"')
    # Display names (imaptest sort-display-from / -to, RFC 5957).
    c.create("DISPLAY")
    for who in ["foo bar <a@b.c>", "b@c.d", "d", "=?iso-8859-1?q?foo_aar?= <e@f.g>",
                "=?iso-8859-1?q?foo_car?= <f@g.h>", "a: xx@xx.org, yy@yy.org;", "z: aa@aa.org, bb@bb.org;",
                "empty:;"]:
        append(c, "DISPLAY", f"From: {who}\r\nTo: {who}\r\n\r\nx\r\n".encode())
    # Subjects and dates (RFC 5256 §2.1 base subjects; §2.2 sent dates).
    c.create("SUBJ")
    for subject, date in [("Re: hello", "Mon, 7 Feb 1994 21:52:25 -0800"),
                          ("hello", "Mon, 7 Feb 1994 22:52:25 -0800"),
                          ("[list] Fwd: Apples (fwd)", "Tue, 8 Feb 1994 06:00:00 +0000"),
                          ("=?utf-8?q?=C3=A9t=C3=A9?=", "Sun, 6 Feb 1994 00:00:00 +0000"),
                          ("[Fwd: RE: apples]", "not a date"),
                          ("bananas", "Mon, 7 Feb 1994 23:00:00 -0800")]:
        append(c, "SUBJ", message(subject, date=date), when='"07-Feb-1994 12:00:00 +0000"')
    c.logout()


def test_sort_capabilities(ext_server):
    c = login(ext_server, "sort")
    caps = c.capability()[1][0].split()
    for cap in (b"SORT", b"SORT=DISPLAY", b"ESORT"):
        assert cap in caps
    c.logout()


def test_sort_size_and_arrival(ext_server, sort_boxes):
    r = raw(ext_server, "sort", "SIZE")
    assert _sort(r, "A1 SORT (SIZE) US-ASCII ALL") == b"* SORT 1 8 2 6 3 5 4 7"
    assert _sort(r, "A2 SORT (REVERSE SIZE) US-ASCII ALL") == b"* SORT 4 7 3 5 2 6 1 8"
    assert _sort(r, "A3 SORT (SIZE REVERSE ARRIVAL) US-ASCII ALL") == b"* SORT 8 1 6 2 5 3 7 4"
    assert _sort(r, "A4 SORT (REVERSE ARRIVAL) UTF-8 1:3") == b"* SORT 3 2 1"
    # Equal dates: message number order, also under REVERSE.
    assert _sort(r, "A5 SORT (DATE) UTF-8 ALL") == b"* SORT 1 2 3 4 5 6 7 8"
    assert _sort(r, "A6 SORT (REVERSE DATE) UTF-8 ALL") == b"* SORT 1 2 3 4 5 6 7 8"
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(r.cmd("F FETCH 1:* UID")))]
    assert _sort(r, "A7 UID SORT (SIZE) UTF-8 2:4") == b"* SORT %d %d %d" % (uids[1], uids[2], uids[3])
    r.close()


def test_sort_addresses(ext_server, sort_boxes):
    r = raw(ext_server, "sort", "ADDR")
    for key in ("FROM", "TO", "CC"):
        assert _sort(r, f"A1 SORT ({key}) US-ASCII ALL") == b"* SORT 3 1 2", key
        assert _sort(r, f"A2 SORT (REVERSE {key}) US-ASCII ALL") == b"* SORT 1 2 3", key
        assert _sort(r, f"A3 SORT ({key} REVERSE ARRIVAL) US-ASCII ALL") == b"* SORT 3 2 1", key
    r.close()


def test_sort_display(ext_server, sort_boxes):
    r = raw(ext_server, "sort", "DISPLAY")
    # a (group) < b@c.d < d < empty (group) < foo aar < foo bar < foo car < z (group)
    assert _sort(r, "A1 SORT (DISPLAYFROM) US-ASCII ALL") == b"* SORT 6 2 3 8 4 1 5 7"
    assert _sort(r, "A2 SORT (DISPLAYTO) US-ASCII ALL") == b"* SORT 6 2 3 8 4 1 5 7"
    assert _sort(r, "A3 SORT (REVERSE DISPLAYTO) US-ASCII ALL") == b"* SORT 7 5 1 4 8 3 2 6"
    r.close()


def test_sort_subject_and_date(ext_server, sort_boxes):
    r = raw(ext_server, "sort", "SUBJ")
    # Base subjects: apples (3, 5), bananas (6), été (4: i;unicode-casemap, RFC 5051,
    # makes it "ETE" + U+0301, among the Es), hello (1, 2).
    assert _sort(r, "A1 SORT (SUBJECT) UTF-8 ALL") == b"* SORT 3 5 6 4 1 2"
    assert _sort(r, "A2 SORT (SUBJECT REVERSE DATE) UTF-8 ALL") == b"* SORT 3 5 6 4 2 1"
    # Sent dates in UTC (1 05:52, 3 06:00, 2 06:52, 6 07:00 on 8 Feb); 5 has none
    # that can be read: its internal date (7 Feb 12:00) counts.
    assert _sort(r, "A3 SORT (DATE) UTF-8 ALL") == b"* SORT 4 5 1 3 2 6"
    assert _sort(r, "A4 SORT (DATE) UTF-8 SUBJECT hello") == b"* SORT 1 2"
    assert r.cmd("A5 SORT (DATE) KOI9 ALL")[0].startswith(b"A5 NO [BADCHARSET")
    assert r.cmd("A6 SORT (BOGUS) UTF-8 ALL")[0].startswith(b"A6 BAD")
    # The charset is not optional: "ALL" is read as one.
    assert r.cmd("A7 SORT (DATE) ALL")[0].startswith(b"A7 NO [BADCHARSET")
    r.close()


def test_esort(ext_server, sort_boxes):
    r = raw(ext_server, "sort", "SIZE")
    # RFC 5267 §3.2: MIN and MAX are the first and last in sort order, ALL keeps it.
    assert _sort(r, "A1 SORT RETURN (MIN MAX COUNT) (REVERSE SIZE) US-ASCII ALL") == \
        b'* ESEARCH (TAG "A1") MIN 4 MAX 8 COUNT 8'
    assert _sort(r, "A2 SORT RETURN (ALL) (SIZE) US-ASCII ALL") == b'* ESEARCH (TAG "A2") ALL 1,8,2,6,3,5,4,7'
    assert _sort(r, "A3 SORT RETURN (ALL) (ARRIVAL) US-ASCII 2:5") == b'* ESEARCH (TAG "A3") ALL 2:5'
    assert _sort(r, "A4 SORT RETURN () (ARRIVAL) US-ASCII SUBJECT nothing") == b'* ESEARCH (TAG "A4")'
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(r.cmd("F FETCH 1:* UID")))]
    assert _sort(r, "A5 UID SORT RETURN (MIN) (SIZE) US-ASCII ALL") == b'* ESEARCH (TAG "A5") UID MIN %d' % uids[0]
    r.close()


def test_sort_with_imaplib(ext_server, sort_boxes):
    c = login(ext_server, "sort")
    c.select("SIZE")
    assert c.sort("(REVERSE SIZE)", "UTF-8", "ALL") == ("OK", [b"4 7 3 5 2 6 1 8"])
    typ, data = c.uid("SORT", "(SIZE)", "UTF-8", "1:2")
    assert typ == "OK" and len(data[0].split()) == 2
    c.logout()


# -- THREAD ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def thread_box(ext_server):
    """A discussion: 1 <- 2 <- 4, 1 <- 3 (by In-Reply-To and References), 5 replies
    by subject only, 6 answers a message that is not here, 7 stands alone."""
    c = login(ext_server, "thread")
    c.create("T")
    for i, (subject, extra) in enumerate([
            ("lunch", "Message-ID: <1@x>\r\n"),
            ("Re: lunch", "Message-ID: <2@x>\r\nIn-Reply-To: <1@x>\r\n"),
            ("Re: lunch", "Message-ID: <3@x>\r\nReferences: <1@x>\r\n"),
            ("Re: Re: lunch", "Message-ID: <4@x>\r\nReferences: <1@x> <2@x>\r\n"),
            ("Fwd: lunch", "Message-ID: <5@x>\r\n"),
            ("Re: party", "Message-ID: <6@x>\r\nIn-Reply-To: <gone@x>\r\n"),
            ("report", "Message-ID: <7@x>\r\n")], start=1):
        append(c, "T", message(subject, date=f"Mon, {i} Mar 2004 10:00:00 +0000", extra=extra))
    c.logout()
    return "T"


def test_thread_capabilities(ext_server):
    c = login(ext_server, "thread")
    caps = c.capability()[1][0].split()
    assert b"THREAD=ORDEREDSUBJECT" in caps and b"THREAD=REFERENCES" in caps
    c.logout()


def test_thread_references(ext_server, thread_box):
    r = raw(ext_server, "thread", thread_box)
    assert r.cmd("A1 THREAD REFERENCES UTF-8 ALL") == [
        b"* THREAD (1 (2 4)(3)(5))(6)(7)", b"A1 OK THREAD completed"]
    assert r.cmd("A2 THREAD REFERENCES US-ASCII SUBJECT nothing")[0] == b"* THREAD"
    assert r.cmd("A3 THREAD REFERENCES UTF-8 NOT 1")[0] == b"* THREAD ((2 4)(3)(5))(6)(7)"
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(r.cmd("F FETCH 1:* UID")))]
    assert r.cmd("A4 UID THREAD REFERENCES UTF-8 6:7")[0] == b"* THREAD (%d)(%d)" % (uids[5], uids[6])
    assert r.cmd("A5 THREAD FOO UTF-8 ALL")[0].startswith(b"A5 BAD")
    r.close()


def test_thread_orderedsubject(ext_server, thread_box):
    r = raw(ext_server, "thread", thread_box)
    # By base subject: lunch (1..5), party (6), report (7); each thread's first
    # message is the parent of the others.
    assert r.cmd("A1 THREAD ORDEREDSUBJECT UTF-8 ALL")[0] == b"* THREAD (1 (2)(3)(4)(5))(6)(7)"
    assert r.cmd("A2 THREAD ORDEREDSUBJECT UTF-8 2,6")[0] == b"* THREAD (2)(6)"
    r.close()


def test_thread_with_imaplib(ext_server, thread_box):
    c = login(ext_server, "thread")
    c.select(thread_box)
    assert c.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"(1 (2 4)(3)(5))(6)(7)"])
    uids = [int(u) for u in re.findall(rb"UID (\d+)", b" ".join(c.fetch("1:*", "UID")[1]))]
    typ, data = c.uid("THREAD", "ORDEREDSUBJECT", "UTF-8", "ALL")
    assert (typ, data) == ("OK", [b"(%d (%d)(%d)(%d)(%d))(%d)(%d)" % tuple(uids)])
    c.logout()


def test_thread_after_expunge(ext_server):
    c = login(ext_server, "thread")
    c.create("T2")
    for extra in ["Message-ID: <a@y>\r\n", "Message-ID: <b@y>\r\nReferences: <a@y>\r\n",
                  "Message-ID: <c@y>\r\nReferences: <a@y> <b@y>\r\n"]:
        append(c, "T2", message("topic", extra=extra))
    c.logout()
    r = raw(ext_server, "thread", "T2")
    assert r.cmd("A1 THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (1 2 3)"
    r.cmd("A2 STORE 2 +FLAGS.SILENT (\\Deleted)")
    r.cmd("A3 EXPUNGE")
    # b is gone: c still hangs under a, through the dummy b that is pruned.
    assert r.cmd("A4 THREAD REFERENCES UTF-8 ALL")[0] == b"* THREAD (1 2)"
    r.close()


def test_failed_save_empties_the_saved_result(ext_server, esearch_box):
    # RFC 5182 §2.1: a SEARCH (or SORT) with SAVE that fails leaves "$" empty.
    r = raw(ext_server, "esearch", esearch_box)
    r.cmd("A1 SEARCH RETURN (SAVE) 1:3")
    assert r.cmd("A2 SEARCH $")[0] == b"* SEARCH 1 2 3"
    assert r.cmd("A3 SEARCH RETURN (SAVE) CHARSET KOI9 ALL")[0].startswith(b"A3 NO [BADCHARSET")
    assert r.cmd("A4 SEARCH $")[0] == b"* SEARCH"
    r.cmd("A5 SEARCH RETURN (SAVE) 1:3")
    assert r.cmd("A6 UID SORT RETURN (SAVE) (BOGUS) UTF-8 ALL")[0].startswith(b"A6 BAD")
    assert r.cmd("A7 SEARCH $")[0] == b"* SEARCH"
    # Any other refused command leaves it alone.
    r.cmd("A8 SEARCH RETURN (SAVE) 2")
    assert r.cmd("A9 SEARCH BOGUS")[0].startswith(b"A9 BAD")
    assert r.cmd("A10 SEARCH $")[0] == b"* SEARCH 2"
    r.close()


def test_esearch_modseq_and_condstore_enabling(ext_server):
    # imaptest esearch-condstore: FETCH MODSEQ enables CONDSTORE (RFC 7162 §3.1),
    # answered once with [HIGHESTMODSEQ]; ESEARCH then carries MODSEQ.
    c = login(ext_server, "esearch")
    c.create("ESC")
    for i in range(1, 5):
        append(c, "ESC", message(f"condstore {i}"))
    c.logout()
    r = raw(ext_server, "esearch", "ESC")
    first = r.cmd("A1 FETCH 1 MODSEQ")
    assert first[0].startswith(b"* OK [HIGHESTMODSEQ ") and first[-1].startswith(b"A1 OK")
    assert not r.cmd("A2 FETCH 1 MODSEQ")[0].startswith(b"* OK [HIGHESTMODSEQ")
    modseq = {}
    for n in (1, 3, 2, 4):
        line = r.cmd(f"S{n} STORE {n} +FLAGS (\\Seen)")[0]
        modseq[n] = int(re.search(rb"MODSEQ \((\d+)\)", line).group(1))
    seen = 'MODSEQ "/flags/\\\\seen" all'
    assert r.cmd(f"A3 SEARCH RETURN (MIN) 1:3 {seen} 1")[0] == b'* ESEARCH (TAG "A3") MIN 1 MODSEQ %d' % modseq[1]
    assert r.cmd(f"A4 SEARCH RETURN (MAX) 1:3 {seen} 1")[0] == b'* ESEARCH (TAG "A4") MAX 3 MODSEQ %d' % modseq[3]
    assert r.cmd(f"A5 SEARCH RETURN () 1:3 {seen} 1")[0] == b'* ESEARCH (TAG "A5") ALL 1:3 MODSEQ %d' % modseq[2]
    assert r.cmd(f"A6 SEARCH RETURN (MIN MAX) 2:3 {seen} 1")[0] == \
        b'* ESEARCH (TAG "A6") MIN 2 MAX 3 MODSEQ %d' % modseq[2]
    assert r.cmd(f"A7 SEARCH RETURN (ALL) 2:3 {seen} {modseq[4]}")[0] == b'* ESEARCH (TAG "A7")'
    r.close()


def test_sort_save_and_dollar(ext_server, sort_boxes):
    r = raw(ext_server, "sort", "SIZE")
    # SORT RETURN (SAVE MIN): the first message in sort order is saved (RFC 5182 §2.4
    # with RFC 5267); "$" then works in SORT criteria too.
    assert r.cmd("A1 SORT RETURN (SAVE MIN) (REVERSE SIZE) UTF-8 ALL")[0] == b'* ESEARCH (TAG "A1") MIN 4'
    assert _sort(r, "A2 SORT (SIZE) UTF-8 $") == b"* SORT 4"
    assert r.cmd("A3 SORT RETURN (SAVE) (SIZE) UTF-8 1:3") == [b"A3 OK SORT completed"]
    assert _sort(r, "A4 SORT (REVERSE SIZE) UTF-8 $") == b"* SORT 3 2 1"
    assert r.cmd("A5 THREAD ORDEREDSUBJECT UTF-8 $")[0] == b"* THREAD (1 (2)(3))"
    r.close()
