"""WebUser (issue 17) in a real browser: Playwright driving Debian's chromium
(/usr/bin/chromium, no browser download) against ``listen.http`` and ``listen.https``
of a real ``waypost serve``; mail delivered over SMTP, checked with imaplib.

Seed 001: the WebUser login takes ``name``, ``name@domain`` or ``name%domain``, and a
bare name is in the domain of the host name the browser asked for.  Screenshots of the
main pages are kept under the test's tmp directory.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import imaplib
import re
import smtplib
import ssl
import time
import urllib.parse
from email.message import EmailMessage

import pytest

from support import tls
from support.server import WaypostInstance, free_port, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
MAIN = "example.test"
OTHER = "client.test"
PW = {"alice": "alice-web-pw-1", "bob": "bob-web-pw-1", "carol": "carol-web-pw-1", "admin": "admin-web-pw-1",
      "dave": "dave-web-pw-1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("web") / "data", domain=MAIN,
                         auth={"free_failures": 1000, "block_after": 1000}) as inst:
        inst.http_port, inst.https_port = free_port(), free_port()
        inst.configure(listen={"http": f"127.0.0.1:{inst.http_port}", "https": f"127.0.0.1:{inst.https_port}"})
        inst.ok("domain", "add", OTHER)
        inst.ok("account", "add", f"alice@{MAIN}", "--password", PW["alice"])
        inst.ok("account", "add", f"bob@{OTHER}", "--password", PW["bob"])
        inst.ok("account", "add", f"carol@{MAIN}", "--password", PW["carol"])
        inst.ok("account", "add", f"admin@{MAIN}", "--password", PW["admin"])
        inst.ok("account", "set", f"admin@{MAIN}", "--right", "AllUsers")
        inst.ok("account", "add", f"dave@{MAIN}", "--password", PW["dave"])
        inst.ok("mailbox", "create", f"dave@{MAIN}/Projects")
        inst.start()
        yield inst


@pytest.fixture(scope="module")
def browser(server):  # (after the server: its CLI set-up runs asyncio, Playwright's loop must not be running)
    if not __import__("os").path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox",
                                                                          # every name is 127.0.0.1: no DNS, nothing leaves
                                                                          "--host-resolver-rules=MAP * 127.0.0.1"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server, tmp_path):
    ctx = browser.new_context(ignore_https_errors=False)
    pg = ctx.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.shots = tmp_path
    yield pg
    ctx.close()


def url(server, path="/", host=None):
    return f"http://{host or '127.0.0.1'}:{server.http_port}{path}"


def shot(page, name):
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def log_in(page, server, login, password, host=None):
    page.goto(url(server, "/login", host))
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("#login")


def smtp_send(server, rcpt, msg):
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.send_message(msg, from_addr="sender@remote.test", to_addrs=[rcpt])


def raw_request(server, method, path, host, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    c.putheader("Host", host)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    if body:
        c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    if body:
        c.send(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data


# -- login ---------------------------------------------------------------------------


@pytest.mark.parametrize("login,host,who", [
    ("alice", None, f"alice@{MAIN}"),                 # bare name: the main domain (an IP Host)
    (f"bob%{OTHER}", None, f"bob@{OTHER}"),           # name%domain
    (f"carol@{MAIN}", None, f"carol@{MAIN}"),         # name@domain
    ("bob", OTHER, f"bob@{OTHER}"),                   # bare name: the domain of the Host
])
def test_login_three_ways_and_by_host(page, server, login, host, who):
    name = who.split("@")[0]
    log_in(page, server, login, PW[name], host)
    page.wait_for_url("**/mail")
    assert page.inner_text("#who") == who
    cookies = {c["name"]: c for c in page.context.cookies()}
    sess = cookies["wp_session"]
    assert sess["httpOnly"] and sess["sameSite"] == "Lax" and not sess["secure"]  # plain HTTP
    shot(page, "mailboxes")
    # Logging out ends the session on the server: the old cookie opens nothing.
    old = sess["value"]
    page.click("text=Log out")
    page.wait_for_url("**/login")
    status, headers, _ = raw_request(server, "GET", "/mail", f"127.0.0.1:{server.http_port}",
                                     headers={"Cookie": f"wp_session={old}"})
    assert status == 303 and headers["location"] == "/login"


def test_wrong_password_and_unknown_name_look_the_same(page, server):
    log_in(page, server, "alice", "wrong")
    assert page.inner_text("#error") == "Wrong name or password."
    log_in(page, server, "nobody", "wrong")
    assert page.inner_text("#error") == "Wrong name or password."
    # The one failed-login line of every protocol (fail2ban reads it), proto=web.
    assert any("event=auth-failed" in line and "proto=web" in line and "login=nobody@example.test" in line
               for line in server.output)


def test_session_fixation_a_planted_cookie_is_replaced(page, server):
    page.context.add_cookies([{"name": "wp_session", "value": "planted-by-attacker", "url": url(server)}])
    log_in(page, server, "alice", PW["alice"])
    page.wait_for_url("**/mail")
    value = {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    assert value != "planted-by-attacker" and len(value) >= 40


def test_https_cookie_is_secure(browser, server, tmp_path):
    ctx = browser.new_context(ignore_https_errors=True)  # the test CA is not chromium's
    try:
        pg = ctx.new_page()
        pg.goto(f"https://127.0.0.1:{server.https_port}/login")
        pg.fill("input[name=login]", "alice")
        pg.fill("input[name=password]", PW["alice"])
        pg.click("#login")
        pg.wait_for_url("**/mail")
        sess = {c["name"]: c for c in ctx.cookies()}["wp_session"]
        assert sess["secure"] and sess["httpOnly"]
    finally:
        ctx.close()
    # The certificate is the one of STARTTLS (the test CA's, for the host name).
    c = http.client.HTTPSConnection("127.0.0.1", server.https_port, context=tls.client_context(), timeout=10)
    c.request("GET", "/login", headers={"Host": server.hostname})
    assert c.getresponse().status == 200
    c.close()


def test_a_big_file_twice_over_one_https_connection(server):
    """4 MB over TLS (waypost.tlslayer under uvicorn's protocol: records, flow control),
    twice on one keep-alive connection, byte for byte."""
    area = server.data / "files" / MAIN / "alice"
    area.mkdir(parents=True, exist_ok=True)
    body = bytes(range(256)) * (4 * 4096)
    (area / "big.bin").write_bytes(body)
    c = http.client.HTTPSConnection("127.0.0.1", server.https_port, context=tls.client_context(), timeout=20)
    for _ in range(2):
        c.request("GET", "/~alice/big.bin", headers={"Host": MAIN})
        r = c.getresponse()
        assert r.status == 200 and r.read() == body
    c.close()


# -- bad input -------------------------------------------------------------------------


def test_csrf_without_the_token_is_403(page, server):
    log_in(page, server, "alice", PW["alice"])
    page.wait_for_url("**/mail")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    body = urllib.parse.urlencode({"to": f"carol@{MAIN}", "subject": "x", "body": "x"}).encode()
    for form in (body, body + b"&csrf=wrong-token"):
        status, _, data = raw_request(server, "POST", "/mail/compose", f"127.0.0.1:{server.http_port}", form,
                                      {"Cookie": f"wp_session={cookie}",
                                       "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 403 and b"Traceback" not in data
    status, _, _ = raw_request(server, "POST", "/login", f"127.0.0.1:{server.http_port}",
                               b"login=alice&password=" + PW["alice"].encode(),
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403  # the login form has its token too
    # (the server's output is read by a thread: the line may come a moment after the reply)
    wait_for(lambda: any("web-csrf-refused" in line for line in server.output), what="web-csrf-refused logged")


def test_a_host_we_do_not_serve_is_404(server):
    status, _, data = raw_request(server, "GET", "/login", "www.not-ours.test")
    assert status == 404 and b"does not serve" in data
    status, _, _ = raw_request(server, "POST", "/login", "not-ours.test",
                               b"login=alice&password=x", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 404
    status, _, _ = raw_request(server, "GET", "/login", "bad host name!")
    assert status == 404


# -- mail ------------------------------------------------------------------------------


def test_read_a_message_delivered_over_smtp_and_imap_sees_it_seen(page, server):
    msg = EmailMessage()
    msg["From"] = "Sender <sender@remote.test>"
    msg["To"] = f"alice@{MAIN}"
    msg["Subject"] = "Hello over SMTP"
    msg.set_content("plain body line\n")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="report.pdf")
    smtp_send(server, f"alice@{MAIN}", msg)
    wait_for(lambda: server.messages(f"alice@{MAIN}"), what="delivery")
    log_in(page, server, "alice", PW["alice"])
    page.wait_for_url("**/mail")
    assert int(page.inner_text("tr[data-box=INBOX] .unseen")) >= 1
    page.click("a[href='/mail/box?box=INBOX']")
    page.click("text=Hello over SMTP")
    assert page.inner_text("#subject") == "Hello over SMTP"
    assert "plain body line" in page.inner_text("#body")
    assert "report.pdf" in page.inner_text("#attachments")
    shot(page, "message")
    with page.expect_download() as dl:
        page.click("#attachments a")
    assert open(dl.value.path(), "rb").read() == b"%PDF-1.4 fake"
    uid = int(urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["uid"][0])
    page.click("#flag")
    page.wait_for_selector("#flag:has-text('Unflag')")
    # The same index as IMAP: \Seen from reading, \Flagged from the button.
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as im:
        im.starttls(tls.client_context())
        im.login(f"alice@{MAIN}", PW["alice"])
        im.select("INBOX")
        typ, data = im.uid("FETCH", str(uid), "(FLAGS)")
        assert b"\\Seen" in data[0] and b"\\Flagged" in data[0]
        # Move from the web: IMAP sees it leave.
        page.select_option("#move-to", "Junk")
        page.click("#move")
        page.wait_for_url("**/mail/box?box=INBOX")
        im.noop()
        typ, data = im.uid("SEARCH", "ALL")
        assert str(uid).encode() not in data[0].split()
        im.select("Junk")
        typ, data = im.search(None, "SUBJECT", '"Hello over SMTP"')
        assert data[0]
    page.goto(url(server, "/mail/raw?box=Junk&uid=1"))
    assert "Subject: Hello over SMTP" in page.inner_text("body")


def test_script_injection_in_html_mail_does_not_run(page, server):
    msg = EmailMessage()
    msg["From"] = "Evil <evil@remote.test>"
    msg["To"] = f"carol@{MAIN}"
    msg["Subject"] = "<script>window.pwned=1</script> Offer"
    msg.set_content("text part")
    msg.add_alternative(
        "<p id=hi>Hi</p><script>window.pwned=1;alert(1)</script>"
        "<img src=x onerror=\"window.pwned=2;alert(2)\">"
        "<a href=\"javascript:alert(3)\" id=js>click</a>"
        "<svg onload=\"alert(4)\"></svg><iframe src=\"javascript:alert(5)\"></iframe>"
        "<img src=\"http://tracker.invalid/p.gif\" id=remote>", subtype="html")
    smtp_send(server, f"carol@{MAIN}", msg)
    wait_for(lambda: server.messages(f"carol@{MAIN}"), what="delivery")
    log_in(page, server, "carol", PW["carol"])
    page.wait_for_url("**/mail")
    page.goto(url(server, "/mail/box?box=INBOX"))
    page.click("#messages a")
    page.wait_for_selector("#body")
    shot(page, "html-message")
    assert page.evaluate("window.pwned === undefined")
    page.click("#js") if page.query_selector("#js") else None
    assert page.dialogs == []
    assert page.evaluate("window.pwned === undefined")
    html = page.inner_html("#body")
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html
    assert "tracker.invalid" not in html and page.is_visible("#images-blocked")
    assert "<script>window.pwned=1</script> Offer" == page.inner_text("#subject")  # shown as text


def test_foreign_mailbox_is_the_same_404_as_a_missing_one(page, server):
    log_in(page, server, "carol", PW["carol"])
    page.wait_for_url("**/mail")
    answers = []
    for box in ("~alice/INBOX", "NoSuchBox", "~nobody/INBOX", "../../etc"):
        r = page.goto(url(server, "/mail/box?box=" + urllib.parse.quote(box, safe="")))
        answers.append((r.status, page.inner_text("#message")))
        r = page.goto(url(server, f"/mail/msg?box={urllib.parse.quote(box, safe='')}&uid=1"))
        assert r.status == 404
    assert len(set(answers)) == 1 and answers[0][0] == 404


def test_send_found_over_imap_and_in_sent(page, server):
    log_in(page, server, "alice", PW["alice"])
    page.wait_for_url("**/mail")
    page.click("text=New message")
    page.fill("input[name=to]", f"bob@{OTHER}")
    page.fill("input[name=subject]", "From the web")
    page.fill("textarea[name=body]", "sent with WebUser\n")
    page.set_input_files("input[name=attachment]", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"attached notes"}])
    shot(page, "compose")
    page.click("#send")
    page.wait_for_selector("#sent")
    assert "saved in Sent" in page.inner_text("#sent")

    def found(account, password, box):
        with imaplib.IMAP4("127.0.0.1", server.imap_port) as im:
            im.starttls(tls.client_context())
            im.login(account, password)
            im.select(box)
            typ, data = im.search(None, "SUBJECT", '"From the web"')
            if not data[0]:
                return None
            typ, body = im.fetch(data[0].split()[-1], "(BODY.PEEK[])")
            return body[0][1]

    got = wait_for(lambda: found(f"bob@{OTHER}", PW["bob"], "INBOX"), what="delivery to bob")
    assert b"sent with WebUser" in got and b"notes.txt" in got and b"From: alice@example.test" in got
    assert b"with HTTPA" in got
    assert found(f"alice@{MAIN}", PW["alice"], "Sent")


def test_send_to_a_refused_recipient_says_so(page, server):
    log_in(page, server, "alice", PW["alice"])
    page.wait_for_url("**/mail")
    page.goto(url(server, "/mail/compose"))
    page.fill("input[name=to]", f"nobody@{MAIN}")
    page.fill("input[name=subject]", "x")
    page.click("#send")
    assert "nobody@example.test" in page.inner_text("#error")
    page.fill("input[name=to]", "not an address@@")
    page.click("#send")
    assert page.is_visible("#error")


# -- file storage ------------------------------------------------------------------------


def test_file_storage_by_path_and_personal_site_and_traversal(server):
    area = server.data / "files" / MAIN / "alice"
    site = area / "site"
    site.mkdir(parents=True, exist_ok=True)
    (area / "index.html").write_bytes(b"<h1>alice home</h1>")
    (site / "index.html").write_bytes(b"<h1>alice site</h1>")
    (site / "style.css").write_bytes(b"h1{}")
    (area / "secret").mkdir(exist_ok=True)
    (area / "secret" / "a.txt").write_bytes(b"x")
    host = f"127.0.0.1:{server.http_port}"
    status, headers, data = raw_request(server, "GET", "/~alice/", MAIN)
    assert status == 200 and data == b"<h1>alice home</h1>" and headers["content-type"].startswith("text/html")
    status, headers, data = raw_request(server, "GET", "/~alice/site/style.css", MAIN)
    assert status == 200 and headers["content-type"].startswith("text/css")
    status, headers, _ = raw_request(server, "GET", "/~alice/site", MAIN)
    assert status == 301 and headers["location"] == "/~alice/site/"
    # No listing of a folder without index.html (the owner did not ask for one).
    assert raw_request(server, "GET", "/~alice/secret/", MAIN)[0] == 404
    for bad in ("/~alice/../carol/x", "/~alice/%2e%2e/%2e%2e/etc/passwd", "/~alice/site/%00x",
                "/~alice/..%2f..%2fwaypost.toml", "/~nobody/"):
        status, _, data = raw_request(server, "GET", bad, MAIN)
        assert status == 404 and b"Traceback" not in data, bad
    # A personal site: http://alice.example.test/ through the seed's Router records.
    table = server.data / "router.txt"
    table.write_text(f"*.{MAIN} = *@{MAIN}\n<LoginPage%*@{MAIN}> = *@{MAIN}\n")
    # (In a thread: the CLI runs its own asyncio loop, and Playwright's runs in this one.)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(server.ok, "router", "import", str(table)).result()
    status, _, data = wait_for(lambda: (r := raw_request(server, "GET", "/site/", f"alice.{MAIN}:{server.http_port}"))
                               [0] == 200 and r, what="the router records")
    assert data == b"<h1>alice site</h1>"
    assert raw_request(server, "GET", "/../secret/a.txt", f"alice.{MAIN}")[0] == 404
    assert raw_request(server, "POST", "/~alice/", MAIN)[0] == 405
    assert raw_request(server, "GET", "/~alice/", host)[0] in (200, 404)  # an IP literal host


def _cli(server, *args):
    # (In a thread: the CLI runs its own asyncio loop, and Playwright's runs in this one.)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(server.ok, *args).result()


def test_server_rules_apply_to_web_mail(page, server):
    """The server-wide rules see web mail as they see SMTP AUTH submissions: a rule
    that adds a field and stores a copy, and one that rejects at "RCPT"."""
    _cli(server, "rule", "add", f'webtag: authenticated and sender is alice@{MAIN} and header:Subject is "ruled" '
         f'=> add-header "X-Web-Rule: yes"; store ~carol/audit')
    _cli(server, "rule", "add", 'nobody-else: recipient is blocked@remote.test => reject "not to them"')
    try:
        log_in(page, server, "alice", PW["alice"])
        page.wait_for_url("**/mail")
        page.goto(url(server, "/mail/compose"))
        page.fill("input[name=to]", "blocked@remote.test")
        page.fill("input[name=subject]", "x")
        page.click("#send")
        assert "not to them" in page.inner_text("#error")
        page.fill("input[name=to]", f"bob@{OTHER}")
        page.fill("input[name=subject]", "ruled")
        page.click("#send")
        page.wait_for_selector("#sent")
        copy = wait_for(lambda: [p for p in (server.data / "mail" / MAIN / "carol" / ".audit").glob("*/*")
                                 if p.is_file()], what="the rule's copy")
        assert b"X-Web-Rule: yes" in copy[0].read_bytes()
    finally:
        _cli(server, "rule", "remove", "webtag")
        _cli(server, "rule", "remove", "nobody-else")


def test_imap_idle_wakes_on_a_web_change(page, server):
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = f"carol@{MAIN}"
    msg["Subject"] = "idle wake"
    msg.set_content("x")
    smtp_send(server, f"carol@{MAIN}", msg)
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as im:
        im.starttls(tls.client_context())
        im.login(f"carol@{MAIN}", PW["carol"])
        im.select("INBOX")
        wait_for(lambda: im.uid("SEARCH", "SUBJECT", '"idle wake"')[1][0], what="delivery")
        uid = int(im.uid("SEARCH", "SUBJECT", '"idle wake"')[1][0].split()[-1])
        tag = im._new_tag().decode()
        im.send(f"{tag} IDLE\r\n".encode())
        assert im.readline().startswith(b"+")
        log_in(page, server, "carol", PW["carol"])
        page.wait_for_url("**/mail")
        page.goto(url(server, f"/mail/msg?box=INBOX&uid={uid}"))
        # Reading set \Seen: the IDLE session is told at once, then of the flag.
        im.sock.settimeout(5)
        line = im.readline()
        assert b"FETCH" in line and b"\\Seen" in line
        page.click("#flag")
        line = im.readline()
        assert b"FETCH" in line and b"\\Flagged" in line
        im.send(b"DONE\r\n")
        while not im.readline().startswith(tag.encode()):
            pass


def imap_login(server, who):
    im = imaplib.IMAP4("127.0.0.1", server.imap_port)
    im.starttls(tls.client_context())
    im.login(f"{who}@{MAIN}", PW[who])
    return im


def test_grant_subscribe_alias_and_the_grantee_sees_it(browser, server, tmp_path):
    """dave grants lr on Projects to carol from the web; carol sees it over IMAP and, once
    subscribed from the web, in her mailbox list with its unread count; an alias
    ``proj`` stands for it."""
    with imap_login(server, "dave") as im:
        im.append("Projects", None, None, b"From: x@remote.test\r\nSubject: project plan\r\n\r\nplan\r\n")
    ctx_d, ctx_c = browser.new_context(), browser.new_context()
    try:
        d, c = ctx_d.new_page(), ctx_c.new_page()
        d.shots = c.shots = tmp_path
        log_in(d, server, "dave", PW["dave"])
        d.wait_for_url("**/mail")
        d.click("tr[data-box=Projects] a.share")
        d.fill("input[name=identifier]", "carol")
        d.fill("input[name=rights]", "lr")
        d.click("#grant")
        assert d.inner_text(f"tr[data-ident='carol@{MAIN}'] .rights") == "lr"
        shot(d, "acl")
        with imap_login(server, "carol") as im:
            typ, data = im.list('""', '"~dave/*"')
            assert any(b"~dave/Projects" in line for line in data), data
            typ, data = im.select('"~dave/Projects"', readonly=True)
            assert typ == "OK" and data[0] == b"1"
        log_in(c, server, "carol", PW["carol"])
        c.wait_for_url("**/mail")
        c.click("#sharing")
        c.fill("#subscribe-name", "~dave/Projects")
        c.click("#subscribe")
        assert "~dave/Projects" in c.inner_text("#subscriptions")
        c.fill("#alias-name", "proj")
        c.fill("#alias-target", "~dave/Projects")
        c.click("#add-alias")
        assert "proj" in c.inner_text("#aliases")
        shot(c, "sharing")
        c.goto(url(server, "/mail"))
        assert c.inner_text("tr[data-box='~dave/Projects'] .unseen") == "1"
        assert c.inner_text("tr[data-box=proj] .unseen") == "1"
        c.click("tr[data-box=proj] a")
        c.click("text=project plan")
        assert "plan" in c.inner_text("#body")
        # carol has lr only: no flag, no delete (the same 404 as a missing message).
        c.click("#delete")
        assert c.inner_text("#message").startswith("No such message")
        # A bad alias, a loop, an unknown account: said, nothing stored.
        c.goto(url(server, "/mail/sharing"))
        c.fill("#alias-name", "x")
        c.fill("#alias-target", "~alice/INBOX")
        c.click("#add-alias")
        assert "no mailbox ~alice/INBOX" in c.inner_text("#error")
        # Taking the rights away: gone from her list, and the same 404 as a missing mailbox.
        d.goto(url(server, "/mail/acl?box=Projects"))
        d.fill("input[name=identifier]", "carol")
        d.fill("input[name=rights]", "")
        d.click("#grant")
        c.goto(url(server, "/mail"))
        assert c.query_selector("tr[data-box='~dave/Projects']") is None
        r = c.goto(url(server, "/mail/box?box=proj"))
        assert r.status == 404
        # Sharing someone else's mailbox is not hers to do.
        assert c.goto(url(server, "/mail/acl?box=~dave/Projects")).status == 404
    finally:
        ctx_d.close()
        ctx_c.close()


def test_administrator_open_mailbox(page, server):
    """Seed 000/004: an administrator with AllUsers opens ~username/INBOX from the
    "Open Mailbox" field without logging in as that user; a user without the right
    gets the same 404 as for a missing mailbox."""
    with imap_login(server, "dave") as im:
        im.append("INBOX", None, None, b"From: x@remote.test\r\nSubject: for dave only\r\n\r\nhi\r\n")
    log_in(page, server, "admin", PW["admin"])
    page.wait_for_url("**/mail")
    page.fill("#open-mailbox", "~dave/INBOX")
    page.click("#open")
    assert "for dave only" in page.inner_text("#messages")
    shot(page, "open-mailbox")
    page.click("text=Log out")
    log_in(page, server, "carol", PW["carol"])
    page.wait_for_url("**/mail")
    page.fill("#open-mailbox", "~dave/INBOX")
    page.click("#open")
    assert page.inner_text("#message") == "No such mailbox."


def test_alias_login_and_a_disabled_account(page, server):
    """An alias logs in as its account (Router, as IMAP); disabling an account refuses
    its logins and ends the sessions it has."""
    _cli(server, "alias", "add", f"eve@{MAIN}", "dave")
    log_in(page, server, "eve", PW["dave"])
    page.wait_for_url("**/mail")
    assert page.inner_text("#who") == f"dave@{MAIN}"
    _cli(server, "account", "set", f"dave@{MAIN}", "--disable")
    try:
        r = page.goto(url(server, "/mail"))
        assert page.url.endswith("/login")
        log_in(page, server, "dave", PW["dave"])
        assert page.inner_text("#error") == "Wrong name or password."
    finally:
        _cli(server, "account", "set", f"dave@{MAIN}", "--enable")


def test_malformed_mime_and_a_very_long_subject_still_render(page, server):
    words = ["S" * 99] * 50
    long_subject = " ".join(words)  # 5,000 characters, folded (RFC 5322 §2.2.3)
    raw = (f"From: =?utf-8?B?broken?= <odd@remote.test>\r\nTo: carol@{MAIN}\r\nSubject: "
           + "\r\n ".join(words) + "\r\n"
           "Content-Type: multipart/mixed; boundary=\"nope\"\r\nMIME-Version: 1.0\r\n\r\n"
           "--wrong\r\nContent-Type: text/html; charset=x-unknown-charset\r\n\r\n<b>bold<i>unclosed\r\n"
           "--nope\r\nContent-Type: application/octet-stream; name=\"<img src=x onerror=alert(1)>.exe\"\r\n"
           "Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n").encode()
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail("odd@remote.test", [f"carol@{MAIN}"], raw)
    log_in(page, server, "carol", PW["carol"])
    page.wait_for_url("**/mail")
    wait_for(lambda: page.goto(url(server, "/mail/box?box=INBOX")) and "SSSS" in page.inner_text("#messages"),
             what="delivery")
    row = page.inner_text("#messages tr[data-uid]:has-text('SSSS') a")  # the subject cell
    assert row.rstrip().endswith("…") and len(row) < 500  # cut in the list
    page.click("text=SSSS")
    assert page.inner_text("#subject") == long_subject
    assert "onerror" in page.inner_text("#attachments")  # a file name shown as text
    assert page.dialogs == [] and page.evaluate("window.pwned === undefined")
    assert "Traceback" not in page.content()


def test_sessions_work_across_workers(tmp_path_factory):
    """Sessions live in the database: with two workers, every request of a logged-in
    client is served whichever worker accepts it."""
    inst = WaypostInstance(tmp_path_factory.mktemp("web2") / "data", domain=MAIN, server={"workers": 2})
    port = free_port()

    def setup():  # (in a thread: the CLI runs asyncio, and Playwright's loop runs in this one)
        inst.configure(listen={"http": f"127.0.0.1:{port}"})
        inst.ok("account", "add", f"alice@{MAIN}", "--password", PW["alice"])
        inst.start()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(setup).result()
    try:
        # start() returns when the first worker is ready; both must be, for both to accept.
        inst.expect_log("worker-ready", count=2, timeout=20)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/login")
        r = c.getresponse()
        page = r.read().decode()
        token = page.split('name="csrf" value="')[1].split('"')[0]
        login_cookie = r.getheader("set-cookie").split(";")[0]
        c.request("POST", "/login", urllib.parse.urlencode({"csrf": token, "login": "alice",
                                                             "password": PW["alice"]}),
                  {"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie})
        r = c.getresponse()
        r.read()
        assert r.status == 303
        cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("wp_session=")][0]
        cookie = cookie.split(";")[0]
        c.close()
        for _ in range(30):  # a new connection each time: both workers accept some
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/mail", headers={"Cookie": cookie})
            r = c.getresponse()
            assert r.status == 200 and b"alice@example.test" in r.read()
            c.close()
        wait_for(lambda: sum("worker-ready" in line for line in inst.output) == 2, what="both workers ready")
    finally:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(inst.stop).result()


def test_a_nul_in_a_form_field_is_refused_and_nothing_stored(page, server):
    """No browser sends U+0000 in a form (PostgreSQL could not store it): 400 and a
    log line, the account unchanged; the same before logging in."""
    log_in(page, server, "carol", PW["carol"])
    page.wait_for_url("**/mail")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    host = f"127.0.0.1:{server.http_port}"
    _, _, html = raw_request(server, "GET", "/settings", host, headers={"Cookie": f"wp_session={cookie}"})
    csrf = re.search(rb'name="csrf" value="([^"]+)"', html).group(1).decode()
    form = {"Cookie": f"wp_session={cookie}", "Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode({"csrf": csrf, "action": "name", "real_name": "Car\x00ol"}).encode()
    status, _, data = raw_request(server, "POST", "/settings", host, body, form)
    assert status == 400 and b"Traceback" not in data
    assert "\\u0000" not in _cli(server, "account", "list", "--json")
    status, _, _ = raw_request(server, "POST", "/login", host, b"login=car%00ol&password=x",
                               {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400
    server.expect_log(r"event=web-form-refused")  # the line reaches the test through a reader thread


def test_a_session_does_not_pass_to_a_new_account_of_the_same_name(page, server):
    """The account a session was opened for is removed and another made under its
    name: the old cookie opens nothing (the name is reused, the account is not the same)."""
    _cli(server, "account", "add", f"erin@{MAIN}", "--password", "erin-web-pw-1")
    log_in(page, server, "erin", "erin-web-pw-1")
    page.wait_for_url("**/mail")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    host = f"127.0.0.1:{server.http_port}"
    assert raw_request(server, "GET", "/settings", host, headers={"Cookie": f"wp_session={cookie}"})[0] == 200
    _cli(server, "account", "remove", f"erin@{MAIN}")
    _cli(server, "account", "add", f"erin@{MAIN}", "--password", "erin-web-pw-2")
    status, headers, _ = raw_request(server, "GET", "/settings", host, headers={"Cookie": f"wp_session={cookie}"})
    assert status == 303 and headers["location"].endswith("/login"), (status, headers)


def test_a_message_the_store_cannot_read_is_an_error_page_and_the_worker_goes_on(page, server):
    """The read page's values are worked out in the same trip to a thread as the session
    (one hop); an exception there (here: the message's file is a directory) reaches the
    page's error handler as before: a 500 page and one log line, no traceback, and the
    next page is served."""
    _cli(server, "account", "add", f"frank@{MAIN}", "--password", "frank-web-pw-1")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail("a@remote.test", [f"frank@{MAIN}"], f"From: a@remote.test\r\nSubject: unreadable\r\n\r\nbody\r\n")
    log_in(page, server, "frank", "frank-web-pw-1")
    page.wait_for_url("**/mail")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    host, headers = f"127.0.0.1:{server.http_port}", {"Cookie": f"wp_session={cookie}"}
    wait_for(lambda: b"unreadable" in raw_request(server, "GET", "/mail/box?box=INBOX", host, headers=headers)[2],
             what="delivery")
    status, _, body = raw_request(server, "GET", "/mail/msg?box=INBOX&uid=1", host, headers=headers)
    assert status == 200 and b"unreadable" in body
    [path] = server.messages(f"frank@{MAIN}")
    path.unlink()
    path.mkdir()  # the same name, now a directory: reading it raises IsADirectoryError
    status, _, body = raw_request(server, "GET", "/mail/msg?box=INBOX&uid=1", host, headers=headers)
    assert status == 500 and b"Traceback" not in body and b"Error." in body, (status, body[:300])
    server.expect_log(r"event=web-error path=/mail/msg error=IsADirectoryError")
    status, _, body = raw_request(server, "GET", "/mail", host, headers=headers)
    assert status == 200 and b"INBOX" in body
