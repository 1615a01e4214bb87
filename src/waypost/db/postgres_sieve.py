"""PostgreSQL: quota usage (read; the triggers of ``postgres._V3`` keep it), Sieve
scripts and the vacation replies sent.  The same methods as ``sqlite_sieve.py``."""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg

from .base import Conflict, NotFound


class _QuotaSieve:
    """The quota and Sieve half of ``PostgresDatabase`` (mixed in)."""

    _read: Any
    _write: Any
    _cached: Any

    # -- quota usage ------------------------------------------------------------------

    def quota_usage(self, domain: str, account: str) -> tuple[int, int]:
        with self._read() as c:
            row = c.execute("SELECT storage, messages FROM quota_usage WHERE domain=%s AND account=%s",
                            (domain, account)).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def quota_usage_list(self, domain: str | None = None) -> list[tuple[str, str, int, int]]:
        sql = "SELECT domain, account, storage, messages FROM quota_usage"
        args: tuple[str, ...] = ()
        if domain is not None:
            sql += " WHERE domain=%s"
            args = (domain,)
        with self._read() as c:
            rows = c.execute(sql + " ORDER BY domain, account", args).fetchall()
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def quota_recount(self, domain: str, account: str) -> tuple[int, int]:
        with self._write(settings=False) as c:
            # The account's usage row locked first, so a delivery's trigger waits for
            # the recount instead of adding to a figure about to be replaced.
            c.execute("INSERT INTO quota_usage (domain, account) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                      (domain, account))
            c.execute("SELECT 1 FROM quota_usage WHERE domain=%s AND account=%s FOR UPDATE", (domain, account))
            row = c.execute("SELECT COALESCE(SUM(GREATEST(m.size, 0)), 0), COUNT(m.uid) FROM messages m"
                            " JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.domain=%s AND b.account=%s",
                            (domain, account)).fetchone()
            c.execute("UPDATE quota_usage SET storage=%s, messages=%s WHERE domain=%s AND account=%s",
                      (int(row[0]), int(row[1]), domain, account))
        return int(row[0]), int(row[1])

    # -- URLAUTH mailbox access keys (RFC 4467 §3) -------------------------------------

    def urlauth_key(self, mailbox_id: int, domain: str, account: str, create: bool = False) -> bytes | None:
        with self._read() as c:
            row = c.execute("SELECT key FROM urlauth_keys WHERE mailbox_id=%s AND domain=%s AND account=%s",
                            (mailbox_id, domain, account)).fetchone()
        if row is not None or not create:
            return None if row is None else bytes(row[0])
        with self._write(settings=False) as c:
            try:
                with c.transaction():
                    c.execute("INSERT INTO urlauth_keys (mailbox_id, domain, account, key) VALUES (%s, %s, %s, %s)"
                              " ON CONFLICT DO NOTHING", (mailbox_id, domain, account, secrets.token_bytes(32)))
            except psycopg.errors.ForeignKeyViolation:  # the mailbox is gone
                raise NotFound(f"no mailbox {mailbox_id}") from None
            row = c.execute("SELECT key FROM urlauth_keys WHERE mailbox_id=%s AND domain=%s AND account=%s",
                            (mailbox_id, domain, account)).fetchone()
        return bytes(row[0])

    def urlauth_reset(self, domain: str, account: str, mailbox_id: int | None = None) -> None:
        with self._write(settings=False) as c:
            if mailbox_id is None:
                c.execute("DELETE FROM urlauth_keys WHERE domain=%s AND account=%s", (domain, account))
            else:
                c.execute("DELETE FROM urlauth_keys WHERE mailbox_id=%s AND domain=%s AND account=%s",
                          (mailbox_id, domain, account))

    # -- Sieve scripts ----------------------------------------------------------------

    def sieve_list(self, domain: str, account: str) -> list[tuple[str, bool]]:
        with self._read() as c:
            rows = c.execute("SELECT name, active FROM sieve_scripts WHERE domain=%s AND account=%s ORDER BY name",
                             (domain, account)).fetchall()
        return [(r[0], bool(r[1])) for r in rows]

    def sieve_get(self, domain: str, account: str, name: str) -> str | None:
        with self._read() as c:
            row = c.execute("SELECT script FROM sieve_scripts WHERE domain=%s AND account=%s AND name=%s",
                            (domain, account, name)).fetchone()
        return None if row is None else str(row[0])

    def sieve_active(self, domain: str, account: str) -> tuple[str, str] | None:
        # Read at every local delivery: cached like the directory (the script writes
        # above and an account's removal renew the change token of every process, on
        # every node through NOTIFY; see the module docstring of postgres.py).
        def load() -> tuple[str, str] | None:
            with self._read() as c:
                row = c.execute("SELECT name, script FROM sieve_scripts WHERE domain=%s AND account=%s AND active",
                                (domain, account)).fetchone()
            return None if row is None else (str(row[0]), str(row[1]))
        value: tuple[str, str] | None = self._cached(("sieve", domain, account), load)
        return value

    def sieve_put(self, domain: str, account: str, name: str, script: str) -> None:
        with self._write() as c:
            c.execute("INSERT INTO sieve_scripts (domain, account, name, script, updated) VALUES (%s, %s, %s, %s, %s)"
                      " ON CONFLICT (domain, account, name) DO UPDATE SET script=EXCLUDED.script,"
                      " updated=EXCLUDED.updated", (domain, account, name, script, time.time()))

    def sieve_delete(self, domain: str, account: str, name: str) -> None:
        with self._write() as c:
            row = c.execute("SELECT active FROM sieve_scripts WHERE domain=%s AND account=%s AND name=%s FOR UPDATE",
                            (domain, account, name)).fetchone()
            if row is None:
                raise NotFound(f"no script {name!r}")
            if row[0]:
                raise Conflict(f"script {name!r} is active")
            c.execute("DELETE FROM sieve_scripts WHERE domain=%s AND account=%s AND name=%s", (domain, account, name))

    def sieve_rename(self, domain: str, account: str, old: str, new: str) -> None:
        try:
            with self._write() as c:
                n = c.execute("UPDATE sieve_scripts SET name=%s WHERE domain=%s AND account=%s AND name=%s",
                              (new, domain, account, old)).rowcount
                if n == 0:
                    raise NotFound(f"no script {old!r}")
        except psycopg.errors.UniqueViolation:
            raise Conflict(f"script {new!r} exists") from None

    def sieve_activate(self, domain: str, account: str, name: str | None) -> None:
        with self._write() as c:
            if name is not None and c.execute(
                    "SELECT 1 FROM sieve_scripts WHERE domain=%s AND account=%s AND name=%s",
                    (domain, account, name)).fetchone() is None:
                raise NotFound(f"no script {name!r}")
            c.execute("UPDATE sieve_scripts SET active=(name IS NOT DISTINCT FROM %s) WHERE domain=%s AND account=%s",
                      (name, domain, account))

    def sieve_usage(self, domain: str, account: str) -> tuple[int, int]:
        with self._read() as c:
            row = c.execute("SELECT COUNT(*), COALESCE(SUM(OCTET_LENGTH(script)), 0) FROM sieve_scripts"
                            " WHERE domain=%s AND account=%s", (domain, account)).fetchone()
        return int(row[0]), int(row[1])

    # -- vacation (RFC 5230 §4.2) -----------------------------------------------------

    def vacation_claim(self, domain: str, account: str, handle: str, sender: str, now: float, until: float) -> bool:
        """One reply per sender and handle per period, also between machines: the
        insert-or-update takes the row's lock, and only a period that has ended is
        renewed."""
        with self._write(settings=False) as c:
            row = c.execute(
                "INSERT INTO sieve_vacation (domain, account, handle, sender, until) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (domain, account, handle, sender) DO UPDATE SET until=EXCLUDED.until"
                " WHERE sieve_vacation.until <= %s RETURNING 1",
                (domain, account, handle, sender, until, now)).fetchone()
            if row is None:
                return False
            c.execute("DELETE FROM sieve_vacation WHERE until <= %s", (now,))
        return True
