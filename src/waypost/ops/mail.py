"""The operations on what a domain's mail carries and holds: DKIM signing keys and the
DNS records to publish (``waypost dkim``, ``waypost dns``), mailbox quotas (``waypost
quota``, the ``--quota`` options), Sieve scripts (``waypost sieve``), mailbox
creation (``waypost mailbox create``) and the account file areas (``waypost files``).  Mixed into ``Operations``: the same checks
for the CLI, the API and the admin pages.

A domain administrator may do all of it for the domains given to them (a DKIM key
signs only its own domain's mail); a Sieve script of an account with administrator
rights is a server administrator's to change (it could redirect that account's mail).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ..address import AddressError, normalize_domain

if TYPE_CHECKING:
    from ..config import Settings
    from ..db import DKIMKeyRecord, ObjectRecord
    from ..directory import Directory
    from ..secrets import Secrets

__all__ = ["MailOps", "format_size", "parse_quota"]

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
#: Largest Sieve script the API and the pages store (ManageSieve's default limit).
MAX_SIEVE_SCRIPT = 1024 * 1024


def parse_quota(field: str, value: Any, size: bool, for_domain: bool = False) -> int | str | None:
    """A quota limit as given (a number; for sizes also ``500K``, ``100M``, ``2G``;
    ``unlimited``; ``default`` or None: the account's own limit dropped) -> as
    stored: octets or messages, ``"unlimited"`` (an account only: overrides its
    domain's default), or None (no limit of its own).  ``Invalid`` names ``field``."""
    from . import Invalid

    if value is None:
        return None
    if isinstance(value, bool):
        raise Invalid(field, "expected a number, \"unlimited\" or null")
    if isinstance(value, int):
        if value < 0:
            raise Invalid(field, "less than 0")
        return value
    if not isinstance(value, str):
        raise Invalid(field, "expected a number, \"unlimited\" or null")
    text = value.strip().lower()
    if text in ("unlimited", "none"):
        return None if for_domain else "unlimited"
    if text == "default":
        if for_domain:
            raise Invalid(field, "a domain's limit is a number or unlimited")
        return None
    m = re.fullmatch(r"(\d{1,18})\s*([kmgt]?)(i?b)?" if size else r"(\d{1,18})()()", text)
    if m is None:
        raise Invalid(field, "expected a size such as 1048576, 500K, 100M, 2G, or unlimited" if size
                      else "expected a number of messages, or unlimited")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_size(n: int | None) -> str:
    """Octets as people read them (None: unlimited)."""
    if n is None:
        return "unlimited"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover


class MailOps:
    directory: "Directory"
    settings: "Settings | None"
    actor: Any

    if TYPE_CHECKING:  # given by Operations, which this mixin is part of (types only, no code)
        def _require(self, domain: str) -> None: ...
        def _domain_of(self, address: str) -> tuple[str, str]: ...
        def _require_manageable(self, address: str) -> None: ...
        def audit(self, action: str, obj: str, **fields: Any) -> None: ...

    @property
    def _mdb(self) -> Any:
        return self.directory.db

    def _local_domain(self, domain: str, field: str = "domain") -> str:
        """A local domain the actor administers, as stored."""
        from . import Invalid

        try:
            name = normalize_domain(domain)
        except AddressError as e:
            raise Invalid(field, str(e)) from None
        rec = self.directory.domain(name)
        if rec is None:
            raise Invalid(field, f"{name} is not a local domain")
        self._require(rec.name)
        return rec.name

    def _account(self, address: str) -> "ObjectRecord":
        """The account an address names (an alias names its account); its domain the
        actor's."""
        from . import Invalid

        self._domain_of(address)
        acct = self.directory.account_of(self.directory.get(address))
        if acct is None:
            raise Invalid("address", f"{address} is not an account")
        self._require(acct.domain)
        return acct

    @staticmethod
    def _selector(selector: str) -> str:
        from ..mailauth.keys import check_selector
        from . import Invalid

        try:
            return check_selector(selector)
        except ValueError as e:
            raise Invalid("selector", str(e)) from None

    # -- DKIM keys (RFC 6376, RFC 8463) --------------------------------------------------

    def _key_view(self, k: "DKIMKeyRecord", signer: "DKIMKeyRecord | None") -> dict[str, Any]:
        from ..mailauth import dns_name, dns_record

        return {"domain": k.domain, "selector": k.selector, "algorithm": k.algorithm,
                "created": time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created)),
                "state": ("signing" if signer is not None and signer.selector == k.selector
                          else ("active" if k.activated else "inactive")),
                "name": dns_name(k.domain, k.selector), "type": "TXT", "value": dns_record(k.algorithm, k.public_key)}

    def dkim_list(self, domain: str | None = None) -> list[dict[str, Any]]:
        """The keys (of ``domain``, or of every domain the actor administers), with the
        record each needs in DNS and which one signs."""
        from ..mailauth.keys import signing_key

        name = self._local_domain(domain) if domain else None
        rows: list[dict[str, Any]] = []
        signers: dict[str, Any] = {}
        for k in self._mdb.dkim_keys(name):
            if not self.actor_may(k.domain):
                continue
            if k.domain not in signers:
                signers[k.domain] = signing_key(self._mdb, k.domain)
            rows.append(self._key_view(k, signers[k.domain]))
        return rows

    def actor_may(self, domain: str) -> bool:
        return bool(self.actor.may(domain))

    def dkim_get(self, domain: str, selector: str) -> dict[str, Any]:
        from ..db import NotFound

        name, sel = self._local_domain(domain), self._selector(selector)
        for row in self.dkim_list(name):
            if row["selector"] == sel:
                return row
        raise NotFound(f"{name} has no DKIM key with selector {sel}")

    def dkim_generate(self, domain: str, selector: str | None = None, algorithm: str = "rsa",
                      inactive: bool = False) -> dict[str, Any]:
        """Make a key for ``domain`` (signing from now on unless ``inactive``: publish
        its record first, then activate it); returns it with its DNS record."""
        from ..db import DKIMKeyRecord
        from ..mailauth import ALGORITHMS, generate_key
        from ..mailauth.keys import new_selector
        from . import Invalid

        name = self._local_domain(domain)
        if algorithm not in ALGORITHMS:
            raise Invalid("algorithm", f"expected {' or '.join(sorted(ALGORITHMS))}")
        sel = self._selector(selector) if selector else new_selector(algorithm)
        if self.directory.secrets is None:
            raise Invalid("domain", "no secret key in the data directory to seal the private key with")
        material = generate_key(algorithm)
        now = time.time()
        sealed = self.directory.secrets.seal(material.private)
        self._mdb.dkim_key_add(DKIMKeyRecord(name, sel, algorithm, sealed, material.public, now,
                                             0.0 if inactive else now))
        self.audit("dkim-generate", f"{sel}._domainkey.{name}", algorithm=algorithm,
                   state="inactive" if inactive else "signing")
        return self.dkim_get(name, sel)

    def dkim_activate(self, domain: str, selector: str, active: bool = True) -> dict[str, Any]:
        """Sign ``domain``'s mail with this key from now on (``active``), or stop
        signing with it (kept, with its record, for mail already sent)."""
        name, sel = self._local_domain(domain), self._selector(selector)
        self._mdb.dkim_key_activate(name, sel, time.time() if active else 0.0)
        self.audit("dkim-activate" if active else "dkim-deactivate", f"{sel}._domainkey.{name}")
        return self.dkim_get(name, sel)

    def dkim_remove(self, domain: str, selector: str) -> dict[str, Any]:
        name, sel = self._local_domain(domain), self._selector(selector)
        row = self.dkim_get(name, sel)
        self._mdb.dkim_key_remove(name, sel)
        self.audit("dkim-remove", f"{sel}._domainkey.{name}")
        return row

    def dns_expected(self, domain: str) -> tuple[str, list[Any]]:
        """(the domain as stored, every record it should publish: MX, SPF, DKIM, DMARC,
        MTA-STS, TLS-RPT, SRV) as ``waypost dns`` checks them."""
        from ..mailauth.publish import expected_records
        from . import Invalid

        name = self._local_domain(domain)
        if self.settings is None:
            raise Invalid("domain", "no settings here")
        return name, expected_records(self.settings, name, self._mdb.dkim_keys(name))

    # -- quotas (RFC 9208 STORAGE and MESSAGE) ----------------------------------------

    def quota_show(self, address: str) -> dict[str, Any]:
        """One account's usage and limits (None: unlimited)."""
        from ..mailstore import quota_of

        acct = self._account(address)
        return self._quota_row(quota_of(self._mdb, acct.domain, acct.name, usage=True))

    @staticmethod
    def _quota_row(q: Any) -> dict[str, Any]:
        return {"account": f"{q.account}@{q.domain}", "storage": q.storage, "storage_limit": q.storage_limit,
                "messages": q.messages, "message_limit": q.message_limit, "percent": q.percent()}

    def quota_list(self, domain: str | None = None) -> list[dict[str, Any]]:
        """Every account's usage and limits (of ``domain``, or of every domain the
        actor administers), fullest first."""
        from ..mailstore import quota_of

        name = self._local_domain(domain) if domain else None
        rows = [self._quota_row(quota_of(self._mdb, o.domain, o.name, usage=True))
                for o in self.directory.list_objects(name, "account") if self.actor_may(o.domain)]
        rows.sort(key=lambda r: (-r["percent"], r["account"]))
        return rows

    def quota_recount(self, address: str) -> dict[str, Any]:
        """Count an account's usage again from the mailbox index (a repair)."""
        acct = self._account(address)
        storage, messages = self._mdb.quota_recount(acct.domain, acct.name)
        self.audit("quota-recount", acct.address, storage=storage, messages=messages)
        return self.quota_show(acct.address)

    # -- Sieve scripts (RFC 5228; the ones ManageSieve clients edit) -------------------

    def sieve_list(self, address: str) -> list[dict[str, Any]]:
        acct = self._account(address)
        return [{"name": n, "active": bool(a)} for n, a in self._mdb.sieve_list(acct.domain, acct.name)]

    def sieve_get(self, address: str, name: str) -> str:
        from ..db import NotFound

        acct = self._account(address)
        text = self._mdb.sieve_get(acct.domain, acct.name, name)
        if text is None:
            raise NotFound(f"{acct.address} has no script {name!r}")
        return str(text)

    def sieve_put(self, address: str, name: str, text: str, activate: bool = False) -> dict[str, Any]:
        """Store a script, checked first (refused with its line and column)."""
        from ..sieve import SieveError, compile_script
        from ..sieve.managesieve import check_script_name
        from . import Invalid

        acct = self._account(address)
        self._require_manageable(acct.address)
        problem = check_script_name(name)
        if problem:
            raise Invalid("name", problem)
        if len(text.encode("utf-8", "replace")) > MAX_SIEVE_SCRIPT:
            raise Invalid("script", f"larger than {MAX_SIEVE_SCRIPT} octets")
        try:
            compile_script(text)
        except SieveError as e:
            raise Invalid("script", str(e)) from None
        self._mdb.sieve_put(acct.domain, acct.name, name, text)
        if activate:
            self._mdb.sieve_activate(acct.domain, acct.name, name)
        self.audit("sieve-put", acct.address, script=name, active="yes" if activate else "no")
        return {"name": name, "active": activate or any(n == name and a for n, a in
                                                        self._mdb.sieve_list(acct.domain, acct.name))}

    def sieve_activate(self, address: str, name: str | None) -> None:
        """Choose the active script (None: none, plain delivery to INBOX)."""
        from ..db import NotFound

        acct = self._account(address)
        self._require_manageable(acct.address)
        if name is not None and self._mdb.sieve_get(acct.domain, acct.name, name) is None:
            raise NotFound(f"{acct.address} has no script {name!r}")
        self._mdb.sieve_activate(acct.domain, acct.name, name)
        self.audit("sieve-activate", acct.address, script=name or "none")

    def sieve_delete(self, address: str, name: str) -> None:
        """Delete a script (not the active one)."""
        acct = self._account(address)
        self._require_manageable(acct.address)
        self._mdb.sieve_delete(acct.domain, acct.name, name)
        self.audit("sieve-delete", acct.address, script=name)

    # -- mailboxes ---------------------------------------------------------------------

    def mailbox_create(self, path: str) -> str:
        """Create ``ACCOUNT/MAILBOX`` (and its missing parents); returns its name."""
        from . import Invalid

        address, sep, name = path.partition("/")
        if not sep or not name:
            raise Invalid("mailbox", f"{path!r}: give ACCOUNT/MAILBOX, e.g. public@example.com/announce")
        acct = self._account(address)
        store = self._store()
        from ..mailstore import MailboxNameError

        try:
            box = store.create(acct.domain, acct.name, name)
        except MailboxNameError as e:
            raise Invalid("mailbox", str(e)) from None
        self.audit("mailbox-create", f"{acct.address}/{box.name}")
        return str(box.name)

    def _store(self) -> Any:
        from . import Invalid

        factory = getattr(self, "_mailstore", None)
        if factory is None:
            raise Invalid("mailbox", "no mailstore here")
        return factory()

    # -- account file areas (Account File Storage) ------------------------------------

    def _file_store(self) -> Any:
        from ..files import FileStore
        from . import Invalid

        if self.settings is None:
            raise Invalid("address", "no settings here")
        s = self.settings
        return FileStore(s.path(s.storage.files), self.directory, s.files.size_limit)

    @staticmethod
    def _octets(field: str, value: Any) -> int:
        """A size limit: octets, or ``500K``, ``100M``, ``2G`` (not unlimited)."""
        from . import Invalid

        octets = parse_quota(field, value, True, for_domain=True)
        if not isinstance(octets, int):
            raise Invalid(field, "expected a size such as 1048576, 500K, 100M or 2G")
        return octets

    def files_usage(self, address: str | None = None, domain: str | None = None) -> list[dict[str, Any]]:
        """Octets used and the limit of each account's file area (one account, a
        domain's, or every one the actor administers)."""
        from ..files import LIMIT_KEY, LISTING_KEY, FilesError
        from . import Invalid

        store = self._file_store()
        if address:
            accounts = [self._account(address)]
        else:
            name = self._local_domain(domain) if domain else None
            accounts = [o for o in self.directory.list_objects(name, "account") if self.actor_may(o.domain)]
        rows = []
        for acct in accounts:
            try:
                area = store.for_account(acct)
                used = area.usage()
            except FilesError as e:
                raise Invalid("address", f"{acct.address}: {e}") from None
            dom = self._mdb.get_domain(acct.domain)
            source = ("account" if acct.data.get(LIMIT_KEY) is not None else
                      "domain" if dom is not None and dom.settings.get(LIMIT_KEY) is not None else "default")
            rows.append({"account": acct.address, "used": used, "limit": area.limit, "limit_from": source,
                         "percent": round(100.0 * used / area.limit, 1) if area.limit else (0.0 if not used else 100.0),
                         "listing": bool(acct.data.get(LISTING_KEY, False))})
        return rows

    def files_list(self, address: str, path: str = "") -> list[dict[str, Any]]:
        """A folder of an account's file area (``path`` from its top)."""
        from ..db import NotFound
        from ..files import FilesError
        from ..files.store import Missing
        from . import Invalid

        acct = self._account(address)
        try:
            entries = self._file_store().for_account(acct).list(path.strip("/"))
        except Missing as e:
            raise NotFound(str(e)) from None
        except FilesError as e:
            raise Invalid("path", str(e)) from None
        return [{"name": e.name, "folder": e.is_dir, "size": e.size, "modified": e.mtime} for e in entries]

    def files_set(self, address: str, **changes: Any) -> dict[str, Any]:
        """An account's file-area settings: ``limit`` (a size; None: its domain's or the
        server's) and ``listing`` (visitors may list a folder without index.html)."""
        from ..files import LIMIT_KEY, LISTING_KEY
        from . import Invalid

        acct = self._account(address)
        unknown = sorted(set(changes) - {"limit", "listing"})
        if unknown:
            raise Invalid(unknown[0], "not a setting of a file area")
        if not changes:
            raise Invalid("changes", "nothing to change")
        data: dict[str, Any] = {}
        if "limit" in changes:
            data[LIMIT_KEY] = None if changes["limit"] is None else self._octets("limit", changes["limit"])
        if "listing" in changes:
            if not isinstance(changes["listing"], bool):
                raise Invalid("listing", "expected true or false")
            data[LISTING_KEY] = changes["listing"] or None
        obj = self.directory.update(acct.address, "account", data)
        self.audit("files-set", obj.address, fields=",".join(sorted(changes)))
        return self.files_usage(obj.address)[0]

    def files_set_domain(self, domain: str, limit: Any) -> int | None:
        """The file-area limit of a domain's accounts without their own (None: the
        server's ``files.size_limit``)."""
        from ..files import LIMIT_KEY

        name = self._local_domain(domain)
        octets = None if limit is None else self._octets("limit", limit)
        self._mdb.update_domain_settings(name, {LIMIT_KEY: octets})
        self.audit("files-set-domain", name, limit=octets if octets is not None else "default")
        return octets

    # -- mailbox aliases (a name in an account's list that stands for another mailbox) --

    def mailbox_alias_list(self, address: str) -> list[dict[str, str]]:
        acct = self._account(address)
        return [{"alias": a, "target": t} for a, t in self._mdb.mailbox_alias_list(acct.domain, acct.name).items()]

    def mailbox_alias_add(self, address: str, name: str, target: str) -> dict[str, str]:
        """Give the account a mailbox ``name`` standing for ``target`` (its own mailbox or
        ``~account/mailbox``); refused when it would make a loop of aliases or the
        account may not see the target (no such mailbox, no 'l' right)."""
        from ..mailstore.access import Access
        from . import Invalid

        acct = self._account(address)
        access = Access(self._store(), acct.domain, acct.name, self.directory.account_named)
        if not name or len(name) > 1024 or access.split(name) is None or name.startswith("~"):
            raise Invalid("name", "an alias name is a plain mailbox name, not ~account/...")
        if not target or len(target) > 1024:
            raise Invalid("target", "expected a mailbox name or ~account/mailbox")
        if any(b.name == name for b in access.own()):
            raise Invalid("name", f"{acct.address} has a mailbox named {name}")
        aliases = dict(self._mdb.mailbox_alias_list(acct.domain, acct.name))
        aliases[name] = target
        seen, hop = {name}, target
        while hop in aliases:  # refuse loops of aliases
            if hop in seen:
                raise Invalid("target", f"{name} -> {target} would make a loop of aliases")
            seen.add(hop)
            hop = aliases[hop]
        before = self._mdb.mailbox_alias_list(acct.domain, acct.name).get(name)
        self._mdb.mailbox_alias_set(acct.domain, acct.name, name, target)
        ref = access.resolve(name)
        if ref is None or "l" not in ref.rights:
            self._mdb.mailbox_alias_set(acct.domain, acct.name, name, before)
            raise Invalid("target", f"{acct.address} may not see {target} (no such mailbox, or no 'l' right)")
        self.audit("mailbox-alias-add", f"{acct.address}/{name}", target=target)
        return {"alias": name, "target": target}

    def mailbox_alias_remove(self, address: str, name: str) -> dict[str, str]:
        from ..db import NotFound

        acct = self._account(address)
        aliases = self._mdb.mailbox_alias_list(acct.domain, acct.name)
        if name not in aliases:
            raise NotFound(f"{acct.address} has no mailbox alias {name}")
        self._mdb.mailbox_alias_set(acct.domain, acct.name, name, None)
        self.audit("mailbox-alias-remove", f"{acct.address}/{name}")
        return {"alias": name, "target": str(aliases[name])}
