"""CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, STORE, COPY and MOVE (RFC 3501 §6.4;
UNSELECT, RFC 3691; UIDPLUS, RFC 4315; MOVE, RFC 6851; CONDSTORE and QRESYNC, RFC 7162).
FETCH is in ``fetch.py``, SEARCH in ``search.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TYPE_CHECKING

from ...log import event
from ...mailstore import OverQuota

from ..proto import (
    Check,
    Close,
    Codes,
    Copy,
    CopyUid,
    Expunge,
    Fetch,
    FetchData,
    FlagsItem,
    HighestModSeq,
    Modified,
    ModSeqItem,
    Move,
    R,
    SequenceError,
    SequenceSet,
    Store,
    Tagged,
    UidBatches,
    UidBatchesData,
    UidExpunge,
    UidItem,
    Unselect,
    Untagged,
)
from ..search_context import private_change
from .authenticated import find_mailbox, no_permission, permitted_flags
from .search import keep_headers

if TYPE_CHECKING:
    from ..server import Connection
    from ..session import Selected

log = logging.getLogger("waypost.imap")


def named_messages(sel: Selected, cmd: Fetch | Store | Copy | Move) -> list[tuple[int, int]] | Tagged:
    """(message number, UID) of the messages a command names, or its NO when a number
    does not exist."""
    try:
        return sel.resolve(cmd.sequence, cmd.uid)
    except SequenceError as e:
        return R.NO_SUCH_MESSAGE.tagged(cmd.tag, text=str(e))


async def check(conn: Connection, cmd: Check) -> Tagged:
    return Tagged(cmd.tag, "OK", "CHECK completed")


async def close(conn: Connection, cmd: Close) -> Tagged:
    sel = conn.selected
    assert sel is not None
    if not sel.readonly and sel.may("e"):
        sel.catch_up(conn.store)  # \Deleted as it is now, whoever set it
        # RFC 3501 §6.4.2: expunge silently, no EXPUNGE responses.
        doomed = [sel.msgs[u] for u in sel.uids if "\\Deleted" in sel.msgs[u].flags and u not in sel.gone]
        await keep_headers(conn, sel, doomed)
        await asyncio.to_thread(conn.store.expunge, sel.box, doomed)
    conn.selected = None
    return Tagged(cmd.tag, "OK", "CLOSE completed")


async def unselect(conn: Connection, cmd: Unselect) -> Tagged:
    conn.selected = None
    return Tagged(cmd.tag, "OK", "UNSELECT completed")


async def expunge(conn: Connection, cmd: Expunge | UidExpunge) -> Tagged:
    sel = conn.selected
    assert sel is not None
    if sel.readonly:
        return Tagged(cmd.tag, "NO", "Mailbox is read-only", Codes.READ_ONLY)
    if not sel.may("e"):
        return no_permission(cmd.tag, "e")
    sel.catch_up(conn.store)  # \Deleted as it is now, whoever set or cleared it
    if isinstance(cmd, UidExpunge):
        wanted = {uid for _, uid in sel.resolve(cmd.sequence, uid=True)}
    else:
        wanted = set(sel.uids)
    doomed = [sel.msgs[u] for u in sel.uids
              if u in wanted and u not in sel.gone and "\\Deleted" in sel.msgs[u].flags]
    await keep_headers(conn, sel, doomed)
    uids = await asyncio.to_thread(conn.store.expunge, sel.box, doomed)
    conn.send(*sel.expunged_here(uids))
    if sel.qresync:
        # RFC 7162 §3.2.7: the tagged OK carries [HIGHESTMODSEQ], a value up to
        # which the client has now heard everything (so the rest is sent first).
        conn.send(*sel.refresh(conn.store, allow_expunge=True))
        return Tagged(cmd.tag, "OK", f"{cmd.name} completed", HighestModSeq(sel.modseq))
    return Tagged(cmd.tag, "OK", f"{cmd.name} completed")


async def store(conn: Connection, cmd: Store) -> Tagged:
    sel = conn.selected
    assert sel is not None
    targets = named_messages(sel, cmd)
    if isinstance(targets, Tagged):
        return targets
    if sel.readonly:
        return Tagged(cmd.tag, "NO", "Mailbox is read-only", Codes.READ_ONLY)
    flags = tuple(f for f in cmd.flags if f.upper() != "\\RECENT")
    if permitted_flags(sel.rights, flags) != flags or (cmd.mode == "" and not sel.may("stw")):
        return no_permission(cmd.tag, "s, t or w")
    sel.catch_up(conn.store)
    uids = [u for _, u in targets if u not in sel.gone]
    if cmd.unchanged_since is not None:
        conn.turn_on("CONDSTORE")
        sel.condstore = True
    if sel.seen_user is not None:
        # Another account's mailbox: \Seen is this user's own (RFC 4314 §5.1.2).
        has_seen = "\\Seen" in flags
        if cmd.mode == "+" and has_seen or cmd.mode == "" and has_seen:
            sel.seen.update(uids)
            await asyncio.to_thread(_seen_set, conn, sel, uids, True)
        elif cmd.mode == "-" and has_seen or cmd.mode == "" and not has_seen:
            sel.seen.difference_update(uids)
            await asyncio.to_thread(_seen_set, conn, sel, uids, False)
        flags = tuple(f for f in flags if f != "\\Seen")
        private_change(sel, uids)  # search contexts (RFC 5267) test them again
    if sel.seen_user is not None and cmd.mode == "":
        # The shared flags are replaced, the owner's \Seen kept as it is.
        owner_seen = [u for u in uids if "\\Seen" in sel.msgs[u].flags]
        rest = [u for u in uids if "\\Seen" not in sel.msgs[u].flags]
        records, refused = await asyncio.to_thread(conn.store.store, sel.box, rest, flags, "", cmd.unchanged_since)
        if owner_seen:
            more, more_refused = await asyncio.to_thread(conn.store.store, sel.box, owner_seen,
                                                         flags + ("\\Seen",), "", cmd.unchanged_since)
            records, refused = records + more, refused + more_refused
    else:
        records, refused = await asyncio.to_thread(conn.store.store, sel.box, uids, flags, cmd.mode,
                                                   cmd.unchanged_since)
    sel.note_keywords(flags)
    for m in records:  # the records hold what other sessions set since catch_up too
        sel.note_keywords(m.flags)
    conn.send(*sel.announce_keywords())  # RFC 3501 §7.2.6: before a FETCH shows them
    out = []
    for m in records:
        if m.uid not in sel.msgs:
            continue
        sel.own_msgs()[m.uid] = m
        seq = sel.seq_of(m.uid)
        if seq is None:
            continue
        items: tuple[FlagsItem | UidItem | ModSeqItem, ...] = ()
        if not cmd.silent:
            items = (FlagsItem(sel.flags_of(m.uid)),)
        if cmd.uid and (items or sel.condstore):
            items = (UidItem(m.uid),) + items
        if sel.condstore:
            items += (ModSeqItem(m.modseq),)
        if items:
            out.append(FetchData(seq, items))
            sel.owed.discard(m.uid)
    conn.send(*out)
    if refused:
        numbers = refused if cmd.uid else [sel.seq_of(u) or 0 for u in refused]
        return Tagged(cmd.tag, "OK", "Conditional STORE failed for some messages",
                      Modified(SequenceSet.from_numbers(n for n in numbers if n)))
    return Tagged(cmd.tag, "OK", "STORE completed")


def _seen_set(conn: Connection, sel: Any, uids: list[int], seen: bool) -> None:
    if conn.store.db is not None and sel.may("s"):
        conn.store.db.seen_set(sel.box.id, sel.seen_user, uids, seen)


async def copy(conn: Connection, cmd: Copy | Move) -> Tagged:
    sel = conn.selected
    assert sel is not None
    targets = named_messages(sel, cmd)
    if isinstance(targets, Tagged):
        return targets
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return Tagged(cmd.tag, "NO", "No such mailbox", Codes.TRYCREATE)
    if not ref.may("i"):
        return no_permission(cmd.tag, "i")
    dst = ref.box
    is_move = cmd.name == "MOVE"
    sel.catch_up(conn.store)  # copy the flags as they are now
    if is_move and sel.readonly:
        return Tagged(cmd.tag, "NO", "Mailbox is read-only", Codes.READ_ONLY)
    if is_move and not sel.may("te"):
        return no_permission(cmd.tag, "t and e")
    msgs = [sel.msgs[u] for _, u in targets if u not in sel.gone]
    if len(msgs) < len(targets):
        return Tagged(cmd.tag, "NO", "Some of the messages were expunged", Codes.EXPUNGEISSUED)
    if not msgs:
        return Tagged(cmd.tag, "OK", f"{cmd.name} completed (nothing to do)")
    # A MOVE within one account adds nothing to its usage: never refused for quota.
    same_owner = (dst.domain, dst.account) == (sel.box.domain, sel.box.account)
    try:
        copies = await asyncio.to_thread(conn.store.copy, sel.box, msgs, dst,
                                         _copied_flags(sel, msgs, ref.rights), not (is_move and same_owner))
    except OverQuota:  # RFC 9208 §4.1
        event(log, "imap-over-quota", peer=conn.peer, mailbox=dst.name, command=cmd.name)
        return Tagged(cmd.tag, "NO", "Over quota", Codes.OVERQUOTA)
    except FileNotFoundError:
        return Tagged(cmd.tag, "NO", "Some of the messages were expunged", Codes.EXPUNGEISSUED)
    except OSError as e:
        return Tagged(cmd.tag, "NO", f"Cannot copy: {e.strerror}", Codes.SERVERBUG)
    code = CopyUid(dst.uidvalidity, SequenceSet.from_numbers(m.uid for m in msgs),
                   SequenceSet.from_numbers(c.uid for c in copies))
    if len({m.uid for m in msgs}) != len(msgs) or len(copies) != len(msgs):
        code = None  # type: ignore[assignment]
    if not is_move:
        return Tagged(cmd.tag, "OK", "COPY completed", code)
    # RFC 6851 §4.3: the COPYUID goes in an untagged OK before the EXPUNGEs.
    if code is not None:
        conn.send(Untagged("OK", "Moved", code))
    await keep_headers(conn, sel, msgs)
    uids = await asyncio.to_thread(conn.store.expunge, sel.box, msgs)
    conn.send(*sel.expunged_here(uids))
    return Tagged(cmd.tag, "OK", "MOVE completed")


#: UIDBATCHES: the smallest batch taken (a smaller one is NO [TOOFEW]) and the most
#: messages one command may cover (its batches times their size, or every message
#: when all batches are asked for; beyond, NO [TOOMANY]).  The draft's floor for the
#: latter is 100,000.
MIN_UID_BATCH = 500
MAX_UID_BATCH_MESSAGES = 100_000


async def uidbatches(conn: Connection, cmd: UidBatches) -> Tagged:
    """The UID ranges that cut the messages this session shows into batches of
    ``cmd.size``, newest first: each range from just below the previous one down to
    its batch's lowest UID, the last down to UID 1, so that they tile the UID space
    (what Stalwart and Cyrus answer).  A batch range past the last batch gives no
    range; nothing is saved for "$"."""
    sel = conn.selected
    assert sel is not None
    if cmd.size < MIN_UID_BATCH:
        return Tagged(cmd.tag, "NO", f"The smallest batch is {MIN_UID_BATCH} messages", Codes.TOOFEW)
    first, last = cmd.batches or (1, None)
    if last is not None and first > last:
        return Tagged(cmd.tag, "BAD", "The batch range goes from the lower to the higher", Codes.CLIENTBUG)
    uids = [u for u in sel.uids if u not in sel.gone]
    count = len(uids) if last is None else (last - first + 1) * cmd.size
    if count > MAX_UID_BATCH_MESSAGES:
        return Tagged(cmd.tag, "NO", f"At most {MAX_UID_BATCH_MESSAGES} messages in one UIDBATCHES",
                      Codes.TOOMANY)
    total = -(-len(uids) // cmd.size)
    stop = total if last is None else min(last, total)
    ranges: list[tuple[int, int]] = []
    high = uids[-1] if uids else 0
    for batch in range(stop):
        end = min((batch + 1) * cmd.size, len(uids))
        low = 1 if end == len(uids) else uids[len(uids) - end]
        if batch + 1 >= first:
            ranges.append((high, low))
        high = low - 1
    conn.send(UidBatchesData(cmd.tag, tuple(ranges)))
    return Tagged(cmd.tag, "OK", "UIDBATCHES completed")


def _copied_flags(sel: Any, msgs: list[Any], rights: str) -> list[tuple[str, ...]] | None:
    """The flags the copies get: as they are, when source and target are both this
    user's own; else the flags this user sees, less those the target's rights do not
    allow (RFC 4314 §4: COPY keeps only permitted flags)."""
    if sel.seen_user is None and rights == "lrswipkxtea":
        return None
    return [permitted_flags(rights, tuple(f for f in sel.flags_of(m.uid) if f != "\\Recent")) for m in msgs]


HANDLERS: dict[str, Any] = {
    "CHECK": check,
    "CLOSE": close,
    "UNSELECT": unselect,
    "EXPUNGE": expunge,
    "UID EXPUNGE": expunge,
    "STORE": store,
    "COPY": copy,
    "MOVE": copy,
    "UIDBATCHES": uidbatches,
}
