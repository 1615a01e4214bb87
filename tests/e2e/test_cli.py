"""The ``waypost`` command as an administrator uses it (real subprocesses where it matters)."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from waypost.config import reference_markdown


@pytest.mark.sqlite_only
def test_init_creates_everything(instance):
    d = instance.data
    assert (d / "waypost.toml").exists()
    assert (d / "waypost.db").exists()
    assert (d / "tls" / "cert.pem").exists() and (d / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    assert (d / "spool").is_dir() and (d / "mail").is_dir()
    mode = subprocess.run(["sqlite3", str(d / "waypost.db"), "PRAGMA journal_mode"], capture_output=True, text=True)
    if mode.returncode == 0:
        assert mode.stdout.strip() == "wal"
    again = instance.cli("init", str(d), use_data=False)
    assert again.exit_code == 1 and "exists" in again.output


def test_domain_commands(instance):
    instance.ok("domain", "add", "client1.com", "--alias", "client1.net")
    instance.ok("domain", "set", "client1.com", "--ip", "127.0.0.2")
    rows = json.loads(instance.ok("domain", "list", "--json"))
    by_name = {r["name"]: r for r in rows}
    assert by_name["example.test"]["main"] is True
    assert by_name["client1.com"]["aliases"] == ["client1.net"]
    assert by_name["client1.com"]["ips"] == ["127.0.0.2"]
    bad = instance.cli("domain", "add", "client1.net")
    assert bad.exit_code == 1 and "error:" in bad.output
    assert "client1.com" in instance.ok("domain", "list")
    instance.ok("domain", "remove", "client1.com", "--yes")
    assert [r["name"] for r in json.loads(instance.ok("domain", "list", "--json"))] == ["example.test"]
    main = instance.cli("domain", "remove", "example.test", "--yes")
    assert main.exit_code == 1 and "main domain" in main.output


def test_account_commands(instance):
    instance.ok("account", "add", "info@example.test", "--password-stdin", "--name", "Info Desk", input="pw-one\n")
    rows = json.loads(instance.ok("account", "list", "--json"))
    assert [r["address"] for r in rows] == ["info@example.test", "postmaster@example.test"]  # init made postmaster
    row = rows[0]
    assert row["address"] == "info@example.test" and row["real_name"] == "Info Desk" and row["has_password"]
    assert "password" not in json.dumps(row).replace("has_password", "")
    instance.ok("account", "passwd", "info@example.test", "--password", "pw-two")
    instance.ok("account", "set", "info@example.test", "--disable")
    assert json.loads(instance.ok("account", "list", "--json"))[0]["enabled"] is False
    pm = instance.cli("route", "postmaster@EXAMPLE.test", "--from", "203.0.113.5", "--json")
    assert json.loads(pm.output)["route"]["kind"] == "local"  # RFC 5321 §4.5.1
    dup = instance.cli("account", "add", "info@example.test", "--no-password")
    assert dup.exit_code == 1 and "already exists" in dup.output
    nodom = instance.cli("account", "add", "x@nowhere.example", "--no-password")
    assert nodom.exit_code == 1 and "not a local domain" in nodom.output
    instance.ok("account", "remove", "info@example.test")
    assert [r["address"] for r in json.loads(instance.ok("account", "list", "--json"))] == ["postmaster@example.test"]


def test_alias_forwarder_group_commands(instance):
    instance.ok("account", "add", "info@example.test", "--no-password")
    instance.ok("alias", "add", "sales@example.test", "info")
    instance.ok("forwarder", "add", "boss@example.test", "boss@home.example")
    instance.ok("forwarder", "set", "boss@example.test", "boss@new.example")
    instance.ok("group", "add", "staff@example.test", "--member", "info", "--member", "bob@other.example")
    instance.ok("group", "set", "staff@example.test", "--add", "carol", "--remove", "bob@other.example")
    assert json.loads(instance.ok("alias", "list", "--json"))[0]["target"] == "info"
    assert json.loads(instance.ok("forwarder", "list", "--json"))[0]["target"] == "boss@new.example"
    assert json.loads(instance.ok("group", "list", "--json"))[0]["members"] == ["info", "carol"]
    wrong = instance.cli("alias", "remove", "boss@example.test")
    assert wrong.exit_code == 1 and "is a forwarder" in wrong.output
    for kind, addr in (("alias", "sales"), ("forwarder", "boss"), ("group", "staff")):
        instance.ok(kind, "remove", f"{addr}@example.test")
        assert json.loads(instance.ok(kind, "list", "--json")) == []


def test_route_explains_itself(instance):
    instance.ok("account", "add", "info@example.test", "--no-password")
    out = json.loads(instance.ok("route", "info@EXAMPLE.test", "--json"))
    assert out["route"]["kind"] == "local" and out["target"] == "local"
    denied = json.loads(instance.ok("route", "joe@friend.example", "--from", "203.0.113.5", "--json"))
    assert denied["route"]["kind"] == "refuse" and denied["route"]["status"] == "5.7.1"
    assert any("relay: denied" in step for step in denied["trace"])
    allowed = instance.ok("route", "joe@friend.example", "--auth", "info@example.test")
    assert "relay: allowed (authenticated as info@example.test)" in allowed


def test_config_errors_name_the_key(instance):
    text = (instance.data / "waypost.toml").read_text().replace("max_recipients = 1000", "max_recipients = \"many\"")
    (instance.data / "waypost.toml").write_text(text)
    bad = instance.cli("config", "check")
    assert bad.exit_code == 1 and "smtp.max_recipients" in bad.output
    (instance.data / "waypost.toml").write_text(text.replace('max_recipients = "many"', "max_recipents = 5"))
    bad = instance.cli("config", "check")
    assert bad.exit_code == 1 and "unknown key smtp.max_recipents" in bad.output


def test_readme_carries_the_configuration_reference():
    readme = (__import__("pathlib").Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert reference_markdown() in readme, "README.md is out of date: paste `waypost config reference`"


def test_every_command_has_help_and_a_readme_example():
    from waypost.cli import cli

    readme = (__import__("pathlib").Path(__file__).resolve().parents[2] / "README.md").read_text()

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, prefix + [name])
            else:
                yield prefix + [name]

    for path in walk(cli, []):
        out = CliRunner().invoke(cli, [*path, "--help"])
        assert out.exit_code == 0, path
        assert "Example:" in out.output, f"waypost {' '.join(path)} --help has no example"
        assert f"waypost {' '.join(path)}" in readme or f"`{' '.join(path)}" in readme, f"README lacks {path}"


def test_route_follows_relay_backup_mx(tmp_path):
    """Issue 13 item 17: ``waypost route`` asks DNS as the listener does when
    ``relay.backup_mx`` is on, instead of printing "Relay access denied"."""
    from support.dnsserver import TestDNSServer
    from support.server import WaypostInstance

    with TestDNSServer({
        "backedup.test": {"MX": [(10, "primary.backedup.test"), (20, "mx.isp.test")]},
        "primaryonly.test": {"MX": [(10, "mx.isp.test")]},
    }) as dns:
        isp = WaypostInstance(tmp_path / "isp", domain="isp.test", hostname="mx.isp.test",
                              dns={"nameservers": [dns.nameserver]}, relay={"trusted_networks": [], "backup_mx": True})
        out = json.loads(isp.ok("route", "joe@backedup.test", "--from", "203.0.113.5", "--json"))
        assert out["route"]["kind"] == "remote" and out["target"] == "mx:backedup.test"
        assert any("backup MX" in step for step in out["trace"])
        only = json.loads(isp.ok("route", "joe@primaryonly.test", "--from", "203.0.113.5", "--json"))
        assert only["route"]["kind"] == "refuse" and only["route"]["status"] == "5.7.1"
        isp.configure(relay={"backup_mx": False})
        off = json.loads(isp.ok("route", "joe@backedup.test", "--from", "203.0.113.5", "--json"))
        assert off["route"]["kind"] == "refuse" and off["route"]["status"] == "5.7.1"


def test_domain_template_shows_what_was_set(instance):
    """Issue 13 item 17: the template read back is the one written."""
    instance.ok("domain", "template", "example.test", "--mailbox", "Archive", "--subscribe", "~marketing/announce",
                "--alias", "mkt=~marketing/announce")
    shown = json.loads(instance.ok("domain", "template", "example.test", "--json"))
    assert shown == {"mailboxes": ["Archive"], "subscriptions": ["~marketing/announce"],
                     "aliases": {"mkt": "~marketing/announce"}}
    text = instance.ok("domain", "template", "example.test")
    assert "mailboxes: Archive" in text and "mkt -> ~marketing/announce" in text
    instance.ok("domain", "template", "example.test", "--clear")
    assert json.loads(instance.ok("domain", "template", "example.test", "--json"))["mailboxes"] == []


def test_mail_to_unknown_takes_every_via_spelling(instance):
    """Issue 13 item 17: Mail to Unknown accepts the ``._via`` and ``.smtp`` spellings
    that ``router import`` accepts, and routes them as ``.via``."""
    for spelling in ("._via", ".smtp", ".via"):
        instance.ok("domain", "set", "example.test", "--mail-to-unknown", f"*%example.test@old.example.test{spelling}")
        out = json.loads(instance.ok("route", "nobody@example.test", "--json"))
        assert out["route"]["kind"] == "remote", (spelling, out)
        assert out["target"] == "mx:old.example.test" and out["route"]["address"] == "nobody@example.test"
    bad = instance.cli("domain", "set", "example.test", "--mail-to-unknown", "*@bad_host._via")
    assert bad.exit_code == 1 and "error:" in bad.output


def test_forwarding_loops_are_refused_where_they_can_be_seen(instance):
    """Issue 13 item 2: a forwarder, group member or account forwarding that leads back
    to itself (directly, through a domain alias, or a chain of aliases, groups and
    forwarders) is refused by the command, which names the chain."""
    instance.ok("domain", "set", "example.test", "--alias", "example.net")
    instance.ok("account", "add", "info@example.test", "--no-password")
    instance.ok("alias", "add", "desk@example.test", "info")

    def refused(*args: str) -> str:
        r = instance.cli(*args)
        assert r.exit_code == 1, (args, r.output)
        assert "loop" in r.output, r.output
        return str(r.output)

    refused("forwarder", "add", "loop@example.test", "loop@example.test")
    refused("forwarder", "add", "loop@example.test", "LOOP@Example.NET")
    instance.ok("forwarder", "add", "f1@example.test", "g@example.test")  # g does not exist yet
    out = refused("group", "add", "g@example.test", "--member", "info", "--member", "f1")
    assert "f1@example.test" in out
    instance.ok("group", "add", "g@example.test", "--member", "info")
    refused("group", "set", "g@example.test", "--add", "f1@example.net")
    refused("group", "set", "g@example.test", "--add", "g")
    instance.ok("forwarder", "add", "f2@example.test", "f1@example.test")
    refused("forwarder", "set", "f1@example.test", "f2@example.test")
    refused("account", "set", "info@example.test", "--forward", "desk@example.test")
    refused("account", "set", "info@example.test", "--forward", "f1@example.test")  # f1 -> g -> info
    instance.ok("account", "set", "info@example.test", "--forward", "boss@elsewhere.example")
    instance.ok("forwarder", "set", "f1@example.test", "info@example.test")
    assert [r["target"] for r in json.loads(instance.ok("forwarder", "list", "--json"))] == [
        "info@example.test", "f1@example.test"]
