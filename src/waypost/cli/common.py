"""What every command shares: the data directory, output as a table or JSON, errors."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..config import ConfigError, Settings, load_settings
from ..db import Conflict, Database, NotFound, database_problem, open_database
from ..directory import Directory, DirectoryError, password_hasher
from ..secrets import Secrets

if TYPE_CHECKING:
    from ..ops import Operations
    from ..router import Router

__all__ = ["App", "pass_app", "emit", "fail", "handle_errors", "json_option", "print_text", "refuse_import"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    data: Path
    _settings: Settings | None = None
    _db: Database | None = None
    _directory: Directory | None = None
    #: True for ``serve``, which changes to server.user itself after binding its ports.
    keep_user: bool = False
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.data)
            except ConfigError as e:
                fail(str(e))
        assert self._settings is not None
        return self._settings

    @property
    def db(self) -> Database:
        if self._db is None:
            settings = self.settings
            if settings.server.user and os.geteuid() == 0 and not self.keep_user:
                # Root works as the server's user, so that nothing it creates (a
                # Maildir, the -wal file) is out of the server's reach.
                from ..datadir import owned_by_others, switch_user, user_ids

                name = settings.server.user
                try:
                    others = owned_by_others(settings, user_ids(name)[0])
                except KeyError:
                    fail(f"server.user: no such user {name!r}")
                if others:
                    fail(f"server.user: not owned by {name}: {', '.join(map(str, others))}"
                         f" (chown -R {name}: {settings.data_dir})")
                switch_user(name)
            problem = database_problem(settings.storage.database, settings.data_dir)
            if problem is not None:
                fail(f"storage.database: {problem}")
            self._db = open_database(settings.storage.database, settings.data_dir,
                                pool_size=settings.storage.pool_size, pool_timeout=settings.storage.pool_timeout)
        return self._db

    def close(self) -> None:
        """Close the database if this command opened it."""
        if self._db is not None:
            db, self._db, self._directory = self._db, None, None
            db.close()

    @property
    def mailstore(self) -> Any:
        """The mailstore, announcing its changes to running servers."""
        from ..bus import Bus
        from ..mailstore import Mailstore

        from ..server import link_bus

        settings = self.settings
        bus = Bus(settings.data_dir / "run")
        link_bus(bus, self.db, settings.server.hostname, background=False)
        from ..imap.message import list_keys

        store = Mailstore(settings.path(settings.storage.mail), settings.server.hostname, self.db, bus)
        store.sort_keys = list_keys  # kept as each message is stored (WebUser's sorts)
        return store

    @property
    def router(self) -> "Router":
        """A router as the server builds it (the Router table, gateway rules, own addresses)."""
        from ..router import Router
        from ..router.resolve import GatewayOptions
        from ..rules import gateway_store
        from ..server import own_addresses

        g = self.settings.gateway
        return Router(self.directory, self.settings.relay.trusted_networks, own_addresses(self.settings),
                      forwarding=gateway_store(self.db).get,
                      gateway=GatewayOptions(g.local_users_stay, g.relay_matched, g.check_local))

    @property
    def ops(self) -> "Operations":
        """The operations layer, acting as this command's user (a server administrator)."""
        from ..ops import Actor, Operations

        return Operations(self.directory, Actor.cli(), router=lambda: self.router,
                          spool=self.settings.path(self.settings.storage.spool), mailstore=lambda: self.mailstore,
                          settings=self.settings)

    @property
    def directory(self) -> Directory:
        if self._directory is None:
            a = self.settings.auth
            self._directory = Directory(self.db, self.settings.server.main_domain,
                                        hasher=password_hasher(a.argon2_memory, a.argon2_passes),
                                        secrets=Secrets(self.settings.data_dir))
        return self._directory


pass_app = click.make_pass_decorator(App)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")(f)  # type: ignore[return-value]


def fail(message: str, code: int = 1) -> Any:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def refuse_import(errors: Sequence[Any], source: str, what: str) -> None:
    """Every bad line of an import (``source:line: reason: text``), then exit 1 saying
    that nothing was changed; nothing at all when there are no errors."""
    if not errors:
        return
    for e in errors:
        click.echo(f"{source}:{e.line_no}: {e.reason}: {e.line.strip()}", err=True)
    fail(f"{len(errors)} bad {what}")


def print_text(text: str) -> None:
    """An exported text, ending with exactly one newline (nothing for no text)."""
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def handle_errors(f: F) -> F:
    """Turn the expected refusals of the lower layers into one clear line and exit 1."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..ops import Denied, Invalid

        try:
            return f(*args, **kwargs)
        except Invalid as e:  # the field as the option that carries it
            fail(f"--{e.field.replace('_', '-')}: {e.message}")
        except Denied as e:
            fail(str(e))
        except (Conflict, NotFound, DirectoryError, ConfigError, ValueError) as e:
            fail(str(e).strip("'\""))

    return wrapper  # type: ignore[return-value]


def emit(app: App, rows: Sequence[dict[str, Any]], columns: Iterable[str], as_json: bool, title: str = "") -> None:
    """A list: JSON (every field) for scripts, a table of ``columns`` for people."""
    if as_json:
        click.echo(json.dumps(list(rows), indent=2, default=str, ensure_ascii=False))
        return
    cols = list(columns)
    table = Table(title=title or None, show_lines=False)
    for c in cols:
        table.add_column(c)
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in cols])
    if not rows:
        app.console.print(f"(no {title.lower() or 'entries'})")
        return
    app.console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
