"""Issue 17: a message list's sort keys (Date, From, Subject) are kept in the index when
a message is stored (SMTP delivery, IMAP APPEND, COPY and MOVE), so that the first sort
of a mailbox reads no message file.  Measured by the code path: the kernel's record of
every file opened in the Maildir (inotify, ``support.fileopens``) while two workers
serve sorted list pages through the real HTTP listener; only the rows shown on a page
are read (for their Subject/From/Date).  Runs on both engines."""

from __future__ import annotations

import concurrent.futures
import email
import http.client
import imaplib
import re
import smtplib
import urllib.parse
from pathlib import Path

import pytest

from support import tls
from support.fileopens import FileOpens
from support.server import WaypostInstance, free_port, wait_for

MAIN = "example.test"
PW = "alice-sort-pw-1"


@pytest.fixture
def inst(tmp_path):
    inst = WaypostInstance(tmp_path / "data", domain=MAIN, server={"workers": 2}, web={"page_size": 2})
    inst.http_port = free_port()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        def setup():
            inst.configure(listen={"http": f"127.0.0.1:{inst.http_port}"})
            inst.ok("account", "add", f"alice@{MAIN}", "--password", PW)
            inst.ok("mailbox", "create", f"alice@{MAIN}/Other")
            inst.start()
        pool.submit(setup).result()
    try:
        yield inst
    finally:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(inst.stop).result()


def imap(inst):
    im = imaplib.IMAP4("127.0.0.1", inst.imap_port)
    im.starttls(tls.client_context())
    im.login(f"alice@{MAIN}", PW)
    return im


def message(sender, subject, date):
    return (f"From: {sender}\r\nTo: alice@{MAIN}\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{abs(hash(subject))}@remote.test>\r\n\r\nbody of {subject}\r\n").encode()


def web_session(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("GET", "/login")
    r = c.getresponse()
    token = r.read().decode().split('name="csrf" value="')[1].split('"')[0]
    login_cookie = r.getheader("set-cookie").split(";")[0]
    c.request("POST", "/login", urllib.parse.urlencode({"csrf": token, "login": "alice", "password": PW}),
              {"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie})
    r = c.getresponse()
    r.read()
    c.close()
    return [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("wp_session=")][0] \
        .split(";")[0]


def subjects_of(page: str) -> list[str]:
    rows = re.findall(r'<tr[^>]*data-uid="\d+".*?</tr>', page, re.S)
    return [re.sub(r"<[^>]+>", "", re.search(r"<a [^>]*>(.*?)</a>", r, re.S).group(1)).strip() for r in rows]


def test_a_sort_after_delivery_append_copy_and_move_reads_no_message_file(inst):
    # 3 by SMTP delivery, 2 by APPEND, 1 COPY and 1 MOVE from another mailbox: 7 in INBOX.
    delivered = [("Kim <kim@remote.test>", "golf", "Tue, 02 Jan 2024 10:00:00 +0000"),
                 ("Amy <amy@remote.test>", "=?utf-8?q?=C3=A9clair?=", "Sat, 06 Jan 2024 10:00:00 +0000"),
                 ("Zed <zed@remote.test>", "alpha", "Thu, 04 Jan 2024 10:00:00 +0000")]
    appended = [("Bob <bob@remote.test>", "delta", "Mon, 01 Jan 2024 10:00:00 +0000"),
                ("Yan <yan@remote.test>", "bravo", "Fri, 05 Jan 2024 10:00:00 +0000")]
    elsewhere = [("Cid <cid@remote.test>", "charlie", "Wed, 03 Jan 2024 10:00:00 +0000"),
                 ("Eve <eve@remote.test>", "foxtrot", "Sun, 07 Jan 2024 10:00:00 +0000")]
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=20) as s:
        for sender, subject, date in delivered:
            s.sendmail(sender.split("<")[1].rstrip(">"), [f"alice@{MAIN}"], message(sender, subject, date))
    with imap(inst) as im:
        wait_for(lambda: im.select("INBOX")[1][0] == b"3", 20, what="the three deliveries indexed")
        for sender, subject, date in appended:
            im.append("INBOX", None, None, message(sender, subject, date))
        for sender, subject, date in elsewhere:
            im.append("Other", None, None, message(sender, subject, date))
        im.select("Other")
        assert im.uid("COPY", "1", "INBOX")[0] == "OK"
        assert im.uid("MOVE", "2", "INBOX")[0] == "OK"
        assert im.select("INBOX")[1][0] == b"7"
    box = inst.mailbox(f"alice@{MAIN}")
    subject_of = {}  # Maildir unique name -> Subject, read before the watch begins
    for path in [*box.glob("new/*"), *box.glob("cur/*")]:
        subject_of[path.name.split(":2,")[0]] = str(email.message_from_bytes(path.read_bytes())["Subject"])
    assert len(subject_of) == 7

    cookie = web_session(inst.http_port)
    shown: set[str] = set()
    orders = {"subject": ["alpha", "bravo"], "date": ["foxtrot", "=?utf-8?q?=C3=A9clair?="],
              "from": ["alpha", "bravo"]}  # zed, yan first (descending)
    with FileOpens(box / "new", box / "cur") as opens:
        for sort, order in (("subject", "asc"), ("date", "desc"), ("from", "desc")):
            for _ in range(6):  # a new connection each time: both workers sort
                c = http.client.HTTPConnection("127.0.0.1", inst.http_port, timeout=20)
                c.request("GET", f"/mail/box?box=INBOX&sort={sort}&order={order}", headers={"Cookie": cookie})
                r = c.getresponse()
                page = r.read().decode()
                c.close()
                assert r.status == 200
                got = subjects_of(page)
                want = [s if not s.startswith("=?") else "éclair" for s in orders[sort]]
                assert got == want, (sort, got)
                shown.update(orders[sort])
        opened = {name.split(":2,")[0] for _d, name in opens.names()}
    # Every file opened is one of the rows shown (read for its Subject/From/Date), never
    # one only sorted: 7 messages, 4 distinct rows shown on the three pages.
    assert opened, "the rows shown are read from their files (the watch works)"
    assert {subject_of[n] for n in opened} <= shown, sorted(subject_of[n] for n in opened)
    assert len(shown) == 4


def test_keys_made_from_a_dropped_in_file_are_kept_for_every_worker(inst):
    """A message another program drops into the Maildir is indexed without sort keys:
    the first sort reads its file once and keeps the keys in the index, so no later
    sort, in either worker, reads it again."""
    box = inst.mailbox(f"alice@{MAIN}")
    with imap(inst) as im:
        im.select("INBOX")  # (makes the Maildir)
        im.append("INBOX", None, None, message("Amy <amy@remote.test>", "alpha", "Mon, 01 Jan 2024 10:00:00 +0000"))
    dropped = {}
    for i, subject in enumerate(["zulu", "yankee", "xray"]):
        name = f"1700000000.M{i}P1.elsewhere"
        (box / "new" / name).write_bytes(message(f"X{i} <x{i}@remote.test>", subject,
                                                 f"Tue, 0{i + 2} Jan 2024 10:00:00 +0000"))
        dropped[name] = subject
    cookie = web_session(inst.http_port)

    def page():
        c = http.client.HTTPConnection("127.0.0.1", inst.http_port, timeout=20)
        c.request("GET", "/mail/box?box=INBOX&sort=subject&order=asc", headers={"Cookie": cookie})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        assert r.status == 200
        return subjects_of(body)

    assert page() == ["alpha", "xray"]  # (the scan indexes the dropped files)
    with FileOpens(box / "new", box / "cur") as opens:
        for _ in range(8):  # both workers
            assert page() == ["alpha", "xray"]
        read = {dropped.get(name.split(":2,")[0], name) for _d, name in opens.names()}
    assert "zulu" not in read and "yankee" not in read, read
    db = inst.db()
    try:
        inbox = db.mailbox_get(MAIN, "alice", "INBOX")
        kept = db.message_sort_keys_get(inbox.id)
    finally:
        db.close()
    assert sorted(k.subject for k in kept.values()) == ["alpha", "xray", "yankee", "zulu"]  # for a restart too
