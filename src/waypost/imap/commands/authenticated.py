"""SELECT, EXAMINE, STATUS, APPEND, NAMESPACE, ENABLE and IDLE (RFC 3501 §6.3; RFC 2342,
RFC 5161, RFC 2177; CONDSTORE and QRESYNC, RFC 7162).  The commands that change the mailbox list
are in ``mailboxes.py``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, TYPE_CHECKING

from ...db import MailboxRecord, NotFound
from ...log import event
from ...mailstore import OverQuota
from ...mailstore.access import MailboxRef
from .. import message as mime
from ..objectid import mailbox_id
from ..proto import (
    Code,
    Append,
    AppendUid,
    BadUrl,
    CatUrl,
    Codes,
    Enable,
    EnabledData,
    Examine,
    FetchData,
    FlagsData,
    FlagsItem,
    HighestModSeq,
    Idle,
    ModSeqItem,
    Namespace,
    NamespaceData,
    PermanentFlags,
    QresyncParams,
    RecentData,
    ExistsData,
    Section,
    Select,
    SequenceSet,
    Status,
    StatusData,
    Tagged,
    UidItem,
    UidNext,
    UidValidity,
    Unseen,
    Untagged,
    utf7_decode,
    parse_imap_url,
    utf7_encode,
)
from ..session import Selected

if TYPE_CHECKING:
    from ..server import Connection

log = logging.getLogger("waypost.imap")

#: RFC 5161 §4: what ENABLE can turn on here.
ENABLEABLE = ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2")  # RFC 7162, RFC 6855 §3, RFC 9051 §6.3.1


def decode_name(wire: str, utf8: bool = False) -> str:
    """A mailbox name from the wire (modified UTF-7, RFC 3501 §5.1.3); ValueError when
    it is not valid modified UTF-7.  ``utf8`` (``utf8_names``): the name is UTF-8 as
    it stands (RFC 6855 §3)."""
    if wire.upper() == "INBOX":
        return "INBOX"
    return wire if utf8 else utf7_decode(wire)


def encode_name(name: str, utf8: bool = False) -> str:
    return name if utf8 else utf7_encode(name)


def utf8_names(conn: Connection) -> bool:
    """Whether mailbox names travel in UTF-8 rather than modified UTF-7: after ENABLE
    UTF8=ACCEPT (RFC 6855 §3) or IMAP4rev2 (RFC 9051 §5.1: IMAP4rev2 names are UTF-8)."""
    return "UTF8=ACCEPT" in conn.enabled or "IMAP4REV2" in conn.enabled


def find_mailbox(conn: Connection, wire: str) -> MailboxRef | None:
    """The mailbox a wire name stands for for the logged-in user (own, ``~other/...``
    or an alias) with the user's rights; None when it does not exist or the user may
    not know that it does."""
    assert conn.access is not None
    try:
        name = decode_name(wire, utf8_names(conn))
    except ValueError:
        return None
    return conn.access.resolve(name)


def no_mailbox(tag: str) -> Tagged:
    return Tagged(tag, "NO", "No such mailbox", Codes.NONEXISTENT)


def no_permission(tag: str, right: str) -> Tagged:
    return Tagged(tag, "NO", f"Permission denied (the {right!r} right is needed)", Codes.NOPERM)


def permitted_flags(rights: str, flags: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 4314 §4: \\Seen needs "s", \\Deleted "t", every other flag "w"."""
    def right(flag: str) -> str:
        f = flag.lower()
        return "s" if f == "\\seen" else "t" if f == "\\deleted" else "w"
    return tuple(f for f in flags if right(f) in rights)


async def select(conn: Connection, cmd: Select | Examine) -> Tagged:
    readonly = cmd.name == "EXAMINE"
    qresync = "QRESYNC" in conn.enabled
    if cmd.qresync is not None and not qresync:
        # RFC 7162 §3.2.5: "MUST respond with a tagged BAD ... if the client hasn't
        # issued ENABLE QRESYNC"; a BAD changes nothing, the selection stays.
        return Tagged(cmd.tag, "BAD", "QRESYNC needs ENABLE QRESYNC first")
    if conn.selected is not None and ("IMAP4REV2" in conn.enabled or qresync):
        # RFC 9051 §7.1, RFC 7162 §3.2.11: [CLOSED] marks where the old mailbox's
        # responses end.
        conn.send(Untagged("OK", "Previous mailbox closed", Code("CLOSED")))
    conn.selected = None  # RFC 3501 §6.3.1: a failed SELECT leaves none selected
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    if not ref.may("r"):
        return no_permission(cmd.tag, "r")
    assert conn.access is not None
    # RFC 4314 §4: without any right that changes the mailbox, it opens read-only.
    readonly = readonly or not any(r in ref.rights for r in "sitwe")
    condstore = cmd.condstore or "CONDSTORE" in conn.enabled
    if cmd.condstore:
        conn.turn_on("CONDSTORE")  # RFC 7162 §3.1.8: a CONDSTORE parameter enables it
    seen_user = None if conn.access.is_owner(ref.box) else conn.access.address
    # One thread hop for the index's part of SELECT (a round trip each on PostgreSQL).
    sel, first_unseen = await asyncio.to_thread(_open, conn, ref, readonly, condstore, seen_user)
    sel.rev2 = "IMAP4REV2" in conn.enabled
    sel.qresync = qresync
    conn.selected = sel
    out: list = [
        FlagsData(sel.all_flags()),
        ExistsData(sel.exists),
    ]
    if not sel.rev2:  # RFC 9051 Appendix E: no RECENT, no [UNSEEN] in IMAP4rev2
        out.append(RecentData(len(sel.recent)))
    if first_unseen is not None and not sel.rev2:
        out.append(Untagged("OK", "First unseen", Unseen(first_unseen)))
    out += [
        Untagged("OK", "Flags permitted",
                 PermanentFlags(() if readonly else permitted_flags(ref.rights, sel.permanent_flags()))),
        Untagged("OK", "UIDs valid", UidValidity(sel.box.uidvalidity)),
        Untagged("OK", "Predicted next UID", UidNext(sel.state[0])),
        Untagged("OK", "Highest", HighestModSeq(sel.modseq)),
        Untagged("OK", "Ok", Code("MAILBOXID", f"({mailbox_id(sel.box)})")),  # RFC 8474 §4.1
    ]
    if cmd.qresync is not None and cmd.qresync.uidvalidity == sel.box.uidvalidity:
        out += await asyncio.to_thread(_resync, conn, sel, cmd.qresync)
    conn.send(*out)
    code = Codes.READ_ONLY if readonly else Codes.READ_WRITE
    return Tagged(cmd.tag, "OK", f"{cmd.name} completed", code)


def _open(conn: Connection, ref: MailboxRef, readonly: bool, condstore: bool,
          seen_user: str | None) -> tuple[Selected, int | None]:
    """The selection of ``ref`` (its row was just read by the look-up: ``fresh``) and
    the number of its first message without \\Seen (for [UNSEEN]); in a thread."""
    sel = Selected.open(conn.store, ref.box, readonly, condstore, ref.rights, seen_user, fresh=True)
    db = conn.store.db
    if sel.seen_user is None and db is not None and sel.all_seen(db, ref.box):
        return sel, None  # the index's count says so: no message to look through
    if sel.seen_user is None and not sel.loaded:
        return sel, _first_unseen(conn, sel)
    if sel.seen_user is None:
        msgs = sel.msgs
        return sel, next((i + 1 for i, u in enumerate(sel.uids) if "\\Seen" not in msgs[u].flags), None)
    sel.load(conn.store)
    return sel, next((i + 1 for i, u in enumerate(sel.uids) if not sel.is_seen(u)), None)


def _first_unseen(conn: Connection, sel: Selected) -> int | None:
    """[UNSEEN] without the message records: the index's first UID without \\Seen
    among the messages the session shows, by its number; the records are read only
    when that message is no longer among them (expunged since)."""
    uid = conn.store.first_unseen(sel.box.id, sel.opened)
    if uid is None:
        return None
    seq = sel.seq_of(uid)
    if seq is not None:
        return seq
    sel.load(conn.store)
    msgs = sel.msgs
    return next((i + 1 for i, u in enumerate(sel.uids) if "\\Seen" not in msgs[u].flags), None)


def _resync(conn: Connection, sel: Selected, known: QresyncParams) -> list[Any]:
    """RFC 7162 §3.2.5.1: what changed since the client's mod-sequence, after the
    usual SELECT responses: VANISHED (EARLIER) for the UIDs expunged since, then a
    FETCH (UID FLAGS MODSEQ) for each message changed or added since; both only
    for the known UIDs when the client named them.  (A different UIDVALIDITY makes
    it a plain SELECT: the caller does not come here.)  The index keeps every
    expunged UID with its mod-sequence, so ``seq_match`` is never needed to guess."""
    db = conn.store.db
    assert db is not None
    out: list[Any] = sel.vanished_since(db, known.modseq, known.known_uids)
    wanted = sel.uid_test(known.known_uids) if known.known_uids is not None else None
    for seq, uid in enumerate(sel.uids, 1):
        m = sel.msgs[uid]
        if m.modseq <= known.modseq or (wanted is not None and not wanted(uid)):
            continue
        out.append(FetchData(seq, (UidItem(uid), FlagsItem(sel.flags_of(uid)), ModSeqItem(m.modseq))))
    return out


async def status_items(conn: Connection, ref: MailboxRef,
                       items: tuple[str, ...]) -> tuple[tuple[str, int | str], ...]:
    """The STATUS values of ``ref`` (STATUS, LIST's RETURN (STATUS)).  Most come from
    the counts the index keeps with the mailbox row, on the event loop; the items that
    need the message records or the files (a Maildir's first SIZE when its file names
    carry no S=: every file measured and the sizes written; UNSEEN of another
    account's mailbox; DELETED) are worked out in a thread: 10,000 files took the
    event loop, and every session of the worker, for 0.35 s (SQLite) to 2 s
    (PostgreSQL)."""
    db = conn.store.db
    assert db is not None and conn.access is not None
    # ``ref.box`` was read by this command's look-up: read again only when bringing
    # the index in line with the Maildir changed it.
    box = ref.box
    if conn.store.sync(box, wait=False):
        box = db.mailbox_by_id(box.id) or box
    if ("DELETED" in items or "DELETED-STORAGE" in items or ("SIZE" in items and box.unsized != 0)
            or ("UNSEEN" in items and not conn.access.is_owner(box))):
        return await asyncio.to_thread(_status_values, conn, box, items)
    return _status_values(conn, box, items)


def _status_values(conn: Connection, box: MailboxRecord,
                   items: tuple[str, ...]) -> tuple[tuple[str, int | str], ...]:
    db = conn.store.db
    assert db is not None and conn.access is not None
    values: dict[str, int | str] = {"MESSAGES": box.exists, "UIDNEXT": box.uidnext,
                                    "UIDVALIDITY": box.uidvalidity, "HIGHESTMODSEQ": box.highestmodseq,
                                    "MAILBOXID": mailbox_id(box),
                                    # RFC 7889 §4: the same in every mailbox (the capability's)
                                    "APPENDLIMIT": conn.service.params.max_literal_size}
    if "DELETED" in items:  # RFC 9051 §6.3.11: messages with \Deleted
        values["DELETED"] = sum(1 for m in conn.store.listing(box)[1] if "\\Deleted" in m.flags)
    if "DELETED-STORAGE" in items:  # RFC 9208 §4.2: in units of 1024 octets
        octets = sum(max(m.size, 0) for m in conn.store.listing(box)[1] if "\\Deleted" in m.flags)
        values["DELETED-STORAGE"] = -(-octets // 1024)
    # MESSAGES, UNSEEN (the owner's) and SIZE are the counts the index keeps with the
    # mailbox row (migration 6); RECENT an indexed range: a 100,000-message mailbox is
    # not read for them.
    if "UNSEEN" in items:
        if conn.access.is_owner(box):
            values["UNSEEN"] = box.unseen
        else:  # another account's mailbox: this user's own \Seen
            msgs = conn.store.listing(box)[1]  # this worker's sessions share it
            seen = db.seen_get(box.id, conn.access.address)
            values["UNSEEN"] = sum(1 for m in msgs if m.uid not in seen)
    if "RECENT" in items:
        values["RECENT"] = db.message_count_from(box.id, box.recent_uid)
    if "SIZE" in items and box.unsized == 0:
        values["SIZE"] = box.size  # RFC 8438 §3: the total of the messages' RFC822.SIZE
    elif "SIZE" in items:
        # A file dropped in is measured now (as FETCH RFC822.SIZE would); one gone
        # meanwhile counts 0.
        msgs = conn.store.listing(box)[1]
        checked = conn.store.sized(box, msgs)
        values["SIZE"] = sum(max(checked[m.uid].size if m.uid in checked else m.size, 0) for m in msgs)
    return tuple((item, values[item]) for item in items)


async def status(conn: Connection, cmd: Status) -> Tagged:
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    if not ref.may("r"):
        return no_permission(cmd.tag, "r")
    if "HIGHESTMODSEQ" in cmd.items:
        conn.turn_on("CONDSTORE")  # RFC 7162 §3.1.8
        if conn.selected is not None:
            conn.selected.condstore = True
    conn.send(StatusData(cmd.mailbox, await status_items(conn, ref, cmd.items)))
    return Tagged(cmd.tag, "OK", "STATUS completed")


async def append(conn: Connection, cmd: Append) -> Tagged:
    """APPEND (RFC 3501 §6.3.11), several messages at once (RFC 3502 MULTIAPPEND,
    all or none) and literal8 data (RFC 3516 §4.4)."""
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        # RFC 3501 §6.3.11: TRYCREATE when the mailbox could be created.
        return Tagged(cmd.tag, "NO", "No such mailbox", Codes.TRYCREATE)
    if not ref.may("i"):
        return no_permission(cmd.tag, "i")
    messages = cmd.messages
    assert conn.access is not None
    box = ref.box
    private_seen = not conn.access.is_owner(box)
    items: list[tuple[bytes, tuple[str, ...], float | None]] = []
    seen: list[int] = []  # indexes of the messages whose \Seen is kept per user
    bodies: list[bytes] = []
    for m in messages:
        if m.catenate is None:
            bodies.append(m.message)
            continue
        built = await _catenate(conn, cmd.tag, m.catenate)
        if isinstance(built, Tagged):
            return built
        bodies.append(built)
    if any(not b for b in bodies):
        return Tagged(cmd.tag, "NO", "Empty message")
    # NUL octets (a literal8, RFC 3516 §4.4): parts holding them are kept in base64,
    # so that BODY and RFC822 can send them; BINARY gives the octets back.
    bodies = [mime.without_nul(b) if b"\x00" in b else b for b in bodies]
    for i, m in enumerate(messages):
        flags = permitted_flags(ref.rights, tuple(f for f in m.flags if f.upper() != "\\RECENT"))
        if private_seen and "\\Seen" in flags:
            flags = tuple(f for f in flags if f != "\\Seen")
            seen.append(i)
        items.append((bodies[i], flags, m.date_time.timestamp() if m.date_time is not None else None))
    try:
        if len(items) == 1:
            data, flags, when = items[0]
            msgs = [await asyncio.to_thread(conn.store.append, box, data, flags, when)]
        else:
            msgs = await asyncio.to_thread(conn.store.append_many, box, items)
        if seen and conn.store.db is not None:
            conn.store.db.seen_set(box.id, conn.access.address, [msgs[i].uid for i in seen], True)
    except NotFound:  # deleted by another session meanwhile (RFC 3501 §6.3.11)
        return Tagged(cmd.tag, "NO", "No such mailbox", Codes.TRYCREATE)
    except OverQuota:  # RFC 9208 §4.1: nothing is stored
        event(log, "imap-over-quota", peer=conn.peer, user=conn.access.address, mailbox=box.name, command="APPEND")
        return Tagged(cmd.tag, "NO", "Over quota", Codes.OVERQUOTA)
    except OSError as e:
        event(log, "imap-append-failed", level=logging.ERROR, peer=conn.peer, error=e.strerror or str(e))
        return Tagged(cmd.tag, "NO", "Cannot store the message", Codes.SERVERBUG)
    # RFC 4315 §3: a uid-set for a MULTIAPPEND, in the order of the messages.
    uid: int | SequenceSet = msgs[0].uid if len(msgs) == 1 else SequenceSet.from_numbers(m.uid for m in msgs)
    return Tagged(cmd.tag, "OK", "APPEND completed", AppendUid(box.uidvalidity, uid))


async def _catenate(conn: Connection, tag: str, parts: tuple[bytes | CatUrl, ...]) -> bytes | Tagged:
    """The message a CATENATE builds (RFC 4469 §5), or the tagged NO that refuses
    it: ``BADURL`` for a URL that does not name a message (or section) the user may
    read on this server, ``TOOBIG`` past ``imap.max_append_size``."""
    limit = conn.service.params.max_literal_size
    out: list[bytes] = []
    size = 0
    for part in parts:
        if isinstance(part, CatUrl):
            data = await _url_data(conn, part.url)
            if data is None:
                event(log, "imap-catenate-badurl", peer=conn.peer, url=part.url[:200])
                return Tagged(tag, "NO", "Bad URL", BadUrl(part.url))
        else:
            data = part
        size += len(data)
        if size > limit:
            return Tagged(tag, "NO", "Message too large", Codes.TOOBIG)
        out.append(data)
    return b"".join(out)


async def _url_data(conn: Connection, url: str) -> bytes | None:
    """The octets a server-relative IMAP URL names, or None when it names nothing the
    user may read (RFC 4469 §5: the user needs the "r" right on the mailbox)."""
    try:
        u = parse_imap_url(url)
    except ValueError:
        return None
    ref = find_mailbox(conn, u.mailbox)
    if ref is None or not ref.may("r"):
        return None
    if u.uidvalidity is not None and u.uidvalidity != ref.box.uidvalidity:
        return None
    msgs = await asyncio.to_thread(conn.store.messages, ref.box)
    msg = next((m for m in msgs if m.uid == u.uid), None)
    if msg is None:
        return None
    try:
        data = await asyncio.to_thread(conn.store.read, ref.box, msg)
    except FileNotFoundError:
        return None
    if u.section != Section():
        data = mime.section(data, u.section)
    if u.partial is not None:
        origin, count = u.partial
        data = data[origin:] if count is None else data[origin:origin + count]
    return data


async def namespace(conn: Connection, cmd: Namespace) -> Tagged:
    # RFC 2342: our own mailboxes, and other users' as ~name/mailbox.
    conn.send(NamespaceData(personal=(("", "/"),), other_users=(("~", "/"),)))
    return Tagged(cmd.tag, "OK", "NAMESPACE completed")


async def enable(conn: Connection, cmd: Enable) -> Tagged:
    turned = [c for c in dict.fromkeys(c.upper() for c in cmd.capabilities)
              if c in ENABLEABLE and c not in conn.enabled]
    for c in turned:
        conn.turn_on(c.upper())
        if c.upper() == "QRESYNC":
            # RFC 7162 §3.2.3: enabling QRESYNC enables CONDSTORE too.
            conn.turn_on("CONDSTORE")
            if conn.selected is not None:
                conn.selected.qresync = True
        if c.upper() in ("CONDSTORE", "QRESYNC") and conn.selected is not None:
            conn.selected.condstore = True
        if c.upper() in ("UTF8=ACCEPT", "IMAP4REV2"):
            # RFC 6855 §3: UTF-8 in quoted strings from now on.
            conn.params = dataclasses.replace(conn.params, utf8=True)
        if c.upper() == "IMAP4REV2" and conn.selected is not None:
            conn.selected.rev2 = True
    conn.send(EnabledData(tuple(c.upper() for c in turned)))
    return Tagged(cmd.tag, "OK", "ENABLE completed")


async def idle(conn: Connection, cmd: Idle) -> Tagged | None:
    refused = await conn.idle(cmd.tag)
    if refused is not None:
        return refused  # type: ignore[no-any-return]
    if conn.closed:
        return None
    if conn.state.name == "LOGOUT":
        return None
    return Tagged(cmd.tag, "OK", "IDLE terminated")


HANDLERS: dict[str, Any] = {
    "SELECT": select,
    "EXAMINE": select,
    "STATUS": status,
    "APPEND": append,
    "NAMESPACE": namespace,
    "ENABLE": enable,
    "IDLE": idle,
}
