"""The JSON API (issue 18 point 3) on a real ``waypost serve``: the OpenAPI document
against the routes the listener answers, ``curl`` as the client, the authorisation
matrix (anonymous, revoked token, ordinary account, a domain administrator of A and a
token scoped to A acting on B: each refused, nothing changed), bad input naming the
field, sessions with CSRF, the Router table and the queue."""

from __future__ import annotations

import http.client
import json
import re
import smtplib
import subprocess
import urllib.parse

import pytest

from support.server import WaypostInstance, free_port, wait_for
from support.tls import client_context

A, B = "a.test", "b.test"
PW = {"root": "root-api-pw-1", "boss": "boss-api-pw-1", "user": "user-api-pw-1", "other": "other-api-pw-1"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("api") / "data", domain="example.test",
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
        inst.ok("account", "add", f"other@{B}", "--password", PW["other"])
        inst.ok("alias", "add", f"sales@{B}", "other")
        inst.ok("forwarder", "add", f"fwd@{B}", "someone@remote.test")
        inst.ok("group", "add", f"team@{B}", "--member", "other")
        inst.tokens = {}
        for name, scope in (("server", ()), ("scoped-a", ("--domain", A)), ("revoked", ())):
            inst.tokens[name] = inst.ok("token", "add", name, *scope).splitlines()[0]
        inst.ok("token", "remove", "revoked")
        inst.ok("queue", "hold", "remote.test")
        inst.ok("rule", "add", "first: size over 100000000 => discard")
        inst.ok("gateway", "auth", "set", "--user", "relay", "--password", "relay-pw-0")
        inst.ok("share", "peer", "add", "127.0.0.2:2525", "--secret", "p" * 20, "--domain", B)
        inst.ok("dkim", "generate", B, "--selector", "sel1", "--algorithm", "ed25519")
        inst.ok("sieve", "put", f"other@{B}", "first", "-", input="keep;\n")
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=10) as c:
            c.sendmail(f"other@{B}", ["x@remote.test"], "Subject: held\r\n\r\nbody\r\n")
        wait_for(lambda: inst.queue_ids(), what="a held message")
        yield inst


def call(inst, method, path, body=None, token=None, headers=None, raw=None):
    """(status, parsed JSON or text, headers) of one request over http.client."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection("127.0.0.1", inst.http_port, timeout=30)
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        headers_out: dict[str, str] = {}
        for k, v in r.getheaders():
            k = k.lower()
            headers_out[k] = f"{headers_out[k]}, {v}" if k in headers_out else v
        return r.status, parsed, headers_out
    finally:
        conn.close()


def login(inst, who: str, domain: str) -> tuple[str, str]:
    """(session cookie, CSRF token) of a WebUser login, the way a browser gets them."""
    status, page, headers = call(inst, "GET", "/login", headers={"Host": domain})
    form_token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    login_cookie = re.search(r"wp_login=([^;]+)", headers["set-cookie"]).group(1)
    form = urllib.parse.urlencode({"csrf": form_token, "login": f"{who}@{domain}", "password": PW[who]})
    status, _, headers = call(inst, "POST", "/login", raw=form.encode(),
                              headers={"Host": domain, "Content-Type": "application/x-www-form-urlencoded",
                                       "Cookie": f"wp_login={login_cookie}"})
    assert status == 303, status
    cookie = re.search(r"wp_session=([^;]+)", headers["set-cookie"]).group(1)
    status, me, _ = call(inst, "GET", "/api/v1/whoami", headers={"Cookie": f"wp_session={cookie}"})
    return cookie, (me.get("csrf", "") if status == 200 else "")


def snapshot(inst) -> str:
    """Everything an operation could change, as text."""
    db = inst.db()
    try:
        from waypost.router.resolve import HOLD_KEY, TABLE_KEY

        parts = [[(d.name, d.aliases, d.settings) for d in db.list_domains()],
                 [(o.address, o.kind, o.data) for o in db.list_objects()],
                 db.get_value(TABLE_KEY), db.get_value(HOLD_KEY),
                 [db.get_value(k) for k in ("rules.server", "gateway.rules", "gateway.credentials", "sharing.peers",
                                            "sharing.cache")],
                 [(e.msg_id, e.held, e.next_attempt) for e in db.queue_entries(__import__("waypost.db", fromlist=["QueueFilter"]).QueueFilter())],
                 [(k.domain, k.selector, k.activated) for k in db.dkim_keys()],
                 [(o.address, db.sieve_list(o.domain, o.name), [(s, db.sieve_get(o.domain, o.name, s))
                                                                for s, _ in db.sieve_list(o.domain, o.name)],
                   db.quota_usage(o.domain, o.name), sorted(b.name for b in db.mailbox_list(o.domain, o.name)),
                   db.mailbox_alias_list(o.domain, o.name))
                  for o in db.list_objects(kind="account")]]
        return json.dumps(parts, sort_keys=True, default=str)
    finally:
        db.close()


def concrete(path: str, inst) -> str:
    """A documented path with parameters naming objects of domain B."""
    qid = inst.queue_ids()[0]
    return (path.replace("{domain}", B).replace("{id}", qid)
            .replace("/accounts/{address}", f"/accounts/other@{B}").replace("/aliases/{address}", f"/aliases/sales@{B}")
            .replace("/forwarders/{address}", f"/forwarders/fwd@{B}").replace("/groups/{address}", f"/groups/team@{B}")
            .replace("{name}", "first").replace("{who}", "*").replace("{host}", "127.0.0.2")
            .replace("{selector}", "sel1"))


#: A valid body per operation, about domain B (what a permitted caller would send).
BODIES = {
    "addDomain": {"name": "c.test"}, "setDomain": {"mail_to_unknown": "discarded"},
    "setTemplate": {"mailboxes": ["Projects"]}, "addAccount": {"address": f"new@{B}", "password": "new-pw-1"},
    "setAccount": {"real_name": "Changed"}, "setPassword": {"password": "changed-pw-1"},
    "addAlias": {"address": f"al@{B}", "account": "other"}, "addForwarder": {"address": f"f2@{B}", "target": "z@remote.test"},
    "setForwarder": {"target": "y@remote.test"}, "addGroup": {"address": f"g2@{B}", "members": ["other"]},
    "setGroup": {"add": ["x@remote.test"]}, "setRouter": {"text": f"<x@{B}> = y@{B}\n"},
    "explainRoute": {"address": f"other@{B}"}, "lookupSharing": {"address": f"other@{B}"}, "flushQueue": {"domain": B}, "holdQueue": {"domain": B},
    "releaseQueue": {"domain": B}, "deleteQueue": {"domain": B},
    "setRules": {"text": "big: size over 1000 => discard\n"}, "addRule": {"text": "big: size over 1000 => discard"},
    "moveRule": {"position": 1}, "setGateway": {"text": "* 127.0.0.9:2525\n"},
    "setGatewayAuth": {"user": "relay", "password": "relay-pw-1"},
    "addPeer": {"host": "127.0.0.3", "secret": "s" * 20},
    "setAcl": {"mailbox": f"other@{B}/INBOX", "identifier": "anyone", "rights": "lr"},
    "createMailbox": {"name": "Projects"}, "generateDkimKey": {"algorithm": "ed25519"}, "setDkimKey": {"active": False},
    "putSieveScript": {"script": "discard;\n", "activate": True}, "activateSieveScript": {"name": None},
    "setFileArea": {"limit": "1M", "listing": True}, "setDomainFileLimit": {"limit": "10M"},
    "setMailboxAlias": {"target": "INBOX"}, "testGateway": {"address": f"x@{B}"},
}
#: What a domain administrator of A (or a token scoped to A) may call about B: lists,
#: which show only A's part of them (checked below), and who they are.
SCOPED_OK = {"whoami", "listDomains", "listAccounts", "listAliases", "listForwarders", "listGroups", "listHolds",
             "listQueue", "listQuotas", "listFileAreas"}


def operations(inst):
    status, doc, _ = call(inst, "GET", "/api/v1/openapi.json")
    assert status == 200
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield method.upper(), path, op


def test_the_openapi_document_is_the_routes_the_listener_answers(api):
    status, doc, _ = call(api, "GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    ops = list(operations(api))
    assert len(ops) >= 35 and len({op["operationId"] for _, _, op in ops}) == len(ops)
    for method, path, op in ops:  # every documented operation is answered (401: it exists, asks who)
        p = concrete(path, api)
        status, body, headers = call(api, method, p, body=BODIES.get(op["operationId"], {}) if "requestBody" in op else None)
        assert status == 401, (method, p, status, body)
        assert body["error"]["code"] == "unauthorized" and "Bearer" in headers["www-authenticate"]
    for path, methods in doc["paths"].items():  # and nothing else is
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - {m.upper() for m in methods}:
            status, body, headers = call(api, method, concrete(path, api), token=api.tokens["server"])
            assert status == 405, (method, path, status)
            assert set(headers["allow"].split(", ")) == {m.upper() for m in methods}
    status, body, _ = call(api, "GET", "/api/v1/nothing-here", token=api.tokens["server"])
    assert status == 404 and body["error"]["code"] == "not_found"


def test_the_authorisation_matrix(api):
    """Every operation, as anonymous, with a revoked token, as an ordinary account, as a
    domain administrator of A (session) and with a token scoped to A, on B: refused
    (401/403) and nothing changed."""
    user_cookie, user_csrf = login(api, "user", A)
    boss_cookie, boss_csrf = login(api, "boss", A)
    assert user_csrf == ""  # an ordinary account gets no further than 403
    callers = {
        "anonymous": ({}, {401}),
        "revoked token": ({"Authorization": f"Bearer {api.tokens['revoked']}"}, {401}),
        "garbage token": ({"Authorization": "Bearer wpt_" + "A" * 43}, {401}),
        "ordinary account": ({"Cookie": f"wp_session={user_cookie}"}, {403}),
        "domain admin of A": ({"Cookie": f"wp_session={boss_cookie}", "X-CSRF-Token": boss_csrf}, {403}),
        "token scoped to A": ({"Authorization": f"Bearer {api.tokens['scoped-a']}"}, {403}),
    }
    before = snapshot(api)
    tried = 0
    for method, path, op in operations(api):
        for who, (headers, refused) in callers.items():
            p = concrete(path, api)
            if op["operationId"] == "getAcl":
                p += f"?mailbox=other@{B}/INBOX"
            if op["operationId"] in SCOPED_OK and who in ("domain admin of A", "token scoped to A"):
                if not any(q["name"] == "domain" for q in op.get("parameters", [])):
                    continue
                p += f"?domain={B}"  # their lists, but of B
            body = BODIES.get(op["operationId"], {}) if "requestBody" in op else None
            status, answer, _ = call(api, method, p, body=body, headers=headers)
            assert status in refused, (who, method, p, status, answer)
            assert answer["error"]["message"], answer
            tried += 1
    assert tried > 200
    assert snapshot(api) == before
    # What a domain administrator's lists show: A only.
    for who in ({"Cookie": f"wp_session={boss_cookie}"}, {"Authorization": f"Bearer {api.tokens['scoped-a']}"}):
        status, page, _ = call(api, "GET", "/api/v1/domains", headers=who)
        assert status == 200 and [d["name"] for d in page["items"]] == [A]
        status, page, _ = call(api, "GET", "/api/v1/accounts", headers=who)
        assert status == 200 and {o["address"] for o in page["items"]} == {f"boss@{A}", f"user@{A}"}
        for kind in ("aliases", "forwarders", "groups"):
            status, page, _ = call(api, "GET", f"/api/v1/{kind}", headers=who)
            assert status == 200 and page["items"] == []
        status, page, _ = call(api, "GET", "/api/v1/queue", headers=who)
        assert status == 200 and page["items"] == [] and page["total"] == 0  # B's message is not shown
        status, page, _ = call(api, "GET", "/api/v1/quotas", headers=who)
        assert status == 200 and {r["account"] for r in page["items"]} == {f"boss@{A}", f"user@{A}"}
        status, page, _ = call(api, "GET", f"/api/v1/accounts?domain={B}", headers=who)
        assert status == 403
    # A session's unsafe request without its CSRF token is refused; with it, done.
    status, answer, _ = call(api, "PATCH", f"/api/v1/accounts/user@{A}", {"real_name": "U"},
                             headers={"Cookie": f"wp_session={boss_cookie}"})
    assert status == 403 and answer["error"]["code"] == "csrf"
    status, answer, _ = call(api, "PATCH", f"/api/v1/accounts/user@{A}", {"real_name": "U"},
                             headers={"Cookie": f"wp_session={boss_cookie}", "X-CSRF-Token": boss_csrf})
    assert status == 200 and answer["real_name"] == "U"
    api.expect_log(r"event=admin-change actor=admin:boss@a\.test action=account-set object=user@a\.test")
    # An account with administrator rights (here the domain administrator itself) is a
    # server administrator's to change: its password would hand over its rights.
    status, answer, _ = call(api, "PUT", f"/api/v1/accounts/boss@{A}/password", {"password": "taken-over-1"},
                             token=api.tokens["scoped-a"])
    assert status == 403 and "administrator rights" in answer["error"]["message"]


def test_a_server_administrator_runs_every_group_with_curl(api):
    """curl, as a script would: one call per group, the changes seen by the CLI."""
    token = api.tokens["server"]

    def curl(method, path, body=None):
        args = ["curl", "-sS", "-X", method, "-H", f"Authorization: Bearer {token}", "-w", "\n%{http_code}",
                f"http://127.0.0.1:{api.http_port}{path}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
        text, _, code = out.rpartition("\n")
        return int(code), json.loads(text)

    assert curl("POST", "/api/v1/domains", {"name": "d.test", "aliases": ["www.d.test"]})[0] == 201
    assert curl("POST", "/api/v1/domains", {"name": "d.test"})[0] == 409
    code, acct = curl("POST", "/api/v1/accounts", {"address": "info@d.test", "password": "info-pw-1", "real_name": "Info"})
    assert code == 201 and acct["address"] == "info@d.test" and acct["has_password"] and "password" not in acct
    assert curl("PATCH", "/api/v1/accounts/info@d.test", {"admin_domains": ["d.test"], "enabled": True})[0] == 200
    assert curl("PUT", "/api/v1/accounts/info@d.test/password", {"password": "new-info-pw-2"})[0] == 200
    assert curl("POST", "/api/v1/aliases", {"address": "hello@d.test", "account": "info"})[0] == 201
    assert curl("POST", "/api/v1/forwarders", {"address": "out@d.test", "target": "far@remote.test"})[0] == 201
    code, err = curl("PATCH", "/api/v1/forwarders/out@d.test", {"target": "OUT@d.test"})
    assert code == 400 and err["error"]["field"] == "target" and "loop" in err["error"]["message"]
    assert curl("POST", "/api/v1/groups", {"address": "all@d.test", "members": ["info", "x@remote.test"]})[0] == 201
    code, grp = curl("PATCH", "/api/v1/groups/all@d.test", {"remove": ["x@remote.test"]})
    assert code == 200 and grp["members"] == ["info"]
    assert curl("PUT", "/api/v1/domains/d.test/template", {"mailboxes": ["Projects"], "subscriptions": []})[0] == 200
    code, dom = curl("PATCH", "/api/v1/domains/d.test", {"mail_to_unknown": "discarded", "send_as": "domain"})
    assert code == 200 and dom["mail_to_unknown"] == "discarded"
    listed = json.loads(api.ok("account", "list", "--domain", "d.test", "--json"))
    assert [(a["address"], a["admin_domains"]) for a in listed] == [("info@d.test", ["d.test"])]
    assert "hello@d.test" in api.ok("alias", "list", "--domain", "d.test")
    code, page = curl("GET", "/api/v1/accounts?domain=d.test&limit=1&offset=0")
    assert code == 200 and page["total"] == 1 and len(page["items"]) == 1
    # The Router table: a bad line is refused with its number, nothing changes; a good
    # table is used at once (the explainer shows the new route).
    code, err = curl("PUT", "/api/v1/router", {"text": "<a@d.test> = b@d.test\nthis is no record\n"})
    assert code == 400 and err["error"]["lines"][0]["line"] == 2 and err["error"]["field"] == "text"
    assert curl("GET", "/api/v1/router")[1]["text"] == ""
    assert curl("PUT", "/api/v1/router", {"text": "<boss@d.test> = info@d.test\n"})[0] == 200
    code, route = curl("POST", "/api/v1/route", {"address": "boss@d.test"})
    assert code == 200 and route["route"]["kind"] == "local" and route["route"]["name"] == "info", route
    # The queue: the held message, shown, flushed, released, deleted.
    code, page = curl("GET", "/api/v1/queue?target=mx:remote.test")
    assert code == 200 and page["total"] == 1 and page["items"][0]["held"]
    qid = page["items"][0]["id"]
    assert curl("GET", f"/api/v1/queue/{qid}")[1]["recipients"][0]["address"] == "x@remote.test"
    assert curl("GET", "/api/v1/queue/holds")[1]["items"] == [{"domain": "remote.test", "messages": 1}]
    assert curl("POST", f"/api/v1/queue/{qid}/flush")[0] == 200
    assert curl("POST", "/api/v1/queue/release", {"target": "mx:remote.test"})[1] == {"recipients": 1}
    assert curl("GET", f"/api/v1/queue/{qid}")[1]["recipients"][0]["held"] is False
    assert curl("POST", "/api/v1/queue/hold", {"recipient": "x@remote.test"})[1] == {"recipients": 1}
    assert curl("GET", f"/api/v1/queue/{qid}")[1]["recipients"][0]["held"] is True
    code, err = curl("POST", "/api/v1/queue/delete", {})
    assert code == 400 and err["error"]["field"] == "filter"
    assert curl("POST", "/api/v1/queue/delete", {"sender": "nobody@nowhere.test"})[1] == {"messages": 0}
    assert curl("PUT", "/api/v1/queue/holds/remote.test")[0] == 200
    code, deleted = curl("DELETE", f"/api/v1/queue/{qid}")
    assert code == 200 and deleted["id"] == qid and qid not in api.queue_ids()
    assert not (api.data / "spool" / "queue" / qid).exists()
    assert curl("GET", f"/api/v1/queue/{qid}")[0] == 404
    assert curl("DELETE", "/api/v1/queue/holds/remote.test")[0] == 200
    assert curl("GET", "/api/v1/queue/holds")[1]["items"] == []
    # Mailbox ACLs (RFC 4314 rights), as waypost acl get|set.
    code, boxes = curl("GET", "/api/v1/accounts/info@d.test/mailboxes")
    assert code == 200 and "INBOX" in boxes["mailboxes"]
    code, acl = curl("PUT", "/api/v1/acl", {"mailbox": "info@d.test/INBOX", "identifier": "anyone", "rights": "lr"})
    assert code == 200 and {"identifier": "anyone", "rights": "lr", "note": ""} in acl["entries"]
    code, acl = curl("PUT", "/api/v1/acl", {"mailbox": "info@d.test/INBOX", "identifier": "anyone", "rights": "+s"})
    assert {"identifier": "anyone", "rights": "lrs", "note": ""} in acl["entries"]
    assert "anyone" in api.ok("acl", "get", "info@d.test/INBOX")
    for body, field in (({"mailbox": "info@d.test/INBOX", "identifier": "anyone", "rights": "lz"}, "rights"),
                        ({"mailbox": "info@d.test/INBOX", "identifier": "nobody", "rights": "lr"}, "identifier"),
                        ({"mailbox": "info@d.test", "identifier": "anyone", "rights": "lr"}, "mailbox")):
        code, err = curl("PUT", "/api/v1/acl", body)
        assert code == 400 and err["error"]["field"] == field, err
    assert curl("GET", "/api/v1/acl?mailbox=info@d.test/NoSuchBox")[0] == 404
    assert curl("GET", "/api/v1/acl")[1]["error"]["field"] == "mailbox"
    # Removal, and the log line naming the token.
    assert curl("DELETE", "/api/v1/groups/all@d.test")[0] == 200
    assert curl("DELETE", "/api/v1/accounts/info@d.test")[0] == 200
    assert curl("DELETE", "/api/v1/domains/d.test")[1] == {"objects": 1}  # the forwarder left
    assert curl("GET", "/api/v1/domains/d.test")[0] == 404
    api.expect_log(r"event=admin-change actor=token:server action=domain-remove object=d\.test")
    assert curl("PUT", "/api/v1/router", {"text": ""})[0] == 200
    # Server-wide rules: add at a position, move, a bad one refused with its line, remove.
    code, rules = curl("POST", "/api/v1/rules", {"text": "second: size over 200000000 => discard", "position": 1})
    assert code == 200 and [r["name"] for r in rules["rules"]] == ["second", "first"]
    code, rules = curl("PATCH", "/api/v1/rules/second", {"position": 2})
    assert [r["name"] for r in rules["rules"]] == ["first", "second"]
    code, err = curl("POST", "/api/v1/rules", {"text": "bad: size over 1 => store ~nobody@example.test/x"})
    assert code == 400 and "nobody" in err["error"]["lines"][0]["reason"]
    assert curl("DELETE", "/api/v1/rules/second")[0] == 200 and curl("DELETE", "/api/v1/rules/second")[0] == 404
    assert "second" not in api.ok("rule", "list")
    # Gateway rules and next-hop AUTH (the password sealed, never shown).
    code, gw = curl("PUT", "/api/v1/gateway", {"text": "@far.test 127.0.0.9:2525\n"})
    assert code == 200 and gw["rules"][0]["destination"] == "127.0.0.9" and gw["rules"][0]["port"] == 2525
    assert curl("PUT", "/api/v1/gateway", {"text": "nonsense\n"})[0] == 400
    code, tested = curl("POST", "/api/v1/gateway/test", {"address": "bob@far.test"})
    assert code == 200 and tested["rule"]["line"] == 1 and tested["rule"]["destination"] == "127.0.0.9", tested
    assert curl("POST", "/api/v1/gateway/test", {"address": "bob@near.test"})[1]["rule"] is None
    assert "line 1" in api.ok("gateway", "test", "bob@far.test")
    cookie, _ = login(api, "root", "example.test")
    status, html, _ = call(api, "GET", "/admin/gateway?address=bob%40far.test", headers={"Cookie": f"wp_session={cookie}"})
    assert status == 200 and "line 1: @far.test -&gt; 127.0.0.9:2525" in html, html[-800:]
    assert curl("PUT", "/api/v1/gateway/auth/*", {"user": "relay2", "password": "relay-pw-2"})[0] == 200
    code, creds = curl("GET", "/api/v1/gateway/auth")
    assert creds["items"] == [{"for": "*", "user": "relay2"}] and "relay-pw-2" not in json.dumps(creds)
    assert "relay-pw-2" not in json.dumps(api.db().get_value("gateway.credentials"))
    assert curl("PUT", "/api/v1/gateway", {"text": ""})[0] == 200
    # Domain Sharing peers and cache.
    code, peer = curl("POST", "/api/v1/sharing/peers", {"host": "127.0.0.4", "minger_port": 4070, "secret": "q" * 20,
                                                        "domains": [A]})
    assert code == 201 and peer == {"host": "127.0.0.4", "addresses": ["127.0.0.4"], "smtp_port": 25,
                                    "minger_port": 4070, "secret": True, "domains": [A]}
    code, err = curl("POST", "/api/v1/sharing/peers", {"host": "127.0.0.5", "secret": "short"})
    assert code == 400 and err["error"]["field"] == "secret"
    assert {p["host"] for p in curl("GET", "/api/v1/sharing/peers")[1]["items"]} == {"127.0.0.2", "127.0.0.4"}
    assert curl("DELETE", "/api/v1/sharing/peers/127.0.0.4")[0] == 200
    assert curl("GET", "/api/v1/sharing/cache")[1]["items"] == []
    assert curl("DELETE", "/api/v1/sharing/cache")[1] == {"answers": 0}


def test_dkim_dns_quotas_sieve_and_mailboxes_with_curl(api):
    """The operations of ``waypost dkim|dns|quota|sieve|mailbox create`` over the API,
    with curl: a token scoped to A does them for A (and the CLI sees the result), the
    server token for any domain; bad input names the field."""
    def curl(method, path, body=None, token=api.tokens["scoped-a"]):
        args = ["curl", "-sS", "-X", method, "-H", f"Authorization: Bearer {token}", "-w", "\n%{http_code}",
                f"http://127.0.0.1:{api.http_port}{path}"]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
        text, _, code = out.rpartition("\n")
        return int(code), json.loads(text)

    # DKIM: generate (inactive first, as a careful rotation does), see its record, activate.
    code, key = curl("POST", f"/api/v1/domains/{A}/dkim", {"selector": "rot1", "inactive": True})
    assert code == 201 and key["state"] == "inactive" and key["name"] == f"rot1._domainkey.{A}", key
    assert key["value"].startswith("v=DKIM1; k=rsa; p=") and key["type"] == "TXT"
    api.expect_log(r"event=admin-change actor=token:scoped-a action=dkim-generate object=rot1\._domainkey\.a\.test")
    code, err = curl("POST", f"/api/v1/domains/{A}/dkim", {"selector": "rot1"})
    assert code == 409, err
    code, err = curl("POST", f"/api/v1/domains/{A}/dkim", {"selector": "bad_selector!"})
    assert code == 400 and err["error"]["field"] == "selector", err
    code, page = curl("GET", f"/api/v1/domains/{A}/dns")
    assert code == 200 and any(r["name"] == f"rot1._domainkey.{A}" and r["expected"] == key["value"]
                               for r in page["items"]), page
    assert {r["type"] for r in page["items"]} >= {"MX", "TXT"}
    # Asking DNS (here a name server that does not answer): each record "error", at once
    # and within the look-up bound, not a hung request.
    code, page = curl("GET", f"/api/v1/domains/{A}/dns?check=true")
    assert code == 200 and page["items"] and {r["status"] for r in page["items"]} == {"error"}, page
    code, key = curl("PATCH", f"/api/v1/domains/{A}/dkim/rot1", {"active": True})
    assert code == 200 and key["state"] == "signing"
    listed = json.loads(api.ok("dkim", "list", A, "--json"))
    assert [(k["selector"], k["state"]) for k in listed] == [("rot1", "signing")]
    code, gone = curl("DELETE", f"/api/v1/domains/{A}/dkim/rot1")
    assert code == 200 and gone["selector"] == "rot1" and json.loads(api.ok("dkim", "list", A, "--json")) == []
    assert curl("GET", f"/api/v1/domains/{A}/dkim/rot1")[0] == 404
    # B's key: the server token sees it, the token of A does not (the matrix: 403).
    code, page = curl("GET", f"/api/v1/domains/{B}/dkim", token=api.tokens["server"])
    assert code == 200 and [k["selector"] for k in page["items"]] == ["sel1"]
    # Quotas: a size as people write it, shown in octets; the domain's default.
    code, acct = curl("PATCH", f"/api/v1/accounts/user@{A}", {"quota_storage": "2M", "quota_messages": 100})
    assert code == 200, acct
    code, q = curl("GET", f"/api/v1/accounts/user@{A}/quota")
    assert code == 200 and q["storage_limit"] == 2 * 1024 * 1024 and q["message_limit"] == 100, q
    code, err = curl("PATCH", f"/api/v1/accounts/user@{A}", {"quota_storage": "lots"})
    assert code == 400 and err["error"]["field"] == "quota_storage", err
    code, dom = curl("PATCH", f"/api/v1/domains/{A}", {"quota_messages": 5000})
    assert code == 200 and dom["settings"]["quota_messages"] == 5000
    code, q = curl("GET", f"/api/v1/quotas?domain={A}")
    assert code == 200 and {r["account"]: r["message_limit"] for r in q["items"]} == {f"user@{A}": 100,
                                                                                       f"boss@{A}": 5000}
    code, q = curl("POST", f"/api/v1/accounts/user@{A}/quota/recount")
    assert code == 200 and q["storage"] == 0 and q["messages"] == 0
    assert "user@a.test" in api.ok("quota", "show", f"user@{A}")
    assert curl("PATCH", f"/api/v1/accounts/user@{A}", {"quota_storage": None, "quota_messages": None})[0] == 200
    assert curl("PATCH", f"/api/v1/domains/{A}", {"quota_messages": None})[0] == 200
    # File areas (waypost files): the account's limit as people write it, the domain's.
    code, area = curl("PATCH", f"/api/v1/accounts/user@{A}/files", {"limit": "50M", "listing": True})
    assert code == 200 and (area["limit"], area["limit_from"], area["listing"]) == (50 << 20, "account", True), area
    code, err = curl("PATCH", f"/api/v1/accounts/user@{A}/files", {"limit": "lots"})
    assert code == 400 and err["error"]["field"] == "limit", err
    code, view = curl("PUT", f"/api/v1/domains/{A}/files", {"limit": "1G"})
    assert code == 200 and view == {"domain": A, "limit": 1 << 30}
    code, page = curl("GET", f"/api/v1/files?domain={A}")
    assert code == 200 and {r["account"]: r["limit_from"] for r in page["items"]} == {f"user@{A}": "account",
                                                                                       f"boss@{A}": "domain"}
    assert '"limit_from": "account"' in api.ok("files", "usage", f"user@{A}", "--json")
    code, listing = curl("GET", f"/api/v1/accounts/user@{A}/files/list")
    assert code == 200 and listing == {"items": []}
    code, err = curl("GET", f"/api/v1/accounts/user@{A}/files/list?path=../..")
    assert code == 400 and err["error"]["field"] == "path", err
    assert curl("GET", f"/api/v1/accounts/user@{A}/files/list?path=none")[0] == 404
    assert curl("PATCH", f"/api/v1/accounts/user@{A}/files", {"limit": None, "listing": False})[0] == 200
    assert curl("PUT", f"/api/v1/domains/{A}/files", {"limit": None})[1] == {"domain": A, "limit": None}
    api.expect_log(r"event=admin-change actor=token:scoped-a action=files-set object=user@a\.test")
    # Sieve: a bad script is refused with its line; a good one stored, activated, deleted.
    code, err = curl("PUT", f"/api/v1/accounts/user@{A}/sieve/main", {"script": "keep;\nfrobnicate;\n"})
    assert code == 400 and err["error"]["field"] == "script" and "2" in err["error"]["message"], err
    code, script = curl("PUT", f"/api/v1/accounts/user@{A}/sieve/main",
                        {"script": 'require "fileinto";\nfileinto "Junk";\n', "activate": True})
    assert code == 200 and script == {"name": "main", "active": True}
    assert "fileinto" in api.ok("sieve", "get", f"user@{A}", "main")
    code, got = curl("GET", f"/api/v1/accounts/user@{A}/sieve/main")
    assert got["script"].startswith('require "fileinto"') and got["active"]
    assert curl("DELETE", f"/api/v1/accounts/user@{A}/sieve/main")[0] == 409  # the active one
    code, listed = curl("PUT", f"/api/v1/accounts/user@{A}/sieve-active", {"name": None})
    assert code == 200 and listed["items"] == [{"name": "main", "active": False}]
    assert curl("DELETE", f"/api/v1/accounts/user@{A}/sieve/main")[0] == 200
    assert curl("GET", f"/api/v1/accounts/user@{A}/sieve")[1] == {"items": []}
    # A Sieve script of an account with administrator rights could redirect its mail.
    code, err = curl("PUT", f"/api/v1/accounts/boss@{A}/sieve/x", {"script": "keep;\n"})
    assert code == 403 and "administrator rights" in err["error"]["message"]
    # Mailboxes: created (with a parent), a bad name refused naming the field.
    code, boxes = curl("POST", f"/api/v1/accounts/user@{A}/mailboxes", {"name": "Projects/2027"})
    assert code == 201 and {"Projects", "Projects/2027"} <= set(boxes["mailboxes"]), boxes
    assert curl("POST", f"/api/v1/accounts/user@{A}/mailboxes", {"name": "Projects/2027"})[0] == 409
    code, err = curl("POST", f"/api/v1/accounts/user@{A}/mailboxes", {"name": "a\u0001b"})
    assert code == 400 and err["error"]["field"] in ("mailbox", "name"), err
    assert "Projects/2027" in api.ok("mailbox", "list", f"user@{A}")
    # Mailbox aliases: a name standing for a mailbox the account may see; a loop refused.
    code, alias = curl("PUT", f"/api/v1/accounts/user@{A}/mailbox-aliases/Current", {"target": "Projects/2027"})
    assert code == 200 and alias == {"alias": "Current", "target": "Projects/2027"}, alias
    code, err = curl("PUT", f"/api/v1/accounts/user@{A}/mailbox-aliases/Other", {"target": f"~other@{B}/INBOX"})
    assert code == 400 and err["error"]["field"] == "target", err  # no 'l' right there
    code, err = curl("PUT", f"/api/v1/accounts/user@{A}/mailbox-aliases/Projects", {"target": "INBOX"})
    assert code == 400 and err["error"]["field"] == "name", err  # a mailbox of its own has that name
    assert "Current" in api.ok("mailbox", "alias", "list", f"user@{A}")
    code, gone = curl("DELETE", f"/api/v1/accounts/user@{A}/mailbox-aliases/Current")
    assert code == 200 and gone["target"] == "Projects/2027"
    assert curl("GET", f"/api/v1/accounts/user@{A}/mailbox-aliases")[1] == {"items": []}
    assert curl("DELETE", f"/api/v1/accounts/user@{A}/mailbox-aliases/Current")[0] == 404
    api.expect_log(r"event=admin-change actor=token:scoped-a action=mailbox-create object=user@a\.test/Projects/2027")


@pytest.mark.parametrize("body, raw, ctype, status, field", [
    ({"name": 5}, None, None, 400, "name"),
    ({"name": "e.test", "colour": "red"}, None, None, 400, "colour"),
    ({"name": "e.test", "aliases": ["ok.test", 7]}, None, None, 400, "aliases[1]"),
    ({}, None, None, 400, "name"),
    (None, b"{not json", None, 400, "body"),
    (None, b'{"name": "e.test"}', "text/plain", 415, None),
    (None, b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}', None, 413, None),
    ({"name": "bad..name"}, None, None, 400, "name"),
    ({"name": "e.test", "ips": ["127.0.0.1", "not-an-ip"]}, None, None, 400, "ips"),
])
def test_bad_input_is_refused_naming_the_field(api, body, raw, ctype, status, field):
    headers = {"Content-Type": ctype} if ctype else {}
    got, answer, _ = call(api, "POST", "/api/v1/domains", body=body, raw=raw, token=api.tokens["server"],
                          headers=headers)
    assert got == status, answer
    assert answer["error"].get("field") == field, answer
    assert call(api, "GET", "/api/v1/domains/e.test", token=api.tokens["server"])[0] == 404


def test_bad_query_and_account_fields_name_the_field(api):
    t = api.tokens["server"]
    for path, field in (("/api/v1/accounts?limit=0", "limit"), ("/api/v1/accounts?limit=x", "limit"),
                        ("/api/v1/accounts?colour=red", "colour"), ("/api/v1/queue?state=lost", "state"),
                        ("/api/v1/accounts?domain=nowhere.test", "domain")):
        status, answer, _ = call(api, "GET", path, token=t)
        assert status in (400, 404), (path, answer)
        if status == 400:
            assert answer["error"]["field"] == field, answer
    for body, field in (({"rights": ["Root"]}, "rights[0]"), ({"quota_storage": -1}, "quota_storage"),
                        ({"forward": "not an address"}, "forward"), ({}, "body"), ({"enabled": "yes"}, "enabled")):
        status, answer, _ = call(api, "PATCH", f"/api/v1/accounts/user@{A}", body, token=t)
        assert status == 400 and answer["error"]["field"] == field, (body, answer)


def test_the_queue_pages_follow_each_other_without_a_gap_or_a_repeat(tmp_path):
    """The admin queue page (its browser tests: test_admin_web.py).  Keyset paging ("Next page" carries the last message's time and id): 130 messages,
    some with the same created time, read page by page as a browser follows the links."""
    from waypost.db import QueuedMessage, QueuedRecipient

    with WaypostInstance(tmp_path / "data") as inst:
        inst.http_port = free_port()
        inst.configure(listen={"http": f"127.0.0.1:{inst.http_port}"})
        inst.ok("account", "add", "root@example.test", "--password", PW["root"])
        inst.ok("account", "set", "root@example.test", "--right", "AllUsers")
        inst.start()  # (before the rows: start-up recovery forgets index rows without a spool file)
        db = inst.db()
        ids = []
        try:
            msgs = []
            for n in range(130):
                created = 1_700_000_000.0 + (n // 3) * 0.001  # three messages to a millisecond
                msg_id = f"{n:020X}"
                m = QueuedMessage(msg_id, "s@senders.test", created, 100, {})
                m.recipients.append(QueuedRecipient(msg_id, 0, f"r{n}@far.test", "mx:far.test", {"kind": "remote"},
                                                    "queued", 0, created + 10 ** 9, ""))
                msgs.append(m)
                ids.append(msg_id)
            db.queue_insert(msgs, lease_owner="", lease_until=0.0)
        finally:
            db.close()
        cookie, _ = login(inst, "root", "example.test")
        seen, path, pages = [], "/admin/queue", 0
        while path and pages < 10:
            status, page, _ = call(inst, "GET", path.replace("&amp;", "&"), headers={"Cookie": f"wp_session={cookie}"})
            assert status == 200
            seen += re.findall(r'<tr data-id="([0-9A-F]+)">', page)
            m = re.search(r'<a href="([^"]+)" id="next">', page)
            path = m.group(1) if m else ""
            pages += 1
        assert pages == 3 and seen == ids, (pages, len(seen), page[-1500:])
        inst.stop()


def test_metrics_on_the_web_listener_with_a_server_token(api):
    """/metrics on listen.http for a server administrator's token: the Prometheus text
    format, read back with prometheus_client's parser; other callers refused."""
    from prometheus_client.parser import text_string_to_metric_families

    status, text, headers = call(api, "GET", "/metrics", token=api.tokens["server"])
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families, text[:500]
    assert any(name.startswith("waypost_queue") for name in families), sorted(families)
    for token, expected in ((None, 401), (api.tokens["revoked"], 401), (api.tokens["scoped-a"], 403)):
        assert call(api, "GET", "/metrics", token=token)[0] == expected


def test_nul_and_lone_surrogates_are_refused_naming_the_field(api):
    """A JSON string may carry U+0000 or half a surrogate pair; neither engine can store
    them (PostgreSQL refuses NUL in TEXT; neither encodes a lone surrogate): a 400
    naming the field, nothing stored."""
    t = api.tokens["server"]
    for raw, field in ((b'{"real_name": "Us\\u0000er"}', "real_name"), (b'{"real_name": "Us\\ud800er"}', "real_name")):
        status, answer, _ = call(api, "PATCH", f"/api/v1/accounts/user@{A}", raw=raw, token=t)
        assert status == 400 and answer["error"]["field"] == field, (raw, answer)
    status, answer, _ = call(api, "GET", "/api/v1/accounts?domain=a%00.test", token=t)
    assert status == 400 and answer["error"]["field"] == "domain", answer
    status, answer, _ = call(api, "GET", f"/api/v1/accounts/user@{A}", token=t)
    assert status == 200 and "\x00" not in json.dumps(answer) and "\\u0000" not in json.dumps(answer), answer
    out = "\n".join(api.output)
    # (the fixture's server has served every test of the module: show where a traceback came from)
    assert "Traceback" not in out, out[max(0, out.find("Traceback") - 1500):out.find("Traceback") + 3000]


def test_a_domain_administrator_may_not_let_the_domain_send_as_anyone(api):
    """``send_as: any`` lets the domain's accounts use any address at all (another
    hosted domain's too): a right beyond the domain, a server administrator's to give,
    as an account's send-as is.  ``domain`` stays within the domain: allowed."""
    scoped = {"Authorization": f"Bearer {api.tokens['scoped-a']}"}
    status, answer, _ = call(api, "PATCH", f"/api/v1/domains/{A}", {"send_as": "any"}, headers=scoped)
    assert status == 403, answer
    assert call(api, "GET", f"/api/v1/domains/{A}", token=api.tokens["server"])[1]["settings"].get("send_as") != "any"
    status, answer, _ = call(api, "PATCH", f"/api/v1/domains/{A}", {"send_as": "domain"}, headers=scoped)
    assert status == 200 and answer["settings"]["send_as"] == "domain", answer
    status, answer, _ = call(api, "PATCH", f"/api/v1/domains/{A}", {"send_as": "own"}, headers=scoped)
    assert status == 200, answer


def test_a_domain_administrator_sees_the_mail_its_accounts_sent_not_a_forged_sender(api):
    """Issue 18: "the queue entries of the domains given to them" are the domain's mail
    both ways: waiting for its recipients, or sent by one of its accounts (logged in to
    send it).  A message whose MAIL FROM names the domain without a login is not its."""
    with smtplib.SMTP("127.0.0.1", api.submission_port, timeout=10) as c:
        c.starttls(context=client_context())
        c.login(f"user@{A}", PW["user"])
        c.sendmail(f"user@{A}", ["far1@remote.test"], "Subject: mine\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", api.smtp_port, timeout=10) as c:  # no login: MAIL FROM proves nothing
        c.sendmail(f"user@{A}", ["far2@remote.test"], "Subject: forged\r\n\r\nbody\r\n")

    def queued_for(address):
        db = api.db()
        try:
            from waypost.db import QueueFilter

            return [e.msg_id for e in db.queue_entries(QueueFilter(recipient=address))]
        finally:
            db.close()
    [mine] = wait_for(lambda: queued_for("far1@remote.test"), what="the account's message queued")
    [forged] = wait_for(lambda: queued_for("far2@remote.test"), what="the forged message queued")
    for who in ({"Authorization": f"Bearer {api.tokens['scoped-a']}"},
                {"Cookie": f"wp_session={login(api, 'boss', A)[0]}"}):
        status, page, _ = call(api, "GET", "/api/v1/queue", headers=who)
        assert status == 200 and [e["id"] for e in page["items"]] == [mine] and page["total"] == 1, page
        assert call(api, "GET", f"/api/v1/queue/{mine}", headers=who)[0] == 200
        assert call(api, "GET", f"/api/v1/queue/{forged}", headers=who)[0] == 403
        status, page, _ = call(api, "GET", "/api/v1/queue?recipient=far2@remote.test", headers=who)
        assert status == 200 and page["items"] == []
    # The server administrator's domain filter chooses the same.
    status, page, _ = call(api, "GET", f"/api/v1/queue?domain={A}", token=api.tokens["server"])
    assert [e["id"] for e in page["items"]] == [mine]
    # What a server administrator held of the account's outgoing mail (a spam run, say)
    # the domain's administrator sees but may not release, retry or hold by filter:
    # they act only on their own domains' recipients (found by review).
    server = api.tokens["server"]
    assert call(api, "POST", "/api/v1/queue/hold", {"recipient": "far1@remote.test"}, token=server)[1] == \
        {"recipients": 1}
    for path in ("/api/v1/queue/release", "/api/v1/queue/flush", "/api/v1/queue/hold"):
        status, answer, _ = call(api, "POST", path, {}, token=api.tokens["scoped-a"])
        assert status == 200 and answer == {"recipients": 0}, (path, answer)
        status, answer, _ = call(api, "POST", path, {"recipient": "far1@remote.test"}, token=api.tokens["scoped-a"])
        assert status == 403, (path, answer)
    assert call(api, "GET", f"/api/v1/queue/{mine}", token=server)[1]["recipients"][0]["held"] is True
    status, answer, _ = call(api, "POST", "/api/v1/queue/delete", {"domain": A}, token=api.tokens["scoped-a"])
    assert status == 200 and answer == {"messages": 1}
    assert mine not in api.queue_ids() and forged in api.queue_ids()
    call(api, "DELETE", f"/api/v1/queue/{forged}", token=api.tokens["server"])


def test_failed_logins_are_listed_and_forgotten_by_a_server_administrator(api):
    """``waypost auth blocked|unblock`` over the API and on its page: a failed SMTP
    login counted for the account and the client, forgotten; a domain token refused."""
    with smtplib.SMTP("127.0.0.1", api.submission_port, timeout=10) as c:
        c.starttls(context=client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login(f"user@{A}", "not-the-password")
    status, page, _ = call(api, "GET", "/api/v1/auth/blocked", token=api.tokens["server"])
    keys = {r["key"]: r for r in page["items"]}
    assert status == 200 and keys[f"account:user@{A}"]["failures"] >= 1, page
    assert "client:127.0.0.1" in keys
    assert call(api, "GET", "/api/v1/auth/blocked", token=api.tokens["scoped-a"])[0] == 403
    assert call(api, "DELETE", f"/api/v1/auth/blocked/user@{A}", token=api.tokens["scoped-a"])[0] == 403
    status, answer, _ = call(api, "DELETE", f"/api/v1/auth/blocked/user@{A}", token=api.tokens["server"])
    assert status == 200 and answer == {"key": f"account:user@{A}", "cleared": True}, answer
    status, answer, _ = call(api, "DELETE", "/api/v1/auth/blocked/not%20an%20address!", token=api.tokens["server"])
    assert status == 400 and answer["error"]["field"] == "who", answer
    # The page: the client's count, forgotten with its button's form (CSRF token in it).
    cookie, _ = login(api, "root", "example.test")
    status, html, _ = call(api, "GET", "/admin/logins", headers={"Cookie": f"wp_session={cookie}"})
    assert status == 200 and 'data-key="client:127.0.0.1"' in html and f"account:user@{A}" not in html
    csrf = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    form = urllib.parse.urlencode({"csrf": csrf, "action": "unblock", "who": "client:127.0.0.1"})
    status, _, _ = call(api, "POST", "/admin/logins", raw=form.encode(),
                        headers={"Cookie": f"wp_session={cookie}", "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303
    assert "client:127.0.0.1" not in api.ok("auth", "blocked")
    api.expect_log(r"event=admin-change actor=admin:root@example\.test action=auth-unblock object=client:127\.0\.0\.1")


def test_a_domain_administrator_deletes_no_mail_of_another_domain(api):
    """A message waiting for recipients of A and of B: A's administrator sees it, but
    deleting it would take B's mail too: refused by id, kept by a filter; a message
    only for A goes."""
    from waypost.db import QueuedMessage, QueuedRecipient

    now = __import__("time").time()
    msgs = []
    for msg_id, rcpts in (("SHAREDAB0001", [f"a1@{A}", f"b1@{B}"]), ("ONLYA0000001", [f"a2@{A}"])):
        m = QueuedMessage(msg_id, "x@remote.test", now, 10, {"params": {}})
        for i, r in enumerate(rcpts):
            m.recipients.append(QueuedRecipient(msg_id, i, r, "mx:elsewhere.test", {"kind": "remote"}, held=True))
        msgs.append(m)
    db = api.db()
    try:
        db.queue_insert(msgs, lease_owner="", lease_until=0.0)
    finally:
        db.close()
    scoped = {"Authorization": f"Bearer {api.tokens['scoped-a']}"}
    status, page, _ = call(api, "GET", "/api/v1/queue", headers=scoped)
    assert {"SHAREDAB0001", "ONLYA0000001"} <= {e["id"] for e in page["items"]}
    status, answer, _ = call(api, "DELETE", "/api/v1/queue/SHAREDAB0001", headers=scoped)
    assert status == 403 and "other domains" in answer["error"]["message"], answer
    status, answer, _ = call(api, "POST", "/api/v1/queue/delete", {"domain": A}, headers=scoped)
    assert status == 200 and answer == {"messages": 1}, answer
    ids = api.queue_ids()
    assert "SHAREDAB0001" in ids and "ONLYA0000001" not in ids
    assert call(api, "DELETE", "/api/v1/queue/SHAREDAB0001", token=api.tokens["server"])[0] == 200


def test_schemathesis_against_the_served_document(api, tmp_path):
    """schemathesis (a test extra) generates requests from /api/v1/openapi.json and
    sends them to the real listener as a server administrator: no 5xx, every status
    code documented, every answer JSON that matches its schema.  Last in the module: it
    removes what it finds (it reads the addresses and domains the API answers with), the
    fixture's accounts and domains too."""
    pytest.importorskip("schemathesis")
    import shutil
    import sys
    from pathlib import Path

    exe = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert exe, "schemathesis is a test extra: make install-test"
    run = subprocess.run(
        [exe, "run", f"http://127.0.0.1:{api.http_port}/api/v1/openapi.json",
         "-H", f"Authorization: Bearer {api.tokens['server']}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "15", "--seed", "18", "--workers", "1",
         "--request-timeout", "20", "--report-dir", str(tmp_path), "--no-color"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert not api.log_lines(r"event=api-error|Traceback")
