"""``waypost router show|import|export|test``: the Router table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..router.resolve import TABLE_KEY
from ..router.table import parse_table
from .common import App, fail, json_option, pass_app, print_text, refuse_import

__all__ = ["router"]


def _text(app: App) -> tuple[str, int]:
    return str(app.db.get_value(TABLE_KEY) or ""), int(app.db.get_value(TABLE_KEY + ".version") or 0)


@click.group()
def router() -> None:
    """The Router table (CommuniGate Pro syntax): one record a line, [Prefix:] left = right.

    Example: waypost router import router.txt
    """


@router.command("show")
@json_option
@pass_app
def router_show(app: App, as_json: bool) -> None:
    """Print the table with its line numbers.  Example: waypost router show"""
    text, version = _text(app)
    records, _ = parse_table(text)
    if as_json:
        click.echo(json.dumps({"version": version, "records": [
            {"line": r.line_no, "prefix": r.prefix, "left": r.left, "right": r.right} for r in records]}, indent=2))
        return
    if not text.strip():
        click.echo("(the Router table is empty)")
        return
    for n, line in enumerate(text.splitlines(), 1):
        click.echo(f"{n:>5}  {line}")


@router.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_app
def router_import(app: App, file: Any) -> None:
    """Replace the table with FILE ('-' for standard input).  The whole file is checked
    first; if any line is bad, every bad line is reported and nothing changes.

    Example: waypost router import router.txt
    """
    text = file.read()
    count, errors = app.ops.router_set(text)
    refuse_import(errors, getattr(file, "name", "-"), "line(s); the table was not changed")
    click.echo(f"imported {count} record(s); a running server uses them at once")


@router.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@pass_app
def router_export(app: App, output: Path | None) -> None:
    """Print the table as it was imported (comments kept).  Example: waypost router export -o router.txt"""
    text, _ = _text(app)
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        print_text(text)


@router.command("test")
@click.argument("address")
@click.option("--kind", type=click.Choice(["mail", "access", "http", "signal"]), default="mail", show_default=True)
@click.option("--trusted", is_flag=True, help="Look up as a trusted client (NoRelay: records apply).")
@json_option
@pass_app
def router_test(app: App, address: str, kind: str, trusted: bool, as_json: bool) -> None:
    """Show the table records that rewrite ADDRESS, step by step (no directory look-up;
    'waypost route' explains the whole resolution).  Example: waypost router test joe@friend.com
    """
    from ..address import AddressError, parse_address
    from ..router.table import RoutingLoop, RoutingTable

    text, _ = _text(app)
    table, _ = RoutingTable.from_text(text)
    try:
        a = parse_address(address, allow_no_domain=True)
    except AddressError as e:
        fail(str(e))
    main = app.settings.server.main_domain
    try:
        steps = table.chain(a.local, a.domain or main, kind, trusted=trusted, main_domain=main)
    except RoutingLoop as loop:
        for m in loop.matches:
            click.echo(m.description)
        fail(str(loop))
    if as_json:
        click.echo(json.dumps([{"line": m.record.line_no, "record": str(m.record), "from": f"{m.from_local}@{m.from_domain}",
                                "to": m.address} for m in steps], indent=2))
        return
    if not steps:
        click.echo(f"no record applies to {address}")
    for m in steps:
        click.echo(m.description)


