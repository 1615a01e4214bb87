"""``waypost auth blocked|unblock``: the login throttle's counts (see waypost.directory.throttle)."""

from __future__ import annotations

import time

import click

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
    rows = [{"key": r["key"], "failures": r["failures"],
             "last_failure": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_failure"])),
             "blocked_for": f"{int(r['blocked_until'] - now)}s" if r["blocked_until"] > now else ""}
            for r in app.ops.auth_blocked()]
    emit(app, rows, ["key", "failures", "last_failure", "blocked_for"], as_json, title="Failed logins")


@auth.command("unblock")
@click.argument("who", metavar="CLIENT_ADDRESS|ACCOUNT")
@pass_app
@handle_errors
def auth_unblock(app: App, who: str) -> None:
    """Forget the failed logins of a client address (an IPv6 one: its /64) or an account.
    Example: waypost auth unblock 192.0.2.7"""
    from ..db import NotFound
    from ..ops import Invalid

    try:
        key, n = app.ops.auth_unblock(who)
    except (Invalid, NotFound) as e:
        fail(e.message if isinstance(e, Invalid) else str(e).strip("'\""))
    click.echo(f"{key}: {'unblocked' if n else 'nothing was counted'}")
