"""The operations layer (issue 18, groundwork for the admin pages and the API): who may
change what, validation naming the field, and one ``event=admin-change`` line per change
naming who made it; on both engines."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from waypost.cli import cli
from waypost.directory import Directory
from waypost.log import configure_logging
from waypost.ops import Actor, Denied, Invalid, Operations


@pytest.fixture
def directory(tmp_path, make_db):
    db = make_db("w.db")
    d = Directory(db, "example.test")
    d.add_domain("example.test")
    d.add_domain("client1.com")
    yield d
    db.close()


def _changes(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "admin-change"]


def test_a_server_administrator_changes_anything_and_each_change_is_logged(directory, caplog):
    caplog.set_level(logging.INFO, logger="waypost.admin")
    ops = Operations(directory, Actor("admin:root@example.test"))
    ops.domain_add("client2.com", aliases=["client2.net"])
    ops.domain_set("client2.com", mail_to_unknown="Discarded")
    ops.account_add("info@client2.com", "s3cret-password")
    ops.account_passwd("info@client2.com", "another-password")
    ops.account_remove("info@client2.com")
    assert ops.domain_remove("client2.com") == 0
    assert [(c["actor"], c["action"], c["object"]) for c in _changes(caplog)] == [
        ("admin:root@example.test", "domain-add", "client2.com"),
        ("admin:root@example.test", "domain-set", "client2.com"),
        ("admin:root@example.test", "account-add", "info@client2.com"),
        ("admin:root@example.test", "account-passwd", "info@client2.com"),
        ("admin:root@example.test", "account-remove", "info@client2.com"),
        ("admin:root@example.test", "domain-remove", "client2.com"),
    ]
    assert "password" not in repr(caplog.records[3].fields).replace("account-passwd", "")


def test_a_domain_administrator_is_refused_outside_their_domains_and_nothing_changes(directory, caplog):
    caplog.set_level(logging.INFO, logger="waypost.admin")
    ops = Operations(directory, Actor("admin:boss@client1.com", frozenset({"client1.com"})))
    ops.account_add("info@client1.com", "s3cret-password")  # their own domain
    ops.domain_set("client1.com", mail_to_unknown="bounced")
    for attempt in (lambda: ops.account_add("info@example.test", "x-password"),
                    lambda: ops.account_remove("postmaster@example.test"),
                    lambda: ops.domain_set("example.test", mail_to_unknown="discarded"),
                    lambda: ops.domain_set("client1.com", ips=["127.0.0.2"]),  # binding addresses: server-wide
                    lambda: ops.domain_add("client3.com"),
                    lambda: ops.domain_remove("client1.com")):
        with pytest.raises(Denied):
            attempt()
    assert directory.db.get_object("example.test", "info") is None
    assert directory.require_domain("example.test").settings.get("mail_to_unknown", "rejected") == "rejected"
    assert directory.db.get_domain("client3.com") is None
    assert [c["action"] for c in _changes(caplog)] == ["account-add", "domain-set"]


def test_bad_input_names_the_field(directory):
    ops = Operations(directory, Actor("token:ci"))
    for bad in ("sometimes", "*@a.*", "no-star@x.via"):
        with pytest.raises(Invalid) as e:
            ops.domain_set("client1.com", mail_to_unknown=bad)
        assert e.value.field == "mail_to_unknown"
    assert directory.require_domain("client1.com").settings.get("mail_to_unknown", "rejected") == "rejected"


def test_the_cli_acts_through_the_operations_as_its_user(tmp_path, capfd):
    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(data), "--domain", "example.test"]).exit_code == 0
    bad = runner.invoke(cli, ["--data", str(data), "domain", "set", "example.test", "--mail-to-unknown", "maybe"])
    assert bad.exit_code == 1 and "--mail-to-unknown: expected" in bad.output
    configure_logging("text", "info")
    try:
        ok = runner.invoke(cli, ["--data", str(data), "domain", "add", "client9.com"])
        assert ok.exit_code == 0, ok.output
    finally:
        logging.getLogger().handlers.clear()
    err = capfd.readouterr().err
    assert "event=admin-change actor=cli:" in err and "action=domain-add object=client9.com" in err
