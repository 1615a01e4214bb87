"""FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; CONDSTORE CHANGEDSINCE and QRESYNC
VANISHED, RFC 7162;
BINARY, BINARY.PEEK and BINARY.SIZE, RFC 3516).

The simple items (UID, FLAGS, RFC822.SIZE, INTERNALDATE, MODSEQ, SAVEDATE) come from the index
and never open a file: ``FETCH 1:* (UID FLAGS RFC822.SIZE)`` reads no message.  ENVELOPE
and BODYSTRUCTURE are parsed once per message and kept in the index; body sections
read the file.  A non-PEEK body fetch sets \\Seen (in a read-write mailbox) and the
response then carries FLAGS.  A message another session expunged meanwhile gets
what the index holds and "NIL FETCH responses" (RFC 2180 §4.1.3), tagged OK [EXPUNGEISSUED].
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ...db import MessageRecord
from .. import message as mime
from ..preview import preview
from ..objectid import email_id
from ..proto import (
    Att,
    BinaryItem,
    BinarySection,
    BinarySizeItem,
    BodySection,
    BodySectionItem,
    Codes,
    Fetch,
    InternalDateItem,
    PreviewItem,
    Rfc822Item,
    Section,
    Tagged,
)

from .selected import named_messages

if TYPE_CHECKING:
    from ..server import Connection
    from ..session import Selected

#: Flush the response to the socket when this much is waiting.
_CHUNK = 256 * 1024

_WHOLE = Section()
_HEADER = Section(text="HEADER")
_TEXT = Section(text="TEXT")
_BODY_ITEMS = (Att.RFC822, Att.RFC822_HEADER, Att.RFC822_TEXT)
_STRUCTURE_ITEMS = (Att.ENVELOPE, Att.BODY, Att.BODYSTRUCTURE)
_LOCAL_ZONE = datetime.now(timezone.utc).astimezone().tzinfo


def _header_part(att: Any) -> bool:
    """BODY[HEADER], BODY[HEADER.FIELDS (...)], [.NOT] and RFC822.HEADER: parts of
    the message header, which the header cache holds."""
    if att is Att.RFC822_HEADER:
        return True
    return isinstance(att, BodySection) and not att.section.parts and \
        att.section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT")


def _flags(flags: tuple[str, ...]) -> bytes:
    return b"FLAGS (" + " ".join(flags).encode() + b")"


def _sets_seen(att: Any) -> bool:
    if isinstance(att, BodySection):
        return not att.peek
    if isinstance(att, BinarySection):
        return not att.peek and not att.size
    return att in (Att.RFC822, Att.RFC822_TEXT)


async def fetch(conn: Connection, cmd: Fetch) -> Tagged:
    sel = conn.selected
    assert sel is not None
    if cmd.vanished and "QRESYNC" not in conn.enabled:
        # RFC 7162 §3.2.6: VANISHED before ENABLE QRESYNC is a tagged BAD.
        return Tagged(cmd.tag, "BAD", "VANISHED needs ENABLE QRESYNC first")
    targets = named_messages(sel, cmd)
    if isinstance(targets, Tagged):
        return targets
    atts = list(cmd.attributes)
    if Att.FLAGS in atts or cmd.changed_since is not None or any(_sets_seen(a) for a in atts):
        sel.catch_up(conn.store)  # flags as they are now
        conn.send(*sel.announce_keywords())  # RFC 3501 §7.2.6: before a FETCH shows them
    if cmd.changed_since is not None or Att.MODSEQ in atts:
        conn.turn_on("CONDSTORE")
        conn.send(*sel.enable_condstore())
    if cmd.vanished and cmd.changed_since is not None and not cmd.sequence.saved:
        # RFC 7162 §3.2.6: the UIDs of the set expunged since, before the FETCHes.
        db = conn.store.db
        assert db is not None
        conn.send(*await asyncio.to_thread(sel.vanished_since, db, cmd.changed_since, cmd.sequence))
    if cmd.changed_since is not None:
        targets = [(s, u) for s, u in targets if sel.msgs[u].modseq > cmd.changed_since]
        if Att.MODSEQ not in atts:
            atts.append(Att.MODSEQ)
    if cmd.partial is not None:
        targets = cmd.partial.pick([t for t in targets if t[1] not in sel.gone])  # RFC 9394 §3.2
    if cmd.uid and Att.UID not in atts:
        atts.insert(0, Att.UID)  # RFC 3501 §6.4.8
    if sel.condstore and Att.MODSEQ not in atts and any(_sets_seen(a) for a in atts):
        atts.append(Att.MODSEQ)
    unsized = False  # a size still unknown once checked: the file is gone
    if Att.RFC822_SIZE in atts and any(sel.msgs[u].size < 0 for _, u in targets):
        await asyncio.to_thread(sel.check_sizes, conn.store, [u for _, u in targets])
        unsized = any(sel.msgs[u].size < 0 for _, u in targets)
    needs_file = any(isinstance(a, (BodySection, BinarySection)) or a in _BODY_ITEMS for a in atts)
    needs_structure = any(a in _STRUCTURE_ITEMS for a in atts)
    # RFC 8970: a preview is made once from the file and kept with the structure.
    needs_preview = Att.PREVIEW in atts
    # RFC 4314 §4: without "s", a body fetch does not set \Seen.
    sets_seen = not sel.readonly and sel.may("s") and any(_sets_seen(a) for a in atts)
    # \Seen first, so that the FLAGS sent are the flags stored (RFC 3501 §6.4.5).
    if sets_seen:
        unseen = [u for _, u in targets if u not in sel.gone and not sel.is_seen(u)]
        if unseen and sel.seen_user is not None:
            sel.seen.update(unseen)  # another account's mailbox: this user's own \Seen
            db = conn.store.db
            assert db is not None
            await asyncio.to_thread(db.seen_set, sel.box.id, sel.seen_user, unseen, True)
        elif unseen:
            records, _ = await asyncio.to_thread(conn.store.store, sel.box, unseen, ["\\Seen"], "+")
            for m in records:
                if m.uid in sel.msgs:
                    sel.own_msgs()[m.uid] = m
                    sel.note_keywords(m.flags)  # set by others since catch_up, maybe
            conn.send(*sel.announce_keywords())  # RFC 3501 §7.2.6
        if Att.FLAGS not in atts:
            atts.append(Att.FLAGS)
    # The FLAGS sent settle what the client was owed (flags changed elsewhere), but
    # in a CONDSTORE session only with their MODSEQ: else the FETCH (UID FLAGS
    # MODSEQ) owed still follows, as Dovecot sends it, so that the client's
    # mod-sequences stay those of the index (RFC 7162 §3.2: every unsolicited FETCH
    # of a flag change carries MODSEQ).
    tells_flags = Att.FLAGS in atts and (Att.MODSEQ in atts or not sel.condstore)
    if not needs_file and not needs_structure and not needs_preview:
        await _fetch_index_only(conn, sel, targets, atts, tells_flags)
        if unsized:
            return Tagged(cmd.tag, "OK", "Some messages were expunged meanwhile", Codes.EXPUNGEISSUED)
        return Tagged(cmd.tag, "OK", f"{'UID ' if cmd.uid else ''}FETCH completed")
    cache: dict[int, Any] = {}
    fresh: list[tuple[int, Any]] = []
    if needs_structure or needs_preview:
        db = conn.store.db
        assert db is not None
        cache = db.message_cache_get(sel.box.id, [u for _, u in targets])
    # Header sections only (what clients fetch for a message list): from the
    # header cache that SEARCH keeps, not the files.
    header_only = needs_file and all(
        _header_part(a) or not (isinstance(a, (BodySection, BinarySection)) or a in _BODY_ITEMS) for a in atts)
    blocks: dict[int, bytes] = {}
    if header_only:
        from .search import header_blocks

        blocks = await header_blocks(conn, sel, [u for _, u in targets if u not in sel.gone])
    out = _Output(conn)
    missing = False
    unknown_cte = False
    for seq, uid in targets:
        m = sel.msgs[uid]
        data: bytes | None = None
        lost = False
        unmade = needs_preview and "preview" not in cache.get(uid, ())
        if header_only and not (needs_structure and uid not in cache) and not unmade:
            data = blocks.get(uid)
            lost = not data
        elif needs_file or (needs_structure and uid not in cache) or unmade:
            try:
                data = conn.store.read(sel.box, m)
            except FileNotFoundError:
                lost = True
        if lost:
            # Expunged by another session, not yet announced to this one: what the
            # index still holds, "NIL FETCH responses" for the rest (RFC 2180 §4.1.3).
            missing = True
            parts = [_lost_item(sel, m, a, cache.get(uid)) for a in atts]
            if tells_flags:
                sel.owed.discard(uid)
            if out.add(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"):
                await conn.drain()
            continue
        if (needs_structure or unmade) and uid not in cache:
            assert data is not None
            cache[uid] = mime.to_json(mime.envelope(data), mime.bodystructure(data))
            fresh.append((uid, cache[uid]))
        if unmade:
            assert data is not None
            cache[uid]["preview"] = preview(data)
            if not fresh or fresh[-1][0] != uid:
                fresh.append((uid, cache[uid]))
        try:
            parts = [_item(sel, m, a, data, cache.get(uid)) for a in atts]
        except mime.UnknownCte:
            unknown_cte = True  # RFC 3516 §4.2: the FETCH fails, as a whole
            continue
        if tells_flags:
            sel.owed.discard(uid)
        if out.add(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"):
            await conn.drain()
    out.flush()
    if fresh:
        db = conn.store.db
        assert db is not None
        await asyncio.to_thread(db.message_cache_set, sel.box.id, fresh)
    if unknown_cte:
        return Tagged(cmd.tag, "NO", "Unknown content-transfer-encoding", Codes.UNKNOWN_CTE)
    if missing or unsized:
        return Tagged(cmd.tag, "OK", "Some messages were expunged meanwhile", Codes.EXPUNGEISSUED)
    return Tagged(cmd.tag, "OK", f"{'UID ' if cmd.uid else ''}FETCH completed")


class _Output:
    """FETCH responses written in pieces of about ``_CHUNK`` octets."""

    __slots__ = ("conn", "lines", "size")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lines: list[bytes] = []
        self.size = 0

    def add(self, line: bytes) -> bool:
        """Queue a line; True when a piece was written (the caller awaits ``drain``)."""
        self.lines.append(line)
        self.size += len(line)
        if self.size < _CHUNK:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        if self.lines:
            self.conn.write(b"".join(self.lines))
            self.lines.clear()
            self.size = 0


#: The items answered from the index alone, and their wire form with a hole.
_INDEX_FORMS = {
    Att.UID: b"UID %d",
    Att.FLAGS: b"FLAGS (%b)",
    Att.RFC822_SIZE: b"RFC822.SIZE %d",
    Att.MODSEQ: b"MODSEQ (%d)",
    Att.INTERNALDATE: b"INTERNALDATE %b",
    # RFC 8474 §7:  msg-att-static =/ fetch-emailid-resp / fetch-threadid-resp
    # fetch-emailid-resp = "EMAILID" SP "(" objectid ")"
    # fetch-threadid-resp = "THREADID" SP ( "(" objectid ")" / nil )
    Att.EMAILID: b"EMAILID (%b)",
    Att.THREADID: b"THREADID %b",
    # RFC 8514 §4:  msg-att-static =/ "SAVEDATE" SP (date-time / nil)
    Att.SAVEDATE: b"SAVEDATE %b",
}


async def _fetch_index_only(conn: Connection, sel: Selected, targets: list[tuple[int, int]], atts: list[Any],
                            tells_flags: bool) -> None:
    """FETCH of UID, FLAGS, RFC822.SIZE, MODSEQ and INTERNALDATE: one format string
    for the whole response and no file opened — the common "what changed" request
    of every client (``FETCH 1:* (UID FLAGS)``)."""
    template = b"* %d FETCH (" + b" ".join(_INDEX_FORMS[a] for a in atts) + b")\r\n"
    forms: dict[tuple[str, ...], bytes] = {}
    msgs, recent, private = sel.msgs, sel.recent, sel.seen_user is not None

    def flags(uid: int, m: MessageRecord) -> bytes:
        # The flags list as sent, made once per distinct set of flags.
        key = sel.flags_of(uid) if private or uid in recent else m.flags
        form = forms.get(key)
        if form is None:
            form = forms[key] = " ".join(key).encode()
        return form

    if atts == [Att.UID, Att.FLAGS, Att.RFC822_SIZE]:
        # What every client sends on opening a mailbox: no call per item.
        lines = (template % (seq, uid, flags(uid, msgs[uid]), max(msgs[uid].size, 0)) for seq, uid in targets)
    else:
        getters = [_INDEX_VALUES[a] if a is not Att.FLAGS else None for a in atts]
        lines = (template % (seq, *[flags(uid, msgs[uid]) if g is None else g(msgs[uid]) for g in getters])
                 for seq, uid in targets)
    out = _Output(conn)
    for line in lines:
        if out.add(line):
            await conn.drain()
    out.flush()
    if tells_flags:
        sel.owed.difference_update(uid for _, uid in targets)


#: How the index items other than FLAGS fill their hole.
_INDEX_VALUES: dict[Any, Any] = {
    Att.UID: lambda m: m.uid,
    Att.RFC822_SIZE: lambda m: max(m.size, 0),  # unknown: the file is gone (RFC 2180 §4.1.3)
    Att.MODSEQ: lambda m: m.modseq,
    Att.EMAILID: lambda m: email_id(m).encode(),
    Att.THREADID: lambda m: b"NIL",
    Att.INTERNALDATE: lambda m: InternalDateItem(datetime.fromtimestamp(m.internaldate, _LOCAL_ZONE)).encode()[13:],
    Att.SAVEDATE: lambda m: _save_date(m),
}


def _save_date(m: MessageRecord) -> bytes:
    """RFC 8514 §4.1: NIL when the save date is not known (indexed before it was kept)."""
    if m.savedate is None:
        return b"NIL"
    return InternalDateItem(datetime.fromtimestamp(m.savedate, _LOCAL_ZONE)).encode()[13:]


def _item(sel: Selected, m: MessageRecord, att: Any, data: bytes | None, cached: Any) -> bytes:
    if att is Att.UID:
        return b"UID %d" % m.uid
    if att is Att.FLAGS:
        return _flags(sel.flags_of(m.uid))
    if att is Att.RFC822_SIZE:
        return b"RFC822.SIZE %d" % max(m.size, 0)  # unknown: the file is gone (RFC 2180 §4.1.3)
    if att is Att.MODSEQ:
        return b"MODSEQ (%d)" % m.modseq
    if att is Att.EMAILID:
        return b"EMAILID (%b)" % email_id(m).encode()
    if att is Att.THREADID:
        return b"THREADID NIL"
    if att is Att.INTERNALDATE:
        return InternalDateItem(datetime.fromtimestamp(m.internaldate, _LOCAL_ZONE)).encode()
    if att is Att.SAVEDATE:
        return b"SAVEDATE " + _save_date(m)
    if att is Att.ENVELOPE:
        return b"ENVELOPE " + mime.cached_envelope_wire(cached)
    if att is Att.PREVIEW:
        if cached is not None and "preview" in cached:
            return PreviewItem(cached["preview"]).encode()
        assert data is not None
        return PreviewItem(preview(data)).encode()
    if att is Att.BODYSTRUCTURE:
        return b"BODYSTRUCTURE " + mime.cached_body_wire(cached, True)
    if att is Att.BODY:
        return b"BODY " + mime.cached_body_wire(cached, False)
    assert data is not None
    if isinstance(att, BodySection):
        if att.partial is None and att.section == _WHOLE:
            # "~" before a literal of octets with NUL: see response.nstring8
            return b"BODY[] %s{%d}\r\n" % (b"~" if b"\x00" in data else b"", len(data)) + data
        part = mime.section(data, att.section)
        if att.partial is not None:
            origin, count = att.partial
            return BodySectionItem(att.section, part[origin:origin + count], origin).encode()
        return BodySectionItem(att.section, part).encode()
    if isinstance(att, BinarySection):
        decoded = mime.binary_section(data, att.parts)
        if att.size:
            return BinarySizeItem(att.parts, len(decoded)).encode()
        if att.partial is not None:
            origin, count = att.partial
            return BinaryItem(att.parts, decoded[origin:origin + count], origin).encode()
        return BinaryItem(att.parts, decoded).encode()
    if att is Att.RFC822:
        return Rfc822Item(Att.RFC822, data).encode()
    if att is Att.RFC822_HEADER:
        return Rfc822Item(Att.RFC822_HEADER, mime.section(data, _HEADER)).encode()
    if att is Att.RFC822_TEXT:
        return Rfc822Item(Att.RFC822_TEXT, mime.section(data, _TEXT)).encode()
    raise ValueError(f"unknown fetch item {att!r}")


#: RFC 2180 §4.1.3's "NIL FETCH responses": empty data in the form of each item.
_NIL_ENVELOPE = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
_NIL_BODY = b'("text" "plain" NIL NIL NIL "7bit" 0 0)'


def _lost_item(sel: Selected, m: MessageRecord, att: Any, cached: Any) -> bytes:
    """An item of a message whose file another session expunged: the index's items
    and a cached structure as they are, the rest as NIL FETCH responses."""
    if att is Att.ENVELOPE:
        return b"ENVELOPE " + (mime.cached_envelope_wire(cached) if cached is not None else _NIL_ENVELOPE)
    if att in (Att.BODY, Att.BODYSTRUCTURE):
        if cached is not None:
            return _item(sel, m, att, None, cached)
        return (b"BODY " if att is Att.BODY else b"BODYSTRUCTURE ") + _NIL_BODY
    if isinstance(att, BodySection):
        return BodySectionItem(att.section, None, att.partial[0] if att.partial is not None else None).encode()
    if isinstance(att, BinarySection):
        if att.size:
            return BinarySizeItem(att.parts, 0).encode()
        return BinaryItem(att.parts, None, att.partial[0] if att.partial is not None else None).encode()
    if att in _BODY_ITEMS:
        return Rfc822Item(att, None).encode()
    if att is Att.PREVIEW:
        return PreviewItem(cached.get("preview") if cached is not None else None).encode()
    return _item(sel, m, att, None, cached)


HANDLERS: dict[str, Any] = {"FETCH": fetch}
