"""CREATE-SPECIAL-USE (RFC 6154 §3), APPENDLIMIT (RFC 7889) and URL-PARTIAL (RFC 5550)
through the real listener with two workers, with imaplib and literal transcripts."""

from __future__ import annotations

import imaplib
import re

import pytest

from support.imap import Raw
from support.server import WaypostInstance

USER = "se@example.test"
PASSWORD = "small-ext-password"
LIMIT = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapse") / "data",
                           imap={"plaintext_without_tls": True, "max_append_size": LIMIT}, server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def client(server: WaypostInstance) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    return c


def raw(server: WaypostInstance) -> Raw:
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN {USER} {PASSWORD}")[-1].startswith(b"L OK")
    return r


def test_create_special_use(server):
    r = raw(server)
    assert b"CREATE-SPECIAL-USE" in r.cmd("C CAPABILITY")[0].split()
    # RFC 6154 §5.3's example.
    got = r.cmd('t1 CREATE "Important Messages" (USE (\\Important))')
    assert got[-1].startswith(b"t1 NO [USEATTR]")
    assert r.cmd("t2 CREATE MySpecialJunk (USE (\\Junk))")[-1].startswith(b"t2 OK")
    assert r.cmd("t3 CREATE Old (USE (\\Archive))")[-1].startswith(b"t3 OK")
    assert r.cmd("t4 CREATE Two (USE (\\Archive \\Flagged))")[-1].startswith(b"t4 NO [USEATTR]")
    assert r.cmd("t5 CREATE Plain (USE ())")[-1].startswith(b"t5 OK")
    r.close()
    # Seen from other connections (both workers): the refused ones do not exist.
    for _ in range(3):
        r = raw(server)
        listed = r.cmd('l LIST (SPECIAL-USE) "" *')
        assert b'* LIST (\\HasNoChildren \\Junk) "/" MySpecialJunk' in listed
        assert b'* LIST (\\HasNoChildren \\Archive) "/" Old' in listed
        assert not any(b"Important" in line or b" Two" in line for line in listed)
        every = r.cmd('a LIST "" *')
        assert any(line.endswith(b" Plain") for line in every)
        assert not any(line.endswith((b" Two", b'"Important Messages"')) for line in every)
        r.close()


def test_appendlimit(server):
    c = client(server)
    assert f"APPENDLIMIT={LIMIT}" in c.capabilities
    typ, data = c.status("INBOX", "(APPENDLIMIT MESSAGES)")
    assert typ == "OK" and data[0] == f"INBOX (APPENDLIMIT {LIMIT} MESSAGES 0)".encode()
    # A message of the limit is taken; one octet more is refused before it is sent.
    head = b"Subject: fits\r\n\r\n"
    fits = head + b"x" * (LIMIT - len(head))
    assert c.append("INBOX", None, None, fits)[0] == "OK"
    typ, data = c.append("INBOX", None, None, fits + b"y")
    assert typ == "NO" and data[0].startswith(b"[TOOBIG]")
    c.logout()
    r = raw(server)
    listed = r.cmd('s LIST "" INBOX RETURN (STATUS (APPENDLIMIT))')
    assert f"* STATUS INBOX (APPENDLIMIT {LIMIT})".encode() in listed
    # A non-synchronizing literal past the limit is BAD [TOOBIG] (RFC 7888 §4).
    assert r.cmd(b"n APPEND INBOX {%d+}" % (LIMIT + 1), tag=b"n")[-1].startswith(b"n BAD [TOOBIG]")
    r.close()


def test_url_partial_in_catenate_and_urlfetch(server):
    c = client(server)
    assert "URL-PARTIAL" in c.capabilities
    c.create("Parts")
    body = b"0123456789abcdefghij"
    typ, data = c.append("Parts", None, None, b"Subject: p\r\n\r\n" + body)
    validity, uid = (int(x) for x in re.search(rb"APPENDUID (\d+) (\d+)", data[0]).groups())
    c.logout()
    r = raw(server)
    base = f"/Parts;UIDVALIDITY={validity}/;UID={uid}/;SECTION=TEXT"
    # RFC 5550 §5: ;PARTIAL=offset.length, and offset alone (to the end).
    got = r.cmd(f'a APPEND Parts CATENATE (URL "{base}/;PARTIAL=10.5" URL "{base}/;PARTIAL=15")')
    new_uid = int(re.match(rb"a OK \[APPENDUID \d+ (\d+)\]", got[-1]).group(1))
    assert r.cmd("s SELECT Parts")[-1].startswith(b"s OK")
    fetched = r.cmd(f"f UID FETCH {new_uid} BODY.PEEK[]")
    assert fetched[0].endswith(b"{10}\r\nabcdefghij)")
    # Past the end: what there is (nothing), as a partial FETCH answers.
    got = r.cmd(f'b APPEND Parts CATENATE (TEXT {{14}}\r\nSubject: e\r\n\r\n URL "{base}/;PARTIAL=100.5")', tag=b"b")
    assert got[-1].startswith(b"b OK"), got
    # URLFETCH of a URLAUTH URL with PARTIAL.
    auth = f"imap://{USER.replace('@', '%40')}@example.test/Parts;UIDVALIDITY={validity}/;UID={uid}" \
           f"/;SECTION=TEXT/;PARTIAL=2.3;URLAUTH=user+{USER.replace('@', '%40')}"
    gen = r.cmd(f'g GENURLAUTH "{auth}" INTERNAL')
    url = re.match(rb'\* GENURLAUTH "?([^"]+)"?', gen[0]).group(1)
    got = r.cmd(b'u URLFETCH "' + url + b'"')
    assert got[0] == b'* URLFETCH "' + url + b'" "234"', got
    r.close()


def test_thread_refs(server):
    c = client(server)
    assert "THREAD=REFS" in c.capabilities
    c.create("Threads")
    for mid, extra, day, subject in (("<1@t>", "", 1, "one"), ("<2@t>", "", 5, "two"),
                                     ("<3@t>", "In-Reply-To: <1@t>\r\n", 9, "Re: one"),
                                     ("<4@t>", "", 6, "Re: two")):
        msg = (f"Message-ID: {mid}\r\n{extra}Subject: {subject}\r\nDate: {day} Feb 2024 12:00:00 +0000\r\n"
               f"\r\nbody\r\n").encode()
        assert c.append("Threads", None, None, msg)[0] == "OK"
    c.select("Threads")
    typ, data = c.uid("THREAD", "REFS", "UTF-8", "ALL")
    # No subject gathering (4 is alone), threads by their newest message (1-3 last).
    assert typ == "OK" and data == [b"(2)(4)(1 3)"]
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert data == [b"(1 3)(2 4)"]
    c.logout()


def test_i18nlevel_1_search_and_sort(server):
    c = client(server)
    assert "I18NLEVEL=1" in c.capabilities
    c.create("Intl")
    for subject, body in (("zebra", "plain words"), ("=?utf-8?q?=C3=89clair?=", "au café du coin"),
                          ("apple", "CAFE\u0301 again"), ("eclipse", "ＣＡＦＥ in full width"),
                          ("ḟoo", "nothing")):
        msg = (f"Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()
        assert c.append("Intl", None, None, msg)[0] == "OK"
    c.select("Intl")
    c.literal = "CAFÉ".encode()
    typ, data = c.uid("SEARCH", "CHARSET", "UTF-8", "BODY")
    assert typ == "OK" and data[0].split() == [b"2", b"3"]  # composed and decomposed, any case
    typ, data = c.uid("SEARCH", "BODY", "cafe")
    # "ＣＡＦＥ" folds to "cafe", and "café" to "cafe" + U+0301, which holds it (as in Dovecot).
    assert data[0].split() == [b"2", b"3", b"4"]
    typ, data = c.uid("SEARCH", "BODY", "plain")
    assert data[0].split() == [b"1"]
    # i;unicode-casemap: "Éclair" sorts among the Es, "ḟoo" among the Fs.
    typ, data = c.sort("(SUBJECT)", "UTF-8", "ALL")
    assert data[0].split() == [b"3", b"4", b"2", b"5", b"1"]
    c.logout()
