"""The seed's WebUser duties for shared mailboxes (seed 000/004): access rights on the
user's own mailboxes, the subscription list (foreign names such as
``~marketing/announce`` included), mailbox aliases.  Blocking functions, run in a
thread; each returns an error text for the user, or None when done.  The same checks
as IMAP SETACL and ``waypost mailbox alias add``."""

from __future__ import annotations

import logging

from ..log import event
from ..mailstore import MailboxNameError, Mailstore
from ..mailstore.access import Access, MailboxRef, change_rights

__all__ = ["add_alias", "remove_alias", "set_rights", "subscribe"]

log = logging.getLogger("waypost.web")

#: Aliases one account may have, and subscriptions.
MAX_ALIASES = 200
MAX_SUBSCRIPTIONS = 1000


def administered(access: Access, name: str) -> MailboxRef | None:
    """A mailbox whose ACL this user may change (RFC 4314 ``a``), else None."""
    ref = access.resolve(name)
    return ref if ref is not None and "a" in ref.rights else None


def set_rights(access: Access, ref: MailboxRef, identifier: str, rights: str) -> str | None:
    """Rights of ``identifier`` on ``ref``: ``rights`` replaces ("" takes all away)."""
    db = access.store.db
    assert db is not None
    ident = access.identifier(identifier, ref.box)
    if ident is None:
        return f"unknown account {identifier!r} (an account name, name@domain, or anyone)"
    if ident == ref.owner:
        return "the owner always has every right on its mailboxes"
    try:
        new = change_rights("", rights.replace(" ", ""), "")
    except ValueError as e:
        return str(e)
    db.acl_set(ref.box.id, ident, new or None)
    event(log, "acl-changed", by=access.address, mailbox=ref.name, identifier=ident, rights=new)
    return None


def subscribe(store: Mailstore, access: Access, name: str, on: bool) -> str | None:
    name = name.strip()
    if not name or len(name) > 1000:
        return "a mailbox name is needed"
    if on:
        if len(store.subscriptions(access.domain, access.account)) >= MAX_SUBSCRIPTIONS:
            return "too many subscriptions"
        try:
            if access.split(name) is None:
                return f"no such account in {name!r}"
        except MailboxNameError as e:
            return str(e)
    store.subscribe(access.domain, access.account, name, on)
    return None


def add_alias(access: Access, name: str, target: str) -> str | None:
    db = access.store.db
    assert db is not None
    name, target = name.strip(), target.strip()
    try:
        if not name or name.startswith("~") or access.split(name) is None:
            return "an alias name is a plain mailbox name, not ~account/..."
    except MailboxNameError as e:
        return str(e)
    if any(b.name == name for b in access.own()):
        return f"you have a mailbox named {name}"
    aliases = dict(db.mailbox_alias_list(access.domain, access.account))
    if len(aliases) >= MAX_ALIASES:
        return "too many mailbox aliases"
    aliases[name] = target
    seen, hop = {name}, target
    while hop in aliases:
        if hop in seen:
            return f"{name} -> {target} would make a loop of aliases"
        seen.add(hop)
        hop = aliases[hop]
    db.mailbox_alias_set(access.domain, access.account, name, target)
    ref = access.resolve(name)
    if ref is None or "l" not in ref.rights:
        db.mailbox_alias_set(access.domain, access.account, name, None)
        return f"no mailbox {target} that you may see"
    return None


def remove_alias(access: Access, name: str) -> str | None:
    db = access.store.db
    assert db is not None
    if name not in db.mailbox_alias_list(access.domain, access.account):
        return f"no mailbox alias {name}"
    db.mailbox_alias_set(access.domain, access.account, name, None)
    return None
