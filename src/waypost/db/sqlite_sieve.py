"""SQLite: quota usage (read; the triggers of ``sqlite.QUOTA_SCHEMA`` keep it), Sieve
scripts and the vacation replies sent."""

from __future__ import annotations

import secrets
import sqlite3
import time
from typing import Any

from .base import Conflict, NotFound


class _QuotaSieve:
    """The quota and Sieve half of ``SQLiteDatabase`` (mixed in)."""

    _conn: Any
    _write: Any
    _cached: Any

    # -- quota usage ------------------------------------------------------------------

    def quota_usage(self, domain: str, account: str) -> tuple[int, int]:
        row = self._conn().execute("SELECT storage, messages FROM quota_usage WHERE domain=? AND account=?",
                                   (domain, account)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def quota_usage_list(self, domain: str | None = None) -> list[tuple[str, str, int, int]]:
        sql = "SELECT domain, account, storage, messages FROM quota_usage"
        args: tuple[str, ...] = ()
        if domain is not None:
            sql += " WHERE domain=?"
            args = (domain,)
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in self._conn().execute(sql + " ORDER BY domain, account", args)]

    def quota_recount(self, domain: str, account: str) -> tuple[int, int]:
        with self._write(settings=False) as c:
            row = c.execute("SELECT COALESCE(SUM(MAX(m.size, 0)), 0), COUNT(m.uid) FROM messages m"
                            " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.domain=? AND b.account=?",
                            (domain, account)).fetchone()
            c.execute("INSERT INTO quota_usage (domain, account, storage, messages) VALUES (?, ?, ?, ?)"
                      " ON CONFLICT (domain, account) DO UPDATE SET storage=excluded.storage,"
                      " messages=excluded.messages", (domain, account, int(row[0]), int(row[1])))
        return int(row[0]), int(row[1])

    # -- URLAUTH mailbox access keys (RFC 4467 §3) -------------------------------------

    def urlauth_key(self, mailbox_id: int, domain: str, account: str, create: bool = False) -> bytes | None:
        row = self._conn().execute("SELECT key FROM urlauth_keys WHERE mailbox_id=? AND domain=? AND account=?",
                                   (mailbox_id, domain, account)).fetchone()
        if row is not None or not create:
            return None if row is None else bytes(row[0])
        with self._write(settings=False) as c:
            try:
                c.execute("INSERT INTO urlauth_keys (mailbox_id, domain, account, key) VALUES (?, ?, ?, ?)"
                          " ON CONFLICT DO NOTHING", (mailbox_id, domain, account, secrets.token_bytes(32)))
            except sqlite3.IntegrityError:  # the mailbox is gone
                raise NotFound(f"no mailbox {mailbox_id}") from None
            row = c.execute("SELECT key FROM urlauth_keys WHERE mailbox_id=? AND domain=? AND account=?",
                            (mailbox_id, domain, account)).fetchone()
        return bytes(row[0])

    def urlauth_reset(self, domain: str, account: str, mailbox_id: int | None = None) -> None:
        with self._write(settings=False) as c:
            if mailbox_id is None:
                c.execute("DELETE FROM urlauth_keys WHERE domain=? AND account=?", (domain, account))
            else:
                c.execute("DELETE FROM urlauth_keys WHERE mailbox_id=? AND domain=? AND account=?",
                          (mailbox_id, domain, account))

    # -- Sieve scripts ----------------------------------------------------------------

    def sieve_list(self, domain: str, account: str) -> list[tuple[str, bool]]:
        rows = self._conn().execute("SELECT name, active FROM sieve_scripts WHERE domain=? AND account=? ORDER BY name",
                                    (domain, account)).fetchall()
        return [(r[0], bool(r[1])) for r in rows]

    def sieve_get(self, domain: str, account: str, name: str) -> str | None:
        row = self._conn().execute("SELECT script FROM sieve_scripts WHERE domain=? AND account=? AND name=?",
                                   (domain, account, name)).fetchone()
        return None if row is None else str(row[0])

    def sieve_active(self, domain: str, account: str) -> tuple[str, str] | None:
        # Read at every local delivery: cached like the directory (the script writes
        # above and an account's removal renew the change token every process maps).
        def load() -> tuple[str, str] | None:
            row = self._conn().execute("SELECT name, script FROM sieve_scripts WHERE domain=? AND account=? AND active=1",
                                       (domain, account)).fetchone()
            return None if row is None else (str(row[0]), str(row[1]))
        value: tuple[str, str] | None = self._cached(("sieve", domain, account), load)
        return value

    def sieve_put(self, domain: str, account: str, name: str, script: str) -> None:
        with self._write() as c:
            c.execute("INSERT INTO sieve_scripts (domain, account, name, script, updated) VALUES (?, ?, ?, ?, ?)"
                      " ON CONFLICT (domain, account, name) DO UPDATE SET script=excluded.script,"
                      " updated=excluded.updated", (domain, account, name, script, time.time()))

    def sieve_delete(self, domain: str, account: str, name: str) -> None:
        with self._write() as c:
            row = c.execute("SELECT active FROM sieve_scripts WHERE domain=? AND account=? AND name=?",
                            (domain, account, name)).fetchone()
            if row is None:
                raise NotFound(f"no script {name!r}")
            if row[0]:
                raise Conflict(f"script {name!r} is active")
            c.execute("DELETE FROM sieve_scripts WHERE domain=? AND account=? AND name=?", (domain, account, name))

    def sieve_rename(self, domain: str, account: str, old: str, new: str) -> None:
        with self._write() as c:
            try:
                n = c.execute("UPDATE sieve_scripts SET name=? WHERE domain=? AND account=? AND name=?",
                              (new, domain, account, old)).rowcount
            except sqlite3.IntegrityError:
                raise Conflict(f"script {new!r} exists") from None
            if n == 0:
                raise NotFound(f"no script {old!r}")

    def sieve_activate(self, domain: str, account: str, name: str | None) -> None:
        with self._write() as c:
            if name is not None and c.execute(
                    "SELECT 1 FROM sieve_scripts WHERE domain=? AND account=? AND name=?",
                    (domain, account, name)).fetchone() is None:
                raise NotFound(f"no script {name!r}")
            c.execute("UPDATE sieve_scripts SET active=(name IS ?) WHERE domain=? AND account=?",
                      (name, domain, account))

    def sieve_usage(self, domain: str, account: str) -> tuple[int, int]:
        row = self._conn().execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(script AS BLOB))), 0) FROM sieve_scripts"
                                   " WHERE domain=? AND account=?", (domain, account)).fetchone()
        return int(row[0]), int(row[1])

    # -- vacation (RFC 5230 §4.2) -----------------------------------------------------

    def vacation_claim(self, domain: str, account: str, handle: str, sender: str, now: float, until: float) -> bool:
        with self._write(settings=False) as c:
            row = c.execute("SELECT until FROM sieve_vacation WHERE domain=? AND account=? AND handle=? AND sender=?",
                            (domain, account, handle, sender)).fetchone()
            if row is not None and float(row[0]) > now:
                return False
            c.execute("INSERT INTO sieve_vacation (domain, account, handle, sender, until) VALUES (?, ?, ?, ?, ?)"
                      " ON CONFLICT (domain, account, handle, sender) DO UPDATE SET until=excluded.until",
                      (domain, account, handle, sender, until))
            c.execute("DELETE FROM sieve_vacation WHERE until <= ?", (now,))
        return True
