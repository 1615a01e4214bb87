"""``waypost sieve ...``: accounts' Sieve filters (RFC 5228), the same scripts that
ManageSieve clients (RFC 5804) edit."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from .common import App, emit, fail, handle_errors, json_option, pass_app
from .quota import account_arg

__all__ = ["sieve"]

@click.group()
def sieve() -> None:
    """Sieve filters of accounts (fileinto, reject, vacation, ...)."""


@sieve.command("put")
@click.argument("address")
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--activate", is_flag=True, help="Make it the account's active script.")
@pass_app
@handle_errors
def sieve_put(app: App, address: str, name: str, file: TextIO, activate: bool) -> None:
    """Store a script (checked first; refused with its line and column).
    Example: waypost sieve put alice@client1.com main main.sieve --activate"""
    from ..ops import Invalid

    try:
        app.ops.sieve_put(address, name, file.read(), activate)
    except Invalid as e:
        fail(f"{name}: {e.message}" if e.field == "script" else e.message)
    acct = account_arg(app, address)
    click.echo(f"script {name} of {acct.address} stored" + (" and active" if activate else ""))


@sieve.command("get")
@click.argument("address")
@click.argument("name")
@pass_app
@handle_errors
def sieve_get(app: App, address: str, name: str) -> None:
    """Print a script.  Example: waypost sieve get alice@client1.com main"""
    sys.stdout.write(app.ops.sieve_get(address, name))


@sieve.command("list")
@click.argument("address")
@json_option
@pass_app
@handle_errors
def sieve_list(app: App, address: str, as_json: bool) -> None:
    """An account's scripts.  Example: waypost sieve list alice@client1.com"""
    rows = app.ops.sieve_list(address)
    emit(app, rows, ["name", "active"], as_json, f"Sieve scripts of {account_arg(app, address).address}")


@sieve.command("activate")
@click.argument("address")
@click.argument("name", required=False)
@click.option("--none", "none", is_flag=True, help="No active script: plain delivery to INBOX.")
@pass_app
@handle_errors
def sieve_activate(app: App, address: str, name: str | None, none: bool) -> None:
    """Choose the active script.  Example: waypost sieve activate alice@client1.com main"""
    if (name is None) == (not none):
        fail("give NAME or --none")
    app.ops.sieve_activate(address, None if none else name)
    click.echo(f"{account_arg(app, address).address}: " + ("no active script" if none else f"{name} is active"))


@sieve.command("delete")
@click.argument("address")
@click.argument("name")
@pass_app
@handle_errors
def sieve_delete(app: App, address: str, name: str) -> None:
    """Delete a script (not the active one).  Example: waypost sieve delete alice@client1.com old"""
    app.ops.sieve_delete(address, name)
    click.echo(f"script {name} of {account_arg(app, address).address} deleted")


@sieve.command("check")
@click.argument("file", type=click.File("r", encoding="utf-8"), default="-")
def sieve_check(file: TextIO) -> None:
    """Check a script without storing it.  Example: waypost sieve check main.sieve"""
    from ..sieve import SieveError, compile_script

    try:
        script = compile_script(file.read())
    except SieveError as e:
        fail(str(e))
    click.echo("OK" + (f" (requires {', '.join(sorted(script.extensions))})" if script.extensions else ""))
