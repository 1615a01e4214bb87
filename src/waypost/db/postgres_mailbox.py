"""PostgreSQL: the mailbox index (IMAP UIDs, flags, mod-sequences, subscriptions, ACLs).

As in ``sqlite_mailbox.py``, each mailbox row carries its counters (``uidnext``,
``highestmodseq``).  A change locks that row (``FOR UPDATE``) before it reads them, so
two workers or two machines adding to one mailbox get consecutive UIDs and mod-sequences
in commit order; changes to other mailboxes go on meanwhile.  Header-cache writes take
the row lock shared, so an expunge (which deletes their rows) is never overtaken.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Sequence

import psycopg

from .base import Conflict, MailboxRecord, MessageRecord, NotFound, SortKeys

_MAILBOX_COLS = ("id, domain, account, name, folder, uidvalidity, uidnext, highestmodseq, recent_uid, special_use,"
                 # The counts the triggers keep (migration 6): one row read, nothing counted.
                 " COALESCE((SELECT messages FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0),"
                 " COALESCE((SELECT unseen FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0),"
                 " COALESCE((SELECT size FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0),"
                 " COALESCE((SELECT unsized FROM mailbox_counts WHERE mailbox_id = mailboxes.id), 0)")
_MESSAGE_COLS = "uid, name, subdir, flags, modseq, size, internaldate, savedate"


def _floats(values: Iterable[float | None]) -> list[float | None]:
    """A float8[] parameter: the arrays of the mailbox index go in binary (``%b``;
    dumping 10,000 values as text cost 4-5 times as much), where one list may not mix
    ints and floats."""
    return [None if v is None else float(v) for v in values]


def _mailbox(row: Sequence[Any]) -> MailboxRecord:
    return MailboxRecord(*row)


def _message(row: Sequence[Any]) -> MessageRecord:
    uid, name, subdir, flags, modseq, size, internaldate, savedate = row
    return MessageRecord(uid, name, subdir, tuple(flags.split()) if flags else (), modseq, size, internaldate,
                         savedate)


class _MailboxIndex:
    """The mailbox index half of ``PostgresDatabase`` (mixed in)."""

    _read: Any
    _write: Any
    _cached: Any

    def mailbox_list(self, domain: str, account: str) -> list[MailboxRecord]:
        with self._read() as c:
            rows = c.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE domain=%s AND account=%s ORDER BY name",
                             (domain, account)).fetchall()
        return [_mailbox(r) for r in rows]

    def mailbox_get(self, domain: str, account: str, name: str) -> MailboxRecord | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE domain=%s AND account=%s AND name=%s",
                            (domain, account, name)).fetchone()
        return _mailbox(row) if row else None

    def mailbox_by_id(self, mailbox_id: int) -> MailboxRecord | None:
        with self._read() as c:
            row = c.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id=%s", (mailbox_id,)).fetchone()
        return _mailbox(row) if row else None

    def mailbox_create(self, domain: str, account: str, name: str, folder: str, uidvalidity: int,
                       special_use: str = "") -> MailboxRecord:
        with self._write(settings=False) as c:
            # RFC 3501 §2.3.1.1: never a UIDVALIDITY at or below the last one given (the
            # meta row is locked by the upsert until the commit).
            row = c.execute(
                "INSERT INTO meta (key, value) VALUES ('uidvalidity', %s) ON CONFLICT (key) DO UPDATE"
                " SET value=GREATEST(meta.value::bigint + 1, excluded.value::bigint)::text RETURNING value",
                (str(uidvalidity),)).fetchone()
            uidvalidity = int(row[0])
            # The id comes from an identity sequence, which never gives a number twice
            # (caches and bus topics are keyed by it: STYLE.md 13).
            try:
                with c.transaction():
                    row = c.execute(
                        "INSERT INTO mailboxes (domain, account, name, folder, uidvalidity, special_use)"
                        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_MAILBOX_COLS}",
                        (domain, account, name, folder, uidvalidity, special_use)).fetchone()
            except psycopg.errors.UniqueViolation:
                raise Conflict(f"mailbox {name!r} exists") from None
        return _mailbox(row)

    def mailbox_delete(self, mailbox_id: int) -> None:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM mailboxes WHERE id=%s", (mailbox_id,))

    def mailbox_rename(self, mailbox_id: int, name: str, folder: str) -> MailboxRecord:
        with self._write(settings=False) as c:
            try:
                with c.transaction():
                    row = c.execute(f"UPDATE mailboxes SET name=%s, folder=%s WHERE id=%s RETURNING {_MAILBOX_COLS}",
                                    (name, folder, mailbox_id)).fetchone()
            except psycopg.errors.UniqueViolation:
                raise Conflict(f"mailbox {name!r} exists") from None
        if row is None:
            raise NotFound(f"mailbox {mailbox_id}")
        return _mailbox(row)

    def mailbox_set_special_use(self, mailbox_id: int, use: str) -> None:
        with self._write(settings=False) as c:
            c.execute("UPDATE mailboxes SET special_use=%s WHERE id=%s", (use, mailbox_id))

    def mailbox_state(self, mailbox_id: int) -> tuple[int, int, int] | None:
        with self._read() as c:
            row = c.execute("SELECT uidnext, highestmodseq, COALESCE(c.messages, 0) FROM mailboxes"
                            " LEFT JOIN mailbox_counts c ON c.mailbox_id = mailboxes.id WHERE id=%s",
                            (mailbox_id,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def message_count_from(self, mailbox_id: int, uid: int) -> int:
        with self._read() as c:
            row = c.execute("SELECT COUNT(*) FROM messages WHERE mailbox_id=%s AND uid>=%s",
                            (mailbox_id, uid)).fetchone()
        return int(row[0])

    def message_add(self, mailbox_id: int,
                    items: Sequence[tuple[str, str, tuple[str, ...], int, float]],
                    keys: Sequence[SortKeys | None] | None = None) -> list[MessageRecord]:
        out: list[MessageRecord] = []
        new_keys: list[SortKeys | None] = []
        with self._write(settings=False) as c:
            row = c.execute("SELECT uidnext, highestmodseq FROM mailboxes WHERE id=%s FOR UPDATE",
                            (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"mailbox {mailbox_id}")
            uid, modseq = row
            modseq += 1
            now = time.time()  # the save date (RFC 8514) of all of them
            # Names indexed already (delivery and a directory scan may both see a file)
            # keep their UID; the others get the next ones, in order.
            known = {r[1]: _message(r) for r in c.execute(
                f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=%s AND name = ANY(%b::text[])",
                (mailbox_id, [it[0] for it in items]))}
            new: list[MessageRecord] = []
            for i, (name, subdir, flags, size, internaldate) in enumerate(items):
                old = known.get(name)
                if old is not None:
                    out.append(old)
                    continue
                rec = MessageRecord(uid, name, subdir, tuple(flags), modseq, size, internaldate, now)
                known[name] = rec
                new.append(rec)
                new_keys.append(keys[i] if keys is not None else None)
                out.append(rec)
                uid += 1
            if new:
                c.execute(
                    "INSERT INTO messages (mailbox_id, uid, name, subdir, flags, modseq, size, internaldate,"
                    " sort_date, sort_from, sort_subject, savedate)"
                    " SELECT %s, *, %s FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::bigint[],"
                    " %b::bigint[], %b::float8[], %b::float8[], %b::text[], %b::text[])",
                    (mailbox_id, now, [m.uid for m in new], [m.name for m in new], [m.subdir for m in new],
                     [" ".join(m.flags) for m in new], [m.modseq for m in new], [m.size for m in new],
                     _floats(m.internaldate for m in new), _floats(k.date if k else None for k in new_keys),
                     [k.sender if k else None for k in new_keys], [k.subject if k else None for k in new_keys]))
                c.execute("UPDATE mailboxes SET uidnext=%s, highestmodseq=%s WHERE id=%s", (uid, modseq, mailbox_id))
        return out

    def message_sort_keys_get(self, mailbox_id: int, uids: Sequence[int] | None = None) -> dict[int, SortKeys]:
        with self._read() as c:
            if uids is None:
                rows = c.execute("SELECT uid, sort_date, sort_from, sort_subject FROM messages"
                                 " WHERE mailbox_id=%s AND sort_date IS NOT NULL", (mailbox_id,)).fetchall()
            else:
                rows = c.execute("SELECT uid, sort_date, sort_from, sort_subject FROM messages"
                                 " WHERE mailbox_id=%s AND sort_date IS NOT NULL AND uid = ANY(%b::bigint[])",
                                 (mailbox_id, list(uids))).fetchall()
        return {uid: SortKeys(date, sender, subject) for uid, date, sender, subject in rows}

    def message_sort_keys_set(self, mailbox_id: int, values: Sequence[tuple[int, SortKeys]],
                              uidvalidity: int) -> None:
        if not values:
            return
        with self._write(settings=False) as c:
            c.execute("UPDATE messages m SET sort_date=u.d, sort_from=u.f, sort_subject=u.s"
                      " FROM unnest(%b::bigint[], %b::float8[], %b::text[], %b::text[]) AS u(uid, d, f, s)"
                      " WHERE m.mailbox_id=%s AND m.uid=u.uid"
                      " AND EXISTS (SELECT 1 FROM mailboxes b WHERE b.id=%s AND b.uidvalidity=%s)",
                      ([u for u, _ in values], _floats(k.date for _, k in values), [k.sender for _, k in values],
                       [k.subject for _, k in values], mailbox_id, mailbox_id, uidvalidity))

    def message_set_sizes(self, mailbox_id: int, sizes: Sequence[tuple[int, int]]) -> None:
        if not sizes:
            return
        with self._write(settings=False) as c:
            c.execute("UPDATE messages m SET size=u.size FROM unnest(%b::bigint[], %b::bigint[]) AS u(uid, size)"
                      " WHERE m.mailbox_id=%s AND m.uid=u.uid",
                      ([u for u, _ in sizes], [s for _, s in sizes], mailbox_id))

    def message_list(self, mailbox_id: int) -> list[MessageRecord]:
        with self._read() as c:
            rows = c.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=%s ORDER BY uid",
                             (mailbox_id,)).fetchall()
        return [_message(r) for r in rows]

    def message_first_unseen(self, mailbox_id: int, below: int) -> int | None:
        with self._read() as c:
            row = c.execute(
                "SELECT uid FROM messages WHERE mailbox_id=%s AND uid<%s"
                " AND strpos(' ' || flags || ' ', %s) = 0 ORDER BY uid LIMIT 1",
                (mailbox_id, below, " \\Seen ")).fetchone()
        return int(row[0]) if row else None

    def message_changes(self, mailbox_id: int, since: int) -> tuple[list[MessageRecord], list[int] | None]:
        with self._read() as c, c.transaction():  # one snapshot for both reads
            changed = c.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=%s AND modseq>%s ORDER BY uid",
                                (mailbox_id, since)).fetchall()
            gone = c.execute("SELECT uid FROM expunged WHERE mailbox_id=%s AND modseq>%s ORDER BY uid",
                             (mailbox_id, since)).fetchall()
            # Read after the records: a prune in between shows here, never the other way.
            floor = c.execute("SELECT expunged_floor FROM mailboxes WHERE id=%s", (mailbox_id,)).fetchone()
        if floor is not None and since < floor[0]:
            return [_message(r) for r in changed], None
        return [_message(r) for r in changed], [r[0] for r in gone]

    def message_uids(self, mailbox_id: int) -> list[int]:
        with self._read() as c:
            return [r[0] for r in c.execute("SELECT uid FROM messages WHERE mailbox_id=%s ORDER BY uid",
                                            (mailbox_id,))]

    def expunged_prune(self, before: float, headers_before: float) -> int:
        with self._write(settings=False) as c:
            c.execute("DELETE FROM message_headers h USING expunged e"
                      " WHERE e.mailbox_id=h.mailbox_id AND e.uid=h.uid AND e.at < %s AND NOT EXISTS"
                      " (SELECT 1 FROM messages m WHERE m.mailbox_id=h.mailbox_id AND m.uid=h.uid)",
                      (max(before, headers_before),))
            # The mailbox rows first, in id order, as every writer of a mailbox takes its row
            # before its records (an expunge, mailbox_delete's cascade): two prunes never
            # wait for each other in a circle, nor a prune and a deletion.
            c.execute("SELECT id FROM mailboxes WHERE id IN (SELECT mailbox_id FROM expunged WHERE at < %s)"
                      " ORDER BY id FOR UPDATE", (before,))
            # Then one statement (one snapshot) drops the records and raises each mailbox's
            # floor to the highest mod-sequence among exactly the records it dropped.  Read
            # and deleted in two statements, a record committed in between (an expunge on a
            # node whose clock is behind, so its time is already "old") went without
            # raising the floor, and a QRESYNC from below its mod-sequence missed its UID.
            row = c.execute("WITH gone AS (DELETE FROM expunged WHERE at < %s RETURNING mailbox_id, modseq),"
                            " raised AS (UPDATE mailboxes m SET expunged_floor=GREATEST(m.expunged_floor, t.top)"
                            " FROM (SELECT mailbox_id, MAX(modseq) AS top FROM gone GROUP BY mailbox_id) t"
                            " WHERE m.id=t.mailbox_id)"
                            " SELECT count(*) FROM gone", (before,)).fetchone()
            return int(row[0]) if row else 0

    def message_store(self, mailbox_id: int, uids: Sequence[int], flags: Sequence[str], mode: str,
                      unchanged_since: int | None = None) -> tuple[list[MessageRecord], list[int]]:
        out: list[MessageRecord] = []
        refused: list[int] = []
        wanted = list(dict.fromkeys(flags))
        with self._write(settings=False) as c:
            row = c.execute("SELECT highestmodseq FROM mailboxes WHERE id=%s FOR UPDATE", (mailbox_id,)).fetchone()
            if row is None:
                raise NotFound(f"mailbox {mailbox_id}")
            modseq = row[0] + 1
            changes: list[tuple[int, str]] = []
            rows = c.execute(f"SELECT {_MESSAGE_COLS} FROM messages WHERE mailbox_id=%s"
                             " AND uid = ANY(%b::bigint[]) ORDER BY uid",
                             (mailbox_id, list(uids))).fetchall()
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
                # still gets a new mod-sequence.
                changes.append((m.uid, " ".join(new)))
                m.flags, m.modseq = new, modseq
                out.append(m)
            if changes:
                c.execute("UPDATE messages m SET flags=u.flags, modseq=%s"
                          " FROM unnest(%b::bigint[], %b::text[]) AS u(uid, flags)"
                          " WHERE m.mailbox_id=%s AND m.uid=u.uid",
                          (modseq, [u for u, _ in changes], [f for _, f in changes], mailbox_id))
                c.execute("UPDATE mailboxes SET highestmodseq=%s WHERE id=%s", (modseq, mailbox_id))
        return out, refused

    def message_expunge(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRecord]:
        with self._write(settings=False) as c:
            row = c.execute("SELECT highestmodseq FROM mailboxes WHERE id=%s FOR UPDATE", (mailbox_id,)).fetchone()
            if row is None:
                return []
            modseq = row[0] + 1
            out = [_message(r) for r in c.execute(
                f"DELETE FROM messages WHERE mailbox_id=%s AND uid = ANY(%b::bigint[]) RETURNING {_MESSAGE_COLS}",
                (mailbox_id, list(uids)))]
            if out:
                gone = [m.uid for m in out]
                c.execute("INSERT INTO expunged (mailbox_id, uid, modseq, at)"
                          " SELECT %s, u, %s, %s FROM unnest(%b::bigint[]) u"
                          " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq=excluded.modseq, at=excluded.at",
                          (mailbox_id, modseq, time.time(), gone))
                c.execute("UPDATE mailboxes SET highestmodseq=%s WHERE id=%s", (modseq, mailbox_id))
        out.sort(key=lambda m: m.uid)
        return out

    def message_claim_recent(self, mailbox_id: int, upto: int | None = None) -> int:
        # Most SELECTs find nothing new to claim: then a read answers, as on SQLite, and
        # no transaction writes (an UPDATE that changes nothing still makes a new row
        # version, a WAL record and a flush at commit: a disk wait for every SELECT).
        # When there is something, the locked UPDATE claims it; a session that read a
        # bound already reached claims nothing, which the UPDATE would also have said.
        with self._read() as c:
            row = c.execute("SELECT recent_uid, uidnext FROM mailboxes WHERE id=%s", (mailbox_id,)).fetchone()
        if row is None:
            raise NotFound(f"mailbox {mailbox_id}")
        if (row[1] if upto is None else min(upto, row[1])) <= row[0]:
            return int(row[0])
        with self._write(settings=False) as c:
            row = c.execute(
                "UPDATE mailboxes m SET recent_uid=GREATEST(old.recent_uid, LEAST(m.uidnext, COALESCE(%s, m.uidnext)))"
                " FROM (SELECT id, recent_uid FROM mailboxes WHERE id=%s FOR UPDATE) old"
                " WHERE m.id=old.id RETURNING old.recent_uid", (upto, mailbox_id)).fetchone()
        if row is None:
            raise NotFound(f"mailbox {mailbox_id}")
        return int(row[0])

    def message_cache_get(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, Any]:
        with self._read() as c:
            rows = c.execute("SELECT uid, cache FROM messages WHERE mailbox_id=%s AND cache IS NOT NULL"
                             " AND uid = ANY(%b::bigint[])", (mailbox_id, list(uids))).fetchall()
        return {uid: json.loads(cache) for uid, cache in rows}

    def message_cache_set(self, mailbox_id: int, values: Sequence[tuple[int, Any]]) -> None:
        if not values:
            return
        with self._write(settings=False) as c:
            c.execute("UPDATE messages m SET cache=u.cache FROM unnest(%b::bigint[], %b::text[]) AS u(uid, cache)"
                      " WHERE m.mailbox_id=%s AND m.uid=u.uid",
                      ([u for u, _ in values], [json.dumps(v, separators=(",", ":")) for _, v in values],
                       mailbox_id))

    def subscription_list(self, domain: str, account: str) -> list[str]:
        with self._read() as c:
            rows = c.execute("SELECT name FROM subscriptions WHERE domain=%s AND account=%s ORDER BY name",
                             (domain, account)).fetchall()
        return [r[0] for r in rows]

    def subscription_set(self, domain: str, account: str, name: str, subscribed: bool) -> None:
        with self._write(settings=False) as c:
            if subscribed:
                c.execute("INSERT INTO subscriptions (domain, account, name) VALUES (%s, %s, %s)"
                          " ON CONFLICT DO NOTHING", (domain, account, name))
            else:
                c.execute("DELETE FROM subscriptions WHERE domain=%s AND account=%s AND name=%s",
                          (domain, account, name))

    # -- ACLs (RFC 4314), private \\Seen, mailbox aliases ------------------------------

    def acl_get(self, mailbox_id: int) -> dict[str, str]:
        with self._read() as c:
            rows = c.execute("SELECT identifier, rights FROM acl WHERE mailbox_id=%s ORDER BY identifier",
                             (mailbox_id,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def acl_set(self, mailbox_id: int, identifier: str, rights: str | None) -> None:
        with self._write(settings=False) as c:
            if rights:
                c.execute("INSERT INTO acl (mailbox_id, identifier, rights) VALUES (%s, %s, %s)"
                          " ON CONFLICT (mailbox_id, identifier) DO UPDATE SET rights=excluded.rights",
                          (mailbox_id, identifier, rights))
            else:
                c.execute("DELETE FROM acl WHERE mailbox_id=%s AND identifier=%s", (mailbox_id, identifier))

    def acl_granted(self, identifiers: Sequence[str]) -> list[tuple[MailboxRecord, str, str]]:
        if not identifiers:
            return []
        with self._read() as c:
            rows = c.execute(
                f"SELECT {_MAILBOX_COLS}, acl.identifier, acl.rights FROM acl"
                " JOIN mailboxes ON mailboxes.id = acl.mailbox_id WHERE acl.identifier = ANY(%s)"
                " ORDER BY mailboxes.domain, mailboxes.account, mailboxes.name", (list(identifiers),)).fetchall()
        return [(_mailbox(r[:-2]), r[-2], r[-1]) for r in rows]

    def seen_get(self, mailbox_id: int, user: str) -> set[int]:
        with self._read() as c:
            return {r[0] for r in c.execute("SELECT uid FROM seen WHERE mailbox_id=%s AND reader=%s",
                                            (mailbox_id, user))}

    def seen_set(self, mailbox_id: int, user: str, uids: Sequence[int], seen: bool) -> None:
        if not uids:
            return
        with self._write(settings=False) as c:
            if seen:
                c.execute("INSERT INTO seen (mailbox_id, reader, uid) SELECT %s, %s, u FROM unnest(%b::bigint[]) u"
                          " ON CONFLICT DO NOTHING", (mailbox_id, user, list(uids)))
            else:
                c.execute("DELETE FROM seen WHERE mailbox_id=%s AND reader=%s AND uid = ANY(%b::bigint[])",
                          (mailbox_id, user, list(uids)))

    def mailbox_alias_list(self, domain: str, account: str) -> dict[str, str]:
        # Read by every SELECT, STATUS and LIST that names a mailbox: cached like the
        # settings (a write renews every process's token, on every machine).
        def load() -> dict[str, str]:
            with self._read() as c:
                rows = c.execute("SELECT name, target FROM mailbox_aliases WHERE domain=%s AND account=%s"
                                 " ORDER BY name", (domain, account)).fetchall()
            return {r[0]: r[1] for r in rows}
        return dict(self._cached(("mailbox_aliases", domain, account), load))

    def mailbox_alias_set(self, domain: str, account: str, name: str, target: str | None) -> None:
        with self._write() as c:  # renews the change token: the cached lists go
            if target:
                c.execute("INSERT INTO mailbox_aliases (domain, account, name, target) VALUES (%s, %s, %s, %s)"
                          " ON CONFLICT (domain, account, name) DO UPDATE SET target=excluded.target",
                          (domain, account, name, target))
            else:
                c.execute("DELETE FROM mailbox_aliases WHERE domain=%s AND account=%s AND name=%s",
                          (domain, account, name))

    # -- header cache ----------------------------------------------------------------

    def message_headers_get(self, mailbox_id: int, uids: Sequence[int] | None = None) -> dict[int, bytes]:
        with self._read() as c:
            if uids is None:
                rows = c.execute("SELECT uid, header FROM message_headers WHERE mailbox_id=%s",
                                 (mailbox_id,)).fetchall()
            else:
                rows = c.execute("SELECT uid, header FROM message_headers"
                                 " WHERE mailbox_id=%s AND uid = ANY(%b::bigint[])",
                                 (mailbox_id, list(uids))).fetchall()
        return {r[0]: bytes(r[1]) for r in rows}

    def message_headers_set(self, mailbox_id: int, values: Sequence[tuple[int, bytes]],
                            uidvalidity: int | None = None) -> None:
        if not values:
            return
        with self._write(settings=False) as c:
            # FOR SHARE: an expunge (FOR UPDATE) waits for this, or this for it.
            row = c.execute("SELECT uidvalidity FROM mailboxes WHERE id=%s FOR SHARE", (mailbox_id,)).fetchone()
            if row is None or (uidvalidity is not None and row[0] != uidvalidity):
                return
            # Only for messages still indexed: an expunge that won the race leaves no row.
            c.execute("INSERT INTO message_headers (mailbox_id, uid, header)"
                      " SELECT %s, u.uid, u.header FROM unnest(%b::bigint[], %b::bytea[]) AS u(uid, header)"
                      " WHERE EXISTS (SELECT 1 FROM messages m WHERE m.mailbox_id=%s AND m.uid=u.uid)"
                      " ON CONFLICT DO NOTHING",
                      (mailbox_id, [u for u, _ in values], [h for _, h in values], mailbox_id))

    def message_headers_delete(self, mailbox_id: int, uids: Sequence[int]) -> None:
        if not uids:
            return
        with self._write(settings=False) as c:
            c.execute("DELETE FROM message_headers WHERE mailbox_id=%s AND uid = ANY(%b::bigint[])",
                      (mailbox_id, list(uids)))

    def message_headers_prune(self, mailbox_id: int) -> int:
        with self._write(settings=False) as c:
            return int(c.execute(
                "DELETE FROM message_headers h WHERE mailbox_id=%s AND NOT EXISTS"
                " (SELECT 1 FROM messages m WHERE m.mailbox_id=h.mailbox_id AND m.uid=h.uid) AND NOT EXISTS"
                " (SELECT 1 FROM expunged e WHERE e.mailbox_id=h.mailbox_id AND e.uid=h.uid)",
                (mailbox_id,)).rowcount)

    def message_headers_missing(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        if not uids:
            return []
        with self._read() as c:
            have = {r[0] for r in c.execute(
                "SELECT uid FROM message_headers WHERE mailbox_id=%s AND uid = ANY(%b::bigint[])",
                (mailbox_id, list(uids)))}
        return [u for u in uids if u not in have]
