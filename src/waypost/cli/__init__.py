"""The ``waypost`` command (click): one module per group of sub-commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .. import __version__
from ..config import SETTINGS_FILE, ConfigError, Settings, reference_markdown, render_toml
from ..datadir import private_umask
from .common import App, fail, handle_errors, json_option, pass_app
from .directory import register as register_directory
from .token import token
from .queue import queue
from .router import router
from .share import share
from .auth import auth
from .gateway import gateway
from .rule import rule
from .mailbox import acl, mailbox
from .mailauth import dkim, dns_command, mailauth
from .files import files
from .cluster import cluster
from .storage import storage
from .quota import quota
from .sieve import sieve
from .status import status

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="waypost", message="%(prog)s %(version)s")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), envvar="WAYPOST_DATA",
              default=Path("./var"), show_default=True, help="The data directory (or WAYPOST_DATA).")
@click.pass_context
def cli(ctx: click.Context, data: Path) -> None:
    """Waypost: a multi-domain mail server.

    Every command works on one data directory (--data DIR, or WAYPOST_DATA).
    """
    private_umask()  # whatever this command creates is the server user's alone
    ctx.obj = App(data)
    ctx.call_on_close(ctx.obj.close)  # (PostgreSQL: the pool's connections go at once)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--domain", "main_domain", default="localhost", show_default=True, help="The main domain.")
@click.option("--hostname", default=None, help="The server's host name (default: mail.<domain>).")
@click.option("--force", is_flag=True, help="Rewrite waypost.toml if it exists.")
@click.option("--user", default="", help="Set server.user and give the directory to this user (run as root).")
@click.option("--database", default=None, metavar="URL",
              help="storage.database: a SQLite file (default waypost.db) or a postgresql:// URL (its schema is made).")
def init(directory: Path, main_domain: str, hostname: str | None, force: bool, user: str,
         database: str | None) -> None:
    """Create a data directory: settings, database, spool, mail store, TLS certificate.
    Everything in it is private (files 0600, directories 0700).

    Example: waypost init ./var --domain example.com --hostname mail.example.com
    --database postgresql://waypost@db.example.com/waypost
    """
    from ..address import AddressError, normalize_domain
    from ..certs import write_self_signed
    from ..datadir import chown_tree, make_tree_private, user_ids
    from ..db import StorageUnavailable, database_problem, open_database
    from ..directory import Directory

    try:
        domain = normalize_domain(main_domain)
    except AddressError as e:
        fail(f"--domain: {e}")
    ids: tuple[int, int] | None = None
    if user:
        try:
            ids = user_ids(user)
        except KeyError:
            fail(f"--user: no such user {user!r}")
        assert ids is not None
        if os.geteuid() not in (0, ids[0]):
            fail(f"--user: only root can give the directory to {user}")
    host = hostname or (domain if domain == "localhost" else f"mail.{domain}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if database is not None and (problem := database_problem(database, directory.resolve())) is not None:
        fail(f"--database: {problem}")
    path = directory / SETTINGS_FILE
    if path.exists() and not force:
        fail(f"{path} exists (use --force to rewrite it)")
    settings = Settings(data_dir=directory.resolve()).replace("server", hostname=host, main_domain=domain, user=user)
    if database is not None:
        settings = settings.replace("storage", database=database)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold sharing.secret
    with os.fdopen(fd, "w") as f:
        f.write(render_toml(settings))
    for sub in (settings.storage.spool, settings.storage.mail):
        settings.path(sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    if not cert.exists() or not key.exists():
        write_self_signed(cert, key, host)
    db = open_database(settings.storage.database, settings.data_dir,
                                pool_size=settings.storage.pool_size, pool_timeout=settings.storage.pool_timeout)
    directory_ = Directory(db, domain)
    try:
        if directory_.domain(domain) is None:
            directory_.add_domain(domain)
        if directory_.lookup("postmaster", domain) is None:  # RFC 5321 §4.5.1: postmaster must exist
            directory_.add_account(f"postmaster@{domain}", None, "Postmaster")
    except StorageUnavailable as e:
        fail(f"--database: {e}")
    finally:
        db.close()
    make_tree_private(settings.data_dir)  # whatever umask made what was there before, it is private now
    if ids is not None:
        chown_tree(settings.data_dir, *ids)
    click.echo(f"initialised {directory} (main domain {domain}, host name {host})")


@cli.command()
@click.option("--workers", type=int, default=None, help="Worker processes (default: server.workers; 0 = one per usable CPU).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Override server.log_format.")
@pass_app
def serve(app: App, workers: int | None, log_format: str | None) -> None:
    """Run every configured listener until SIGTERM.  Example: waypost --data ./var serve"""
    from ..server import serve as run

    app.keep_user = True  # serve binds its ports first, then changes user itself
    settings = app.settings
    if log_format:
        settings = settings.replace("server", log_format=log_format)
    sys.exit(run(settings, workers))


@cli.group()
def config() -> None:
    """The settings file.  Example: waypost config check"""


#: Paths with loose modes that ``config check`` names one by one; it counts the rest.
_SHOWN_LOOSE = 20


@config.command("check")
@pass_app
def config_check(app: App) -> None:
    """Validate waypost.toml, and find what would stop or cripple serve (a missing
    certificate, an engine or a listener this version lacks, a port that cannot be
    bound, server.user) and files other local users can read.  Exit 1 on an error.

    Example: waypost --data ./var config check
    """
    from ..datadir import loose_modes
    from ..server import startup_problems

    settings = app.settings
    problems = startup_problems(settings, probe_ports=True)
    for p in problems:
        click.echo(f"{'error' if p.fatal else 'warning'}: {p}", err=p.fatal)
    loose = loose_modes(settings)
    for path, mode in loose[:_SHOWN_LOOSE]:
        click.echo(f"warning: {path}: mode {mode:04o} lets other local users in (expected 0600/0700)")
    if loose:
        more = f" ({len(loose) - _SHOWN_LOOSE} more)" if len(loose) > _SHOWN_LOOSE else ""
        what = "1 path is" if len(loose) == 1 else f"{len(loose)} paths are"
        click.echo(f"warning: {what} not private{more}: chmod -R go= {settings.data_dir}")
    if any(p.fatal for p in problems):
        sys.exit(1)
    click.echo(f"{app.data / SETTINGS_FILE}: OK")


@cli.command()
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@click.option("--with-mail", is_flag=True, help="Also copy the spool, the Maildirs and the file areas (after the database).")
@pass_app
@handle_errors
def backup(app: App, destination: Path, with_mail: bool) -> None:
    """Copy the data directory into the new directory DESTINATION while the server runs:
    a consistent snapshot of the database, the settings, the secret key and the TLS files.

    Example: waypost --data /srv/waypost backup /backup/waypost-$(date +%F) --with-mail
    """
    from ..datadir import backup as run_backup

    db = app.db
    try:
        written = run_backup(app.settings, db, destination, with_mail)
    except FileExistsError:
        fail(f"{destination} exists (a backup goes into a new directory)")
    for p in written:
        click.echo(f"wrote {p}")
    click.echo(f"backup of {app.settings.data_dir} in {destination}")


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
    import asyncio

    from ..ops.explain import explain

    out = asyncio.run(explain(app.router, app.settings, app.db, address, kind, client_ip, server_ip, auth))
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    if kind == "access":
        for i, step in enumerate(out["trace"], 1):
            click.echo(f"{i:>3}. {step}")
        click.echo(f"  -> {'account ' + out['account'] if out['account'] else 'no account'}")
        return
    from rich.table import Table

    steps = Table(title=f"route {address}", show_header=True)
    steps.add_column("#", justify="right")
    steps.add_column("step")
    for i, step in enumerate(out["trace"], 1):
        steps.add_row(str(i), step)
    app.console.print(steps)
    final = Table(title="deliveries", show_header=True)
    for col in ("kind", "queue", "address", "reply"):
        final.add_column(col)
    for r in out["deliveries"]:
        final.add_row(r["kind"], r["target"] if r["kind"] not in ("refuse",) else "",
                      r["address"], f"{r['code']} {r['status']} {r['reason']}" if r.get("code") else "")
    app.console.print(final)


cli.add_command(queue)
cli.add_command(router)
cli.add_command(share)
cli.add_command(cluster)
cli.add_command(storage)
cli.add_command(gateway)
cli.add_command(rule)
cli.add_command(mailbox)
cli.add_command(acl)
cli.add_command(auth)
cli.add_command(dkim)
cli.add_command(mailauth)
cli.add_command(dns_command)
cli.add_command(files)
cli.add_command(quota)
cli.add_command(sieve)
cli.add_command(status)
cli.add_command(token)
register_directory(cli)


def main() -> None:
    import logging
    import sqlite3

    from ..db import SchemaError, StorageUnavailable

    # psycopg's pool reports each failed connection attempt as a warning; with no logging
    # set up, Python would print every one of them on stderr before our own line below.
    # (``serve`` sets up logging and keeps them in its log.)
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)
    try:
        cli(prog_name="waypost")
    except ConfigError as e:  # pragma: no cover - App reports these itself
        fail(str(e))
    except sqlite3.Error as e:  # a full disk, a locked or damaged file: one line, no traceback
        fail(f"the database refused the command: {e}")
    except StorageUnavailable as e:  # a PostgreSQL server down or unreachable
        fail(f"{e}: try again later")
    except SchemaError as e:
        fail(str(e))



