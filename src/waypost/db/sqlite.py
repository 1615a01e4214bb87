"""The embedded engine: SQLite in WAL mode, one connection per thread.

WAL lets readers (RCPT look-ups in every worker) run while one writer commits.  Writes
take the write lock up front (``BEGIN IMMEDIATE``) so that two processes never deadlock
upgrading a read lock.  ``synchronous=NORMAL``: a kill -9 loses nothing committed; only
a power cut can lose the last transactions, and the spool (fsync'ed before every 250)
is what the queue index is rebuilt from at start-up.

Settings read on every message (domains, objects, server-wide values) are cached in each
process.  A write to them ends by storing a new random token in ``waypost.db-changes``,
a small file every process of the data directory maps into memory; a cached row is used
only while the token it was read under is still the current one, so a change made by
any process (a worker, the CLI) is seen by the next look-up everywhere, and a look-up
costs a comparison of eight bytes instead of a query.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .base import (
    ApiToken,
    Conflict,
    DKIMKeyRecord,
    DomainRecord,
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
)
from .base import queue_auth_domain, queue_domain, whole_domain
from .changes import SettingsCache, changes_token, value_entry, value_of
from .sqlite_mailbox import _MailboxIndex
from .sqlite_sieve import _QuotaSieve

# The domain called ?1 or having it as an alias, in one statement: a name that is
# neither (every remote domain the Router is asked about) costs one read.
_NAMED = "name=?1 OR name=(SELECT domain FROM domain_aliases WHERE alias=?1)"

#: Version 1: the schema as it was before versioning (a database made then has
#: user_version 0 and gets the statements below, which add only what it lacks).
_V1 = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS domains (
    name     TEXT PRIMARY KEY,
    settings TEXT NOT NULL DEFAULT '{}',
    created  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS domain_aliases (
    alias  TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS objects (
    domain  TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    PRIMARY KEY (domain, name)
);
CREATE TABLE IF NOT EXISTS queue_messages (
    id       TEXT PRIMARY KEY,
    sender   TEXT NOT NULL,
    created  REAL NOT NULL,
    size     INTEGER NOT NULL,
    envelope TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_recipients (
    msg_id       TEXT NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    address      TEXT NOT NULL,
    target       TEXT NOT NULL,
    route        TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_reply   TEXT NOT NULL DEFAULT '',
    notify       TEXT NOT NULL DEFAULT '',
    orcpt        TEXT NOT NULL DEFAULT '',
    held         INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (msg_id, idx)
);
CREATE INDEX IF NOT EXISTS queue_due ON queue_recipients (status, held, next_attempt);
CREATE INDEX IF NOT EXISTS queue_target ON queue_recipients (target);
CREATE INDEX IF NOT EXISTS queue_created ON queue_messages (created, id);
CREATE TABLE IF NOT EXISTS mailboxes (
    id            INTEGER PRIMARY KEY,
    domain        TEXT NOT NULL,
    account       TEXT NOT NULL,
    name          TEXT NOT NULL,
    folder        TEXT NOT NULL,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    recent_uid    INTEGER NOT NULL DEFAULT 1,
    special_use   TEXT NOT NULL DEFAULT '',
    UNIQUE (domain, account, name)
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id   INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid          INTEGER NOT NULL,
    name         TEXT NOT NULL,
    subdir       TEXT NOT NULL,
    flags        TEXT NOT NULL DEFAULT '',
    modseq       INTEGER NOT NULL,
    size         INTEGER NOT NULL,
    internaldate REAL NOT NULL,
    cache        TEXT,
    PRIMARY KEY (mailbox_id, uid),
    UNIQUE (mailbox_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_modseq ON messages (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acl (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    identifier TEXT NOT NULL,
    rights     TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, identifier)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acl_identifier ON acl (identifier);
CREATE TABLE IF NOT EXISTS seen (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    user       TEXT NOT NULL,
    uid        INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, user, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox_aliases (
    domain  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    target  TEXT NOT NULL,
    PRIMARY KEY (domain, account, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    domain  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (domain, account, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS login_failures (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    last_failure  REAL NOT NULL,
    blocked_until REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS login_failures_last ON login_failures (last_failure);
CREATE TABLE IF NOT EXISTS login_known (
    account TEXT NOT NULL,
    client  TEXT NOT NULL,
    seen    REAL NOT NULL,
    PRIMARY KEY (account, client)
);
CREATE TABLE IF NOT EXISTS dkim_keys (
    domain      TEXT NOT NULL,
    selector    TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created     REAL NOT NULL,
    activated   REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, selector)
);
CREATE TABLE IF NOT EXISTS message_headers (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    header     BLOB NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
"""

#: Version 2: worker heartbeats (``waypost cluster status``).
_V2 = """
CREATE TABLE IF NOT EXISTS nodes (
    worker    TEXT PRIMARY KEY,
    node      TEXT NOT NULL,
    addresses TEXT NOT NULL DEFAULT '[]',
    started   REAL NOT NULL,
    seen      REAL NOT NULL,
    load      REAL NOT NULL DEFAULT 0
)
"""

#: Quota usage per account (RFC 9208 STORAGE in octets, MESSAGE), kept exact by
#: triggers on the message index: every worker and the CLI change it in the same
#: transaction as the messages themselves, so no process keeps a counter that drifts.
#: A message of unknown size (-1, dropped in by another program) counts 0 until sized.
#: Deleting a mailbox deletes its messages first (the cascade would run after the
#: mailbox row, which the message trigger needs, is gone).
QUOTA_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS quota_usage (
        domain   TEXT NOT NULL,
        account  TEXT NOT NULL,
        storage  INTEGER NOT NULL DEFAULT 0,
        messages INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (domain, account)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS quota_add AFTER INSERT ON messages BEGIN
        INSERT INTO quota_usage (domain, account, storage, messages)
            SELECT domain, account, MAX(NEW.size, 0), 1 FROM mailboxes WHERE id = NEW.mailbox_id
            ON CONFLICT (domain, account) DO UPDATE SET storage = storage + excluded.storage,
                                                       messages = messages + 1;
    END""",
    """CREATE TRIGGER IF NOT EXISTS quota_remove AFTER DELETE ON messages BEGIN
        UPDATE quota_usage SET storage = storage - MAX(OLD.size, 0), messages = messages - 1
            WHERE (domain, account) = (SELECT domain, account FROM mailboxes WHERE id = OLD.mailbox_id);
    END""",
    """CREATE TRIGGER IF NOT EXISTS quota_mailbox_delete BEFORE DELETE ON mailboxes BEGIN
        DELETE FROM messages WHERE mailbox_id = OLD.id;
    END""",
    """CREATE TRIGGER IF NOT EXISTS quota_size AFTER UPDATE OF size ON messages BEGIN
        UPDATE quota_usage SET storage = storage - MAX(OLD.size, 0) + MAX(NEW.size, 0)
            WHERE (domain, account) = (SELECT domain, account FROM mailboxes WHERE id = NEW.mailbox_id);
    END""",
)

#: Sieve scripts of each account (RFC 5804: any number, at most one active), and the
#: vacation replies sent (RFC 5230 §4.2: one per sender and handle per period).
SIEVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS sieve_scripts (
    domain  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    script  TEXT NOT NULL,
    active  INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (domain, account, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sieve_vacation (
    domain  TEXT NOT NULL,
    account TEXT NOT NULL,
    handle  TEXT NOT NULL,
    sender  TEXT NOT NULL,
    until   REAL NOT NULL,
    PRIMARY KEY (domain, account, handle, sender)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sieve_vacation_until ON sieve_vacation (until);
"""

#: Version 3: the Sieve tables, and quota usage with the triggers that keep it exact.  A
#: database made before them has its usage counted once from the index, in the same
#: transaction that creates the triggers, so no message stored meanwhile is missed or
#: counted twice.
_V3: list[str] = [
    *(st.strip() for st in SIEVE_SCHEMA.split(";\n") if st.strip()),
    *QUOTA_SCHEMA,
    "DELETE FROM quota_usage",
    "INSERT INTO quota_usage (domain, account, storage, messages)"
    " SELECT b.domain, b.account, SUM(MAX(m.size, 0)), COUNT(*)"
    " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id GROUP BY b.domain, b.account",
]

#: Version 4: the mailbox access keys of URLAUTH (RFC 4467 §3): one random key per
#: user and mailbox, made at the user's first GENURLAUTH for it and replaced (deleted,
#: made anew on demand) by RESETKEY.  Keyed by the mailbox's id, which is never given
#: to another mailbox, and gone with the mailbox.
_V4: list[str] = [
    """CREATE TABLE IF NOT EXISTS urlauth_keys (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        domain     TEXT NOT NULL,
        account    TEXT NOT NULL,
        key        BLOB NOT NULL,
        PRIMARY KEY (mailbox_id, domain, account)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS urlauth_keys_user ON urlauth_keys (domain, account)",
]

#: Version 5: WebUser sessions (``waypost.web``).  Only a hash of the session id is
#: kept, so that a copy of the database opens no session.
_V5: list[str] = [
    "CREATE TABLE IF NOT EXISTS web_sessions ("
    " id_hash TEXT PRIMARY KEY, account TEXT NOT NULL, csrf TEXT NOT NULL,"
    " created REAL NOT NULL, expires REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions (expires)",
]

#: Version 6: each mailbox's message count, unseen count and size, kept exact by triggers
#: on the message index in the same transaction as the messages themselves (as quota
#: usage is), so that SELECT, STATUS and every command's "what changed" check read one
#: row instead of counting 100,000.  ``size`` sums the known sizes; ``unsized`` counts
#: the messages of unknown size (-1: dropped in by another program, not measured yet).
#: The row goes with its mailbox (the id is never given again).  A database made before
#: has its counts made once here, in the migration's transaction.
_UNSEEN_NEW = "(instr(' ' || NEW.flags || ' ', ' \\Seen ') = 0)"
_UNSEEN_OLD = "(instr(' ' || OLD.flags || ' ', ' \\Seen ') = 0)"
_V6: list[str] = [
    """CREATE TABLE IF NOT EXISTS mailbox_counts (
        mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        messages   INTEGER NOT NULL DEFAULT 0,
        unseen     INTEGER NOT NULL DEFAULT 0,
        size       INTEGER NOT NULL DEFAULT 0,
        unsized    INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TRIGGER IF NOT EXISTS counts_mailbox AFTER INSERT ON mailboxes BEGIN
        INSERT OR IGNORE INTO mailbox_counts (mailbox_id) VALUES (NEW.id);
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS counts_add AFTER INSERT ON messages BEGIN
        UPDATE mailbox_counts SET messages = messages + 1, unseen = unseen + {_UNSEEN_NEW},
                                  size = size + MAX(NEW.size, 0), unsized = unsized + (NEW.size < 0)
            WHERE mailbox_id = NEW.mailbox_id;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS counts_remove AFTER DELETE ON messages BEGIN
        UPDATE mailbox_counts SET messages = messages - 1, unseen = unseen - {_UNSEEN_OLD},
                                  size = size - MAX(OLD.size, 0), unsized = unsized - (OLD.size < 0)
            WHERE mailbox_id = OLD.mailbox_id;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS counts_change AFTER UPDATE OF flags, size ON messages
        WHEN OLD.flags IS NOT NEW.flags OR OLD.size IS NOT NEW.size BEGIN
        UPDATE mailbox_counts SET unseen = unseen - {_UNSEEN_OLD} + {_UNSEEN_NEW},
                                  size = size - MAX(OLD.size, 0) + MAX(NEW.size, 0),
                                  unsized = unsized - (OLD.size < 0) + (NEW.size < 0)
            WHERE mailbox_id = NEW.mailbox_id;
    END""",
    "INSERT OR REPLACE INTO mailbox_counts (mailbox_id, messages, unseen, size, unsized)"
    " SELECT b.id, COUNT(m.uid),"
    " COALESCE(SUM(m.uid IS NOT NULL AND instr(' ' || m.flags || ' ', ' \\Seen ') = 0), 0),"
    " COALESCE(SUM(MAX(m.size, 0)), 0), COALESCE(SUM(m.size < 0), 0)"
    " FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id GROUP BY b.id",
]

#: Version 7: API tokens (``waypost token``, the JSON API of ``waypost.web``).  Only a
#: SHA-256 of each token is kept (the token is 256 random bits: no slow hash needed);
#: ``domains`` is empty for a server administrator's token, else the domains, one a line.
_V7: list[str] = [
    "CREATE TABLE IF NOT EXISTS api_tokens ("
    " name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, domains TEXT NOT NULL,"
    " created REAL NOT NULL, last_used REAL NOT NULL DEFAULT 0) WITHOUT ROWID",
]

#: Version 8: the save date of each message (RFC 8514 SAVEDATE): when it was stored in
#: its mailbox.  Messages indexed before have none (FETCH SAVEDATE answers NIL, and the
#: SAVED* search keys use their internal date).
_V8: list[str] = [
    "ALTER TABLE messages ADD COLUMN savedate REAL",
]

#: Version 9: the ``expunged`` table is pruned (``expunged_prune``): each record has the
#: time of its expunge, and each mailbox the mod-sequence at or below which expunges
#: are no longer recorded one by one (QRESYNC then names every UID that is not there,
#: RFC 7162 §3.2.5.1).  Records made before have time 0: the first prune takes them.
_V9: list[str] = [
    "ALTER TABLE expunged ADD COLUMN at REAL NOT NULL DEFAULT 0",
    "ALTER TABLE mailboxes ADD COLUMN expunged_floor INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS expunged_at ON expunged (at)",
]

#: Version 10: the queue by domain (issue 18): each recipient's domain (after its last
#: '@', lower case) and the domain of the account that sent a message (its envelope's
#: ``params.auth``; '' for mail from outside), indexed, so that a domain
#: administrator's queue and a filter matching few messages are read through an index
#: instead of the whole queue.  ``rtrim(a, replace(a, '@', ''))`` is ``a`` up to its
#: last '@'.
_V10: list[str] = [
    "ALTER TABLE queue_recipients ADD COLUMN domain TEXT NOT NULL DEFAULT ''",
    "UPDATE queue_recipients SET domain = lower(replace(address, rtrim(address, replace(address, '@', '')), ''))"
    " WHERE instr(address, '@') > 0",
    "CREATE INDEX IF NOT EXISTS queue_domain ON queue_recipients (domain, status)",
    "ALTER TABLE queue_messages ADD COLUMN auth_domain TEXT NOT NULL DEFAULT ''",
    "UPDATE queue_messages SET auth_domain = lower(replace(a, rtrim(a, replace(a, '@', '')), ''))"
    " FROM (SELECT id AS mid, json_extract(envelope, '$.params.auth') AS a FROM queue_messages)"
    " WHERE id = mid AND instr(a, '@') > 0",
    "CREATE INDEX IF NOT EXISTS queue_auth_domain ON queue_messages (auth_domain) WHERE auth_domain <> ''",
]

#: Version 11: each message's sort keys (``SortKeys``: the Date as a time, From and
#: Subject decoded and lower case), kept when it is stored (delivery, APPEND, COPY,
#: MOVE) so that no sort of a message list reads message files.  NULL: not known (a
#: message indexed before, or from a directory scan): the list makes them once from the
#: header and keeps them.
_V11: list[str] = [
    "ALTER TABLE messages ADD COLUMN sort_date REAL",
    "ALTER TABLE messages ADD COLUMN sort_from TEXT",
    "ALTER TABLE messages ADD COLUMN sort_subject TEXT",
]

#: Version 12: the \Seen marks of each reader on others' mailboxes are found by reader
#: (``account_forget`` drops a removed account's marks), not by a scan of every mark.
_V12: list[str] = [
    "CREATE INDEX IF NOT EXISTS seen_user ON seen (user)",
]

#: Version 13: nothing here.  PostgreSQL's migration 13 moves its quota usage triggers
#: to statement level (one update per statement, not per message); SQLite has only
#: row-level triggers, which cost little in-process, and keeps those of version 3.
#: (The two engines keep the same version numbers.)
_V13: list[str] = []

#: The numbered migrations: MIGRATIONS[n - 1] takes a database from version n - 1 to
#: n (``PRAGMA user_version``).  Append; never edit one that has been released.
MIGRATIONS: list[list[str]] = [
    [st.strip() for st in _V1.split(";\n") if st.strip()],
    [_V2.strip()],
    _V3,
    _V4,
    _V5,
    _V6,
    _V7,
    _V8,
    _V9,
    _V10,
    _V11,
    _V12,
    _V13,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteDatabase(_MailboxIndex, _QuotaSieve):
    """``Database`` on one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._changes = _changes_token(self.path)
        self._settings = SettingsCache(self.settings_token)
        conn = self._conn()
        try:
            _migrate(conn)
        except sqlite3.OperationalError:
            # A full disk (or a read-only user) cannot add what a newer version adds to
            # an existing schema (an index); reading still works: ``waypost queue list``
            # must, then most of all.  A database that was never made is an error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None:
                raise

    # -- connections ----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError:
                conn.close()
                conn = self._read_only()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def prepare_thread(self) -> None:
        # A connection takes about 0.8 ms to open (WAL mode; the schema, some sixty
        # tables, indexes and triggers, parsed at its first statement) and each
        # statement 50-100 us to compile at its first use on it.  The reads of a login
        # and of a session's first STATUS or SELECT are compiled here, with keys that
        # match nothing (reads only; a cached miss is dropped with the change token
        # like any other): after a restart the first sessions waited for both.
        self._conn()
        self.get_mark("")
        self.mailbox_get("", "", "")
        self.mailbox_by_id(-1)
        self.mailbox_state(-1)
        self.mailbox_alias_list("", "")
        self.message_first_unseen(-1, 0)
        self.login_known_get("", "")
        self.login_failures_get(("", ""), 0.0)  # a client and an account

    def _reader(self) -> sqlite3.Connection:
        """A connection of its own for a long read (see ``_read_only`` on a full disk)."""
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            conn.close()
            return self._read_only()
        return conn

    def _read_only(self) -> sqlite3.Connection:
        """The database as its file holds it, when WAL mode cannot start: that needs
        the ``-wal`` and ``-shm`` files, which a full disk cannot create.  They are
        missing only when every connection closed cleanly, having written everything
        back into the file, so the file is then the whole truth; writes fail (with
        "attempt to write a readonly database"), reads work."""
        path = Path(self.path).resolve()
        return sqlite3.connect(f"{path.as_uri()}?immutable=1", uri=True, isolation_level=None, timeout=30.0,
                               check_same_thread=False)

    @contextmanager
    def _write(self, settings: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction.  ``settings=False`` for the queue and the mailbox index,
        which nothing caches; any other write invalidates every process's cache."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
            if settings and self._changes is not None:
                self._changes[:8] = os.urandom(8)  # (a read-only user commits nothing)

    def settings_token(self) -> bytes | None:
        changes = self._changes
        return None if changes is None else changes[:8]  # a slice of a mapping is bytes

    def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        """``load()``, or what it gave under the current change token."""
        return self._settings.get(key, load)

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing from another thread
                    pass
            self._all.clear()
        self._local = threading.local()

    def backup_to(self, path: str | Path) -> None:
        # The online backup API copies one consistent snapshot while other processes
        # write; the copy is switched out of WAL so that it is one self-contained file.
        target = sqlite3.connect(str(path), isolation_level=None)
        try:
            self._conn().backup(target)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()

    # -- server-wide values -----------------------------------------------------------

    def get_value(self, key: str) -> Any:
        return value_of(self._cached(("v", key), lambda: value_entry(self._meta_text("v:" + key))))

    def get_mark(self, key: str) -> Any:
        text = self._meta_text("m:" + key)
        return None if text is None else json.loads(text)

    def set_mark(self, key: str, value: Any) -> None:
        self._write_value("m:" + key, value, settings=False)

    def set_value(self, key: str, value: Any) -> None:
        self._write_value("v:" + key, value)

    def _meta_text(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _write_value(self, key: str, value: Any, settings: bool = True) -> None:
        with self._write(settings) as c:
            if value is None:
                c.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                c.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                          (key, json.dumps(value)))

    # -- domains --------------------------------------------------------------------

    def _domain_row(self, conn: sqlite3.Connection, name: str) -> DomainRecord | None:
        row = conn.execute(f"SELECT name, settings, created FROM domains WHERE {_NAMED} LIMIT 1", (name,)).fetchone()
        if row is None:
            return None
        aliases = [r[0] for r in conn.execute("SELECT alias FROM domain_aliases WHERE domain=? ORDER BY alias", (row[0],))]
        return DomainRecord(name=row[0], aliases=aliases, settings=json.loads(row[1]), created=row[2])

    def _name_taken(self, conn: sqlite3.Connection, name: str) -> bool:
        return (
            conn.execute("SELECT 1 FROM domains WHERE name=?", (name,)).fetchone() is not None
            or conn.execute("SELECT 1 FROM domain_aliases WHERE alias=?", (name,)).fetchone() is not None
        )

    def add_domain(self, name: str, settings: dict[str, Any] | None = None) -> DomainRecord:
        with self._write() as c:
            if self._name_taken(c, name):
                raise Conflict(f"domain {name} already exists")
            c.execute(
                "INSERT INTO domains (name, settings, created) VALUES (?, ?, ?)",
                (name, json.dumps(settings or {}), time.time()),
            )
            rec = self._domain_row(c, name)
        assert rec is not None
        return rec

    def domain_name(self, name: str) -> str | None:
        names = self._settings.domain_names(self._domain_names)
        if names is not None:
            return names.get(name)

        def load() -> str | None:
            row = self._conn().execute(f"SELECT name FROM domains WHERE {_NAMED} LIMIT 1", (name,)).fetchone()
            return None if row is None else str(row[0])
        return self._cached(("n", name), load)  # type: ignore[no-any-return]

    def _domain_names(self, limit: int) -> list[tuple[str, str]]:
        """(name, canonical name): the aliases, then the domains (a name wins over an
        alias, as in ``_NAMED``); at most ``limit`` + 1 of each."""
        conn = self._conn()
        return (conn.execute("SELECT alias, domain FROM domain_aliases LIMIT ?", (limit + 1,)).fetchall()
                + conn.execute("SELECT name, name FROM domains LIMIT ?", (limit + 1,)).fetchall())

    def get_domain(self, name: str) -> DomainRecord | None:
        canonical = self.domain_name(name)  # a name that is no domain: one cached answer
        if canonical is None:
            return None

        def load() -> tuple[str, list[str], str, float] | None:
            rec = self._domain_row(self._conn(), canonical)
            return None if rec is None else (rec.name, rec.aliases, json.dumps(rec.settings), rec.created)
        row = self._cached(("d", canonical), load)
        # A new record each time: callers may change what they are given.
        return None if row is None else DomainRecord(row[0], list(row[1]), json.loads(row[2]), row[3])

    def list_domains(self) -> list[DomainRecord]:
        conn = self._conn()
        names = [r[0] for r in conn.execute("SELECT name FROM domains ORDER BY name")]
        return [rec for n in names if (rec := self._domain_row(conn, n)) is not None]

    def update_domain_settings(self, name: str, changes: dict[str, Any]) -> DomainRecord:
        with self._write() as c:
            rec = self._domain_row(c, name)
            if rec is None:
                raise NotFound(f"no domain {name}")
            settings = _merge(rec.settings, changes)
            c.execute("UPDATE domains SET settings=? WHERE name=?", (json.dumps(settings), rec.name))
            rec.settings = settings
        return rec

    def rename_domain_aliases(self, name: str, aliases: Sequence[str]) -> DomainRecord:
        with self._write() as c:
            rec = self._domain_row(c, name)
            if rec is None:
                raise NotFound(f"no domain {name}")
            c.execute("DELETE FROM domain_aliases WHERE domain=?", (rec.name,))
            for alias in aliases:
                if self._name_taken(c, alias):
                    raise Conflict(f"{alias} is already a domain or a domain alias")
                c.execute("INSERT INTO domain_aliases (alias, domain) VALUES (?, ?)", (alias, rec.name))
            out = self._domain_row(c, rec.name)
        assert out is not None
        return out

    def remove_domain(self, name: str) -> None:
        with self._write() as c:
            if c.execute("DELETE FROM domains WHERE name=?", (name,)).rowcount == 0:
                raise NotFound(f"no domain {name}")
            c.execute("DELETE FROM sieve_scripts WHERE domain=?", (name,))
            c.execute("DELETE FROM sieve_vacation WHERE domain=?", (name,))

    # -- objects --------------------------------------------------------------------

    def add_object(self, obj: ObjectRecord) -> ObjectRecord:
        with self._write() as c:
            if c.execute("SELECT 1 FROM domains WHERE name=?", (obj.domain,)).fetchone() is None:
                raise NotFound(f"no domain {obj.domain}")
            existing = c.execute("SELECT kind FROM objects WHERE domain=? AND name=?", (obj.domain, obj.name)).fetchone()
            if existing is not None:
                raise Conflict(f"{obj.name}@{obj.domain} already exists (a {existing[0]})")
            obj.created = obj.created or time.time()
            c.execute(
                "INSERT INTO objects (domain, name, kind, data, created) VALUES (?, ?, ?, ?, ?)",
                (obj.domain, obj.name, obj.kind, json.dumps(obj.data), obj.created),
            )
        return obj

    def get_object(self, domain: str, name: str, fresh: bool = False) -> ObjectRecord | None:
        row = self._object_row(domain, name) if fresh else self._settings.object_row(
            domain, name, self._object_row, self._object_names)
        return None if row is None else ObjectRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def _object_row(self, domain: str, name: str) -> Any:
        return self._conn().execute(
            "SELECT domain, name, kind, data, created FROM objects WHERE domain=? AND name=?", (domain, name)
        ).fetchone()

    def _object_names(self, domain: str, limit: int) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT name FROM objects WHERE domain=? LIMIT ?", (domain, limit + 1))]

    def list_objects(self, domain: str | None = None, kind: str | None = None) -> list[ObjectRecord]:
        sql = "SELECT domain, name, kind, data, created FROM objects"
        where, args = [], []
        if domain is not None:
            where.append("domain=?")
            args.append(domain)
        if kind is not None:
            where.append("kind=?")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY domain, name"
        return [ObjectRecord(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in self._conn().execute(sql, args)]

    def update_object(self, domain: str, name: str, changes: dict[str, Any]) -> ObjectRecord:
        with self._write() as c:
            row = c.execute(
                "SELECT domain, name, kind, data, created FROM objects WHERE domain=? AND name=?", (domain, name)
            ).fetchone()
            if row is None:
                raise NotFound(f"no object {name}@{domain}")
            data = _merge(json.loads(row[3]), changes)
            c.execute("UPDATE objects SET data=? WHERE domain=? AND name=?", (json.dumps(data), domain, name))
        return ObjectRecord(row[0], row[1], row[2], data, row[4])

    def remove_object(self, domain: str, name: str) -> None:
        with self._write() as c:
            if c.execute("DELETE FROM objects WHERE domain=? AND name=?", (domain, name)).rowcount == 0:
                raise NotFound(f"no object {name}@{domain}")
            # An account's filters and vacation records go with it: a new account of
            # the same name must not inherit them (a redirect to someone else's address).
            c.execute("DELETE FROM sieve_scripts WHERE domain=? AND account=?", (domain, name))
            c.execute("DELETE FROM sieve_vacation WHERE domain=? AND account=?", (domain, name))

    # -- queue ------------------------------------------------------------------------

    def queue_insert(self, messages: Iterable[QueuedMessage], lease_owner: str, lease_until: float) -> None:
        with self._write(settings=False) as c:
            for m in messages:
                c.execute(
                    "INSERT OR IGNORE INTO queue_messages (id, sender, created, size, envelope, auth_domain)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (m.msg_id, m.sender, m.created, m.size, json.dumps(m.envelope), queue_auth_domain(m.envelope)),
                )
                c.executemany(
                    "INSERT OR IGNORE INTO queue_recipients (msg_id, idx, address, target, route, status, attempts,"
                    " next_attempt, last_reply, notify, orcpt, held, lease_owner, lease_until, domain)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (m.msg_id, r.idx, r.address, r.target, json.dumps(r.route), r.status, r.attempts,
                         r.next_attempt, r.last_reply, r.notify, r.orcpt, int(r.held),
                         "" if r.held else lease_owner, 0.0 if r.held else lease_until, queue_domain(r.address))
                        for r in m.recipients
                    ],
                )

    def queue_known_ids(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT id FROM queue_messages")}

    def _messages(self, conn: sqlite3.Connection, ids: Sequence[str], only_owner: str | None = None,
                  only_rows: set[tuple[str, int]] | None = None) -> list[QueuedMessage]:
        """Messages with their recipients; ``only_rows`` keeps just those (msg_id, idx)."""
        out: list[QueuedMessage] = []
        for msg_id in ids:
            row = conn.execute(
                "SELECT id, sender, created, size, envelope FROM queue_messages WHERE id=?", (msg_id,)
            ).fetchone()
            if row is None:
                continue
            msg = QueuedMessage(row[0], row[1], row[2], row[3], json.loads(row[4]))
            sql = (
                "SELECT msg_id, idx, address, target, route, status, attempts, next_attempt, last_reply,"
                " notify, orcpt, held FROM queue_recipients WHERE msg_id=?"
            )
            args: list[Any] = [msg_id]
            if only_owner is not None:
                sql += " AND lease_owner=? AND status='queued'"
                args.append(only_owner)
            for r in conn.execute(sql + " ORDER BY idx", args):
                if only_rows is not None and (r[0], r[1]) not in only_rows:
                    continue
                msg.recipients.append(
                    QueuedRecipient(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]))
                )
            out.append(msg)
        return out

    def queue_claim_due(self, now: float, owner: str, lease_until: float, limit: int) -> list[QueuedMessage]:
        with self._write(settings=False) as c:
            rows = c.execute(
                "UPDATE queue_recipients SET lease_owner=?, lease_until=? WHERE rowid IN ("
                " SELECT rowid FROM queue_recipients WHERE status='queued' AND held=0 AND next_attempt<=?"
                " AND lease_until<=? ORDER BY next_attempt LIMIT ?) RETURNING msg_id, idx",
                (owner, lease_until, now, now, limit),
            ).fetchall()
            return self._messages(c, sorted({r[0] for r in rows}), only_rows={(r[0], r[1]) for r in rows})

    def queue_update(self, updates: Iterable[RecipientUpdate], owner: str,
                     forget: Iterable[str] = ()) -> list[str]:
        touched: set[str] = set()
        with self._write(settings=False) as c:
            self._forget(c, forget)
            for u in updates:
                changed = c.execute(
                    "UPDATE queue_recipients SET status=?, last_reply=?, next_attempt=?, attempts=attempts+1,"
                    " lease_owner='', lease_until=0 WHERE msg_id=? AND idx=?",
                    (u.status, u.reply, u.next_attempt, u.msg_id, u.idx),
                ).rowcount
                if changed:  # a message the index does not know is never reported finished
                    touched.add(u.msg_id)
            finished = []
            for msg_id in sorted(touched):
                left = c.execute(
                    "SELECT 1 FROM queue_recipients WHERE msg_id=? AND status='queued' LIMIT 1", (msg_id,)
                ).fetchone()
                if left is None:
                    finished.append(msg_id)
        return finished

    def queue_forget(self, msg_ids: Iterable[str]) -> int:
        with self._write(settings=False) as c:
            return self._forget(c, msg_ids)

    @staticmethod
    def _forget(c: sqlite3.Connection, msg_ids: Iterable[str]) -> int:
        n = 0
        for msg_id in msg_ids:
            n += c.execute(
                "DELETE FROM queue_messages WHERE id=? AND NOT EXISTS"
                " (SELECT 1 FROM queue_recipients WHERE msg_id=? AND status='queued')", (msg_id, msg_id),
            ).rowcount
        return n

    def queue_release_lease(self, msg_ids: Iterable[str], owner: str) -> None:
        with self._write(settings=False) as c:
            c.executemany(
                "UPDATE queue_recipients SET lease_owner='', lease_until=0 WHERE msg_id=? AND lease_owner=?",
                [(m, owner) for m in msg_ids],
            )

    def queue_release_rows(self, rows: Iterable[tuple[str, int]], owner: str) -> None:
        with self._write(settings=False) as c:
            c.executemany(
                "UPDATE queue_recipients SET lease_owner='', lease_until=0 WHERE msg_id=? AND idx=? AND lease_owner=?",
                [(m, i, owner) for m, i in rows],
            )

    def queue_release_leases_of(self, owner: str) -> int:
        with self._write(settings=False) as c:
            return c.execute(
                "UPDATE queue_recipients SET lease_owner='', lease_until=0"
                " WHERE lease_owner=? OR substr(lease_owner, 1, ?)=?",
                (owner, len(owner) + 1, owner + "/"),
            ).rowcount

    @staticmethod
    def _recipient_terms(where: QueueFilter, table: str = "", hint: str = "") -> tuple[list[str], list[Any]]:
        """The conditions of a queue filter on one recipient row (its target, address
        and domain); ``table`` prefixes the columns, ``hint`` is ``+`` where an index
        must not be chosen."""
        terms: list[str] = []
        args: list[Any] = []
        if where.target is not None:
            terms.append(f"{hint}{table}target=?")
            args.append(where.target)
        if where.recipient is not None:
            whole = whole_domain(where.recipient)
            if whole is not None:  # the same recipients, through the domain column
                terms.append(f"{hint}{table}domain=?")
                args.append(whole)
            else:
                terms.append(f"lower({table}address) LIKE ? ESCAPE '\\'")
                args.append(_like(where.recipient))
        if where.domain is not None:
            terms.append(f"({hint}{table}domain=? OR {table}msg_id IN"
                         " (SELECT id FROM queue_messages WHERE auth_domain=?))")
            args += [where.domain.lower(), where.domain.lower()]
        return terms, args

    @staticmethod
    def _state_terms(where: QueueFilter, table: str, hint: str, now: float) -> tuple[list[str], list[Any]]:
        if where.state is None:
            return [], []
        if where.state == "queued":
            return [f"{hint}{table}held=0"], []
        if where.state == "held":
            return [f"{hint}{table}held=1"], []
        if where.state == "deferred":
            return [f"{table}attempts>0"], []
        if where.state == "active":
            return [f"{table}lease_owner!='' AND {table}lease_until>?"], [now]
        raise ValueError(f"unknown queue state {where.state!r}")

    @staticmethod
    def _message_terms(where: QueueFilter, table: str = "m.") -> tuple[list[str], list[Any]]:
        """The conditions of a queue filter on the message row."""
        clauses: list[str] = []
        args: list[Any] = []
        if where.sender is not None:
            clauses.append(f"lower({table}sender) LIKE ? ESCAPE '\\'")
            args.append(_like(where.sender))
        if where.created_before is not None:
            clauses.append(f"{table}created<?")
            args.append(where.created_before)
        if where.created_after is not None:
            clauses.append(f"{table}created>=?")
            args.append(where.created_after)
        return clauses, args

    @staticmethod
    def _queue_where(where: QueueFilter, now: float) -> tuple[str, list[Any]]:
        """The WHERE clause (on ``m``, queue_messages) of a queue filter: the message
        has a queued recipient that matches (``+status``: the look-up goes by the
        primary key, not by the index of due recipients, which is no help here)."""
        terms, args = SQLiteDatabase._recipient_terms(where, "r2.", "+")
        state, sargs = SQLiteDatabase._state_terms(where, "r2.", "+", now)
        rcpt = ["r2.msg_id=m.id", "+r2.status='queued'", *terms, *state]
        clauses = [f"EXISTS (SELECT 1 FROM queue_recipients r2 WHERE {' AND '.join(rcpt)})"]
        more, margs = SQLiteDatabase._message_terms(where)
        return " AND ".join(clauses + more), [*args, *sargs, *margs]

    def _candidates(self, conn: sqlite3.Connection, where: QueueFilter, now: float) -> tuple[str, list[Any]] | None:
        """The ids of the messages a filter chooses, read through an index (recipient
        domain, sending account's domain, target, or held), as a query; None when the
        filter has no such condition or chooses more than ``NARROW_QUEUE`` recipients
        (then the messages are read in arrival order, where matches come soon)."""
        if where.target is None and where.state != "held" and where.domain is None and (
                where.recipient is None or whole_domain(where.recipient) is None):
            return None
        terms, args = self._recipient_terms(where.__class__(target=where.target, recipient=where.recipient), "r2.")
        state, sargs = self._state_terms(where, "r2.", "", now)
        rest = ["r2.status='queued'", *terms, *state]
        if where.domain is None:
            sql, params = f"SELECT r2.msg_id FROM queue_recipients r2 WHERE {' AND '.join(rest)}", [*args, *sargs]
        else:
            d = where.domain.lower()
            sql = (f"SELECT r2.msg_id FROM queue_recipients r2 WHERE r2.domain=? AND {' AND '.join(rest)}"
                   " UNION ALL SELECT r2.msg_id FROM queue_messages a CROSS JOIN queue_recipients r2"
                   f" ON r2.msg_id=a.id WHERE a.auth_domain=? AND {' AND '.join(rest)}")
            params = [d, *args, *sargs, d, *args, *sargs]
        found = conn.execute(f"SELECT COUNT(*) FROM ({sql} LIMIT {NARROW_QUEUE + 1})", params).fetchone()[0]
        if found > NARROW_QUEUE:
            return None
        return f"SELECT DISTINCT msg_id FROM ({sql})", params

    def queue_entries(self, where: QueueFilter, limit: int | None = None, offset: int = 0) -> Iterator[QueueEntry]:
        # A connection of its own: the rows are read while the caller prints them, and
        # this thread's connection may be used meanwhile.
        private = self.path == ":memory:" or self.path.startswith("file:")
        conn = self._conn() if private else self._reader()
        try:
            if limit == 0:
                return
            columns = ("SELECT m.id, m.sender, m.created, m.size, r.address, r.target, r.held, r.attempts,"
                       " r.next_attempt, r.last_reply")
            now = time.time()
            narrow = self._candidates(conn, where, now) if where != QueueFilter() else None
            if narrow is not None:
                # Few messages match: their ids through the index, then each message and
                # its recipients by primary key (CROSS JOIN: in this order), sorted.
                chosen, args = narrow
                more, margs = self._message_terms(where)
                rows = conn.execute(
                    f"WITH c(id) AS MATERIALIZED ({chosen}) {columns} FROM c CROSS JOIN queue_messages m ON m.id=c.id"
                    " CROSS JOIN queue_recipients r ON r.msg_id=m.id AND +r.status='queued'"
                    f"{' WHERE ' + ' AND '.join(more) if more else ''} ORDER BY m.created, m.id, r.idx",
                    [*args, *margs])
            else:
                clause = ""
                args = []
                if where != QueueFilter():  # no filter: the join alone keeps messages with a queued recipient
                    clause, args = self._queue_where(where, now)
                    clause = " WHERE " + clause
                # One pass in arrival order (the queue_created index), each message's
                # queued recipients by primary key: no sort, no query per message, rows
                # given out as they are read.  Pages are counted in messages, here.
                rows = conn.execute(
                    f"{columns} FROM queue_messages m"
                    " CROSS JOIN queue_recipients r ON r.msg_id=m.id AND +r.status='queued'"
                    f"{clause} ORDER BY m.created, m.id", args)
            entry: QueueEntry | None = None
            skip, left = offset, limit
            for msg_id, sender, created, size, address, target, held, attempts, nxt, reply in rows:
                if entry is None or entry.msg_id != msg_id:
                    if entry is not None:
                        if skip:
                            skip -= 1
                        else:
                            yield entry
                            if left is not None:
                                left -= 1
                                if left == 0:
                                    return
                    entry = QueueEntry(msg_id, sender, created, size, next_attempt=nxt)
                entry.recipients.append(address)
                if target not in entry.targets:
                    entry.targets.append(target)
                entry.held = entry.held or bool(held)
                entry.attempts = max(entry.attempts, attempts)
                entry.next_attempt = min(entry.next_attempt, nxt)
                if reply and not entry.last_reply:
                    entry.last_reply = reply
            if entry is not None and not skip:
                yield entry
        finally:
            if not private:
                conn.close()

    def queue_count(self, where: QueueFilter) -> int:
        conn = self._conn()
        now = time.time()
        narrow = self._candidates(conn, where, now)
        if narrow is not None:
            chosen, args = narrow
            more, margs = self._message_terms(where)
            return int(conn.execute(
                f"SELECT COUNT(*) FROM ({chosen}) c CROSS JOIN queue_messages m ON m.id=c.msg_id"
                f"{' WHERE ' + ' AND '.join(more) if more else ''}", [*args, *margs]).fetchone()[0])
        clause, args = self._queue_where(where, now)
        return int(conn.execute(f"SELECT COUNT(*) FROM queue_messages m WHERE {clause}", args).fetchone()[0])

    def queue_delete_many(self, msg_ids: Sequence[str]) -> int:
        with self._write(settings=False) as c:
            return sum(c.execute("DELETE FROM queue_messages WHERE id=?", (m,)).rowcount for m in msg_ids)

    def queue_set_matching(self, where: QueueFilter, now: float, held: bool | None = None,
                           due: bool = False) -> int:
        clause, args = self._queue_where(where, now)
        terms, rargs = self._recipient_terms(where)
        rcpt = ["status='queued'", *terms]
        sets: list[str] = []
        sargs: list[Any] = []
        if held is not None:
            sets.append("held=?")
            sargs.append(int(held))
        if due:
            sets.append("next_attempt=?")
            sargs.append(now)
        if not sets:
            return 0
        sql = (f"UPDATE queue_recipients SET {', '.join(sets)} WHERE {' AND '.join(rcpt)}"
               f" AND msg_id IN (SELECT m.id FROM queue_messages m WHERE {clause})")
        with self._write(settings=False) as c:
            return c.execute(sql, [*sargs, *rargs, *args]).rowcount

    def queue_get(self, msg_id: str) -> QueuedMessage | None:
        found = self._messages(self._conn(), [msg_id])
        return found[0] if found else None

    def queue_delete(self, msg_id: str) -> bool:
        with self._write(settings=False) as c:
            return c.execute("DELETE FROM queue_messages WHERE id=?", (msg_id,)).rowcount > 0

    def queue_reschedule(self, now: float, target: str | None = None, msg_id: str | None = None) -> int:
        sql = "UPDATE queue_recipients SET next_attempt=? WHERE status='queued'"
        args: list[Any] = [now]
        if target is not None:
            sql += " AND target=?"
            args.append(target)
        if msg_id is not None:
            sql += " AND msg_id=?"
            args.append(msg_id)
        with self._write(settings=False) as c:
            return c.execute(sql, args).rowcount

    def queue_claim_targets(self, targets: Sequence[str], owner: str, lease_until: float,
                            now: float) -> list[QueuedMessage]:
        if not targets:
            return []
        marks = ",".join("?" * len(targets))
        with self._write(settings=False) as c:
            rows = c.execute(
                f"UPDATE queue_recipients SET lease_owner=?, lease_until=? WHERE status='queued'"
                f" AND lease_until<=? AND target IN ({marks}) RETURNING msg_id, idx",
                (owner, lease_until, now, *targets),
            ).fetchall()
            return self._messages(c, sorted({r[0] for r in rows}), only_rows={(r[0], r[1]) for r in rows})

    def queue_extend_leases(self, owner: str, lease_until: float) -> int:
        with self._write(settings=False) as c:
            return c.execute("UPDATE queue_recipients SET lease_until=? WHERE lease_owner=? AND status='queued'",
                             (lease_until, owner)).rowcount

    def queue_stats(self) -> QueueStats:
        row = self._conn().execute(
            "SELECT COUNT(DISTINCT r.msg_id), COUNT(*), COALESCE(SUM(CASE WHEN r.held <> 0 THEN 1 ELSE 0 END), 0),"
            " COALESCE(MIN(m.created), 0) FROM queue_recipients r JOIN queue_messages m ON m.id = r.msg_id"
            " WHERE r.status = 'queued'").fetchone()
        return QueueStats(int(row[0]), int(row[1]), int(row[2]), float(row[3]))

    def queue_targets(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._conn().execute(
            "SELECT target, COUNT(DISTINCT msg_id) FROM queue_recipients WHERE status='queued' GROUP BY target")}

    def queue_set_held(self, target: str, held: bool) -> int:
        with self._write(settings=False) as c:
            return c.execute(
                "UPDATE queue_recipients SET held=? WHERE target=? AND status='queued'", (int(held), target)
            ).rowcount

    # -- API tokens -------------------------------------------------------------------

    def api_token_add(self, name: str, token_hash: str, domains: Sequence[str] | None, now: float) -> ApiToken:
        try:
            with self._write(settings=False) as c:
                c.execute("INSERT INTO api_tokens (name, token_hash, domains, created) VALUES (?, ?, ?, ?)",
                          (name, token_hash, "\n".join(domains) if domains is not None else "", now))
        except sqlite3.IntegrityError:
            raise Conflict(f"a token named {name} exists") from None
        return ApiToken(name, tuple(domains) if domains is not None else None, now)

    def api_token_find(self, token_hash: str, now: float) -> ApiToken | None:
        row = self._conn().execute("SELECT name, domains, created FROM api_tokens WHERE token_hash=?",
                                   (token_hash,)).fetchone()
        if row is None:
            return None
        with self._write(settings=False) as c:
            c.execute("UPDATE api_tokens SET last_used=? WHERE token_hash=? AND last_used < ?",
                      (now, token_hash, now - 60))  # at most one write a minute per token
        return ApiToken(str(row[0]), tuple(str(row[1]).split("\n")) if row[1] else None, float(row[2]), now)

    def api_token_list(self) -> list[ApiToken]:
        rows = self._conn().execute("SELECT name, domains, created, last_used FROM api_tokens ORDER BY name").fetchall()
        return [ApiToken(str(r[0]), tuple(str(r[1]).split("\n")) if r[1] else None, float(r[2]), float(r[3]))
                for r in rows]

    def api_token_remove(self, name: str) -> bool:
        with self._write(settings=False) as c:
            return bool(c.execute("DELETE FROM api_tokens WHERE name=?", (name,)).rowcount)

    # -- login throttling -----------------------------------------------------------

    def web_session_add(self, id_hash: str, account: str, csrf: str, now: float, expires: float) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM web_sessions WHERE expires < ?", (now,))
            c.execute("INSERT INTO web_sessions (id_hash, account, csrf, created, expires) VALUES (?, ?, ?, ?, ?)",
                      (id_hash, account, csrf, now, expires))

    def web_session_get(self, id_hash: str, now: float) -> tuple[str, str, float] | None:
        row = self._conn().execute("SELECT account, csrf, created FROM web_sessions WHERE id_hash=? AND expires >= ?",
                                   (id_hash, now)).fetchone()
        return (str(row[0]), str(row[1]), float(row[2])) if row else None

    def web_session_delete(self, id_hash: str) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM web_sessions WHERE id_hash=?", (id_hash,))

    def web_session_end_others(self, account: str, keep: str) -> int:
        with self._write(settings=False) as c:
            return c.execute("DELETE FROM web_sessions WHERE account=? AND id_hash<>?", (account, keep)).rowcount

    def login_failures_get(self, keys: Sequence[str], since: float) -> dict[str, tuple[int, float]]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._conn().execute(
            f"SELECT key, CASE WHEN last_failure >= ? THEN failures ELSE 0 END, blocked_until FROM login_failures"
            f" WHERE key IN ({marks}) AND (last_failure >= ? OR blocked_until > ?)", (since, *keys, since, since))
        return {r[0]: (int(r[1]), float(r[2])) for r in rows}

    def login_failure_add(self, keys: Sequence[str], now: float, since: float, block_after: int,
                          block_until: float) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        with self._write(settings=False) as c:
            for key in keys:
                row = c.execute("SELECT failures, last_failure, blocked_until FROM login_failures WHERE key=?",
                                (key,)).fetchone()
                failures = 1 if row is None or row[1] < since else int(row[0]) + 1
                blocked = 0.0 if row is None else float(row[2])
                if failures >= block_after and blocked <= now:
                    blocked = block_until
                c.execute("INSERT INTO login_failures (key, failures, last_failure, blocked_until) VALUES (?, ?, ?, ?)"
                          " ON CONFLICT (key) DO UPDATE SET failures=excluded.failures,"
                          " last_failure=excluded.last_failure, blocked_until=excluded.blocked_until",
                          (key, failures, now, blocked))
                out[key] = (failures, blocked)
            # Counts that ran out and blocks that are over are forgotten.
            c.execute("DELETE FROM login_failures WHERE last_failure < ? AND blocked_until < ?", (since, now))
        return out

    def login_failures_list(self, since: float) -> list[tuple[str, int, float, float]]:
        return [(r[0], int(r[1]), float(r[2]), float(r[3])) for r in self._conn().execute(
            "SELECT key, failures, last_failure, blocked_until FROM login_failures"
            " WHERE last_failure >= ? OR blocked_until > ? ORDER BY key", (since, since))]

    def login_failures_clear(self, keys: Sequence[str]) -> int:
        with self._write(settings=False) as c:
            return sum(c.execute("DELETE FROM login_failures WHERE key=?", (k,)).rowcount for k in keys)

    def login_known_get(self, account: str, client: str) -> float | None:
        row = self._conn().execute("SELECT seen FROM login_known WHERE account=? AND client=?",
                                   (account, client)).fetchone()
        return None if row is None else float(row[0])

    def login_known_set(self, account: str, client: str, now: float, forget_before: float) -> None:
        with self._write(settings=False) as c:
            c.execute("INSERT INTO login_known (account, client, seen) VALUES (?, ?, ?)"
                      " ON CONFLICT (account, client) DO UPDATE SET seen=excluded.seen", (account, client, now))
            c.execute("DELETE FROM login_known WHERE account=? AND seen < ?", (account, forget_before))

    # -- an account's removal ---------------------------------------------------------

    def account_forget(self, domain: str, account: str) -> int:
        address = f"{account}@{domain}"
        n = 0
        with self._write() as c:  # renews the change token: the cached active script goes
            for table in ("subscriptions", "mailbox_aliases", "sieve_scripts", "sieve_vacation", "urlauth_keys"):
                n += c.execute(f"DELETE FROM {table} WHERE domain=? AND account=?", (domain, account)).rowcount
            n += c.execute("DELETE FROM acl WHERE identifier=?", (address,)).rowcount
            n += c.execute("DELETE FROM seen WHERE user=?", (address,)).rowcount
            n += c.execute("DELETE FROM login_known WHERE account=?", (address,)).rowcount
            # The login throttle's count of failures for the name (and its block): a
            # new owner of the name is not held back by guesses at the old one's password.
            n += c.execute("DELETE FROM login_failures WHERE key=?", (f"account:{address}",)).rowcount
        return n

    # -- cluster: worker heartbeats ----------------------------------------------------

    def node_heartbeat(self, worker: str, node: str, addresses: Sequence[str], load: float, now: float) -> None:
        with self._write(settings=False) as c:
            c.execute("INSERT INTO nodes (worker, node, addresses, started, seen, load) VALUES (?, ?, ?, ?, ?, ?)"
                      " ON CONFLICT (worker) DO UPDATE SET addresses=excluded.addresses, seen=excluded.seen,"
                      " load=excluded.load", (worker, node, json.dumps(list(addresses)), now, now, load))

    def node_forget(self, worker: str) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM nodes WHERE worker=?", (worker,))

    def node_list(self, now: float) -> list[NodeRecord]:
        rows = self._conn().execute(
            "SELECT worker, node, addresses, started, seen, load, (SELECT COUNT(*) FROM queue_recipients"
            " WHERE lease_owner=nodes.worker AND status='queued' AND lease_until>?) FROM nodes ORDER BY node, worker",
            (now,)).fetchall()
        return [NodeRecord(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], int(r[6])) for r in rows]

    # -- DKIM signing keys ----------------------------------------------------------

    def dkim_key_add(self, key: DKIMKeyRecord) -> None:
        with self._write() as c:
            try:
                c.execute("INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, created,"
                          " activated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (key.domain, key.selector, key.algorithm, key.private_key, key.public_key, key.created,
                           key.activated))
            except sqlite3.IntegrityError:
                raise Conflict(f"{key.domain} already has a DKIM key with selector {key.selector}") from None

    def dkim_keys(self, domain: str | None = None) -> list[DKIMKeyRecord]:
        def load() -> list[DKIMKeyRecord]:
            sql = ("SELECT domain, selector, algorithm, private_key, public_key, created, activated FROM dkim_keys"
                   + (" WHERE domain=?" if domain is not None else "") + " ORDER BY domain, created, selector")
            rows = self._conn().execute(sql, (domain,) if domain is not None else ()).fetchall()
            return [DKIMKeyRecord(r[0], r[1], r[2], r[3], r[4], float(r[5]), float(r[6])) for r in rows]
        return list(self._cached(("dkim", domain or "*"), load))

    def dkim_key_activate(self, domain: str, selector: str, activated: float) -> None:
        with self._write() as c:
            if c.execute("UPDATE dkim_keys SET activated=? WHERE domain=? AND selector=?",
                         (activated, domain, selector)).rowcount == 0:
                raise NotFound(f"{domain} has no DKIM key with selector {selector}")

    def dkim_key_remove(self, domain: str, selector: str) -> None:
        with self._write() as c:
            if c.execute("DELETE FROM dkim_keys WHERE domain=? AND selector=?", (domain, selector)).rowcount == 0:
                raise NotFound(f"{domain} has no DKIM key with selector {selector}")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to ``SCHEMA_VERSION``, in one write transaction (several workers
    starting at once: the first migrates, the others find it done)."""
    if _user_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaError(f"the database has schema version {version}; this Waypost knows"
                              f" {SCHEMA_VERSION} at most (a newer Waypost made it)")
        for statements in MIGRATIONS[version:]:
            for st in statements:
                _apply(conn, st)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


#: "ALTER TABLE t ADD COLUMN c ...": SQLite has no IF NOT EXISTS for it.
_ADD_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (\w+)\b", re.IGNORECASE)


def _apply(conn: sqlite3.Connection, statement: str) -> None:
    """One migration statement.  Like the others (CREATE ... IF NOT EXISTS), adding a
    column that is there already does nothing, so a migration may meet what it makes."""
    m = _ADD_COLUMN.match(statement)
    if m is not None and any(row[1] == m.group(2) for row in conn.execute(f"PRAGMA table_info({m.group(1)})")):
        return
    conn.execute(statement)


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


#: Recipients a filter may choose through an index before the queue is read in
#: arrival order instead (where, with this many matching, matches come soon); below it
#: the matching messages are sorted by arrival (a few milliseconds for this many).
NARROW_QUEUE = 5000


def _like(pattern: str) -> str:
    """A LIKE pattern (escape ``\\``) for an address where ``*`` is any text."""
    escaped = pattern.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _changes_token(db_path: str) -> mmap.mmap | None:
    """The change token of the database at ``db_path`` (see ``changes.py``)."""
    if db_path == ":memory:" or db_path.startswith("file:"):
        return mmap.mmap(-1, 8)  # private to this process: nothing else can change it
    return changes_token(db_path + "-changes")
