"""``waypost gateway ...``: the forwarding table and next-hop credentials (seed 003)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..rules import RULES_KEY
from .common import App, emit, fail, handle_errors, json_option, pass_app, print_text, refuse_import

__all__ = ["gateway"]


@click.group()
def gateway() -> None:
    """Gateway forwarding rules (PMailServer2 style): MATCH DESTINATION [rewrite=DOMAIN],
    first match wins.  Example: waypost gateway import rules.txt
    """


@gateway.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_app
def gateway_import(app: App, file: Any) -> None:
    """Replace the rules with FILE; every line is checked first and nothing changes if one
    is bad.  Example: waypost gateway import rules.txt"""
    count, errors = app.ops.gateway_set(file.read())
    refuse_import(errors, getattr(file, "name", "-"), "line(s); the rules were not changed")
    click.echo(f"imported {count} rule(s); a running server uses them at once")


@gateway.command("export")
@pass_app
def gateway_export(app: App) -> None:
    """Print the rules as imported.  Example: waypost gateway export > rules.txt"""
    print_text(app.db.get_value(RULES_KEY) or "")


@gateway.command("show")
@json_option
@pass_app
def gateway_show(app: App, as_json: bool) -> None:
    """The rules in the order they are tried.  Example: waypost gateway show"""
    rows = [dict(r, port=r["port"] or "") for r in app.ops.gateway_list()]
    emit(app, rows, ["line", "match", "destination", "port", "rewrite"], as_json, "Gateway rules")


@gateway.command("test")
@click.argument("address")
@pass_app
@handle_errors
def gateway_test(app: App, address: str) -> None:
    """Which rule decides for ADDRESS.  Example: waypost gateway test user1@example.jp"""
    found = app.ops.gateway_test(address)
    r = found["rule"]
    if r is None:
        click.echo(f"no rule: {address} is delivered normally")
    else:
        dest = "MTA" if r["destination"] == "MTA" else (f"{r['destination']}:{r['port']}" if r["port"] else r["destination"])
        text = f"{r['match']} {dest}" + (f" rewrite={r['rewrite']}" if r["rewrite"] else "")
        click.echo(f"line {r['line']}: {text} -> {'normal delivery' if dest == 'MTA' else found['envelope']}")


@gateway.group()
def auth() -> None:
    """SMTP AUTH towards the next hop.  Example: waypost gateway auth set --user relay --password-stdin"""


@auth.command("set")
@click.option("--for", "who", default="*", show_default=True,
              help="A local sender with an upstream account of its own; '*' is the common account.")
@click.option("--user", required=True, help="The upstream account name.")
@click.option("--password", default=None, help="The upstream password (prompted for when not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_app
@handle_errors
def auth_set(app: App, who: str, user: str, password: str | None, password_stdin: bool) -> None:
    """Set credentials (sealed with the data directory's key).  Example: waypost gateway auth set --user relay --password-stdin"""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password is None:
        password = click.prompt("Password", hide_input=True)
    if not password:
        fail("empty password")
    app.ops.gateway_auth_set(who, user, password)
    click.echo(f"credentials for {who} set (user {user})")


@auth.command("list")
@json_option
@pass_app
def auth_list(app: App, as_json: bool) -> None:
    """Who authenticates as whom (passwords are never shown).  Example: waypost gateway auth list"""
    rows = app.ops.gateway_auth_list()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    emit(app, rows, ["for", "user"], False, "Next-hop credentials")


@auth.command("remove")
@click.argument("who")
@pass_app
@handle_errors
def auth_remove(app: App, who: str) -> None:
    """Remove credentials.  Example: waypost gateway auth remove '*'"""
    app.ops.gateway_auth_remove(who)
    click.echo(f"credentials for {who} removed")
