"""WebUser mail work beyond reading (issue 17 point 3) in a real browser: reply,
reply-all and forward (the original's attachments carried from the store), copy, search
and sort in the message list, and a move or copy into a full account answered 507
(issue 21).  Checked with imaplib on the same index; Playwright drives Debian's chromium.
"""

from __future__ import annotations

import concurrent.futures
import email
import email.policy
import imaplib
import os
import smtplib
import time
import urllib.parse
from email.message import EmailMessage

import pytest

from support import tls
from support.server import WaypostInstance, free_port, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
MAIN = "example.test"
PW = {"alice": "alice-web-pw-1", "bob": "bob-web-pw-1", "carol": "carol-web-pw-1", "dave": "dave-web-pw-1",
      "erin": "erin-web-pw-1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("webmail") / "data", domain=MAIN,
                         auth={"free_failures": 1000, "block_after": 1000}) as inst:
        inst.http_port = free_port()
        inst.configure(listen={"http": f"127.0.0.1:{inst.http_port}"})
        for name, pw in PW.items():
            inst.ok("account", "add", f"{name}@{MAIN}", "--password", pw)
        inst.ok("mailbox", "create", f"alice@{MAIN}/Archive")
        inst.ok("mailbox", "create", f"dave@{MAIN}/Drop")
        inst.start()
        yield inst


@pytest.fixture(scope="module")
def browser(server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--host-resolver-rules=MAP * 127.0.0.1"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server, tmp_path):
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.shots = tmp_path
    yield pg
    ctx.close()


def url(server, path="/"):
    return f"http://127.0.0.1:{server.http_port}{path}"


def shot(page, name):
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def log_in(page, server, name):
    page.goto(url(server, "/login"))
    page.fill("input[name=login]", name)
    page.fill("input[name=password]", PW[name])
    page.click("#login")
    page.wait_for_url("**/mail")


def cli(server, *args):
    # (In a thread: the CLI runs its own asyncio loop, and Playwright's runs in this one.)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(server.ok, *args).result()


def imap(server, who):
    im = imaplib.IMAP4("127.0.0.1", server.imap_port)
    im.starttls(tls.client_context())
    im.login(f"{who}@{MAIN}", PW[who])
    return im


def found(server, who, subject, box="INBOX"):
    with imap(server, who) as im:
        im.select(box)
        typ, data = im.search(None, "SUBJECT", f'"{subject}"')
        if not data[0]:
            return None
        typ, body = im.fetch(data[0].split()[-1], "(BODY.PEEK[])")
        return email.message_from_bytes(body[0][1], policy=email.policy.default)


def flags_of(server, who, subject, box="INBOX"):
    with imap(server, who) as im:
        im.select(box, readonly=True)
        typ, data = im.search(None, "SUBJECT", f'"{subject}"')
        typ, out = im.fetch(data[0].split()[-1], "(FLAGS)")
        return out[0]


def follow(page, selector):
    """Click what loads a new page and wait until it has loaded: reading the list while
    the new document is still arriving sees no rows (or the old page's)."""
    with page.expect_navigation():
        page.click(selector)


def open_message(page, server, box, subject):
    page.goto(url(server, f"/mail/box?box={urllib.parse.quote(box, safe='')}"))
    page.click(f"#messages a:has-text('{subject}')")
    page.wait_for_selector("#subject")


def test_reply_reply_all_and_forward_with_attachments(page, server):
    msg = EmailMessage()
    msg["From"] = "Sam Sender <sender@remote.test>"
    msg["To"] = f"alice@{MAIN}, Bob <bob@{MAIN}>"
    msg["Cc"] = f"carol@{MAIN}"
    msg["Subject"] = "Quarterly figures"
    msg["Message-ID"] = "<orig-1@remote.test>"
    msg["References"] = "<thread-0@remote.test>"
    msg.set_content("first line\nsecond line\n")
    msg.add_attachment(b"%PDF-1.4 figures", maintype="application", subtype="pdf", filename="figures.pdf")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.send_message(msg, from_addr="sender@remote.test", to_addrs=[f"alice@{MAIN}"])
    wait_for(lambda: server.messages(f"alice@{MAIN}"), what="delivery")
    log_in(page, server, "alice")
    open_message(page, server, "INBOX", "Quarterly figures")
    # Reply all: the sender, and the other recipients but not alice herself.
    page.click("#reply-all")
    assert page.input_value("input[name=to]") == "Sam Sender <sender@remote.test>"
    assert page.input_value("input[name=cc]") == f"Bob <bob@{MAIN}>, carol@{MAIN}"
    assert page.input_value("input[name=subject]") == "Re: Quarterly figures"
    page.go_back()
    page.click("#reply")
    assert page.input_value("input[name=to]") == "Sam Sender <sender@remote.test>"
    assert page.input_value("input[name=cc]") == ""
    body = page.input_value("textarea[name=body]")
    assert "Sam Sender <sender@remote.test> wrote:" in body and "> first line\n> second line" in body
    assert page.query_selector("#kept") is None  # a reply carries no attachment
    shot(page, "reply")
    page.fill("input[name=to]", f"bob@{MAIN}")  # (a local recipient: nothing leaves the machine)
    page.click("#send")
    page.wait_for_selector("#sent")
    got = wait_for(lambda: found(server, "bob", "Re: Quarterly figures"), what="the reply")
    assert got["In-Reply-To"] == "<orig-1@remote.test>"
    assert got["References"] == "<thread-0@remote.test> <orig-1@remote.test>"
    assert b"\\Answered" in flags_of(server, "alice", "Quarterly figures")
    # Forward: the original's attachment is offered (ticked) and comes from the store.
    open_message(page, server, "INBOX", "Quarterly figures")
    page.click("#forward")
    assert page.input_value("input[name=subject]") == "Fwd: Quarterly figures"
    assert page.input_value("input[name=to]") == ""
    assert page.is_checked("#kept input[name=keep]")
    assert "-------- Forwarded message --------" in page.input_value("textarea[name=body]")
    page.fill("input[name=to]", f"carol@{MAIN}")
    page.set_input_files("input[name=attachment]", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"my notes"}])
    shot(page, "forward")
    page.click("#send")
    page.wait_for_selector("#sent")
    fwd = wait_for(lambda: found(server, "carol", "Fwd: Quarterly figures"), what="the forward")
    files = {p.get_filename(): p.get_content() for p in fwd.iter_attachments()}
    assert files == {"figures.pdf": b"%PDF-1.4 figures", "notes.txt": "my notes"}
    assert b"$Forwarded" in flags_of(server, "alice", "Quarterly figures")
    # Unticked, the attachment stays behind.
    open_message(page, server, "INBOX", "Quarterly figures")
    page.click("#forward")
    page.uncheck("#kept input[name=keep]")
    page.fill("input[name=to]", f"carol@{MAIN}")
    page.fill("input[name=subject]", "Fwd: without the file")
    page.click("#send")
    page.wait_for_selector("#sent")
    bare = wait_for(lambda: found(server, "carol", "Fwd: without the file"), what="the second forward")
    assert list(bare.iter_attachments()) == []
    # A reply to a message one may not read: the same 404 as a missing one.
    r = page.goto(url(server, "/mail/compose?mode=reply&box=~bob/INBOX&uid=1"))
    assert r.status == 404


def test_copy_and_a_full_account_is_507(page, server):
    with imap(server, "dave") as im:
        im.setacl("Drop", f"alice@{MAIN}", "lri")
    with imap(server, "alice") as im:
        im.append("INBOX", None, None, b"From: x@remote.test\r\nSubject: keep me twice\r\n\r\n" + b"k" * 2000 + b"\r\n")
    log_in(page, server, "alice")
    open_message(page, server, "INBOX", "keep me twice")
    page.select_option("#copy-to", "Archive")
    page.click("#copy")
    assert page.inner_text("#copied") == "Copied to Archive."
    assert found(server, "alice", "keep me twice", "Archive") and found(server, "alice", "keep me twice")
    # dave's account is full: a move into his shared mailbox is 507, and nothing moved.
    cli(server, "account", "set", f"dave@{MAIN}", "--quota", "100")
    open_message(page, server, "INBOX", "keep me twice")
    page.select_option("#move-to", "Archive")  # (the list offers own mailboxes; the form names dave's)
    page.eval_on_selector("#move-to", "s => { const o = document.createElement('option');"
                                      " o.text = '~dave/Drop'; s.add(o); s.value = '~dave/Drop'; }")
    with page.expect_response("**/mail/move") as answer:
        page.click("#move")
    assert answer.value.status == 507
    assert "over its quota" in page.inner_text("#message")
    shot(page, "move-507")
    assert found(server, "alice", "keep me twice") is not None
    server.expect_log(r"event=web-over-quota")
    assert "Traceback" not in "".join(server.output)
    # Over her own quota, a copy is 507 too; a move within her account is not refused.
    cli(server, "account", "set", f"alice@{MAIN}", "--quota", "100")
    try:
        open_message(page, server, "INBOX", "keep me twice")
        page.select_option("#copy-to", "Archive")
        with page.expect_response("**/mail/copy") as answer:
            page.click("#copy")
        assert answer.value.status == 507
        open_message(page, server, "INBOX", "keep me twice")
        page.select_option("#move-to", "Junk")
        with page.expect_response("**/mail/move") as answer:
            page.click("#move")
        assert answer.value.status == 303
        assert found(server, "alice", "keep me twice", "Junk")
    finally:
        cli(server, "account", "set", f"alice@{MAIN}", "--quota", "default")
        cli(server, "account", "set", f"dave@{MAIN}", "--quota", "default")


def test_search_and_sort_the_list(page, server):
    rows = [  # (from, subject, date, body size)
        ("Zed <zed@remote.test>", "Invoice 7", "Mon, 01 Jan 2024 10:00:00 +0000", 10),
        ("Amy <amy@remote.test>", "lunch", "Wed, 03 Jan 2024 10:00:00 +0000", 3000),
        ("Bob <bob@remote.test>", "Re: invoice 7", "Tue, 02 Jan 2024 10:00:00 +0000", 500),
        ("Cid <cid@remote.test>", "=?utf-8?q?Caf=C3=A9_invoice?=", "Fri, 05 Jan 2024 10:00:00 +0000", 50),
        ("Dee <dee@remote.test>", "agenda", "Thu, 04 Jan 2024 10:00:00 +0000", 1000),
    ]
    with imap(server, "erin") as im:
        for sender, subject, date, size in rows:
            im.append("INBOX", None, None, (f"From: {sender}\r\nTo: erin@{MAIN}\r\nSubject: {subject}\r\n"
                                            f"Date: {date}\r\n\r\n" + "b" * size + "\r\n").encode())
    log_in(page, server, "erin")
    page.goto(url(server, "/mail/box?box=INBOX"))

    def subjects():
        return [page.inner_text(f"#messages tr[data-uid='{u}'] a")
                for u in page.eval_on_selector_all("#messages tr[data-uid]", "rs => rs.map(r => r.dataset.uid)")]

    assert subjects() == ["agenda", "Café invoice", "Re: invoice 7", "lunch", "Invoice 7"]  # newest first
    follow(page, "#sort-date")
    assert subjects() == ["Café invoice", "agenda", "lunch", "Re: invoice 7", "Invoice 7"]
    follow(page, "#sort-date")  # again: the other way
    assert subjects()[0] == "Invoice 7" and "order=asc" in page.url
    follow(page, "#sort-from")
    assert subjects() == ["Invoice 7", "agenda", "Café invoice", "Re: invoice 7", "lunch"]  # zed..amy
    follow(page, "#sort-subject")
    assert subjects() == ["Re: invoice 7", "lunch", "Invoice 7", "Café invoice", "agenda"]
    follow(page, "#sort-size")
    assert subjects() == ["lunch", "agenda", "Re: invoice 7", "Café invoice", "Invoice 7"]
    # Search (case folded, encoded words decoded, every word must match), in the order chosen.
    page.fill("#search", "INVOICE")
    follow(page, "#search-go")
    assert subjects() == ["Re: invoice 7", "Café invoice", "Invoice 7"]
    assert page.inner_text("#count").startswith("3 of 5 messages match")
    shot(page, "search")
    page.fill("#search", "invoice café")
    follow(page, "#search-go")
    assert subjects() == ["Café invoice"]
    page.fill("#search", "bob@remote.test")
    follow(page, "#search-go")
    assert subjects() == ["Re: invoice 7"]
    page.fill("#search", "nothing-like-this")
    follow(page, "#search-go")
    assert subjects() == [] and page.inner_text("#count").startswith("0 of 5")
    # A new message is found at once (the listing is patched, the keys are per UID).
    with imap(server, "erin") as im:
        im.append("INBOX", None, None, f"From: new@remote.test\r\nTo: erin@{MAIN}\r\nSubject: late invoice\r\n"
                                       "Date: Sat, 06 Jan 2024 10:00:00 +0000\r\n\r\nx\r\n".encode())
    page.goto(url(server, "/mail/box?box=INBOX&q=invoice&sort=date"))
    assert subjects()[0] == "late invoice" and len(subjects()) == 4
    # Bad parameters fall back, never a traceback.
    r = page.goto(url(server, "/mail/box?box=INBOX&sort=%3Cscript%3E&order=x&page=-4&q=" + "a" * 5000))
    assert r.status == 200 and "Traceback" not in page.content()


def test_search_finds_the_body_as_imap_search_does(page, server):
    """The words of a search are looked for in the body too, decoded (quoted-printable,
    base64, charsets), by IMAP SEARCH's own matcher: the browser's rows are what
    imaplib's ``OR FROM w OR TO w OR CC w OR SUBJECT w BODY w`` finds."""
    import base64

    latin = base64.b64encode("Grüße aus Köln: das Zauberwort".encode("iso-8859-1")).decode()
    bodies = {
        "qp note": "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
                   "The zauber=\r\nwort is caf=C3=A9 cr=C3=A8me.\r\n",
        "b64 note": "Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; "
                    f"charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n{latin}\r\n--b1\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    f"{base64.b64encode(b'hidden attachment words').decode()}\r\n--b1--\r\n",
        "html note": "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Meet at the <b>lighthouse</b></p>\r\n",
        "plain note": "Content-Type: text/plain\r\n\r\nnothing to see, only a lighthouse keeper\r\n",
    }
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        for subject, rest in bodies.items():
            s.sendmail("far@remote.test", [f"dave@{MAIN}"],
                       f"From: far@remote.test\r\nTo: dave@{MAIN}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
                       f"{rest}".encode())
    # (250 is the queue's: wait until all four are delivered.)
    wait_for(lambda: all(found(server, "dave", subject) for subject in bodies), timeout=30, what="the four notes")
    log_in(page, server, "dave")

    def browser_uids(query):
        page.goto(url(server, "/mail/box?box=INBOX&sort=arrival&order=asc"))
        page.fill("#search", query)
        follow(page, "#search-go")
        page.wait_for_selector("#count")
        return [int(u) for u in page.eval_on_selector_all("#messages tr[data-uid]", "rs => rs.map(r => r.dataset.uid)")]

    def imap_uids(query):
        with imap(server, "dave") as im:
            assert im.enable("UTF8=ACCEPT")[0] == "OK"  # non-ASCII words in quoted strings (RFC 6855)
            im.select("INBOX", readonly=True)
            criteria = []
            for w in query.split():
                criteria += ["OR", "FROM", f'"{w}"', "OR", "TO", f'"{w}"', "OR", "CC", f'"{w}"', "OR", "SUBJECT",
                             f'"{w}"', "BODY", f'"{w}"']
            typ, data = im.uid("SEARCH", *criteria)
            assert typ == "OK", data
            return sorted(int(u) for u in data[0].split())

    def subjects_of(uids):
        return sorted(page.inner_text(f"#messages tr[data-uid='{u}'] a") for u in uids)

    expected = {"zauberwort": ["b64 note", "qp note"], "CAFÉ crème": ["qp note"], "grüsse köln": ["b64 note"],
                "lighthouse": ["html note", "plain note"], "lighthouse keeper": ["plain note"],
                "attachment": [], "far@remote.test note qp": ["qp note"]}
    for query, subjects in expected.items():
        got = browser_uids(query)
        assert subjects_of(got) == subjects, query
        assert got == imap_uids(query), query
    shot(page, "search-body")


def test_paging_keeps_the_search_and_the_order(page, server):
    with imap(server, "carol") as im:
        for i in range(120):
            im.append("INBOX", None, None, f"From: p{i:03d}@remote.test\r\nSubject: page item {i:03d}\r\n\r\nx\r\n"
                      .encode())
    log_in(page, server, "carol")
    page.goto(url(server, "/mail/box?box=INBOX&q=page+item&sort=subject&order=asc"))
    assert page.inner_text("#count").startswith("120 of")
    first = page.inner_text("#messages tr[data-uid] a")
    assert first == "page item 000"
    follow(page, "a[rel=next]")
    assert page.inner_text("#messages tr[data-uid] a") == "page item 050"
    follow(page, "a[rel=next]")
    assert page.inner_text("#messages tr[data-uid] a") == "page item 100"
    assert page.query_selector("a[rel=next]") is None


def test_list_rows_after_a_mailbox_is_deleted_and_made_again_in_two_workers(tmp_path_factory):
    """STYLE 13: the rows a worker keeps (Subject/From/Date, sort keys) are keyed by
    (mailbox id, UIDVALIDITY, UID), never reused: a mailbox deleted and made again under
    its name, whose new message has UID 1 again, shows the new message in every worker."""
    import http.client

    inst = WaypostInstance(tmp_path_factory.mktemp("webmail2") / "data", domain=MAIN, server={"workers": 2})
    port = free_port()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        def setup():
            inst.configure(listen={"http": f"127.0.0.1:{port}"})
            inst.ok("account", "add", f"alice@{MAIN}", "--password", PW["alice"])
            inst.start()
        pool.submit(setup).result()
    try:
        def session():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/login")
            r = c.getresponse()
            token = r.read().decode().split('name="csrf" value="')[1].split('"')[0]
            login_cookie = r.getheader("set-cookie").split(";")[0]
            c.request("POST", "/login", urllib.parse.urlencode({"csrf": token, "login": "alice",
                                                                 "password": PW["alice"]}),
                      {"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie})
            r = c.getresponse()
            r.read()
            c.close()
            return [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("wp_session=")][0] \
                .split(";")[0]

        cookie = session()

        def pages(path):
            out = []
            for _ in range(12):  # a new connection each time: both workers answer some
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", path, headers={"Cookie": cookie})
                r = c.getresponse()
                out.append(r.read().decode())
                c.close()
            return out

        def imap_alice():
            im = imaplib.IMAP4("127.0.0.1", inst.imap_port)
            im.starttls(tls.client_context())
            im.login(f"alice@{MAIN}", PW["alice"])
            return im

        with imap_alice() as im:
            im.create("Tmp")
            im.append("Tmp", None, None, b"From: old@remote.test\r\nSubject: the old one\r\n\r\nx\r\n")
        for path in ("/mail/box?box=Tmp", "/mail/box?box=Tmp&sort=subject&q=one"):
            assert all("the old one" in p for p in pages(path))
        with imap_alice() as im:
            im.delete("Tmp")
            im.create("Tmp")
            im.append("Tmp", None, None, b"From: new@remote.test\r\nSubject: the new one\r\n\r\nx\r\n")
            im.select("Tmp")
            assert im.uid("SEARCH", "ALL")[1][0] == b"1"  # the same UID as before
        for path in ("/mail/box?box=Tmp", "/mail/box?box=Tmp&sort=subject&q=one"):
            got = pages(path)
            assert all("the new one" in p and "the old one" not in p for p in got)
    finally:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(inst.stop).result()


def test_acting_on_ticked_messages_of_the_list(page, server):
    with imap(server, "bob") as im:
        for i in range(5):
            im.append("INBOX", None, None, f"From: t@remote.test\r\nSubject: tick {i}\r\n\r\nx\r\n".encode())
    log_in(page, server, "bob")
    page.goto(url(server, "/mail/box?box=INBOX&q=tick&sort=subject&order=asc"))

    def tick(*subjects):
        for s in subjects:
            page.check(f"#messages tr[data-uid]:has-text('{s}') input[name=uid]")

    tick("tick 0", "tick 1")
    page.select_option("#bulk-action", "seen")
    page.click("#bulk-go")
    assert page.url.endswith("/mail/box?box=INBOX")
    with imap(server, "bob") as im:
        im.select("INBOX", readonly=True)
        seen = im.search(None, "SEEN")[1][0].split()
        assert len(seen) == 2
        assert all(b"tick 0" in im.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1]
                   or b"tick 1" in im.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1] for n in seen)
    page.goto(url(server, "/mail/box?box=INBOX&q=tick&sort=subject&order=asc"))
    tick("tick 2", "tick 3", "tick 4")
    page.select_option("#bulk-action", "move")
    page.select_option("#bulk-to", "Junk")
    shot(page, "bulk")
    page.click("#bulk-go")
    with imap(server, "bob") as im:
        im.select("Junk", readonly=True)
        assert len(im.search(None, "SUBJECT", '"tick"')[1][0].split()) == 3
        im.select("INBOX", readonly=True)
        assert len(im.search(None, "SUBJECT", '"tick"')[1][0].split()) == 2
    page.goto(url(server, "/mail/box?box=INBOX&q=tick"))
    tick("tick 0")
    page.select_option("#bulk-action", "delete")
    page.click("#bulk-go")
    assert found(server, "bob", "tick 0", "Trash") is not None and found(server, "bob", "tick 0") is None
    # Nothing ticked, an unknown action, UIDs of nothing: refused, nothing done.
    page.goto(url(server, "/mail/box?box=INBOX&q=tick"))
    token = page.get_attribute("#bulk input[name=csrf]", "value")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    with page.expect_response("**/mail/bulk") as answer:
        page.click("#bulk-go")
    assert answer.value.status == 404
    import http.client
    for body in (f"csrf={token}&box=INBOX&action=explode&uid=1", f"csrf={token}&box=INBOX&action=delete&uid=99999"
                 f"&uid=x&uid=-1"):
        c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        c.request("POST", "/mail/bulk", body, {"Cookie": f"wp_session={cookie}",
                                                "Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        assert r.status in (400, 404) and b"Traceback" not in r.read()
        c.close()
    assert found(server, "bob", "tick 1") is not None
