"""The order and the search of a WebUser message list.

Arrival (UID) and size come from the index alone, so the default list of a
100,000-message mailbox costs nothing more than its page.  Date, sender and subject,
and the search (words that must all appear in From, To, Cc or Subject), need each
message's header: its block is taken from the index's header cache (``message_headers``,
the one IMAP SEARCH and SORT fill), else read from the file (up to the empty line; not
written to that cache, whose blocks are IMAP's to cut); what the list needs of it (``Keys``) is kept in this
process, keyed by (mailbox id, UIDVALIDITY, UID), which never names other octets (ids
and UIDs are never reused, a message's octets never change), bounded in entries and in
characters.

Blocking (files and the index): the handlers run it in a thread.
"""

from __future__ import annotations

import email.utils
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from typing import Sequence, TypeVar

from ..db import MailboxRecord, MessageRecord
from ..mailstore import Mailstore
from .render import Summary, decode_header, summary

__all__ = ["SORTS", "Keys", "ordered", "summaries"]

#: The orders a list may have (``sort=``); each also reversed with ``order=asc|desc``.
SORTS = ("arrival", "date", "from", "subject", "size")
#: Messages whose keys one process keeps (a few hundred octets each).
MAX_KEYS = 200_000
#: Characters (of the texts, plus a per-entry overhead) each of the two caches may hold:
#: the bound that matters when headers are long.
MAX_CHARS = 32 << 20
_OVERHEAD = 120
#: Octets of a file read at a time while looking for the end of its header.
_READ = 8192
#: Longest header block read from a file (a header beyond is cut: still a key).
_MAX_HEADER = 256 * 1024
#: Characters of each field kept for sorting and searching.
_FIELD = 300


@dataclass(frozen=True, slots=True)
class Keys:
    date: float         # the Date field (RFC 5256 §2.2: the arrival time when it has none)
    sender: str         # From, decoded, lower case
    subject: str        # Subject, decoded, lower case
    text: str           # From, To, Cc and Subject together, lower case: what a search looks in


_keys: OrderedDict[tuple[int, int, int], Keys] = OrderedDict()
#: A list row's Subject, From and Date, by the same key (they never change either).
_summaries: OrderedDict[tuple[int, int, int], Summary] = OrderedDict()
_lock = threading.Lock()
_chars = {"keys": 0, "summaries": 0}


def _cost(value: Keys | Summary) -> int:
    if isinstance(value, Keys):
        return len(value.sender) + len(value.subject) + len(value.text) + _OVERHEAD
    return len(value.subject) + len(value.sender) + len(value.date) + _OVERHEAD


def _keep(cache: OrderedDict, name: str, key: tuple[int, int, int], value: Keys | Summary) -> None:
    """(Holding ``_lock``.)  Cache ``value``; the oldest go while a bound is passed."""
    old = cache.pop(key, None)
    if old is not None:
        _chars[name] -= _cost(old)
    cache[key] = value
    _chars[name] += _cost(value)
    while len(cache) > 1 and (len(cache) > MAX_KEYS or _chars[name] > MAX_CHARS):
        _k, gone = cache.popitem(last=False)
        _chars[name] -= _cost(gone)


V = TypeVar("V", "Keys", "Summary")


def _cached(cache: "OrderedDict[tuple[int, int, int], V]", box: MailboxRecord,
            msgs: Sequence[MessageRecord]) -> tuple[dict[int, V], list[MessageRecord]]:
    """(UID -> what ``cache`` holds for these messages, the messages it does not hold)."""
    out: dict[int, V] = {}
    missing: list[MessageRecord] = []
    with _lock:
        for m in msgs:
            hit = cache.get((box.id, box.uidvalidity, m.uid))
            if hit is None:
                missing.append(m)
            else:
                out[m.uid] = hit
    return out, missing


def _keys_of(block: bytes, internaldate: float) -> Keys:
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
    date = internaldate
    raw_date = msg.get("Date")
    if raw_date:
        try:
            parsed = email.utils.parsedate_to_datetime(str(raw_date))
            date = parsed.timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    sender = decode_header(msg.get("From"), _FIELD).lower()
    subject = decode_header(msg.get("Subject"), _FIELD).lower()
    to = decode_header(msg.get("To"), _FIELD).lower()
    cc = decode_header(msg.get("Cc"), _FIELD).lower()
    return Keys(date, sender, subject, "\n".join((sender, to, cc, subject)))


def _read_header(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        buf = b""
        while len(buf) < _MAX_HEADER:
            more = os.read(fd, _READ)
            if not more:
                return buf
            buf += more
            for sep in (b"\r\n\r\n", b"\n\n"):
                end = buf.find(sep)
                if end >= 0:
                    return buf[:end + len(sep)]
        return buf
    finally:
        os.close(fd)


def keys(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> dict[int, Keys]:
    """UID -> ``Keys`` of these messages (a message whose file is gone sorts by its
    arrival, with empty fields)."""
    out, missing = _cached(_keys, box, msgs)
    if not missing:
        return out
    made: list[tuple[int, Keys]] = []
    dates = {m.uid: m.internaldate for m in missing}
    for uid, block in _blocks(store, box, missing).items():
        if block is None:
            out[uid] = Keys(dates[uid], "", "", "")
            continue
        k = _keys_of(block, dates[uid])
        out[uid] = k
        made.append((uid, k))
    with _lock:
        for uid, k in made:
            _keep(_keys, "keys", (box.id, box.uidvalidity, uid), k)
    return out


def ordered(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord], sort: str, descending: bool,
            query: str) -> list[MessageRecord]:
    """``msgs`` (by UID) filtered by ``query`` (every word in From/To/Cc/Subject, case
    folded) and in the order ``sort``; ties by arrival."""
    words = query.lower().split()
    if sort not in ("date", "from", "subject") and not words:
        if sort == "size":
            chosen = sorted(msgs, key=lambda m: (m.size, m.uid))
        else:
            chosen = list(msgs)
        return chosen[::-1] if descending else chosen
    k = keys(store, box, msgs)
    chosen = [m for m in msgs if all(w in k[m.uid].text for w in words)] if words else list(msgs)
    if sort == "date":
        chosen.sort(key=lambda m: (k[m.uid].date, m.uid))
    elif sort == "from":
        chosen.sort(key=lambda m: (k[m.uid].sender, m.uid))
    elif sort == "subject":
        chosen.sort(key=lambda m: (k[m.uid].subject, m.uid))
    elif sort == "size":
        chosen.sort(key=lambda m: (m.size, m.uid))
    return chosen[::-1] if descending else chosen


def _blocks(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> dict[int, bytes | None]:
    """Header blocks: the index's cache first, else the files (None: the file is gone)."""
    db = store.db
    assert db is not None
    got: dict[int, bytes | None] = dict(db.message_headers_get(box.id, [m.uid for m in msgs]))
    base = str(store.box_path(box))
    for m in msgs:
        if m.uid not in got:
            got[m.uid] = _read_header(f"{base}/{m.subdir}/{m.name}")
    return got


def summaries(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> dict[int, Summary]:
    """UID -> the Subject, From and Date a list row shows, kept per process like ``Keys``
    (a list page served again reads no header)."""
    out, missing = _cached(_summaries, box, msgs)
    if not missing:
        return out
    made = []
    for uid, block in _blocks(store, box, missing).items():
        if block is None:
            out[uid] = Summary("(message gone)", "", "")
            continue
        out[uid] = summary(block if block.endswith(b"\n\n") or block.endswith(b"\r\n\r\n") else block + b"\r\n\r\n")
        made.append((uid, out[uid]))
    with _lock:
        for uid, value in made:
            _keep(_summaries, "summaries", (box.id, box.uidvalidity, uid), value)
    return out
