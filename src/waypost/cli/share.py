"""``waypost share peer add|list|remove`` and ``waypost share lookup``: domain sharing."""

from __future__ import annotations

import asyncio
import json
import socket

import click

from ..address import AddressError, normalize_domain, parse_address
from ..config import parse_hostport
from ..secrets import Secrets
from ..sharing import Code, SharingPeer, load_peers, query_many, save_peers
from ..sharing.proto import MIN_SECRET_LENGTH
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
    if secret and len(secret) < MIN_SECRET_LENGTH:
        fail(f"--secret: at least {MIN_SECRET_LENGTH} characters")
    try:
        shared = [normalize_domain(d) for d in domains]
    except AddressError as e:
        fail(f"--domain: {e}")
    for d in shared:
        if app.directory.domain(d) is None:
            fail(f"--domain: {d} is not a local domain")
    try:  # the addresses its mail will come from: how a peer's copies are recognised
        addresses = sorted({str(ai[4][0]) for ai in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})
    except OSError as e:
        fail(f"{host}: cannot find its addresses ({e}); give an address or fix its DNS")
    peers = [p for p in load_peers(app.db, _secrets(app)) if p.host != host]
    peers.append(SharingPeer(host, port, minger_port, secret, shared, addresses))
    save_peers(app.db, _secrets(app), peers)
    click.echo(f"peer {host} added (SMTP port {port}, Minger port {minger_port})")


@peer.command("list")
@json_option
@pass_app
def peer_list(app: App, as_json: bool) -> None:
    """List the peers (secrets are not shown).  Example: waypost share peer list --json"""
    rows = [{"host": p.host, "addresses": p.addresses, "smtp_port": p.smtp_port, "minger_port": p.minger_port,
             "secret": "set" if p.secret else "none (anonymous)", "domains": p.domains or ["(all)"]}
            for p in load_peers(app.db, _secrets(app))]
    emit(app, rows, ["host", "addresses", "smtp_port", "minger_port", "secret", "domains"], as_json, "Sharing peers")


@peer.command("remove")
@click.argument("host")
@pass_app
def peer_remove(app: App, host: str) -> None:
    """Remove a peer.  Example: waypost share peer remove 127.0.0.2"""
    peers = load_peers(app.db, _secrets(app))
    kept = [p for p in peers if p.host != host]
    if len(kept) == len(peers):
        fail(f"no peer {host}")
    save_peers(app.db, _secrets(app), kept)
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

    from ..sharing.peers import CACHE_KEY

    now = time.time()
    rows = [{"address": a, "peer": e["peer"], "expires": time.strftime("%Y-%m-%d %H:%M", time.localtime(e["expires"]))}
            for a, e in sorted((app.db.get_value(CACHE_KEY) or {}).items()) if e["expires"] > now]
    emit(app, rows, ["address", "peer", "expires"], as_json, "Sharing cache")


@cache.command("clear")
@pass_app
def cache_clear(app: App) -> None:
    """Forget every remembered answer.  Example: waypost share cache clear"""
    from ..sharing.peers import CACHE_KEY

    n = len(app.db.get_value(CACHE_KEY) or {})
    app.db.set_value(CACHE_KEY, None)
    click.echo(f"forgot {n} answer(s)")


@share.command("lookup")
@click.argument("address")
@json_option
@pass_app
@handle_errors
def lookup(app: App, address: str, as_json: bool) -> None:
    """Ask every peer about ADDRESS now, and print each answer.  Example: waypost share lookup bob@example.com"""
    try:
        addr = parse_address(address)
    except AddressError as e:
        fail(str(e))
    peers = [p for p in load_peers(app.db, _secrets(app)) if p.shares(addr.domain)]
    if not peers:
        fail(f"no peer shares {addr.domain}")
    answers = asyncio.run(query_many([p.minger() for p in peers], str(addr), app.settings.sharing.timeout))
    rows = []
    for p in peers:
        a = answers[p.minger()]
        rows.append({"peer": p.host, "minger_port": p.minger_port,
                     "answer": a.name.lower().replace("_", " ") if isinstance(a, Code) else f"error: {a}",
                     "code": int(a) if isinstance(a, Code) else None})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    emit(app, rows, ["peer", "minger_port", "code", "answer"], False, f"Minger answers for {addr}")


