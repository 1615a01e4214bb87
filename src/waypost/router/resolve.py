"""Address resolution: the one place where routing decisions are made.

``Router.resolve(address, context)`` is synchronous and does no network I/O: it reads
the directory (committed database state) and the settings, and appends each step to a
trace.  Listeners, rules and the queue ask it; they never decide routes themselves.

Order of resolution for an e-mail recipient (ROUTER.md):
  1. normalise the address (domain case, IDNA, trailing dot; no domain = main domain);
  2. a local domain (or an IP literal of one of our own addresses): account, alias,
     forwarder, group — else "unknown user";
  3. any other domain: remote delivery by MX, if this client may relay, else refused.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Sequence

from ..address import AddressError, ip_from_literal, is_ip_literal, parse_address
from ..directory import Directory, ObjectRecord
from .route import Context, Resolution, Route

__all__ = ["Router", "MAX_EXPANSION"]

#: Most final recipients one address may expand to through groups and forwarders.
MAX_EXPANSION = 1000
#: Deepest chain of forwarders and groups followed.
MAX_EXPANSION_DEPTH = 16


class Router:
    def __init__(
        self,
        directory: Directory,
        trusted_networks: Sequence[str] = (),
        own_addresses: Iterable[str] = (),
    ) -> None:
        self.directory = directory
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_networks]
        self.own_addresses = {str(ipaddress.ip_address(a)) for a in own_addresses}

    # -- relay permission -------------------------------------------------------

    def is_trusted(self, client_ip: str | None) -> bool:
        if not client_ip:
            return False
        try:
            ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:  # type: ignore[union-attr]
            ip = ip.ipv4_mapped  # type: ignore[union-attr]
        return any(ip in net for net in self.trusted)

    def may_relay(self, ctx: Context, trace: list[str]) -> bool:
        if ctx.internal:
            trace.append("relay: allowed (Waypost's own expansion)")
            return True
        if ctx.authenticated:
            trace.append(f"relay: allowed (authenticated as {ctx.authenticated})")
            return True
        if self.is_trusted(ctx.client_ip):
            trace.append(f"relay: allowed (client {ctx.client_ip} is in relay.trusted_networks)")
            return True
        trace.append(f"relay: denied (client {ctx.client_ip or 'unknown'} is neither authenticated nor trusted)")
        return False

    # -- resolution -------------------------------------------------------------

    def resolve(self, address: str, ctx: Context | None = None) -> Resolution:
        ctx = ctx or Context()
        trace: list[str] = [f"input: {address!r} ({ctx.kind})"]
        route = self._resolve(address, ctx, trace)
        trace.append(f"result: {route.kind} {route.target if route.kind in ('local', 'remote', 'held') else ''}".rstrip())
        return Resolution(route, trace)

    def _resolve(self, address: str, ctx: Context, trace: list[str]) -> Route:
        try:
            addr = parse_address(address, allow_no_domain=True)
        except AddressError as e:
            trace.append(f"syntax: {e}")
            return Route("refuse", address, code=501, status="5.1.3", reason=f"Bad recipient address syntax: {e}")
        domain = addr.domain or self.directory.main_domain
        if not addr.domain:
            trace.append(f"no domain: using the main domain {domain}")
        if is_ip_literal(domain):
            ip = ip_from_literal(domain)
            if ip in self.own_addresses:
                trace.append(f"{domain} is one of our own addresses: main domain {self.directory.main_domain}")
                domain = self.directory.main_domain
            else:
                return self._remote(addr.local, domain, ctx, trace, host=ip, port=25)
        rec = self.directory.domain(domain)
        if rec is None:
            trace.append(f"domain {domain}: not local")
            return self._remote(addr.local, domain, ctx, trace)
        if rec.name != domain:
            trace.append(f"domain {domain}: alias of {rec.name}")
        else:
            trace.append(f"domain {domain}: local")
        local = addr.local_key
        obj = self.directory.db.get_object(rec.name, local)
        if obj is None:
            trace.append(f"object {local}@{rec.name}: none")
            return Route("refuse", f"{addr.local}@{rec.name}", domain=rec.name, code=550, status="5.1.1",
                         reason=f"<{addr.local}@{rec.name}>: no such user here")
        return self._local(obj, trace)

    def _local(self, obj: ObjectRecord, trace: list[str]) -> Route:
        trace.append(f"object {obj.address}: {obj.kind}")
        account = ""
        if obj.kind in ("account", "alias"):
            acct = self.directory.account_of(obj)
            if acct is None:
                trace.append(f"alias {obj.address}: its account {obj.data.get('target')} is gone")
                return Route("refuse", obj.address, domain=obj.domain, code=550, status="5.1.1",
                             reason=f"<{obj.address}>: no such user here")
            account = acct.name
            if obj.kind == "alias":
                trace.append(f"alias of account {acct.address}")
            if not acct.data.get("enabled", True):
                return Route("refuse", obj.address, domain=obj.domain, code=550, status="5.2.1",
                             reason=f"<{obj.address}>: mailbox disabled")
        return Route("local", obj.address, domain=obj.domain, name=obj.name, object_kind=obj.kind, account=account)

    def _remote(self, local: str, domain: str, ctx: Context, trace: list[str],
                host: str = "", port: int | None = None) -> Route:
        address = f"{local}@{domain}"
        if ctx.kind != "mail":
            trace.append(f"{ctx.kind} names must be local")
            return Route("refuse", address, code=550, status="5.1.1", reason=f"<{address}>: unknown name")
        # '%', '!' and quoted '@' in the local part of a remote address are passed on
        # as they are: they only matter to the destination, and only a client that may
        # relay gets this far.
        if not self.may_relay(ctx, trace):
            return Route("refuse", address, domain=domain, code=554, status="5.7.1",
                         reason=f"<{address}>: Relay access denied")
        if host:
            trace.append(f"remote: connect to {host} port {port}")
        else:
            trace.append(f"remote: deliver by MX of {domain}")
        return Route("remote", address, domain=domain, host=host, port=port)

    # -- login names ------------------------------------------------------------

    def domain_for_ip(self, server_ip: str | None) -> str | None:
        """The domain bound to the server address a client connected to (multihoming,
        seed 001), if any."""
        if not server_ip:
            return None
        for rec in self.directory.list_domains():
            if server_ip in rec.settings.get("ips", []):
                return rec.name
        return None

    def resolve_login(self, login: str, ctx: Context) -> ObjectRecord | None:
        """The account a login name stands for: ``name@domain``, ``name%domain`` (seed
        001), or a bare ``name`` in the domain bound to the server address, else in the
        main domain.  Aliases log in as their account."""
        name = login.strip()
        if "@" not in name and "%" in name:
            local, _, domain = name.rpartition("%")
        elif "@" in name:
            local, _, domain = name.rpartition("@")
        else:
            local, domain = name, self.domain_for_ip(ctx.server_ip) or self.directory.main_domain
        if not local or not domain:
            return None
        obj = self.directory.lookup(local, domain)
        return self.directory.account_of(obj) if obj is not None else None

    # -- expansion of forwarders and groups ----------------------------------------

    def expand(self, route: Route, trace: list[str] | None = None) -> list[Route]:
        """Final delivery routes for a local route: accounts stay, forwarders and groups
        are followed (members resolved as Waypost's own mail), duplicates dropped, with
        limits on depth and count.  A loop ends at the first repeat.  A member that
        cannot be resolved stays in the list as a refuse route, to be bounced."""
        trace = trace if trace is not None else []
        out: list[Route] = []
        seen: set[str] = set()
        self._expand(route, 0, out, seen, trace)
        return out

    def _expand(self, route: Route, depth: int, out: list[Route], seen: set[str], trace: list[str]) -> None:
        key = f"{route.kind}:{route.address.lower()}"
        if key in seen:
            trace.append(f"expand: {route.address} already included")
            return
        seen.add(key)
        if route.kind != "local" or route.object_kind in ("account", "alias"):
            if len(out) >= MAX_EXPANSION:
                trace.append(f"expand: more than {MAX_EXPANSION} recipients; {route.address} dropped")
                return
            out.append(route)
            return
        if depth >= MAX_EXPANSION_DEPTH:
            trace.append(f"expand: {route.address} nested deeper than {MAX_EXPANSION_DEPTH}; dropped")
            return
        obj = self.directory.db.get_object(route.domain, route.name)
        if obj is None:
            return
        members: list[str] = [obj.data.get("target", "")] if obj.kind == "forwarder" else list(obj.data.get("members", []))
        trace.append(f"expand: {obj.kind} {obj.address} -> {', '.join(members) or '(nobody)'}")
        internal = Context(kind="mail", internal=True)
        for member in members:
            if "@" not in member:
                member = f"{member}@{obj.domain}"
            res = self.resolve(member, internal)
            if res.route.kind == "refuse":  # kept: the queue bounces it to the sender
                trace.append(f"expand: {member}: {res.route.reason}")
            self._expand(res.route, depth + 1, out, seen, trace)
