"""Copy a SQLite database into PostgreSQL (``waypost storage migrate --to URL``).

The source is read in one read transaction (one moment's snapshot, while a server may go
on writing to it); the target is written in one transaction with ``COPY``, so it holds
the whole copy or nothing.  Both schemas are first brought to the current version, so
that the tables and columns correspond one to one (``seen.user`` is ``seen.reader`` in
PostgreSQL, where USER is a reserved word).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable

from .postgres import PostgresDatabase
from .sqlite import SQLiteDatabase

__all__ = ["TABLES", "TargetNotEmpty", "copy_sqlite_to_postgres"]

#: Every table, parents before children (foreign keys).
TABLES = (
    "meta", "domains", "domain_aliases", "objects", "dkim_keys", "queue_messages", "queue_recipients",
    "mailboxes", "messages", "expunged", "acl", "seen", "mailbox_aliases", "subscriptions",
    "login_failures", "login_known", "message_headers", "nodes", "api_tokens",
    "sieve_scripts", "sieve_vacation", "urlauth_keys", "web_sessions",
)

#: Tables that triggers fill as the rows above are copied (quota usage, mailbox
#: counts): emptied with the others by ``force``, never copied (that would count twice).
DERIVED = ("quota_usage", "mailbox_counts")

#: SQLite INTEGER columns that are BOOLEAN in PostgreSQL.
_BOOLEANS = {"queue_recipients": "held", "sieve_scripts": "active"}

_RENAMED = {("seen", "user"): "reader"}


class TargetNotEmpty(RuntimeError):
    """The target database holds rows already (``force`` replaces them)."""


def copy_sqlite_to_postgres(source: Path, target_url: str, force: bool = False,
                            progress: Callable[[str, int, int], None] | None = None) -> dict[str, tuple[int, int]]:
    """Copy every table of the SQLite file ``source`` into the database at ``target_url``.
    ``progress(table, rows done, rows in the table)`` is called as rows go.  Returns,
    per table, (rows in the source, rows in the target after the copy); the caller
    compares them.  Raises ``TargetNotEmpty`` when the target has rows and not ``force``."""
    SQLiteDatabase(source).close()  # the source at the current schema version
    target = PostgresDatabase(target_url, pool_size=1, timeout=10.0)
    try:
        target.schema_version()  # the target at the current schema version
        src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)
        try:
            src.execute("BEGIN")  # one snapshot of the whole source
            with target._write() as dst:  # a settings change every process hears
                busy = [t for t in (*TABLES, *DERIVED) if dst.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]  # type: ignore[arg-type]
                if busy and not force:
                    raise TargetNotEmpty(f"the target database is not empty (tables {', '.join(busy)})")
                if busy:
                    dst.execute(f"TRUNCATE {', '.join((*TABLES, *DERIVED))} CASCADE")  # type: ignore[arg-type]
                counts = {t: _copy_table(src, dst, t, progress) for t in TABLES}
                # Mailbox ids are never given twice: the sequence starts past every id
                # SQLite ever gave (its counter remembers deleted mailboxes too).
                row = src.execute("SELECT MAX(CAST(value AS INTEGER)) FROM meta WHERE key='mailbox_id'"
                                  " UNION ALL SELECT MAX(id) FROM mailboxes").fetchall()
                last = max(int(r[0] or 0) for r in row)
                if last:
                    dst.execute("SELECT setval(pg_get_serial_sequence('mailboxes', 'id'), %s)", (last,))
                result = {}
                for t in TABLES:
                    got = dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()  # type: ignore[arg-type]
                    result[t] = (counts[t], int(got[0]) if got else 0)
            src.execute("COMMIT")
        finally:
            src.close()
    finally:
        target.close()
    return result


def _copy_table(src: sqlite3.Connection, dst: Any, table: str,
                progress: Callable[[str, int, int], None] | None) -> int:
    cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    total = int(src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    names = ", ".join(_RENAMED.get((table, c), c) for c in cols)
    held = cols.index(_BOOLEANS[table]) if table in _BOOLEANS else -1
    done = 0
    if progress is not None:
        progress(table, 0, total)
    with dst.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
            if held >= 0:
                row = (*row[:held], bool(row[held]), *row[held + 1:])
            copy.write_row(row)
            done += 1
            if progress is not None and done % 1000 == 0:
                progress(table, done, total)
    if progress is not None:
        progress(table, done, total)
    return total
