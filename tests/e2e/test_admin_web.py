"""The admin pages (issue 18 point 4) in a real browser: Playwright driving Debian's
chromium against a real ``waypost serve``.  A server administrator creates a domain and
an account, edits the Router table (a bad line is shown with its number and nothing
changes; a good one is used at once and the explainer shows the new route), holds and
releases a domain's queue with a message in it; a domain administrator sees and changes
only their domain; an ordinary account gets 403; a form without its CSRF token is
refused.  Screenshots are kept under the test's tmp directory (docs/admin-web.md)."""

from __future__ import annotations

import http.client
import os
import smtplib
import urllib.parse

import pytest

from support.server import WaypostInstance, free_port, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
A, B = "a.test", "b.test"
PW = {"root": "root-admin-pw-1", "boss": "boss-admin-pw-1", "user": "user-admin-pw-1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("admin") / "data", domain="example.test",
                         auth={"free_failures": 1000, "block_after": 1000}) as inst:
        inst.http_port = free_port()
        inst.configure(listen={"http": f"127.0.0.1:{inst.http_port}"}, delivery={"smtp_port": free_port()},
                       dns={"nameservers": [f"127.0.0.1:{free_port()}"]})
        inst.ok("domain", "add", A)
        inst.ok("domain", "add", B)
        inst.ok("account", "add", "root@example.test", "--password", PW["root"])
        inst.ok("account", "set", "root@example.test", "--right", "AllUsers")
        inst.ok("account", "add", f"boss@{A}", "--password", PW["boss"])
        inst.ok("account", "set", f"boss@{A}", "--admin-domain", A)
        inst.ok("account", "add", f"user@{A}", "--password", PW["user"])
        inst.ok("account", "add", f"other@{B}", "--password", "other-admin-pw-1")
        inst.start()
        yield inst


@pytest.fixture(scope="module")
def browser(server):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--host-resolver-rules=MAP * 127.0.0.1"])
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.shots = tmp_path
    yield pg
    ctx.close()


def url(server, path):
    return f"http://127.0.0.1:{server.http_port}{path}"


def log_in(page, server, login, password):
    page.goto(url(server, "/login"))
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_url("**/mail")


def shot(page, name):
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def test_a_server_administrator_creates_a_domain_and_an_account(page, server):
    log_in(page, server, "root@example.test", PW["root"])
    page.goto(url(server, "/admin"))
    page.wait_for_url("**/admin/domains")
    page.fill("#add-domain input[name=name]", "new.test")
    page.fill("#add-domain input[name=aliases]", "www.new.test")
    page.click("#add-domain button")
    page.wait_for_selector("tr[data-domain='new.test']")
    shot(page, "admin-domains")
    page.fill("#add-domain input[name=name]", "bad..name")
    page.click("#add-domain button")
    assert "bad..name" in page.inner_text("#error") or "name" in page.inner_text("#error")
    page.goto(url(server, "/admin/domain?name=new.test"))
    page.fill("#add-account input[name=address]", "info")
    page.fill("#add-account input[name=password]", "info-admin-pw-1")
    page.fill("#add-account input[name=real_name]", "Info Desk")
    page.click("#add-account button")
    page.wait_for_selector("tr[data-address='info@new.test']")
    page.fill("#add-forwarder input[name=address]", "loop")
    page.fill("#add-forwarder input[name=target]", "loop@new.test")
    page.click("#add-forwarder button")
    assert "forwarding loop" in page.inner_text("#error")
    shot(page, "admin-domain")
    page.fill("#domain-settings input[name=ips]", "127.0.0.7 bogus")
    page.click("#domain-settings button")
    assert "ips" in page.inner_text("#error")
    page.fill("#domain-settings input[name=ips]", "127.0.0.7")
    page.click("#domain-settings button")
    page.wait_for_url("**/admin/domain?name=new.test")
    assert '"127.0.0.7"' in server.ok("domain", "list", "--json")
    # The account is real: it logs in over IMAP... (the CLI sees it, with its mailboxes)
    assert "info@new.test" in server.ok("account", "list", "--domain", "new.test")
    assert (server.data / "mail" / "new.test" / "info").exists()
    page.goto(url(server, "/admin/account?address=info@new.test"))
    page.uncheck("#account-settings input[name=enabled]")
    page.click("#account-settings button")
    page.wait_for_url("**/admin/account?address=info%40new.test")
    assert not page.is_checked("#account-settings input[name=enabled]")
    server.expect_log(r"event=admin-change actor=admin:root@example\.test action=account-set object=info@new\.test")


def test_the_router_table_is_edited_in_place_and_the_explainer_shows_the_route(page, server):
    log_in(page, server, "root@example.test", PW["root"])
    page.goto(url(server, "/admin/router"))
    page.fill("#router textarea", f"<sales@{A}> = user@{A}\nthis line is no record\n")
    page.click("#router button")
    err = page.inner_text("#error")
    assert "line 2" in err and "Nothing was changed" in err
    assert server.ok("router", "export").strip() == ""
    shot(page, "admin-router-error")
    page.fill("#router textarea", f"<sales@{A}> = user@{A}\n")
    page.click("#router button")
    page.wait_for_selector("#saved")
    assert server.ok("router", "export").strip() == f"<sales@{A}> = user@{A}"
    page.fill("#explain input[name=address]", f"sales@{A}")
    page.click("#explain button")
    page.wait_for_selector("#trace")
    assert f"user@{A}" in page.inner_text("#deliveries") and "local" in page.inner_text("#deliveries")
    shot(page, "admin-router")
    # At once for mail too: the running server delivers sales@ to user@.
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as c:
        c.sendmail("someone@remote.test", [f"sales@{A}"], "Subject: routed\r\n\r\nbody\r\n")
    wait_for(lambda: server.messages(f"user@{A}"), what="delivery by the new table")


def test_hold_and_release_a_domains_queue_with_a_message_in_it(page, server):
    log_in(page, server, "root@example.test", PW["root"])
    page.goto(url(server, "/admin/queue"))
    page.fill("#hold input[name=domain]", "remote.test")
    page.click("#hold button")
    page.wait_for_selector("#holds tr[data-domain='remote.test']")
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as c:
        c.sendmail(f"user@{A}", ["someone@remote.test"], "Subject: held\r\n\r\nbody\r\n")
    qid = wait_for(lambda: server.queue_ids(), what="a queued message")[0]
    page.goto(url(server, "/admin/queue?target=mx:remote.test"))
    row = page.locator(f"tr[data-id='{qid}']")
    assert row.locator(".state").inner_text() == "held"
    shot(page, "admin-queue")
    page.click(f"tr[data-id='{qid}'] a")
    assert "someone@remote.test" in page.inner_text("#recipients")
    page.goto(url(server, "/admin/queue"))
    page.click("#holds tr[data-domain='remote.test'] button")
    page.wait_for_selector("#holds tr[data-domain='remote.test']", state="detached")
    db = server.db()
    try:
        m = db.queue_get(qid)
        assert m is not None and not any(r.held for r in m.recipients)
    finally:
        db.close()
    # The messages a filter chooses, held and released together.
    page.goto(url(server, "/admin/queue?recipient=someone%40remote.test"))
    page.click("#hold-matching")
    page.wait_for_url("**/admin/queue?recipient=someone%40remote.test")
    assert page.locator(f"tr[data-id='{qid}'] .state").inner_text() == "held"
    page.click("#release-matching")
    page.wait_for_url("**/admin/queue?recipient=someone%40remote.test")
    assert page.locator(f"tr[data-id='{qid}'] .state").inner_text() != "held"
    page.goto(url(server, "/admin/queue"))
    page.click(f"tr[data-id='{qid}'] form:has(input[value=delete]) button")
    page.wait_for_selector(f"tr[data-id='{qid}']", state="detached")
    assert qid not in server.queue_ids()


def test_a_domain_administrator_sees_only_their_domain(page, server):
    log_in(page, server, f"boss@{A}", PW["boss"])
    page.goto(url(server, "/admin/domains"))
    names = page.locator("#domains tr[data-domain]").evaluate_all("rows => rows.map(r => r.dataset.domain)")
    assert names == [A]
    assert page.locator("#add-domain").count() == 0  # no new domains
    assert page.locator("header a[href='/admin/router']").count() == 0
    shot(page, "admin-domain-admin")
    for path in (f"/admin/domain?name={B}", f"/admin/account?address=other@{B}", "/admin/router"):
        response = page.goto(url(server, path))
        assert response.status == 403, path
    page.goto(url(server, f"/admin/domain?name={A}"))
    page.fill("#add-account input[name=address]", "helper")
    page.fill("#add-account input[name=password]", "helper-admin-pw-1")
    page.click("#add-account button")
    page.wait_for_selector(f"tr[data-address='helper@{A}']")
    # The ACL of a mailbox of A (from the account page), but not of B.
    page.goto(url(server, f"/admin/account?address=user@{A}"))
    page.click("#mailboxes a:text('INBOX')")
    page.fill("#grant input[name=identifier]", "boss")
    page.fill("#grant input[name=rights]", "lrs")
    page.click("#grant button")
    assert page.locator(f"#acl tr[data-ident='boss@{A}'] .rights").inner_text() == "lrs"
    assert page.goto(url(server, f"/admin/acl?mailbox=other@{B}/INBOX")).status == 403
    # A form naming B, sent from A's page, is refused and changes nothing.
    page.goto(url(server, f"/admin/domain?name={A}"))
    page.evaluate(f"document.querySelector('#add-account input[name=domain]').value = '{B}'")
    page.fill("#add-account input[name=address]", "intruder")
    page.fill("#add-account input[name=password]", "intruder-pw-1")
    page.click("#add-account button")
    assert page.locator("h1").inner_text() == "Forbidden"
    assert "intruder" not in server.ok("account", "list", "--domain", B)


def test_an_ordinary_account_and_a_missing_csrf_token_are_refused(page, server):
    log_in(page, server, f"user@{A}", PW["user"])
    for path in ("/admin", "/admin/domains", "/admin/queue", f"/admin/domain?name={A}"):
        assert page.goto(url(server, path)).status == 403, path
    # An administrator's session, but a form without its CSRF token (another site's form).
    page.context.clear_cookies()
    log_in(page, server, "root@example.test", PW["root"])
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "wp_session")
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    body = urllib.parse.urlencode({"action": "add", "name": "csrf.test"})
    conn.request("POST", "/admin/domains", body=body, headers={
        "Cookie": f"wp_session={cookie}", "Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 403
    conn.close()
    assert "csrf.test" not in server.ok("domain", "list")



def test_rules_are_reordered_and_gateway_and_sharing_are_set(page, server):
    log_in(page, server, "root@example.test", PW["root"])
    page.goto(url(server, "/admin/rules"))
    for text in ("one: size over 100000000 => discard", "two: size over 200000000 => discard"):
        page.fill("#add-rule input[name=text]", text)
        page.click("#add-rule button")
        page.wait_for_url("**/admin/rules")
    page.fill("#add-rule input[name=text]", "bad: size over 1 => store ~nobody/x")
    page.click("#add-rule button")
    assert "nobody" in page.inner_text("#error")
    page.goto(url(server, "/admin/rules"))
    order = lambda: page.locator("#rules tr[data-name]").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert order() == ["one", "two"]
    page.click("#rules tr[data-name='two'] button.up")
    page.wait_for_url("**/admin/rules")
    assert order() == ["two", "one"]
    assert [line.split(":")[0] for line in server.ok("rule", "export").splitlines()] == ["two", "one"]
    shot(page, "admin-rules")
    page.click("#rules tr[data-name='one'] button.remove")
    page.wait_for_url("**/admin/rules")
    assert order() == ["two"]
    # Gateway: a bad line by number, nothing changed; next-hop AUTH set (never shown back).
    page.goto(url(server, "/admin/gateway"))
    page.fill("#gateway textarea", "@far.test 127.0.0.9:2525\nnonsense\n")
    page.click("#gateway button")
    assert "line 2" in page.inner_text("#error")
    assert server.ok("gateway", "export").strip() == ""
    page.fill("#auth-set input[name=user]", "relay")
    page.fill("#auth-set input[name=password]", "relay-web-pw-1")
    page.click("#auth-set button")
    page.wait_for_selector("#credentials tr[data-for='*']")
    assert "relay-web-pw-1" not in page.content()
    # Sharing: a peer added (its secret checked), then removed.
    page.goto(url(server, "/admin/sharing"))
    page.fill("#add-peer input[name=host]", "127.0.0.2")
    page.fill("#add-peer input[name=secret]", "short")
    page.click("#add-peer button")
    assert "secret" in page.inner_text("#error")
    page.fill("#add-peer input[name=host]", "127.0.0.2")
    page.fill("#add-peer input[name=secret]", "s" * 20)
    page.fill("#add-peer input[name=domains]", B)
    page.click("#add-peer button")
    page.wait_for_selector("#peers tr[data-host='127.0.0.2']")
    assert "127.0.0.2" in server.ok("share", "peer", "list")
    page.click("#peers tr[data-host='127.0.0.2'] button")
    page.wait_for_selector("#peers tr[data-host='127.0.0.2']", state="detached")
    server.ok("rule", "remove", "two")
    server.ok("gateway", "auth", "remove", "*")
    # None of these pages is a domain administrator's.
    page.context.clear_cookies()
    log_in(page, server, f"boss@{A}", PW["boss"])
    for path in ("/admin/rules", "/admin/gateway", "/admin/sharing"):
        assert page.goto(url(server, path)).status == 403, path


def test_a_bad_address_or_queue_id_in_the_url_is_400_not_a_traceback(page, server):
    log_in(page, server, "root@example.test", PW["root"])
    for path in ("/admin/account?address=", "/admin/account?address=a@@b", "/admin/queue/message?id=../../etc",
                 "/admin/queue/message?id="):
        response = page.goto(url(server, path))
        assert response.status == 400, (path, response.status)
        assert "Traceback" not in page.content()
    server.expect_log(r"event=web-admin-refused")
    assert "Traceback" not in "\n".join(server.output)


def test_a_domain_administrator_makes_a_dkim_key_and_sets_quotas_and_sieve(page, server):
    """The pages of ``waypost dkim|dns|quota|sieve|mailbox create``, as a domain
    administrator of A: a DKIM key generated and its DNS record shown (and signing),
    quotas set as people write them (a bad one named), a Sieve script refused with its
    line then stored, a mailbox made; B's pages refused."""
    log_in(page, server, f"boss@{A}", PW["boss"])
    page.goto(url(server, f"/admin/domain?name={A}"))
    page.click("#dkim-link")
    page.wait_for_url("**/admin/dkim?domain=a.test")
    page.fill("#dkim-generate input[name=selector]", "web2027")
    page.select_option("#dkim-generate select[name=algorithm]", "ed25519")
    page.click("#dkim-generate button")
    row = page.locator("#dkim-keys tr[data-selector='web2027']")
    row.wait_for()
    assert row.locator(".state").inner_text() == "signing"
    record = row.locator(".record").inner_text()
    assert record.startswith(f"web2027._domainkey.{A} TXT v=DKIM1; k=ed25519; p="), record
    assert f"web2027._domainkey.{A}" in page.inner_text("#dns-records")
    shot(page, "admin-dkim")
    listed = server.ok("dkim", "list", A, "--json")
    assert '"web2027"' in listed and '"signing"' in listed
    server.expect_log(r"event=admin-change actor=admin:boss@a\.test action=dkim-generate object=web2027\._domainkey\.a\.test")
    page.fill("#dkim-generate input[name=selector]", "no_good!")
    page.click("#dkim-generate button")
    assert "selector" in page.inner_text("#error")
    page.click("#dkim-keys tr[data-selector='web2027'] form:has(input[value=deactivate]) button")
    page.wait_for_url("**/admin/dkim?domain=a.test")
    assert page.locator("#dkim-keys tr[data-selector='web2027'] .state").inner_text() == "inactive"
    assert page.goto(url(server, f"/admin/dkim?domain={B}")).status == 403
    assert page.goto(url(server, f"/admin/quotas?domain={B}")).status == 403
    # Quotas: the account's own limit, and the domain's default.
    page.goto(url(server, f"/admin/account?address=user@{A}"))
    page.fill("#account-quota input[name=quota_storage]", "lots")
    page.click("#account-quota button")
    assert "quota_storage" in page.inner_text("#error")
    page.fill("#account-quota input[name=quota_storage]", "2M")
    page.fill("#account-quota input[name=quota_messages]", "300")
    page.click("#account-quota button")
    page.wait_for_url("**/admin/account?address=user%40a.test")
    assert "2.0 MiB" in page.inner_text("#quota-usage") and "300" in page.inner_text("#quota-usage")
    assert "2.0 MiB" in server.ok("quota", "show", f"user@{A}")
    page.goto(url(server, f"/admin/quotas?domain={A}"))
    page.fill("#quota-defaults input[name=quota_messages]", "900")
    page.click("#quota-defaults button")
    page.wait_for_url("**/admin/quotas?domain=a.test")
    assert page.locator(f"#quotas tr[data-account='boss@{A}'] .message-limit").inner_text() == "900"
    assert page.locator(f"#quotas tr[data-account='user@{A}'] .message-limit").inner_text() == "300"
    page.fill("#files-default input[name=files_limit]", "lots")
    page.click("#files-default button")
    assert "limit" in page.inner_text("#error")
    page.fill("#files-default input[name=files_limit]", "3M")
    page.click("#files-default button")
    page.wait_for_url("**/admin/quotas?domain=a.test")
    assert page.input_value("#files-default input[name=files_limit]") == str(3 << 20)
    assert '"limit_from": "domain"' in server.ok("files", "usage", f"boss@{A}", "--json")
    shot(page, "admin-quotas")
    # The file area's own limit.
    page.goto(url(server, f"/admin/account?address=user@{A}"))
    page.fill("#account-files input[name=files_limit]", "5M")
    page.click("#account-files button")
    page.wait_for_url("**/admin/account?address=user%40a.test")
    assert "5.0 MiB" in page.inner_text("#files-usage") and "account" in page.inner_text("#files-usage")
    assert '"limit": 5242880' in server.ok("files", "usage", f"user@{A}", "--json")
    # Sieve: a bad script shown with its line, nothing stored; a good one active.
    page.goto(url(server, f"/admin/account?address=user@{A}"))
    page.fill("#sieve-put input[name=name]", "main")
    page.fill("#sieve-put textarea[name=script]", "keep;\nfrobnicate;\n")
    page.click("#sieve-put button")
    assert "script" in page.inner_text("#error") and "2" in page.inner_text("#error")
    assert "main" not in server.ok("sieve", "list", f"user@{A}")
    page.fill("#sieve-put input[name=name]", "main")
    page.fill("#sieve-put textarea[name=script]", 'require "fileinto";\nfileinto "Junk";\n')
    page.check("#sieve-put input[name=activate]")
    page.click("#sieve-put button")
    page.wait_for_selector("#sieve-scripts tr[data-name='main']")
    assert "active" in page.inner_text("#sieve-scripts tr[data-name='main']")
    assert 'fileinto "Junk"' in server.ok("sieve", "get", f"user@{A}", "main")
    page.fill("#mailbox-create input[name=mailbox]", "Archive")
    page.click("#mailbox-create button")
    page.wait_for_selector("#mailboxes a:text('Archive')")
    page.fill("#mailbox-alias-add input[name=alias]", "Old")
    page.fill("#mailbox-alias-add input[name=target]", "Archive")
    page.click("#mailbox-alias-add button")
    page.wait_for_selector("#mailbox-aliases tr[data-alias='Old']")
    assert "Archive" in server.ok("mailbox", "alias", "list", f"user@{A}")
    shot(page, "admin-account-mail")
    server.ok("sieve", "activate", f"user@{A}", "--none")
    server.ok("sieve", "delete", f"user@{A}", "main")
    server.ok("account", "set", f"user@{A}", "--quota", "default", "--quota-messages", "default")
    server.ok("domain", "set", A, "--quota-messages", "unlimited")
    server.ok("files", "set", f"user@{A}", "--default-limit")
    server.ok("files", "set-domain", A, "--default-limit")
    server.ok("mailbox", "alias", "remove", f"user@{A}", "Old")
