"""Storage: the ``Database`` protocol and its engines.  The only package that writes SQL.

``open_database(url, data_dir)`` picks the engine: a ``postgresql://`` URL (not yet
available) or a SQLite file path relative to the data directory.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    OBJECT_KINDS,
    QUEUE_STATES,
    Conflict,
    Database,
    DomainRecord,
    MailboxRecord,
    MessageRecord,
    NotFound,
    ObjectRecord,
    QueueEntry,
    QueueFilter,
    QueuedMessage,
    QueuedRecipient,
    RecipientUpdate,
)
from .sqlite import SQLiteDatabase
from .versioned import VersionedText

__all__ = [
    "OBJECT_KINDS",
    "QUEUE_STATES",
    "Conflict",
    "QueueEntry",
    "QueueFilter",
    "Database",
    "DomainRecord",
    "MailboxRecord",
    "MessageRecord",
    "NotFound",
    "ObjectRecord",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientUpdate",
    "SQLiteDatabase",
    "VersionedText",
    "open_database",
]


def open_database(url: str, data_dir: Path) -> Database:
    if url.startswith(("postgresql://", "postgres://")):
        raise ValueError("storage.database: the PostgreSQL engine is not available in this version")
    path = Path(url.removeprefix("sqlite:"))
    if not path.is_absolute():
        path = data_dir / path
    return SQLiteDatabase(path)
