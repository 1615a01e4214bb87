"""``waypost files ...``: the account file areas (Account File Storage) as an
administrator sees them."""

from __future__ import annotations

import functools
import re
import time
from typing import Any, Callable, TypeVar

import click

from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["files"]

F = TypeVar("F", bound=Callable[..., Any])


def _files_errors(f: F) -> F:
    """A refusal of the file area (no such folder, a refused path) is one line, exit 1."""
    from ..files import FilesError

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except FilesError as e:
            fail(str(e))

    return wrapper  # type: ignore[return-value]

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


def parse_size(text: str) -> int:
    """``1048576``, ``500K``, ``100M``, ``2G`` (powers of 1024) -> octets."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if m is None:
        raise click.BadParameter(f"{text!r}: expected a size such as 1048576, 500K, 100M or 2G")
    return int(m.group(1)) * _UNITS[m.group(2)]


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


def _usage_row(store: Any, acct: Any) -> dict[str, Any]:
    from ..files import LIMIT_KEY, LISTING_KEY

    area = store.for_account(acct)
    used = area.usage()
    own = acct.data.get(LIMIT_KEY)
    dom = store.directory.db.get_domain(acct.domain)
    source = "account" if own is not None else ("domain" if dom and dom.settings.get(LIMIT_KEY) is not None
                                                else "default")
    return {"account": acct.address, "used": used, "limit": area.limit, "limit_from": source,
            "percent": round(100.0 * used / area.limit, 1) if area.limit else (0.0 if not used else 100.0),
            "listing": bool(acct.data.get(LISTING_KEY, False)), "path": str(area.root)}


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
@_files_errors
def files_usage(app: App, address: str | None, domain_name: str | None, as_json: bool) -> None:
    """Octets used and the limit, for one account or many.
    Example: waypost files usage alice@client1.com --json"""
    store = _store(app)
    if address:
        obj = app.directory.get(address)
        acct = app.directory.account_of(obj)
        if acct is None:
            fail(f"{obj.address} is a {obj.kind}, not an account")
        accounts: list[Any] = [acct]
    else:
        accounts = app.directory.list_objects(domain_name, "account")
    rows = [_usage_row(store, a) for a in accounts]
    if not as_json:  # people read sizes with units
        rows = [r | {"used": _human(r["used"]), "limit": _human(r["limit"]), "percent": f"{r['percent']}%"}
                for r in rows]
    emit(app, rows, ["account", "used", "limit", "percent", "limit_from", "listing"], as_json, "File areas")


@files.command("ls")
@click.argument("address")
@click.argument("path", default="")
@json_option
@pass_app
@handle_errors
@_files_errors
def files_ls(app: App, address: str, path: str, as_json: bool) -> None:
    """List a folder of an account's file area (PATH is relative to its top).
    Example: waypost files ls alice@client1.com site/images"""
    area = _store(app).account_area(address)
    rows = [{"name": e.name + ("/" if e.is_dir else ""), "kind": "folder" if e.is_dir else "file", "size": e.size,
             "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime))}
            for e in area.list(path.strip("/"))]
    emit(app, rows, ["name", "size", "modified"], as_json, f"{area.owner}:/{path.strip('/')}")


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
    from ..files import LIMIT_KEY, LISTING_KEY

    changes: dict[str, Any] = {}
    if limit is not None and default_limit:
        fail("--limit and --default-limit exclude each other")
    if limit is not None:
        changes[LIMIT_KEY] = parse_size(limit)
    if default_limit:
        changes[LIMIT_KEY] = None
    if listing is not None:
        changes[LISTING_KEY] = listing or None
    if not changes:
        fail("nothing to change (see --help)")
    obj = app.directory.update(address, "account", changes)
    click.echo(f"file area of {obj.address} changed")


@files.command("set-domain")
@click.argument("name")
@click.option("--limit", "limit", metavar="SIZE", help="The limit of every area of the domain without its own.")
@click.option("--default-limit", is_flag=True, help="Drop the domain's limit (files.size_limit applies).")
@pass_app
@handle_errors
def files_set_domain(app: App, name: str, limit: str | None, default_limit: bool) -> None:
    """The file-area limit of a domain's accounts.  Example: waypost files set-domain client1.com --limit 1G"""
    from ..files import LIMIT_KEY

    if (limit is None) == (not default_limit):
        fail("give --limit SIZE or --default-limit")
    rec = app.directory.require_domain(name)
    rec = app.db.update_domain_settings(rec.name, {LIMIT_KEY: parse_size(limit) if limit is not None else None})
    click.echo(f"file areas of {rec.name} changed")
