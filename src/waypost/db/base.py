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
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

__all__ = [
    "Conflict",
    "Database",
    "DKIMKeyRecord",
    "MailboxRecord",
    "MessageRecord",
    "DomainRecord",
    "NodeRecord",
    "NotFound",
    "ObjectRecord",
    "QueueEntry",
    "QueueFilter",
    "QueuedMessage",
    "QueuedRecipient",
    "RecipientUpdate",
    "SchemaError",
    "StorageUnavailable",
    "OBJECT_KINDS",
    "QUEUE_STATES",
]

#: The kinds of object a domain holds; one name space per domain for all of them.
OBJECT_KINDS = ("account", "alias", "forwarder", "group")


class NotFound(LookupError):
    """The named domain, object or queue entry does not exist."""


class Conflict(ValueError):
    """The name is taken (by another object, domain or domain alias)."""


class StorageUnavailable(ConnectionError):
    """The database cannot be reached now (a PostgreSQL server down or unreachable);
    the caller answers "try again later" (SMTP 451 4.3.0) and logs one line.  The engine
    reconnects by itself when the database is back."""


class SchemaError(RuntimeError):
    """The database's schema is newer than this version of Waypost knows."""


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


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token (``waypost token add``): only a SHA-256 of the token is stored.
    ``domains`` None: a server administrator's token; else the domains it may act on."""

    name: str
    domains: tuple[str, ...] | None
    created: float
    last_used: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which queued messages a listing or a bulk action is about; every field given
    must match.  A message matches ``target``, ``recipient`` and ``state`` when one of
    its queued recipients does.  ``sender`` and ``recipient`` are addresses, compared
    without regard to case, where ``*`` stands for any text (``*@example.com``).
    ``state``: ``queued`` (waiting, not held), ``held``, ``deferred`` (tried before),
    ``active`` (a worker holds its lease now).  ``created_before``/``created_after``
    are times (seconds since the epoch).  ``domain``: mail of that domain, a queued
    recipient in it or a message one of its accounts sent (the account that logged in
    to send it, not the MAIL FROM address, which proves nothing); a recipient matches
    the other fields and ``domain`` together.

    Both engines keep each recipient's domain and the sending account's domain in
    indexed columns, so a filter on ``domain``, ``target``, ``recipient`` ``*@domain``
    or the state ``held`` that matches few messages is read through an index, not by
    reading the whole queue."""

    target: str | None = None
    sender: str | None = None
    recipient: str | None = None
    state: str | None = None
    created_before: float | None = None
    created_after: float | None = None
    domain: str | None = None


def queue_domain(address: str) -> str:
    """The domain of a queued address as the queue's domain columns hold it (after the
    last '@', lower case; '' for none)."""
    return address.rpartition("@")[2].lower() if "@" in address else ""


def queue_auth_domain(envelope: dict[str, Any]) -> str:
    """The domain of the account that logged in to send a queued message (its
    envelope's ``params.auth``); '' for mail from outside."""
    params = envelope.get("params") or {}
    return queue_domain(str(params.get("auth") or "")) if isinstance(params, dict) else ""


def whole_domain(pattern: str) -> str | None:
    """``*@example.com`` -> ``example.com``: a recipient pattern that is a whole domain
    (the same set as the domain column equal to it); None for any other pattern."""
    local, at, domain = pattern.rpartition("@")
    if at and local == "*" and domain and "*" not in domain:
        return domain.lower()
    return None


#: The values ``QueueFilter.state`` takes.
QUEUE_STATES = ("queued", "held", "deferred", "active")


@dataclass(slots=True)
class QueueEntry:
    """One line of ``waypost queue list``: a message and its waiting recipients,
    without what only delivery needs (routes, envelope parameters)."""

    msg_id: str
    sender: str
    created: float
    size: int
    recipients: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    held: bool = False
    attempts: int = 0
    next_attempt: float = 0.0
    last_reply: str = ""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The queue at a glance (``/metrics``, ``waypost status``): messages with a recipient
    still to deliver, those recipients, how many of them are held, and when the oldest
    such message entered the queue (0.0: the queue is empty)."""

    messages: int
    recipients: int
    held: int
    oldest: float


@dataclass(slots=True)
class RecipientUpdate:
    """The outcome of one delivery attempt for one recipient."""

    msg_id: str
    idx: int
    status: str                      # delivered | failed | queued (deferred)
    reply: str
    next_attempt: float = 0.0


@dataclass(slots=True)
class MailboxRecord:
    """One mailbox of an account in the mailbox index.

    ``name`` is the IMAP name in Unicode with "/" between levels ("INBOX" for the
    inbox); ``folder`` the Maildir++ directory beside the account's INBOX ("" for the
    inbox itself).  ``uidvalidity`` changes only when the mailbox is created anew.
    Messages whose UID is at least ``recent_uid`` have not yet been seen by a session
    that selected the mailbox (IMAP \\Recent).

    ``exists``, ``unseen`` (messages without \\Seen in their flags: the owner's view),
    ``size`` (the known sizes added up) and ``unsized`` (messages not measured yet) are
    the counts the index keeps by triggers, read with the row: nothing is counted.
    """

    id: int
    domain: str
    account: str
    name: str
    folder: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    recent_uid: int
    special_use: str = ""
    exists: int = 0
    unseen: int = 0
    size: int = 0
    unsized: int = 0


@dataclass(frozen=True, slots=True)
class SortKeys:
    """What a message list sorts a message by besides arrival and size, kept in the
    index when the message is stored (delivery, APPEND, COPY, MOVE) so that no sort
    reads message files: ``waypost.imap.message.list_keys`` makes them."""

    date: float      # the Date field as a time (RFC 5256 §2.2: the internal date without one)
    sender: str      # From, RFC 2047 decoded, white space collapsed, lower case, cut
    subject: str     # Subject, the same way


@dataclass(slots=True)
class MessageRecord:
    """One message of a mailbox: its UID, its Maildir file (``subdir``/``name``, the
    unique base name without the ``:2,`` info) and what IMAP keeps about it."""

    uid: int
    name: str
    subdir: str
    flags: tuple[str, ...]
    modseq: int
    size: int            # octets as sent (CRLF); negative: not checked yet (Mailstore.sized)
    internaldate: float
    # When it was stored in this mailbox (RFC 8514 SAVEDATE): by delivery, APPEND,
    # COPY, MOVE, or indexed as dropped in; None for a message indexed before
    # migration 8 kept it.
    savedate: float | None = None


@dataclass(slots=True)
class DKIMKeyRecord:
    """A DKIM signing key of a domain (table ``dkim_keys``, key ``(domain, selector)``).

    ``private_key`` is sealed with the data directory's key (``waypost.secrets``):
    PKCS#8 PEM for ``rsa``, the base64 32-octet seed for ``ed25519``.  ``public_key`` is
    the base64 value of the DNS record's ``p=`` tag.  ``activated``: when the key was
    made the signing key (0 = inactive); of a domain's active keys the one activated
    last signs.
    """

    domain: str
    selector: str
    algorithm: str                   # rsa | ed25519
    private_key: str
    public_key: str
    created: float = 0.0
    activated: float = 0.0


@dataclass(slots=True)
class NodeRecord:
    """One worker process of a node (``waypost cluster status``), from its heartbeat.

    ``worker`` is the queue lease owner (``hostname/pid``), ``node`` the host name
    (``server.hostname``), ``addresses`` its listeners; ``leases``: queued recipients it
    holds now."""

    worker: str
    node: str
    addresses: list[str]
    started: float
    seen: float
    load: float
    leases: int = 0


class Database(Protocol):
    """What Waypost stores, engine by engine.  See the module docstring for guarantees."""

    # -- life cycle ---------------------------------------------------------------
    def close(self) -> None: ...
    def backup_to(self, path: Path) -> None:
        """Write a consistent copy of the whole database, as of one moment, to the new
        file ``path`` while other processes go on using it (``waypost backup``)."""

    def prepare_thread(self) -> None:
        """Make ready now what this thread's first call would otherwise wait for
        (SQLite: the thread's connection, the schema read; PostgreSQL: nothing, the
        pool's connections belong to no thread).  A worker calls it in each thread of
        its pool as it starts (``server._warm_executor``); errors are the caller's."""

    def settings_token(self) -> bytes | None:
        """The current change token of the cached settings (domains, objects, server-wide
        values): eight bytes that every process reads and any settings write, by any
        process (a worker, the CLI, another node), replaces.  A value worked out from
        settings stays true while the token is the same.  None when there is no token
        to trust (then nothing may be remembered)."""

    # -- server-wide values (the router table, later rules and hold lists) ----------
    def get_value(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None."""
    def set_value(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (None removes it)."""
    def get_mark(self, key: str) -> Any:
        """A JSON value that changes all the time (a Maildir scan mark), never cached."""
    def set_mark(self, key: str, value: Any) -> None:
        """Store such a value; it does not invalidate the cached settings."""

    # -- domains ------------------------------------------------------------------
    def add_domain(self, name: str, settings: dict[str, Any] | None = None) -> DomainRecord: ...
    def get_domain(self, name: str) -> DomainRecord | None:
        """The domain whose name or alias is ``name`` (lower case), or None."""
    def domain_name(self, name: str) -> str | None:
        """The name of the domain whose name or alias is ``name`` (lower case), or None:
        what ``get_domain`` finds, without its settings to decode and copy (the Router
        asks it for every address)."""
    def list_domains(self) -> list[DomainRecord]: ...
    def update_domain_settings(self, name: str, changes: dict[str, Any]) -> DomainRecord:
        """Merge ``changes`` into the settings; a value of None removes the key."""
    def rename_domain_aliases(self, name: str, aliases: Sequence[str]) -> DomainRecord:
        """Replace the domain's alias names."""
    def remove_domain(self, name: str) -> None:
        """Remove the domain and every object in it."""

    # -- DKIM signing keys (one row per domain and selector) --------------------------
    def dkim_key_add(self, key: DKIMKeyRecord) -> None:
        """Store a new key; Conflict when the domain already has that selector."""
    def dkim_keys(self, domain: str | None = None) -> list[DKIMKeyRecord]:
        """The keys of ``domain`` (every domain when None), by domain then creation
        time.  Read for every outgoing message: engines may cache it like settings."""
    def dkim_key_activate(self, domain: str, selector: str, activated: float) -> None:
        """Set ``activated`` (0 deactivates); NotFound when there is no such key."""
    def dkim_key_remove(self, domain: str, selector: str) -> None:
        """Remove a key; NotFound when there is no such key."""

    # -- objects in a domain ------------------------------------------------------
    def add_object(self, obj: ObjectRecord) -> ObjectRecord: ...
    def get_object(self, domain: str, name: str, fresh: bool = False) -> ObjectRecord | None:
        """The object, or None.  ``fresh``: read now, never from the cache (which another
        process's write reaches only with its change notification, on PostgreSQL a moment
        later): for decisions that must see every write committed before the call."""
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
    def queue_update(self, updates: Iterable[RecipientUpdate], owner: str,
                     forget: Iterable[str] = ()) -> list[str]:
        """Apply delivery outcomes and release their leases.  Returns the ids of the
        messages that have no queued recipient left.  Their entries stay in the index
        until the caller has removed their spool files and forgets them (``forget`` of a
        later call, or ``queue_forget``): a spool file is never without its entry, so the
        orphan scan cannot take a finished message for a lost one."""
    def queue_forget(self, msg_ids: Iterable[str]) -> int:
        """Remove the entries of these messages that have no queued recipient left."""
    def queue_release_lease(self, msg_ids: Iterable[str], owner: str) -> None: ...
    def queue_release_rows(self, rows: Iterable[tuple[str, int]], owner: str) -> None:
        """Release the leases ``owner`` holds on these (msg_id, idx) recipients."""
    def queue_release_leases_of(self, owner: str) -> int:
        """Release every lease held by ``owner`` or by any ``owner/...`` (its workers)."""
    def queue_entries(self, where: "QueueFilter", limit: int | None = None, offset: int = 0) -> Iterator["QueueEntry"]:
        """Matching messages with a queued recipient, oldest first, read as they are
        given out (a listing of any length in bounded memory).  Read-only."""
    def queue_count(self, where: "QueueFilter") -> int:
        """How many messages ``queue_entries`` would give."""
    def queue_delete_many(self, msg_ids: Sequence[str]) -> int:
        """Remove these messages from the index; how many there were."""
    def queue_set_matching(self, where: "QueueFilter", now: float, held: bool | None = None,
                           due: bool = False) -> int:
        """Hold or release (``held``) and/or make due now (``due``) the queued
        recipients of the matching messages that match the filter's target and
        recipient themselves; returns how many recipients."""
    def queue_get(self, msg_id: str) -> QueuedMessage | None: ...
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
    def queue_stats(self) -> QueueStats:
        """The queue at a glance: one read, no lock taken."""
    def queue_set_held(self, target: str, held: bool) -> int:
        """Hold or release every queued recipient waiting in ``target``."""

    # -- mailbox index (IMAP UIDs, flags, modseq; the files stay Maildir) ----------
    def mailbox_list(self, domain: str, account: str) -> list[MailboxRecord]: ...
    def mailbox_get(self, domain: str, account: str, name: str) -> MailboxRecord | None:
        """The mailbox named exactly ``name`` (the caller folds "INBOX")."""
    def mailbox_by_id(self, mailbox_id: int) -> MailboxRecord | None: ...
    def mailbox_create(self, domain: str, account: str, name: str, folder: str, uidvalidity: int,
                       special_use: str = "") -> MailboxRecord:
        """Raises ``Conflict`` when the account has a mailbox of that name.  The new
        mailbox's id has never been given to another mailbox (caches are keyed by it)."""
    def mailbox_delete(self, mailbox_id: int) -> None:
        """Remove the mailbox and its message rows."""
    def mailbox_rename(self, mailbox_id: int, name: str, folder: str) -> MailboxRecord:
        """Raises ``Conflict`` when the new name is taken."""
    def mailbox_set_special_use(self, mailbox_id: int, use: str) -> None:
        """RFC 6154 attribute of the mailbox ("" for none)."""
    def mailbox_state(self, mailbox_id: int) -> tuple[int, int, int] | None:
        """(uidnext, highestmodseq, message count): the cheap "has it changed?" read."""
    def message_count_from(self, mailbox_id: int, uid: int) -> int:
        """How many messages have a UID of at least ``uid`` (STATUS RECENT): an indexed
        range, not the whole mailbox."""
    def message_add(self, mailbox_id: int,
                    items: Sequence[tuple[str, str, tuple[str, ...], int, float]],
                    keys: Sequence[SortKeys | None] | None = None) -> list[MessageRecord]:
        """Index Maildir files (name, subdir, flags, size, internal date) under new UIDs,
        in order, in one transaction, with their sort keys (``keys``, one per item, None
        for one not known).  A name already indexed keeps its UID and is returned as it
        is (delivery and a directory scan may both see a file)."""
    def message_set_sizes(self, mailbox_id: int, sizes: Sequence[tuple[int, int]]) -> None:
        """Record checked sizes (UID, size); a size is a fact, not a change: no new
        mod-sequence."""
    def message_list(self, mailbox_id: int) -> list[MessageRecord]:
        """Every message, by ascending UID."""
    def message_first_unseen(self, mailbox_id: int, below: int) -> int | None:
        """The lowest UID under ``below`` whose flags lack \\Seen (the owner's view), or
        None: SELECT's [UNSEEN] without reading the listing (a walk of the UID index
        that stops at the first match)."""
    def message_changes(self, mailbox_id: int, since: int) -> tuple[list[MessageRecord], list[int] | None]:
        """Messages added or changed after mod-sequence ``since`` (by UID), and the UIDs
        expunged after it; None instead of the UIDs when ``since`` is below the
        mailbox's floor (``expunged_prune`` dropped records after it: compare
        ``message_uids`` with what is known)."""
    def message_uids(self, mailbox_id: int) -> list[int]:
        """Every UID of the mailbox now, ascending."""
    def expunged_prune(self, before: float, headers_before: float) -> int:
        """Drop the expunge records (every mailbox) made before time ``before``, each
        mailbox's floor raised to the highest mod-sequence dropped; and the header
        blocks kept of expunged messages (``message_expunge``) made before
        ``headers_before`` or ``before``.  Any worker or node may run it at any time;
        returns the records dropped."""
    def message_store(self, mailbox_id: int, uids: Sequence[int], flags: Sequence[str], mode: str,
                      unchanged_since: int | None = None) -> tuple[list[MessageRecord], list[int]]:
        """Replace (mode ""), add ("+") or remove ("-") flags; each changed message gets a
        new mod-sequence.  With ``unchanged_since`` (RFC 7162), messages changed after it
        are left alone and returned as the second list.  Returns the messages as they
        are now (changed or not) and the UIDs refused."""
    def message_expunge(self, mailbox_id: int, uids: Sequence[int]) -> list[MessageRecord]:
        """Remove these messages from the index (recording their expunge mod-sequence);
        returns those that were there.  Their cached header blocks stay, for sessions
        that still show them until they are sent the EXPUNGE (SEARCH by header finds
        them there); they go with the expunge records (``message_headers_prune``)."""
    def message_claim_recent(self, mailbox_id: int, upto: int | None = None) -> int:
        """Claim \\Recent for the UIDs below ``upto`` (the caller's UIDNEXT, i.e. the
        messages it knows; None: every message now): returns the first UID of the claim,
        which covers ``[first, upto)`` (empty when first >= upto).  Later claims see none
        of them, so no message is \\Recent in two sessions (RFC 3501 §2.3.2)."""
    def message_cache_get(self, mailbox_id: int, uids: Sequence[int]) -> dict[int, Any]:
        """The JSON values kept with these messages (those that have one)."""
    def message_cache_set(self, mailbox_id: int, values: Sequence[tuple[int, Any]]) -> None:
        """Keep a JSON value with each message (the parsed ENVELOPE/BODYSTRUCTURE)."""
    def subscription_list(self, domain: str, account: str) -> list[str]: ...
    def subscription_set(self, domain: str, account: str, name: str, subscribed: bool) -> None: ...

    # -- ACLs (RFC 4314), per-user \\Seen of shared mailboxes, mailbox aliases ------
    def acl_get(self, mailbox_id: int) -> dict[str, str]:
        """identifier -> rights granted on the mailbox (the owner's own rights are implied)."""
    def acl_set(self, mailbox_id: int, identifier: str, rights: str | None) -> None:
        """Grant ``rights`` to ``identifier``; empty or None removes the entry."""
    def acl_granted(self, identifiers: Sequence[str]) -> list[tuple[MailboxRecord, str, str]]:
        """Every (mailbox, identifier, rights) granted to any of ``identifiers``."""
    def seen_get(self, mailbox_id: int, user: str) -> set[int]:
        """The UIDs ``user`` has seen in a mailbox of another account."""
    def seen_set(self, mailbox_id: int, user: str, uids: Sequence[int], seen: bool) -> None: ...
    def mailbox_alias_list(self, domain: str, account: str) -> dict[str, str]:
        """The account's mailbox aliases: alias name -> target mailbox name."""
    def mailbox_alias_set(self, domain: str, account: str, name: str, target: str | None) -> None: ...

    # -- WebUser sessions (waypost.web): only a hash of the session id is stored ------
    def web_session_add(self, id_hash: str, account: str, csrf: str, now: float, expires: float) -> None:
        """Store a new session (and drop the ones expired by ``now``)."""
    def web_session_get(self, id_hash: str, now: float) -> tuple[str, str, float] | None:
        """(account address, CSRF token, when it was opened) of a session not expired by
        ``now``, or None."""
    def web_session_delete(self, id_hash: str) -> None: ...
    def web_session_end_others(self, account: str, keep: str) -> int:
        """Delete every session of ``account`` but the one whose hash is ``keep`` (a
        password change); how many went."""

    # -- API tokens (waypost.web's /api/v1): only a hash of each token is stored -------
    def api_token_add(self, name: str, token_hash: str, domains: Sequence[str] | None, now: float) -> ApiToken:
        """Store a new token; ``Conflict`` when a token of that name exists."""
    def api_token_find(self, token_hash: str, now: float) -> ApiToken | None:
        """The token with this hash (its use noted at ``now``), or None."""
    def api_token_list(self) -> list[ApiToken]: ...
    def api_token_remove(self, name: str) -> bool:
        """Revoke a token; False when there is none of that name."""

    # -- login throttling (every protocol, worker and node counts in the same rows) ---
    # Keys: "client:ADDRESS" (an IPv6 client by its /64) and "account:NAME@DOMAIN".
    def login_failures_get(self, keys: Sequence[str], since: float) -> dict[str, tuple[int, float]]:
        """(failures, blocked until) of each key whose last failure is at or after
        ``since`` (else 0 failures) or whose block is not over by then; other keys
        are absent."""
    def login_failure_add(self, keys: Sequence[str], now: float, since: float, block_after: int,
                          block_until: float) -> dict[str, tuple[int, float]]:
        """Count one failed login against each key, in one transaction: a count whose
        last failure is before ``since`` starts again at 1; a key that reaches
        ``block_after`` failures and is not blocked now is blocked until ``block_until``.
        Returns each key's (failures, blocked until).  Forgets counts that ran out."""
    def login_failures_list(self, since: float) -> list[tuple[str, int, float, float]]:
        """(key, failures, last failure, blocked until) of every key still counted."""
    def login_failures_clear(self, keys: Sequence[str]) -> int:
        """Forget these keys' failures and blocks; how many were there."""
    def login_known_get(self, account: str, client: str) -> float | None:
        """When ``account`` last logged in from ``client`` (a client key), or None."""
    def login_known_set(self, account: str, client: str, now: float, forget_before: float) -> None:
        """Record a successful login; the account's clients not seen since
        ``forget_before`` are forgotten."""

    # -- cluster: worker heartbeats (table nodes) ------------------------------------
    def node_heartbeat(self, worker: str, node: str, addresses: Sequence[str], load: float, now: float) -> None:
        """Record that ``worker`` is alive now (its first beat also sets ``started``)."""
    def node_forget(self, worker: str) -> None:
        """Remove a worker that stopped cleanly."""
    def node_list(self, now: float) -> list[NodeRecord]:
        """Every worker with a heartbeat, by node then worker, with the leases it holds
        at ``now``."""

    # -- sort keys of a message list (``SortKeys``), kept with each message's row --
    def message_sort_keys_get(self, mailbox_id: int, uids: Sequence[int] | None = None) -> dict[int, SortKeys]:
        """The sort keys of these messages (of every one with ``uids`` None); a message
        whose keys are not known (indexed from a directory scan, or before migration
        11) is absent."""
    def message_sort_keys_set(self, mailbox_id: int, values: Sequence[tuple[int, SortKeys]],
                              uidvalidity: int) -> None:
        """Keep sort keys made from the message files; nothing when ``uidvalidity`` is no
        longer the mailbox's (its id was given to a new one)."""

    # -- header cache (SEARCH, FETCH BODY[HEADER...]): (mailbox, UID) -> header block --
    def message_headers_get(self, mailbox_id: int, uids: Sequence[int] | None = None) -> dict[int, bytes]:
        """The cached header blocks (the header and its blank line, as stored) of these
        messages (every cached one with ``uids`` None); UIDs without one are absent."""
    def message_headers_set(self, mailbox_id: int, values: Sequence[tuple[int, bytes]],
                            uidvalidity: int | None = None) -> None:
        """Cache header blocks; a UID already cached or no longer indexed is skipped, and
        everything when ``uidvalidity`` is given and no longer the mailbox's."""
    def message_headers_delete(self, mailbox_id: int, uids: Sequence[int]) -> None:
        """Drop the cached header blocks of these (expunged) messages."""
    def message_headers_prune(self, mailbox_id: int) -> int:
        """Drop cached header blocks whose message is neither indexed nor still
        recorded as expunged; how many."""
    def message_headers_missing(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        """Those of ``uids`` (in their order) that have no cached header block."""

    # -- quotas (RFC 9208): usage per account, kept by the engine with the message index --
    def quota_usage(self, domain: str, account: str) -> tuple[int, int]:
        """(octets, messages) the account's mailboxes hold now, as exact as the index:
        every ``message_add``/``message_expunge``/``mailbox_delete`` changes it in the
        same transaction, whichever worker or node makes it."""
    def quota_usage_list(self, domain: str | None = None) -> list[tuple[str, str, int, int]]:
        """(domain, account, octets, messages) of every account with usage counted."""
    def quota_recount(self, domain: str, account: str) -> tuple[int, int]:
        """Count the account's usage again from the index (a repair); the new figures."""

    # -- URLAUTH (RFC 4467 §3): a mailbox access key per user and mailbox ------------
    def urlauth_key(self, mailbox_id: int, domain: str, account: str, create: bool = False) -> bytes | None:
        """The user's access key for the mailbox; with ``create`` a random one (256 bits)
        is made when there is none (the same one for two workers racing), else None.
        NotFound when the mailbox is gone.  The key goes with the mailbox."""
    def urlauth_reset(self, domain: str, account: str, mailbox_id: int | None = None) -> None:
        """Drop the user's key for the mailbox (every mailbox with None): every URL
        authorized with it stops working; the next GENURLAUTH makes a new key."""

    # -- Sieve (RFC 5228 scripts, RFC 5804 management, RFC 5230 vacation) -------------
    def sieve_list(self, domain: str, account: str) -> list[tuple[str, bool]]:
        """(name, active) of the account's scripts, by name."""
    def sieve_get(self, domain: str, account: str, name: str) -> str | None: ...
    def sieve_active(self, domain: str, account: str) -> tuple[str, str] | None:
        """(name, text) of the account's active script, or None.  Cached in each
        process (read at every local delivery); every script write and an account's
        removal invalidate it in every process of every node before they return."""
    def sieve_put(self, domain: str, account: str, name: str, script: str) -> None:
        """Store a script (a new one is inactive; replacing keeps its state)."""
    def sieve_delete(self, domain: str, account: str, name: str) -> None:
        """NotFound when there is none, Conflict when it is the active one."""
    def sieve_rename(self, domain: str, account: str, old: str, new: str) -> None:
        """NotFound when ``old`` is missing, Conflict when ``new`` exists."""
    def sieve_activate(self, domain: str, account: str, name: str | None) -> None:
        """Make ``name`` the only active script (None: none); NotFound when missing."""
    def sieve_usage(self, domain: str, account: str) -> tuple[int, int]:
        """(scripts, octets of script text) of the account."""
    def vacation_claim(self, domain: str, account: str, handle: str, sender: str, now: float, until: float) -> bool:
        """Whether a vacation reply may go to ``sender`` now: True (and recorded until
        ``until``) when none was sent for this handle within the period, in one
        transaction, so that two workers delivering at once send one reply."""

    # -- an account's removal -----------------------------------------------------------
    def account_forget(self, domain: str, account: str) -> int:
        """Drop, in one transaction, every row kept for the account name ``account`` of
        ``domain`` (apart from its directory object and its mailbox index, which go
        through their own methods): its subscriptions, mailbox aliases, Sieve scripts
        (the cached active script too, in every process), vacation replies sent,
        URLAUTH keys, the rights others granted it, its \\Seen marks on other accounts'
        mailboxes, its known login clients and the login throttle's count of failures
        for the name (and its block).  An account made later under the name
        inherits none of them.  Idempotent (a retry after a crash finishes the job);
        returns how many rows went."""
