"""``waypost rule import|export|list|add|move|remove``: server-wide rules."""

from __future__ import annotations

from typing import Any

import click

from ..rules import format_rule, parse_rules
from ..rules.server import RULES_KEY, Rule, store_rules
from .common import App, emit, fail, json_option, pass_app, print_text, refuse_import

__all__ = ["rule"]


def _check(app: App) -> Any:
    def check(r: Rule) -> str | None:
        for a in r.actions:
            if a.verb in ("mirror", "forward", "redirect"):
                name, _, domain = a.arg.rpartition("@")
                if app.directory.domain(domain) is not None and app.directory.lookup(name, domain) is None:
                    return f"{a.verb} {a.arg}: there is no such local address (create it first)"
            if a.verb == "store":
                who = a.arg[1:].partition("/")[0]
                name, _, domain = who.partition("@")
                obj = app.directory.lookup(name, domain or app.directory.main_domain)
                if obj is None or app.directory.account_of(obj) is None:
                    return f"store {a.arg}: there is no account {who} (create it first)"
        return None
    return check


def _save(app: App, text: str, source: str) -> int:
    count, errors = store_rules(app.db, text, _check(app))
    refuse_import(errors, source, "rule(s); the rules were not changed")
    return count


def _lines(app: App) -> list[str]:
    rules, _ = parse_rules(app.db.get_value(RULES_KEY) or "")
    return [format_rule(r) for r in rules]


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
    rules, _ = parse_rules(app.db.get_value(RULES_KEY) or "")
    rows = [{"position": i, "name": r.name, "rule": format_rule(r), "at_rcpt": r.at_rcpt}
            for i, r in enumerate(rules, 1)]
    emit(app, rows, ["position", "name", "rule", "at_rcpt"], as_json, "Server-wide rules")


@rule.command("add")
@click.argument("text")
@click.option("--position", type=int, default=None, help="Where it goes (1 = first; default: last).")
@pass_app
def rule_add(app: App, text: str, position: int | None) -> None:
    """Add one rule.  Example: waypost rule add 'big: size over 10000000 => reject "too big for us"'"""
    lines = _lines(app)
    at = len(lines) if position is None else max(0, min(position - 1, len(lines)))
    lines.insert(at, text)
    _save(app, "\n".join(lines) + "\n", "rule")
    click.echo(f"rule added at position {at + 1}")


@rule.command("move")
@click.argument("name")
@click.argument("position", type=int)
@pass_app
def rule_move(app: App, name: str, position: int) -> None:
    """Move a rule to POSITION (1 = first).  Example: waypost rule move dept1-limit 1"""
    rules, _ = parse_rules(app.db.get_value(RULES_KEY) or "")
    names = [r.name for r in rules]
    if name not in names:
        fail(f"no rule {name}")
    lines = _lines(app)
    line = lines.pop(names.index(name))
    lines.insert(max(0, min(position - 1, len(lines))), line)
    _save(app, "\n".join(lines) + "\n", "rule")
    click.echo(f"rule {name} moved to position {max(1, min(position, len(lines)))}")


@rule.command("remove")
@click.argument("name")
@pass_app
def rule_remove(app: App, name: str) -> None:
    """Remove a rule.  Example: waypost rule remove dept1-limit"""
    rules, _ = parse_rules(app.db.get_value(RULES_KEY) or "")
    kept = [format_rule(r) for r in rules if r.name != name]
    if len(kept) == len(rules):
        fail(f"no rule {name}")
    _save(app, "\n".join(kept) + ("\n" if kept else ""), "rule")
    click.echo(f"rule {name} removed")
