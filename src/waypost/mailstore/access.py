"""Who may do what with which mailbox: ACL rights (RFC 4314), foreign mailbox names
(``~account/mailbox``, ``~account@domain/mailbox``), mailbox aliases and the rights of
administrators.

Rights are letters of ``RIGHTS``.  The owner of a mailbox has every right on it; others
have what the mailbox's ACL grants to their address or to ``anyone``; a server
administrator (account right ``AllUsers``) has every right on every mailbox, a domain
administrator (``CanAccessMailboxes``) on every mailbox of the domain.  A user without
``l`` on a mailbox is told it does not exist (RFC 4314 §6: no leak of names).

``Access`` is one user's view: it turns the names that user says into mailboxes and
rights; it never decides what a protocol command does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..db import MailboxRecord, ObjectRecord
from .maildir import SEPARATOR, MailboxNameError, Mailstore, normalize_name

__all__ = ["ADMIN_RIGHTS", "RIGHTS", "Access", "MailboxRef", "change_rights", "parse_rights"]

#: RFC 4314 §2.1, in the RFC's order.
RIGHTS = "lrswipkxtea"
#: Account rights of administrators (seed 000/004: "All Users", "CanAccessMailboxes").
ALL_USERS = "AllUsers"
CAN_ACCESS_MAILBOXES = "CanAccessMailboxes"
ADMIN_RIGHTS = (ALL_USERS, CAN_ACCESS_MAILBOXES)
#: RFC 4314 §2.1.1: the RFC 2086 rights "c" and "d" stand for these.
_OBSOLETE = {"c": "kx", "d": "xte"}
#: Aliases followed at most this deep (an alias of an alias ...).
MAX_ALIAS_DEPTH = 8

Lookup = Callable[[str, str], "ObjectRecord | None"]


def parse_rights(text: str) -> str:
    """The rights in ``text`` in canonical order; ValueError for a letter that is not a
    right (RFC 4314 §3.1: "BAD" for invalid rights)."""
    out: set[str] = set()
    for ch in text:
        if ch in RIGHTS:
            out.add(ch)
        elif ch in _OBSOLETE:
            out.update(_OBSOLETE[ch])
        elif ch.isdigit():
            continue  # RFC 4314 §2.1: digits are reserved for implementation rights; none here
        else:
            raise ValueError(f"{ch!r} is not a right (rights are letters of {RIGHTS})")
    return "".join(r for r in RIGHTS if r in out)


def change_rights(current: str, given: str, mode: str) -> str:
    """The rights after SETACL (RFC 4314 §3.1): ``given`` replaces ``current`` (mode
    ""), is added to it ("+") or taken from it ("-").  ValueError for invalid letters."""
    rights = parse_rights(given)
    if mode == "+":
        return parse_rights(current + rights)
    if mode == "-":
        return "".join(r for r in current if r not in rights)
    return rights


@dataclass(slots=True)
class MailboxRef:
    """A mailbox as one user reaches it."""

    box: MailboxRecord
    rights: str
    name: str            # what this user calls it: "INBOX", "~bob/Sent", "mkt-announce"
    owner: str           # the owner's address

    def may(self, rights: str) -> bool:
        return all(r in self.rights for r in rights)


_ASK = object()  # Access(me=...) not given: look the account up
_NO_RIGHTS: frozenset[str] = frozenset()  # the admin rights of an account without any (shared)


class Access:
    def __init__(self, store: Mailstore, domain: str, account: str, lookup: Lookup,
                 me: ObjectRecord | None | object = _ASK) -> None:
        """``me``: the account's record when the caller has just read it (LOGIN),
        so that it is not looked up again on the event loop."""
        self.store = store
        self.domain = domain
        self.account = account
        self.address = f"{account}@{domain}"
        self._lookup = lookup
        if me is _ASK:
            me = lookup(account, domain)
        assert me is None or isinstance(me, ObjectRecord)
        rights = me.data.get("rights") if me is not None else None
        # (most accounts have none: one shared empty set instead of one each)
        self.admin_rights: frozenset[str] = frozenset(rights) if rights else _NO_RIGHTS

    # -- rights --------------------------------------------------------------------

    def rights_on(self, box: MailboxRecord) -> str:
        if (box.domain, box.account) == (self.domain, self.account):
            return RIGHTS
        if ALL_USERS in self.admin_rights:
            return RIGHTS
        if CAN_ACCESS_MAILBOXES in self.admin_rights and box.domain == self.domain:
            return RIGHTS
        db = self.store.db
        assert db is not None
        acl = db.acl_get(box.id)
        return parse_rights(acl.get(self.address, "") + acl.get("anyone", ""))

    def is_owner(self, box: MailboxRecord) -> bool:
        return (box.domain, box.account) == (self.domain, self.account)

    # -- names ---------------------------------------------------------------------

    def display(self, box: MailboxRecord) -> str:
        """The name of ``box`` for this user."""
        if self.is_owner(box):
            return box.name
        owner = box.account if box.domain == self.domain else f"{box.account}@{box.domain}"
        return f"~{owner}{SEPARATOR}{box.name}"

    def split(self, name: str) -> tuple[str, str, str] | None:
        """(domain, account, mailbox) that a name given by this user stands for, aliases
        not followed; None when it names no account."""
        if not name.startswith("~"):
            return self.domain, self.account, normalize_name(name)
        owner, sep, rest = name[1:].partition(SEPARATOR)
        if not owner or not sep or not rest:
            return None
        account, _, domain = owner.partition("@")
        domain = (domain or self.domain).lower()
        account = account.lower()
        obj = self._lookup(account, domain)
        if obj is None or obj.kind != "account":
            return None
        return obj.domain, obj.name, normalize_name(rest)

    def resolve(self, name: str, *, need_visible: bool = True) -> MailboxRef | None:
        """The mailbox a name stands for and this user's rights on it, aliases followed;
        None when it does not exist or the user may not know that it does (no ``l``
        and no ``r``)."""
        db = self.store.db
        assert db is not None
        aliases = db.mailbox_alias_list(self.domain, self.account)
        shown = name
        for _ in range(MAX_ALIAS_DEPTH):
            target = aliases.get(name)
            if target is None:
                break
            name = target
        else:
            return None  # a loop of aliases
        try:
            where = self.split(name)
        except MailboxNameError:
            return None
        if where is None:
            return None
        box = self.store.get(*where) if where[2] == "INBOX" or self.is_owner_of(where) \
            else db.mailbox_get(*where)
        if box is None:
            return None
        rights = self.rights_on(box)
        if need_visible and "l" not in rights and "r" not in rights:
            return None
        return MailboxRef(box, rights, shown if shown != name else self.display(box), f"{box.account}@{box.domain}")

    def is_owner_of(self, where: tuple[str, str, str]) -> bool:
        return (where[0], where[1]) == (self.domain, self.account)

    # -- listing -------------------------------------------------------------------

    def own(self) -> list[MailboxRef]:
        return [MailboxRef(b, RIGHTS, b.name, self.address) for b in self.store.mailboxes(self.domain, self.account)]

    def aliases(self) -> list[MailboxRef]:
        """The account's mailbox aliases whose target it may see, under the alias name."""
        db = self.store.db
        assert db is not None
        out = []
        for alias in db.mailbox_alias_list(self.domain, self.account):
            ref = self.resolve(alias)
            if ref is not None and "l" in ref.rights:
                ref.name = alias
                out.append(ref)
        return out

    def foreign(self, owner: tuple[str, str] | None = None) -> list[MailboxRef]:
        """Mailboxes of other accounts this user may see (``l``): those granted to the
        user or to anyone, or every mailbox of ``owner`` (for ``~name/*`` patterns and
        administrators)."""
        db = self.store.db
        assert db is not None
        out: dict[int, MailboxRef] = {}
        if owner is not None:
            if owner != (self.domain, self.account) and self._lookup(owner[1], owner[0]) is not None:
                for b in self.store.mailboxes(*owner):
                    rights = self.rights_on(b)
                    if "l" in rights:
                        out[b.id] = MailboxRef(b, rights, self.display(b), f"{b.account}@{b.domain}")
            return list(out.values())
        for b, _ident, _rights in db.acl_granted([self.address, "anyone"]):
            if self.is_owner(b) or b.id in out:
                continue
            rights = self.rights_on(b)
            if "l" in rights:
                out[b.id] = MailboxRef(b, rights, self.display(b), f"{b.account}@{b.domain}")
        return list(out.values())

    # -- ACL identifiers -----------------------------------------------------------

    def identifier(self, text: str, box: MailboxRecord) -> str | None:
        """The stored form of an ACL identifier: ``anyone`` or an account's address (a
        bare name is in the mailbox owner's domain); None for an unknown one."""
        ident = text.strip().lower()
        if ident == "anyone":
            return ident
        name, _, domain = ident.partition("@")
        obj = self._lookup(name, domain or box.domain)
        if obj is None:
            return None
        return obj.address
