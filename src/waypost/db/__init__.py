"""Storage: the ``Database`` protocol and its engines.  The only package that writes SQL.

``open_database(url, data_dir)`` picks the engine: a ``postgresql://`` URL
(``postgres.py``) or a SQLite file path relative to the data directory (``sqlite.py``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .base import (
    OBJECT_KINDS,
    ApiToken,
    QUEUE_STATES,
    Conflict,
    Database,
    DKIMKeyRecord,
    DomainRecord,
    MailboxRecord,
    MessageRecord,
    SortKeys,
    NodeRecord,
    NotFound,
    ObjectRecord,
    QueueEntry,
    QueueFilter,
    QueueStats,
    QueuedMessage,
    QueuedRecipient,
    RecipientUpdate,
    SchemaError,
    StorageUnavailable,
)
from .sqlite import SQLiteDatabase
from .versioned import VersionedText

__all__ = [
    "OBJECT_KINDS",
    "ApiToken",
    "QUEUE_STATES",
    "Conflict",
    "QueueEntry",
    "QueueFilter",
    "QueueStats",
    "Database",
    "DKIMKeyRecord",
    "DomainRecord",
    "MailboxRecord",
    "MessageRecord",
    "SortKeys",
    "NodeRecord",
    "NotFound",
    "ObjectRecord",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientUpdate",
    "SchemaError",
    "SQLiteDatabase",
    "StorageUnavailable",
    "is_postgresql",
    "VersionedText",
    "database_problem",
    "open_database",
]


def _sqlite_path(url: str, data_dir: Path) -> Path:
    path = Path(url.removeprefix("sqlite:"))
    return path if path.is_absolute() else data_dir / path


def database_problem(url: str, data_dir: Path) -> str | None:
    """Why ``open_database(url, data_dir)`` would fail, or None; the text names no key
    (the caller says it is storage.database).  Reads, never creates or writes."""
    if is_postgresql(url):
        # Not connected here: a server started while the database is down answers
        # "try again later" until it is back (see postgres.py).
        from .postgres import url_problem
        return url_problem(url)
    if "://" in url and not url.startswith("file:"):
        return f"{url!r}: not a SQLite file path or a postgresql:// URL"
    path = _sqlite_path(url, data_dir)
    try:
        return _sqlite_problem(path)
    except OSError as e:
        return f"{path}: {e.strerror}"


def _sqlite_problem(path: Path) -> str | None:
    if not path.parent.is_dir():
        return f"{path.parent}: no such directory"
    if path.is_dir():
        return f"{path}: is a directory"
    if path.exists():
        # Through SQLite, never a plain open(): closing any descriptor of the file would
        # drop the POSIX locks that this process's connections hold on it
        # (https://sqlite.org/howtocorrupt.html §2.2).
        # A full disk cannot make the -shm file that a WAL reader needs; the file is then
        # read as it is (immutable), as SQLiteDatabase itself does, so that read-only
        # commands (queue list) still work.
        first: sqlite3.Error | None = None
        for mode in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{path.absolute().as_uri()}?{mode}", uri=True)
                try:
                    conn.execute("PRAGMA schema_version").fetchone()
                finally:
                    conn.close()
                return None
            except sqlite3.Error as e:
                first = first or e
        return f"{path}: {first}"
    elif not os.access(path.parent, os.W_OK):
        return f"{path}: cannot be created ({path.parent} is not writable)"
    return None


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


#: Where the processes of a data directory that share a PostgreSQL database keep their
#: change token (SQLite keeps it beside its file).
PG_CHANGES_TOKEN = "run/db-changes"


def open_database(url: str, data_dir: Path, pool_size: int = 4, pool_timeout: float = 5.0) -> Database:
    """The database at ``url``; ``pool_size`` and ``pool_timeout`` (seconds to wait for a
    connection before ``StorageUnavailable``) are for PostgreSQL."""
    if is_postgresql(url):
        from .postgres import PostgresDatabase

        token = data_dir / PG_CHANGES_TOKEN
        try:
            token.parent.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            pass  # (a read-only user: the token is then read-only, or absent and nothing is cached)
        return PostgresDatabase(url, token, pool_size=pool_size, timeout=pool_timeout)
    path = Path(url.removeprefix("sqlite:"))
    if not path.is_absolute():
        path = data_dir / path
    return SQLiteDatabase(path)
