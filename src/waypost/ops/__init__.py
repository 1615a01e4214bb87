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
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from ..address import AddressError, parse_address
from ..db import DomainRecord, ObjectRecord
from ..directory import Directory
from ..log import event

__all__ = ["Actor", "Denied", "Invalid", "Operations", "check_mail_to_unknown"]

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


class Operations:
    """The changes ``actor`` may make, on one directory."""

    def __init__(self, directory: Directory, actor: Actor) -> None:
        self.directory = directory
        self.actor = actor

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

    # -- domains ---------------------------------------------------------------------

    def domain_add(self, name: str, aliases: Iterable[str] = (), ips: Iterable[str] = ()) -> DomainRecord:
        self._require_server_admin("create domains")
        ip_list = list(ips)
        rec = self.directory.add_domain(name, tuple(aliases), {"ips": ip_list} if ip_list else None)
        self.audit("domain-add", rec.name)
        return rec

    def domain_set(self, name: str, **changes: Any) -> DomainRecord:
        """``changes`` as ``Directory.set_domain`` takes them; ``mail_to_unknown`` is
        checked here; binding server addresses (``ips``) is the server administrator's."""
        rec = self.directory.require_domain(name)
        self._require(rec.name)
        if "ips" in changes:
            self._require_server_admin("bind server addresses")
        if changes.get("mail_to_unknown") is not None:
            changes["mail_to_unknown"] = check_mail_to_unknown(changes["mail_to_unknown"])
        rec = self.directory.set_domain(rec.name, **changes)
        self.audit("domain-set", rec.name, fields=",".join(sorted(changes)))
        return rec

    def domain_remove(self, name: str) -> int:
        """Remove a domain and every object in it; returns how many objects went."""
        self._require_server_admin("remove domains")
        rec = self.directory.require_domain(name)
        count = len(self.directory.db.list_objects(rec.name))
        self.directory.remove_domain(rec.name)
        self.audit("domain-remove", rec.name, objects=count)
        return count

    # -- accounts --------------------------------------------------------------------

    def account_add(self, address: str, password: str | None, real_name: str = "") -> ObjectRecord:
        self._domain_of(address)
        obj = self.directory.add_account(address, password, real_name)
        self.audit("account-add", obj.address)
        return obj

    def account_passwd(self, address: str, password: str | None, cram_md5: bool = False) -> ObjectRecord:
        self._domain_of(address)
        obj = self.directory.update(address, "account", {"password": password}, cram_md5=cram_md5)
        self.audit("account-passwd", obj.address)  # never the password
        return obj

    def account_remove(self, address: str) -> ObjectRecord:
        self._domain_of(address)
        obj = self.directory.get(address)
        self.directory.remove(address, "account")
        self.audit("account-remove", obj.address)
        return obj
