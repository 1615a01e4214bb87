"""``waypost token add|list|remove``: API tokens for ``/api/v1/``."""

from __future__ import annotations

import time

import click

from .common import App, emit, handle_errors, json_option, pass_app

__all__ = ["token"]


@click.group()
def token() -> None:
    """API tokens for the JSON API (/api/v1/): shown once, stored hashed.

    Example: waypost token add deploy --domain client1.com
    """


@token.command("add")
@click.argument("name")
@click.option("--domain", "domains", multiple=True,
              help="Scope the token to this domain (repeatable): it acts as that domain's administrator. "
                   "Without it, the token is a server administrator's.")
@pass_app
@handle_errors
def token_add(app: App, name: str, domains: tuple[str, ...]) -> None:
    """Make a token and print it (this once: only its hash is kept).
    Example: waypost token add ci-deploy --domain client1.com"""
    from ..ops import Tokens

    rec, secret = Tokens(app.ops).add(name, domains)
    click.echo(secret)
    scope = ", ".join(rec.domains) if rec.domains is not None else "server administrator"
    click.echo(f"token {rec.name} added ({scope}); it is not shown again", err=True)


@token.command("list")
@json_option
@pass_app
@handle_errors
def token_list(app: App, as_json: bool) -> None:
    """List the tokens (never the tokens themselves).  Example: waypost token list"""
    from ..ops import Tokens

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""

    rows = [{"name": t.name, "scope": list(t.domains) if t.domains is not None else "server",
             "created": when(t.created), "last_used": when(t.last_used)} for t in Tokens(app.ops).list()]
    emit(app, rows, ["name", "scope", "created", "last_used"], as_json, "Tokens")


@token.command("remove")
@click.argument("name")
@pass_app
@handle_errors
def token_remove(app: App, name: str) -> None:
    """Revoke a token: the API refuses it at once.  Example: waypost token remove ci-deploy"""
    from ..ops import Tokens

    Tokens(app.ops).remove(name)
    click.echo(f"token {name} removed")
