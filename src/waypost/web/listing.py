"""The order and the search of a WebUser message list.

Arrival (UID) and size come from the index alone, so the default list of a
100,000-message mailbox costs nothing more than its page.  Date, sender and subject
(``Keys``, the index's ``SortKeys``) are kept in the index when a message is stored
(delivery, APPEND, COPY, MOVE: ``Mailstore.sort_keys``), so a sort reads no message
file.  A message indexed without them (dropped into the Maildir by another program, or
before the index kept them) has them made once from its header block (the index's
header cache, ``message_headers``, else the file up to the empty line, as IMAP cuts
it) and kept in the index for all workers and restarts.  What a list has read is kept
in this process too, keyed by (mailbox id, UIDVALIDITY, UID), which never names other
octets (ids and UIDs are never reused, a message's octets never change), bounded in
entries and in characters.

The search is IMAP's (``criteria``: every word in From, To, Cc, Subject or the body,
its text parts decoded from quoted-printable or base64 and their charsets), evaluated
by IMAP SEARCH's own matcher (``waypost.imap.message``), so a WebUser search finds
what ``SEARCH`` of the same key finds.  What a search found is kept per (mailbox id,
UIDVALIDITY, words) with the highest UID it looked at (``_found``): the next page, or
the same search after new mail, reads only the messages that came since.

Blocking (files and the index): the handlers run it in a thread.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import logging
import os
import threading
from collections import OrderedDict
from typing import Iterator, Sequence, TypeVar

from ..db import MailboxRecord, MessageRecord, SortKeys
from ..imap import message as mime
from ..imap.proto.search import And, Body, EnvelopeField, Or, SearchKey
from ..log import event
from ..mailstore import Mailstore
from .render import Summary, summary

log = logging.getLogger("waypost.web")

__all__ = ["SORTS", "Keys", "criteria", "found", "ordered", "summaries"]

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
#: Reading every cached header block of a mailbox beats asking for this many by UID.
_ALL_HEADERS_ABOVE = 256
#: Header blocks read from files are kept in the index this many to a transaction.
_STORE_BATCH = 20_000
#: Searches whose result one process keeps, and the UIDs they may hold in all.
MAX_SEARCHES = 64
MAX_FOUND = 1_000_000


#: The sort keys of a message (kept in the index by the store: ``SortKeys``).
Keys = SortKeys


_keys: OrderedDict[tuple[int, int, int], Keys] = OrderedDict()
#: A list row's Subject, From and Date, by the same key (they never change either).
_summaries: OrderedDict[tuple[int, int, int], Summary] = OrderedDict()
_lock = threading.Lock()
_chars = {"keys": 0, "summaries": 0}


def _cost(value: Keys | Summary) -> int:
    if isinstance(value, Keys):
        return len(value.sender) + len(value.subject) + _OVERHEAD
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


def _read_header(path: str) -> tuple[bytes, bool] | None:
    """(the header block of a message file as IMAP cuts it, ``message.header_end``:
    up to the empty line, or the whole file without one; whether it is whole, not cut
    at ``_MAX_HEADER``), or None when the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        buf = os.read(fd, _READ)
        while True:
            end = mime.header_end(buf)
            if end is not None:
                return buf[:end], True
            if len(buf) >= _MAX_HEADER:
                return buf, False
            more = os.read(fd, max(len(buf), _READ))
            if not more:
                return buf, True
            buf += more
    finally:
        os.close(fd)


def keys(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> dict[int, Keys]:
    """UID -> ``Keys`` of these messages (a message whose file is gone sorts by its
    arrival, with empty fields)."""
    out, missing = _cached(_keys, box, msgs)
    if not missing:
        return out
    db = store.db
    assert db is not None
    # Kept in the index when each message was stored (or made here before).
    stored = db.message_sort_keys_get(box.id, None if len(missing) > _ALL_HEADERS_ABOVE else
                                      [m.uid for m in missing])
    kept: list[tuple[int, Keys]] = []
    unknown: list[MessageRecord] = []
    for m in missing:
        k = stored.get(m.uid)
        if k is None:
            unknown.append(m)
        else:
            out[m.uid] = k
            kept.append((m.uid, k))
    made: list[tuple[int, Keys]] = []
    if unknown:  # indexed from a directory scan, or before the index kept keys
        dates = {m.uid: m.internaldate for m in unknown}
        for uid, block in _blocks(store, box, unknown).items():
            if block is None:
                out[uid] = Keys(dates[uid], "", "")
                continue
            k = mime.list_keys(block, dates[uid])
            out[uid] = k
            made.append((uid, k))
        try:
            for at in range(0, len(made), _STORE_BATCH):
                db.message_sort_keys_set(box.id, made[at:at + _STORE_BATCH], box.uidvalidity)
        except Exception as e:  # a cache: the page is served all the same
            event(log, "web-sort-keys-failed", level=logging.WARNING, mailbox=box.id, error=str(e))
    with _lock:
        for uid, k in kept + made:
            _keep(_keys, "keys", (box.id, box.uidvalidity, uid), k)
    return out


def ordered(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord], sort: str, descending: bool,
            query: str) -> list[MessageRecord]:
    """``msgs`` (by UID) filtered by ``query`` (``found``) and in the order ``sort``;
    ties by arrival."""
    words = tuple(query.split())
    if words:
        hits = found(store, box, msgs, words)
        msgs = [m for m in msgs if m.uid in hits]
    if sort not in ("date", "from", "subject"):
        if sort == "size":
            chosen = sorted(msgs, key=lambda m: (m.size, m.uid))
        else:
            chosen = list(msgs)
        return chosen[::-1] if descending else chosen
    k = keys(store, box, msgs)
    chosen = list(msgs)
    if sort == "date":
        chosen.sort(key=lambda m: (k[m.uid].date, m.uid))
    elif sort == "from":
        chosen.sort(key=lambda m: (k[m.uid].sender, m.uid))
    else:
        chosen.sort(key=lambda m: (k[m.uid].subject, m.uid))
    return chosen[::-1] if descending else chosen


# -- search ------------------------------------------------------------------------------


def _header_key(w: str) -> SearchKey:
    """The header half of one word's key: ``OR FROM w OR TO w OR CC w SUBJECT w``."""
    return Or(EnvelopeField("FROM", w), Or(EnvelopeField("TO", w), Or(EnvelopeField("CC", w),
                                                                     EnvelopeField("SUBJECT", w))))


def criteria(words: Sequence[str]) -> SearchKey:
    """The IMAP search key a WebUser search stands for: each word in From, To, Cc,
    Subject or the body, that is ``OR FROM w OR TO w OR CC w OR SUBJECT w BODY w``
    for every word (RFC 3501 §6.4.4; case folded, encoded words and the body's
    transfer encodings and charsets decoded, as IMAP SEARCH matches)."""
    keys: list[SearchKey] = [Or(_header_key(w), Body(w)) for w in words]
    return keys[0] if len(keys) == 1 else And(tuple(keys))


class _Target:
    """One message as IMAP's matcher sees it (``message.SearchTarget``); only
    ``view`` is read by the keys of ``criteria``.  The header block, when the index
    has it, answers the header keys without the file; the file is read at most
    once, or was read ahead (``data``) (a message whose file is gone is an empty
    message, as in IMAP SEARCH)."""

    __slots__ = ("seq", "uid", "flags", "size", "internaldate", "savedate", "modseq", "emailid", "_view")

    def __init__(self, store: Mailstore, box: MailboxRecord, m: MessageRecord, header: bytes | None,
                 data: bytes | None = None) -> None:
        self.seq = 0
        self.uid = m.uid
        self.flags = m.flags
        self.size = m.size
        self.internaldate = m.internaldate
        self.savedate = m.savedate
        self.modseq = m.modseq
        self.emailid = ""
        self._view = mime.MessageView(data if data is not None else lambda: _read(store, box, m), header=header)

    def view(self) -> mime.MessageView:
        return self._view


def _read(store: Mailstore, box: MailboxRecord, m: MessageRecord) -> bytes:
    try:
        return store.read(box, m)
    except FileNotFoundError:
        return b""


#: Message files a search reads ahead in threads (the reads wait on the disk, not on
#: the interpreter), and at most how many of them and octets it holds at once.
_READERS = 4
_AHEAD = 256
_AHEAD_OCTETS = 16 << 20


def _read_ahead(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> Iterator[bytes]:
    """The files of ``msgs``, in order, read by ``_READERS`` threads one batch ahead of
    the caller (a batch: ``_AHEAD`` messages or ``_AHEAD_OCTETS``, by the sizes the
    index holds), so that a first search of a mailbox not in the page cache waits for
    the disk once per batch, not once per message."""
    batches: list[Sequence[MessageRecord]] = []
    at = 0
    while at < len(msgs):
        end, octets = at, 0
        while end < len(msgs) and end - at < _AHEAD and octets < _AHEAD_OCTETS:
            octets += max(msgs[end].size, 0)
            end += 1
        batches.append(msgs[at:end])
        at = end
    with concurrent.futures.ThreadPoolExecutor(_READERS, thread_name_prefix="web-search-read") as pool:
        def submit(batch: Sequence[MessageRecord]) -> list[concurrent.futures.Future[bytes]]:
            return [pool.submit(_read, store, box, m) for m in batch]
        pending = submit(batches[0]) if batches else []
        for i in range(len(batches)):
            current, pending = pending, (submit(batches[i + 1]) if i + 1 < len(batches) else [])
            for f in current:
                yield f.result()


#: (mailbox id, UIDVALIDITY, words) -> (the highest UID looked at, the UIDs found).
_found: OrderedDict[tuple[int, int, tuple[str, ...]], tuple[int, frozenset[int]]] = OrderedDict()
_found_uids = [0]


def found(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord], words: Sequence[str]) -> frozenset[int]:
    """The UIDs of ``msgs`` (by UID) that match ``criteria(words)`` (and maybe of
    messages expunged since: the caller picks from its own).  A message's
    octets never change, so what an earlier search of the same words found stands for
    the UIDs it looked at; only those above are evaluated.

    Each word is ``OR <header keys> BODY w``: where the header block (the index's, else
    the file's) fails IMAP SEARCH's own necessary condition for the header keys
    (``message.prefilter``: the word is not in a plain header's octets), only ``BODY``
    is evaluated, without parsing the address fields (the same answer: that condition
    holds for every message whose header keys match).  The files are read ahead in
    threads (``_read_ahead``)."""
    cache_key = (box.id, box.uidvalidity, tuple(words))
    with _lock:
        upto, before = _found.get(cache_key, (0, frozenset()))
    todo = msgs[bisect.bisect_right(msgs, upto, key=lambda m: m.uid):]
    hits = set(before)
    if todo:
        n, last = len(msgs), msgs[-1].uid
        tests = [(mime.prefilter(_header_key(w)), mime.matcher(Or(_header_key(w), Body(w)), n, last),
                  mime.matcher(Body(w), n, last)) for w in words]
        db = store.db
        assert db is not None
        headers = db.message_headers_get(box.id, None if len(todo) > 256 else [m.uid for m in todo])
        for m, data in zip(todo, _read_ahead(store, box, todo)):
            header = headers.get(m.uid)
            if header is None:
                end = mime.header_end(data)
                header = data if end is None else data[:end]
            target = _Target(store, box, m, header, data)
            lowered, plain = mime.searchable(header), mime.plain_header(header)
            for flt, full, body in tests:
                if not (full(target) if flt is None or flt(lowered, plain) else body(target)):
                    break
            else:
                hits.add(m.uid)
        upto = todo[-1].uid
    result = frozenset(hits)  # expunged ones too: their UIDs never come back
    with _lock:
        old = _found.pop(cache_key, None)
        if old is not None:
            _found_uids[0] -= len(old[1])
        _found[cache_key] = (upto, result)
        _found_uids[0] += len(result)
        while len(_found) > 1 and (len(_found) > MAX_SEARCHES or _found_uids[0] > MAX_FOUND):
            _k, gone = _found.popitem(last=False)
            _found_uids[0] -= len(gone[1])
    return result


def _blocks(store: Mailstore, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> dict[int, bytes | None]:
    """Header blocks of ``msgs``: the index's cache first, else the files (None: the
    file is gone).  What is read from files goes into that cache, as IMAP SEARCH's
    reads do (the same blocks): another worker, or this one after a restart, sorts
    without reading the files again."""
    db = store.db
    assert db is not None
    uids = [m.uid for m in msgs]
    cached = db.message_headers_get(box.id, None if len(uids) > _ALL_HEADERS_ABOVE else uids)
    got: dict[int, bytes | None] = {}
    fresh: list[tuple[int, bytes]] = []
    base = str(store.box_path(box))
    for m in msgs:
        block = cached.get(m.uid)
        if block is None:
            read = _read_header(f"{base}/{m.subdir}/{m.name}")
            if read is not None:
                block, whole = read
                if whole:
                    fresh.append((m.uid, block))
        got[m.uid] = block
    try:
        for at in range(0, len(fresh), _STORE_BATCH):
            db.message_headers_set(box.id, fresh[at:at + _STORE_BATCH], box.uidvalidity)
    except Exception as e:  # a cache: the page is served all the same
        event(log, "web-header-cache-failed", level=logging.WARNING, mailbox=box.id, error=str(e))
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
