"""``waypost storage migrate``: move an installation's database from SQLite to PostgreSQL."""

from __future__ import annotations

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from ..datadir import database_file
from ..db import StorageUnavailable, database_problem, is_postgresql
from .common import App, fail, handle_errors, pass_app

__all__ = ["storage"]


@click.group()
def storage() -> None:
    """The database engine.  Example: waypost storage migrate --to postgresql://waypost@db/waypost"""


@storage.command("migrate")
@click.option("--to", "url", required=True, metavar="URL", help="The PostgreSQL database to copy into (postgresql://...).")
@click.option("--force", is_flag=True, help="Replace what the target database holds.")
@pass_app
@handle_errors
def migrate(app: App, url: str, force: bool) -> None:
    """Copy this installation's SQLite database (directory, queue index, mailbox index,
    settings, router table, rules, sharing peers, DKIM keys) into PostgreSQL, with a
    progress bar and a count check at the end.  The copy is one snapshot of the source
    (a server may keep running) and one transaction on the target; a target that holds
    rows is refused without --force.  Then set storage.database to the URL and restart.

    Example: waypost --data /srv/waypost storage migrate --to postgresql://waypost@db.example.com/waypost
    """
    from ..db.copy import TargetNotEmpty, copy_sqlite_to_postgres

    source = database_file(app.settings)
    if source is None:
        fail("storage.database is not a SQLite file: nothing to migrate from")
    assert source is not None
    if not source.is_file():
        fail(f"{source}: no such database")
    if not is_postgresql(url):
        fail("--to: expected a postgresql:// URL")
    problem = database_problem(url, app.settings.data_dir)
    if problem is not None:
        fail(f"--to: {problem}")
    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                  console=app.console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=max(total, 1))
            bar.update(tasks[table], completed=done if total else 1)

        try:
            counts = copy_sqlite_to_postgres(source, url, force=force, progress=progress)
        except TargetNotEmpty as e:
            fail(f"{e}; use --force to replace it")
        except StorageUnavailable as e:
            fail(str(e))
    wrong = {t: c for t, c in counts.items() if c[0] != c[1]}
    if wrong:
        fail("count check failed: " + ", ".join(f"{t} {a} in SQLite, {b} in PostgreSQL" for t, (a, b) in wrong.items()))
    click.echo(f"copied {sum(a for a, _ in counts.values())} rows in {len(counts)} tables; counts match")
    click.echo(f'now set storage.database = "{url}" in waypost.toml and restart the server')
