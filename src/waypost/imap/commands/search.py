"""SEARCH and UID SEARCH (RFC 3501 §6.4.4; CONDSTORE MODSEQ, RFC 7162 §3.1.5; RETURN
options and ESEARCH, RFC 4731; RETURN (SAVE) and "$", RFC 5182).

Keys on flags, sizes, dates, UIDs and mod-sequences are answered from the index.
Keys on header fields (HEADER, FROM, SUBJECT, SENT*, ...) are answered from each
message's header block: read once from the file (up to the empty line, not the whole
message), then kept in the index (``message_headers``) and, lower-cased, in this
worker's memory (``_MEMORY``).  A search first narrows the messages down to those
whose header holds the words its keys need (``message.prefilter``) and evaluates
only these.  BODY and TEXT read the files, once per message and search.

Criteria that read nothing of a message but HEADER and the envelope keys (FROM,
SUBJECT, ...: the common search of a mail client) are answered from a smaller cache:
per (mailbox, UIDVALIDITY, field) the strings these keys compare (``_Field``,
``message.field_strings``: each value unfolded, decoded and case-folded, and the
addresses as parsed), a few dozen octets a message instead of its whole header,
so that a 100,000-message mailbox stays in memory between searches.

``header_blocks`` gives FETCH the same cache for BODY[HEADER...] and RFC822.HEADER.
The caches are keyed by (mailbox, UIDVALIDITY, UID), which never names other octets
(a mailbox created anew has a new UIDVALIDITY, and its rows go with the old
mailbox's; a message's header never changes): new mail is read when a search
first meets its UID, in any worker, and an expunged message's entry goes when the
mailbox holds far fewer messages than the cache (``drop_except``) or with its
mailbox, the least recently searched first (``imap.search_cache`` octets in all).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from itertools import filterfalse
from typing import Any, Mapping, Sequence, TYPE_CHECKING

from ...db import MessageRecord
from .. import message as mime
from ..objectid import email_id
from . import context
from ..proto import ESearchData, ModSeqKey, Search, SearchData, SearchKey, SequenceKey, SequenceSet, Tagged
from ..proto.response import Codes
from ..proto.search import All, And, Larger, Not, Or, Smaller

log = logging.getLogger("waypost.imap")

if TYPE_CHECKING:
    from ..server import Connection
    from ..session import Selected

#: Octets of lower-cased header blocks a worker keeps, over all mailboxes, unless
#: ``imap.search_cache`` says otherwise (``set_search_cache``).
_MEMORY_BUDGET = 64 << 20
#: Mailboxes with headers in memory, however small.
_MEMORY_BOXES = 1024
#: Per cached message, besides its octets (dict slot, bytes object).
_ENTRY_OVERHEAD = 100
#: Per message of a joined copy (``_Lowered.scan``), besides its octets: two list slots
#: and an int.
_JOINED_OVERHEAD = 50
#: Per message a ``_Field`` covers: a set slot and an int.
_COVERED_OVERHEAD = 72
#: Per message with strings in a ``_Field``: a dict slot and a tuple (the strings are
#: counted by ``sys.getsizeof``).
_STRINGS_OVERHEAD = 120
#: A header is read in pieces of at least this size until its empty line.
_READ_CHUNK = 8192
#: Fetching every cached header of a mailbox beats asking for this many by UID.
_FETCH_ALL_ABOVE = 256


class _Lowered:
    """One mailbox's header blocks as the prefilter reads them (``message.searchable``); ``odd`` are the
    UIDs whose header is not plain (``message.plain_header``).  ``scan`` searches
    them all at once, joined (in UID order) into one string."""

    __slots__ = ("headers", "odd", "size", "pruned", "_joined")

    def __init__(self) -> None:
        self.headers: dict[int, bytes] = {}
        self.odd: set[int] = set()
        self.size = 0  # octets held, the joined copy included
        self.pruned = False  # the index's stale rows were dropped once
        self._joined: tuple[bytes, list[int], list[int]] | None = None

    def add(self, uid: int, block: bytes) -> None:
        if uid in self.headers:
            return
        self.headers[uid] = mime.searchable(block)
        if not mime.plain_header(block):
            self.odd.add(uid)
        self.size += len(block) + _ENTRY_OVERHEAD
        self._unjoin()

    def _unjoin(self) -> None:
        if self._joined is not None:
            self.size -= len(self._joined[0]) + _JOINED_OVERHEAD * len(self._joined[1])
            self._joined = None

    def drop_except(self, live: Mapping[int, Any]) -> None:
        for uid in [u for u in self.headers if u not in live]:
            self.size -= len(self.headers.pop(uid)) + _ENTRY_OVERHEAD
            self.odd.discard(uid)
        self._unjoin()

    def scan(self, needle: bytes) -> list[int]:
        """The UIDs whose lower-cased header holds ``needle``, ascending."""
        if self._joined is None:
            order = sorted(self.headers)
            starts = []
            at = 0
            for uid in order:
                starts.append(at)
                at += len(self.headers[uid]) + 1
            self._joined = (b"\n".join(self.headers[u] for u in order), starts, order)
            self.size += len(self._joined[0]) + _JOINED_OVERHEAD * len(starts)
        joined, starts, order = self._joined
        out: list[int] = []
        find, headers, last = joined.find, self.headers, len(starts) - 1
        pos = 0
        while True:
            i = find(needle, pos)
            if i < 0:
                return out
            k = bisect_right(starts, i) - 1
            uid = order[k]
            if needle in headers[uid]:  # not one that runs into the next header
                out.append(uid)
            if k == last:
                return out
            pos = starts[k + 1]


class _Field:
    """One mailbox's ``message.field_strings`` of one field (``message.field_key``):
    ``covered`` are the UIDs read, ``values`` and ``addresses`` the strings of those
    that have the field.  ``scan`` searches them all at once, joined (in UID order)
    into one string."""

    __slots__ = ("covered", "values", "addresses", "size", "_joined")

    def __init__(self) -> None:
        self.covered: set[int] = set()
        self.values: dict[int, tuple[str, ...]] = {}
        self.addresses: dict[int, tuple[str, ...]] = {}
        self.size = 0  # octets held, the joined copy included
        # joined strings, where each starts, its UID, where the next UID's start
        self._joined: tuple[str, list[int], list[int], list[int]] | None = None

    def add(self, uid: int, strings: mime.FieldStrings) -> None:
        if uid in self.covered:
            return
        self.covered.add(uid)
        self.size += _COVERED_OVERHEAD + self._put(uid, strings, 1)
        self._unjoin()

    def _put(self, uid: int, strings: mime.FieldStrings, sign: int) -> int:
        size = 0
        for kept, got in ((self.values, strings[0]), (self.addresses, strings[1])):
            if got:
                if sign > 0:
                    kept[uid] = got
                else:
                    del kept[uid]
                size += _STRINGS_OVERHEAD + sum(map(sys.getsizeof, got))
        return size

    def strings(self, uid: int) -> mime.FieldStrings:
        return self.values.get(uid, ()), self.addresses.get(uid, ())

    def _unjoin(self) -> None:
        if self._joined is not None:
            self.size -= sys.getsizeof(self._joined[0]) + _JOINED_OVERHEAD * len(self._joined[1])
            self._joined = None

    def drop_except(self, live: Mapping[int, Any]) -> None:
        for uid in [u for u in self.covered if u not in live]:
            self.covered.discard(uid)
            self.size -= _COVERED_OVERHEAD + self._put(uid, self.strings(uid), -1)
        self._unjoin()

    def scan(self, needle: str) -> list[int]:
        """The UIDs with a string that holds ``needle`` (with a string at all when it
        is empty), ascending."""
        if not needle:
            return sorted(self.values)
        if self._joined is None:
            pieces: list[str] = []
            starts: list[int] = []
            owners: list[int] = []
            after: list[int] = []
            at = 0
            for uid in sorted(self.values.keys() | self.addresses.keys()):
                first = len(pieces)
                for piece in self.values.get(uid, ()) + self.addresses.get(uid, ()):
                    pieces.append(piece)
                    starts.append(at)
                    owners.append(uid)
                    at += len(piece) + 1
                after.extend([len(pieces)] * (len(pieces) - first))
            self._joined = ("\n".join(pieces), starts, owners, after)
            self.size += sys.getsizeof(self._joined[0]) + _JOINED_OVERHEAD * len(starts)
        joined, starts, owners, after = self._joined
        out: list[int] = []
        find, last, width = joined.find, len(starts), len(needle)
        pos = 0
        while True:
            i = find(needle, pos)
            if i < 0:
                return out
            k = bisect_right(starts, i) - 1
            # not one that runs into the next string
            end = starts[k + 1] - 1 if k + 1 < last else len(joined)
            if i + width <= end:
                out.append(owners[k])
                k = after[k]
            else:
                k += 1
            if k >= last:
                return out
            pos = starts[k]


class _Memory:
    """``_Lowered`` per (mailbox id, UIDVALIDITY) and ``_Field`` per (mailbox id,
    UIDVALIDITY, field name, with addresses), in one order of use: the least recently
    used dropped first when they hold more than ``budget`` octets (their joined copies
    included) or there are more than ``_MEMORY_BOXES`` of them."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.boxes: OrderedDict[tuple[Any, ...], _Lowered | _Field] = OrderedDict()

    def get(self, key: tuple[int, int]) -> _Lowered:
        found = self.boxes.get(key)
        if not isinstance(found, _Lowered):
            found = self.boxes[key] = _Lowered()
        self.boxes.move_to_end(key)
        return found

    def lowered(self, key: tuple[int, int]) -> _Lowered | None:
        """The mailbox's header blocks if kept, without using them."""
        found = self.boxes.get(key)
        return found if isinstance(found, _Lowered) else None

    def field(self, key: tuple[int, int, bytes, bool]) -> _Field:
        found = self.boxes.get(key)
        if not isinstance(found, _Field):
            found = self.boxes[key] = _Field()
        self.boxes.move_to_end(key)
        return found

    def held(self) -> int:
        """The octets held in all (``imap.search_cache`` bounds it)."""
        # (A copy taken at once: /metrics asks from another thread while the loop changes them.)
        return sum(b.size for b in list(self.boxes.values()))

    def trim(self) -> None:
        total = self.held()
        while (total > self.budget or len(self.boxes) > _MEMORY_BOXES) and self.boxes:
            _, dropped = self.boxes.popitem(last=False)
            total -= dropped.size


_MEMORY = _Memory(_MEMORY_BUDGET)


def search_cache_held() -> int:
    """The octets this worker's SEARCH caches hold now (the ``waypost_imap_search_cache_bytes`` metric)."""
    return _MEMORY.held()


def set_search_cache(budget: int) -> None:
    """The octets of headers this worker keeps for SEARCH (``imap.search_cache``)."""
    _MEMORY.budget = budget
    _MEMORY.trim()


def _read_header(path: str) -> bytes | None:
    """The header block of a message file (None when it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        buf = os.read(fd, _READ_CHUNK)
        while True:
            end = mime.header_end(buf)
            if end is not None:
                return buf[:end]
            more = os.read(fd, max(len(buf), _READ_CHUNK))
            if not more:
                return buf  # no empty line: the whole message is header
            buf += more
    finally:
        os.close(fd)


def _read_headers(paths: list[str]) -> list[bytes | None]:
    return [_read_header(p) for p in paths]


def _paths(conn: Connection, sel: Selected, uids: list[int]) -> list[str]:
    # Mailstore.file_path, without a Path per message.
    base = str(conn.store.box_path(sel.box))
    out = []
    for uid in uids:
        m = sel.msgs[uid]
        out.append(f"{base}/{m.subdir}/{m.name}")
    return out


async def _from_files(conn: Connection, sel: Selected, uids: list[int], lowered: _Lowered | None,
                      raw: dict[int, bytes], writes: list[asyncio.Future[None]],
                      lost: set[int] | None = None) -> None:
    """Read the header blocks of ``uids`` from their files into ``raw`` and
    ``lowered``; a message whose file is gone gets b"" in ``raw`` and, given
    ``lost``, goes there instead.  Keeping the blocks in the index is added to
    ``writes`` (it goes on in a thread meanwhile: await them).  (Reading in
    batches, the next read while this one is kept, is slower: the threads contend.)"""
    db = conn.store.db
    assert db is not None
    blocks = await asyncio.to_thread(_read_headers, _paths(conn, sel, uids))
    fresh: list[tuple[int, bytes]] = []
    for uid, block in zip(uids, blocks):
        if block is None:
            if lost is not None:
                lost.add(uid)  # expunged meanwhile: nothing to answer from
            else:
                raw[uid] = b""
        else:
            raw[uid] = block
            fresh.append((uid, block))
    if fresh:
        writes.append(asyncio.ensure_future(
            asyncio.to_thread(db.message_headers_set, sel.box.id, fresh, sel.box.uidvalidity)))
    if lowered is not None:
        for uid, block in fresh:
            lowered.add(uid, block)


async def _lowered_headers(conn: Connection, sel: Selected, uids: Sequence[int],
                           writes: list[asyncio.Future[None]]) -> tuple[_Lowered, dict[int, bytes], set[int]]:
    """This mailbox's lower-cased header blocks, with every one of ``uids`` (the
    missing ones from the index, else from the files: see ``_from_files`` for
    ``writes``), the raw blocks read, and the UIDs of ``uids`` whose header is
    nowhere (expunged, its file gone, and never kept in the index)."""
    box = sel.box
    lowered = _MEMORY.get((box.id, box.uidvalidity))
    raw: dict[int, bytes] = {}
    lost: set[int] = set()
    known = lowered.headers
    missing = list(filterfalse(known.__contains__, uids))
    if missing:
        db = conn.store.db
        assert db is not None
        every = len(missing) > _FETCH_ALL_ABOVE
        got = await asyncio.to_thread(db.message_headers_get, box.id, None if every else missing)
        for uid in missing:
            block = got.get(uid)
            if block is not None:
                raw[uid] = block
                lowered.add(uid, block)
        if every and len(got) > len(sel.msgs) + _FETCH_ALL_ABOVE and not lowered.pruned:
            # Rows of messages expunged long ago (those of recent expunges stay:
            # ``message_expunge``).
            lowered.pruned = True
            await asyncio.to_thread(db.message_headers_prune, box.id)
        unread = [u for u in missing if u not in raw]
        if unread:
            await _from_files(conn, sel, unread, lowered, raw, writes, lost)
        if len(known) > len(sel.msgs) + _FETCH_ALL_ABOVE:
            lowered.drop_except(sel.msgs)
        _MEMORY.trim()
    return lowered, raw, lost


async def _fields_of(conn: Connection, sel: Selected, uids: Sequence[int], keys: set[tuple[bytes, bool]],
                     writes: list[asyncio.Future[None]]) -> tuple[dict[tuple[bytes, bool], _Field], set[int]]:
    """This mailbox's ``_Field`` of each of ``keys``, covering every one of ``uids``
    (the header blocks they lack read from the index, else from the files: see
    ``_from_files`` for ``writes``), and the UIDs of ``uids`` whose header is nowhere
    (expunged, its file gone, and never kept in the index)."""
    box = sel.box
    fields = {key: _MEMORY.field((box.id, box.uidvalidity) + key) for key in sorted(keys)}
    wanting = {key: [] if f.covered.issuperset(uids) else list(filterfalse(f.covered.__contains__, uids))
               for key, f in fields.items()}
    missing = sorted({u for m in wanting.values() for u in m})
    lost: set[int] = set()
    if not missing:
        return fields, lost
    db = conn.store.db
    assert db is not None
    every = len(missing) > _FETCH_ALL_ABOVE
    got = await asyncio.to_thread(db.message_headers_get, box.id, None if every else missing)
    raw = {u: got[u] for u in missing if u in got}
    del got
    unread = [u for u in missing if u not in raw]
    if unread:
        await _from_files(conn, sel, unread, None, raw, writes, lost)

    def fold() -> list[tuple[_Field, list[tuple[int, mime.FieldStrings]]]]:
        # Off the event loop: decoding and folding 100,000 headers takes a while. The
        # fields are shared by this worker's sessions on the loop, so only the loop
        # changes them (below): a session must never see a UID covered whose strings
        # are not there yet, nor a set that changes while it walks it.
        folded = []
        for key, field in fields.items():
            wanted, addresses = key
            folded.append((field, [(uid, mime.field_strings(block, wanted, addresses))
                                   for uid in wanting[key] if (block := raw.get(uid)) is not None]))
        return folded
    for field, strings in await asyncio.to_thread(fold):
        for uid, kept in strings:
            field.add(uid, kept)
    for field in fields.values():
        if len(field.covered) > len(sel.msgs) + _FETCH_ALL_ABOVE:
            field.drop_except(sel.msgs)
    _MEMORY.trim()
    return fields, lost


def _by_fields(fields: dict[tuple[bytes, bool], _Field], clauses: list[tuple[mime.FieldLiteral, ...]]) -> list[int]:
    """The UIDs the fields hold that pass every clause (``message.field_filter``),
    ascending."""
    chosen: set[int] | None = None
    for clause in clauses:
        found: set[int] = set()
        for wanted, addresses, needle in clause:
            found.update(fields[(wanted, addresses)].scan(needle))
        chosen = found if chosen is None else chosen & found
        if not chosen:
            break
    return sorted(chosen or ())


async def header_blocks(conn: Connection, sel: Selected, uids: list[int]) -> dict[int, bytes]:
    """The header blocks (``message.header_end``) of these messages of the selected
    mailbox, from the index or else the files (then kept); b"" for a message whose
    file is gone.  ``message.section(block, ...)`` of HEADER, HEADER.FIELDS[.NOT]
    (no part number) equals that of the whole message."""
    db = conn.store.db
    assert db is not None
    raw = await asyncio.to_thread(db.message_headers_get, sel.box.id, uids)
    unread = [u for u in uids if u not in raw]
    if unread:
        box = sel.box
        writes: list[asyncio.Future[None]] = []
        await _from_files(conn, sel, unread, _MEMORY.lowered((box.id, box.uidvalidity)), raw, writes)
        await asyncio.gather(*writes)
    return raw


#: An expunge of at most this many messages first keeps in the index the header
#: blocks it lacks of them (read from their files), so that the sessions that still
#: show them find them by header until they are told (``find``); a larger one
#: leaves those to OK [EXPUNGEISSUED].
_KEEP_AT_EXPUNGE = 1000


async def keep_headers(conn: Connection, sel: Selected, msgs: list[MessageRecord]) -> None:
    """Before ``msgs`` of the selected mailbox are expunged: make sure the index
    keeps their header blocks (``_KEEP_AT_EXPUNGE``)."""
    if not msgs or len(msgs) > _KEEP_AT_EXPUNGE:
        return
    db = conn.store.db
    assert db is not None
    box = sel.box
    missing = await asyncio.to_thread(db.message_headers_missing, box.id, [m.uid for m in msgs])
    if missing:
        writes: list[asyncio.Future[None]] = []
        await _from_files(conn, sel, missing, _MEMORY.lowered((box.id, box.uidvalidity)), {}, writes)
        await asyncio.gather(*writes)


class _Target:
    """One message as the search evaluation sees it (``message.SearchTarget``);
    ``at`` moves it to the next message, so one object serves a whole search."""

    __slots__ = ("seq", "uid", "size", "internaldate", "savedate", "modseq", "lost", "_m", "_header", "_view",
                 "_sel", "_store", "_fields")

    def __init__(self, conn: Connection, sel: Selected,
                 fields: dict[tuple[bytes, bool], _Field] | None = None) -> None:
        self._sel = sel
        self._fields = fields  # HEADER and the envelope keys answered from these
        self._store = conn.store
        self.seq = self.uid = self.size = self.modseq = 0
        self.internaldate = 0.0
        self.savedate: float | None = None
        self.lost = False  # a file was gone when read (expunged meanwhile)
        self._m: MessageRecord | None = None
        self._header: bytes | None = None
        self._view: mime.MessageView | None = None

    def at(self, seq: int, m: MessageRecord, header: bytes | None = None) -> _Target:
        self.seq = seq
        self.uid = m.uid
        self.size = m.size
        self.internaldate = m.internaldate
        self.savedate = m.savedate
        self.modseq = m.modseq
        self._m = m
        self._header = header
        self._view = None
        return self

    @property
    def flags(self) -> tuple[str, ...]:
        return self._sel.flags_of(self.uid)

    @property
    def emailid(self) -> str:
        assert self._m is not None
        return email_id(self._m)

    def view(self) -> mime.MessageView:
        if self._view is None:
            store, box, m = self._store, self._sel.box, self._m
            assert m is not None

            def load() -> bytes:
                try:
                    return store.read(box, m)
                except FileNotFoundError:
                    self.lost = True
                    return b""

            strings = None
            if self._fields is not None:
                fields, uid = self._fields, m.uid

                def strings(wanted: bytes, addresses: bool) -> mime.FieldStrings:
                    return fields[(wanted, addresses)].strings(uid)
            self._view = mime.MessageView(load, header=self._header, strings=strings)
        return self._view


def _mentions(key: SearchKey, kinds: tuple[type, ...]) -> bool:
    """Whether a key of one of ``kinds`` stands anywhere in the criteria."""
    if isinstance(key, kinds):
        return True
    if isinstance(key, Not):
        return _mentions(key.key, kinds)
    if isinstance(key, Or):
        return _mentions(key.left, kinds) or _mentions(key.right, kinds)
    if isinstance(key, And):
        return any(_mentions(k, kinds) for k in key.keys)
    return False


def _narrow(lowered: _Lowered, flt: mime.HeaderFilter) -> list[int]:
    """The UIDs whose header passes the prefilter (a superset of the matches among
    the messages ``lowered`` holds), ascending."""
    first, *rest = flt.clauses
    found: set[int] = set()
    for needle, plain_only in first:
        found.update(lowered.scan(needle))
        if plain_only:
            found |= lowered.odd
    _MEMORY.trim()  # the joined copy counts
    uids = sorted(found)
    headers, odd = lowered.headers, lowered.odd
    for clause in rest:
        one = mime.HeaderFilter((clause,))
        uids = [u for u in uids if one(headers[u], u not in odd)]
    return uids


def _evaluate(test: Any, target: _Target, sel: Selected, numbered: list[tuple[int, int]],
              headers: dict[int, bytes] | None) -> tuple[list[int], int]:
    hits: list[int] = []
    top = 0
    msgs = sel.msgs
    for seq, uid in numbered:
        m = msgs[uid]
        if test(target.at(seq, m, None if headers is None else headers.get(uid))):
            hits.append(uid)
            if m.modseq > top:
                top = m.modseq
    return hits, top


def _saved_key(sel: Selected, key: SearchKey) -> SearchKey:
    """``key`` with RFC 5182's "$" replaced by the UIDs it names now."""
    if isinstance(key, SequenceKey) and key.sequence.saved:
        live = [u for u in sel.saved if u in sel.msgs]
        if not live:
            return Not(All())
        return SequenceKey(SequenceSet.from_numbers(live), uid=True)
    if isinstance(key, Not):
        return Not(_saved_key(sel, key.key))
    if isinstance(key, Or):
        return Or(_saved_key(sel, key.left), _saved_key(sel, key.right))
    if isinstance(key, And):
        return And(tuple(_saved_key(sel, k) for k in key.keys))
    return key


def _mentions_saved(key: SearchKey) -> bool:
    if isinstance(key, SequenceKey):
        return key.sequence.saved
    if isinstance(key, Not):
        return _mentions_saved(key.key)
    if isinstance(key, Or):
        return _mentions_saved(key.left) or _mentions_saved(key.right)
    if isinstance(key, And):
        return any(_mentions_saved(k) for k in key.keys)
    return False


class Found:
    """What a search found: ``uids`` in mailbox order, the highest mod-sequence
    among them (``top``), whether the criteria named MODSEQ, and whether messages
    expunged meanwhile could not be tested (``lost``: the tagged OK then says
    [EXPUNGEISSUED], ``completed``)."""

    __slots__ = ("uids", "top", "with_modseq", "lost")

    def __init__(self, uids: list[int], top: int, with_modseq: bool, lost: bool = False) -> None:
        self.uids = uids
        self.top = top
        self.with_modseq = with_modseq
        self.lost = lost

    def completed(self, tag: str, what: str) -> Tagged:
        """The tagged OK of the command that searched."""
        if self.lost:
            return Tagged(tag, "OK", f"{what} completed (some messages were expunged)", Codes.EXPUNGEISSUED)
        return Tagged(tag, "OK", f"{what} completed")


async def find(conn: Connection, criteria: SearchKey) -> Found:
    """The messages of the selected mailbox that match ``criteria`` (SEARCH, SORT
    and THREAD), flags as they are now."""
    sel = conn.selected
    assert sel is not None
    sel.catch_up(conn.store)  # search the flags as they are now
    key = _saved_key(sel, criteria) if _mentions_saved(criteria) else criteria
    if _mentions(key, (Larger, Smaller)) and any(m.size < 0 for m in sel.msgs.values()):
        await asyncio.to_thread(sel.check_sizes, conn.store)
    with_modseq = _mentions(key, (ModSeqKey,))
    if with_modseq:
        conn.turn_on("CONDSTORE")
        conn.send(*sel.enable_condstore())
    all_uids, gone = sel.uids, sel.gone
    largest_seq = len(all_uids)
    largest_uid = all_uids[-1] if all_uids else 0
    test = mime.matcher(key, largest_seq, largest_uid)
    target = _Target(conn, sel)
    need = mime.content_needed(key)
    flt = mime.prefilter(key) if need != mime.CONTENT_NONE else None
    writes: list[asyncio.Future[None]] = []
    # A message another session expunged keeps its number here until its EXPUNGE is
    # sent (``gone``), and criteria still match it as they matched before (RFC 2180
    # §4.1.3, and as Dovecot's view does; imaptest: "SEARCH result missing seq"):
    # those of the index from the session's record of it, header criteria from the
    # header block the index keeps after the expunge (``message_expunge``).  What can
    # no longer be read (a header never kept, a body: the file is gone) is left out,
    # and the answer says so: OK [EXPUNGEISSUED] (RFC 5530 §3, as Dovecot answers).
    lost = False
    keys = mime.field_keys(key) if need == mime.CONTENT_HEADER else None
    if need == mime.CONTENT_NONE:
        numbered = list(enumerate(all_uids, 1))
        hits, top = _evaluate(test, target, sel, numbered, None)
    elif keys is not None:
        # HEADER and envelope keys only: from the strings they compare (``_Field``).
        fields, unknown = await _fields_of(conn, sel, all_uids, keys, writes)
        lost = bool(unknown)
        clauses, exact = mime.field_filter(key)
        msgs = sel.msgs
        unread = unknown.__contains__
        if clauses:
            picked = [u for u in _by_fields(fields, clauses) if u <= largest_uid and u in msgs and not unread(u)]
        else:
            picked = [u for u in all_uids if not unread(u)]
        if exact:
            hits, top = picked, max((msgs[u].modseq for u in picked), default=0)
        else:
            numbered = [(bisect_left(all_uids, u) + 1, u) for u in picked]
            hits, top = _evaluate(test, _Target(conn, sel, fields), sel, numbered, None)
    elif need == mime.CONTENT_HEADER or flt is not None:
        lowered, raw, unknown = await _lowered_headers(conn, sel, all_uids, writes)
        if flt is None:
            chosen = [u for u in all_uids if u not in unknown] if unknown else all_uids
        else:
            msgs = sel.msgs
            chosen = [u for u in _narrow(lowered, flt) if u in msgs]
        lost = bool(unknown)
        if need == mime.CONTENT_BODY and gone:
            kept = [u for u in chosen if u not in gone]
            lost = lost or len(kept) < len(chosen)
            chosen = kept
        numbered = [(bisect_left(all_uids, u) + 1, u) for u in chosen]
        missing = [u for u in chosen if u not in raw]
        if missing:
            db = conn.store.db
            assert db is not None
            every = len(missing) > _FETCH_ALL_ABOVE
            got = await asyncio.to_thread(db.message_headers_get, sel.box.id, None if every else missing)
            raw.update((u, got[u]) for u in missing if u in got)
        if need == mime.CONTENT_BODY:
            # The files are read: off the event loop, as other sessions go on.
            hits, top = await asyncio.to_thread(_evaluate, test, target, sel, numbered, raw)
        else:
            hits, top = _evaluate(test, target, sel, numbered, raw)
    else:
        numbered = [(i + 1, u) for i, u in enumerate(all_uids) if u not in gone]
        lost = bool(gone)
        hits, top = await asyncio.to_thread(_evaluate, test, target, sel, numbered, None)
    lost = lost or target.lost
    if writes:
        # The header blocks read from files go on into the index after the answer:
        # they are a cache (the next SEARCH finds them in memory meanwhile).
        _keep(asyncio.ensure_future(asyncio.gather(*writes, return_exceptions=True)))
    return Found(hits, top, with_modseq, lost)


def numbers_of(sel: Selected, uids: list[int], uid: bool) -> list[int]:
    """``uids`` as the client asked for them: UIDs, or message numbers."""
    if uid:
        return uids
    all_uids = sel.uids
    return [bisect_left(all_uids, u) + 1 for u in uids]


def extended(conn: Connection, tag: str, uid: bool, returns: tuple[str, ...], uids: list[int],
             numbers: list[int], with_modseq: bool, in_order: bool = False, partial: Any = None) -> None:
    """Answer RETURN (...) (RFC 4731 §3.1): one ESEARCH response, unless SAVE is the
    only option; SAVE keeps the result for "$" (RFC 5182 §2.4).  ``in_order``: SORT
    RETURN (RFC 5267 §3.2), ``uids`` and ``numbers`` in sort order; MIN and MAX
    are then the first and the last in that order, and ALL keeps it.  ``partial``
    (RFC 9394, a ``PartialRange``) picks a page of the result: PARTIAL (range set),
    and SAVE then keeps only that page (RFC 9394 §3.2).  UPDATE and CONTEXT
    (RFC 5267 §4) change nothing here; alone, UPDATE gets an ESEARCH without data."""
    sel = conn.selected
    assert sel is not None
    options = set(returns)
    options -= {"UPDATE", "CONTEXT"}
    if not options and "UPDATE" not in returns:
        options = {"ALL"}
    if "SAVE" in options:
        # RFC 5182 §2.4: with MIN and/or MAX but neither ALL nor COUNT, only the
        # messages these return are saved.
        if partial is not None:
            sel.saved = set(partial.pick(uids))
        elif options & {"ALL", "COUNT"} or not options & {"MIN", "MAX"}:
            sel.saved = set(uids)
        else:
            picked: set[int] = set()
            if uids and "MIN" in options:
                picked.add(uids[0] if in_order else uids[numbers.index(min(numbers))])
            if uids and "MAX" in options:
                picked.add(uids[-1] if in_order else uids[numbers.index(max(numbers))])
            sel.saved = picked
        options.discard("SAVE")
        if not options:
            return
    if in_order:
        low = numbers[0] if numbers else None
        high = numbers[-1] if numbers else None
    else:
        low = min(numbers) if numbers else None
        high = max(numbers) if numbers else None
    modseq: int | None = None
    if with_modseq and numbers and options:
        # RFC 7162 §3.1.5: the highest mod-sequence of the messages returned: all
        # of them for ALL and COUNT, else those MIN and MAX name.
        if options & {"ALL", "COUNT"}:
            shown = uids
        elif partial is not None and not options & {"MIN", "MAX"}:
            shown = partial.pick(uids)
        else:
            shown = [uids[numbers.index(n)] for n in (low if "MIN" in options else None,
                                                      high if "MAX" in options else None) if n is not None]
        modseq = max((sel.msgs[u].modseq for u in shown if u in sel.msgs), default=None)
    conn.send(ESearchData(
        tag, uid,
        min=low if "MIN" in options else None,
        max=high if "MAX" in options else None,
        all=tuple(numbers) if "ALL" in options and numbers else None,
        count=len(numbers) if "COUNT" in options else None,
        modseq=modseq,
        partial=(partial, tuple(partial.pick(numbers))) if partial is not None else None,
    ))


async def search(conn: Connection, cmd: Search) -> Tagged:
    sel = conn.selected
    assert sel is not None
    refused = context.reused(conn, cmd.tag, cmd.returns)
    if refused is not None:
        return refused
    found = await find(conn, cmd.criteria)
    numbers = numbers_of(sel, found.uids, cmd.uid)
    if cmd.returns is None and not sel.rev2:
        # RFC 7162 §3.1.5: with MODSEQ in the criteria, the highest mod-sequence of the
        # messages found follows the numbers.
        conn.send(SearchData(tuple(numbers), found.top if found.with_modseq and numbers else None))
    elif cmd.returns is None:
        # RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH, as RETURN (ALL).
        extended(conn, cmd.tag, cmd.uid, (), found.uids, numbers, found.with_modseq)
    else:
        extended(conn, cmd.tag, cmd.uid, cmd.returns, found.uids, numbers, found.with_modseq,
                 partial=cmd.partial)
        if "UPDATE" in cmd.returns:
            context.remember(conn, cmd.tag, cmd.uid, cmd.criteria, None, found.uids)
    return found.completed(cmd.tag, f"{'UID ' if cmd.uid else ''}SEARCH")


_PENDING: set[asyncio.Future[Any]] = set()


def _keep(future: asyncio.Future[Any]) -> None:
    _PENDING.add(future)
    future.add_done_callback(_kept)


def _kept(future: asyncio.Future[Any]) -> None:
    _PENDING.discard(future)
    if future.cancelled():
        return
    for result in future.result():
        if isinstance(result, BaseException):
            log.warning("event=header-cache-error error=%r", result)


HANDLERS: dict[str, Any] = {"SEARCH": search}
