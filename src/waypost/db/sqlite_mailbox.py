"""SQLite: the mailbox index (IMAP UIDs, flags, mod-sequences, subscriptions).

Each mailbox row carries its counters (``uidnext``, ``highestmodseq``); a change takes
the write lock, bumps the counter and stamps the rows it touched with the new
mod-sequence, so "what changed since N" is one indexed range read.  Expunged UIDs are
kept with their mod-sequence for the sessions that still show them.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterator, Sequence

from .base import Conflict, MailboxRecord, MessageRecord, NotFound, SortKeys

_MAILBOX_COLS = ("id, domain, account, name, folder, uidvalidity, uidnext, highestmodseq, recent_uid, special_use,"
                 # The counts the triggers keep (migration 6): one row read, nothing counted.
                 " COALESCE((SELECT messages FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0),"
                 " COALESCE((SELECT unseen FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0),"
                 " COALESCE((SELECT size FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0),"
                 " COALESCE((SELECT unsized FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0)")
_MESSAGE_COLS = "uid, name, subdir, flags, modseq, size, internaldate, savedate"


def _mailbox(row: tuple[Any, ...]) -> MailboxRecord:
    return MailboxRecord(*row)


def _message(row: tuple[Any, ...]) -> MessageRecord:
    uid, name, subdir, flags, modseq, size, internaldate, savedate = row
    if flags:
        split = _SPLIT_FLAGS.get(flags)
        if split is None:
            split = tuple(flags.split())
            # Few distinct flag sets: the same tuple serves all (bounded in entries,
            # and in size: a long set of keywords is split each time).
            if len(_SPLIT_FLAGS) < 4096 and len(flags) <= 256:
                _SPLIT_FLAGS[flags] = split
        return MessageRecord(uid, name, subdir, split, modseq, size, internaldate, savedate)
    return MessageRecord(uid, name, subdir, (), modseq, size, internaldate, savedate)


_INSERT_MESSAGE = ("INSERT OR IGNORE INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate,"
                   " savedate, sort_date, sort_from, sort_subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
#: ``message_add`` of at least this many messages counts them once (``_bulk_add``).
_BULK_ADD = 1000
#: A message of ``messages m`` without \Seen (as the count triggers test it, sqlite.py).
_UNSEEN = "(instr(' ' || m.flags || ' ', ' \\Seen ') = 0)"
_SPLIT_FLAGS: dict[str, tuple[str, ...]] = {}
_NO_KEYS: tuple[None, None, None] = (None, None, None)


def _sort_columns(keys: SortKeys | None) -> tuple[float, str, str] | tuple[None, None, None]:
    return _NO_KEYS if keys is None else (keys.date, keys.sender, keys.subject)


class _MailboxIndex:
    """The mailbox index half of ``SQLiteDatabase`` (mixed in below)."""

    _conn: Any
    _write: Any
    _cached: Any

    def mailbox_list(self, domain: str, account: str) -> list[MailboxRecord]:
        rows = self._conn().execute(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE domain=? AND account=? ORDER BY name",
            (domain, account)).fetchall()
        return [_mailbox(r) for r in rows]

    def mailbox_get(self, domain: str, account: str, name: str) -> MailboxRecord | None:
        row = self._conn().execute(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE domain=? AND account=? AND name=?",
            (domain, account, name)).fetchone()
        return _mailbox(row) if row else None

    def mailbox_by_id(self, mailbox_id: int) -> MailboxRecord | None:
        row = self._conn().execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        return _mailbox(row) if row else None

    def mailbox_create(self, domain: str, account: str, name: str, folder: str, uidvalidity: int,
                       special_use: str = "") -> MailboxRecord:
        with self._write(settings=False) as c:
            # RFC 3501 §2.3.1.1: a mailbox created anew under an old name needs a
            # greater UIDVALIDITY, even within the same second: never hand out a value
            # at or below the last one given.
            row = c.execute("SELECT value FROM meta WHERE key='uidvalidity'").fetchone()
            last = int(row[0]) if row else 0
            uidvalidity = max(uidvalidity, last + 1)
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('uidvalidity', ?)", (str(uidvalidity),))
            # A mailbox id is never given twice, not even after the mailbox with the
            # highest id is deleted (SQLite would reuse its rowid): every process keys
            # its caches and bus topics by id (STYLE.md 13).
            row = c.execute("SELECT MAX(CAST(value AS INTEGER)) FROM meta WHERE key='mailbox_id'"
                            " UNION ALL SELECT MAX(id) FROM mailboxes").fetchall()
            mailbox_id = max(int(r[0] or 0) for r in row) + 1
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('mailbox_id', ?)", (str(mailbox_id),))
            try:
                c.execute(
                    "INSERT INTO mailboxes (id, domain, account, name, folder, uidvalidity, special_use)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (mailbox_id, domain, account, name, folder, uidvalidity, special_use))
            except sqlite3.IntegrityError:
                raise Conflict(f"mailbox {name!r} exists") from None
            row = c.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        return _mailbox(row)

    def mailbox_delete(self, mailbox_id: int) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM mailboxes WHERE id=?", (mailbox_id,))

    def mailbox_rename(self, mailbox_id: int, name: str, folder: str) -> MailboxRecord:
        with self._write(settings=False) as c:
            try:
                c.execute("UPDATE mailboxes SET name=?, folder=? WHERE id=?", (name, folder, mailbox_id))
            except sqlite3.IntegrityError:
                raise Conflict(f"mailbox {name!r} exists") from None
            row = c.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        if row is None:
            raise NotFound(f"mailbox {mailbox_id}")
        return _mailbox(row)

    def mailbox_set_special_use(self, mailbox_id: int, use: str) -> None:
        with self._write(settings=False) as c:
            c.execute("UPDATE mailboxes SET special_use=? WHERE id=?", (use, mailbox_id))

    def mailbox_state(self, mailbox_id: int) -> tuple[int, int, int] | None:
        row = self._conn().execute(
            "SELECT uidnext, highestmodseq, COALESCE(c.messages, 0) FROM mailboxes"
            " LEFT JOIN mailbox_counts c ON c.mailbox_id = mailboxes.id WHERE id=?", (mailbox_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def message_count_from(self, mailbox_id: int, uid: int) -> int:
        row = self._conn().execute("SELECT COUNT(*) FROM messages WHERE mailbox_id=? AND uid>=?",
                                   (mailbox_id, uid)).fetchone()
        return int(row[0])

    def message_add(self, mailbox_id: int,
                    items: Sequence[tuple[str, str, tuple[str, ...], int, float]],
                    keys: Sequence[SortKeys | None] | None = None) -> list[MessageRecord]:
        out: list[MessageRecord] = []
        sort = [_sort_columns(k) for k in keys] if keys is not None else [_NO_KEYS] * len(items)
        with self._write(settings=False) as c:
            row = c.execute("SELECT uidnext, highestmodseq FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"mailbox {mailbox_id}")
            uid, modseq = row
            modseq += 1
            now = time.time()  # the save date (RFC 8514) of all of them
            # The common case in one statement: none of the names is indexed yet.  (Its
            # rowcount counts the rows it inserted; ``total_changes`` would count what
            # the quota and count triggers change too, and never equal ``len(items)``.)
            rows = [(mailbox_id, uid + i, name, subdir, " ".join(flags), modseq, size, internaldate, now, *sort[i])
                    for i, (name, subdir, flags, size, internaldate) in enumerate(items)]
            if len(items) >= _BULK_ADD and self._bulk_add(c, mailbox_id, uid, rows):
                cur = None
            else:
                cur = c.executemany(_INSERT_MESSAGE, rows)
            if cur is None or cur.rowcount == len(items):
                out = [MessageRecord(uid + i, name, subdir, tuple(flags), modseq, size, internaldate, now)
                       for i, (name, subdir, flags, size, internaldate) in enumerate(items)]
                c.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=? WHERE id=?",
                          (uid + len(items), modseq, mailbox_id))
                return out
            # Some were indexed already: undo, and go one by one so UIDs stay dense.
            c.execute("DELETE FROM messages WHERE mailbox_id=? AND uid>=?", (mailbox_id, uid))
            for i, (name, subdir, flags, size, internaldate) in enumerate(items):
                cur = c.execute(
                    "INSERT OR IGNORE INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate,"
                    " savedate, sort_date, sort_from, sort_subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (mailbox_id, uid, name, subdir, " ".join(flags), modseq, size, internaldate, now, *sort[i]))
                if cur.rowcount == 0:  # indexed already (UNIQUE (mailbox_id, name))
                    old = c.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=? AND name=?",
                                    (mailbox_id, name)).fetchone()
                    out.append(_message(old))
                    continue
                out.append(MessageRecord(uid, name, subdir, tuple(flags), modseq, size, internaldate, now))
                uid += 1
            c.execute("UPDATE mailboxes SET uidnext=?, highestmodseq=? WHERE id=?", (uid, modseq, mailbox_id))
        return out

    def _bulk_add(self, c: sqlite3.Connection, mailbox_id: int, first: int, rows: list[tuple[Any, ...]]) -> bool:
        """Insert ``rows`` (UIDs from ``first``) without their per-row count and quota
        triggers, then count them once, as those triggers would have, in the same
        transaction: the first index of a 100,000-message Maildir spent two thirds of
        its insert in the triggers.  The triggers are dropped and made again from
        their own text inside a savepoint (SQLite's DDL is transactional: no other
        connection ever sees the table without them).  False, with nothing changed,
        when some name was indexed already or other insert triggers exist."""
        triggers = c.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='messages'"
                             " AND sql LIKE '%AFTER INSERT ON messages%'").fetchall()
        if sorted(name for name, _ in triggers) != ["counts_add", "quota_add"]:
            return False
        c.execute("SAVEPOINT bulk_add")
        try:
            for name, _ in triggers:
                c.execute(f"DROP TRIGGER {name}")
            if c.executemany(_INSERT_MESSAGE, rows).rowcount != len(rows):
                c.execute("ROLLBACK TO bulk_add")  # the rows and the DROPs undone
                return False
            # What counts_add and quota_add add per row (sqlite.py), for all at once.
            c.execute(f"UPDATE mailbox_counts SET (messages, unseen, size, unsized) = (SELECT"
                      f" mailbox_counts.messages + COUNT(*), mailbox_counts.unseen + COALESCE(SUM({_UNSEEN}), 0),"
                      f" mailbox_counts.size + COALESCE(SUM(MAX(m.size, 0)), 0),"
                      f" mailbox_counts.unsized + COALESCE(SUM(m.size < 0), 0)"
                      f" FROM messages m WHERE m.mailbox_id = ? AND m.uid >= ?) WHERE mailbox_id = ?",
                      (mailbox_id, first, mailbox_id))
            c.execute("INSERT INTO quota_usage (domain, account, storage, messages)"
                      " SELECT b.domain, b.account, COALESCE(SUM(MAX(m.size, 0)), 0), COUNT(*)"
                      " FROM mailboxes b JOIN messages m ON m.mailbox_id = b.id WHERE b.id = ? AND m.uid >= ?"
                      " GROUP BY b.domain, b.account"
                      " ON CONFLICT (domain, account) DO UPDATE SET storage = storage + excluded.storage,"
                      " messages = messages + excluded.messages", (mailbox_id, first))
            for _, sql in triggers:
                c.execute(sql)
        except BaseException:
            c.execute("ROLLBACK TO bulk_add")
            c.execute("RELEASE bulk_add")
            raise
        c.execute("RELEASE bulk_add")
        return True

    def message_sort_keys_get(self, mailbox_id: int, uids: Sequence[int] | None = None) -> dict[int, SortKeys]:
        conn = self._conn()
        if uids is None:
            rows = conn.execute("SELECT uid, sort_date, sort_from, sort_subject FROM messages"
                                " WHERE mailbox_id=? AND sort_date IS NOT NULL", (mailbox_id,)).fetchall()
        else:
            rows = [r for chunk in _chunks(uids, 500) for r in conn.execute(
                "SELECT uid, sort_date, sort_from, sort_subject FROM messages WHERE mailbox_id=?"
                f" AND sort_date IS NOT NULL AND uid IN ({','.join('?' * len(chunk))})", (mailbox_id, *chunk))]
        return {uid: SortKeys(date, sender, subject) for uid, date, sender, subject in rows}

    def message_sort_keys_set(self, mailbox_id: int, values: Sequence[tuple[int, SortKeys]],
                              uidvalidity: int) -> None:
        if not values:
            return
        with self._write(settings=False) as c:
            row = c.execute("SELECT uidvalidity FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if row is None or row[0] != uidvalidity:
                return
            c.executemany("UPDATE messages SET sort_date=?, sort_from=?, sort_subject=? WHERE mailbox_id=? AND uid=?",
                          [(k.date, k.sender, k.subject, mailbox_id, uid) for uid, k in values])

    def message_set_sizes(self, mailbox_id: int, sizes: Sequence[tuple[int, int]]) -> None:
        if not sizes:
            return
        with self._write(settings=False) as c:
            c.executemany("UPDATE messages SET size=? WHERE mailbox_id=? AND uid=?",
                          [(size, mailbox_id, uid) for uid, size in sizes])

    def message_list(self, mailbox_id: int) -> list[MessageRecord]:
        rows = self._conn().execute(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=? ORDER BY uid", (mailbox_id,)).fetchall()
        return [_message(r) for r in rows]

    def message_first_unseen(self, mailbox_id: int, below: int) -> int | None:
        row = self._conn().execute(
            "SELECT uid FROM messages WHERE mailbox_id=? AND uid<? AND instr(' ' || flags || ' ', ' \\Seen ') = 0"
            " ORDER BY uid LIMIT 1", (mailbox_id, below)).fetchone()
        return int(row[0]) if row else None

    def message_changes(self, mailbox_id: int, since: int) -> tuple[list[MessageRecord], list[int] | None]:
        conn = self._conn()
        changed = conn.execute(
            f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=? AND modseq>? ORDER BY uid",
            (mailbox_id, since)).fetchall()
        gone = conn.execute("SELECT uid FROM expunged WHERE mailbox_id=? AND modseq>? ORDER BY uid",
                            (mailbox_id, since)).fetchall()
        # Read after the records: a prune in between shows here, never the other way.
        floor = conn.execute("SELECT expunged_floor FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
        if floor is not None and since < floor[0]:
            return [_message(r) for r in changed], None
        return [_message(r) for r in changed], [r[0] for r in gone]

    def message_uids(self, mailbox_id: int) -> list[int]:
        return [r[0] for r in self._conn().execute(
            "SELECT uid FROM messages WHERE mailbox_id=? ORDER BY uid", (mailbox_id,))]

    def expunged_prune(self, before: float, headers_before: float) -> int:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM message_headers WHERE (mailbox_id, uid) IN"
                      " (SELECT mailbox_id, uid FROM expunged WHERE at < ?) AND uid NOT IN"
                      " (SELECT uid FROM messages m WHERE m.mailbox_id=message_headers.mailbox_id)",
                      (max(before, headers_before),))
            tops = c.execute("SELECT mailbox_id, MAX(modseq) FROM expunged WHERE at < ? GROUP BY mailbox_id"
                             " ORDER BY mailbox_id", (before,)).fetchall()
            for mailbox_id, top in tops:
                c.execute("UPDATE mailboxes SET expunged_floor=MAX(expunged_floor, ?) WHERE id=?", (top, mailbox_id))
            return int(c.execute("DELETE FROM expunged WHERE at < ?", (before,)).rowcount)

    def message_store(self, mailbox_id: int, uids: Sequence[int], flags: Sequence[str], mode: str,
                      unchanged_since: int | None = None) -> tuple[list[MessageRecord], list[int]]:
        out: list[MessageRecord] = []
        refused: list[int] = []
        wanted = list(dict.fromkeys(flags))
        with self._write(settings=False) as c:
            row = c.execute("SELECT highestmodseq FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"mailbox {mailbox_id}")
            modseq = row[0] + 1
            bumped = False
            for chunk in _chunks(uids, 500):
                rows = c.execute(
                    f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=? AND uid IN"
                    f" ({','.join('?' * len(chunk))}) ORDER BY uid", (mailbox_id, *chunk)).fetchall()
                for r in rows:
                    m = _message(r)
                    if unchanged_since is not None and m.modseq > unchanged_since:
                        refused.append(m.uid)
                        continue
                    if mode == "+":
                        new = m.flags + tuple(f for f in wanted if f not in m.flags)
                    elif mode == "-":
                        new = tuple(f for f in m.flags if f not in wanted)
                    else:
                        new = tuple(wanted)
                    if set(new) == set(m.flags) and unchanged_since is None:
                        out.append(m)
                        continue
                    # RFC 7162 §3.1.3: with UNCHANGEDSINCE, a STORE that changes nothing
                    # still gets a new mod-sequence ("the server MUST ... update").
                    c.execute("UPDATE messages SET flags=?, modseq=? WHERE mailbox_id=? AND uid=?",
                              (" ".join(new), modseq, mailbox_id, m.uid))
                    m.flags, m.modseq = new, modseq
                    bumped = True
                    out.append(m)
            if bumped:
                c.execute("UPDATE mailboxes SET highestmodseq=? WHERE id=?", (modseq, mailbox_id))
        return out, refused

    def message_expunge(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRecord]:
        out: list[MessageRecord] = []
        with self._write(settings=False) as c:
            row = c.execute("SELECT highestmodseq FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if row is None:
                return []
            modseq = row[0] + 1
            for chunk in _chunks(uids, 500):
                marks = ",".join("?" * len(chunk))
                rows = c.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=? AND uid IN ({marks})",
                                 (mailbox_id, *chunk)).fetchall()
                out.extend(_message(r) for r in rows)
                c.execute(f"DELETE FROM messages WHERE mailbox_id=? AND uid IN ({marks})", (mailbox_id, *chunk))
            if out:
                now = time.time()
                c.executemany("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq, at) VALUES (?, ?, ?, ?)",
                              [(mailbox_id, m.uid, modseq, now) for m in out])
                c.execute("UPDATE mailboxes SET highestmodseq=? WHERE id=?", (modseq, mailbox_id))
        out.sort(key=lambda m: m.uid)
        return out

    def message_claim_recent(self, mailbox_id: int, upto: int | None = None) -> int:
        with self._write(settings=False) as c:
            row = c.execute("SELECT recent_uid, uidnext FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"mailbox {mailbox_id}")
            bound = row[1] if upto is None else min(upto, row[1])
            if bound > row[0]:
                c.execute("UPDATE mailboxes SET recent_uid=? WHERE id=?", (bound, mailbox_id))
        return int(row[0])

    def message_cache_get(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        conn = self._conn()
        for chunk in _chunks(uids, 500):
            rows = conn.execute(
                f"SELECT uid, cache FROM messages WHERE mailbox_id=? AND cache IS NOT NULL AND uid IN"
                f" ({','.join('?' * len(chunk))})", (mailbox_id, *chunk)).fetchall()
            out.update((uid, json.loads(cache)) for uid, cache in rows)
        return out

    def message_cache_set(self, mailbox_id: int, values: Sequence[tuple[int, Any]]) -> None:
        if not values:
            return
        with self._write(settings=False) as c:
            c.executemany("UPDATE messages SET cache=? WHERE mailbox_id=? AND uid=?",
                          [(json.dumps(v, separators=(",", ":")), mailbox_id, uid) for uid, v in values])

    def subscription_list(self, domain: str, account: str) -> list[str]:
        rows = self._conn().execute("SELECT name FROM subscriptions WHERE domain=? AND account=? ORDER BY name",
                                    (domain, account)).fetchall()
        return [r[0] for r in rows]

    def subscription_set(self, domain: str, account: str, name: str, subscribed: bool) -> None:
        with self._write(settings=False) as c:
            if subscribed:
                c.execute("INSERT OR IGNORE INTO subscriptions (domain, account, name) VALUES (?, ?, ?)",
                          (domain, account, name))
            else:
                c.execute("DELETE FROM subscriptions WHERE domain=? AND account=? AND name=?",
                          (domain, account, name))


    # -- ACLs (RFC 4314), private \\Seen, mailbox aliases ------------------------------

    def acl_get(self, mailbox_id: int) -> dict[str, str]:
        rows = self._conn().execute("SELECT identifier, rights FROM acl WHERE mailbox_id=? ORDER BY identifier",
                                    (mailbox_id,)).fetchall()
        return dict(rows)

    def acl_set(self, mailbox_id: int, identifier: str, rights: str | None) -> None:
        with self._write(settings=False) as c:
            if rights:
                c.execute("INSERT OR REPLACE INTO acl (mailbox_id, identifier, rights) VALUES (?, ?, ?)",
                          (mailbox_id, identifier, rights))
            else:
                c.execute("DELETE FROM acl WHERE mailbox_id=? AND identifier=?", (mailbox_id, identifier))

    def acl_granted(self, identifiers: Sequence[str]) -> list[tuple[MailboxRecord, str, str]]:
        if not identifiers:
            return []
        marks = ",".join("?" * len(identifiers))
        rows = self._conn().execute(
            f"SELECT {_MAILBOX_COLS}, acl.identifier, acl.rights FROM acl JOIN mailboxes ON mailboxes.id = acl.mailbox_id"
            f" WHERE acl.identifier IN ({marks}) ORDER BY mailboxes.domain, mailboxes.account, mailboxes.name",
            tuple(identifiers)).fetchall()
        return [(_mailbox(r[:-2]), r[-2], r[-1]) for r in rows]

    def seen_get(self, mailbox_id: int, user: str) -> set[int]:
        rows = self._conn().execute("SELECT uid FROM seen WHERE mailbox_id=? AND user=?", (mailbox_id, user))
        return {r[0] for r in rows}

    def seen_set(self, mailbox_id: int, user: str, uids: Sequence[int], seen: bool) -> None:
        with self._write(settings=False) as c:
            if seen:
                c.executemany("INSERT OR IGNORE INTO seen (mailbox_id, user, uid) VALUES (?, ?, ?)",
                              [(mailbox_id, user, u) for u in uids])
            else:
                c.executemany("DELETE FROM seen WHERE mailbox_id=? AND user=? AND uid=?",
                              [(mailbox_id, user, u) for u in uids])

    def mailbox_alias_list(self, domain: str, account: str) -> dict[str, str]:
        # Read by every SELECT, STATUS and LIST that names a mailbox: cached like the
        # settings (a write renews the change token of every process).
        def load() -> dict[str, str]:
            return dict(self._conn().execute("SELECT name, target FROM mailbox_aliases WHERE domain=? AND account=?"
                                             " ORDER BY name", (domain, account)).fetchall())
        return dict(self._cached(("mailbox_aliases", domain, account), load))

    def mailbox_alias_set(self, domain: str, account: str, name: str, target: str | None) -> None:
        with self._write() as c:  # renews the change token: the cached lists go
            if target:
                c.execute("INSERT OR REPLACE INTO mailbox_aliases (domain, account, name, target) VALUES (?, ?, ?, ?)",
                          (domain, account, name, target))
            else:
                c.execute("DELETE FROM mailbox_aliases WHERE domain=? AND account=? AND name=?",
                          (domain, account, name))

    # -- header cache: each message's header block, for SEARCH and BODY[HEADER] ------

    def message_headers_get(self, mailbox_id: int, uids: Sequence[int] | None = None) -> dict[int, bytes]:
        conn = self._conn()
        if uids is None:
            return dict(conn.execute("SELECT uid, header FROM message_headers WHERE mailbox_id=?", (mailbox_id,)))
        out: dict[int, bytes] = {}
        for chunk in _chunks(uids, 500):
            out.update(conn.execute(
                f"SELECT uid, header FROM message_headers WHERE mailbox_id=? AND uid IN ({','.join('?' * len(chunk))})",
                (mailbox_id, *chunk)))
        return out

    def message_headers_set(self, mailbox_id: int, values: Sequence[tuple[int, bytes]],
                            uidvalidity: int | None = None) -> None:
        if not values:
            return
        with self._write(settings=False) as c:
            if uidvalidity is not None:
                # A mailbox deleted meanwhile may have left its id to a new one.
                row = c.execute("SELECT uidvalidity FROM mailboxes WHERE id=?", (mailbox_id,)).fetchone()
                if row is None or row[0] != uidvalidity:
                    return
            # Only for messages still indexed: an expunge that won the race leaves no row.
            if len(values) > 100:
                indexed = {r[0] for r in c.execute("SELECT uid FROM messages WHERE mailbox_id=?", (mailbox_id,))}
            else:
                indexed = {r[0] for chunk in _chunks([uid for uid, _ in values], 500) for r in c.execute(
                    f"SELECT uid FROM messages WHERE mailbox_id=? AND uid IN ({','.join('?' * len(chunk))})",
                    (mailbox_id, *chunk))}
            c.executemany("INSERT OR IGNORE INTO message_headers (mailbox_id, uid, header) VALUES (?, ?, ?)",
                          [(mailbox_id, uid, header) for uid, header in values if uid in indexed])

    def message_headers_delete(self, mailbox_id: int, uids: Sequence[int]) -> None:
        with self._write(settings=False) as c:
            for chunk in _chunks(uids, 500):
                c.execute(f"DELETE FROM message_headers WHERE mailbox_id=? AND uid IN ({','.join('?' * len(chunk))})",
                          (mailbox_id, *chunk))

    def message_headers_prune(self, mailbox_id: int) -> int:
        with self._write(settings=False) as c:
            return int(c.execute(
                "DELETE FROM message_headers WHERE mailbox_id=? AND uid NOT IN"
                " (SELECT uid FROM messages WHERE mailbox_id=?) AND uid NOT IN"
                " (SELECT uid FROM expunged WHERE mailbox_id=?)", (mailbox_id, mailbox_id, mailbox_id)).rowcount)

    def message_headers_missing(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        conn = self._conn()
        have: set[int] = set()
        for chunk in _chunks(uids, 500):
            have.update(r[0] for r in conn.execute(
                f"SELECT uid FROM message_headers WHERE mailbox_id=? AND uid IN ({','.join('?' * len(chunk))})",
                (mailbox_id, *chunk)))
        return [u for u in uids if u not in have]


def _chunks(items: Sequence[int], n: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
