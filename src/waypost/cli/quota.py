"""``waypost quota ...``: what accounts' mailboxes hold against their limits; and the
``--quota`` options that ``account set`` and ``domain set`` share."""

from __future__ import annotations

import os
import re
from typing import Any

import click

from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["quota", "quota_changes"]

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_quota_size(text: str) -> int | str:
    """``2G``, ``500M``, ``1048576`` (octets, powers of 1024) or ``unlimited``."""
    if text.strip().lower() in ("unlimited", "none"):
        return "unlimited"
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if m is None:
        raise click.BadParameter(f"{text!r}: expected a size such as 1048576, 500K, 100M, 2G, or unlimited")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_quota_count(text: str) -> int | str:
    if text.strip().lower() in ("unlimited", "none"):
        return "unlimited"
    if not text.strip().isdigit():
        raise click.BadParameter(f"{text!r}: expected a number of messages, or unlimited")
    return int(text)


def quota_changes(app: App, storage: str | None, messages: str | None, for_domain: bool) -> dict[str, Any]:
    """The record changes for ``--quota`` / ``--quota-messages``.  ``unlimited`` on an
    account overrides its domain's default; on a domain it removes the default.
    ``default`` (account only) drops the account's own limit."""
    from ..mailstore import MESSAGES_KEY, STORAGE_KEY

    changes: dict[str, Any] = {}
    for key, text, parse in ((STORAGE_KEY, storage, parse_quota_size), (MESSAGES_KEY, messages, parse_quota_count)):
        if text is None:
            continue
        if text.strip().lower() == "default":
            if for_domain:
                fail("a domain's quota is a size or unlimited")
            changes[key] = None
            continue
        try:
            value: int | str | None = parse(text)
        except click.BadParameter as e:
            fail(str(e.message))
        if value == "unlimited" and for_domain:
            value = None
        changes[key] = value
        if key == STORAGE_KEY and isinstance(value, int):
            try:
                st = os.statvfs(app.settings.path(app.settings.storage.mail).parent)
                size = st.f_blocks * st.f_frsize
            except OSError:
                size = 0
            if size and value > size:
                click.echo(f"note: {text} is more than the file system holds ({_human(size)}): "
                           "the disk fills before the quota does", err=True)
    return changes


def _human(n: int | None) -> str:
    if n is None:
        return "unlimited"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


def account_arg(app: App, address: str) -> Any:
    """The account an address names (an alias names its account)."""
    acct = app.directory.account_of(app.directory.get(address))
    if acct is None:
        fail(f"{address} is not an account")
    assert acct is not None
    return acct


def _row(q: Any) -> dict[str, Any]:
    return {"account": f"{q.account}@{q.domain}", "storage": q.storage, "storage_limit": q.storage_limit,
            "messages": q.messages, "message_limit": q.message_limit, "percent": q.percent()}


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "storage": _human(r["storage"]), "storage_limit": _human(r["storage_limit"]),
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
    from ..mailstore import quota_of

    acct = account_arg(app, address)
    rows = [_row(quota_of(app.db, acct.domain, acct.name, usage=True))]
    emit(app, rows if as_json else _table(rows), ["account", "storage", "storage_limit", "messages",
                                                  "message_limit", "percent"], as_json, "Quota")


@quota.command("list")
@click.option("--domain", "domain_name", help="Only this domain's accounts.")
@json_option
@pass_app
@handle_errors
def quota_list(app: App, domain_name: str | None, as_json: bool) -> None:
    """Every account's usage and limits, fullest first.  Example: waypost quota list --domain client1.com"""
    from ..mailstore import quota_of

    if domain_name is not None:
        domain_name = app.directory.require_domain(domain_name).name
    rows = [_row(quota_of(app.db, o.domain, o.name, usage=True))
            for o in app.directory.list_objects(domain_name, "account")]
    rows.sort(key=lambda r: (-r["percent"], r["account"]))
    emit(app, rows if as_json else _table(rows), ["account", "storage", "storage_limit", "messages",
                                                  "message_limit", "percent"], as_json, "Quotas")


@quota.command("recount")
@click.argument("address")
@pass_app
@handle_errors
def quota_recount(app: App, address: str) -> None:
    """Count an account's usage again from the mailbox index (a repair; usage is kept
    exact as mail comes and goes).  Example: waypost quota recount alice@client1.com"""
    acct = account_arg(app, address)
    storage, messages = app.db.quota_recount(acct.domain, acct.name)
    click.echo(f"{acct.address}: {_human(storage)} in {messages} messages")
