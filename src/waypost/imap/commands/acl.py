"""SETACL, DELETEACL, GETACL, LISTRIGHTS and MYRIGHTS (RFC 4314).

Identifiers are account addresses (a bare name is in the mailbox owner's domain) and
``anyone``.  The owner has every right on its mailboxes, always: its entry cannot be
set or removed (that would take away its own "a").  Managing the ACL needs "a";
MYRIGHTS needs any right.  A mailbox the user may not see is answered as nonexistent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...log import event
from ...mailstore.access import RIGHTS, MailboxRef, change_rights
from ..proto import AclData, Codes, DeleteAcl, GetAcl, ListRights, ListRightsData, MyRights, MyRightsData
from ..proto import SetAcl, Tagged
from .authenticated import find_mailbox, no_mailbox, no_permission

if TYPE_CHECKING:
    from ..server import Connection

log = logging.getLogger("waypost.imap")

#: RFC 4314 §3.7: LISTRIGHTS groups; each right can be granted on its own.
_OPTIONAL = tuple(RIGHTS)


def _administered(conn: Connection, cmd: SetAcl | DeleteAcl | GetAcl | ListRights) -> MailboxRef | Tagged:
    """The mailbox a command names, or its NO: unknown, or without the "a" right."""
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    if not ref.may("a"):
        return no_permission(cmd.tag, "a")
    return ref


async def setacl(conn: Connection, cmd: SetAcl | DeleteAcl) -> Tagged:
    assert conn.access is not None
    ref = _administered(conn, cmd)
    if isinstance(ref, Tagged):
        return ref
    ident = conn.access.identifier(cmd.identifier, ref.box)
    if ident is None:
        return Tagged(cmd.tag, "NO", f"Unknown identifier {cmd.identifier}", Codes.NONEXISTENT)
    if ident == ref.owner:
        return Tagged(cmd.tag, "NO", "The owner always has every right on its mailboxes", Codes.CANNOT)
    db = conn.store.db
    assert db is not None
    if isinstance(cmd, DeleteAcl):
        db.acl_set(ref.box.id, ident, None)
        event(log, "acl-changed", by=conn.access.address, mailbox=ref.name, identifier=ident, rights="")
        return Tagged(cmd.tag, "OK", "DELETEACL completed")
    try:
        new = change_rights(db.acl_get(ref.box.id).get(ident, ""), cmd.rights, cmd.mode)
    except ValueError as e:
        return Tagged(cmd.tag, "BAD", f"Invalid rights: {e}")
    db.acl_set(ref.box.id, ident, new or None)
    event(log, "acl-changed", by=conn.access.address, mailbox=ref.name, identifier=ident, rights=new)
    return Tagged(cmd.tag, "OK", "SETACL completed")


async def getacl(conn: Connection, cmd: GetAcl) -> Tagged:
    ref = _administered(conn, cmd)
    if isinstance(ref, Tagged):
        return ref
    db = conn.store.db
    assert db is not None
    entries = ((ref.owner, RIGHTS),) + tuple(db.acl_get(ref.box.id).items())
    conn.send(AclData(cmd.mailbox, entries))
    return Tagged(cmd.tag, "OK", "GETACL completed")


async def listrights(conn: Connection, cmd: ListRights) -> Tagged:
    assert conn.access is not None
    ref = _administered(conn, cmd)
    if isinstance(ref, Tagged):
        return ref
    ident = conn.access.identifier(cmd.identifier, ref.box)
    if ident == ref.owner:
        conn.send(ListRightsData(cmd.mailbox, cmd.identifier, RIGHTS))
    else:
        conn.send(ListRightsData(cmd.mailbox, cmd.identifier, "", _OPTIONAL))
    return Tagged(cmd.tag, "OK", "LISTRIGHTS completed")


async def myrights(conn: Connection, cmd: MyRights) -> Tagged:
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    conn.send(MyRightsData(cmd.mailbox, ref.rights))
    return Tagged(cmd.tag, "OK", "MYRIGHTS completed")


HANDLERS: dict[str, Any] = {
    "SETACL": setacl,
    "DELETEACL": setacl,
    "GETACL": getacl,
    "LISTRIGHTS": listrights,
    "MYRIGHTS": myrights,
}
