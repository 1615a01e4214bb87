"""``waypost auth blocked|unblock``: the login throttle's counts (see waypost.directory.throttle)."""

from __future__ import annotations

import time

import click

from ..address import AddressError, parse_address
from ..directory.throttle import client_key
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["auth"]


@click.group()
def auth() -> None:
    """Failed logins counted against client addresses and accounts (the auth.* settings).
    Example: waypost auth blocked"""


@auth.command("blocked")
@json_option
@pass_app
@handle_errors
def auth_blocked(app: App, as_json: bool) -> None:
    """Client addresses and accounts with failed logins still counted, and their blocks.
    Example: waypost auth blocked --json"""
    now = time.time()
    rows = []
    for key, failures, last, until in app.db.login_failures_list(now - app.settings.auth.window):
        rows.append({"key": key, "failures": failures,
                     "last_failure": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last)),
                     "blocked_for": f"{int(until - now)}s" if until > now else ""})
    emit(app, rows, ["key", "failures", "last_failure", "blocked_for"], as_json, title="Failed logins")


@auth.command("unblock")
@click.argument("who", metavar="CLIENT_ADDRESS|ACCOUNT")
@pass_app
@handle_errors
def auth_unblock(app: App, who: str) -> None:
    """Forget the failed logins of a client address (an IPv6 one: its /64) or an account.
    Example: waypost auth unblock 192.0.2.7"""
    key = client_key(who)
    if key is None:
        try:
            a = parse_address(who, allow_no_domain=True)
        except AddressError as e:
            fail(f"{who}: neither an IP address nor an account ({e})")
        obj = app.directory.account_named(a.local_key, a.domain or app.directory.main_domain)
        if obj is None:
            fail(f"{who}: no such account")
            return
        key = f"account:{obj.address}"
    n = app.db.login_failures_clear([key])
    click.echo(f"{key}: {'unblocked' if n else 'nothing was counted'}")
