"""The operations layer: every change an administrator makes, whoever asks (the CLI
today; the admin pages and the JSON API of issue 18 next), made once here.

An operation (1) checks that its ``Actor`` may touch the object (a server administrator
everything; a domain administrator only the domains given to them), (2) validates its
input, raising ``Invalid`` that names the field, (3) makes the change through the
directory (the only SQL is in ``waypost.db``), and (4) logs one line naming who did it:

    event=admin-change actor=cli:root action=domain-add object=client1.com

Callers translate ``Denied`` and ``Invalid`` into their own refusal (the CLI: one error
line and exit 1; the API: 403, or 4xx with the field).  Nothing here prints, prompts or
knows about HTTP.  This package must never write SQL or a Maildir file itself.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import re
import secrets
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, Sequence

from ..address import AddressError, normalize_domain, parse_address
from ..db import ApiToken, DomainRecord, NotFound, ObjectRecord, QueueEntry, QueueFilter, QueuedMessage
from ..directory import Directory, DirectoryError
from ..log import event
from .mail import MailOps, parse_quota
from .server import ServerOps

if TYPE_CHECKING:
    from ..config import Settings
    from ..router import Router

__all__ = ["ACCOUNT_FIELDS", "ADMIN_RIGHTS", "Actor", "Denied", "Invalid", "Operations", "TOKEN_PREFIX", "Tokens", "check_mail_to_unknown",
           "domain_view", "object_view", "parse_quota", "token_actor", "token_hash"]

#: The administrator rights of an account (``waypost account set --right``).
#: AllUsers is also the server administrator's right on the admin pages and the API.
ADMIN_RIGHTS = ("AllUsers", "CanAccessMailboxes")

log = logging.getLogger("waypost.admin")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks.  ``name`` is what the log shows (``cli:root``, ``admin:alice@example.com``,
    ``token:ci-deploy``); ``domains`` is None for a server administrator, else the
    domains this actor administers."""

    name: str
    domains: frozenset[str] | None = None

    @classmethod
    def cli(cls) -> "Actor":
        """The ``waypost`` command on the server: a server administrator (whoever can
        read the data directory can do anything anyway)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # pragma: no cover - a uid with no name
            user = "unknown"
        return cls(f"cli:{user}")

    @classmethod
    def of_account(cls, account: ObjectRecord, via: str = "admin") -> "Actor | None":
        """The actor an account is on the admin pages and the API: a server
        administrator with the right ``AllUsers``, a domain administrator of the
        domains of its ``admin_domains`` (``waypost account set --admin-domain``), or
        None (an ordinary account: nothing under /admin/)."""
        if account.kind != "account" or not account.data.get("enabled", True):
            return None
        name = f"{via}:{account.address}"
        if "AllUsers" in (account.data.get("rights") or []):
            return cls(name)
        domains = account.data.get("admin_domains") or []
        return cls(name, frozenset(str(d).lower() for d in domains)) if domains else None

    @property
    def server_admin(self) -> bool:
        return self.domains is None

    def may(self, domain: str) -> bool:
        return self.domains is None or domain.lower() in self.domains


class Denied(PermissionError):
    """The actor may not do this (the API answers 403)."""


class Invalid(ValueError):
    """Bad input; ``field`` names the parameter (the CLI's option, the API's field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_mail_to_unknown(value: str) -> str:
    """Mail to Unknown: one of the words, or a reroute pattern with one '*' whose result
    the router can route (seed 004: '*%domain.dom@otherserver.dom.via').  Returns the
    value as stored."""
    from ..router.resolve import MAIL_TO_UNKNOWN
    from ..router.special import is_via, normalize_via, parse_via

    field = "mail_to_unknown"
    v = value.strip()
    if v.lower() in MAIL_TO_UNKNOWN:
        return v.lower()
    if v.count("*") != 1:
        raise Invalid(field, f"expected {', '.join(MAIL_TO_UNKNOWN)} or a pattern with one '*'")
    # The older spellings ``._via`` and ``.smtp`` mean ``.via``, as in ``router import``.
    v = normalize_via(v)
    try:
        domain = parse_address(v.replace("*", "name"), allow_no_domain=True).domain
    except AddressError as e:
        raise Invalid(field, str(e)) from None
    if is_via(domain) and parse_via(domain) is None:
        raise Invalid(field, f"bad routing target {domain}")
    local, at, _ = v.rpartition("@")
    return f"{local}@{domain}" if at else v  # the domain as the router reads it (IDNA)


def _check_ips(ips: Iterable[str]) -> list[str]:
    """Server addresses bound to a domain (multihoming), as the listeners compare them."""
    import ipaddress

    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_address(str(ip).strip())))
        except ValueError:
            raise Invalid("ips", f"{ip!r} is not an IP address") from None
    return out


def domain_view(directory: Directory, d: DomainRecord) -> dict[str, Any]:
    """A domain as ``waypost domain list --json`` and the API show it."""
    return {
        "name": d.name,
        "main": d.name == directory.main_domain,
        "aliases": list(d.aliases),
        "ips": list(d.settings.get("ips", [])),
        "mail_to_unknown": d.settings.get("mail_to_unknown", "rejected"),
        "objects": len(directory.db.list_objects(d.name)),
        "settings": d.settings,
    }


def object_view(o: ObjectRecord) -> dict[str, Any]:
    """An object (never its password) as ``waypost account list --json`` and the API
    show it."""
    row: dict[str, Any] = {"address": o.address, "kind": o.kind,
                           "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(o.created))}
    data = {k: v for k, v in o.data.items() if k not in ("password", "cram")}
    if o.kind == "account":
        row["real_name"] = data.get("real_name", "")
        row["enabled"] = data.get("enabled", True)
        row["has_password"] = "password" in o.data
        row["forward"] = data.get("forward") or ""
        row["keep_copy"] = bool(data.get("keep_copy", False))
        row["send_as"] = list(data.get("send_as") or [])
        row["rights"] = list(data.get("rights") or [])
        row["admin_domains"] = list(data.get("admin_domains") or [])
    elif o.kind in ("alias", "forwarder"):
        row["target"] = data.get("target", "")
    elif o.kind == "group":
        row["members"] = list(data.get("members", []))
        row["real_name"] = data.get("real_name", "")
        row["shared"] = bool(data.get("shared", False))
    return row


#: What ``account_set`` takes, and what only a server administrator may change:
#: administrator rights and send-as rights reach beyond one domain.
ACCOUNT_FIELDS = ("real_name", "enabled", "forward", "keep_copy", "rights", "admin_domains", "send_as",
                  "atrn_domains", "quota_storage", "quota_messages")
_SERVER_ADMIN_FIELDS = ("rights", "admin_domains", "send_as", "atrn_domains")


class Operations(ServerOps, MailOps):
    """The changes ``actor`` may make, on one directory.  ``router`` makes a router
    as the server builds it (the forwarding-loop check needs one); ``spool`` is the
    spool directory (its ``queue/`` holds the queued message files); ``settings``
    the server's (the DNS records a domain should publish name its host)."""

    def __init__(self, directory: Directory, actor: Actor, router: "Callable[[], Router] | None" = None,
                 spool: Path | None = None, mailstore: "Callable[[], Any] | None" = None,
                 settings: "Settings | None" = None) -> None:
        self.directory = directory
        self.actor = actor
        self._router = router
        self.spool = spool
        self._mailstore = mailstore
        self.settings = settings

    @property
    def db(self) -> Any:
        return self.directory.db

    # -- checks and the log --------------------------------------------------------

    def _require(self, domain: str) -> None:
        if not self.actor.may(domain):
            raise Denied(f"{self.actor.name} may not change domain {domain}")

    def _require_server_admin(self, what: str) -> None:
        if not self.actor.server_admin:
            raise Denied(f"{self.actor.name} may not {what}: server administrators only")

    def audit(self, action: str, obj: str, **fields: Any) -> None:
        """The one log line of a change (``event=admin-change``)."""
        event(log, "admin-change", actor=self.actor.name, action=action, object=obj, **fields)

    def _domain_of(self, address: str) -> tuple[str, str]:
        name, domain = self.directory.split(address)
        self._require(domain)
        return name, domain

    def _require_manageable(self, address: str) -> None:
        """An account with administrator rights (``AllUsers``, ``CanAccessMailboxes``,
        domains to administer) is a server administrator's to change: a domain
        administrator who could set its password or forwarding would have its rights."""
        if self.actor.server_admin:
            return
        name, domain = self.directory.split(address)
        obj = self.directory.lookup(name, domain)
        acct = self.directory.account_of(obj) if obj is not None else None
        if acct is not None and (acct.data.get("rights") or acct.data.get("admin_domains")):
            raise Denied(f"{self.actor.name} may not change {acct.address}: it has administrator rights")

    def _visible_domain(self, domain: str | None) -> str | None:
        """A ``domain`` filter of a list, checked; None: every domain the actor sees."""
        if domain is None:
            return None
        rec = self.directory.require_domain(domain)
        self._require(rec.name)
        return rec.name

    def refuse_loop(self, address: str, targets: Sequence[str], field: str = "target") -> None:
        """Refuse (``Invalid``) mail sent on from ``address`` to ``targets`` that would
        come back to it (a forwarder, group member or account forwarding that swallows
        mail)."""
        if self._router is None or not targets:
            return
        name, domain = self.directory.split(address)
        chain = self._router().loop_back(f"{name}@{domain}", list(targets))
        if chain:
            raise Invalid(field, f"forwarding loop: {' -> '.join(chain)} (mail to {name}@{domain} would come back to it)")

    # -- domains ---------------------------------------------------------------------

    def domain_list(self) -> list[DomainRecord]:
        return [d for d in self.directory.list_domains() if self.actor.may(d.name)]

    def domain_get(self, name: str) -> DomainRecord:
        rec = self.directory.require_domain(name)
        self._require(rec.name)
        return rec

    def domain_add(self, name: str, aliases: Iterable[str] = (), ips: Iterable[str] = ()) -> DomainRecord:
        self._require_server_admin("create domains")
        ip_list = _check_ips(ips)
        rec = self.directory.add_domain(name, tuple(aliases), {"ips": ip_list} if ip_list else None)
        self.audit("domain-add", rec.name)
        return rec

    def domain_set(self, name: str, **changes: Any) -> DomainRecord:
        """``changes`` as ``Directory.set_domain`` takes them; ``mail_to_unknown`` is
        checked here; binding server addresses (``ips``), domain aliases and ``send_as``
        "any" are the server administrator's (they take names and addresses from other
        domains)."""
        rec = self.directory.require_domain(name)
        self._require(rec.name)
        if "ips" in changes:
            self._require_server_admin("bind server addresses")
            changes["ips"] = _check_ips(changes["ips"] or [])
        if "aliases" in changes:
            self._require_server_admin("change domain aliases")
        if changes.get("send_as") == "any":
            # Any address at all, other domains' too: beyond the domain, as an
            # account's send-as is.
            self._require_server_admin("let a domain send as any address")
        if changes.get("mail_to_unknown") is not None:
            changes["mail_to_unknown"] = check_mail_to_unknown(changes["mail_to_unknown"])
        for key in ("quota_storage", "quota_messages"):
            if key in changes:  # the default limit of the domain's accounts (None: none)
                changes[key] = parse_quota(key, changes[key], key == "quota_storage", for_domain=True)
        rec = self.directory.set_domain(rec.name, **changes)
        self.audit("domain-set", rec.name, fields=",".join(sorted(changes)))
        return rec

    def domain_template(self, name: str, template: dict[str, Any] | None) -> DomainRecord:
        """Set (None: remove) the account template of a domain: ``mailboxes``,
        ``subscriptions`` (lists of names) and ``aliases`` (alias name -> target)."""
        rec = self.domain_get(name)
        if template is not None:
            for key in ("mailboxes", "subscriptions"):
                value = template.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise Invalid(key, "expected a list of mailbox names")
            pairs = template.get("aliases", {})
            if not isinstance(pairs, dict) or not all(isinstance(k, str) and k and isinstance(v, str) and v
                                                      for k, v in pairs.items()):
                raise Invalid("aliases", "expected alias name -> target mailbox")
            template = {"mailboxes": list(template.get("mailboxes", [])),
                        "subscriptions": list(template.get("subscriptions", [])), "aliases": dict(pairs)}
        rec = self.db.update_domain_settings(rec.name, {"template": template})
        self.audit("domain-template", rec.name, template="removed" if template is None else "set")
        return rec

    def domain_remove(self, name: str) -> int:
        """Remove a domain and every object in it (what its accounts owned is retired as
        ``account_remove`` retires it); returns how many objects went."""
        self._require_server_admin("remove domains")
        rec = self.directory.require_domain(name)
        count = len(self.directory.db.list_objects(rec.name))
        accounts = [o.name for o in self.directory.db.list_objects(rec.name, "account")]
        with self._names_locked(rec.name):
            if rec.name != self.directory.main_domain:  # (which remove_domain refuses)
                for account in accounts:  # as account_remove does, before and after
                    self._retire_account(rec.name, account, "removed")
            self.directory.remove_domain(rec.name)
            for account in accounts:
                self._retire_account(rec.name, account, "removed")
        self.audit("domain-remove", rec.name, objects=count)
        return count

    # -- objects of every kind -------------------------------------------------------

    def object_list(self, kind: str, domain: str | None = None) -> list[ObjectRecord]:
        """The objects of ``kind`` the actor may see (of ``domain`` only, if given)."""
        dom = self._visible_domain(domain)
        return [o for o in self.directory.list_objects(dom, kind) if self.actor.may(o.domain)]

    def object_get(self, address: str, kind: str) -> ObjectRecord:
        self._domain_of(address)
        obj = self.directory.get(address)
        if obj.kind != kind:
            raise NotFound(f"{obj.address} is a {obj.kind}, not a {kind}")
        return obj

    def _remove(self, address: str, kind: str) -> ObjectRecord:
        obj = self.object_get(address, kind)
        self.directory.remove(obj.address, kind)
        self.audit(f"{kind}-remove", obj.address)
        return obj

    # -- accounts --------------------------------------------------------------------

    def account_add(self, address: str, password: str | None, real_name: str = "") -> ObjectRecord:
        """Make an account.  What an earlier account of the name left behind (a removal
        cut short by a crash under an older version, mail a queued delivery stored after
        the removal) is retired first: the new account starts empty."""
        name, domain = self._domain_of(address)
        # One step for every process (the CLI, the API's retry, another worker):
        # look-up, clean-up and creation under the lock of the domain's names.
        with self._names_locked(domain):
            if self.directory.lookup(name, domain, fresh=True) is None:  # (a winner's add seen at once)
                self._retire_account(domain, name, "leftover")
            obj = self.directory.add_account(address, password, real_name)
        self.audit("account-add", obj.address)
        return obj

    def account_passwd(self, address: str, password: str | None, cram_md5: bool = False) -> ObjectRecord:
        self._domain_of(address)
        self._require_manageable(address)
        obj = self.directory.update(address, "account", {"password": password}, cram_md5=cram_md5)
        self.audit("account-passwd", obj.address)  # never the password
        return obj

    def account_set(self, address: str, **changes: Any) -> ObjectRecord:
        """Change an account: the fields of ``ACCOUNT_FIELDS`` (None removes one).
        Rights, domain administration, send-as and ATRN domains reach beyond the
        account's domain: a server administrator's."""
        self._domain_of(address)
        self._require_manageable(address)
        unknown = sorted(set(changes) - set(ACCOUNT_FIELDS))
        if unknown:
            raise Invalid(unknown[0], "not a setting of an account")
        if any(k in changes for k in _SERVER_ADMIN_FIELDS):
            self._require_server_admin("give administrator, send-as or ATRN rights")
        if changes.get("rights") is not None:
            bad = [r for r in changes["rights"] if r not in ADMIN_RIGHTS]
            if bad:
                raise Invalid("rights", f"unknown right {bad[0]!r} (expected {', '.join(ADMIN_RIGHTS)})")
            changes["rights"] = sorted(set(changes["rights"])) or None
        if changes.get("admin_domains") is not None:
            names = []
            for d in changes["admin_domains"]:
                rec = self.directory.domain(str(d))
                if rec is None:
                    raise Invalid("admin_domains", f"{d} is not a local domain")
                names.append(rec.name)
            changes["admin_domains"] = sorted(set(names)) or None
        if changes.get("send_as") is not None:
            allowed = []
            for a in changes["send_as"]:
                try:
                    parsed = parse_address(a.replace("*@", "x@", 1) if a.startswith("*@") else a)
                except AddressError as e:
                    raise Invalid("send_as", f"{a}: {e}") from None
                allowed.append(f"*@{parsed.domain}" if a.startswith("*@") else f"{parsed.local_key}@{parsed.domain}")
            changes["send_as"] = sorted(set(allowed)) or None
        if changes.get("atrn_domains") is not None:
            try:
                changes["atrn_domains"] = [normalize_domain(d) for d in changes["atrn_domains"]]
            except AddressError as e:
                raise Invalid("atrn_domains", str(e)) from None
        if changes.get("forward"):
            try:
                parse_address(changes["forward"])
            except AddressError as e:
                raise Invalid("forward", str(e)) from None
            self.refuse_loop(address, [changes["forward"]], "forward")
        elif "forward" in changes:
            changes["forward"] = None
            changes.setdefault("keep_copy", None)
        for key in ("quota_storage", "quota_messages"):
            if key in changes:  # a number (2G for a size), "unlimited", or None: the domain's
                changes[key] = parse_quota(key, changes[key], key == "quota_storage")
        if not changes:
            raise Invalid("changes", "nothing to change")
        obj = self.directory.update(address, "account", changes)
        self.audit("account-set", obj.address, fields=",".join(sorted(changes)))
        return obj

    def account_remove(self, address: str) -> ObjectRecord:
        """Remove an account and everything it owned.  Ordered so that a crash (kill -9)
        at any point is safe and ``account remove`` again finishes the job: what the
        account owned is retired while the account still exists (a crash leaves the
        same owner with less), then the account goes, then anything a delivery or a
        session made in between is retired too.  ``account_add`` retires what any other
        cut-short removal left."""
        self._domain_of(address)
        self._require_manageable(address)
        obj = self.directory.get(address)
        if obj.kind != "account":
            raise DirectoryError(f"{obj.address} is a {obj.kind}, not an account")
        with self._names_locked(obj.domain):  # (an add of the name waits: its mail is its own)
            self._retire_account(obj.domain, obj.name, "removed")
            self.directory.remove(obj.address, "account")
            self._retire_account(obj.domain, obj.name, "removed")
        self.audit("account-remove", obj.address)
        return obj

    def _names_locked(self, domain: str) -> ContextManager[None]:
        """The lock of the domain's account names (Mailstore.names_locked), exclusive."""
        return self._mailstore().names_locked(domain) if self._mailstore is not None else nullcontext()

    def _retire_account(self, domain: str, name: str, why: str) -> None:
        """What the account ``name`` owned goes, so that an account made later under the
        name inherits nothing: the rows kept for it (subscriptions, mailbox aliases,
        Sieve scripts and vacation memory, URLAUTH keys, the rights and \\Seen marks on
        other accounts' mailboxes, known login clients: ``Database.account_forget``),
        then its mailboxes (the files are moved aside, see Mailstore.retire_account).
        Each step is idempotent."""
        rows = self.db.account_forget(domain, name)
        moved = self._mailstore().retire_account(domain, name) if self._mailstore is not None else None
        if moved is not None or (why == "leftover" and rows):
            event(log, "account-mail-retired", account=f"{name}@{domain}", reason=why, rows=rows,
                  kept=str(moved) if moved is not None else "")

    # -- aliases, forwarders, groups ---------------------------------------------------

    def alias_add(self, address: str, account: str) -> ObjectRecord:
        self._domain_of(address)
        obj = self.directory.add_alias(address, account)
        self.audit("alias-add", obj.address, target=obj.data["target"])
        return obj

    def alias_remove(self, address: str) -> ObjectRecord:
        return self._remove(address, "alias")

    def forwarder_add(self, address: str, target: str) -> ObjectRecord:
        self._domain_of(address)
        self.refuse_loop(address, [target])
        obj = self.directory.add_forwarder(address, target)
        self.audit("forwarder-add", obj.address)
        return obj

    def forwarder_set(self, address: str, target: str) -> ObjectRecord:
        self.object_get(address, "forwarder")
        self.refuse_loop(address, [target])
        obj = self.directory.update(address, "forwarder", {"target": target})
        self.audit("forwarder-set", obj.address)
        return obj

    def forwarder_remove(self, address: str) -> ObjectRecord:
        return self._remove(address, "forwarder")

    def group_add(self, address: str, members: Sequence[str] = (), real_name: str = "",
                  shared: bool = False) -> ObjectRecord:
        self._domain_of(address)
        self.refuse_loop(address, members, "members")
        obj = self.directory.add_group(address, members, real_name)
        if shared:
            obj = self.directory.update(obj.address, "group", {"shared": True})
        self.audit("group-add", obj.address, members=len(obj.data["members"]))
        return obj

    def group_set(self, address: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> ObjectRecord:
        self.object_get(address, "group")
        if not add and not remove:
            raise Invalid("add", "nothing to change")
        self.refuse_loop(address, add, "add")
        obj = self.directory.set_group_members(address, add, remove)
        self.audit("group-set", obj.address, members=len(obj.data["members"]))
        return obj

    def group_remove(self, address: str) -> ObjectRecord:
        return self._remove(address, "group")

    # -- mailbox ACLs (RFC 4314) ---------------------------------------------------------

    def _mailbox(self, path: str) -> Any:
        """``ACCOUNT/MAILBOX`` -> the mailbox record (its domain the actor's)."""
        address, sep, name = path.partition("/")
        if not sep or not name:
            raise Invalid("mailbox", f"{path!r}: give ACCOUNT/MAILBOX, e.g. public@example.com/announce")
        self._domain_of(address)
        acct = self.directory.account_of(self.directory.get(address))
        if acct is None:
            raise Invalid("mailbox", f"{address} is not an account")
        if self._mailstore is None:
            raise Invalid("mailbox", "no mailstore here")
        box = self._mailstore().get(acct.domain, acct.name, name)
        if box is None:
            raise NotFound(f"{acct.address} has no mailbox {name}")
        return box

    def mailbox_list(self, address: str) -> list[str]:
        """The names of an account's mailboxes."""
        self._domain_of(address)
        acct = self.directory.account_of(self.directory.get(address))
        if acct is None:
            raise Invalid("address", f"{address} is not an account")
        if self._mailstore is None:
            return []
        return sorted(b.name for b in self._mailstore().mailboxes(acct.domain, acct.name))

    def acl_get(self, path: str) -> list[dict[str, str]]:
        """Who has which rights on a mailbox (the owner first, with every right)."""
        from ..mailstore.access import RIGHTS

        box = self._mailbox(path)
        rows = [{"identifier": f"{box.account}@{box.domain}", "rights": RIGHTS, "note": "owner"}]
        rows += [{"identifier": i, "rights": r, "note": ""} for i, r in sorted(self.db.acl_get(box.id).items())]
        return rows

    def acl_set(self, path: str, identifier: str, rights: str) -> tuple[str, str]:
        """Grant rights: ``rights`` replaces, ``+rights`` adds, ``-rights`` removes,
        ``none`` takes all away.  Returns (the identifier as stored, its rights now)."""
        from ..mailstore.access import Access, change_rights

        box = self._mailbox(path)
        self._require_manageable(f"{box.account}@{box.domain}")
        access = Access(self._mailstore(), box.domain, box.account, self.directory.account_named)  # type: ignore[misc]
        ident = access.identifier(identifier, box)
        if ident is None:
            raise Invalid("identifier", f"unknown identifier {identifier} (an account, or anyone)")
        if ident == f"{box.account}@{box.domain}":
            raise Invalid("identifier", "the owner always has every right on its mailboxes")
        current = self.db.acl_get(box.id).get(ident, "")
        try:
            if rights.lower() == "none":
                new = ""
            elif rights[:1] in ("+", "-"):
                new = change_rights(current, rights[1:], rights[0])
            else:
                new = change_rights(current, rights, "")
        except ValueError as e:
            raise Invalid("rights", str(e)) from None
        self.db.acl_set(box.id, ident, new or None)
        self.audit("acl-set", path, identifier=ident, rights=new or "none")
        return ident, str(new)

    # -- the Router table and the route explainer --------------------------------------

    def router_get(self) -> tuple[str, int]:
        """The Router table's text and version (server administrators: it names
        every domain's routes)."""
        self._require_server_admin("read the Router table")
        from ..router.resolve import TABLE_KEY

        return str(self.db.get_value(TABLE_KEY) or ""), int(self.db.get_value(TABLE_KEY + ".version") or 0)

    def router_set(self, text: str) -> tuple[int, list[Any]]:
        """Replace the table, as ``router import``: every line is checked first; with a
        bad line nothing changes and the errors (line_no, reason, line) come back."""
        self._require_server_admin("change the Router table")
        from ..router.resolve import store_table

        count, errors = store_table(self.db, text)
        if not errors:
            self.audit("router-import", "router", records=count)
        return count, errors

    # -- the queue ---------------------------------------------------------------------

    def queue_scope(self, where: QueueFilter, domain: str | None = None) -> QueueFilter:
        """The filter narrowed to what the actor may see.  The queue entries of a
        domain (issue 18: "the queue entries of the domains given to them") are its
        mail both ways: messages with a queued recipient in it, and messages one of its
        accounts sent (the account that logged in to send it: the MAIL FROM address
        alone proves nothing, anyone may write it).  A domain administrator sees those
        of ``domain``, or of their only domain; a server administrator everything
        (``domain``: that domain's)."""
        import dataclasses

        if domain is not None:
            try:
                d = normalize_domain(domain)
            except AddressError as e:
                raise Invalid("domain", str(e)) from None
            rec = self.directory.domain(d)
            d = rec.name if rec is not None else d
            self._require(d)
        elif self.actor.domains is not None:
            if len(self.actor.domains) != 1:
                raise Invalid("domain", "say which of your domains")
            d = next(iter(self.actor.domains))
        else:
            return where
        return dataclasses.replace(where, domain=d)

    def _acting_scope(self, where: QueueFilter, domain: str | None) -> QueueFilter:
        """``queue_scope`` for a bulk hold, release or retry: a domain administrator
        sees the mail their accounts sent to other domains, but acts only on the
        recipients in their own domains (else the administrator of d could release what
        a server administrator held of a spam run sent by one of d's accounts, or mail
        held for another domain's ETRN)."""
        import dataclasses

        scoped = self.queue_scope(where, domain)
        if self.actor.server_admin or scoped.domain is None:
            return scoped
        d = scoped.domain
        if scoped.recipient is None:
            return dataclasses.replace(scoped, recipient=f"*@{d}")
        from ..db.base import queue_domain

        if queue_domain(scoped.recipient) != d:
            raise Denied(f"{self.actor.name} may act only on recipients in {d}")
        return scoped

    def queue_list(self, where: QueueFilter, domain: str | None = None, limit: int | None = None,
                   offset: int = 0) -> Iterator[QueueEntry]:
        return self.db.queue_entries(self.queue_scope(where, domain), limit=limit, offset=offset)  # type: ignore[no-any-return]

    def queue_page(self, where: QueueFilter, domain: str | None, after: tuple[float, str] | None,
                   limit: int) -> list[QueueEntry]:
        """A page of the queue after the entry ``after`` (its created time and id; None:
        the first page): read from there in arrival order, never counted or skipped
        from the start, so a page deep in 100,000 messages costs what the first does."""
        import dataclasses

        scoped = self.queue_scope(where, domain)
        if after is not None:
            scoped = dataclasses.replace(scoped, created_after=after[0])
        out: list[QueueEntry] = []
        entries = self.db.queue_entries(scoped)
        try:
            for e in entries:
                if after is not None and (e.created, e.msg_id) <= after:
                    continue  # the same created time as the last one shown, and not after it
                out.append(e)
                if len(out) >= limit:
                    break
        finally:
            close = getattr(entries, "close", None)  # a generator: end its read now
            if close is not None:
                close()
        return out

    def queue_count(self, where: QueueFilter, domain: str | None = None) -> int:
        return int(self.db.queue_count(self.queue_scope(where, domain)))

    def _may_see(self, m: QueuedMessage) -> bool:
        """A message of the actor's domains: a recipient there, or sent by one of their
        accounts (as ``queue_scope``)."""
        from ..db.base import queue_auth_domain, queue_domain

        if self.actor.server_admin:
            return True
        sent_by = queue_auth_domain(m.envelope)
        return (bool(sent_by) and self.actor.may(sent_by)) or any(self.actor.may(queue_domain(r.address))
                                                                  for r in m.recipients)

    def queue_get(self, msg_id: str) -> QueuedMessage:
        if not msg_id or "/" in msg_id or msg_id.startswith(".") or len(msg_id) > 100:
            raise Invalid("id", f"bad queue id {msg_id!r}")
        m = self.db.queue_get(msg_id)
        if m is None:
            raise NotFound(f"no queued message {msg_id}")
        if not self._may_see(m):
            raise Denied(f"{self.actor.name} may not see queued message {msg_id}")
        return m  # type: ignore[no-any-return]

    def queue_flush(self, msg_id: str | None = None, where: QueueFilter | None = None,
                    domain: str | None = None) -> int:
        """Retry now: one message, or the messages of a filter; returns recipients."""
        if msg_id is not None:
            self.queue_get(msg_id)
            n = int(self.db.queue_reschedule(time.time(), msg_id=msg_id))
        else:
            n = int(self.db.queue_set_matching(self._acting_scope(where or QueueFilter(), domain), time.time(),
                                               due=True))
        self.audit("queue-flush", msg_id or "queue", recipients=n)
        return n

    def queue_hold_matching(self, where: QueueFilter, domain: str | None = None) -> int:
        """Hold the queued messages a filter chooses; returns recipients."""
        n = int(self.db.queue_set_matching(self._acting_scope(where, domain), time.time(), held=True))
        self.audit("queue-hold-matching", domain or "queue", recipients=n)
        return n

    def queue_release_matching(self, where: QueueFilter, domain: str | None = None) -> int:
        """Release (and make due now) the held messages a filter chooses."""
        import dataclasses

        scoped = self._acting_scope(dataclasses.replace(where, state=where.state or "held"), domain)
        n = int(self.db.queue_set_matching(scoped, time.time(), held=False, due=True))
        self.audit("queue-release-matching", domain or "queue", recipients=n)
        return n

    def queue_delete_matching(self, where: QueueFilter, domain: str | None = None, everything: bool = False) -> int:
        """Delete, without a bounce, the messages a filter chooses (in chunks: bounded
        memory, short write transactions); returns messages.  An empty filter deletes
        the whole queue only with ``everything`` (``waypost queue delete --all``)."""
        scoped = self.queue_scope(where, domain)
        if scoped == QueueFilter() and not everything:
            raise Invalid("filter", "say which messages (an empty filter would delete the whole queue)")
        deleted = kept = 0
        while True:
            # The messages kept (another domain's recipients too) stay first in arrival
            # order: read past them.
            ids = [e.msg_id for e in self.db.queue_entries(scoped, limit=1000, offset=kept)]
            if not ids:
                break
            if not self.actor.server_admin:
                mine = [i for i in ids if (m := self.db.queue_get(i)) is None or self._may_delete(m)]
                kept += len(ids) - len(mine)
                ids = mine
                if not ids:
                    continue
            deleted += int(self.db.queue_delete_many(ids))
            if self.spool is not None:
                for msg_id in ids:
                    try:
                        (self.spool / "queue" / msg_id).unlink()
                    except FileNotFoundError:
                        pass
        self.audit("queue-delete-matching", domain or "queue", messages=deleted, kept=kept)
        return deleted

    def _may_delete(self, m: QueuedMessage) -> bool:
        """Whether deleting the whole message harms no other domain: a server
        administrator's, mail the actor's accounts sent, or mail whose queued recipients
        are all in the actor's domains."""
        from ..db.base import queue_auth_domain, queue_domain

        if self.actor.server_admin:
            return True
        sent_by = queue_auth_domain(m.envelope)
        if sent_by and self.actor.may(sent_by):
            return True
        return all(self.actor.may(queue_domain(r.address)) for r in m.recipients if r.status == "queued")

    def queue_delete(self, msg_id: str) -> None:
        """Delete one message from the queue without a bounce.  A domain administrator
        may not delete a message that also waits for another domain's recipients."""
        m = self.queue_get(msg_id)
        if not self._may_delete(m):
            raise Denied(f"{self.actor.name} may not delete {msg_id}: it also waits for recipients of other domains")
        if not self.db.queue_delete(msg_id):
            raise NotFound(f"no queued message {msg_id}")
        if self.spool is not None:
            try:
                (self.spool / "queue" / msg_id).unlink()
            except FileNotFoundError:
                pass
        self.audit("queue-delete", msg_id)

    def queue_holds(self) -> list[dict[str, Any]]:
        """The domains whose mail is held, with their queued recipients."""
        from ..router.resolve import HOLD_KEY

        # Counted domain by domain (the target index), not by grouping the whole queue.
        return [{"domain": d, "messages": int(self.db.queue_count(QueueFilter(target=f"mx:{d}")))}
                for d in self.db.get_value(HOLD_KEY) or [] if self.actor.may(d)]

    def queue_hold(self, domain: str) -> int:
        """Hold Mail for Domains: keep the domain's mail until ETRN, ATRN or a release."""
        from ..router.resolve import HOLD_KEY

        try:
            d = normalize_domain(domain)
        except AddressError as e:
            raise Invalid("domain", str(e)) from None
        self._require(d)
        held = list(self.db.get_value(HOLD_KEY) or [])
        if d not in held:
            held.append(d)
            self.db.set_value(HOLD_KEY, sorted(held))
        n = int(self.db.queue_set_held(f"mx:{d}", True))
        self.audit("queue-hold", d, recipients=n)
        return n

    def queue_release(self, domain: str) -> int:
        from ..router.resolve import HOLD_KEY

        try:
            d = normalize_domain(domain)
        except AddressError as e:
            raise Invalid("domain", str(e)) from None
        self._require(d)
        held = list(self.db.get_value(HOLD_KEY) or [])
        if d in held:
            held.remove(d)
            self.db.set_value(HOLD_KEY, held)
        n = int(self.db.queue_set_held(f"mx:{d}", False))
        self.db.queue_reschedule(time.time(), target=f"mx:{d}")
        self.audit("queue-release", d, recipients=n)
        return n


# -- API tokens ------------------------------------------------------------------------

#: What every token starts with (so that a leaked one is easy to recognise in a log or a
#: repository scan); 256 random bits follow.
TOKEN_PREFIX = "wpt_"
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (the token itself is 256 random
    bits, so a slow password hash would add nothing)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Tokens:
    """``waypost token add|list|remove``: server administrators only (a token acts
    without a password)."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def add(self, name: str, domains: Sequence[str] | None = None) -> tuple[ApiToken, str]:
        """A new token: (its record, the token, shown once and never stored)."""
        self.ops._require_server_admin("make API tokens")
        if not _TOKEN_NAME.match(name):
            raise Invalid("name", "1-64 letters, digits, '.', '_' or '-'")
        scope: list[str] | None = None
        if domains:
            scope = []
            for d in domains:
                rec = self.ops.directory.domain(d)
                if rec is None:
                    raise Invalid("domain", f"{d} is not a local domain")
                scope.append(rec.name)
            scope = sorted(set(scope))
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        rec = self.ops.db.api_token_add(name, token_hash(token), scope, time.time())
        self.ops.audit("token-add", name, scope=",".join(scope) if scope else "server")
        return rec, token

    def list(self) -> list[ApiToken]:
        self.ops._require_server_admin("list API tokens")
        return self.ops.db.api_token_list()  # type: ignore[no-any-return]

    def remove(self, name: str) -> None:
        self.ops._require_server_admin("revoke API tokens")
        if not self.ops.db.api_token_remove(name):
            raise NotFound(f"no token {name}")
        self.ops.audit("token-remove", name)


def token_actor(db: Any, token: str) -> Actor | None:
    """The actor of an API token (``Authorization: Bearer``), None for an unknown or
    revoked one."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    rec = db.api_token_find(token_hash(token), time.time())
    if rec is None:
        return None
    return Actor(f"token:{rec.name}", frozenset(rec.domains) if rec.domains is not None else None)
