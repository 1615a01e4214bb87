"""``waypost share peer add|list|remove`` and ``waypost share lookup``: domain sharing."""

from __future__ import annotations

import asyncio
import json

import click

from ..address import AddressError, parse_address
from ..config import parse_hostport
from ..secrets import Secrets
from ..sharing import Code, load_peers, query_many
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["share"]


def _secrets(app: App) -> Secrets:
    return Secrets(app.settings.data_dir)


@click.group()
def share() -> None:
    """Domain sharing (MDaemon style): one domain's users split over several servers,
    found with Minger.  Example: waypost share peer add 127.0.0.2:25 --minger-port 4069 --secret '...'
    """


@share.group()
def peer() -> None:
    """The servers this one shares its domains with.  Example: waypost share peer list"""


@peer.command("add")
@click.argument("hostport", metavar="HOST[:SMTP_PORT]")
@click.option("--minger-port", type=int, default=4069, show_default=True, help="The peer's Minger (UDP) port.")
@click.option("--secret", default="", help="The Minger secret to ask this peer with (16 to 50 characters; none: anonymous).")
@click.option("--domain", "domains", multiple=True, help="A domain shared with this peer (repeatable; none: all).")
@pass_app
@handle_errors
def peer_add(app: App, hostport: str, minger_port: int, secret: str, domains: tuple[str, ...]) -> None:
    """Add (or replace) a peer.  Example: waypost share peer add 127.0.0.2:2525 --minger-port 4069 --secret s3cret-s3cret-s3cret"""
    host, port = parse_hostport(hostport, default_port=25)
    app.ops.peer_add(host, port, minger_port, secret, domains)
    click.echo(f"peer {host} added (SMTP port {port}, Minger port {minger_port})")


@peer.command("list")
@json_option
@pass_app
def peer_list(app: App, as_json: bool) -> None:
    """List the peers (secrets are not shown).  Example: waypost share peer list --json"""
    rows = [dict(p, secret="set" if p["secret"] else "none (anonymous)", domains=p["domains"] or ["(all)"])
            for p in app.ops.peers_list()]
    emit(app, rows, ["host", "addresses", "smtp_port", "minger_port", "secret", "domains"], as_json, "Sharing peers")


@peer.command("remove")
@click.argument("host")
@pass_app
@handle_errors
def peer_remove(app: App, host: str) -> None:
    """Remove a peer.  Example: waypost share peer remove 127.0.0.2"""
    app.ops.peer_remove(host)
    click.echo(f"peer {host} removed")


@share.group()
def cache() -> None:
    """Positive Minger answers remembered (sharing.cache_ttl).  Example: waypost share cache list"""


@cache.command("list")
@json_option
@pass_app
def cache_list(app: App, as_json: bool) -> None:
    """List remembered answers.  Example: waypost share cache list --json"""
    import time

    rows = [dict(e, expires=time.strftime("%Y-%m-%d %H:%M", time.localtime(e["expires"])))
            for e in app.ops.sharing_cache()]
    emit(app, rows, ["address", "peer", "expires"], as_json, "Sharing cache")


@cache.command("clear")
@pass_app
def cache_clear(app: App) -> None:
    """Forget every remembered answer.  Example: waypost share cache clear"""
    n = app.ops.sharing_cache_clear()
    click.echo(f"forgot {n} answer(s)")


@share.command("lookup")
@click.argument("address")
@json_option
@pass_app
@handle_errors
def lookup(app: App, address: str, as_json: bool) -> None:
    """Ask every peer about ADDRESS now, and print each answer.  Example: waypost share lookup bob@example.com"""
    rows = app.ops.sharing_lookup(address, app.settings.sharing.timeout)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    emit(app, rows, ["peer", "minger_port", "code", "answer"], False, f"Minger answers for {address}")


