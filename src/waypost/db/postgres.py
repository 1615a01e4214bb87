"""The PostgreSQL engine: ``Database`` on a PostgreSQL server, for several machines.

Connections come from one pool per process (``storage.pool_size``; psycopg_pool), each
in autocommit mode: a read is one statement, a write one explicit transaction.  Where
SQLite serialises every writer with its file lock, this engine locks only what must be:

* the queue is leased with ``FOR UPDATE SKIP LOCKED``: two workers (or two machines)
  claiming at once take disjoint recipients without waiting for each other;
* mailbox counters (UIDNEXT, HIGHESTMODSEQ) are taken with a row lock on the mailbox;
* the directory, the server-wide values and the DKIM keys, which check a name then
  write it, take one transaction-level advisory lock (``_SETTINGS_LOCK``); login
  counters take one per key; migrations one of their own.

The schema is versioned (table ``schema_version``, one row per migration applied) and
migrated by the first process that connects.

When the server goes away (a connection breaks, a pooled connection fails its check, or
no connection comes within ``storage.pool_timeout``) the engine is marked *down*: every
call raises ``StorageUnavailable`` at once instead of waiting ``pool_timeout`` (SMTP's
RCPT looks the directory up on the event loop: a wait there would stall every session
of the worker), and a prober thread tries a fresh connection every ``PROBE_INTERVAL``
seconds.  The first that succeeds marks it up again and has the pool drop its broken
connections, so a server that comes back is used within about a second; the pool's own
reconnect attempts give up after ``RECONNECT_WINDOW`` seconds (its back-off doubles up
to that, not to a minute) and start again on demand.

Caches: as with SQLite, settings are cached per process and validated by the eight-byte
change token of the data directory (``changes.py``), which a change made on this machine
renews at once.  Several machines share the database but not the token: a settings
write also sends ``NOTIFY waypost_changes`` (delivered at commit), and each process
keeps one connection that LISTENs and renews its machine's token when a change comes
from anywhere.  While that connection is down (the database unreachable, or not yet
listening) nothing is served from the cache: a change made meanwhile on another machine
could not be heard.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

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
    StorageUnavailable,
)
from .base import queue_auth_domain, queue_domain, whole_domain
from .changes import SettingsCache, changes_token, value_entry, value_of
from .postgres_mailbox import _MailboxIndex
from .postgres_sieve import _QuotaSieve

# The domain called %(name)s or having it as an alias, in one statement.
_NAMED = "d.name=%(name)s OR d.name=(SELECT domain FROM domain_aliases WHERE alias=%(name)s)"

__all__ = ["PostgresDatabase", "url_problem"]

#: Seconds a pooled connection may rest before its socket is looked at before use
#: (``_check``: a poll, no round trip; a connection on which something came while it
#: rested is tried with an empty query).
IDLE_CHECK = 0.0

#: Seconds between two connection attempts of the prober while the server is down.
PROBE_INTERVAL = 0.5
#: Seconds the pool keeps retrying a connection it could not make before it gives up
#: (and tries again when a command next asks for one).
RECONNECT_WINDOW = 3.0
#: Seconds a caller waits for a pooled connection between two looks at the down flag.
_WAIT_SLICE = 0.25

#: The NOTIFY channel of settings changes (see the module docstring).
CHANGES_CHANNEL = "waypost_changes"
#: The NOTIFY channel that carries the change bus (``waypost.bus``: mailbox changes
#: that wake IMAP IDLE, listings to forget) between nodes; payload ``<node>\t<topic>``.
BUS_CHANNEL = "waypost_bus"

# Advisory lock keys (pg_advisory_xact_lock(int4, int4)): the first number says what is
# locked, "WP" in ASCII, so that Waypost's locks are told from other software's.
_LOCK_CLASS = 0x5750
_SETTINGS_LOCK = 1
_MIGRATE_LOCK = 2
_LOGIN_LOCK_CLASS = 0x5751   # (class, hashtext(key)): one lock per login-throttle key

#: Version 1: every table of the SQLite schema version 1, in PostgreSQL's types
#: (DOUBLE PRECISION for times: REAL is four octets here).
_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE domains (
    name     TEXT PRIMARY KEY,
    settings TEXT NOT NULL DEFAULT '{}',
    created  DOUBLE PRECISION NOT NULL
);
CREATE TABLE domain_aliases (
    alias  TEXT PRIMARY KEY,
    domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE
);
CREATE INDEX domain_aliases_domain ON domain_aliases (domain);
CREATE TABLE objects (
    domain  TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL DEFAULT '{}',
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (domain, name)
);
CREATE TABLE queue_messages (
    id       TEXT PRIMARY KEY,
    sender   TEXT NOT NULL,
    created  DOUBLE PRECISION NOT NULL,
    size     BIGINT NOT NULL,
    envelope TEXT NOT NULL
);
CREATE TABLE queue_recipients (
    msg_id       TEXT NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    idx          INTEGER NOT NULL,
    address      TEXT NOT NULL,
    target       TEXT NOT NULL,
    route        TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL,
    last_reply   TEXT NOT NULL DEFAULT '',
    notify       TEXT NOT NULL DEFAULT '',
    orcpt        TEXT NOT NULL DEFAULT '',
    held         BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner  TEXT NOT NULL DEFAULT '',
    lease_until  DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (msg_id, idx)
);
CREATE INDEX queue_due ON queue_recipients (next_attempt) WHERE status = 'queued' AND NOT held;
CREATE INDEX queue_target ON queue_recipients (target) WHERE status = 'queued';
CREATE INDEX queue_lease_owner ON queue_recipients (lease_owner) WHERE lease_owner <> '';
CREATE INDEX queue_created ON queue_messages (created, id);
CREATE TABLE mailboxes (
    id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    domain        TEXT NOT NULL,
    account       TEXT NOT NULL,
    name          TEXT NOT NULL,
    folder        TEXT NOT NULL,
    uidvalidity   BIGINT NOT NULL,
    uidnext       BIGINT NOT NULL DEFAULT 1,
    highestmodseq BIGINT NOT NULL DEFAULT 1,
    recent_uid    BIGINT NOT NULL DEFAULT 1,
    special_use   TEXT NOT NULL DEFAULT '',
    UNIQUE (domain, account, name)
);
CREATE TABLE messages (
    mailbox_id   BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid          BIGINT NOT NULL,
    name         TEXT NOT NULL,
    subdir       TEXT NOT NULL,
    flags        TEXT NOT NULL DEFAULT '',
    modseq       BIGINT NOT NULL,
    size         BIGINT NOT NULL,
    internaldate DOUBLE PRECISION NOT NULL,
    cache        TEXT,
    PRIMARY KEY (mailbox_id, uid),
    UNIQUE (mailbox_id, name)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE TABLE expunged (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        BIGINT NOT NULL,
    modseq     BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE TABLE acl (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    identifier TEXT NOT NULL,
    rights     TEXT NOT NULL,
    PRIMARY KEY (mailbox_id, identifier)
);
CREATE INDEX acl_identifier ON acl (identifier);
CREATE TABLE seen (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    reader     TEXT NOT NULL,
    uid        BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, reader, uid)
);
CREATE TABLE mailbox_aliases (
    domain  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    target  TEXT NOT NULL,
    PRIMARY KEY (domain, account, name)
);
CREATE TABLE subscriptions (
    domain  TEXT NOT NULL,
    account TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (domain, account, name)
);
CREATE TABLE login_failures (
    key           TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    last_failure  DOUBLE PRECISION NOT NULL,
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX login_failures_last ON login_failures (last_failure);
CREATE TABLE login_known (
    account TEXT NOT NULL,
    client  TEXT NOT NULL,
    seen    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, client)
);
CREATE TABLE dkim_keys (
    domain      TEXT NOT NULL,
    selector    TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created     DOUBLE PRECISION NOT NULL,
    activated   DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, selector)
);
CREATE TABLE message_headers (
    mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        BIGINT NOT NULL,
    header     BYTEA NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
)
"""

#: Version 2: worker heartbeats (``waypost cluster status``).
_V2 = """
CREATE TABLE nodes (
    worker    TEXT PRIMARY KEY,
    node      TEXT NOT NULL,
    addresses TEXT NOT NULL DEFAULT '[]',
    started   DOUBLE PRECISION NOT NULL,
    seen      DOUBLE PRECISION NOT NULL,
    load      DOUBLE PRECISION NOT NULL DEFAULT 0
)
"""

#: Version 3: Sieve scripts and vacation replies, and quota usage per account kept exact
#: by triggers on the message index (in the same transaction as every message stored,
#: measured or removed, on every machine).  A schema made before them has its usage
#: counted once, in the migration's transaction.  Deleting a mailbox deletes its
#: messages first: the cascade would run after the mailbox row, which the message
#: trigger reads, is gone.
_V3: list[str] = [
    """CREATE TABLE sieve_scripts (
        domain  TEXT NOT NULL,
        account TEXT NOT NULL,
        name    TEXT NOT NULL,
        script  TEXT NOT NULL,
        active  BOOLEAN NOT NULL DEFAULT FALSE,
        updated DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (domain, account, name)
    )""",
    """CREATE TABLE sieve_vacation (
        domain  TEXT NOT NULL,
        account TEXT NOT NULL,
        handle  TEXT NOT NULL,
        sender  TEXT NOT NULL,
        until   DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (domain, account, handle, sender)
    )""",
    "CREATE INDEX sieve_vacation_until ON sieve_vacation (until)",
    """CREATE TABLE quota_usage (
        domain   TEXT NOT NULL,
        account  TEXT NOT NULL,
        storage  BIGINT NOT NULL DEFAULT 0,
        messages BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (domain, account)
    )""",
    """CREATE FUNCTION quota_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO quota_usage (domain, account, storage, messages)
            SELECT domain, account, GREATEST(NEW.size, 0), 1 FROM mailboxes WHERE id = NEW.mailbox_id
            ON CONFLICT (domain, account) DO UPDATE SET storage = quota_usage.storage + EXCLUDED.storage,
                                                       messages = quota_usage.messages + 1;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER quota_add AFTER INSERT ON messages FOR EACH ROW EXECUTE FUNCTION quota_add()",
    """CREATE FUNCTION quota_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE quota_usage SET storage = storage - GREATEST(OLD.size, 0), messages = messages - 1
            WHERE (domain, account) = (SELECT domain, account FROM mailboxes WHERE id = OLD.mailbox_id);
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER quota_remove AFTER DELETE ON messages FOR EACH ROW EXECUTE FUNCTION quota_remove()",
    """CREATE FUNCTION quota_mailbox_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM messages WHERE mailbox_id = OLD.id;
        RETURN OLD;
    END $$""",
    "CREATE TRIGGER quota_mailbox_delete BEFORE DELETE ON mailboxes FOR EACH ROW EXECUTE FUNCTION quota_mailbox_delete()",
    """CREATE FUNCTION quota_size() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE quota_usage SET storage = storage - GREATEST(OLD.size, 0) + GREATEST(NEW.size, 0)
            WHERE (domain, account) = (SELECT domain, account FROM mailboxes WHERE id = NEW.mailbox_id);
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER quota_size AFTER UPDATE OF size ON messages FOR EACH ROW"
    " WHEN (OLD.size IS DISTINCT FROM NEW.size) EXECUTE FUNCTION quota_size()",
    "INSERT INTO quota_usage (domain, account, storage, messages)"
    " SELECT b.domain, b.account, SUM(GREATEST(m.size, 0)), COUNT(*)"
    " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id GROUP BY b.domain, b.account",
]

#: Version 4: the mailbox access keys of URLAUTH (RFC 4467 §3), one per user and
#: mailbox (see sqlite.py), gone with the mailbox.
_V4: list[str] = [
    """CREATE TABLE urlauth_keys (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        domain     TEXT NOT NULL,
        account    TEXT NOT NULL,
        key        BYTEA NOT NULL,
        PRIMARY KEY (mailbox_id, domain, account)
    )""",
    "CREATE INDEX urlauth_keys_user ON urlauth_keys (domain, account)",
]

#: Version 5: WebUser sessions (``waypost.web``), only a hash of each session id kept.
_V5: list[str] = [
    "CREATE TABLE IF NOT EXISTS web_sessions ("
    " id_hash TEXT PRIMARY KEY, account TEXT NOT NULL, csrf TEXT NOT NULL,"
    " created DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions (expires)",
]

#: Version 6: each mailbox's message count, unseen count and size kept exact by triggers
#: on the message index (see sqlite.py).  Statement-level triggers with transition
#: tables: an APPEND of 1,000 messages, an expunge or a STORE on 1:* updates the row
#: once, not once per message.
_UNSEEN = "(position(' \\Seen ' IN ' ' || flags || ' ') = 0)::int"
_V6: list[str] = [
    """CREATE TABLE mailbox_counts (
        mailbox_id BIGINT PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
        messages   BIGINT NOT NULL DEFAULT 0,
        unseen     BIGINT NOT NULL DEFAULT 0,
        size       BIGINT NOT NULL DEFAULT 0,
        unsized    BIGINT NOT NULL DEFAULT 0
    )""",
    """CREATE FUNCTION counts_mailbox() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO mailbox_counts (mailbox_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER counts_mailbox AFTER INSERT ON mailboxes FOR EACH ROW EXECUTE FUNCTION counts_mailbox()",
    f"""CREATE FUNCTION counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE mailbox_counts c SET messages = c.messages + d.n, unseen = c.unseen + d.unseen,
                                    size = c.size + d.size, unsized = c.unsized + d.unsized
            FROM (SELECT mailbox_id, COUNT(*) AS n, SUM({_UNSEEN}) AS unseen, SUM(GREATEST(size, 0)) AS size,
                         COUNT(*) FILTER (WHERE size < 0) AS unsized
                  FROM new_rows GROUP BY mailbox_id) d
            WHERE c.mailbox_id = d.mailbox_id;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER counts_add AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION counts_add()",
    f"""CREATE FUNCTION counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE mailbox_counts c SET messages = c.messages - d.n, unseen = c.unseen - d.unseen,
                                    size = c.size - d.size, unsized = c.unsized - d.unsized
            FROM (SELECT mailbox_id, COUNT(*) AS n, SUM({_UNSEEN}) AS unseen, SUM(GREATEST(size, 0)) AS size,
                         COUNT(*) FILTER (WHERE size < 0) AS unsized
                  FROM old_rows GROUP BY mailbox_id) d
            WHERE c.mailbox_id = d.mailbox_id;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER counts_remove AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION counts_remove()",
    # A trigger with transition tables may not name columns: it sees every UPDATE of
    # messages (the header and body caches too) and changes the row only when the
    # difference is not nothing.
    f"""CREATE FUNCTION counts_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE mailbox_counts c SET unseen = c.unseen + d.unseen, size = c.size + d.size,
                                    unsized = c.unsized + d.unsized
            FROM (SELECT mailbox_id, SUM(u) AS unseen, SUM(s) AS size, SUM(z) AS unsized
                  FROM (SELECT mailbox_id, {_UNSEEN} AS u, GREATEST(size, 0) AS s, (size < 0)::int AS z
                        FROM new_rows
                        UNION ALL
                        SELECT mailbox_id, -{_UNSEEN}, -GREATEST(size, 0), -(size < 0)::int
                        FROM old_rows) x
                  GROUP BY mailbox_id
                  HAVING SUM(u) <> 0 OR SUM(s) <> 0 OR SUM(z) <> 0) d
            WHERE c.mailbox_id = d.mailbox_id;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER counts_change AFTER UPDATE ON messages REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION counts_change()",
    f"INSERT INTO mailbox_counts (mailbox_id, messages, unseen, size, unsized)"
    f" SELECT b.id, COUNT(m.uid), COALESCE(SUM(CASE WHEN m.uid IS NULL THEN 0"
    f" ELSE (position(' \\Seen ' IN ' ' || m.flags || ' ') = 0)::int END), 0),"
    f" COALESCE(SUM(GREATEST(m.size, 0)), 0), COUNT(*) FILTER (WHERE m.size < 0)"
    f" FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id GROUP BY b.id",
]

#: Version 7: API tokens (``waypost token``, the JSON API of ``waypost.web``).  Only a
#: SHA-256 of each token is kept (the token is 256 random bits: no slow hash needed);
#: ``domains`` is empty for a server administrator's token, else the domains, one a line.
_V7: list[str] = [
    "CREATE TABLE IF NOT EXISTS api_tokens ("
    " name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, domains TEXT NOT NULL,"
    " created DOUBLE PRECISION NOT NULL, last_used DOUBLE PRECISION NOT NULL DEFAULT 0)",
]

#: Version 8: the save date of each message (RFC 8514 SAVEDATE; see sqlite.py).
_V8: list[str] = [
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS savedate DOUBLE PRECISION",
]

#: Version 9: the ``expunged`` table is pruned (see sqlite.py).
_V9: list[str] = [
    "ALTER TABLE expunged ADD COLUMN IF NOT EXISTS at DOUBLE PRECISION NOT NULL DEFAULT 0",
    "ALTER TABLE mailboxes ADD COLUMN IF NOT EXISTS expunged_floor BIGINT NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS expunged_at ON expunged (at)",
]

#: Version 10: the queue by domain (see sqlite.py): each recipient's domain and the
#: domain of the account that sent a message, indexed; and the held recipients (the
#: index of due ones leaves them out).
_V10: list[str] = [
    "ALTER TABLE queue_recipients ADD COLUMN IF NOT EXISTS domain TEXT NOT NULL DEFAULT ''",
    "UPDATE queue_recipients SET domain = lower(substring(address from '@([^@]*)$')) WHERE position('@' in address) > 0",
    "CREATE INDEX IF NOT EXISTS queue_domain ON queue_recipients (domain) WHERE status = 'queued'",
    "CREATE INDEX IF NOT EXISTS queue_held ON queue_recipients (msg_id) WHERE status = 'queued' AND held",
    "ALTER TABLE queue_messages ADD COLUMN IF NOT EXISTS auth_domain TEXT NOT NULL DEFAULT ''",
    "UPDATE queue_messages SET auth_domain = lower(substring(envelope::jsonb #>> '{params,auth}' from '@([^@]*)$'))"
    " WHERE position('@' in COALESCE(envelope::jsonb #>> '{params,auth}', '')) > 0",
    "CREATE INDEX IF NOT EXISTS queue_auth_domain ON queue_messages (auth_domain) WHERE auth_domain <> ''",
]

#: Version 11: each message's sort keys (sqlite.py's _V11 says why).
_V11: list[str] = [
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS sort_date DOUBLE PRECISION",
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS sort_from TEXT",
    "ALTER TABLE messages ADD COLUMN IF NOT EXISTS sort_subject TEXT",
]

#: Version 12: the \Seen marks of each reader on others' mailboxes are found by reader
#: (``account_forget`` drops a removed account's marks), not by a scan of every mark.
_V12: list[str] = [
    "CREATE INDEX IF NOT EXISTS seen_reader ON seen (reader)",
]

#: Version 13: the quota usage of version 3 kept by statement-level triggers with
#: transition tables, as the mailbox counts of version 6: the first index of a
#: 10,000-message Maildir updated the account's usage row 10,000 times (0.6 of the
#: 0.8 s its one INSERT took); now once per statement and account.  (Size updates keep
#: their row-level trigger: a trigger with transition tables may not name a column,
#: and sizes are set only for files dropped in.)  SQLite has row-level triggers only
#: and keeps its own: its migration 13 changes nothing.
_V13: list[str] = [
    "DROP TRIGGER IF EXISTS quota_add ON messages",
    "DROP TRIGGER IF EXISTS quota_remove ON messages",
    """CREATE OR REPLACE FUNCTION quota_add_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO quota_usage (domain, account, storage, messages)
            SELECT b.domain, b.account, SUM(GREATEST(n.size, 0)), COUNT(*)
            FROM new_rows n JOIN mailboxes b ON b.id = n.mailbox_id
            GROUP BY b.domain, b.account ORDER BY b.domain, b.account
            ON CONFLICT (domain, account) DO UPDATE SET storage = quota_usage.storage + EXCLUDED.storage,
                                                       messages = quota_usage.messages + EXCLUDED.messages;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER quota_add AFTER INSERT ON messages REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION quota_add_rows()",
    # Rows deleted with their mailbox: quota_mailbox_delete deletes them BEFORE the
    # mailbox row goes, and this fires at the end of that DELETE, the row still there.
    """CREATE OR REPLACE FUNCTION quota_remove_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE quota_usage q SET storage = q.storage - d.storage, messages = q.messages - d.n
            FROM (SELECT b.domain, b.account, SUM(GREATEST(o.size, 0)) AS storage, COUNT(*) AS n
                  FROM old_rows o JOIN mailboxes b ON b.id = o.mailbox_id
                  GROUP BY b.domain, b.account) d
            WHERE q.domain = d.domain AND q.account = d.account;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER quota_remove AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION quota_remove_rows()",
    "DROP FUNCTION IF EXISTS quota_add()",
    "DROP FUNCTION IF EXISTS quota_remove()",
]

#: The numbered migrations: MIGRATIONS[n - 1] takes the schema from version n - 1 to n.
#: Append; never edit one that has been released.  (The same numbers as sqlite.py.)
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


def url_problem(url: str) -> str | None:
    """What is wrong with a postgresql:// URL, or None; never connects."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as e:
        return f"{url!r}: not a valid PostgreSQL URL ({str(e).strip()})"
    if not params.get("dbname"):
        return f"{url!r}: names no database (postgresql://user@host/DATABASE)"
    return None


def _safe(url: str) -> str:
    """The URL without its password, for log lines and messages."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(bad URL)"
    params.pop("password", None)
    return f"postgresql://{params.get('user', '')}@{params.get('host', '')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _has_input(conn: psycopg.Connection[Any]) -> bool:
    """Whether the socket of a resting ``conn`` has something to read, an end of
    stream or an error (a poll with no wait; poll, not select: a worker's descriptors
    go past select's 1,024)."""
    try:
        fd = conn.fileno()
    except psycopg.Error:  # closed
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class PostgresDatabase(_MailboxIndex, _QuotaSieve):
    """``Database`` on a PostgreSQL server.  ``changes``: the path of the data directory's
    change token (None: nothing is cached)."""

    def __init__(self, url: str, changes: str | Path | None = None, pool_size: int = 4,
                 timeout: float = 5.0, idle_check: float = IDLE_CHECK) -> None:
        self.url = url
        self.where = _safe(url)
        self._idle_check = idle_check
        self._returned: dict[int, float] = {}  # id(connection) -> when it went back to the pool
        self._pool = ConnectionPool(
            url, min_size=0, max_size=max(1, pool_size), open=False, timeout=timeout,
            # Connect attempts end soon: a caller waits ``timeout`` at most anyway.
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            name=f"waypost-{os.getpid()}", reconnect_timeout=RECONNECT_WINDOW,
            # No ``reset`` callback: with one, psycopg_pool hands every returned
            # connection to its worker thread, and the next command (often at once:
            # SELECT makes several) waits for that thread or has a new connection made.
            check=self._check,
        )
        self._pool.open(wait=False)
        self._ready = False
        self._ready_lock = threading.Lock()
        self._changes = None if changes is None else changes_token(str(changes))
        self._settings = SettingsCache(self.settings_token)
        self._listening = threading.Event()   # the LISTEN connection is up
        self._listener: threading.Thread | None = None
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._closed = threading.Event()
        self._timeout = timeout
        self._on_topic: Callable[[str, str], None] | None = None
        self._down = threading.Event()   # the server did not answer: fail fast, probe
        self._prober: threading.Thread | None = None
        self._down_lock = threading.Lock()

    # -- connections ----------------------------------------------------------------

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """Before a connection is handed out: one that rested longer than ``idle_check``
        and on which something came meanwhile is tried first (an empty query), so that
        a PostgreSQL restart costs a reconnect, not the failure of the next command.
        A connection of the pool LISTENs to nothing, so what comes while it rests is the
        server's goodbye (the FATAL error and the end of the stream of a backend that is
        terminated or shut down, or a TCP reset) or, rarely, a notice: a look at its
        socket (a poll, no round trip) tells whether to try it.  Trying every rested
        connection cost the first command after each rest of a quiet node 0.3-0.4 ms.
        A new connection, not returned yet, is tried."""
        used = self._returned.get(id(conn))
        if used is not None and (time.monotonic() - used <= self._idle_check or not _has_input(conn)):
            return
        try:
            conn.execute("")
        except psycopg.OperationalError:
            # Cut while it rested (a restart that is over, or a server that is
            # gone): the pool makes a new one, unless the server does not answer.
            if not self._reachable():
                self._mark_down()
            raise

    def _returning(self, conn: psycopg.Connection[Any]) -> None:
        """Note when ``conn`` goes back to the pool (for ``_check``)."""
        if len(self._returned) > 64:  # ids of connections long closed
            self._returned.clear()
        self._returned[id(conn)] = time.monotonic()

    @contextmanager
    def _checkout(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection (autocommit).  Unreachable server, or one lost during the
        work: ``StorageUnavailable`` (the pool drops a broken connection by itself); at
        once while the engine is marked down."""
        conn = self._getconn()
        try:
            if not self._ready:
                self._migrate(conn)
            yield conn
        except psycopg.OperationalError as e:
            # The connection was cut (a restart, a terminated backend): the pool makes
            # a new one; callers fail fast only if the server does not answer now.
            if (conn.broken or conn.closed) and not self._reachable():
                self._mark_down()
            raise StorageUnavailable(f"database {self.where}: {str(e).strip().splitlines()[0]}") from None
        finally:
            self._returning(conn)
            self._pool.putconn(conn)

    def _getconn(self) -> psycopg.Connection[Any]:
        """A connection from the pool within ``pool_timeout``, looking at the down flag
        every ``_WAIT_SLICE`` seconds meanwhile (set by a failed check or a broken
        connection in another thread: then this caller gives up at once too)."""
        deadline = time.monotonic() + self._timeout
        while True:
            if self._down.is_set():
                raise StorageUnavailable(f"database {self.where} unreachable")
            left = deadline - time.monotonic()
            try:
                return self._pool.getconn(timeout=max(0.01, min(_WAIT_SLICE, left)))
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    self._mark_down()  # (the prober clears it at once if the pool was only busy)
                    raise StorageUnavailable(f"database {self.where} unreachable") from None
            except psycopg.OperationalError as e:
                self._mark_down()
                raise StorageUnavailable(f"database {self.where}: {str(e).strip().splitlines()[0]}") from None

    def _mark_down(self) -> None:
        """The server did not answer: callers fail fast until the prober reaches it."""
        with self._down_lock:
            if self._closed.is_set() or self._down.is_set():
                return
            self._down.set()
            self._prober = threading.Thread(target=self._probe, name="pg-probe", daemon=True)
            self._prober.start()

    def _reachable(self) -> bool:
        """Whether a new connection can be made now (refused at once when the server is
        down; ``connect_timeout`` when its host does not answer)."""
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(2, int(self._timeout)))
        except psycopg.Error:
            return False
        conn.close()
        return True

    def _probe(self) -> None:
        while not self._closed.is_set():
            if not self._reachable():
                self._closed.wait(PROBE_INTERVAL)
                continue
            try:  # the connections that rested in the pool across the outage are broken
                self._pool.check()
            except Exception:  # a failed reconnect of the pool's own: it retries by itself
                pass
            break
        with self._down_lock:
            self._down.clear()
            self._prober = None

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        with self._checkout() as conn:
            yield conn

    @contextmanager
    def _write(self, settings: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction.  ``settings=True`` (the cached tables): serialised by the
        settings lock, and every process's cache is invalidated after the commit."""
        with self._checkout() as conn:
            with conn.transaction():
                if settings:
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _SETTINGS_LOCK))
                yield conn
                if settings:  # heard by every process of every machine, at commit
                    conn.execute("SELECT pg_notify(%s, '')", (CHANGES_CHANNEL,))
        if settings:
            self._renew_token()

    def _renew_token(self) -> None:
        if self._changes is not None and not isinstance(self._changes, bytes):
            try:
                self._changes[:8] = os.urandom(8)
            except TypeError:  # a read-only mapping (a user who may only read): nothing to renew
                pass

    # -- change notifications from other machines ------------------------------------

    def _start_listener(self) -> None:
        with self._ready_lock:
            if self._listener is None and not self._closed.is_set():
                self._listener = threading.Thread(target=self._listen, name="pg-listen", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        """LISTEN for settings changes; renew the token on each (and on every reconnect,
        for what may have been missed while down)."""
        while not self._closed.is_set():
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._timeout)))
            except psycopg.Error:
                self._closed.wait(1.0)
                continue
            self._listen_conn = conn
            try:
                conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                conn.execute(f"LISTEN {BUS_CHANNEL}")
                self._renew_token()
                self._listening.set()
                while not self._closed.is_set():
                    for note in conn.notifies(timeout=1.0):
                        if note.channel == BUS_CHANNEL:
                            self._topic_heard(note.payload)
                        else:
                            self._renew_token()
            except psycopg.Error:
                pass
            finally:
                self._listening.clear()
                self._listen_conn = None
                try:
                    conn.close()
                except psycopg.Error:
                    pass

    # -- the change bus between nodes (waypost.bus) -------------------------------------

    def listen_topics(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(node, topic)`` (in the listener thread) for every bus topic
        published by any process of any node (``publish_topics``)."""
        self._on_topic = callback
        self._start_listener()

    def _topic_heard(self, payload: str) -> None:
        node, sep, topic = payload.partition("\t")
        if sep and self._on_topic is not None:
            try:
                self._on_topic(node, topic)
            except Exception:  # a subscriber's error must not end the listener
                pass

    def publish_topics(self, node: str, topics: Sequence[str]) -> None:
        """Send bus topics to every node (one statement for the lot, autocommit)."""
        if topics:
            with self._checkout() as c:
                c.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                          (BUS_CHANNEL, [f"{node}\t{t}" for t in topics]))

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with self._ready_lock:
            if self._ready:
                return
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _MIGRATE_LOCK))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                             " version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
                row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise SchemaError(f"the database has schema version {version}; this Waypost knows"
                                      f" {SCHEMA_VERSION} at most (a newer Waypost made it)")
                for n, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                    for st in statements:
                        conn.execute(st)  # type: ignore[arg-type]  # our own constant text
                    conn.execute("INSERT INTO schema_version (version, applied) VALUES (%s, %s)", (n, time.time()))
            self._ready = True

    def schema_version(self) -> int:
        with self._read() as c:
            row = c.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def prepare_thread(self) -> None:
        pass  # the pool's connections are shared by the threads; none is this thread's

    def settings_token(self) -> bytes | None:
        # Only while this process hears the other machines' changes (LISTEN): without
        # it, a change made elsewhere would not replace the token.
        if self._changes is None:
            return None
        if not self._listening.is_set():
            self._start_listener()
            if not self._listening.wait(0.0):
                return None
        return self._changes[:8]  # a slice of a mapping is bytes

    def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        """``load()``, or what it gave under the current change token."""
        return self._settings.get(key, load)

    def close(self) -> None:
        # The listener sees the flag within a second and closes its connection; not
        # waited for (a CLI command would wait for it on every exit).
        self._closed.set()
        self._pool.close()

    def backup_to(self, path: str | Path) -> None:
        # pg_dump reads one snapshot (REPEATABLE READ) while the servers go on; the
        # custom format is what pg_restore takes back.
        exe = shutil.which("pg_dump")
        if exe is None:
            raise OSError("pg_dump is not installed (Debian: postgresql-client)")
        done = subprocess.run([exe, "--format=custom", "--no-owner", f"--file={path}", "--dbname", self.url],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"pg_dump failed: {done.stderr.strip()}")

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
        with self._read() as c:
            row = c.execute("SELECT value FROM meta WHERE key=%s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _write_value(self, key: str, value: Any, settings: bool = True) -> None:
        with self._write(settings) as c:
            if value is None:
                c.execute("DELETE FROM meta WHERE key=%s", (key,))
            else:
                c.execute("INSERT INTO meta (key, value) VALUES (%s, %s)"
                          " ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, json.dumps(value)))

    # -- domains --------------------------------------------------------------------

    @staticmethod
    def _domain_row(conn: psycopg.Connection[Any], name: str) -> DomainRecord | None:
        row = conn.execute(
            "SELECT d.name, d.settings, d.created, ARRAY(SELECT alias FROM domain_aliases WHERE domain=d.name"
            f" ORDER BY alias) FROM domains d WHERE {_NAMED} LIMIT 1", {"name": name}).fetchone()
        if row is None:
            return None
        return DomainRecord(name=row[0], aliases=list(row[3]), settings=json.loads(row[1]), created=row[2])

    @staticmethod
    def _name_taken(conn: psycopg.Connection[Any], name: str) -> bool:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM domains WHERE name=%s)"
                           " OR EXISTS (SELECT 1 FROM domain_aliases WHERE alias=%s)", (name, name)).fetchone()
        return bool(row and row[0])

    def add_domain(self, name: str, settings: dict[str, Any] | None = None) -> DomainRecord:
        with self._write() as c:
            if self._name_taken(c, name):
                raise Conflict(f"domain {name} already exists")
            c.execute("INSERT INTO domains (name, settings, created) VALUES (%s, %s, %s)",
                      (name, json.dumps(settings or {}), time.time()))
            rec = self._domain_row(c, name)
        assert rec is not None
        return rec

    def domain_name(self, name: str) -> str | None:
        names = self._settings.domain_names(self._domain_names)
        if names is not None:
            return names.get(name)

        def load() -> str | None:
            with self._read() as c:
                row = c.execute(f"SELECT name FROM domains d WHERE {_NAMED} LIMIT 1", {"name": name}).fetchone()
            return None if row is None else str(row[0])
        return self._cached(("n", name), load)  # type: ignore[no-any-return]

    def _domain_names(self, limit: int) -> list[tuple[str, str]]:
        """(name, canonical name): the aliases, then the domains (a name wins over an
        alias, as in ``_NAMED``); at most ``limit`` + 1 of each."""
        with self._read() as c:
            return (c.execute("SELECT alias, domain FROM domain_aliases LIMIT %s", (limit + 1,)).fetchall()
                    + c.execute("SELECT name, name FROM domains LIMIT %s", (limit + 1,)).fetchall())

    def get_domain(self, name: str) -> DomainRecord | None:
        canonical = self.domain_name(name)  # a name that is no domain: one cached answer
        if canonical is None:
            return None

        def load() -> tuple[str, list[str], str, float] | None:
            with self._read() as c:
                rec = self._domain_row(c, canonical)
            return None if rec is None else (rec.name, rec.aliases, json.dumps(rec.settings), rec.created)
        row = self._cached(("d", canonical), load)
        return None if row is None else DomainRecord(row[0], list(row[1]), json.loads(row[2]), row[3])

    def list_domains(self) -> list[DomainRecord]:
        with self._read() as c:
            rows = c.execute(
                "SELECT d.name, d.settings, d.created, ARRAY(SELECT alias FROM domain_aliases WHERE domain=d.name"
                " ORDER BY alias) FROM domains d ORDER BY d.name").fetchall()
        return [DomainRecord(r[0], list(r[3]), json.loads(r[1]), r[2]) for r in rows]

    def update_domain_settings(self, name: str, changes: dict[str, Any]) -> DomainRecord:
        with self._write() as c:
            rec = self._domain_row(c, name)
            if rec is None:
                raise NotFound(f"no domain {name}")
            settings = _merge(rec.settings, changes)
            c.execute("UPDATE domains SET settings=%s WHERE name=%s", (json.dumps(settings), rec.name))
            rec.settings = settings
        return rec

    def rename_domain_aliases(self, name: str, aliases: Sequence[str]) -> DomainRecord:
        with self._write() as c:
            rec = self._domain_row(c, name)
            if rec is None:
                raise NotFound(f"no domain {name}")
            c.execute("DELETE FROM domain_aliases WHERE domain=%s", (rec.name,))
            for alias in aliases:
                if self._name_taken(c, alias):
                    raise Conflict(f"{alias} is already a domain or a domain alias")
                c.execute("INSERT INTO domain_aliases (alias, domain) VALUES (%s, %s)", (alias, rec.name))
            out = self._domain_row(c, rec.name)
        assert out is not None
        return out

    def remove_domain(self, name: str) -> None:
        with self._write() as c:
            if c.execute("DELETE FROM domains WHERE name=%s", (name,)).rowcount == 0:
                raise NotFound(f"no domain {name}")
            c.execute("DELETE FROM sieve_scripts WHERE domain=%s", (name,))
            c.execute("DELETE FROM sieve_vacation WHERE domain=%s", (name,))

    # -- objects --------------------------------------------------------------------

    def add_object(self, obj: ObjectRecord) -> ObjectRecord:
        with self._write() as c:
            if c.execute("SELECT 1 FROM domains WHERE name=%s", (obj.domain,)).fetchone() is None:
                raise NotFound(f"no domain {obj.domain}")
            existing = c.execute("SELECT kind FROM objects WHERE domain=%s AND name=%s",
                                 (obj.domain, obj.name)).fetchone()
            if existing is not None:
                raise Conflict(f"{obj.name}@{obj.domain} already exists (a {existing[0]})")
            obj.created = obj.created or time.time()
            c.execute("INSERT INTO objects (domain, name, kind, data, created) VALUES (%s, %s, %s, %s, %s)",
                      (obj.domain, obj.name, obj.kind, json.dumps(obj.data), obj.created))
        return obj

    def get_object(self, domain: str, name: str, fresh: bool = False) -> ObjectRecord | None:
        row = self._object_row(domain, name) if fresh else self._settings.object_row(
            domain, name, self._object_row, self._object_names)
        return None if row is None else ObjectRecord(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def _object_row(self, domain: str, name: str) -> Any:
        with self._read() as c:
            return c.execute("SELECT domain, name, kind, data, created FROM objects WHERE domain=%s AND name=%s",
                             (domain, name)).fetchone()

    def _object_names(self, domain: str, limit: int) -> list[str]:
        with self._read() as c:
            return [r[0] for r in c.execute("SELECT name FROM objects WHERE domain=%s LIMIT %s", (domain, limit + 1))]

    def list_objects(self, domain: str | None = None, kind: str | None = None) -> list[ObjectRecord]:
        sql = "SELECT domain, name, kind, data, created FROM objects"
        where: list[str] = []
        args: list[Any] = []
        if domain is not None:
            where.append("domain=%s")
            args.append(domain)
        if kind is not None:
            where.append("kind=%s")
            args.append(kind)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY domain, name"
        with self._read() as c:
            rows = c.execute(sql, args).fetchall()  # type: ignore[call-overload]
        return [ObjectRecord(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def update_object(self, domain: str, name: str, changes: dict[str, Any]) -> ObjectRecord:
        with self._write() as c:
            row = c.execute("SELECT domain, name, kind, data, created FROM objects WHERE domain=%s AND name=%s",
                            (domain, name)).fetchone()
            if row is None:
                raise NotFound(f"no object {name}@{domain}")
            data = _merge(json.loads(row[3]), changes)
            c.execute("UPDATE objects SET data=%s WHERE domain=%s AND name=%s", (json.dumps(data), domain, name))
        return ObjectRecord(row[0], row[1], row[2], data, row[4])

    def remove_object(self, domain: str, name: str) -> None:
        with self._write() as c:
            if c.execute("DELETE FROM objects WHERE domain=%s AND name=%s", (domain, name)).rowcount == 0:
                raise NotFound(f"no object {name}@{domain}")
            # An account's filters and vacation records go with it: a new account of
            # the same name must not inherit them (a redirect to someone else's address).
            c.execute("DELETE FROM sieve_scripts WHERE domain=%s AND account=%s", (domain, name))
            c.execute("DELETE FROM sieve_vacation WHERE domain=%s AND account=%s", (domain, name))

    # -- queue ------------------------------------------------------------------------

    def queue_insert(self, messages: Iterable[QueuedMessage], lease_owner: str, lease_until: float) -> None:
        msgs = list(messages)
        if not msgs:
            return
        with self._write(settings=False) as c, c.cursor() as cur:
            cur.executemany(
                "INSERT INTO queue_messages (id, sender, created, size, envelope, auth_domain)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(m.msg_id, m.sender, m.created, m.size, json.dumps(m.envelope), queue_auth_domain(m.envelope)) for m in msgs])
            cur.executemany(
                "INSERT INTO queue_recipients (msg_id, idx, address, target, route, status, attempts,"
                " next_attempt, last_reply, notify, orcpt, held, lease_owner, lease_until, domain)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(m.msg_id, r.idx, r.address, r.target, json.dumps(r.route), r.status, r.attempts,
                  r.next_attempt, r.last_reply, r.notify, r.orcpt, bool(r.held),
                  "" if r.held else lease_owner, 0.0 if r.held else lease_until, queue_domain(r.address))
                 for m in msgs for r in m.recipients])

    def queue_known_ids(self) -> set[str]:
        with self._read() as c:
            return {r[0] for r in c.execute("SELECT id FROM queue_messages")}

    @staticmethod
    def _messages(conn: psycopg.Connection[Any], ids: Sequence[str],
                  only_rows: set[tuple[str, int]] | None = None) -> list[QueuedMessage]:
        """Messages (in the order of ``ids``) with their recipients; ``only_rows`` keeps
        just those (msg_id, idx).  Two queries, whatever the number of messages."""
        if not ids:
            return []
        found = {r[0]: QueuedMessage(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in conn.execute(
            "SELECT id, sender, created, size, envelope FROM queue_messages WHERE id = ANY(%s)", (list(ids),))}
        for r in conn.execute(
                "SELECT msg_id, idx, address, target, route, status, attempts, next_attempt, last_reply,"
                " notify, orcpt, held FROM queue_recipients WHERE msg_id = ANY(%s) ORDER BY msg_id, idx",
                (list(found),)):
            if only_rows is not None and (r[0], r[1]) not in only_rows:
                continue
            found[r[0]].recipients.append(
                QueuedRecipient(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8], r[9], r[10],
                                bool(r[11])))
        return [found[i] for i in ids if i in found]

    def queue_claim_due(self, now: float, owner: str, lease_until: float, limit: int) -> list[QueuedMessage]:
        with self._write(settings=False) as c:
            # SKIP LOCKED: recipients another claimer is taking right now are left to it.
            rows = c.execute(
                "UPDATE queue_recipients r SET lease_owner=%s, lease_until=%s FROM ("
                " SELECT msg_id, idx FROM queue_recipients WHERE status='queued' AND NOT held AND next_attempt<=%s"
                " AND lease_until<=%s ORDER BY next_attempt LIMIT %s FOR UPDATE SKIP LOCKED) due"
                " WHERE r.msg_id=due.msg_id AND r.idx=due.idx RETURNING r.msg_id, r.idx",
                (owner, lease_until, now, now, limit)).fetchall()
            return self._messages(c, sorted({r[0] for r in rows}), only_rows={(r[0], r[1]) for r in rows})

    def queue_update(self, updates: Iterable[RecipientUpdate], owner: str,
                     forget: Iterable[str] = ()) -> list[str]:
        ups = list(updates)
        with self._write(settings=False) as c:
            self._forget(c, forget)
            if not ups:
                return []
            touched = {r[0] for r in c.execute(
                "UPDATE queue_recipients r SET status=u.status, last_reply=u.reply, next_attempt=u.next,"
                " attempts=r.attempts+1, lease_owner='', lease_until=0"
                " FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::float8[])"
                " AS u(msg_id, idx, status, reply, next) WHERE r.msg_id=u.msg_id AND r.idx=u.idx"
                " RETURNING r.msg_id",
                ([u.msg_id for u in ups], [u.idx for u in ups], [u.status for u in ups], [u.reply for u in ups],
                 [u.next_attempt for u in ups]))}
            if not touched:  # a message the index does not know is never reported finished
                return []
            left = {r[0] for r in c.execute(
                "SELECT DISTINCT msg_id FROM queue_recipients WHERE msg_id = ANY(%s) AND status='queued'",
                (sorted(touched),))}
        return sorted(touched - left)

    def queue_forget(self, msg_ids: Iterable[str]) -> int:
        with self._write(settings=False) as c:
            return self._forget(c, msg_ids)

    @staticmethod
    def _forget(c: psycopg.Connection[Any], msg_ids: Iterable[str]) -> int:
        ids = list(msg_ids)
        if not ids:
            return 0
        return c.execute(
            "DELETE FROM queue_messages m WHERE id = ANY(%s) AND NOT EXISTS"
            " (SELECT 1 FROM queue_recipients WHERE msg_id=m.id AND status='queued')", (ids,)).rowcount

    def queue_release_lease(self, msg_ids: Iterable[str], owner: str) -> None:
        ids = list(msg_ids)
        if ids:
            with self._write(settings=False) as c:
                c.execute("UPDATE queue_recipients SET lease_owner='', lease_until=0"
                          " WHERE msg_id = ANY(%s) AND lease_owner=%s", (ids, owner))

    def queue_release_rows(self, rows: Iterable[tuple[str, int]], owner: str) -> None:
        pairs = list(rows)
        if pairs:
            with self._write(settings=False) as c:
                c.execute("UPDATE queue_recipients r SET lease_owner='', lease_until=0"
                          " FROM unnest(%s::text[], %s::int[]) AS u(msg_id, idx)"
                          " WHERE r.msg_id=u.msg_id AND r.idx=u.idx AND r.lease_owner=%s",
                          ([m for m, _ in pairs], [i for _, i in pairs], owner))

    def queue_release_leases_of(self, owner: str) -> int:
        with self._write(settings=False) as c:
            return c.execute("UPDATE queue_recipients SET lease_owner='', lease_until=0"
                             " WHERE lease_owner=%s OR starts_with(lease_owner, %s)", (owner, owner + "/")).rowcount

    @staticmethod
    def _recipient_terms(where: QueueFilter, table: str = "") -> tuple[list[str], list[Any]]:
        terms: list[str] = []
        args: list[Any] = []
        if where.target is not None:
            terms.append(f"{table}target=%s")
            args.append(where.target)
        if where.recipient is not None:
            whole = whole_domain(where.recipient)
            if whole is not None:  # the same recipients, through the domain column
                terms.append(f"{table}domain=%s")
                args.append(whole)
            else:
                terms.append(f"lower({table}address) LIKE %s ESCAPE '\\'")
                args.append(_like(where.recipient))
        if where.domain is not None:
            terms.append(f"({table}domain=%s OR {table}msg_id IN (SELECT id FROM queue_messages WHERE auth_domain=%s))")
            args += [where.domain.lower(), where.domain.lower()]
        return terms, args

    @staticmethod
    def _queue_where(where: QueueFilter, now: float) -> tuple[str, list[Any]]:
        """The WHERE clause (on ``m``, queue_messages) of a queue filter."""
        terms, args = PostgresDatabase._recipient_terms(where, "r2.")
        rcpt = ["r2.msg_id=m.id", "r2.status='queued'", *terms]
        if where.state == "queued":
            rcpt.append("NOT r2.held")
        elif where.state == "held":
            rcpt.append("r2.held")
        elif where.state == "deferred":
            rcpt.append("r2.attempts>0")
        elif where.state == "active":
            rcpt.append("r2.lease_owner<>'' AND r2.lease_until>%s")
            args.append(now)
        elif where.state is not None:
            raise ValueError(f"unknown queue state {where.state!r}")
        clauses = [f"EXISTS (SELECT 1 FROM queue_recipients r2 WHERE {' AND '.join(rcpt)})"]
        if where.sender is not None:
            clauses.append("lower(m.sender) LIKE %s ESCAPE '\\'")
            args.append(_like(where.sender))
        if where.created_before is not None:
            clauses.append("m.created<%s")
            args.append(where.created_before)
        if where.created_after is not None:
            clauses.append("m.created>=%s")
            args.append(where.created_after)
        return " AND ".join(clauses), args

    def queue_entries(self, where: QueueFilter, limit: int | None = None, offset: int = 0) -> Iterator[QueueEntry]:
        if limit == 0:
            return
        clause = ""
        args: list[Any] = []
        if where != QueueFilter():
            clause, args = self._queue_where(where, time.time())
            clause = " WHERE " + clause
        # A server-side cursor in one read-only transaction: rows are fetched a batch
        # at a time while the caller prints them (bounded memory, one snapshot).
        with self._checkout() as conn, conn.transaction(), conn.cursor(name="queue_entries") as cur:
            cur.itersize = 500
            cur.execute(
                "SELECT m.id, m.sender, m.created, m.size, r.address, r.target, r.held, r.attempts,"
                " r.next_attempt, r.last_reply FROM queue_messages m"
                " JOIN queue_recipients r ON r.msg_id=m.id AND r.status='queued'"
                f"{clause} ORDER BY m.created, m.id, r.idx", args)  # type: ignore[arg-type]
            entry: QueueEntry | None = None
            skip, left = offset, limit
            for msg_id, sender, created, size, address, target, held, attempts, nxt, reply in cur:
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

    def queue_count(self, where: QueueFilter) -> int:
        clause, args = self._queue_where(where, time.time())
        with self._read() as c:
            row = c.execute(f"SELECT COUNT(*) FROM queue_messages m WHERE {clause}", args).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0

    def queue_delete_many(self, msg_ids: Sequence[str]) -> int:
        if not msg_ids:
            return 0
        with self._write(settings=False) as c:
            return c.execute("DELETE FROM queue_messages WHERE id = ANY(%s)", (list(msg_ids),)).rowcount

    def queue_set_matching(self, where: QueueFilter, now: float, held: bool | None = None,
                           due: bool = False) -> int:
        clause, args = self._queue_where(where, now)
        terms, rargs = self._recipient_terms(where)
        rcpt = ["status='queued'", *terms]
        sets: list[str] = []
        sargs: list[Any] = []
        if held is not None:
            sets.append("held=%s")
            sargs.append(bool(held))
        if due:
            sets.append("next_attempt=%s")
            sargs.append(now)
        if not sets:
            return 0
        sql = (f"UPDATE queue_recipients SET {', '.join(sets)} WHERE {' AND '.join(rcpt)}"
               f" AND msg_id IN (SELECT m.id FROM queue_messages m WHERE {clause})")
        with self._write(settings=False) as c:
            return c.execute(sql, [*sargs, *rargs, *args]).rowcount  # type: ignore[arg-type]

    def queue_get(self, msg_id: str) -> QueuedMessage | None:
        with self._read() as c:
            found = self._messages(c, [msg_id])
        return found[0] if found else None

    def queue_delete(self, msg_id: str) -> bool:
        with self._write(settings=False) as c:
            return c.execute("DELETE FROM queue_messages WHERE id=%s", (msg_id,)).rowcount > 0

    def queue_reschedule(self, now: float, target: str | None = None, msg_id: str | None = None) -> int:
        sql = "UPDATE queue_recipients SET next_attempt=%s WHERE status='queued'"
        args: list[Any] = [now]
        if target is not None:
            sql += " AND target=%s"
            args.append(target)
        if msg_id is not None:
            sql += " AND msg_id=%s"
            args.append(msg_id)
        with self._write(settings=False) as c:
            return c.execute(sql, args).rowcount  # type: ignore[arg-type]

    def queue_claim_targets(self, targets: Sequence[str], owner: str, lease_until: float,
                            now: float) -> list[QueuedMessage]:
        if not targets:
            return []
        with self._write(settings=False) as c:
            rows = c.execute(
                "UPDATE queue_recipients r SET lease_owner=%s, lease_until=%s FROM ("
                " SELECT msg_id, idx FROM queue_recipients WHERE status='queued' AND lease_until<=%s"
                " AND target = ANY(%s) FOR UPDATE SKIP LOCKED) t"
                " WHERE r.msg_id=t.msg_id AND r.idx=t.idx RETURNING r.msg_id, r.idx",
                (owner, lease_until, now, list(targets))).fetchall()
            return self._messages(c, sorted({r[0] for r in rows}), only_rows={(r[0], r[1]) for r in rows})

    def queue_extend_leases(self, owner: str, lease_until: float) -> int:
        with self._write(settings=False) as c:
            return c.execute("UPDATE queue_recipients SET lease_until=%s WHERE lease_owner=%s AND status='queued'",
                             (lease_until, owner)).rowcount

    def queue_stats(self) -> QueueStats:
        with self._read() as c:
            row = c.execute(
                "SELECT COUNT(DISTINCT r.msg_id), COUNT(*), COALESCE(SUM(CASE WHEN r.held THEN 1 ELSE 0 END), 0),"
                " COALESCE(MIN(m.created), 0) FROM queue_recipients r JOIN queue_messages m ON m.id = r.msg_id"
                " WHERE r.status = 'queued'").fetchone()
        assert row is not None
        return QueueStats(int(row[0]), int(row[1]), int(row[2]), float(row[3]))

    def queue_targets(self) -> dict[str, int]:
        with self._read() as c:
            return {r[0]: r[1] for r in c.execute(
                "SELECT target, COUNT(DISTINCT msg_id) FROM queue_recipients WHERE status='queued' GROUP BY target")}

    def queue_set_held(self, target: str, held: bool) -> int:
        with self._write(settings=False) as c:
            return c.execute("UPDATE queue_recipients SET held=%s WHERE target=%s AND status='queued'",
                             (bool(held), target)).rowcount

    # -- API tokens -------------------------------------------------------------------

    def api_token_add(self, name: str, token_hash: str, domains: Sequence[str] | None, now: float) -> ApiToken:
        try:
            with self._write(settings=False) as c:
                c.execute("INSERT INTO api_tokens (name, token_hash, domains, created) VALUES (%s, %s, %s, %s)",
                          (name, token_hash, "\n".join(domains) if domains is not None else "", now))
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"a token named {name} exists") from None
        return ApiToken(name, tuple(domains) if domains is not None else None, now)

    def api_token_find(self, token_hash: str, now: float) -> ApiToken | None:
        with self._read() as c:
            row = c.execute("SELECT name, domains, created FROM api_tokens WHERE token_hash=%s",
                            (token_hash,)).fetchone()
        if row is None:
            return None
        with self._write(settings=False) as c:
            c.execute("UPDATE api_tokens SET last_used=%s WHERE token_hash=%s AND last_used < %s",
                      (now, token_hash, now - 60))  # at most one write a minute per token
        return ApiToken(str(row[0]), tuple(str(row[1]).split("\n")) if row[1] else None, float(row[2]), now)

    def api_token_list(self) -> list[ApiToken]:
        with self._read() as c:
            rows = c.execute("SELECT name, domains, created, last_used FROM api_tokens ORDER BY name").fetchall()
        return [ApiToken(str(r[0]), tuple(str(r[1]).split("\n")) if r[1] else None, float(r[2]), float(r[3]))
                for r in rows]

    def api_token_remove(self, name: str) -> bool:
        with self._write(settings=False) as c:
            return bool(c.execute("DELETE FROM api_tokens WHERE name=%s", (name,)).rowcount)

    # -- login throttling -----------------------------------------------------------

    def web_session_add(self, id_hash: str, account: str, csrf: str, now: float, expires: float) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM web_sessions WHERE expires < %s", (now,))
            c.execute("INSERT INTO web_sessions (id_hash, account, csrf, created, expires) VALUES (%s, %s, %s, %s, %s)",
                      (id_hash, account, csrf, now, expires))

    def web_session_get(self, id_hash: str, now: float) -> tuple[str, str, float] | None:
        with self._read() as c:
            row = c.execute("SELECT account, csrf, created FROM web_sessions WHERE id_hash=%s AND expires >= %s",
                            (id_hash, now)).fetchone()
        return (str(row[0]), str(row[1]), float(row[2])) if row else None

    def web_session_delete(self, id_hash: str) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM web_sessions WHERE id_hash=%s", (id_hash,))

    def web_session_end_others(self, account: str, keep: str) -> int:
        with self._write(settings=False) as c:
            return c.execute("DELETE FROM web_sessions WHERE account=%s AND id_hash<>%s", (account, keep)).rowcount

    def login_failures_get(self, keys: Sequence[str], since: float) -> dict[str, tuple[int, float]]:
        if not keys:
            return {}
        with self._read() as c:
            rows = c.execute(
                "SELECT key, CASE WHEN last_failure >= %s THEN failures ELSE 0 END, blocked_until FROM login_failures"
                " WHERE key = ANY(%s) AND (last_failure >= %s OR blocked_until > %s)",
                (since, list(keys), since, since)).fetchall()
        return {r[0]: (int(r[1]), float(r[2])) for r in rows}

    def login_failure_add(self, keys: Sequence[str], now: float, since: float, block_after: int,
                          block_until: float) -> dict[str, tuple[int, float]]:
        out: dict[str, tuple[int, float]] = {}
        with self._write(settings=False) as c:
            for key in sorted(set(keys)):  # one order for every caller: no deadlock
                c.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOGIN_LOCK_CLASS, key))
            for key in keys:
                row = c.execute("SELECT failures, last_failure, blocked_until FROM login_failures WHERE key=%s",
                                (key,)).fetchone()
                failures = 1 if row is None or row[1] < since else int(row[0]) + 1
                blocked = 0.0 if row is None else float(row[2])
                if failures >= block_after and blocked <= now:
                    blocked = block_until
                c.execute("INSERT INTO login_failures (key, failures, last_failure, blocked_until)"
                          " VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET failures=excluded.failures,"
                          " last_failure=excluded.last_failure, blocked_until=excluded.blocked_until",
                          (key, failures, now, blocked))
                out[key] = (failures, blocked)
            c.execute("DELETE FROM login_failures WHERE last_failure < %s AND blocked_until < %s", (since, now))
        return out

    def login_failures_list(self, since: float) -> list[tuple[str, int, float, float]]:
        with self._read() as c:
            rows = c.execute("SELECT key, failures, last_failure, blocked_until FROM login_failures"
                             " WHERE last_failure >= %s OR blocked_until > %s ORDER BY key", (since, since)).fetchall()
        return [(r[0], int(r[1]), float(r[2]), float(r[3])) for r in rows]

    def login_failures_clear(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with self._write(settings=False) as c:
            return c.execute("DELETE FROM login_failures WHERE key = ANY(%s)", (list(keys),)).rowcount

    def login_known_get(self, account: str, client: str) -> float | None:
        with self._read() as c:
            row = c.execute("SELECT seen FROM login_known WHERE account=%s AND client=%s", (account, client)).fetchone()
        return None if row is None else float(row[0])

    def login_known_set(self, account: str, client: str, now: float, forget_before: float) -> None:
        with self._write(settings=False) as c:
            c.execute("INSERT INTO login_known (account, client, seen) VALUES (%s, %s, %s)"
                      " ON CONFLICT (account, client) DO UPDATE SET seen=excluded.seen", (account, client, now))
            c.execute("DELETE FROM login_known WHERE account=%s AND seen < %s", (account, forget_before))

    # -- an account's removal ---------------------------------------------------------

    def account_forget(self, domain: str, account: str) -> int:
        address = f"{account}@{domain}"
        n = 0
        with self._write() as c:  # renews the change token: the cached active script goes
            for table in ("subscriptions", "mailbox_aliases", "sieve_scripts", "sieve_vacation", "urlauth_keys"):
                n += c.execute(f"DELETE FROM {table} WHERE domain=%s AND account=%s", (domain, account)).rowcount
            n += c.execute("DELETE FROM acl WHERE identifier=%s", (address,)).rowcount
            n += c.execute("DELETE FROM seen WHERE reader=%s", (address,)).rowcount
            n += c.execute("DELETE FROM login_known WHERE account=%s", (address,)).rowcount
            # The login throttle's count of failures for the name (and its block): a
            # new owner of the name is not held back by guesses at the old one's password.
            n += c.execute("DELETE FROM login_failures WHERE key=%s", (f"account:{address}",)).rowcount
        return n

    # -- cluster: worker heartbeats ----------------------------------------------------

    def node_heartbeat(self, worker: str, node: str, addresses: Sequence[str], load: float, now: float) -> None:
        with self._write(settings=False) as c:
            c.execute("INSERT INTO nodes (worker, node, addresses, started, seen, load) VALUES (%s, %s, %s, %s, %s, %s)"
                      " ON CONFLICT (worker) DO UPDATE SET addresses=excluded.addresses, seen=excluded.seen,"
                      " load=excluded.load", (worker, node, json.dumps(list(addresses)), now, now, load))

    def node_forget(self, worker: str) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM nodes WHERE worker=%s", (worker,))

    def node_list(self, now: float) -> list[NodeRecord]:
        with self._read() as c:
            rows = c.execute(
                "SELECT n.worker, n.node, n.addresses, n.started, n.seen, n.load, COUNT(q.msg_id) FROM nodes n"
                " LEFT JOIN queue_recipients q ON q.lease_owner=n.worker AND q.status='queued' AND q.lease_until>%s"
                " GROUP BY n.worker ORDER BY n.node, n.worker", (now,)).fetchall()
        return [NodeRecord(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], int(r[6])) for r in rows]

    # -- DKIM signing keys ----------------------------------------------------------

    def dkim_key_add(self, key: DKIMKeyRecord) -> None:
        with self._write() as c:
            done = c.execute(
                "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, created, activated)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (key.domain, key.selector, key.algorithm, key.private_key, key.public_key, key.created,
                 key.activated)).rowcount
            if done == 0:
                raise Conflict(f"{key.domain} already has a DKIM key with selector {key.selector}")

    def dkim_keys(self, domain: str | None = None) -> list[DKIMKeyRecord]:
        def load() -> list[DKIMKeyRecord]:
            sql = ("SELECT domain, selector, algorithm, private_key, public_key, created, activated FROM dkim_keys"
                   + (" WHERE domain=%s" if domain is not None else "") + " ORDER BY domain, created, selector")
            with self._read() as c:
                rows = c.execute(sql, (domain,) if domain is not None else ()).fetchall()  # type: ignore[arg-type]
            return [DKIMKeyRecord(r[0], r[1], r[2], r[3], r[4], float(r[5]), float(r[6])) for r in rows]
        return list(self._cached(("dkim", domain or "*"), load))

    def dkim_key_activate(self, domain: str, selector: str, activated: float) -> None:
        with self._write() as c:
            if c.execute("UPDATE dkim_keys SET activated=%s WHERE domain=%s AND selector=%s",
                         (activated, domain, selector)).rowcount == 0:
                raise NotFound(f"{domain} has no DKIM key with selector {selector}")

    def dkim_key_remove(self, domain: str, selector: str) -> None:
        with self._write() as c:
            if c.execute("DELETE FROM dkim_keys WHERE domain=%s AND selector=%s", (domain, selector)).rowcount == 0:
                raise NotFound(f"{domain} has no DKIM key with selector {selector}")


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
