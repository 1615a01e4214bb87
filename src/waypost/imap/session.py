"""What one IMAP connection knows: who is logged in, and the selected mailbox as this
session has shown it to its client.

RFC 3501 §5.2 and §7.4.1: the server must keep the client's view of message numbers
consistent.  ``Selected`` holds that view (UIDs in sequence order, flags last sent)
and, from the index, works out the untagged responses that bring the client up to
date: EXPUNGE (only where a command allows it), EXISTS and RECENT for new messages,
FETCH for flags another session changed.  The index is asked cheaply first
(``mailbox_state``: UIDNEXT, HIGHESTMODSEQ and the count) and in full only when
something moved.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import AbstractSet, Any, Callable, Iterable, Iterator, Mapping, MutableMapping

from ..db import Database, MailboxRecord, MessageRecord
from ..mailstore import Mailstore
from .search_context import expunging
from .proto import (
    ExistsData,
    ExpungeData,
    FetchData,
    FlagsData,
    FlagsItem,
    HighestModSeq,
    ModSeqItem,
    PermanentFlags,
    RecentData,
    Response,
    SequenceSet,
    UidItem,
    Untagged,
    VanishedData,
)

__all__ = ["Account", "Selected"]

#: The flags every mailbox offers (RFC 3501 §2.3.2) besides keywords.
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class Overlay(MutableMapping[int, MessageRecord]):
    """A session's message records by UID: the worker's shared records (``base``,
    read-only, shared by every session that selected the mailbox at one state) with this
    session's own changes on top: ``own``, the records it changed or holds that the base
    lacks, and ``hidden``, UIDs of the base it does not show.  A delivery to a mailbox of
    100,000 messages watched by 1,000 sessions adds an entry to each, where a copy of the
    base would be 100,000 entries each.  A session whose changes pass a quarter of the
    base takes a plain dict of its own instead (``Selected.own_msgs``): the look-ups here
    cost a Python call each."""

    __slots__ = ("base", "own", "hidden", "_len")

    def __init__(self, base: Mapping[int, MessageRecord]) -> None:
        self.base = base
        self.own: dict[int, MessageRecord] = {}
        self.hidden: set[int] = set()
        self._len = len(base)

    def __getitem__(self, uid: int) -> MessageRecord:
        m = self.own.get(uid)
        if m is None:
            if uid in self.hidden:
                raise KeyError(uid)
            m = self.base[uid]
        return m

    def __contains__(self, uid: object) -> bool:
        return uid in self.own or (uid not in self.hidden and uid in self.base)

    def get(self, uid: int, default: Any = None) -> Any:  # (Mapping's goes through an exception)
        m = self.own.get(uid)
        if m is None:
            if uid in self.hidden:
                return default
            m = self.base.get(uid, default)
        return m

    def __setitem__(self, uid: int, m: MessageRecord) -> None:
        if uid not in self:
            self._len += 1
        self.own[uid] = m

    def __delitem__(self, uid: int) -> None:
        if uid not in self:
            raise KeyError(uid)
        self.own.pop(uid, None)
        if uid in self.base:
            self.hidden.add(uid)
        self._len -= 1

    def __iter__(self) -> Iterator[int]:
        own, hidden = self.own, self.hidden
        for uid in self.base:
            if uid not in own and uid not in hidden:
                yield uid
        yield from own

    def __len__(self) -> int:
        return self._len

    def hide(self, uids: Iterable[int]) -> None:
        """Take these UIDs of the base out of view (records of its own stay)."""
        for uid in uids:
            if uid not in self.hidden and uid not in self.own and uid in self.base:
                self.hidden.add(uid)
                self._len -= 1

    @property
    def weight(self) -> int:
        """Entries of this session's own (against the base's)."""
        return len(self.own) + len(self.hidden)


#: The RFC 5182 saved result of a session that saved none (shared: ``Selected.saved``).
_NO_UIDS: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Account:
    domain: str
    name: str
    created: float = 0.0  # the account object's creation time: a name made again is another account

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"


@dataclass(slots=True)
class Selected:
    box: MailboxRecord
    readonly: bool
    condstore: bool = False
    uids: array[int] = field(default_factory=lambda: array("I"))  # sequence number - 1 -> UID
    # Whether ``uids`` is this session's own: SELECT shares the worker's array (a
    # 100,000-message mailbox's is 400 KB), copied when the session first changes it.
    uids_own: bool = True
    # The message records by UID (``msgs``): the worker's shared listing, read-only,
    # until this session changes one (``own_msgs`` copies it then); None until a
    # command needs them (a SELECT answers from the UIDs and the index's counts).
    records: Mapping[int, MessageRecord] | None = None
    opened: tuple[int, int, int] = (0, 0, 0)               # the state ``uids`` were read at
    recent: set[int] = field(default_factory=set)
    modseq: int = 0                                        # everything up to here is shown
    state: tuple[int, int, int] = (0, 0, 0)                # (uidnext, highestmodseq, count) seen
    gone: set[int] = field(default_factory=set)            # expunged, EXPUNGE not sent yet
    held_modseq: int = 0                                   # with ``gone``: the mod-sequence before them
    keywords: set[str] = field(default_factory=set)        # announced in FLAGS
    new_keywords: set[str] = field(default_factory=set)    # in the index, FLAGS not sent yet
    rights: str = "lrswipkxtea"
    # A mailbox of another account: \Seen is this user's own (RFC 4314 §5.1.2,
    # per-user \Seen), kept in ``seen``; stored only with the "s" right.
    seen_user: str | None = None
    seen: set[int] = field(default_factory=set)
    owed: set[int] = field(default_factory=set)            # flags changed elsewhere, FETCH not sent yet
    arrived: list[int] = field(default_factory=list)       # new messages, EXISTS not sent yet
    deleted: bool = False                                  # the mailbox was deleted under us
    # RFC 5182: the UIDs the last SEARCH RETURN (SAVE) found ("$"); empty when the
    # mailbox is selected.  Expunged ones drop out where "$" is read.
    saved: AbstractSet[int] = _NO_UIDS  # (replaced, never changed in place: one shared empty set)
    # RFC 5267: search contexts kept up to date, by tag (``commands/context.py``).
    contexts: dict[str, Any] = field(default_factory=dict)
    # IMAP4rev2 enabled (RFC 9051 Appendix E): no RECENT responses, no \Recent flag.
    rev2: bool = False
    # The mailbox's first unclaimed \Recent UID as last read (``catch_up``): new
    # messages below it were claimed by another session already, without a write.
    recent_mark: int = 0
    # QRESYNC enabled (RFC 7162 §3.2.10): VANISHED (UIDs) instead of EXPUNGE.
    qresync: bool = False
    _store: Mailstore | None = None  # where ``msgs`` are read from when first needed

    @classmethod
    def open(cls, store: Mailstore, box: MailboxRecord, readonly: bool, condstore: bool,
             rights: str = "lrswipkxtea", seen_user: str | None = None, fresh: bool = False) -> Selected:
        """``fresh``: ``box`` was read from the index by this command, just before (the
        SELECT command's look-up): its UIDNEXT, HIGHESTMODSEQ and count, read in one
        statement, are a state of the index as good as a new read, unless bringing the
        index in line with the Maildir changes it now."""
        changed = store.sync(box)
        db = store.db
        assert db is not None
        # The UIDs and keywords at the index's state, and the records when this worker
        # has them at hand: shared by its sessions; each copies the UIDs (one memory
        # copy) and shares the records until it changes one.
        known = (box.uidnext, box.highestmodseq, box.exists) if fresh and not changed else None
        selection = store.selection(box, known)
        state = selection.state
        # \Recent only for messages this session knows (below the state's UIDNEXT):
        # one that arrives meanwhile is claimed by the session that first sees it.
        # The mark only grows: one read at or above the state's UIDNEXT leaves nothing
        # to claim, and the claim's read (a write transaction on SQLite) is saved.
        if seen_user:
            first_recent = box.uidnext
        elif readonly:
            first_recent = box.recent_uid if fresh else _recent_from(db, box)
        elif box.recent_uid >= state[0]:
            first_recent = box.recent_uid
        else:
            first_recent = db.message_claim_recent(box.id, state[0])
        sel = cls(box, readonly, condstore, rights=rights, seen_user=seen_user)
        if seen_user is not None:
            sel.seen = db.seen_get(box.id, seen_user)
        sel.uids, sel.uids_own = selection.uids, False  # (read-only: see ``own_uids``)
        sel.records = selection.records
        sel._store = store
        sel.opened = state
        # RFC 3501 §6.3.2: EXAMINE answers like SELECT, \Recent included; it only
        # does not take the messages' \Recent away from the sessions after it.
        sel.recent = set(sel.uids[bisect.bisect_left(sel.uids, first_recent):])
        sel.modseq = state[1]
        sel.state = state
        sel.keywords.update(selection.keywords)
        return sel

    @property
    def loaded(self) -> bool:
        """Whether the message records are at hand (else ``load`` reads them)."""
        return self.records is not None

    @property
    def msgs(self) -> Mapping[int, MessageRecord]:
        """The records of the messages this session shows, by UID.  Read-only: a
        change goes through ``own_msgs``.  Read from the index the first time
        (callers on the event loop call ``load`` in a thread before)."""
        records = self.records
        if records is None:
            records = self._load()
        return records

    def own_uids(self) -> array[int]:
        """``uids`` as this session's own array, to change (copied the first time)."""
        if not self.uids_own:
            self.uids, self.uids_own = self.uids[:], True
        return self.uids

    def own_msgs(self) -> MutableMapping[int, MessageRecord]:
        """The records as this session's own, to change: the worker's shared records
        with this session's changes laid over them (``Overlay``), not a copy; a dict of
        its own once its changes pass a quarter of the shared ones."""
        records = self.msgs
        if isinstance(records, Overlay):
            if records.weight > len(records.base) // 4 + 64:
                records = self.records = dict(records)
            return records
        if not isinstance(records, dict):
            records = self.records = Overlay(records)
        return records

    def load(self, store: Mailstore) -> None:
        """Read the message records if they are not at hand (in a thread: the first
        read of a 100,000-message mailbox in a worker takes a while)."""
        if self.records is None:
            self._store = store
            self._load()
        self._store = None  # loaded: the session holds no reference to the store

    def _load(self) -> Mapping[int, MessageRecord]:
        store = self._store
        assert store is not None
        self._store = None
        state, listing = store.listing(self.box)
        index = store.listing_index(self.box.id, listing)
        by_uid = index.by_uid
        if state == self.opened and len(self.uids) == state[2] and not self.arrived:
            # The very messages this session shows: the worker's records, shared.
            self.records = MappingProxyType(by_uid)
            return self.records
        # The mailbox moved on since SELECT: the worker's records with this session's
        # view laid over them (``Overlay``, no copy), the messages it shows and those
        # it has not announced yet.  Those that came after them are hidden.  One
        # expunged meanwhile has no record left: it is shown as expunged (no flags, no
        # file; a FETCH answers what RFC 2180 §4.1.3 allows) until its EXPUNGE is
        # sent.  A record changed since is owed its FETCH: the client may hold the
        # flags of the mod-sequence SELECT announced (RFC 7162 §3.2).
        own = Overlay(MappingProxyType(by_uid))
        since = self.opened[1]
        last = max(self.uids[-1] if self.uids else 0, max(self.arrived, default=0))
        listed = index.uids  # ascending
        upto = bisect.bisect_right(listed, last)
        own.hide(listed[upto:])  # came after what this session knows
        # Every listed UID up to ``last`` is one this session shows (UIDs only grow; one
        # it was told is expunged is no longer listed), so when the counts agree the
        # two are the same; else the difference: shown but expunged since, or (not
        # expected) listed and not shown.
        if len(self.uids) + len(self.arrived) != upto:
            view = {*self.uids, *self.arrived}
            own.hide(uid for uid in listed[:upto] if uid not in view)
            for uid in view:
                if uid not in by_uid:
                    own[uid] = MessageRecord(uid, _EXPUNGED, "new", (), since, 0, 0.0)
        if since < state[1]:
            for changed in store.changes(self.box.id, since, state)[0]:
                m = by_uid.get(changed.uid)
                if m is not None and m.modseq > since and changed.uid in own:
                    self.owed.add(m.uid)
                    self.note_keywords(m.flags)
        self.records = own
        return own

    def all_seen(self, db: Database, box: MailboxRecord | None = None) -> bool:
        """Whether every message this session shows has \\Seen (the owner's view), from
        the index's counts: true only when the index is still at the state the session
        shows (a flag change moves HIGHESTMODSEQ, a new message UIDNEXT) and counts no
        unseen message.  ``box``: a row of the mailbox read before, used when it is at
        that very state (its counts were read with it, in one statement)."""
        if box is None or (box.uidnext, box.highestmodseq, box.exists) != self.state:
            box = db.mailbox_by_id(self.box.id)
        return (box is not None and box.unseen == 0 and not self.gone and not self.arrived
                and (box.uidnext, box.highestmodseq, box.exists) == self.state and box.exists == len(self.uids))

    # -- numbers --------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, sequence: SequenceSet, uid: bool) -> list[tuple[int, int]]:
        """(sequence number, UID) of the messages a set names, in mailbox order.
        Raises ``SequenceError`` for message numbers that do not exist.  "$" (RFC
        5182) names the saved UIDs still here, for UID commands and others alike."""
        out: list[tuple[int, int]] = []
        if sequence.saved:
            for u in sorted(self.saved):
                seq = self.seq_of(u)
                if seq is not None:
                    out.append((seq, u))
            return out
        if uid:
            largest = self.uids[-1] if self.uids else 0
            if not self.uids:
                return out
            for r in sequence.resolve(largest, uid=True):
                lo = bisect.bisect_left(self.uids, r.start)
                hi = bisect.bisect_right(self.uids, r.stop - 1)
                out.extend((i + 1, self.uids[i]) for i in range(lo, hi))
            return out
        for r in sequence.resolve(len(self.uids)):
            out.extend((n, self.uids[n - 1]) for n in r)
        return out

    def flags_of(self, uid: int) -> tuple[str, ...]:
        flags = self.msgs[uid].flags
        if self.seen_user is not None:
            flags = tuple(f for f in flags if f != "\\Seen") + (("\\Seen",) if uid in self.seen else ())
        if uid in self.recent and not self.rev2:
            return flags + ("\\Recent",)
        return flags

    def check_sizes(self, store: Mailstore, uids: list[int] | None = None) -> None:
        """Make the sizes of these messages (all when None) the sizes as sent."""
        msgs = [self.msgs[u] for u in (self.uids if uids is None else uids) if u in self.msgs]
        checked = store.sized(self.box, msgs)
        if checked:
            self.own_msgs().update(checked)

    def enable_condstore(self) -> list[Response]:
        """A CONDSTORE enabling command (RFC 7162 §3.1: FETCH MODSEQ or
        CHANGEDSINCE, SEARCH MODSEQ...) with this mailbox selected: the first one
        is answered with the mailbox's [HIGHESTMODSEQ] before its tagged reply."""
        if self.condstore:
            return []
        self.condstore = True
        return [Untagged("OK", "Highest", HighestModSeq(self.held_modseq if self.gone else self.modseq))]

    def is_seen(self, uid: int) -> bool:
        return "\\Seen" in self.flags_of(uid)

    def may(self, rights: str) -> bool:
        return all(r in self.rights for r in rights)

    def permanent_flags(self) -> tuple[str, ...]:
        return SYSTEM_FLAGS + tuple(sorted(self.keywords)) + ("\\*",)

    def all_flags(self) -> tuple[str, ...]:
        return SYSTEM_FLAGS + tuple(sorted(self.keywords))

    def permitted_flags(self) -> tuple[str, ...]:
        """PERMANENTFLAGS: none when read-only; else, by RFC 4314 §4, \\Seen needs
        "s", \\Deleted "t", every other flag (and "\\*") "w"."""
        if self.readonly:
            return ()

        def right(flag: str) -> str:
            f = flag.lower()
            return "s" if f == "\\seen" else "t" if f == "\\deleted" else "w"
        return tuple(f for f in self.permanent_flags() if right(f) in self.rights)

    def note_keywords(self, flags: tuple[str, ...] | list[str]) -> None:
        """Keywords of ``flags`` this session's client has not been told of are owed
        a FLAGS response (``announce_keywords``)."""
        for f in flags:
            if not f.startswith("\\") and f not in self.keywords:
                self.new_keywords.add(f)

    def announce_keywords(self) -> list[Response]:
        """RFC 3501 §7.2.6: FLAGS (and PERMANENTFLAGS) naming the keywords that are
        new to the client; sent before any FETCH response that shows them."""
        if not self.new_keywords:
            return []
        self.keywords |= self.new_keywords
        self.new_keywords.clear()
        return [FlagsData(self.all_flags()),
                Untagged("OK", "Flags permitted", PermanentFlags(self.permitted_flags()))]

    # -- bringing the client up to date -------------------------------------------------

    def expunged_here(self, uids: list[int], recent: bool = True) -> list[Response]:
        """This session expunged ``uids``: EXPUNGE responses, highest number first
        so that each number is still right when the client reads it; the
        REMOVEFROM of search contexts (RFC 5267) come first.  With QRESYNC one
        VANISHED names them all by UID (RFC 7162 §3.2.10).  When a message that was
        \\Recent here went, a RECENT response with the new count follows (as Dovecot
        sends it: a client counts \\Recent by RECENT responses), unless ``recent`` is
        False (the caller sends one itself)."""
        out: list[Response] = expunging(self, uids) if self.contexts else []
        recent_before = len(self.recent)
        vanished: list[int] = []
        for uid in sorted(uids, reverse=True):
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.own_uids()[seq - 1]
            self.own_msgs().pop(uid, None)
            self.recent.discard(uid)
            self.gone.discard(uid)
            self.owed.discard(uid)
            if self.qresync:
                vanished.append(uid)
            else:
                out.append(ExpungeData(seq))
        if vanished:
            out.append(VanishedData(SequenceSet.from_numbers(vanished)))
        if recent and not self.rev2 and len(self.recent) != recent_before:
            out.append(RecentData(len(self.recent)))
        return out

    def uid_test(self, uids: SequenceSet) -> Callable[[int], bool]:
        """Whether a UID is in a UID set, "*" standing for every UID the mailbox has
        given (UIDNEXT - 1), so that "1:*" also names the last one expunged."""
        spans = uids.resolve(max(self.state[0] - 1, 1), uid=True)  # sorted, apart
        starts = [r.start for r in spans]

        def named(u: int) -> bool:
            i = bisect.bisect_right(starts, u) - 1
            return i >= 0 and u in spans[i]
        return named

    def vanished_since(self, db: Database, modseq: int, within: SequenceSet | None) -> list[Response]:
        """``VANISHED (EARLIER)`` for the UIDs expunged after ``modseq`` (RFC 7162
        §3.2.5.1 and §3.2.6), only those ``within`` when given.  The index keeps each
        expunge's UID and mod-sequence for ``imap.expunged_keep``: exact for a
        ``modseq`` since then; from before it (the records were pruned), every UID
        of the range that is not in the mailbox, which may name UIDs the client never
        had (as RFC 7162 §3.2.5.1 allows), but never misses one."""
        _, gone = db.message_changes(self.box.id, modseq)
        if gone is None:
            return self._vanished_all(db, within)
        if within is not None:
            named = self.uid_test(within)
            gone = [u for u in gone if named(u)]
        if not gone:
            return []
        return [VanishedData(SequenceSet.from_numbers(gone), earlier=True)]

    def _vanished_all(self, db: Database, within: SequenceSet | None) -> list[Response]:
        """``VANISHED (EARLIER)`` naming every UID below UIDNEXT (as this session last
        read it), ``within`` when given, that is not in the mailbox now."""
        top = self.state[0] - 1
        if top < 1:
            return []
        spans = within.resolve(top, uid=True) if within is not None else (range(1, top + 1),)
        present = db.message_uids(self.box.id)
        items: list[tuple[int | None, int | None]] = []
        for span in spans:
            at, hi = span.start, span.stop - 1
            i = bisect.bisect_left(present, at)
            while at <= hi:
                if i < len(present) and present[i] <= hi:
                    if present[i] > at:
                        items.append((at, present[i] - 1))
                    at = present[i] + 1
                    i += 1
                else:
                    items.append((at, hi))
                    break
        if not items:
            return []
        return [VanishedData(SequenceSet(tuple(items)), earlier=True)]

    def catch_up(self, store: Mailstore, woken: int | None = None) -> bool:
        """Read what changed in the index without telling the client yet: current
        flags into ``msgs`` (their FETCH is owed: ``owed``), expunged UIDs into
        ``gone``, new messages into ``arrived`` (numbered only when EXISTS is sent).
        Commands that act on flags (SEARCH, COPY, EXPUNGE, CLOSE, STORE) call this
        first, so they never act on stale flags.  False when the mailbox is gone.
        ``woken``: the bus dispatch of this mailbox's topic that woke the session
        (IDLE): the mailbox row and state are shared with the worker's other sessions
        woken by it (``Mailstore.woken_state``)."""
        db = store.db
        assert db is not None
        shared = store.woken_state(self.box.id, woken) if woken is not None else None
        if shared is not None:
            fresh_box, state = shared
            if fresh_box.folder != self.box.folder or fresh_box.name != self.box.name:
                self.box = fresh_box
            self.recent_mark = fresh_box.recent_uid
        else:
            box_id = self.box.id
            row = db.mailbox_by_id(box_id)
            if row is None:
                return False
            if row.folder != self.box.folder or row.name != self.box.name:
                self.box = row  # renamed meanwhile: its files moved with it
            self.recent_mark = row.recent_uid
            if store.sync(self.box, wait=False):
                indexed = db.mailbox_state(self.box.id)  # files were just indexed
                if indexed is None:
                    return False
                state = indexed
            else:
                state = (row.uidnext, row.highestmodseq, row.exists)
            if woken is not None:
                store.keep_woken(box_id, woken, row, state)
        if state == self.state:
            return True
        # Shared by this worker's sessions that ask the same at once (a delivery to a
        # mailbox hundreds of sessions IDLE on is read once per worker).
        changed, expunged = store.changes(self.box.id, self.modseq, state)
        if expunged is None:
            # The expunge records since this session's mod-sequence were pruned: what it
            # shows that the index no longer holds has gone.
            # (Its UIDs, not ``msgs``: the records need not be read for this.)
            present = set(db.message_uids(self.box.id))
            expunged = [uid for uid in (*self.uids, *self.arrived) if uid not in present]
        held = [uid for uid in expunged if uid in self.msgs and uid not in self.gone]
        if held and not self.gone:
            self.held_modseq = self.modseq  # below the first expunge not yet told
        self.gone.update(held)
        self.modseq = max(self.modseq, state[1])
        self.state = state
        last = self.uids[-1] if self.uids else 0
        for m in changed:
            self.note_keywords(m.flags)
            if m.uid > last:
                if m.uid not in self.msgs:
                    self.arrived.append(m.uid)
                self.own_msgs()[m.uid] = m
                continue
            old = self.msgs.get(m.uid)
            if old is None or m.uid in self.gone:
                continue
            self.own_msgs()[m.uid] = m
            if set(old.flags) != set(m.flags) or (self.condstore and old.modseq != m.modseq):
                self.owed.add(m.uid)
        return True

    def refresh(self, store: Mailstore, allow_expunge: bool, woken: int | None = None) -> list[Response]:
        """The untagged responses that tell the client what changed since it last
        heard (RFC 3501 §7.4.1: no EXPUNGE during FETCH, STORE or SEARCH); ``woken``:
        see ``catch_up``."""
        if not self.catch_up(store, woken):
            self.deleted = True
            return []
        db = store.db
        assert db is not None
        out: list[Response] = self.announce_keywords()
        recent_before = len(self.recent)
        if allow_expunge and self.gone:
            out += self.expunged_here(sorted(self.gone), recent=False)
        for uid in sorted(self.owed):
            seq = self.seq_of(uid)
            if seq is None or uid in self.gone:
                continue
            m = self.msgs[uid]
            items: tuple[FlagsItem | UidItem | ModSeqItem, ...] = (UidItem(uid), FlagsItem(self.flags_of(uid)))
            if self.condstore:
                items += (ModSeqItem(m.modseq),)
            out.append(FetchData(seq, items))
        self.owed.clear()
        if self.qresync and self.gone:
            # RFC 7162 §3.2: MODSEQs sent while a VANISHED waits come with a
            # [HIGHESTMODSEQ] below the expunge's, so that a client that is cut off
            # now resynchronises from before it.
            out.append(Untagged("OK", "Highest", HighestModSeq(self.held_modseq)))
        if self.arrived:
            fresh = sorted(self.arrived)
            self.arrived.clear()
            if self.uids_own:
                self.uids.extend(fresh)
            else:  # (one new array, not a copy and then a larger one)
                self.uids, self.uids_own = self.uids + array(self.uids.typecode, fresh), True
            if self.seen_user is None:
                # Claimed by another session already (the mark only grows): no write.
                if self.readonly:
                    first = _recent_from(db, self.box)
                elif self.recent_mark > fresh[-1]:
                    first = self.recent_mark
                else:
                    first = db.message_claim_recent(self.box.id, fresh[-1] + 1)
                    if woken is not None:
                        # The worker's other sessions woken by the same dispatch read
                        # the mark from the row they share: now claimed, they write
                        # nothing (hundreds of write transactions on the event loop).
                        store.woken_claimed(self.box.id, woken, fresh[-1] + 1)
                self.recent.update(u for u in fresh if u >= first)
            out.append(ExistsData(len(self.uids)))
            if not self.rev2:
                out.append(RecentData(len(self.recent)))
        elif not self.rev2 and len(self.recent) != recent_before:
            out.append(RecentData(len(self.recent)))  # \Recent messages expunged
        return out


#: The file name of the record of a message expunged before this session read the
#: records (``Selected._load``): no Maildir file has a name starting with ".".
_EXPUNGED = ".expunged"


def _recent_from(db: Database, box: MailboxRecord) -> int:
    """The first UID no session has claimed as recent, without claiming it (for a
    read-only session)."""
    fresh = db.mailbox_by_id(box.id)
    return (fresh or box).recent_uid
