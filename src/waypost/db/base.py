"""The storage interface: records and the ``Database`` protocol.

Every piece of state that several workers (and later several nodes) share lives behind
this protocol: the directory (domains and their objects), the queue index, and the
mailbox index.  One implementation per engine (``sqlite.py``, later ``postgres.py``);
no other package writes SQL.

Ordering and concurrency guarantees every engine gives:

* each method is one transaction: it is applied whole or not at all;
* methods are safe to call from several threads and several processes at once;
* ``claim_due`` never hands the same recipient to two callers while its lease runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

__all__ = [
    "Conflict",
    "Database",
    "DomainRecord",
    "NotFound",
    "ObjectRecord",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientUpdate",
    "OBJECT_KINDS",
]

#: The kinds of object a domain holds; one name space per domain for all of them.
OBJECT_KINDS = ("account", "alias", "forwarder", "group")


class NotFound(LookupError):
    """The named domain, object or queue entry does not exist."""


class Conflict(ValueError):
    """The name is taken (by another object, domain or domain alias)."""


@dataclass(slots=True)
class DomainRecord:
    name: str
    aliases: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


@dataclass(slots=True)
class ObjectRecord:
    """An object in a domain.  ``data`` by kind:

    * account: ``password`` (argon2 hash), ``real_name``, ``enabled``, ...
    * alias: ``target`` (an account name in the same domain)
    * forwarder: ``target`` (an address)
    * group: ``members`` (a list of addresses; a bare name is in the same domain)
    """

    domain: str
    name: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"


@dataclass(slots=True)
class QueuedRecipient:
    msg_id: str
    idx: int
    address: str
    target: str                      # the queue it waits in: "local", "mx:example.com", ...
    route: dict[str, Any]            # how to deliver it (kind, host, port, mailbox, ...)
    status: str = "queued"           # queued | delivered | failed
    attempts: int = 0
    next_attempt: float = 0.0
    last_reply: str = ""
    notify: str = ""                 # RFC 3461 NOTIFY (comma separated) or ""
    orcpt: str = ""                  # RFC 3461 ORCPT or ""
    held: bool = False


@dataclass(slots=True)
class QueuedMessage:
    msg_id: str
    sender: str
    created: float
    size: int
    envelope: dict[str, Any]         # RET, ENVID, client, helo, auth, body type, smtputf8
    recipients: list[QueuedRecipient] = field(default_factory=list)


@dataclass(slots=True)
class RecipientUpdate:
    """The outcome of one delivery attempt for one recipient."""

    msg_id: str
    idx: int
    status: str                      # delivered | failed | queued (deferred)
    reply: str
    next_attempt: float = 0.0


class Database(Protocol):
    """What Waypost stores, engine by engine.  See the module docstring for guarantees."""

    # -- life cycle ---------------------------------------------------------------
    def close(self) -> None: ...

    # -- server-wide values (the router table, later rules and hold lists) ----------
    def get_value(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None."""
    def set_value(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (None removes it)."""

    # -- domains ------------------------------------------------------------------
    def add_domain(self, name: str, settings: dict[str, Any] | None = None) -> DomainRecord: ...
    def get_domain(self, name: str) -> DomainRecord | None:
        """The domain whose name or alias is ``name`` (lower case), or None."""
    def list_domains(self) -> list[DomainRecord]: ...
    def update_domain_settings(self, name: str, changes: dict[str, Any]) -> DomainRecord:
        """Merge ``changes`` into the settings; a value of None removes the key."""
    def rename_domain_aliases(self, name: str, aliases: Sequence[str]) -> DomainRecord:
        """Replace the domain's alias names."""
    def remove_domain(self, name: str) -> None:
        """Remove the domain and every object in it."""

    # -- objects in a domain ------------------------------------------------------
    def add_object(self, obj: ObjectRecord) -> ObjectRecord: ...
    def get_object(self, domain: str, name: str) -> ObjectRecord | None: ...
    def list_objects(self, domain: str | None = None, kind: str | None = None) -> list[ObjectRecord]: ...
    def update_object(self, domain: str, name: str, changes: dict[str, Any]) -> ObjectRecord:
        """Merge ``changes`` into the object's data; a value of None removes the key."""
    def remove_object(self, domain: str, name: str) -> None: ...

    # -- queue index --------------------------------------------------------------
    def queue_insert(self, messages: Iterable[QueuedMessage], lease_owner: str, lease_until: float) -> None:
        """Record accepted messages; their recipients start leased to ``lease_owner``,
        except held ones, which wait unleased for ETRN/ATRN."""
    def queue_known_ids(self) -> set[str]: ...
    def queue_claim_due(self, now: float, owner: str, lease_until: float, limit: int) -> list[QueuedMessage]:
        """Lease due, unheld, queued recipients (grouped into their messages) to ``owner``."""
    def queue_update(self, updates: Iterable[RecipientUpdate], owner: str) -> list[str]:
        """Apply delivery outcomes and release their leases.  Returns the ids of the
        messages that have no queued recipient left (the caller removes their files)."""
    def queue_release_lease(self, msg_ids: Iterable[str], owner: str) -> None: ...
    def queue_release_rows(self, rows: Iterable[tuple[str, int]], owner: str) -> None:
        """Release the leases ``owner`` holds on these (msg_id, idx) recipients."""
    def queue_release_leases_of(self, owner: str) -> int:
        """Release every lease held by ``owner`` or by any ``owner/...`` (its workers)."""
    def queue_get(self, msg_id: str) -> QueuedMessage | None: ...
    def queue_list(self) -> list[QueuedMessage]: ...
    def queue_delete(self, msg_id: str) -> bool: ...
    def queue_reschedule(self, now: float, target: str | None = None, msg_id: str | None = None) -> int:
        """Make matching queued recipients due now; returns how many."""
    def queue_claim_targets(self, targets: Sequence[str], owner: str, lease_until: float,
                            now: float) -> list[QueuedMessage]:
        """Lease every queued recipient waiting in ``targets``, held or not, due or not
        (ETRN and ATRN ask for them now); recipients another worker holds are left."""
    def queue_extend_leases(self, owner: str, lease_until: float) -> int:
        """Renew every lease ``owner`` holds (the heartbeat of a worker at work)."""
    def queue_targets(self) -> dict[str, int]:
        """Every target with queued recipients, and how many messages wait in it."""
    def queue_set_held(self, target: str, held: bool) -> int:
        """Hold or release every queued recipient waiting in ``target``."""
