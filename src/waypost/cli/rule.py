"""``waypost rule import|export|list|add|move|remove``: server-wide rules."""

from __future__ import annotations

from typing import Any

import click

from ..rules.server import RULES_KEY
from .common import App, emit, handle_errors, json_option, pass_app, print_text, refuse_import

__all__ = ["rule"]


def _save(app: App, text: str, source: str) -> int:
    count, errors = app.ops.rules_set(text)
    refuse_import(errors, source, "rule(s); the rules were not changed")
    return count


@click.group()
def rule() -> None:
    """Server-wide rules: NAME: CONDITION [and ...] => ACTION [; ...], applied in order.

    Example: waypost rule add 'copy-out: sender-domain in (dept1.company.dom) => store ~security/outgoing'
    """


@rule.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@pass_app
def rule_import(app: App, file: Any) -> None:
    """Replace every rule with FILE (checked first; nothing changes if a line is bad).
    Example: waypost rule import rules.txt"""
    n = _save(app, file.read(), getattr(file, "name", "-"))
    click.echo(f"imported {n} rule(s); a running server uses them at once")


@rule.command("export")
@pass_app
def rule_export(app: App) -> None:
    """Print the rules, one a line.  Example: waypost rule export > rules.txt"""
    print_text(app.db.get_value(RULES_KEY) or "")


@rule.command("list")
@json_option
@pass_app
def rule_list(app: App, as_json: bool) -> None:
    """The rules in the order they apply.  Example: waypost rule list"""
    emit(app, app.ops.rules_list(), ["position", "name", "rule", "at_rcpt"], as_json, "Server-wide rules")


@rule.command("add")
@click.argument("text")
@click.option("--position", type=int, default=None, help="Where it goes (1 = first; default: last).")
@pass_app
def rule_add(app: App, text: str, position: int | None) -> None:
    """Add one rule.  Example: waypost rule add 'big: size over 10000000 => reject "too big for us"'"""
    at, errors = app.ops.rule_add(text, position)
    refuse_import(errors, "rule", "rule(s); the rules were not changed")
    click.echo(f"rule added at position {at}")


@rule.command("move")
@click.argument("name")
@click.argument("position", type=int)
@pass_app
@handle_errors
def rule_move(app: App, name: str, position: int) -> None:
    """Move a rule to POSITION (1 = first).  Example: waypost rule move dept1-limit 1"""
    at = app.ops.rule_move(name, position)
    click.echo(f"rule {name} moved to position {at}")


@rule.command("remove")
@click.argument("name")
@pass_app
@handle_errors
def rule_remove(app: App, name: str) -> None:
    """Remove a rule.  Example: waypost rule remove dept1-limit"""
    app.ops.rule_remove(name)
    click.echo(f"rule {name} removed")
