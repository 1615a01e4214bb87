"""Address resolution: the one place where routing decisions are made.

``Router.resolve(address, context)`` is synchronous and does no network I/O: it reads
the routing table and the directory (committed database state) and appends each step to
a trace.  Listeners, rules and the queue ask it; they never decide routes themselves.

Order of resolution for an e-mail recipient (ROUTER.md), repeated on each rewritten
address until it is final, at most ``MAX_HOPS`` times (a routing loop becomes a clear
refusal, never a hang):

  1. normalise (domain case, IDNA, trailing dot; no domain = the main domain);
  2. the Router table: address-level before domain-level records, exact before wildcard;
     a result in a ``.via`` domain or an IP literal is final (remote delivery);
  3. an IP literal of one of our own addresses is the main domain; any other IP literal
     is remote delivery to that address;
  4. a local domain: account, alias, forwarder, group — then the ``%`` and ``!`` forms
     (``user%victim@ours``, ``victim!user@ours``, ``"user@victim"@ours``) are routed as
     the address they name — then the domain's Mail to Unknown;
  5. any other domain: remote delivery by MX.

Relay permission (asked only when the result is remote): a trusted client (Waypost's
own expansions, an authenticated client, a client in ``relay.trusted_networks``) may
relay anywhere.  Anyone may relay where a ``Relay:`` or ``RelayAll:`` record, or the
domain's Mail to Unknown setting, sent the address — except that an address that
reached a remote domain through the ``%``/``!`` forms is relayable for untrusted clients
only through a ``RelayAll:`` record.  Everything else: ``554 5.7.1``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

from ..address import AddressError, ip_from_literal, is_ip_literal, normalize_domain, parse_address
from ..db import Database, VersionedText
from ..directory import Directory, ObjectRecord
from ..sharing.peers import CACHE_KEY, PEERS_KEY
from .route import Context, Resolution, Route
from .special import is_final_domain, normalize_via, parse_via, unpercent
from .table import Prefix, RoutingTable, TableError, parse_table

__all__ = ["Router", "Forwarding", "GatewayOptions", "HOLD_KEY", "SHARING_CACHED", "used_sharing_cache", "MAX_EXPANSION", "MAX_HOPS", "TABLE_KEY", "MAIL_TO_UNKNOWN",
           "store_table"]

#: The trace step that says an answer came from the Domain Sharing cache (the metrics
#: count these: ``used_sharing_cache``).
SHARING_CACHED = "sharing: cached: "


def _rememberable(route: Route, trace: list[str]) -> bool:
    """Whether an answer depends on nothing but the settings: not on Domain Sharing (a
    peer's answer, a cache entry that expires) and not on an SRS address (valid for so
    many days)."""
    if route.kind == "ask-peers":
        return False
    text = "\n".join(trace)  # one pass in C instead of two calls a step: no step holds a line break
    return "\nsharing" not in text and "srs0=" not in text.lower()


def used_sharing_cache(trace: list[str]) -> bool:
    """Whether a resolution was answered from the cache of peers' positive answers."""
    return any(step.startswith(SHARING_CACHED) for step in trace)


#: Answers a Router remembers in its process (``Router.resolve``): the same address in the
#: same context is answered from memory while the settings it was worked out from are
#: unchanged.  Bounded: when full it starts again (a flood of unknown RCPTs must not
#: grow it for ever).
REMEMBERED = 32_768

#: Most final recipients one address may expand to through groups and forwarders.
MAX_EXPANSION = 1000
#: Deepest chain of forwarders and groups followed.
MAX_EXPANSION_DEPTH = 16
#: Most rewrites (records, % forms, Mail to Unknown) applied to one address.
MAX_HOPS = 16
#: Where the table text lives in the database (its version beside it: VersionedText).
TABLE_KEY = "router.table"
#: Hold Mail for Domains: a list of domains whose queues wait for ETRN/ATRN.
HOLD_KEY = "queue.hold"
#: The values of a domain's ``mail_to_unknown`` setting besides a reroute pattern.
MAIL_TO_UNKNOWN = ("rejected", "discarded", "bounced")


def store_table(db: Database, text: str) -> tuple[int, list[TableError]]:
    """Validate the whole text and, only if every line is good, make it the table.
    Returns (number of records, errors); nothing changes when there are errors."""
    records, errors = parse_table(text)
    if errors:
        return 0, errors
    _table_store(db).put(text)
    return len(records), []


def _table_store(db: Database) -> VersionedText[RoutingTable]:
    return VersionedText(db, TABLE_KEY, lambda text: RoutingTable.compile(parse_table(text)[0]))


class ForwardingRule(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def line_no(self) -> int: ...
    @property
    def mta(self) -> bool: ...
    def envelope(self, address: str) -> str: ...


class Forwarding(Protocol):
    """The gateway forwarding table (waypost.rules): the first rule for an address."""

    def first(self, address: str) -> ForwardingRule | None: ...


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    local_users_stay: bool = True
    relay_matched: bool = False
    check_local: bool = True


@dataclass(slots=True)
class _Walk:
    """What one resolution has learnt so far."""

    trusted: bool
    granted: bool = False      # a Relay:/RelayAll: record or Mail to Unknown sent us here
    granted_all: bool = False  # ... a RelayAll: record
    percent: bool = False      # a %/! form from the client was followed
    rewritten: bool = False    # a record or Mail to Unknown produced the current address
    # What the settings say that every resolution under one change token asks again (the
    # held domains, a domain's Mail to Unknown, the sharing peers), kept beside the
    # answers remembered under that token; None: read each time.
    facts: dict[Any, Any] | None = None


_NO_CONTEXT = Context()


class Router:
    def __init__(
        self,
        directory: Directory,
        trusted_networks: Sequence[str] = (),
        own_addresses: Iterable[str] = (),
        forwarding: Callable[[], Forwarding] | None = None,
        gateway: GatewayOptions = GatewayOptions(),
        srs: Any = None,
        remember: int = REMEMBERED,
    ) -> None:
        """``srs``: the Sender Rewriting Scheme (waypost.rules.srs.SRS) whose bounce
        addresses (``SRS0=...@main domain``) route back to the original sender.
        ``remember``: most answers kept in memory (``resolve``); 0 keeps none."""
        self._remember = remember
        self._trusted_ips: dict[str, bool] = {}
        self.directory = directory
        self.srs = srs
        self.forwarding = forwarding
        self.gateway = gateway
        # relay.trusted_networks as (version, network address, mask) numbers: is_trusted.
        self._trusted_numbers = [(n.version, int(n.network_address), int(n.netmask))
                                 for n in (ipaddress.ip_network(t, strict=False) for t in trusted_networks)]
        self.own_addresses = {str(ipaddress.ip_address(a)) for a in own_addresses}
        self._table = _table_store(directory.db)
        # (settings token, answers worked out under it, facts read under it: _Walk.facts):
        # swapped whole when the token changes, so neither is used under another token.
        self._memo: tuple[bytes | None, dict[tuple[str, Context], Resolution], dict[Any, Any]] = (None, {}, {})

    # -- the table ----------------------------------------------------------------

    def table(self) -> RoutingTable:
        """The current table; a running server uses a new one at once (VersionedText)."""
        return self._table.get()

    # -- relay permission -------------------------------------------------------

    def is_trusted(self, client_ip: str | None) -> bool:
        if not client_ip:
            return False
        known = self._trusted_ips.get(client_ip)
        if known is None:
            # Kept per address text (the networks are fixed for this Router), bounded:
            # a client asks again at each RCPT.  The address is read by inet_pton, not
            # by ipaddress, which cost a third of a resolution (a new client each time).
            ip = _address_number(client_ip)
            known = ip is not None and any(ip[0] == version and ip[1] & mask == number
                                           for version, number, mask in self._trusted_numbers)
            if len(self._trusted_ips) >= 4096:
                self._trusted_ips.clear()
            self._trusted_ips[client_ip] = known
        return known

    def _trusted(self, ctx: Context) -> bool:
        return ctx.internal or bool(ctx.authenticated) or self.is_trusted(ctx.client_ip)

    def _may_relay(self, ctx: Context, walk: _Walk, trace: list[str]) -> bool:
        if ctx.internal:
            trace.append("relay: allowed (Waypost's own expansion)")
            return True
        if ctx.authenticated:
            trace.append(f"relay: allowed (authenticated as {ctx.authenticated})")
            return True
        if walk.trusted:
            trace.append(f"relay: allowed (client {ctx.client_ip} is in relay.trusted_networks)")
            return True
        if walk.percent and not walk.granted_all:
            trace.append("relay: denied (a %/! address from an untrusted client needs a RelayAll: record)")
            return False
        if walk.granted:
            trace.append("relay: allowed (a Relay:/RelayAll: record or Mail to Unknown sent it here)")
            return True
        if ctx.backup_mx:
            trace.append("relay: allowed (Relay to All Hosts We Backup: we are a lower MX of the domain)")
            return True
        trace.append(f"relay: denied (client {ctx.client_ip or 'unknown'} is neither authenticated nor trusted)")
        return False

    # -- resolution -------------------------------------------------------------

    def resolve(self, address: str, ctx: Context | None = None) -> Resolution:
        """The route of ``address`` with its trace.

        Remembered: an answer depends only on the settings (the table, domains, objects,
        gateway rules, hold list: everything under the database's settings token) and on
        the address and context, so the same question under the same token gets the
        same answer from this process's memory.  Any settings change, by any process or
        node, replaces the token, and the next question starts from nothing: a CLI
        change is seen by every worker at once.  Answers that depend on the time or on
        a peer (Domain Sharing, SRS addresses) are never remembered."""
        ctx = ctx or _NO_CONTEXT
        token = self.directory.db.settings_token() if ctx.peer_answers is None else None
        answers: dict[tuple[str, Context], Resolution] | None = None
        facts: dict[Any, Any] | None = None
        if token is not None:
            memo = self._memo
            if memo[0] == token:
                answers, facts = memo[1], memo[2]
                hit = answers.get((address, ctx))
                if hit is not None:
                    return Resolution(hit.route, list(hit.trace))
            else:
                answers, facts = {}, {}
                self._memo = (token, answers, facts)
        trace: list[str] = [f"input: {address!r} ({ctx.kind})"]
        route = self._resolve(address, ctx, trace, facts)
        where = route.target if route.kind in ("local", "remote", "held") else ""
        trace.append(f"result: {route.kind} {where}".rstrip()
                     + (f" ({route.code} {route.status} {route.reason})" if route.kind == "refuse" else ""))
        if answers is not None and self._remember > 0 and _rememberable(route, trace):
            # Into the dict of the token read before the work: if the settings changed
            # meanwhile, that dict is already (or will be) dropped with its token.
            if len(answers) >= self._remember:
                answers.clear()
            answers[(address, ctx)] = Resolution(route, list(trace))
        return Resolution(route, trace)

    @property
    def remembered(self) -> int:
        """How many answers this Router holds in memory now."""
        return len(self._memo[1])

    def as_backup(self, address: str, ctx: Context, refused: Route) -> Resolution:
        """Resolve again, for a client refused with 5.7.1, once the caller has found (by
        DNS) that we are a backup MX of ``refused.domain`` (``relay.backup_mx``).  The
        permission covers delivery of that very domain by its MX, nothing else (not a
        %-route to an address, not another domain): otherwise the refusal stands."""
        again = self.resolve(address, dataclasses.replace(ctx, backup_mx=True))
        r = again.route
        if r.kind in ("remote", "held") and not r.host and r.domain == refused.domain:
            return again
        again.trace.append(f"backup MX of {refused.domain}: does not cover {r.address}; refused")
        again.route = refused
        return again

    def _resolve(self, address: str, ctx: Context, trace: list[str], facts: dict[Any, Any] | None = None) -> Route:
        try:
            addr = parse_address(address, allow_no_domain=True)
        except AddressError as e:
            trace.append(f"syntax: {e}")
            return Route("refuse", address, code=501, status="5.1.3", reason=f"Bad recipient address syntax: {e}")
        main = self.directory.main_domain
        local, domain = addr.local, addr.domain or main
        if not addr.domain:
            trace.append(f"no domain: using the main domain {main}")
        table = self.table()
        walk = _Walk(trusted=self._trusted(ctx), facts=facts)
        for _hop in range(MAX_HOPS + 1):
            # 2. the Router table
            m = table.lookup(local, domain, ctx.kind, trusted=walk.trusted)
            if m is not None:
                if _hop >= MAX_HOPS:  # a 17th rewrite: a loop, whatever it would end in
                    break
                trace.append(m.description)
                walk.rewritten = True
                if m.relay in (Prefix.RELAY, Prefix.RELAYALL):
                    walk.granted = True
                    walk.granted_all = walk.granted_all or m.relay is Prefix.RELAYALL
                local, domain = m.local, m.domain or main
                if is_final_domain(domain):
                    return self._special(local, domain, ctx, walk, trace)
                continue
            # 3. gateway forwarding rules (seed 003), first match wins
            if self.forwarding is not None and ctx.kind == "mail" and not is_ip_literal(domain):
                fwd = self._forward(local, domain, ctx, walk, trace)
                if fwd is not None:
                    return fwd
            # 3. IP literals
            if is_ip_literal(domain):
                ip = ip_from_literal(domain)
                if ip not in self.own_addresses:
                    return self._special(local, domain, ctx, walk, trace)
                trace.append(f"{domain} is one of our own addresses: the main domain {main}")
                domain = main
            # 4. local domains
            name = self.directory.domain_name(domain)
            if name is None:
                trace.append(f"domain {domain}: not local")
                return self._remote(local, domain, ctx, walk, trace)
            trace.append(f"domain {domain}: local" + (f" (alias of {name})" if name != domain else ""))
            key = _unquote(local).lower()
            obj = self.directory.db.get_object(name, key)
            if obj is not None:
                return self._local(obj, trace)
            trace.append(f"object {key}@{name}: none")
            original = self.srs.reverse(_unquote(local)) if self.srs is not None and name == main else None
            if original:
                # A bounce of mail we forwarded: it goes back to the original sender.
                trace.append(f"SRS address: the original sender is {original}")
                walk.granted, walk.rewritten = True, True
                local, _, domain = original.rpartition("@")
                domain = domain.lower()
                continue
            if key == "postmaster" and name != main:
                # RFC 5321 §4.5.1: every domain accepts postmaster; ours is the main domain's.
                pm = self.directory.db.get_object(main, "postmaster")
                if pm is not None:
                    trace.append(f"postmaster of {name}: the main domain's postmaster@{main}")
                    return self._local(pm, trace)
            inner = _source_route(local)
            if inner is not None:
                walk.percent = True
                # A grant covers the address its record produced, not what the client's
                # % form makes of it: only records applied from here on may grant.
                walk.granted = walk.granted_all = False
                walk.rewritten = False
                local, domain = inner
                trace.append(f"{addr.local if _hop == 0 else key}@{name} names {local}@{domain}: routed again")
                try:
                    domain = normalize_domain(domain)
                except AddressError as e:
                    return Route("refuse", f"{local}@{domain}", code=501, status="5.1.3", reason=f"Bad address: {e}")
                continue
            if ctx.kind != "mail":
                return Route("refuse", f"{local}@{name}", domain=name, code=550, status="5.1.1",
                             reason=f"<{local}@{name}>: unknown name")
            shared = self._shared(f"{key}@{name}", name, ctx, trace, walk)
            if shared is not None:
                return shared
            unknown = self._unknown(local, name, self._mail_to_unknown(name, walk), trace)
            if isinstance(unknown, Route):
                return unknown
            walk.granted = True  # the administrator's own reroute
            walk.rewritten = True
            local, domain = unknown
            if is_final_domain(domain):
                return self._special(local, domain, ctx, walk, trace)
        trace.append(f"routing loop: more than {MAX_HOPS} rewrites")
        return Route("refuse", address, code=554, status="5.4.6",
                     reason=f"<{address}>: routing loop (more than {MAX_HOPS} router rewrites)")

    def check_sender(self, sender: str, ctx: Context | None = None) -> Resolution:
        """Query Domain Sharing hosts for message senders (seed 002; the caller asks only
        when ``sharing.query_senders`` is on): a MAIL FROM address in a local domain
        shared with peers must name an object here, or one a peer has.  The route is
        "accept", "ask-peers" (not final: the caller asks the peers by Minger and checks
        again with ``ctx.peer_answers``) or "refuse" (550 5.1.0 nobody has it; 451 4.4.3
        a peer could not be asked and none has it).  Any other sender is accepted."""
        ctx = ctx or Context()
        trace: list[str] = [f"sender: {sender!r}"]

        def accept(why: str) -> Resolution:
            trace.append(f"sender: accepted ({why})")
            return Resolution(Route("accept", sender), trace)

        try:
            addr = parse_address(sender)
        except AddressError as e:
            trace.append(f"syntax: {e}")
            return Resolution(Route("refuse", sender, code=501, status="5.1.7",
                                    reason=f"Bad sender address syntax: {e}"), trace)
        rec = self.directory.domain(addr.domain)
        if rec is None:
            return accept(f"{addr.domain} is not a local domain")
        peers = [p for p in self.directory.db.get_value(PEERS_KEY) or [] if not p.get("domains") or rec.name in p["domains"]]
        if not peers:
            return accept(f"{rec.name} is not shared with a peer")
        address = f"{addr.local_key}@{rec.name}"
        if self.directory.db.get_object(rec.name, addr.local_key) is not None:
            return accept(f"{address} is ours")
        if addr.local_key == "postmaster":  # RFC 5321 §4.5.1: every domain has one
            return accept("postmaster")
        if _from_peer(ctx.client_ip, peers):
            # A peer checked its senders itself; its mail may carry addresses only it can
            # vouch for (its SRS addresses for forwarded mail).
            return accept(f"client {ctx.client_ip} is a sharing peer")
        by_host = {p["host"] for p in peers}
        cached = (self.directory.db.get_value(CACHE_KEY) or {}).get(address)
        if cached and cached["expires"] > time.time() and cached["peer"] in by_host:
            trace.append(f"{SHARING_CACHED}{address} is on peer {cached['peer']}")
            return accept(f"cached: {address} is on peer {cached['peer']}")
        answers = ctx.peer_answers
        if answers is None:
            trace.append(f"sharing: ask peers {', '.join(sorted(by_host))} about sender {address}")
            return Resolution(Route("ask-peers", address, domain=rec.name), trace)
        for host, answer in answers.items():
            trace.append(f"sharing: peer {host} answered {answer}")
        for host, answer in answers.items():
            if answer in (4, 5) and host in by_host:  # 4: exists, cannot receive: still a real sender
                return accept(f"{address} is on peer {host}")
        if any(not isinstance(a, int) or a != 3 for a in answers.values()):
            return Resolution(Route("refuse", address, domain=rec.name, code=451, status="4.4.3",
                                    reason=f"<{address}>: a domain-sharing peer could not be asked; try again later"),
                              trace)
        trace.append(f"sharing: no peer has sender {address}")
        return Resolution(Route("refuse", address, domain=rec.name, code=550, status="5.1.0",
                                reason=f"<{address}>: Sender address rejected: no such user here or on a sharing peer"),
                          trace)

    def _forward(self, local: str, domain: str, ctx: Context, walk: _Walk, trace: list[str]) -> Route | None:
        """A gateway rule's destination, or None for normal processing (no rule, an MTA
        rule, a local user that stays, an unknown local user that is not forwarded)."""
        assert self.forwarding is not None
        address = f"{local}@{domain}"
        rule = self.forwarding().first(address)
        if rule is None:
            return None
        if rule.mta:
            trace.append(f"gateway rule line {rule.line_no}: {address} -> MTA (normal delivery)")
            return None
        rec = self.directory.domain(domain)
        if rec is not None:
            obj = self.directory.db.get_object(rec.name, _unquote(local).lower())
            if obj is not None and self.gateway.local_users_stay:
                trace.append(f"gateway rule line {rule.line_no}: {address} is a local user: not forwarded")
                return None
            if obj is None and self.gateway.check_local:
                trace.append(f"gateway rule line {rule.line_no}: no local user {address}: not forwarded")
                return None
        envelope = rule.envelope(address)
        where = f"{rule.host}:{rule.port}" if rule.port else rule.host
        trace.append(f"gateway rule line {rule.line_no}: {address} -> {where}, envelope <{envelope}>")
        if self.gateway.relay_matched:
            walk.granted = True
        if not self._may_relay(ctx, walk, trace):
            return Route("refuse", envelope, domain=domain, code=554, status="5.7.1",
                         reason=f"<{address}>: Relay access denied")
        return Route("remote", envelope, domain=envelope.rpartition("@")[2], host=rule.host, port=rule.port,
                     auth="gateway")

    def _shared(self, address: str, domain: str, ctx: Context, trace: list[str], walk: _Walk) -> Route | None:
        """Domain sharing (seed 002), before Mail to Unknown: the peer that has the user,
        from the cache or from the answers the caller brought; None to go on to Mail to
        Unknown (no peer has it, or this is a peer's own delivery or ours)."""
        peers = [p for p in self._fact(walk, "peers", lambda: self.directory.db.get_value(PEERS_KEY) or [])
                 if not p.get("domains") or domain in p["domains"]]
        if not peers or ctx.internal:
            return None
        if _from_peer(ctx.client_ip, peers):
            # A peer sends us mail for a name we do not have: never send it back (a loop
            # when two caches disagree); Mail to Unknown decides.
            trace.append(f"sharing: {address} came from peer {ctx.client_ip}: not asked again")
            return None
        by_host = {p["host"]: p for p in peers}
        cached = (self.directory.db.get_value(CACHE_KEY) or {}).get(address)
        if cached and cached["expires"] > time.time() and cached["peer"] in by_host:
            peer = by_host[cached["peer"]]
            trace.append(f"{SHARING_CACHED}{address} is on peer {peer['host']}")
            return self._to_peer(address, domain, peer, trace)
        answers = ctx.peer_answers
        if answers is None:
            trace.append(f"sharing: ask peers {', '.join(by_host)} about {address}")
            return Route("ask-peers", address, domain=domain)
        for host, answer in answers.items():
            trace.append(f"sharing: peer {host} answered {answer}")
        for host, answer in answers.items():
            if answer == 5 and host in by_host:
                return self._to_peer(address, domain, by_host[host], trace)
        if any(a == 4 for a in answers.values()):
            return Route("refuse", address, domain=domain, code=550, status="5.2.1",
                         reason=f"<{address}>: mailbox unavailable (on a sharing peer)")
        if any(not isinstance(a, int) or a not in (3,) for a in answers.values()):
            return Route("refuse", address, domain=domain, code=451, status="4.4.3",
                         reason=f"<{address}>: a domain-sharing peer could not be asked; try again later")
        trace.append(f"sharing: no peer has {address}")
        return None

    def _mail_to_unknown(self, domain: str, walk: _Walk | None = None) -> str:
        def load() -> str:
            rec = self.directory.db.get_domain(domain)
            return "rejected" if rec is None else str(rec.settings.get("mail_to_unknown", "rejected"))
        return self._fact(walk, ("mail_to_unknown", domain), load)  # type: ignore[no-any-return]

    @staticmethod
    def _fact(walk: _Walk | None, key: Any, load: Callable[[], Any]) -> Any:
        """``load()``, kept in ``walk.facts`` (bounded) for the other resolutions under
        the same change token.  What it keeps is read only, never changed."""
        facts = walk.facts if walk is not None else None
        if facts is None:
            return load()
        try:
            return facts[key]
        except KeyError:
            pass
        value = load()
        if len(facts) >= REMEMBERED:
            facts.clear()
        facts[key] = value
        return value

    def _to_peer(self, address: str, domain: str, peer: dict[str, Any], trace: list[str]) -> Route:
        trace.append(f"sharing: deliver to peer {peer['host']} port {peer['smtp_port']}")
        return Route("remote", address, domain=domain, host=peer["host"], port=int(peer["smtp_port"]))

    def _unknown(self, local: str, domain: str, setting: str, trace: list[str]) -> Route | tuple[str, str]:
        """The domain's Mail to Unknown: a final route, or the address to route next."""
        address = f"{local}@{domain}"
        if setting == "discarded":
            trace.append(f"Mail to Unknown of {domain}: discarded")
            return Route("discard", address, domain=domain)
        if setting == "bounced":
            trace.append(f"Mail to Unknown of {domain}: accepted and bounced")
            return Route("bounce", address, domain=domain, code=550, status="5.1.1",
                         reason=f"<{address}>: no such user here")
        if setting and setting != "rejected":
            pattern = normalize_via(setting)
            rerouted = pattern.replace("*", local, 1)
            trace.append(f"Mail to Unknown of {domain}: rerouted by {setting} to {rerouted}")
            r_local, at, r_domain = rerouted.rpartition("@")
            if not at:
                r_local, r_domain = rerouted, self.directory.main_domain
            try:
                return r_local, normalize_domain(r_domain)
            except AddressError:  # kept as written: routing refuses it with its reason
                return r_local, r_domain.lower()
        trace.append(f"Mail to Unknown of {domain}: rejected")
        return Route("refuse", address, domain=domain, code=550, status="5.1.1",
                     reason=f"<{address}>: no such user here")

    def _special(self, local: str, domain: str, ctx: Context, walk: _Walk, trace: list[str]) -> Route:
        """A ``.via`` domain or an IP literal: remote delivery to that host (seed 004)."""
        via = parse_via(domain)
        if via is None:
            trace.append(f"{domain}: not a usable .via domain or IP literal")
            return Route("refuse", f"{local}@{domain}", code=550, status="5.1.2",
                         reason=f"<{local}@{domain}>: bad routing target {domain}")
        # "The resulting envelope address (aname%domain.dom) is converted to the standard
        # form (aname@domain.dom)": the last % turns into @; the .via part is cut off.
        split = unpercent(local)
        if split is not None and not walk.rewritten:
            walk.percent = True  # the client's own "user%dom@[ip]": a source route of its making
        if split is not None:
            envelope = f"{split[0]}@{split[1]}"
        else:
            envelope = f"{local}@[{via.host}]" if via.is_ip else f"{local}@{via.host}"
        how = "MX of" if via.mx else ("address" if via.is_ip else "A/AAAA of")
        trace.append(f"{domain}: deliver to {how} {via}, envelope <{envelope}>")
        env_domain = envelope.rpartition("@")[2]
        if not self._may_relay(ctx, walk, trace):
            return Route("refuse", envelope, domain=env_domain, code=554, status="5.7.1",
                         reason=f"<{envelope}>: Relay access denied")
        if via.mx:
            return self._mx_route(envelope, via.host, trace, walk)
        # An IP literal or N.N.N.N.via without a port: the standard port, which is
        # delivery.smtp_port (25 unless a test moves it).
        return Route("remote", envelope, domain=env_domain, host=via.host, port=via.port)

    def _local(self, obj: ObjectRecord, trace: list[str]) -> Route:
        trace.append(f"object {obj.address}: {obj.kind}")
        account = ""
        created = 0.0
        if obj.kind in ("account", "alias"):
            acct = self.directory.account_of(obj)
            if acct is None:
                trace.append(f"alias {obj.address}: its account {obj.data.get('target')} is gone")
                return Route("refuse", obj.address, domain=obj.domain, code=550, status="5.1.1",
                             reason=f"<{obj.address}>: no such user here")
            account, created = acct.name, acct.created
            if obj.kind == "alias":
                trace.append(f"alias of account {acct.address}")
            if not acct.data.get("enabled", True):
                return Route("refuse", obj.address, domain=obj.domain, code=550, status="5.2.1",
                             reason=f"<{obj.address}>: mailbox disabled")
        return Route("local", obj.address, domain=obj.domain, name=obj.name, object_kind=obj.kind, account=account,
                     created=created)

    def _remote(self, local: str, domain: str, ctx: Context, walk: _Walk, trace: list[str]) -> Route:
        address = f"{local}@{domain}"
        if ctx.kind != "mail":
            trace.append(f"{ctx.kind} names must be local")
            return Route("refuse", address, code=550, status="5.1.1", reason=f"<{address}>: unknown name")
        if not self._may_relay(ctx, walk, trace):
            return Route("refuse", address, domain=domain, code=554, status="5.7.1",
                         reason=f"<{address}>: Relay access denied")
        trace.append(f"remote: deliver by MX of {domain}")
        return self._mx_route(address, domain, trace, walk)

    def held_domains(self) -> list[str]:
        return list(self.directory.db.get_value(HOLD_KEY) or [])

    def _mx_route(self, address: str, domain: str, trace: list[str], walk: _Walk | None = None) -> Route:
        if domain in self._fact(walk, "held", lambda: frozenset(self.held_domains())):
            trace.append(f"{domain} is in Hold Mail for Domains: kept in queue mx:{domain} until ETRN/ATRN")
            return Route("held", address, domain=domain)
        return Route("remote", address, domain=domain)

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

    def resolve_login(self, login: str, ctx: Context, trace: list[str] | None = None) -> ObjectRecord | None:
        """The account a login name stands for: ``name@domain``, ``name%domain`` (seed
        001), or a bare ``name`` in the domain bound to the server address, else in the
        main domain; ``Access:`` records of the table apply.  Aliases log in as their
        account."""
        trace = trace if trace is not None else []
        name = login.strip()
        if "@" not in name and "%" in name:
            local, _, domain = name.rpartition("%")
            trace.append(f"login {name!r}: the last % stands for @")
        elif "@" in name:
            local, _, domain = name.rpartition("@")
        else:
            bound = self.domain_for_ip(ctx.server_ip)
            local, domain = name, bound or self.directory.main_domain
            trace.append(f"login {name!r} has no domain: {domain}"
                         + (f" (bound to {ctx.server_ip})" if bound else " (the main domain)"))
        if not local or not domain:
            return None
        try:
            domain = normalize_domain(domain)
        except AddressError:
            return None
        table = self.table()
        for _hop in range(MAX_HOPS):
            m = table.lookup(local, domain, "access", trusted=True)
            if m is None:
                break
            trace.append(m.description)
            local, domain = m.local, m.domain or self.directory.main_domain
        obj = self.directory.lookup(local, domain)
        acct = self.directory.account_of(obj) if obj is not None else None
        trace.append(f"account: {acct.address}" if acct else f"no account {local}@{domain}")
        return acct

    # -- expansion of forwarders and groups ----------------------------------------

    def expand(self, route: Route, trace: list[str] | None = None, ctx: Context | None = None) -> list[Route]:
        """Final delivery routes for a local route: accounts stay, forwarders and groups
        are followed (members resolved as Waypost's own mail), duplicates dropped, with
        limits on depth and count.  A loop ends at the first repeat.  A member that
        cannot be resolved stays in the list as a refuse route, to be bounced."""
        trace = trace if trace is not None else []
        out: list[Route] = []
        seen: set[str] = set()
        from_peer = ctx is not None and _from_peer(ctx.client_ip, self.directory.db.get_value(PEERS_KEY) or [])
        repeats: list[str] = []
        self._expand(route, 0, out, seen, trace, share=not from_peer, repeats=repeats)
        if not out and route.kind == "local":
            # Nothing to deliver to: mail must bounce, never wait in the queue for nobody.
            obj = self.directory.db.get_object(route.domain, route.name) if route.object_kind == "group" else None
            if from_peer and obj is not None and obj.data.get("shared"):
                # A peer's copy of a shared group none of whose members is here: the
                # other offices deliver it; nothing to bounce.
                trace.append(f"expand: {route.address} is a peer's copy and has no members here; discarded")
                out.append(Route("discard", route.address, domain=route.domain))
            elif repeats:
                trace.append(f"expand: {route.address} comes back to itself: a forwarding loop; bounced")
                out.append(Route("refuse", route.address, domain=route.domain, code=554, status="5.4.6",
                                 reason=f"<{route.address}>: forwarding loop (it leads back to itself)"))
            else:
                trace.append(f"expand: {route.address} expands to nobody; bounced")
                # RFC 3463 X.2.4: mailing list expansion problem.
                out.append(Route("refuse", route.address, domain=route.domain, code=550, status="5.2.4",
                                 reason=f"<{route.address}>: expands to no recipient"))
        return out

    def loop_back(self, address: str, targets: Sequence[str]) -> list[str] | None:
        """Whether mail sent on to ``targets`` (the proposed target or members of the
        forwarder or group ``address``, or the account forwarding of the account
        ``address``; bare names are in its domain) would come back to ``address``,
        followed as ``expand`` follows mail: the Router table, aliases, forwarders,
        groups, account forwarding.  The chain that comes back, or None.  ``address``
        is the object's canonical ``name@domain``; it need not exist yet."""
        goal = address.lower()
        domain = goal.rpartition("@")[2]
        internal = Context(kind="mail", internal=True)
        seen: set[str] = set()

        def walk(target: str, chain: list[str], depth: int) -> list[str] | None:
            if "@" not in target:
                target = f"{target}@{domain}"
            try:  # the object itself, by any spelling, before it exists
                a = parse_address(target)
                rec = self.directory.domain(a.domain)
                if rec is not None and f"{_unquote(a.local).lower()}@{rec.name}" == goal:
                    return chain + [target]
            except AddressError:
                return None
            route = self.resolve(target, internal).route
            here = route.address.lower()
            names = {here}
            if route.kind == "local" and route.account:
                names.add(f"{route.account}@{route.domain}".lower())
            chain = chain + [route.address]
            if goal in names:
                return chain
            if route.kind != "local" or here in seen or depth >= MAX_EXPANSION_DEPTH:
                return None
            seen.add(here)
            if route.object_kind in ("account", "alias"):
                acct = self.directory.db.get_object(route.domain, route.account or route.name)
                forward = acct.data.get("forward") if acct is not None else None
                return walk(forward, chain, depth + 1) if forward else None
            obj = self.directory.db.get_object(route.domain, route.name)
            if obj is None:
                return None
            members = [obj.data.get("target", "")] if obj.kind == "forwarder" else list(obj.data.get("members", []))
            for member in members:
                if not member:
                    continue
                if "@" not in member:
                    member = f"{member}@{obj.domain}"
                found = walk(member, chain, depth + 1)
                if found:
                    return found
            return None

        for t in targets:
            found = walk(t, [address], 0)
            if found:
                return found
        return None

    def _expand(self, route: Route, depth: int, out: list[Route], seen: set[str], trace: list[str],
                share: bool = True, repeats: list[str] | None = None) -> None:
        key = f"{route.kind}:{route.address.lower()}"
        if key in seen:
            trace.append(f"expand: {route.address} already included")
            if repeats is not None:
                repeats.append(route.address)
            return
        seen.add(key)
        if route.kind == "local" and route.object_kind in ("account", "alias") and depth < MAX_EXPANSION_DEPTH:
            acct = self.directory.db.get_object(route.domain, route.account or route.name)
            target = acct.data.get("forward") if acct is not None else None
            if target:
                # Account forwarding (seed 003 forward.txt): the copy is routed like any
                # mail of ours (gateway rules included); --keep-copy keeps one here.
                trace.append(f"forward: {route.address} -> {target}" + (" (and a copy kept)" if acct and acct.data.get("keep_copy") else ""))
                if acct is not None and acct.data.get("keep_copy"):
                    out.append(route)
                res = self.resolve(target, Context(kind="mail", internal=True))
                nxt = res.route
                if f"{nxt.kind}:{nxt.address.lower()}" in seen:
                    trace.append(f"forward: {target} was already reached: a forwarding loop")
                    out.append(Route("refuse", route.address, domain=route.domain, code=554, status="5.4.6",
                                     reason=f"<{route.address}>: forwarding loop (via {target})"))
                    return
                if nxt.kind == "remote":
                    nxt = dataclasses.replace(nxt, forwarded=True)
                self._expand(nxt, depth + 1, out, seen, trace, share, repeats)
                return
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
        if obj.kind == "group" and obj.data.get("shared"):
            # Domain sharing (seed 002): a post to a shared group is also copied to every
            # peer, which delivers it to its own members; a peer's copy is not shared again.
            if not share:
                trace.append(f"expand: {obj.address} is a peer's copy: our members only")
            else:
                for p in self.directory.db.get_value(PEERS_KEY) or []:
                    if not p.get("domains") or obj.domain in p["domains"]:
                        trace.append(f"expand: shared group {obj.address}: a copy to peer {p['host']}")
                        out.append(Route("remote", obj.address, domain=obj.domain, host=p["host"],
                                         port=int(p["smtp_port"])))
        internal = Context(kind="mail", internal=True)
        for member in members:
            if "@" not in member:
                member = f"{member}@{obj.domain}"
            res = self.resolve(member, internal)
            if res.route.kind == "refuse":  # kept: the queue bounces it to the sender
                trace.append(f"expand: {member}: {res.route.reason}")
            self._expand(res.route, depth + 1, out, seen, trace, repeats=repeats)


def _client_address(client_ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address as compared with networks and peers: the zone dropped and an
    IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) taken as the IPv4 address it carries."""
    if not client_ip:
        return None
    try:
        ip = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _address_number(client_ip: str) -> tuple[int, int] | None:
    """(4 or 6, the address as a number) as ``_client_address`` reads it (the zone
    dropped, an IPv4-mapped IPv6 address taken as its IPv4 address); None if it is no
    address."""
    text = client_ip.split("%", 1)[0]
    try:
        if ":" not in text:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        number = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):  # not an address; a NUL or a lone surrogate (from the admin's "route --from")
        return None
    if number >> 32 == 0xFFFF:  # ::ffff:0:0/96
        return 4, number & 0xFFFFFFFF
    return 6, number


def _from_peer(client_ip: str | None, peers: list[dict[str, Any]]) -> bool:
    """Whether a client is one of the sharing peers, by the addresses recorded when the
    peer was added (a peer given by name has its addresses looked up then)."""
    ip = _client_address(client_ip)
    if ip is None:
        return False
    for p in peers:
        for a in p.get("addresses") or [p["host"]]:
            try:
                if ipaddress.ip_address(a) == ip:
                    return True
            except ValueError:
                continue
    return False


def _unquote(local: str) -> str:
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        out, escaped = [], False
        for ch in local[1:-1]:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return local


def _source_route(local: str) -> tuple[str, str] | None:
    """The address a local part names by the old forms, if any (ROUTER.md step 1):
    ``user%victim`` (the last % is the @), ``victim!user`` (UUCP), ``"user@victim"``."""
    text = _unquote(local)
    if "@" in text:
        user, _, dom = text.rpartition("@")
        return (user, dom) if user and dom else None
    if "%" in text:
        split = unpercent(text)
        return split if split and split[0] and split[1] else None
    if "!" in text:
        dom, _, user = text.partition("!")
        return (user, dom) if user and dom else None
    return None
