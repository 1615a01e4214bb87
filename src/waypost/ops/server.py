"""The server-wide operations (server administrators only): server-wide rules, gateway
forwarding rules and next-hop AUTH, Domain Sharing peers and cache, the failed-login
counts and blocks.  Mixed into
``Operations``; the same checks for ``waypost rule|gateway|share``, the API and the
admin pages."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any, Sequence

from ..address import AddressError, normalize_domain

if TYPE_CHECKING:
    from ..config import Settings
    from ..directory import Directory
    from ..secrets import Secrets

__all__ = ["ServerOps"]


class ServerOps:
    directory: "Directory"
    settings: "Settings | None"

    # (from Operations)
    def _require_server_admin(self, what: str) -> None: ...  # pragma: no cover
    def audit(self, action: str, obj: str, **fields: Any) -> None: ...  # pragma: no cover

    @property
    def _db(self) -> Any:
        return self.directory.db

    def _secrets(self) -> "Secrets":
        from ..ops import Invalid

        if self.directory.secrets is None:
            raise Invalid("secret", "no secret key in the data directory")
        return self.directory.secrets

    # -- server-wide rules ---------------------------------------------------------------

    def _rule_check(self) -> Any:
        d = self.directory

        def check(r: Any) -> str | None:
            for a in r.actions:
                if a.verb in ("mirror", "forward", "redirect"):
                    name, _, domain = a.arg.rpartition("@")
                    if d.domain(domain) is not None and d.lookup(name, domain) is None:
                        return f"{a.verb} {a.arg}: there is no such local address (create it first)"
                if a.verb == "store":
                    who = a.arg[1:].partition("/")[0]
                    name, _, domain = who.partition("@")
                    obj = d.lookup(name, domain or d.main_domain)
                    if obj is None or d.account_of(obj) is None:
                        return f"store {a.arg}: there is no account {who} (create it first)"
            return None
        return check

    def rules_text(self) -> str:
        from ..rules.server import RULES_KEY

        self._require_server_admin("read the server-wide rules")
        return str(self._db.get_value(RULES_KEY) or "")

    def rules_list(self) -> list[dict[str, Any]]:
        from ..rules import format_rule, parse_rules

        rules, _ = parse_rules(self.rules_text())
        return [{"position": i, "name": r.name, "rule": format_rule(r), "at_rcpt": r.at_rcpt}
                for i, r in enumerate(rules, 1)]

    def rules_set(self, text: str) -> tuple[int, list[Any]]:
        """Replace every rule (each checked first; with a bad one nothing changes and the
        errors come back)."""
        from ..rules.server import store_rules

        self._require_server_admin("change the server-wide rules")
        count, errors = store_rules(self._db, text, self._rule_check())
        if not errors:
            self.audit("rules-import", "rules", rules=count)
        return count, errors

    def _rule_lines(self) -> tuple[list[str], list[str]]:
        from ..rules import format_rule, parse_rules

        rules, _ = parse_rules(self.rules_text())
        return [r.name for r in rules], [format_rule(r) for r in rules]

    def rule_add(self, text: str, position: int | None = None) -> tuple[int, list[Any]]:
        """Add one rule at ``position`` (1 = first; None: last); returns (its position, errors)."""
        _names, lines = self._rule_lines()
        at = len(lines) if position is None else max(0, min(position - 1, len(lines)))
        lines.insert(at, text)
        _count, errors = self.rules_set("\n".join(lines) + "\n")
        return at + 1, errors

    def rule_move(self, name: str, position: int) -> int:
        from ..db import NotFound

        names, lines = self._rule_lines()
        if name not in names:
            raise NotFound(f"no rule {name}")
        line = lines.pop(names.index(name))
        lines.insert(max(0, min(position - 1, len(lines))), line)
        self._saved(self.rules_set("\n".join(lines) + "\n"))
        return max(1, min(position, len(lines)))

    @staticmethod
    def _saved(result: tuple[int, list[Any]]) -> None:
        """A move or removal that leaves a rule the checks refuse (its account went)."""
        from ..ops import Invalid

        if result[1]:
            e = result[1][0]
            raise Invalid("rules", f"line {e.line_no}: {e.reason}: {e.line.strip()}")

    def rule_remove(self, name: str) -> None:
        from ..db import NotFound

        names, lines = self._rule_lines()
        if name not in names:
            raise NotFound(f"no rule {name}")
        kept = [line for n, line in zip(names, lines) if n != name]
        self._saved(self.rules_set("\n".join(kept) + ("\n" if kept else "")))

    # -- gateway forwarding rules and next-hop AUTH ----------------------------------------

    def gateway_text(self) -> str:
        from ..rules import RULES_KEY

        self._require_server_admin("read the gateway rules")
        return str(self._db.get_value(RULES_KEY) or "")

    def gateway_list(self) -> list[dict[str, Any]]:
        from ..rules import parse_gateway

        rules, _ = parse_gateway(self.gateway_text())
        return [{"line": r.line_no, "match": r.match, "destination": "MTA" if r.mta else r.host,
                 "port": r.port, "rewrite": r.rewrite} for r in rules]

    def gateway_set(self, text: str) -> tuple[int, list[Any]]:
        from ..rules import store_rules

        self._require_server_admin("change the gateway rules")
        count, errors = store_rules(self._db, text)
        if not errors:
            self.audit("gateway-import", "gateway", rules=count)
        return count, errors

    def gateway_test(self, address: str) -> dict[str, Any]:
        """Which gateway rule decides for ``address`` (first match wins), and the
        recipient as the destination gets it; ``rule`` None: delivered normally."""
        from ..ops import Invalid
        from ..rules.gateway import GatewayTable

        if not address or len(address) > 320 or "@" not in address:
            raise Invalid("address", "expected an address")
        rule = GatewayTable.from_text(self.gateway_text()).first(address)
        if rule is None:
            return {"address": address, "rule": None, "envelope": address}
        return {"address": address, "rule": {"line": rule.line_no, "match": rule.match,
                                             "destination": "MTA" if rule.mta else rule.host, "port": rule.port,
                                             "rewrite": rule.rewrite},
                "envelope": address if rule.mta else rule.envelope(address)}

    def gateway_auth_list(self) -> list[dict[str, str]]:
        from ..rules import CREDENTIALS_KEY

        self._require_server_admin("read the next-hop credentials")
        return [{"for": who, "user": e["user"]} for who, e in sorted((self._db.get_value(CREDENTIALS_KEY) or {}).items())]

    def gateway_auth_set(self, who: str, user: str, password: str) -> None:
        from ..ops import Invalid
        from ..rules import set_credentials

        self._require_server_admin("set next-hop credentials")
        if not user:
            raise Invalid("user", "empty")
        if not password:
            raise Invalid("password", "empty password")
        set_credentials(self._db, self._secrets(), who, user, password)
        self.audit("gateway-auth-set", who, user=user)  # never the password

    def gateway_auth_remove(self, who: str) -> None:
        from ..db import NotFound
        from ..rules import remove_credentials

        self._require_server_admin("remove next-hop credentials")
        if not remove_credentials(self._db, who):
            raise NotFound(f"no credentials for {who}")
        self.audit("gateway-auth-remove", who)

    # -- Domain Sharing peers and cache ------------------------------------------------

    def peers_list(self) -> list[dict[str, Any]]:
        from ..sharing import load_peers

        self._require_server_admin("read the sharing peers")
        return [{"host": p.host, "addresses": list(p.addresses), "smtp_port": p.smtp_port,
                 "minger_port": p.minger_port, "secret": bool(p.secret), "domains": list(p.domains)}
                for p in load_peers(self._db, self._secrets())]

    def peer_add(self, host: str, smtp_port: int = 25, minger_port: int = 4069, secret: str = "",
                 domains: Sequence[str] = ()) -> None:
        """Add (or replace) a peer; its addresses are looked up now (how its copies of
        shared groups are recognised)."""
        from ..ops import Invalid
        from ..sharing import SharingPeer, load_peers, save_peers
        from ..sharing.proto import MIN_SECRET_LENGTH

        self._require_server_admin("change the sharing peers")
        if not host or len(host) > 255 or any(c in host for c in " /@"):
            raise Invalid("host", "expected a host name or an address")
        for name, port in (("smtp_port", smtp_port), ("minger_port", minger_port)):
            if not 1 <= port <= 65535:
                raise Invalid(name, "expected a port (1-65535)")
        if secret and len(secret) < MIN_SECRET_LENGTH:
            raise Invalid("secret", f"at least {MIN_SECRET_LENGTH} characters")
        try:
            shared = [normalize_domain(d) for d in domains]
        except AddressError as e:
            raise Invalid("domains", str(e)) from None
        for d in shared:
            if self.directory.domain(d) is None:
                raise Invalid("domains", f"{d} is not a local domain")
        try:
            addresses = sorted({str(ai[4][0]) for ai in socket.getaddrinfo(host, smtp_port, proto=socket.IPPROTO_TCP)})
        except (OSError, UnicodeError) as e:
            raise Invalid("host", f"{host}: cannot find its addresses ({e}); give an address or fix its DNS") from None
        secrets = self._secrets()
        peers = [p for p in load_peers(self._db, secrets) if p.host != host]
        peers.append(SharingPeer(host, smtp_port, minger_port, secret, shared, addresses))
        save_peers(self._db, secrets, peers)
        self.audit("share-peer-add", host, smtp_port=smtp_port, minger_port=minger_port)

    def peer_remove(self, host: str) -> None:
        from ..db import NotFound
        from ..sharing import load_peers, save_peers

        self._require_server_admin("change the sharing peers")
        secrets = self._secrets()
        peers = load_peers(self._db, secrets)
        kept = [p for p in peers if p.host != host]
        if len(kept) == len(peers):
            raise NotFound(f"no peer {host}")
        save_peers(self._db, secrets, kept)
        self.audit("share-peer-remove", host)

    def sharing_lookup(self, address: str, timeout: float) -> list[dict[str, Any]]:
        """Ask every peer that shares the address's domain about it now (Minger), as
        ``waypost share lookup`` does: one row per peer with its answer.  Nothing is
        remembered (the delivery path's look-ups fill the cache)."""
        import asyncio

        from ..address import parse_address
        from ..ops import Invalid
        from ..sharing import load_peers
        from ..sharing import Code, query_many

        self._require_server_admin("ask the sharing peers")
        try:
            addr = parse_address(address)
        except AddressError as e:
            raise Invalid("address", str(e)) from None
        peers = [p for p in load_peers(self._db, self._secrets()) if p.shares(addr.domain)]
        if not peers:
            raise Invalid("address", f"no peer shares {addr.domain}")
        answers = asyncio.run(query_many([p.minger() for p in peers], str(addr), timeout))
        rows = []
        for p in peers:
            a = answers[p.minger()]
            rows.append({"peer": p.host, "minger_port": p.minger_port,
                         "answer": a.name.lower().replace("_", " ") if isinstance(a, Code) else f"error: {a}",
                         "code": int(a) if isinstance(a, Code) else None})
        return rows

    def sharing_cache(self) -> list[dict[str, Any]]:
        from ..sharing.peers import CACHE_KEY

        self._require_server_admin("read the sharing cache")
        now = time.time()
        return [{"address": a, "peer": e["peer"], "expires": e["expires"]}
                for a, e in sorted((self._db.get_value(CACHE_KEY) or {}).items()) if e["expires"] > now]

    def sharing_cache_clear(self) -> int:
        from ..sharing.peers import CACHE_KEY

        self._require_server_admin("clear the sharing cache")
        n = len(self._db.get_value(CACHE_KEY) or {})
        self._db.set_value(CACHE_KEY, None)
        self.audit("share-cache-clear", "cache", answers=n)
        return n

    # -- failed logins (waypost auth blocked|unblock) ------------------------------------

    def auth_blocked(self) -> list[dict[str, Any]]:
        """Client addresses and accounts with failed logins still counted (within
        ``auth.window``), and until when each is blocked (0: not blocked)."""
        self._require_server_admin("read the failed-login counts")
        window = self.settings.auth.window if self.settings is not None else 3600.0
        return [{"key": key, "failures": failures, "last_failure": last, "blocked_until": until}
                for key, failures, last, until in self._db.login_failures_list(time.time() - window)]

    def auth_unblock(self, who: str) -> tuple[str, int]:
        """Forget the failed logins of a client address (an IPv6 one: its /64), an
        account, or a key as ``auth_blocked`` lists it; returns (the key, how many keys
        were counted: 0 or 1)."""
        from ..address import parse_address
        from ..db import NotFound
        from ..directory.throttle import client_key
        from ..ops import Invalid

        self._require_server_admin("unblock logins")
        # A key as listed (``client:192.0.2.7``, ``client:2001:db8::/64``, ``account:...``).
        key = who if who.startswith(("client:", "account:")) and len(who) <= 400 else client_key(who)
        if key is None:
            try:
                a = parse_address(who, allow_no_domain=True)
            except AddressError as e:
                raise Invalid("who", f"{who}: neither an IP address nor an account ({e})") from None
            obj = self.directory.account_named(a.local_key, a.domain or self.directory.main_domain)
            if obj is None:
                raise NotFound(f"{who}: no such account")
            key = f"account:{obj.address}"
        n = int(self._db.login_failures_clear([key]))
        self.audit("auth-unblock", key, cleared=n)
        return key, n
