"""The operations layer (issue 18 point 1): who may do what, as the CLI, the admin
pages and the API share it; domain administrators; API tokens (``waypost token``)."""

from __future__ import annotations

import hashlib
import json

import pytest

from waypost.db import NotFound, QueueFilter
from waypost.directory import Directory
from waypost.ops import Actor, Denied, Invalid, Operations, Tokens, token_actor


def _ops(instance, actor: Actor):
    db = instance.db()
    return db, Operations(Directory(db, instance.domain), actor)


def test_admin_domain_right_set_and_cleared_with_the_cli(instance):
    instance.ok("domain", "add", "client.test")
    instance.ok("account", "add", "boss@client.test", "--password", "boss-pw-1")
    instance.ok("account", "set", "boss@client.test", "--admin-domain", "Client.Test")
    rows = json.loads(instance.ok("account", "list", "--domain", "client.test", "--json"))
    assert rows[0]["admin_domains"] == ["client.test"] and "password" not in rows[0]
    db, ops = _ops(instance, Actor.cli())
    try:
        actor = Actor.of_account(ops.directory.get("boss@client.test"))
        assert actor is not None and actor.domains == frozenset({"client.test"}) and not actor.server_admin
        result = instance.cli("account", "set", "boss@client.test", "--admin-domain", "nowhere.test")
        assert result.exit_code == 1 and "--admin-domains: nowhere.test is not a local domain" in result.output
        instance.ok("account", "set", "boss@client.test", "--no-admin-domains")
        assert Actor.of_account(ops.directory.get("boss@client.test")) is None  # an ordinary account
        instance.ok("account", "set", "boss@client.test", "--right", "AllUsers")
        admin = Actor.of_account(ops.directory.get("boss@client.test"))
        assert admin is not None and admin.server_admin
        instance.ok("account", "set", "boss@client.test", "--disable")
        assert Actor.of_account(ops.directory.get("boss@client.test")) is None  # disabled: nothing
    finally:
        db.close()


def test_a_domain_administrator_changes_only_their_domain(instance, caplog):
    instance.ok("domain", "add", "a.test")
    instance.ok("domain", "add", "b.test")
    instance.ok("account", "add", "x@b.test", "--password", "x-pw-1")
    instance.ok("account", "add", "root@a.test", "--password", "root-pw-1")
    instance.ok("account", "set", "root@a.test", "--right", "AllUsers")
    instance.ok("account", "add", "peer@a.test", "--password", "peer-pw-1")
    instance.ok("account", "set", "peer@a.test", "--admin-domain", "a.test", "--admin-domain", "b.test")
    db, ops = _ops(instance, Actor("admin:boss@a.test", frozenset({"a.test"})))
    try:
        with caplog.at_level("INFO", logger="waypost.admin"):
            caplog.clear()  # the CLI's own changes above are logged too when an earlier test left INFO on
            obj = ops.account_add("info@a.test", "info-pw-1")
        assert obj.address == "info@a.test"
        fields = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "admin-change"]
        assert fields == [{"event": "admin-change", "actor": "admin:boss@a.test", "action": "account-add",
                           "object": "info@a.test"}]
        ops.alias_add("sales@a.test", "info")
        ops.forwarder_add("out@a.test", "someone@elsewhere.example")
        ops.group_add("team@a.test", ["info"])
        ops.domain_set("a.test", mail_to_unknown="discarded")
        ops.domain_template("a.test", {"mailboxes": ["Projects"], "subscriptions": [], "aliases": {}})
        assert [d.name for d in ops.domain_list()] == ["a.test"]
        assert {o.address for o in ops.object_list("account")} == {"info@a.test", "root@a.test", "peer@a.test"}
        # Accounts with administrator rights in A are a server administrator's to change:
        # their password or forwarding would hand over their rights.
        for admin in ("root@a.test", "peer@a.test"):
            before_admin = db.get_object("a.test", admin.split("@")[0])
            for attempt in (lambda: ops.account_passwd(admin, "taken-over-1"),
                            lambda: ops.account_set(admin, forward="me@elsewhere.example"),
                            lambda: ops.account_set(admin, enabled=False),
                            lambda: ops.account_remove(admin)):
                with pytest.raises(Denied):
                    attempt()
            assert db.get_object("a.test", admin.split("@")[0]) == before_admin
        before = db.get_object("b.test", "x")
        for attempt in (lambda: ops.account_add("y@b.test", "y-pw-1"),
                        lambda: ops.account_passwd("x@b.test", "new-pw-1"),
                        lambda: ops.account_set("x@b.test", real_name="X"),
                        lambda: ops.account_remove("x@b.test"),
                        lambda: ops.alias_add("z@b.test", "x"),
                        lambda: ops.object_list("account", "b.test"),
                        lambda: ops.domain_set("b.test", mail_to_unknown="discarded"),
                        lambda: ops.domain_add("c.test"),
                        lambda: ops.domain_remove("a.test"),
                        lambda: ops.domain_set("a.test", ips=["127.0.0.9"]),
                        lambda: ops.account_set("info@a.test", rights=["AllUsers"]),
                        lambda: ops.account_set("info@a.test", admin_domains=["b.test"]),
                        lambda: ops.router_set("x@y.test = z@y.test\n"),
                        lambda: ops.queue_hold("b.test"),
                        lambda: Tokens(ops).add("mine")):
            with pytest.raises(Denied):
                attempt()
        assert db.get_object("b.test", "x") == before
        assert db.get_domain("c.test") is None
        # The queue of a.test: its recipients, or mail its accounts sent (to b.test too).
        assert ops.queue_scope(QueueFilter()) == QueueFilter(domain="a.test")
        assert ops.queue_scope(QueueFilter(recipient="x@b.test")) == QueueFilter(recipient="x@b.test", domain="a.test")
        with pytest.raises(Denied):
            ops.queue_scope(QueueFilter(), "b.test")
    finally:
        db.close()


def test_forwarding_loops_and_bad_input_name_the_field(instance):
    db, ops = _ops(instance, Actor.cli())
    ops2 = Operations(ops.directory, Actor.cli(), router=lambda: __import__("waypost.cli.common", fromlist=["App"])
                      .App(instance.data).router)
    try:
        with pytest.raises(Invalid) as e:
            ops2.forwarder_add("loop@example.test", "LOOP@example.test")
        assert e.value.field == "target" and "forwarding loop" in e.value.message
        with pytest.raises(Invalid) as e:
            ops.account_set("postmaster@example.test", rights=["Root"])
        assert e.value.field == "rights"
        with pytest.raises(Invalid) as e:
            ops.account_set("postmaster@example.test", colour="red")
        assert e.value.field == "colour"
        with pytest.raises(Invalid) as e:
            ops.domain_set("example.test", mail_to_unknown="nowhere")
        assert e.value.field == "mail_to_unknown"
        with pytest.raises(NotFound):
            ops.object_get("nobody@example.test", "account")
    finally:
        db.close()


def test_tokens_are_shown_once_stored_hashed_and_revoked_at_once(instance):
    instance.ok("domain", "add", "client.test")
    result = instance.cli("token", "add", "ci-deploy", "--domain", "client.test")
    assert result.exit_code == 0, result.output
    secret = result.output.splitlines()[0]
    assert secret.startswith("wpt_") and len(secret) >= 4 + 43  # 256 random bits, base64url
    listed = instance.ok("token", "list", "--json")
    assert secret not in listed and json.loads(listed)[0]["scope"] == ["client.test"]
    instance.ok("token", "add", "root-token")
    assert instance.cli("token", "add", "ci-deploy").exit_code == 1  # the name is taken
    bad = instance.cli("token", "add", "bad name")
    assert bad.exit_code == 1 and "--name:" in bad.output
    assert instance.cli("token", "add", "x", "--domain", "nowhere.test").exit_code == 1
    db = instance.db()
    try:
        dump = json.dumps([list(map(str, r)) for r in _rows(db)])
        assert secret not in dump and hashlib.sha256(secret.encode()).hexdigest() in dump
        actor = token_actor(db, secret)
        assert actor is not None and actor.name == "token:ci-deploy" and actor.domains == frozenset({"client.test"})
        assert token_actor(db, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert token_actor(db, "not-a-token") is None
        instance.ok("token", "remove", "ci-deploy")
        assert token_actor(db, secret) is None
        assert instance.cli("token", "remove", "ci-deploy").exit_code == 1
        assert [t.name for t in db.api_token_list()] == ["root-token"]
    finally:
        db.close()


def _rows(db):
    if hasattr(db, "_conn"):
        return db._conn().execute("SELECT * FROM api_tokens").fetchall()
    with db._read() as c:
        return c.execute("SELECT * FROM api_tokens").fetchall()
