"""The directory and the simple router on a real SQLite database."""

from __future__ import annotations

import pytest

from waypost.db import Conflict, NotFound
from waypost.directory import Directory, DirectoryError
from waypost.router import Context, Router


@pytest.fixture
def directory(tmp_path, make_db):
    db = make_db("w.db")
    d = Directory(db, "example.test")
    d.add_domain("example.test")
    d.add_domain("client1.com", aliases=["client1.net"])
    yield d
    db.close()


def test_domains_and_aliases(directory):
    assert [d.name for d in directory.list_domains()] == ["client1.com", "example.test"]
    assert directory.domain("CLIENT1.NET.").name == "client1.com"
    with pytest.raises(Conflict):
        directory.add_domain("client1.net")
    with pytest.raises(DirectoryError):
        directory.add_domain("bad_domain!")
    with pytest.raises(DirectoryError):
        directory.remove_domain("example.test")  # the main domain stays
    directory.remove_domain("client1.com")
    assert directory.domain("client1.net") is None


def test_accounts_passwords_and_one_name_space(directory):
    acct = directory.add_account("Info@Client1.com", "s3cret-pass", "Info Desk")
    assert acct.address == "info@client1.com"
    assert acct.data["password"].startswith("$argon2")
    assert directory.verify_password(acct, "s3cret-pass")
    assert not directory.verify_password(acct, "wrong")
    with pytest.raises(Conflict):
        directory.add_forwarder("info@client1.com", "x@elsewhere.example")
    with pytest.raises(DirectoryError):
        directory.add_account("bad%name@client1.com", "x")
    with pytest.raises(DirectoryError):
        directory.add_account("someone@not-local.example", "x")
    directory.update("info@client1.com", "account", {"enabled": False})
    assert not directory.verify_password(directory.get("info@client1.com"), "s3cret-pass")


def test_alias_must_name_an_account_of_its_domain(directory):
    directory.add_account("info@client1.com", None)
    directory.add_alias("sales@client1.com", "info")
    with pytest.raises(DirectoryError):
        directory.add_alias("x@client1.com", "nobody")
    with pytest.raises(DirectoryError):
        directory.add_alias("x@client1.com", "info@example.test")
    directory.remove("info@client1.com", "account")
    with pytest.raises(NotFound):
        directory.get("sales@client1.com")  # removed with its account


def test_router_local_objects_and_expansion(directory):
    r = Router(directory, ["127.0.0.0/8"])
    directory.add_account("info@client1.com", None)
    directory.add_account("bob@example.test", None)
    directory.add_alias("sales@client1.com", "info")
    directory.add_forwarder("boss@client1.com", "boss@elsewhere.example")
    directory.add_group("staff@client1.com", ["info", "bob@example.test", "ghost", "sales", "boss"])
    directory.add_group("loop@client1.com", ["loop", "info"])

    res = r.resolve("sales@client1.net", Context(client_ip="203.0.113.9"))
    assert (res.route.kind, res.route.account, res.route.domain) == ("local", "info", "client1.com")
    assert "domain client1.net: local (alias of client1.com)" in res.trace

    staff = r.resolve("staff@client1.com", Context(client_ip="203.0.113.9")).route
    routes = r.expand(staff)
    kinds = sorted((x.kind, x.address) for x in routes)
    # info and its alias sales are one mailbox... but both names are kept as routes to the same account
    assert ("local", "info@client1.com") in kinds
    assert ("local", "bob@example.test") in kinds
    assert ("remote", "boss@elsewhere.example") in kinds  # the forwarder may relay: it is ours
    assert ("refuse", "ghost@client1.com") in kinds  # bounced later, not silently lost

    looped = r.expand(r.resolve("loop@client1.com").route)
    assert [x.address for x in looped] == ["info@client1.com"]


def test_router_relay_decisions(directory):
    r = Router(directory, ["127.0.0.0/8"])
    outside = Context(client_ip="203.0.113.9")
    assert r.resolve("joe@friend.example", outside).route.kind == "refuse"
    assert r.resolve("joe@friend.example", outside).route.status == "5.7.1"
    assert r.resolve("joe@friend.example", Context(client_ip="127.0.0.5")).route.kind == "remote"
    authed = r.resolve("joe@friend.example", Context(client_ip="203.0.113.9", authenticated="info@client1.com"))
    assert authed.route.kind == "remote" and authed.route.target == "mx:friend.example"
    assert r.resolve("nobody@client1.com", outside).route.code == 550
    assert r.resolve("user%victim.example@client1.com", outside).route.kind == "refuse"
    assert r.resolve("bad address", outside).route.code == 501


def test_login_names(directory):
    r = Router(directory, [])
    directory.add_account("info@client1.com", "pw-client1")
    directory.add_account("info@example.test", "pw-main")
    directory.set_domain("client1.com", ips=["127.0.0.2"])
    assert r.resolve_login("info%client1.com", Context(kind="access")).address == "info@client1.com"
    assert r.resolve_login("info@client1.net", Context(kind="access")).address == "info@client1.com"
    assert r.resolve_login("info", Context(kind="access", server_ip="127.0.0.2")).address == "info@client1.com"
    assert r.resolve_login("info", Context(kind="access", server_ip="127.0.0.1")).address == "info@example.test"
    assert r.resolve_login("nobody", Context(kind="access")) is None


def test_cached_settings_follow_a_change_made_by_another_process(tmp_path, make_db):
    """Two handles on one file stand for two processes: what one changes, the other's
    cache drops at its next look-up (the shared change token), and a caller changing
    the record it was given changes nothing cached."""
    worker, cli = make_db("shared.db"), make_db("shared.db")
    try:
        Directory(cli, "example.test").add_domain("example.test")
        d = Directory(worker, "example.test")
        assert d.domain("example.test").settings == {}
        assert worker.get_value("router.table") is None
        assert d.lookup("joe", "example.test") is None  # a miss is cached too

        Directory(cli, "example.test").set_domain("example.test", aliases=["example.net"], mail_to_unknown="reject")
        cli.set_value("router.table", "<*@old.test> = *@new.test")
        Directory(cli, "example.test").add_account("joe@example.test", None)
        assert d.domain("example.net").name == "example.test"
        assert d.domain("example.test").settings["mail_to_unknown"] == "reject"
        assert worker.get_value("router.table") == "<*@old.test> = *@new.test"
        assert d.lookup("joe", "example.test") is not None

        rec = d.domain("example.test")
        rec.settings["mail_to_unknown"] = "changed by a caller"
        rec.aliases.append("nowhere.test")
        assert d.domain("example.test").settings["mail_to_unknown"] == "reject"
        assert d.domain("example.test").aliases == ["example.net"]

        Directory(cli, "example.test").remove("joe@example.test", "account")
        assert d.lookup("joe", "example.test") is None
        # Queue and mailbox writes leave the cache alone.
        if make_db.engine == "postgresql":  # (the token also moves when a NOTIFY comes in)
            import psycopg

            with psycopg.connect(worker.url, autocommit=True) as conn:
                conn.execute("LISTEN waypost_changes")
                worker.mailbox_create("example.test", "joe", "INBOX", "", 1)
                assert list(conn.notifies(timeout=0.5)) == []
                worker.set_value("x", 1)
                assert len(list(conn.notifies(timeout=2, stop_after=1))) == 1
        else:
            token = bytes(worker._changes[:8])
            worker.mailbox_create("example.test", "joe", "INBOX", "", 1)
            assert bytes(worker._changes[:8]) == token
    finally:
        worker.close()
        cli.close()


def test_may_send_as(directory):
    """The one sender check (submission, web, rule-generated mail): issue 13 item 12."""
    directory.add_account("info@client1.com")
    directory.add_account("bob@client1.com")
    directory.add_alias("sales@client1.com", "info")
    directory.add_group("team@client1.com", ["info", "bob"])
    may = directory.may_send_as
    for own in ("info@client1.com", "Info@CLIENT1.net", "sales@client1.net", '"info"@client1.com', ""):
        assert may("info@client1.com", own), own
    for other in ("bob@client1.com", "team@client1.com", "info@example.test", "ceo@client2.org", "not an address",
                  "info@client1.com.evil.test"):
        assert not may("info@client1.com", other), other
    assert not may("sales@client1.com", "sales@client1.com")  # an alias is not a login identity here
    assert may("ghost@client1.com", "") and not may("ghost@client1.com", "ghost@client1.com")  # no account: only <>
    directory.update("info@client1.com", "account", {"send_as": ["team@client1.net", "*@example.test"]})
    assert may("info@client1.com", "team@client1.com") and may("info@client1.com", "anyone@example.test")
    assert not may("info@client1.com", "bob@client1.com")
    directory.set_domain("client1.com", send_as="domain")
    assert may("bob@client1.com", "info@client1.net") and not may("bob@client1.com", "x@example.test")
    directory.set_domain("client1.com", send_as="any")
    assert may("bob@client1.com", "ceo@client2.org")
