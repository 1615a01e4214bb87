"""``waypost files ...``: the account file areas (Account File Storage) as an
administrator sees them."""

from __future__ import annotations

import time
from typing import Any

import click

from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["files"]


def _human(n: int) -> str:
    for unit in ("", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n} B" if not unit else f"{n:.1f} {unit}iB"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def _store(app: App) -> Any:
    from ..files import FileStore

    s = app.settings
    return FileStore(s.path(s.storage.files), app.directory, s.files.size_limit)


@click.group()
def files() -> None:
    """Account File Storage: each account's file area (served on the web and by FTP).

    Example: waypost files usage alice@client1.com
    """


@files.command("usage")
@click.argument("address", required=False)
@click.option("--domain", "domain_name", help="Every account of this domain (default: every account).")
@json_option
@pass_app
@handle_errors
def files_usage(app: App, address: str | None, domain_name: str | None, as_json: bool) -> None:
    """Octets used and the limit, for one account or many.
    Example: waypost files usage alice@client1.com --json"""
    rows = app.ops.files_usage(address, domain_name)
    if as_json:  # where each area is, for the server's administrator
        store = _store(app)
        for r in rows:
            name, _, domain = r["account"].rpartition("@")
            r["path"] = str(store.area_path(domain, name))
    else:  # people read sizes with units
        rows = [r | {"used": _human(r["used"]), "limit": _human(r["limit"]), "percent": f"{r['percent']}%"}
                for r in rows]
    emit(app, rows, ["account", "used", "limit", "percent", "limit_from", "listing"], as_json, "File areas")


@files.command("ls")
@click.argument("address")
@click.argument("path", default="")
@json_option
@pass_app
@handle_errors
def files_ls(app: App, address: str, path: str, as_json: bool) -> None:
    """List a folder of an account's file area (PATH is relative to its top).
    Example: waypost files ls alice@client1.com site/images"""
    rows = [{"name": e["name"] + ("/" if e["folder"] else ""), "kind": "folder" if e["folder"] else "file",
             "size": e["size"], "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(e["modified"]))}
            for e in app.ops.files_list(address, path)]
    emit(app, rows, ["name", "size", "modified"], as_json, f"{address}:/{path.strip('/')}")


@files.command("set")
@click.argument("address")
@click.option("--limit", "limit", metavar="SIZE", help="The area's own limit: octets, or 500K, 100M, 2G.")
@click.option("--default-limit", is_flag=True, help="Drop the account's own limit (its domain's, or files.size_limit).")
@click.option("--listing/--no-listing", "listing", default=None,
              help="Let visitors list a folder that has no index.html (off by default).")
@pass_app
@handle_errors
def files_set(app: App, address: str, limit: str | None, default_limit: bool, listing: bool | None) -> None:
    """An account's file-area settings.  Example: waypost files set alice@client1.com --limit 50M --listing"""
    changes: dict[str, Any] = {}
    if limit is not None and default_limit:
        fail("--limit and --default-limit exclude each other")
    if limit is not None:
        changes["limit"] = limit
    if default_limit:
        changes["limit"] = None
    if listing is not None:
        changes["listing"] = listing
    if not changes:
        fail("nothing to change (see --help)")
    row = app.ops.files_set(address, **changes)
    click.echo(f"file area of {row['account']} changed")


@files.command("set-domain")
@click.argument("name")
@click.option("--limit", "limit", metavar="SIZE", help="The limit of every area of the domain without its own.")
@click.option("--default-limit", is_flag=True, help="Drop the domain's limit (files.size_limit applies).")
@pass_app
@handle_errors
def files_set_domain(app: App, name: str, limit: str | None, default_limit: bool) -> None:
    """The file-area limit of a domain's accounts.  Example: waypost files set-domain client1.com --limit 1G"""
    if (limit is None) == (not default_limit):
        fail("give --limit SIZE or --default-limit")
    app.ops.files_set_domain(name, limit)
    click.echo(f"file areas of {app.directory.require_domain(name).name} changed")
