"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST and LSUB (RFC 3501 §6.3;
LIST-EXTENDED, RFC 5258; LIST-STATUS, RFC 5819; SPECIAL-USE, RFC 6154; CHILDREN,
RFC 3348; LIST-MYRIGHTS, RFC 8440).

Mailbox names are matched in their wire form (modified UTF-7), with "/" as the
hierarchy delimiter: ``*`` matches anything, ``%`` anything but "/" (RFC 3501 §6.3.8).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, TYPE_CHECKING

from ...db import Conflict, NotFound
from ...mailstore import SEPARATOR, MailboxNameError, MailboxNameTooLong
from ..proto import Codes, Create, Delete, List, ListData, Lsub, LsubData, Rename, StatusData, Subscribe, Tagged
from ..proto import Code, MyRightsData, Untagged, Unsubscribe
from ..objectid import mailbox_id
from ..proto.state import State
from .authenticated import decode_name, encode_name, find_mailbox, no_mailbox, no_permission, status_items, utf8_names

if TYPE_CHECKING:
    from ..server import Connection

#: RFC 6154 §6: the special-use attribute cannot be given.
USEATTR = Codes.USEATTR


async def create(conn: Connection, cmd: Create) -> Tagged:
    assert conn.account is not None and conn.access is not None
    try:
        name = decode_name(cmd.mailbox, utf8_names(conn)).rstrip(SEPARATOR)
        where = conn.access.split(name)
    except (ValueError, MailboxNameError) as e:
        return Tagged(cmd.tag, "NO", f"Invalid mailbox name: {e}", Codes.CANNOT)
    if where is None:
        return Tagged(cmd.tag, "NO", "No such user", Codes.NONEXISTENT)
    domain, account, mailbox = where
    if mailbox == "INBOX":
        return Tagged(cmd.tag, "NO", "INBOX exists", Codes.ALREADYEXISTS)
    uses = {u.lower() for u in cmd.special_use}
    if uses - {"\\sent", "\\drafts", "\\trash", "\\junk", "\\archive", "\\all", "\\flagged"}:
        return Tagged(cmd.tag, "NO", "Unknown special use", USEATTR)
    if len(uses) > 1:
        # RFC 6154 §3: a use that cannot be given is refused, nothing created, with
        # USEATTR; a mailbox here has one special use.
        return Tagged(cmd.tag, "NO", "One special use per mailbox", USEATTR)
    if not conn.access.is_owner_of(where) and not _may_create(conn, where):
        return Tagged(cmd.tag, "NO", "Permission denied (the 'k' right is needed)", Codes.NOPERM)
    try:
        box = await asyncio.to_thread(conn.store.create, domain, account, mailbox)
    except Conflict:
        return Tagged(cmd.tag, "NO", "Mailbox exists", Codes.ALREADYEXISTS)
    except MailboxNameTooLong as e:
        return Tagged(cmd.tag, "NO", f"Mailbox name too long: {e}", Codes.LIMIT)
    except MailboxNameError as e:
        return Tagged(cmd.tag, "NO", f"Invalid mailbox name: {e}", Codes.CANNOT)
    if cmd.special_use and conn.store.db is not None:
        conn.store.db.mailbox_set_special_use(box.id, _canonical_use(cmd.special_use[0]))
    return Tagged(cmd.tag, "OK", "CREATE completed", Code("MAILBOXID", f"({mailbox_id(box)})"))  # RFC 8474 §4.1


def _may_create(conn: Connection, where: tuple[str, str, str]) -> bool:
    """RFC 4314 §4: creating a mailbox (CREATE, or the new name of RENAME) in another
    account needs "k" on its parent: the nearest existing ancestor, whether or not
    the user may see it, and for a top-level name that account's INBOX (as in Cyrus)."""
    assert conn.access is not None and conn.store.db is not None
    domain, account, mailbox = where
    levels = mailbox.split(SEPARATOR)
    for i in range(len(levels) - 1, 0, -1):
        parent = conn.store.db.mailbox_get(domain, account, SEPARATOR.join(levels[:i]))
        if parent is not None:
            return "k" in conn.access.rights_on(parent)
    inbox = conn.store.get(domain, account, "INBOX")
    return inbox is not None and "k" in conn.access.rights_on(inbox)


def _is_alias(conn: Connection, wire: str) -> bool:
    assert conn.account is not None and conn.store.db is not None
    try:
        name = decode_name(wire, utf8_names(conn))
    except ValueError:
        return False
    return name in conn.store.db.mailbox_alias_list(conn.account.domain, conn.account.name)


async def delete(conn: Connection, cmd: Delete) -> Tagged:
    assert conn.account is not None
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    if _is_alias(conn, cmd.mailbox):
        return Tagged(cmd.tag, "NO", "This is a mailbox alias; the administrator removes it", Codes.CANNOT)
    box = ref.box
    if box.name == "INBOX":
        return Tagged(cmd.tag, "NO", "INBOX cannot be deleted", Codes.CANNOT)
    if not ref.may("x"):
        return no_permission(cmd.tag, "x")
    # RFC 3501 §6.3.4: a mailbox with inferiors keeps its place as \Noselect; we
    # keep it whole instead and say why.
    children = [b for b in conn.store.mailboxes(box.domain, box.account)
                if b.name.startswith(box.name + SEPARATOR)]
    if children:
        return Tagged(cmd.tag, "NO", "Mailbox has children; delete them first", Codes.INUSE)
    try:
        await asyncio.to_thread(conn.store.delete, box)
    except NotFound:  # deleted or renamed by another session meanwhile
        return no_mailbox(cmd.tag)
    except Conflict:
        return Tagged(cmd.tag, "NO", "Mailbox has children; delete them first", Codes.INUSE)
    if conn.selected is not None and conn.selected.box.id == box.id:
        # RFC 3501 allows deleting the selected mailbox; nothing is selected then
        # (RFC 7162 §3.2.11's [CLOSED] says so to the client).
        conn.selected = None
        conn.state = State.AUTHENTICATED
        conn.send(Untagged("OK", "Selected mailbox deleted", Codes.CLOSED))
    return Tagged(cmd.tag, "OK", "DELETE completed")


async def rename(conn: Connection, cmd: Rename) -> Tagged:
    assert conn.account is not None and conn.access is not None
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    if _is_alias(conn, cmd.mailbox):
        return Tagged(cmd.tag, "NO", "This is a mailbox alias; the administrator renames it", Codes.CANNOT)
    if not ref.may("x"):
        return no_permission(cmd.tag, "x")
    try:
        where = conn.access.split(decode_name(cmd.new_name, utf8_names(conn)))
        if where is None or (where[0], where[1]) != (ref.box.domain, ref.box.account):
            return Tagged(cmd.tag, "NO", "A mailbox stays with its owner", Codes.CANNOT)
        if not conn.access.is_owner_of(where) and not _may_create(conn, where):
            return no_permission(cmd.tag, "k")
        await asyncio.to_thread(conn.store.rename, ref.box, where[2])
    except NotFound:  # deleted or renamed by another session meanwhile
        return no_mailbox(cmd.tag)
    except MailboxNameTooLong as e:
        return Tagged(cmd.tag, "NO", f"Mailbox name too long: {e}", Codes.LIMIT)
    except Conflict:  # a ValueError too
        return Tagged(cmd.tag, "NO", "Mailbox exists", Codes.ALREADYEXISTS)
    except ValueError as e:  # MailboxNameError too
        return Tagged(cmd.tag, "NO", f"Invalid mailbox name: {e}", Codes.CANNOT)
    return Tagged(cmd.tag, "OK", "RENAME completed")


async def subscribe(conn: Connection, cmd: Subscribe | Unsubscribe) -> Tagged:
    assert conn.account is not None
    try:
        name = decode_name(cmd.mailbox, utf8_names(conn))
        ref = find_mailbox(conn, cmd.mailbox)
        if cmd.name == "SUBSCRIBE" and (ref is None or not ref.may("l")):
            return no_mailbox(cmd.tag)
        conn.store.subscribe(conn.account.domain, conn.account.name, name.rstrip(SEPARATOR),
                             cmd.name == "SUBSCRIBE")
    except ValueError as e:
        return Tagged(cmd.tag, "NO", f"Invalid mailbox name: {e}", Codes.CANNOT)
    return Tagged(cmd.tag, "OK", f"{cmd.name} completed")


def _canonical_use(use: str) -> str:
    return "\\" + use[1:].capitalize()


# -- LIST and LSUB ------------------------------------------------------------------------

def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 3501 §6.3.8: the reference and the pattern make one name pattern."""
    full = reference + pattern if not reference.endswith(SEPARATOR) or not pattern.startswith(SEPARATOR) \
        else reference + pattern[1:]
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    regex = "".join(out)
    # INBOX is case-insensitive, also as the first level of a pattern.
    if full[:5].upper() == "INBOX":
        regex = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(regex + r"\Z", re.DOTALL)


async def list_(conn: Connection, cmd: List) -> Tagged:
    assert conn.account is not None
    if not cmd.extended and len(cmd.patterns) == 1 and cmd.patterns[0] == "":
        # RFC 3501 §6.3.8: an empty pattern asks for the delimiter and the root.
        conn.send(ListData(("\\Noselect",), SEPARATOR, ""))
        return Tagged(cmd.tag, "OK", "LIST completed")
    access = conn.access
    assert access is not None
    subscribed = set(conn.store.subscriptions(conn.account.domain, conn.account.name))
    select_sub = "SUBSCRIBED" in cmd.select_options
    want_sub = select_sub or "SUBSCRIBED" in cmd.return_options
    special_only = "SPECIAL-USE" in cmd.select_options
    recursive = "RECURSIVEMATCH" in cmd.select_options
    regexes = [pattern_regex(cmd.reference, p) for p in cmd.patterns]
    visible = access.own() + access.aliases() + access.foreign()
    for p in cmd.patterns:
        # "~name/..." lists that account's mailboxes this user may see.
        full = cmd.reference + p
        if full.startswith("~") and SEPARATOR in full:
            owner = access.split(decode_name(full.split(SEPARATOR, 1)[0], utf8_names(conn)) + SEPARATOR + "INBOX")
            if owner is not None:
                visible += access.foreign((owner[0], owner[1]))
    refs = {r.name: r for r in visible}
    names = set(refs)
    candidates: dict[str, str] = {}  # wire name -> Unicode name
    for name in list(refs) + (sorted(subscribed - names) if select_sub else []):
        candidates[encode_name(name, utf8_names(conn))] = name
    want_rights = "MYRIGHTS" in cmd.return_options
    out: list[ListData | MyRightsData | StatusData] = []
    for wire_name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        if not any(rx.match(wire_name) for rx in regexes):
            continue
        name = candidates[wire_name]
        ref = refs.get(name)
        box = ref.box if ref is not None else None
        is_sub = name in subscribed
        # RFC 5258 §3.5: CHILDINFO tells of subscribed descendants the client does
        # not see in this result; one that matches the patterns is listed itself.
        child_sub = recursive and any(
            s.startswith(name + SEPARATOR) and not any(rx.match(encode_name(s, utf8_names(conn))) for rx in regexes)
            for s in subscribed)
        if select_sub and not is_sub and not child_sub:
            continue
        own_use = box.special_use if box is not None and access.is_owner(box) and ref is not None \
            and ref.name == box.name else ""
        if special_only and not own_use:
            continue
        attrs: list[str] = []
        if box is None:
            attrs.append("\\NonExistent")
        has_children = any(n.startswith(name + SEPARATOR) for n in names)
        attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
        if own_use:
            attrs.append(own_use)
        if want_sub and is_sub:
            attrs.append("\\Subscribed")
        child_info = ("SUBSCRIBED",) if child_sub and select_sub else ()
        out.append(ListData(tuple(attrs), SEPARATOR, wire_name, child_info))
        if want_rights and ref is not None:
            # RFC 8440 §3: the MYRIGHTS response of each listed mailbox that exists.
            out.append(MyRightsData(wire_name, ref.rights))
        if cmd.return_status and ref is not None and ref.may("r"):
            out.append(StatusData(wire_name, await status_items(conn, ref, cmd.return_status)))
    conn.send(*out)
    return Tagged(cmd.tag, "OK", "LIST completed")


async def lsub(conn: Connection, cmd: Lsub) -> Tagged:
    assert conn.account is not None
    if cmd.pattern == "":
        conn.send(LsubData(("\\Noselect",), SEPARATOR, ""))
        return Tagged(cmd.tag, "OK", "LSUB completed")
    rx = pattern_regex(cmd.reference, cmd.pattern)
    subscribed = conn.store.subscriptions(conn.account.domain, conn.account.name)
    assert conn.access is not None
    existing = {n for n in subscribed if conn.access.resolve(n) is not None}
    shown: dict[str, tuple[str, ...]] = {}
    for name in subscribed:
        wire_name = encode_name(name, utf8_names(conn))
        if rx.match(wire_name):
            shown[wire_name] = () if name in existing else ("\\Noselect",)
            continue
        # RFC 3501 §6.3.9: "%" matching a parent of a subscribed mailbox lists the
        # parent as \Noselect when it is not itself subscribed.
        levels = name.split(SEPARATOR)
        for i in range(len(levels) - 1, 0, -1):
            parent = encode_name(SEPARATOR.join(levels[:i]), utf8_names(conn))
            if rx.match(parent) and parent not in shown:
                shown[parent] = ("\\Noselect",)
                break
    conn.send(*(LsubData(attrs, SEPARATOR, n) for n, attrs in sorted(shown.items())))
    return Tagged(cmd.tag, "OK", "LSUB completed")


HANDLERS: dict[str, Any] = {
    "CREATE": create,
    "DELETE": delete,
    "RENAME": rename,
    "SUBSCRIBE": subscribe,
    "UNSUBSCRIBE": subscribe,
    "LIST": list_,
    "LSUB": lsub,
}
