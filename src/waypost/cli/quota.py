"""``waypost quota ...``: what accounts' mailboxes hold against their limits; and the
``--quota`` options that ``account set`` and ``domain set`` share."""

from __future__ import annotations

import os
from typing import Any

import click

from ..ops.mail import format_size
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["quota", "quota_changes"]

def quota_changes(app: App, storage: str | None, messages: str | None, for_domain: bool) -> dict[str, Any]:
    """The record changes for ``--quota`` / ``--quota-messages``, parsed by the
    operations layer (``parse_quota``).  ``unlimited`` on an account overrides its
    domain's default; on a domain it removes the default.  ``default`` (account only)
    drops the account's own limit."""
    from ..mailstore import MESSAGES_KEY, STORAGE_KEY
    from ..ops import Invalid, parse_quota

    changes: dict[str, Any] = {}
    for key, option, text in ((STORAGE_KEY, "--quota", storage), (MESSAGES_KEY, "--quota-messages", messages)):
        if text is None:
            continue
        try:
            value = parse_quota(key, text, key == STORAGE_KEY, for_domain)
        except Invalid as e:
            fail(f"{option}: {text!r}: {e.message}")
        changes[key] = value
        if key == STORAGE_KEY and isinstance(value, int):
            try:
                st = os.statvfs(app.settings.path(app.settings.storage.mail).parent)
                size = st.f_blocks * st.f_frsize
            except OSError:
                size = 0
            if size and value > size:
                click.echo(f"note: {text} is more than the file system holds ({format_size(size)}): "
                           "the disk fills before the quota does", err=True)
    return changes


def account_arg(app: App, address: str) -> Any:
    """The account an address names (an alias names its account)."""
    acct = app.directory.account_of(app.directory.get(address))
    if acct is None:
        fail(f"{address} is not an account")
    assert acct is not None
    return acct


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "storage": format_size(r["storage"]), "storage_limit": format_size(r["storage_limit"]),
             "message_limit": "unlimited" if r["message_limit"] is None else r["message_limit"],
             "percent": f"{r['percent']}%"} for r in rows]


@click.group()
def quota() -> None:
    """Mailbox quotas: usage against limits.  Limits are set with
    ``waypost account set --quota`` and ``waypost domain set --quota``."""


@quota.command("show")
@click.argument("address")
@json_option
@pass_app
@handle_errors
def quota_show(app: App, address: str, as_json: bool) -> None:
    """One account's usage and limits.  Example: waypost quota show alice@client1.com"""
    rows = [app.ops.quota_show(address)]
    emit(app, rows if as_json else _table(rows), ["account", "storage", "storage_limit", "messages",
                                                  "message_limit", "percent"], as_json, "Quota")


@quota.command("list")
@click.option("--domain", "domain_name", help="Only this domain's accounts.")
@json_option
@pass_app
@handle_errors
def quota_list(app: App, domain_name: str | None, as_json: bool) -> None:
    """Every account's usage and limits, fullest first.  Example: waypost quota list --domain client1.com"""
    rows = app.ops.quota_list(domain_name)
    emit(app, rows if as_json else _table(rows), ["account", "storage", "storage_limit", "messages",
                                                  "message_limit", "percent"], as_json, "Quotas")


@quota.command("recount")
@click.argument("address")
@pass_app
@handle_errors
def quota_recount(app: App, address: str) -> None:
    """Count an account's usage again from the mailbox index (a repair; usage is kept
    exact as mail comes and goes).  Example: waypost quota recount alice@client1.com"""
    row = app.ops.quota_recount(address)
    click.echo(f"{row['account']}: {format_size(row['storage'])} in {row['messages']} messages")
