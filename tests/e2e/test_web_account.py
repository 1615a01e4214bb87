"""WebUser's own-account pages (issue 17 points 5 and 6) in a real browser: Playwright
driving Debian's chromium against a real ``waypost serve``.

``/files``: the Account File Storage an owner manages (folders, upload, delete, the
listing switch), served read-only at ``/~name/``; an upload over the area's limit or
over ``web.max_upload_size`` is answered 413 and leaves nothing; path traversal in the
folder, the file name or the form is refused.  ``/settings``: real name, forwarding
(mail delivered over SMTP then arrives at the forward address) and the password (IMAP
logins follow it).  ``/quota`` and ``/vacation`` (issue 21): the vacation reply is
edited in the account's active Sieve script, the one Debian's ``sieve-connect`` sees
over ManageSieve.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import imaplib
import os
import re
import shutil
import smtplib
import subprocess
import urllib.parse
from email.message import EmailMessage

import pytest

from support import tls
from support.server import WaypostInstance, free_port, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
MAIN = "example.test"
PW = {"alice": "alice-web-pw-1", "carol": "carol-web-pw-1", "frank": "frank-web-pw-1", "gina": "gina-web-pw-1",
      "hank": "hank-web-pw-1", "ivy": "ivy-web-pw-1", "jack": "jack-web-pw-1"}
#: A small form bound, so that the 413 of a body over it is cheap to provoke.
MAX_UPLOAD = 300_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("webacct") / "data", domain=MAIN,
                         auth={"free_failures": 1000, "block_after": 1000}) as inst:
        inst.http_port, inst.sieve_port = free_port(), free_port()
        inst.configure(listen={"http": f"127.0.0.1:{inst.http_port}", "managesieve": f"127.0.0.1:{inst.sieve_port}"},
                       web={"max_upload_size": MAX_UPLOAD})
        for name, pw in PW.items():
            inst.ok("account", "add", f"{name}@{MAIN}", "--password", pw)
        inst.ok("domain", "add", "client.test")
        inst.ok("account", "add", "kim@client.test", "--password", "kim-web-pw-1")
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
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.shots = tmp_path
    yield pg
    ctx.close()


def url(server, path="/"):
    return f"http://127.0.0.1:{server.http_port}{path}"


def shot(page, name):
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def log_in(page, server, name, password=None):
    page.goto(url(server, "/login"))
    page.fill("input[name=login]", name)
    page.fill("input[name=password]", password or PW[name])
    page.click("#login")
    page.wait_for_url("**/mail")


def cli(server, *args):
    # (In a thread: the CLI runs its own asyncio loop, and Playwright's runs in this one.)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(server.ok, *args).result()


def request(server, method, path, host=None, body=b"", headers=None, chunked=False):
    c = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=15)
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    c.putheader("Host", host or f"127.0.0.1:{server.http_port}")
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    if chunked:
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        try:
            for i in range(0, len(body), 16384):
                piece = body[i:i + 16384]
                c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the end: the answer is read below
    else:
        if body:
            c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        if body:
            try:
                c.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def multipart(fields, files):
    boundary = "----waypost-test-boundary"
    out = b""
    for k, v in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").encode()
    for k, (name, content) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def area(server, name):
    return server.data / "files" / MAIN / name


def leftovers(server):
    tmp = server.data / "files" / ".tmp"
    return sorted(os.listdir(tmp)) if tmp.exists() else []


# -- file storage ------------------------------------------------------------------------


def test_folders_upload_delete_and_the_public_page(page, server):
    log_in(page, server, "alice")
    page.click("header a[href='/files']")
    page.fill("#folder-name", "site")
    page.click("#mkdir")
    page.click("#files a:has-text('site/')")
    assert page.inner_text("#crumbs").endswith("site")
    page.set_input_files("#upload-file", files=[
        {"name": "index.html", "mimeType": "text/html", "buffer": b"<h1>made on the web</h1>"},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"n" * 1000}])
    page.click("#upload")
    page.wait_for_selector("#files tr[data-name='notes.txt']")
    assert "1024 of" in page.inner_text("#usage")  # 24 + 1000 octets
    assert page.inner_text("#public") == "/~alice/site/"
    shot(page, "files")
    status, headers, data = request(server, "GET", "/~alice/site/", host=MAIN)
    assert status == 200 and data == b"<h1>made on the web</h1>" and headers["content-type"].startswith("text/html")
    # No listing of a folder without index.html, until the owner turns it on.
    page.goto(url(server, "/files"))
    page.fill("#folder-name", "pub")
    page.click("#mkdir")
    (area(server, "alice") / "pub" / "a.txt").write_bytes(b"a")
    assert request(server, "GET", "/~alice/pub/", host=MAIN)[0] == 404
    page.check("#listing")
    page.click("#save-listing")
    status, _, data = request(server, "GET", "/~alice/pub/", host=MAIN)
    assert status == 200 and b"a.txt" in data
    # Delete: a file, then a folder once empty (refused while it holds something).
    page.goto(url(server, "/files?path=pub"))
    page.click("#files tr[data-name='a.txt'] .delete")
    page.wait_for_url("**/files?path=pub")
    assert page.query_selector("#files tr[data-name='a.txt']") is None
    page.goto(url(server, "/files?path=site"))
    page.goto(url(server, "/files"))
    page.click("#files tr[data-name='site'] .delete")
    assert "not empty" in page.inner_text("#error")
    assert request(server, "GET", "/~alice/site/", host=MAIN)[0] == 200
    page.click("#files tr[data-name='pub'] .delete")
    page.wait_for_url("**/files?path=")
    assert page.query_selector("#files tr[data-name='pub']") is None
    assert leftovers(server) == []


def test_upload_over_the_area_limit_is_413_and_leaves_nothing(page, server):
    cli(server, "files", "set", f"frank@{MAIN}", "--limit", "2K")
    log_in(page, server, "frank")
    page.goto(url(server, "/files"))
    page.set_input_files("#upload-file", files=[{"name": "small.txt", "mimeType": "text/plain", "buffer": b"s" * 1500}])
    page.click("#upload")
    page.wait_for_selector("#files tr[data-name='small.txt']")
    page.set_input_files("#upload-file", files=[{"name": "big.bin", "mimeType": "application/octet-stream",
                                                 "buffer": os.urandom(5000)}])
    with page.expect_response("**/files/upload") as answer:
        page.click("#upload")
    assert answer.value.status == 413
    assert "full" in page.inner_text("#error")
    shot(page, "files-413")
    # Replacing the file with one that fits is fine; one that does not is 413 again,
    # and the old content stays.
    page.set_input_files("#upload-file", files=[{"name": "small.txt", "mimeType": "text/plain",
                                                 "buffer": b"t" * 2100}])
    with page.expect_response("**/files/upload") as answer:
        page.click("#upload")
    assert answer.value.status == 413
    assert sorted(os.listdir(area(server, "frank"))) == ["small.txt"]
    assert (area(server, "frank") / "small.txt").read_bytes() == b"s" * 1500
    assert leftovers(server) == []
    server.expect_log(rf"event=web-files-over-limit.*frank@{re.escape(MAIN)}|frank@{re.escape(MAIN)}.*event=web-files-over-limit")


def test_a_body_over_the_form_bound_is_413_said_length_or_chunked(page, server):
    log_in(page, server, "gina")
    page.goto(url(server, "/files"))
    cookie = "wp_session=" + {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    token = page.get_attribute("input[name=csrf]", "value")
    body, ctype = multipart({"csrf": token, "path": ""}, {"file": ("huge.bin", b"h" * (MAX_UPLOAD + 100_000))})
    headers = {"Cookie": cookie, "Content-Type": ctype}
    status, _, data = request(server, "POST", "/files/upload", body=body, headers=headers)
    assert status == 413 and b"Traceback" not in data
    status, _, data = request(server, "POST", "/files/upload", body=body, headers=headers, chunked=True)
    assert status == 413 and b"Traceback" not in data
    assert not area(server, "gina").exists() or os.listdir(area(server, "gina")) == []
    assert leftovers(server) == []
    # Under the bound, the same hand-made form is stored.
    small, ctype = multipart({"csrf": token, "path": ""}, {"file": ("ok.bin", b"o" * 1000)})
    status, headers_out, _ = request(server, "POST", "/files/upload", body=small,
                                     headers={"Cookie": cookie, "Content-Type": ctype})
    assert status == 303 and (area(server, "gina") / "ok.bin").read_bytes() == b"o" * 1000


def test_path_traversal_is_refused_everywhere(page, server):
    log_in(page, server, "carol")
    page.goto(url(server, "/files"))
    cookie = "wp_session=" + {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    token = page.get_attribute("input[name=csrf]", "value")
    outside = server.data / "files" / MAIN / "evil.txt"
    for path in ("../alice", "../../..", "%2e%2e", "..%2f..", "/etc", "a\\..\\..", "x/../../alice"):
        r = page.goto(url(server, "/files?path=" + urllib.parse.quote(path, safe="")))
        assert r.status == 400 and "Bad path" in page.inner_text("#message"), path
    for folder, name in (("", "../evil.txt"), ("", "..\\evil.txt"), ("..", "evil.txt"), ("%2e%2e", "evil.txt"),
                         ("", ".."), ("", "a\x00b"), ("sub\x00", "x")):
        body, ctype = multipart({"csrf": token, "path": folder}, {"file": (name, b"evil")})
        status, _, data = request(server, "POST", "/files/upload", body=body,
                                  headers={"Cookie": cookie, "Content-Type": ctype})
        assert status == 400 and b"Traceback" not in data, (folder, name)
    for action, name in (("mkdir", ".."), ("mkdir", "../x"), ("delete", "../alice"), ("mkdir", "%2e%2e")):
        form = urllib.parse.urlencode({"csrf": token, "path": "", "name": name}).encode()
        status, _, data = request(server, "POST", f"/files/{action}", body=form,
                                  headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 400 and b"Traceback" not in data, (action, name)
    assert not outside.exists()
    assert not (server.data / "files" / "x").exists()
    assert leftovers(server) == []
    server.expect_log(r"event=web-files-refused")
    # Without the CSRF token nothing is done.
    body, ctype = multipart({"csrf": "wrong", "path": ""}, {"file": ("x.txt", b"x")})
    status, _, _ = request(server, "POST", "/files/upload", body=body, headers={"Cookie": cookie, "Content-Type": ctype})
    assert status == 403 and not (area(server, "carol") / "x.txt").exists()


# -- settings ------------------------------------------------------------------------------


def imap_login_ok(server, address, password):
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as im:
        im.starttls(tls.client_context())
        try:
            im.login(address, password)
        except imaplib.IMAP4.error:
            return False
        return True


def test_settings_real_name_forwarding_and_password(page, server, browser):
    other = browser.new_context()  # alice in another browser: ended by the password change
    other_page = other.new_page()
    log_in(other_page, server, "alice")
    log_in(page, server, "alice")
    page.click("header a[href='/settings']")
    page.fill("#real-name", "Alice  Liddell")
    page.click("#save-name")
    assert page.inner_text("#done") == "Your name was changed."
    assert page.input_value("#real-name") == "Alice Liddell"
    # Forwarding with a copy kept: mail over SMTP reaches carol, and stays here.
    page.fill("#forward", f"carol@{MAIN}")
    page.check("#keep-copy")
    page.click("#save-forward")
    assert page.inner_text("#done") == "Forwarding was changed."
    shot(page, "settings")
    accounts = {a["address"]: a for a in __import__("json").loads(cli(server, "account", "list", "--json"))}
    assert accounts[f"alice@{MAIN}"]["real_name"] == "Alice Liddell"
    msg = EmailMessage()
    msg["From"] = "sender@remote.test"
    msg["To"] = f"alice@{MAIN}"
    msg["Subject"] = "forward me"
    msg.set_content("x")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.send_message(msg)

    def subjects(who):
        return b"".join(p.read_bytes() for p in server.messages(f"{who}@{MAIN}"))

    wait_for(lambda: b"forward me" in subjects("carol") and b"forward me" in subjects("alice"), what="forwarding")
    page.fill("#forward", "")
    page.click("#save-forward")
    assert page.input_value("#forward") == "" and not page.is_checked("#keep-copy")
    # A loop is refused (carol forwards to frank, who forwards back to alice).
    cli(server, "account", "set", f"carol@{MAIN}", "--forward", f"frank@{MAIN}")
    cli(server, "account", "set", f"frank@{MAIN}", "--forward", f"alice@{MAIN}")
    page.fill("#forward", f"carol@{MAIN}")
    page.click("#save-forward")
    assert "loop" in page.inner_text("#error")
    cli(server, "account", "set", f"carol@{MAIN}", "--no-forward")
    cli(server, "account", "set", f"frank@{MAIN}", "--no-forward")
    page.fill("#forward", "not an address")
    page.click("#save-forward")
    assert page.is_visible("#error")
    # Password: the current one is asked for; the new one twice; then IMAP follows.
    page.fill("#current", "wrong-password")
    page.fill("#new-password", "a-new-password-2")
    page.fill("#repeat-password", "a-new-password-2")
    with page.expect_response("**/settings") as answer:
        page.click("#save-password")
    assert answer.value.status == 403 and "wrong" in page.inner_text("#error")
    page.fill("#current", PW["alice"])
    page.fill("#new-password", "a-new-password-2")
    page.fill("#repeat-password", "something else")
    page.click("#save-password")
    assert "differ" in page.inner_text("#error")
    page.fill("#current", PW["alice"])
    page.fill("#new-password", "short")
    page.fill("#repeat-password", "short")
    page.click("#save-password")
    assert "characters" in page.inner_text("#error")
    page.fill("#current", PW["alice"])
    page.fill("#new-password", "a-new-password-2")
    page.fill("#repeat-password", "a-new-password-2")
    page.click("#save-password")
    assert page.inner_text("#done") == "Your password was changed."
    page.goto(url(server, "/mail"))  # this session goes on
    assert page.url.endswith("/mail")
    other_page.goto(url(server, "/mail"))
    assert other_page.url.endswith("/login")
    other.close()
    try:
        assert imap_login_ok(server, f"alice@{MAIN}", "a-new-password-2")
        assert not imap_login_ok(server, f"alice@{MAIN}", PW["alice"])
        assert not any("a-new-password-2" in line for line in server.output)  # never logged
    finally:
        cli(server, "account", "passwd", f"alice@{MAIN}", "--password", PW["alice"])


# -- quota and vacation (issue 21) ----------------------------------------------------------


def smtp(server, sender, rcpt, subject, extra=""):
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail(sender, [rcpt], (f"From: {sender}\r\nTo: {rcpt}\r\n{extra}Subject: {subject}\r\n\r\n"
                                    + ("x" * 78 + "\r\n") * 25).encode())


def test_quota_page_shows_limits_usage_and_the_biggest_mailboxes(page, server):
    cli(server, "account", "set", f"hank@{MAIN}", "--quota", "10K", "--quota-messages", "50")
    for i in range(4):
        smtp(server, "x@remote.test", f"hank@{MAIN}", f"filler {i}")
    wait_for(lambda: len(server.messages(f"hank@{MAIN}")) == 4, what="delivery")
    log_in(page, server, "hank")
    page.click("header a[href='/quota']")
    assert page.inner_text("#quota-storage .limit") == str(10 * 1024)
    used = int(page.inner_text("#quota-storage .used"))
    assert 8000 < used < 10 * 1024 and page.inner_text("#quota-messages .used") == "4"
    assert page.inner_text("#quota-messages .limit") == "50"
    assert "% of what it may" in page.inner_text("#percent") and "delete or archive" in page.inner_text("#percent")
    assert page.inner_text("#by-mailbox tr[data-box] td") == "INBOX"  # the biggest first
    assert int(page.inner_text("#by-mailbox tr[data-box=INBOX] .octets")) == used
    shot(page, "quota")
    cli(server, "account", "set", f"hank@{MAIN}", "--quota", "default", "--quota-messages", "default")
    page.reload()
    assert page.inner_text("#quota-storage .limit") == "unlimited" and page.query_selector("#percent") is None


def sieve_connect(server, tmp_path, who, *args):
    exe = shutil.which("sieve-connect")
    assert exe, "sieve-connect is installed by 'make test' (Debian package sieve-connect)"
    ca = tls.write_ca_file(tmp_path / "ca.pem")
    r, w = os.pipe()
    os.write(w, PW[who].encode() + b"\n")
    os.close(w)
    try:
        out = subprocess.run([exe, "--server", "127.0.0.1", "--port", str(server.sieve_port),
                              "--user", f"{who}@{MAIN}", "--passwordfd", str(r), "--authmech", "PLAIN",
                              "--tlscafile", str(ca), *args],
                             capture_output=True, text=True, timeout=60, pass_fds=(r,),
                             env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    finally:
        os.close(r)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_vacation_page_edits_the_script_managesieve_sees(page, server, tmp_path):
    local = tmp_path / "main.sieve"
    local.write_text('require ["fileinto"];\n# lists go to their folder\n'
                     'if exists "List-Id" { fileinto "Lists"; stop; }\n')
    sieve_connect(server, tmp_path, "hank", "--upload", "--localsieve", str(local), "--remotesieve", "main")
    sieve_connect(server, tmp_path, "hank", "--activate", "--remotesieve", "main")
    log_in(page, server, "hank")
    page.click("header a[href='/vacation']")
    assert page.inner_text("#script") == "main" and not page.is_checked("#enabled")
    page.check("#enabled")
    page.fill("#subject", "Away \"this\" week")
    page.fill("#reason", "I am away until Monday.\nUrgent: call the office.")
    page.fill("#days", "2")
    page.click("#save")
    assert page.inner_text("#done") == "Saved."
    assert page.is_checked("#enabled") and page.input_value("#days") == "2"
    assert page.input_value("#reason") == "I am away until Monday.\nUrgent: call the office."
    shot(page, "vacation")
    # ManageSieve sees the same script: the user's rule kept, the vacation rule added.
    got = tmp_path / "got.sieve"
    sieve_connect(server, tmp_path, "hank", "--download", "--remotesieve", "main", "--localsieve", str(got))
    text = got.read_text()
    assert 'fileinto "Lists"' in text and 'vacation :days 2 :subject "Away \\"this\\" week"' in text
    assert '"main" ACTIVE' in sieve_connect(server, tmp_path, "hank", "--list")
    # It runs: one reply per sender in the period, none to a list.
    smtp(server, f"gina@{MAIN}", f"hank@{MAIN}", "first")
    smtp(server, f"gina@{MAIN}", f"hank@{MAIN}", "second")
    smtp(server, f"gina@{MAIN}", f"hank@{MAIN}", "list mail", "List-Id: <l.example.test>\r\n")
    replies = wait_for(lambda: [p for p in server.messages(f"gina@{MAIN}") if b"Away" in p.read_bytes()],
                       what="the vacation reply")
    server.expect_log(r'event=vacation-skipped .*sender=<gina@example.test> reason="replied within the period"')
    assert len(replies) == 1 and b"Urgent: call the office." in replies[0].read_bytes()
    # Off: the rule stays in the script, but answers no one.
    page.uncheck("#enabled")
    page.click("#save")
    sieve_connect(server, tmp_path, "hank", "--download", "--remotesieve", "main", "--localsieve", str(got))
    assert re.search(r"if false \{\s*vacation", got.read_text())
    smtp(server, f"carol@{MAIN}", f"hank@{MAIN}", "while off")
    wait_for(lambda: any(b"while off" in p.read_bytes() for p in server.messages(f"hank@{MAIN}")), what="delivery")
    assert not any(b"Away" in p.read_bytes() for p in server.messages(f"carol@{MAIN}"))
    # A script that answers from rules of its own is left to a Sieve client.
    local.write_text('require ["vacation"];\nif header :contains "subject" "x" { vacation "own rule"; }\n')
    sieve_connect(server, tmp_path, "hank", "--upload", "--localsieve", str(local), "--remotesieve", "main")
    page.goto(url(server, "/vacation"))
    assert "Sieve client" in page.inner_text("#foreign") and page.query_selector("#save") is None
    cookie = "wp_session=" + {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    token = page.get_attribute("input[name=csrf]", "value")
    form = urllib.parse.urlencode({"csrf": token, "enabled": "on", "reason": "x", "days": "3"}).encode()
    status, _, _ = request(server, "POST", "/vacation", body=form,
                           headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 409
    sieve_connect(server, tmp_path, "hank", "--download", "--remotesieve", "main", "--localsieve", str(got))
    assert got.read_text() == local.read_text()  # untouched


def test_vacation_without_a_script_makes_one_and_bad_input_is_refused(page, server, tmp_path):
    log_in(page, server, "ivy")
    page.goto(url(server, "/vacation"))
    page.check("#enabled")
    page.fill("#reason", "")
    page.click("#save")
    assert "Write the message" in page.inner_text("#error")
    # (The browser itself refuses 0 days in the number field: the server is asked by hand.)
    cookie = "wp_session=" + {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    token = page.get_attribute("input[name=csrf]", "value")
    for days in ("0", "366", "x"):
        form = urllib.parse.urlencode({"csrf": token, "enabled": "on", "reason": "x", "days": days}).encode()
        status, _, data = request(server, "POST", "/vacation", body=form,
                                  headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 400 and b"Days: 1 to 365" in data
    page.fill("#reason", "Back soon.")
    page.fill("#days", "7")
    page.click("#save")
    assert page.inner_text("#done") == "Saved."
    assert '"webuser" ACTIVE' in sieve_connect(server, tmp_path, "ivy", "--list")
    text = cli(server, "sieve", "get", f"ivy@{MAIN}", "webuser")
    assert 'require "vacation";' in text and '"Back soon."' in text
    # Between two days (RFC 5260 currentdate): kept in the script, shown again.
    page.fill("#start", "2026-12-20")
    page.fill("#end", "2027-01-03")
    page.click("#save")
    assert page.input_value("#start") == "2026-12-20" and page.input_value("#end") == "2027-01-03"
    text = cli(server, "sieve", "get", f"ivy@{MAIN}", "webuser")
    assert 'currentdate :value "le" "date" "2027-01-03"' in text and '"relational"' in text
    form = urllib.parse.urlencode({"csrf": token, "enabled": "on", "reason": "x", "days": "7",
                                   "start": "2027-02-01", "end": "2027-01-01"}).encode()
    status, _, data = request(server, "POST", "/vacation", body=form,
                              headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and b"the first day is after the last" in data


def test_filters_page_files_mail_through_the_same_script(page, server, tmp_path):
    cli(server, "mailbox", "create", f"jack@{MAIN}/Lists")
    local = tmp_path / "main.sieve"
    local.write_text('require ["fileinto"];\nif header :contains "subject" "[spam]" { discard; stop; }\n')
    sieve_connect(server, tmp_path, "jack", "--upload", "--localsieve", str(local), "--remotesieve", "main")
    sieve_connect(server, tmp_path, "jack", "--activate", "--remotesieve", "main")
    log_in(page, server, "jack")
    page.click("header a[href='/filters']")
    assert page.inner_text("#script") == "main" and "1 other rule" in page.inner_text("#other")
    page.select_option("#field", "list-id")
    page.fill("#value", "dev.example.org")
    page.select_option("#mailbox", "Lists")
    page.click("#add")
    assert page.inner_text("#done") == "Saved."
    assert page.inner_text("#filters tr[data-index] .mailbox") == "Lists"
    shot(page, "filters")
    got = tmp_path / "got.sieve"
    sieve_connect(server, tmp_path, "jack", "--download", "--remotesieve", "main", "--localsieve", str(got))
    text = got.read_text()
    assert 'discard' in text and 'header :contains "list-id" "dev.example.org"' in text
    smtp(server, "x@remote.test", f"jack@{MAIN}", "from the list", "List-Id: <dev.example.org>\r\n")
    wait_for(lambda: [p for p in (server.mailbox(f"jack@{MAIN}") / ".Lists" / "new").iterdir()]
             if (server.mailbox(f"jack@{MAIN}") / ".Lists" / "new").exists() else None, what="filed into Lists")
    # A rule for a mailbox that is not the user's is refused; removing works once.
    cookie = "wp_session=" + {c["name"]: c["value"] for c in page.context.cookies()}["wp_session"]
    token = page.get_attribute("input[name=csrf]", "value")
    form = urllib.parse.urlencode({"csrf": token, "action": "add", "field": "from", "value": "x",
                                   "mailbox": "../../etc"}).encode()
    status, _, _ = request(server, "POST", "/filters", body=form,
                           headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400
    page.click("#filters tr[data-index] .remove")
    assert page.inner_text("#done") == "Saved." and page.query_selector("#filters tr[data-index]") is None
    sieve_connect(server, tmp_path, "jack", "--download", "--remotesieve", "main", "--localsieve", str(got))
    assert "list-id" not in got.read_text() and "discard" in got.read_text()
    smtp(server, "x@remote.test", f"jack@{MAIN}", "list again", "List-Id: <dev.example.org>\r\n")
    wait_for(lambda: any(b"list again" in p.read_bytes() for p in server.messages(f"jack@{MAIN}")),
             what="delivered to INBOX")


def test_public_links_name_the_accounts_domain(page, server):
    """An account of another domain, logged in at an IP address: the public address of
    its files is on its own domain (``/~kim/`` of 127.0.0.1 would be the main domain's)."""
    log_in(page, server, "kim%client.test", "kim-web-pw-1")
    page.goto(url(server, "/files"))
    page.set_input_files("#upload-file", files=[{"name": "a b.html", "mimeType": "text/html", "buffer": b"<p>kim</p>"}])
    page.click("#upload")
    page.wait_for_selector("#files tr[data-name='a b.html']")
    assert page.inner_text("#public") == f"http://client.test:{server.http_port}/~kim/"
    href = page.get_attribute("#files tr[data-name='a b.html'] a", "href")
    assert href == f"http://client.test:{server.http_port}/~kim/a%20b.html"
    status, _, data = request(server, "GET", "/~kim/a%20b.html", host="client.test")
    assert status == 200 and data == b"<p>kim</p>"
