"""The directory: domains and the objects in them (accounts, aliases, forwarders, groups).

It owns names and their rules (lower case, one name space per domain, aliases point at
accounts of the same domain), passwords (argon2 hashes, never stored or logged in clear)
and the domain settings that other packages read.  It reads and writes only through the
``Database`` protocol and never caches: every look-up sees the latest committed state,
so a running server sees CLI changes at once.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
import nacl.exceptions
import nacl.pwhash

from ..address import AddressError, normalize_domain, parse_address
from ..secrets import Secrets
from ..db import OBJECT_KINDS, Conflict, Database, DomainRecord, NotFound, ObjectRecord

__all__ = [
    "SEND_AS_POLICIES",
    "Conflict",
    "Directory",
    "DirectoryError",
    "NotFound",
    "ObjectRecord",
    "password_hasher",
    "DomainRecord",
    "OBJECT_KINDS",
]

# Object names: the dot-atom characters most servers allow, without '%', '@' or '!',
# which the router gives meanings of their own.
_NAME = re.compile(r"^[a-z0-9#$&'*+=?^_`{|}~.-]{1,64}$")  # no "/": names are Maildir paths


#: A domain's ``send_as`` setting: which sender addresses its authenticated accounts
#: may use.  "own": the account, its aliases (in the domain and the domain's aliases),
#: and its ``send_as`` rights; "domain": any address of the domain; "any": anything.
SEND_AS_POLICIES = ("own", "domain", "any")


class DirectoryError(ValueError):
    """A request the directory refuses; the message says why."""


def password_hasher(memory_kib: int, passes: int) -> PasswordHasher:
    """The argon2id hasher of new passwords: ``auth.argon2_memory`` KiB, ``auth.argon2_passes``
    passes, 4 lanes.  Checking a stored hash uses the cost written in it."""
    return PasswordHasher(time_cost=passes, memory_cost=memory_kib)


class Directory:
    """Domains and objects, on top of a ``Database``."""

    def __init__(self, db: Database, main_domain: str, hasher: PasswordHasher | None = None,
                 secrets: Secrets | None = None) -> None:
        self.db = db
        self.main_domain = normalize_domain(main_domain)
        self._hasher = hasher or PasswordHasher()
        self.secrets = secrets

    # -- names ------------------------------------------------------------------

    @staticmethod
    def check_name(name: str) -> str:
        n = name.strip().lower()
        if not _NAME.match(n) or n.startswith(".") or n.endswith(".") or ".." in n:
            raise DirectoryError(f"bad object name {name!r}")
        return n

    def split(self, address: str) -> tuple[str, str]:
        """``name@domain`` (or a bare name in the main domain) → (name, domain)."""
        try:
            a = parse_address(address, allow_no_domain=True)
        except AddressError as e:
            raise DirectoryError(str(e)) from None
        domain = a.domain or self.main_domain
        rec = self.db.get_domain(domain)
        if rec is None:
            raise DirectoryError(f"{domain} is not a local domain")
        return self.check_name(a.local_key), rec.name

    # -- domains ----------------------------------------------------------------

    def add_domain(self, name: str, aliases: Sequence[str] = (), settings: dict[str, Any] | None = None) -> DomainRecord:
        try:
            domain = normalize_domain(name)
            alias_names = [normalize_domain(a) for a in aliases]
        except AddressError as e:
            raise DirectoryError(str(e)) from None
        rec = self.db.add_domain(domain, settings)
        if alias_names:
            try:
                rec = self.db.rename_domain_aliases(domain, alias_names)
            except Conflict:
                self.db.remove_domain(domain)
                raise
        return rec

    def domain(self, name: str) -> DomainRecord | None:
        """The local domain called ``name`` (or having it as an alias), else None."""
        try:
            return self.db.get_domain(normalize_domain(name))
        except AddressError:
            return None

    def domain_name(self, name: str) -> str | None:
        """The name of the local domain called ``name`` (or having it as an alias), else
        None: ``domain(name).name`` without reading the domain's settings."""
        try:
            return self.db.domain_name(normalize_domain(name))
        except AddressError:
            return None

    def require_domain(self, name: str) -> DomainRecord:
        rec = self.domain(name)
        if rec is None:
            raise NotFound(f"no domain {name}")
        return rec

    def list_domains(self) -> list[DomainRecord]:
        return self.db.list_domains()

    def set_domain(self, name: str, *, aliases: Sequence[str] | None = None, **settings: Any) -> DomainRecord:
        rec = self.require_domain(name)
        if aliases is not None:
            try:
                rec = self.db.rename_domain_aliases(rec.name, [normalize_domain(a) for a in aliases])
            except AddressError as e:
                raise DirectoryError(str(e)) from None
        if settings:
            rec = self.db.update_domain_settings(rec.name, settings)
        return rec

    def remove_domain(self, name: str) -> None:
        rec = self.require_domain(name)
        if rec.name == self.main_domain:
            raise DirectoryError(f"{rec.name} is the main domain (server.main_domain) and cannot be removed")
        self.db.remove_domain(rec.name)

    # -- objects ----------------------------------------------------------------

    def lookup(self, name: str, domain: str, fresh: bool = False) -> ObjectRecord | None:
        """The object ``name`` of the local domain ``domain`` (either may be any case);
        ``fresh``: read now, not from the cache (Database.get_object)."""
        rec = self.domain(domain)
        if rec is None:
            return None
        return self.db.get_object(rec.name, name.lower(), fresh=fresh)

    def get(self, address: str) -> ObjectRecord:
        name, domain = self.split(address)
        obj = self.db.get_object(domain, name)
        if obj is None:
            raise NotFound(f"no object {name}@{domain}")
        return obj

    def list_objects(self, domain: str | None = None, kind: str | None = None) -> list[ObjectRecord]:
        dom = self.require_domain(domain).name if domain else None
        return self.db.list_objects(dom, kind)

    def add_account(self, address: str, password: str | None = None, real_name: str = "") -> ObjectRecord:
        name, domain = self.split(address)
        data: dict[str, Any] = {"real_name": real_name, "enabled": True}
        if password is not None:
            data["password"] = self.hash_password(password)
        return self.db.add_object(ObjectRecord(domain, name, "account", data))

    def add_alias(self, address: str, account: str) -> ObjectRecord:
        """``address`` becomes another name of ``account`` (same domain)."""
        name, domain = self.split(address)
        target = account.split("@", 1)
        target_name = self.check_name(target[0])
        if len(target) == 2 and normalize_domain(target[1]) != domain and self.require_domain(target[1]).name != domain:
            raise DirectoryError("an alias must name an account of its own domain")
        acct = self.db.get_object(domain, target_name)
        if acct is None or acct.kind != "account":
            raise DirectoryError(f"no account {target_name}@{domain}")
        return self.db.add_object(ObjectRecord(domain, name, "alias", {"target": target_name}))

    def add_forwarder(self, address: str, target: str) -> ObjectRecord:
        name, domain = self.split(address)
        try:
            parse_address(target)
        except AddressError as e:
            raise DirectoryError(f"forwarder target: {e}") from None
        return self.db.add_object(ObjectRecord(domain, name, "forwarder", {"target": target}))

    def add_group(self, address: str, members: Sequence[str] = (), real_name: str = "") -> ObjectRecord:
        name, domain = self.split(address)
        checked = self._check_members(members)
        return self.db.add_object(ObjectRecord(domain, name, "group", {"members": checked, "real_name": real_name}))

    def _check_members(self, members: Sequence[str]) -> list[str]:
        out = []
        for m in members:
            try:
                parse_address(m, allow_no_domain=True)
            except AddressError as e:
                raise DirectoryError(f"group member {m!r}: {e}") from None
            if m not in out:
                out.append(m)
        return out

    def set_group_members(self, address: str, add: Sequence[str] = (), remove: Sequence[str] = ()) -> ObjectRecord:
        obj = self._require_kind(address, "group")
        members = [m for m in obj.data.get("members", []) if m not in set(remove)]
        for m in self._check_members(add):
            if m not in members:
                members.append(m)
        return self.db.update_object(obj.domain, obj.name, {"members": members})

    def update(self, address: str, kind: str, changes: dict[str, Any], cram_md5: bool = False) -> ObjectRecord:
        """Change an object.  A new ``password`` is hashed; with ``cram_md5`` it is also
        kept sealed (readable by this server only) for CRAM-MD5 logins, which need the
        shared secret itself; a new password without it drops any sealed copy."""
        obj = self._require_kind(address, kind)
        if "password" in changes and changes["password"] is not None:
            plain = changes["password"]
            changes = dict(changes, password=self.hash_password(plain), cram=None)
            if cram_md5:
                if self.secrets is None:
                    raise DirectoryError("no secret key: CRAM-MD5 secrets cannot be stored")
                changes["cram"] = self.secrets.seal(plain)
        if kind == "forwarder" and changes.get("target"):
            try:
                parse_address(changes["target"])
            except AddressError as e:
                raise DirectoryError(f"forwarder target: {e}") from None
        return self.db.update_object(obj.domain, obj.name, changes)

    def remove(self, address: str, kind: str) -> None:
        obj = self._require_kind(address, kind)
        if kind == "account":
            for alias in self.db.list_objects(obj.domain, "alias"):
                if alias.data.get("target") == obj.name:
                    self.db.remove_object(alias.domain, alias.name)
        self.db.remove_object(obj.domain, obj.name)

    def _require_kind(self, address: str, kind: str) -> ObjectRecord:
        obj = self.get(address)
        if obj.kind != kind:
            raise DirectoryError(f"{obj.address} is a {obj.kind}, not a {kind}")
        return obj

    def account_named(self, name: str, domain: str) -> ObjectRecord | None:
        """The account ``name@domain`` stands for (an alias gives its account), or None."""
        obj = self.lookup(name, domain)
        return self.account_of(obj) if obj is not None else None

    def account_of(self, obj: ObjectRecord) -> ObjectRecord | None:
        """The account an account or alias stands for (None for other kinds)."""
        if obj.kind == "account":
            return obj
        if obj.kind == "alias":
            target = self.db.get_object(obj.domain, obj.data.get("target", ""))
            if target is not None and target.kind == "account":
                return target
        return None

    # -- sender addresses -------------------------------------------------------

    def may_send_as(self, account: str, address: str) -> bool:
        """Whether the account ``name@domain`` (as a login gives it) may use ``address``
        as a sender: the envelope sender of mail it submits, an address of its From:
        field.  The one check for submission, the web and rule-generated mail.

        Its own addresses: the account and its aliases, in its domain or any of the
        domain's aliases; the addresses of its ``send_as`` list (groups, shared
        accounts; ``*@domain`` for a whole domain), given by an administrator; and
        what its domain's ``send_as`` setting adds (SEND_AS_POLICIES).  The null
        reverse-path is always allowed (it is no one's address)."""
        if not address:
            return True
        name, _, domain = account.rpartition("@")
        acct = self.db.get_object(domain, name)
        if acct is None or acct.kind != "account":
            return False
        home = self.db.get_domain(acct.domain)
        policy = home.settings.get("send_as", "own") if home is not None else "own"
        if policy == "any":
            return True
        try:
            a = parse_address(address)
        except AddressError:
            return False
        rec = self.domain(a.domain)
        canonical_domain = rec.name if rec is not None else a.domain
        if rec is not None and rec.name == acct.domain:
            if policy == "domain":
                return True
            obj = self.db.get_object(rec.name, a.local_key)
            owner = self.account_of(obj) if obj is not None else None
            if owner is not None and owner.name == acct.name and owner.domain == acct.domain:
                return True
        for right in acct.data.get("send_as", []):
            r_local, _, r_domain = str(right).lower().rpartition("@")
            r_rec = self.domain(r_domain)
            if (r_rec.name if r_rec is not None else r_domain) != canonical_domain:
                continue
            if r_local == "*" or r_local == a.local_key:
                return True
        return False

    # -- passwords --------------------------------------------------------------

    def hash_password(self, password: str) -> str:
        if not password:
            raise DirectoryError("empty password")
        return self._hasher.hash(password)

    def cram_secret(self, account: ObjectRecord) -> str | None:
        """The shared secret for CRAM-MD5 (RFC 2195), if the account has one."""
        sealed = account.data.get("cram")
        if not sealed or self.secrets is None or not account.data.get("enabled", True):
            return None
        return self.secrets.open(sealed)

    def verify_password(self, account: ObjectRecord, password: str) -> bool:
        """Check a password (CPU-bound: call it off the event loop)."""
        stored = account.data.get("password")
        if account.kind != "account" or not stored or not account.data.get("enabled", True):
            return False
        if stored.startswith("$argon2id$"):
            # libsodium's Argon2id (PyNaCl) checks the same encoded hash with about
            # 40 % less CPU than the reference code inside argon2-cffi, which does
            # the hashing: a login costs ~0.1 s of CPU instead of ~0.17 s.
            try:
                return bool(nacl.pwhash.argon2id.verify(stored.encode("ascii"), password.encode("utf-8", "surrogateescape")))
            except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError, TypeError):
                return False
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
