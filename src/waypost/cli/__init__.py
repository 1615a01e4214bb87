"""The ``waypost`` command (click): one module per group of sub-commands."""

from __future__ import annotations

import json

import sys
from pathlib import Path

import click

from ..config import SETTINGS_FILE, ConfigError, Settings, reference_markdown, render_toml
from .common import App, fail, handle_errors, json_option, pass_app
from .directory import register as register_directory
from .queue import queue
from .router import router
from .share import share
from .gateway import gateway
from .rule import rule
from .mailbox import acl, mailbox

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), envvar="WAYPOST_DATA",
              default=Path("./var"), show_default=True, help="The data directory (or WAYPOST_DATA).")
@click.pass_context
def cli(ctx: click.Context, data: Path) -> None:
    """Waypost: a multi-domain mail server.

    Every command works on one data directory (--data DIR, or WAYPOST_DATA).
    """
    ctx.obj = App(data)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--domain", "main_domain", default="localhost", show_default=True, help="The main domain.")
@click.option("--hostname", default=None, help="The server's host name (default: mail.<domain>).")
@click.option("--force", is_flag=True, help="Rewrite waypost.toml if it exists.")
def init(directory: Path, main_domain: str, hostname: str | None, force: bool) -> None:
    """Create a data directory: settings, database, spool, mail store, TLS certificate.

    Example: waypost init ./var --domain example.com --hostname mail.example.com
    """
    from ..address import AddressError, normalize_domain
    from ..certs import write_self_signed
    from ..db import open_database
    from ..directory import Directory

    try:
        domain = normalize_domain(main_domain)
    except AddressError as e:
        fail(f"--domain: {e}")
    host = hostname or (domain if domain == "localhost" else f"mail.{domain}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SETTINGS_FILE
    if path.exists() and not force:
        fail(f"{path} exists (use --force to rewrite it)")
    settings = Settings(data_dir=directory.resolve()).replace("server", hostname=host, main_domain=domain)
    path.write_text(render_toml(settings))
    for sub in (settings.storage.spool, settings.storage.mail):
        settings.path(sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    if not cert.exists() or not key.exists():
        write_self_signed(cert, key, host)
    db = open_database(settings.storage.database, settings.data_dir)
    directory_ = Directory(db, domain)
    if directory_.domain(domain) is None:
        directory_.add_domain(domain)
    if directory_.lookup("postmaster", domain) is None:  # RFC 5321 §4.5.1: postmaster must exist
        directory_.add_account(f"postmaster@{domain}", None, "Postmaster")
    db.close()
    click.echo(f"initialised {directory} (main domain {domain}, host name {host})")


@cli.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: server.workers; 0 = one per core).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Override server.log_format.")
@pass_app
def serve(app: App, workers: int | None, log_format: str | None) -> None:
    """Run every configured listener until SIGTERM.  Example: waypost --data ./var serve"""
    from ..server import serve as run

    settings = app.settings
    if log_format:
        settings = settings.replace("server", log_format=log_format)
    sys.exit(run(settings, workers))


@cli.group()
def config() -> None:
    """The settings file.  Example: waypost config check"""


@config.command("check")
@pass_app
def config_check(app: App) -> None:
    """Validate waypost.toml.  Example: waypost --data ./var config check"""
    app.settings
    click.echo(f"{app.data / SETTINGS_FILE}: OK")


@config.command("reference")
def config_reference() -> None:
    """Print the settings reference (Markdown).  Example: waypost config reference"""
    click.echo(reference_markdown())


@cli.command()
@click.argument("address")
@click.option("--from", "client_ip", default=None, help="The client's IP address (for relay decisions).")
@click.option("--auth", "auth", default=None, help="Resolve as if authenticated as this account.")
@click.option("--kind", type=click.Choice(["mail", "access", "http"]), default="mail", show_default=True,
              help="What the name is: an e-mail recipient, a login name, or an HTTP host name.")
@click.option("--server-ip", default=None, help="The server address the client connected to (multihoming).")
@json_option
@pass_app
@handle_errors
def route(app: App, address: str, client_ip: str | None, auth: str | None, kind: str, server_ip: str | None,
          as_json: bool) -> None:
    """Explain how ADDRESS is resolved, step by step.  Example: waypost route joe@friend.com --from 203.0.113.5"""
    from ..router import Context, Router

    from ..router.resolve import GatewayOptions
    from ..rules import gateway_store

    g = app.settings.gateway
    rt = Router(app.directory, app.settings.relay.trusted_networks, forwarding=gateway_store(app.db).get,
                gateway=GatewayOptions(g.local_users_stay, g.relay_matched, g.check_local))
    ctx = Context(kind=kind, client_ip=client_ip, server_ip=server_ip, authenticated=auth)
    if kind == "access":
        trace: list[str] = []
        acct = rt.resolve_login(address, ctx, trace)
        if as_json:
            click.echo(json.dumps({"input": address, "kind": kind, "account": acct.address if acct else None,
                                   "trace": trace}, indent=2))
        else:
            for i, step in enumerate(trace, 1):
                click.echo(f"{i:>3}. {step}")
            click.echo(f"  -> {'account ' + acct.address if acct else 'no account'}")
        return
    res = rt.resolve(address, ctx)
    if res.route.kind == "ask-peers":  # domain sharing: ask the peers now, as the listener would
        import asyncio
        import dataclasses

        from ..secrets import Secrets
        from ..sharing.peers import ask_peers

        s = app.settings.sharing
        answers = asyncio.run(ask_peers(app.db, Secrets(app.settings.data_dir), res.route.address, s.timeout, s.cache_ttl))
        again = rt.resolve(address, dataclasses.replace(ctx, peer_answers=answers))
        res.trace.extend(again.trace[1:])
        res.route = again.route
    routes = rt.expand(res.route, res.trace) if res.route.kind == "local" else [res.route]
    if as_json:
        click.echo(json.dumps({"input": address, "route": res.route.to_dict(), "target": res.route.target,
                               "deliveries": [r.to_dict() | {"target": r.target} for r in routes],
                               "trace": res.trace}, indent=2))
        return
    from rich.table import Table

    steps = Table(title=f"route {address}", show_header=True)
    steps.add_column("#", justify="right")
    steps.add_column("step")
    for i, step in enumerate(res.trace, 1):
        steps.add_row(str(i), step)
    app.console.print(steps)
    final = Table(title="deliveries", show_header=True)
    for col in ("kind", "queue", "address", "reply"):
        final.add_column(col)
    for r in routes:
        final.add_row(r.kind, r.target if r.kind not in ("refuse",) else "",
                      r.address, f"{r.code} {r.status} {r.reason}" if r.code else "")
    app.console.print(final)


cli.add_command(queue)
cli.add_command(router)
cli.add_command(share)
cli.add_command(gateway)
cli.add_command(rule)
cli.add_command(mailbox)
cli.add_command(acl)
register_directory(cli)


def main() -> None:
    import sqlite3

    try:
        cli(prog_name="waypost")
    except ConfigError as e:  # pragma: no cover - App reports these itself
        fail(str(e))
    except sqlite3.Error as e:  # a full disk, a locked or damaged file: one line, no traceback
        fail(f"the database refused the command: {e}")



