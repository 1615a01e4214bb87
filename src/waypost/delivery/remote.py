"""Remote delivery: from a destination to the next hop's SMTP server, one transaction.

What this module owns: finding the hops for a destination (MX, A/AAAA, or a fixed
host or address; RFC 5321 §5.1), cutting hops that are this very server, and running
one SMTP transaction with ``aiosmtplib`` that returns one result per recipient.

What it must never do: retry later, bounce, write to the spool or limit concurrency
(the queue manager does all that from the results), or turn a failure into a success.
Every recipient always gets a result, in the order given.

Theory of operation::

    deliver() ── plan() ── Resolver.mx() / Resolver.addresses()  →  [Hop, ...]
              └─ deliver_to_hops() ── for each hop, in order:
                    connect + greeting ─ EHLO (HELO) ─ [STARTTLS ─ EHLO] ─ MAIL ─ RCPT* ─ DATA ─ QUIT
                    a hop failure (refused or timed-out connection, greeting not 220,
                    EHLO/HELO refused, a connection lost or a 421 before DATA) moves
                    on to the next hop; otherwise the server's replies to MAIL, RCPT
                    and DATA are the results and no other hop is tried.

Choices a caller must know (each is also stated where it is made):

* ``Resolver.addresses`` returns IPv4 addresses before IPv6 ones (IPv4 reaches more
  mail servers without trouble; the IPv6 addresses are still tried after them).
* MX records of equal preference are tried in random order (RFC 5321 §5.1 SHOULD).
* An 8-bit message (``BODY=8BITMIME``) is sent unchanged to a server that does not
  advertise 8BITMIME, without the BODY parameter (as Postfix does by default): most
  such servers take it, and a bounce for it would be worse than the rare refusal.
  A message that needs SMTPUTF8 is not sent to a server without it (5.6.7).
* ``SIZE`` is always sent when advertised, with the real size of ``data`` (the value
  given in ``mail_options`` is ignored); a message larger than the advertised limit
  is not sent (552 5.3.4).
* A failed TLS handshake after STARTTLS is retried once on a new connection to the
  same hop without STARTTLS (opportunistic TLS, like Postfix's "may" level); a
  STARTTLS command refused with a 4xx/5xx reply goes on in clear on the same
  connection (RFC 3207 §4).  A ``TLSPolicy`` changes that: ``encrypt`` and ``verify``
  (MTA-STS ``enforce``, DANE, ``delivery.tls_policy``) make a hop without TLS, or whose
  certificate does not verify, a hop failure (4.7.5): the message is never sent in
  clear; ``none`` sends in clear.  MTA-STS ``enforce`` also drops the MX hosts that its
  ``mx`` patterns do not cover (RFC 8461 §4.2).
* Once DATA has been sent, a lost connection or a timeout gives every accepted
  recipient a temporary result (the message may or may not have arrived: a later
  retry can duplicate it, RFC 1047) and no other hop is tried.
* When every hop fails, every recipient gets a temporary result whose text is the
  last hop's error; a 5xx greeting counts as a hop failure (temporary) too.
"""

from __future__ import annotations

import dataclasses

import asyncio
import functools
import ipaddress
import itertools
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from aiosmtplib import SMTPResponse

from ..address import ip_from_literal, is_ip_literal
from ..config import Settings, parse_hostport
from ..log import event
from .dane import check_chain
from .mtasts import verified_context

__all__ = [
    "Destination",
    "Hop",
    "IsSelf",
    "PermanentResolveError",
    "RecipientResult",
    "ResolveError",
    "Resolver",
    "TemporaryResolveError",
    "TLSPolicy",
    "TLSReport",
    "deliver",
    "deliver_to_hops",
    "plan",
    "split_reply",
]

log = logging.getLogger("waypost.delivery")

#: Seconds to wait for the reply to QUIT once the transaction is over; the results
#: are known by then, so a slow server must not hold them for ``command_timeout``.
QUIT_TIMEOUT = 10.0

#: ``is_self(host_name, ip, port)``: whether that hop is this very server.
IsSelf = Callable[[str, str, int], bool]

DestinationKind = Literal["mx", "host", "ip"]


# -- TLS policies ---------------------------------------------------------------------------

#: ``report(policy, mx_host, receiving_ip, result_type, detail)``: one TLS outcome for
#: TLS-RPT (RFC 8460 §4.3 result types, or "success"); ``policy`` is the one in force for
#: that host (its ``source`` says MTA-STS or DANE).
TLSReport = Callable[["TLSPolicy", str, str, str, str], None]


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    """The TLS one delivery must have.

    ``level``: ``none`` (no STARTTLS), ``may`` (opportunistic: encrypt when offered,
    verify nothing, fall back to clear on a failed handshake), ``encrypt`` (TLS
    required, not verified), ``verify`` (TLS required, the certificate valid for the MX
    host name against ``delivery.tls_ca_file`` or the system's store).
    ``testing``: verify and report, but deliver as under ``may`` when it fails (MTA-STS
    ``testing``).  ``mx``: the MX host names allowed (MTA-STS ``enforce``), or None.
    ``source`` names the policy in replies and logs; ``report`` hears each outcome.
    ``verify_host`` (DANE): a callable that checks the peer's certificate chain (DER,
    leaf first) for a hop instead of PKIX; returns None when it matches, else the
    result type and reason.
    """

    level: str = "may"
    testing: bool = False
    policy_text: str = ""         # the MTA-STS policy as fetched (TLS-RPT policy-string)
    mx: Callable[[str], bool] | None = None
    source: str = ""
    ca_file: str = ""
    report: TLSReport | None = None
    verify_host: Callable[[Hop, list[bytes]], tuple[str, str] | None] | None = None
    # DANE (RFC 7672): ``dane_lookup(kind, name, [(host, port)])`` gives the hosts with
    # DNSSEC-validated TLSA records, which ``deliver`` puts in ``dane``.
    dane_lookup: Callable[[str, str, list[tuple[str, int]]], Awaitable[dict[str, list[Any]]]] | None = None
    dane: dict[str, list[Any]] | None = None

    @property
    def required(self) -> bool:
        return self.level in ("encrypt", "verify") and not self.testing


# -- destinations and hops ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Destination:
    """How to reach the next hop.

    ``kind`` is one of:

    * ``"mx"``: ``name`` is a mail domain; look up its MX records, or its A/AAAA
      records when it has none (RFC 5321 §5.1).  A null MX (RFC 7505) fails
      permanently.
    * ``"host"``: ``name`` is a host name; look up its A/AAAA records only, never MX
      (a relay host or a sibling MTA on another port).
    * ``"ip"``: ``name`` is an IP address; no DNS at all.

    ``port`` None means ``settings.delivery.smtp_port``.  Names are stored in lower
    case without a trailing dot; IP addresses in their canonical form.
    """

    kind: DestinationKind
    name: str
    port: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mx", "host", "ip"):
            raise ValueError(f"destination kind must be mx, host or ip, not {self.kind!r}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"destination port out of range: {self.port}")
        if self.kind == "ip":
            try:
                canonical = str(ipaddress.ip_address(self.name))
            except ValueError:
                raise ValueError(f"not an IP address: {self.name!r}") from None
        else:
            canonical = self.name.strip().rstrip(".").lower()
            if not canonical or is_ip_literal(canonical) or any(c.isspace() for c in canonical):
                raise ValueError(f"not a domain name: {self.name!r}")
        object.__setattr__(self, "name", canonical)

    @classmethod
    def mx(cls, domain: str, port: int | None = None) -> Destination:
        """The MX destination of a mail domain.  An address literal (``[1.2.3.4]``,
        ``[IPv6:::1]``) gives an ``ip`` destination: RFC 5321 §5.1 does no DNS then."""
        if is_ip_literal(domain.strip()):
            return cls("ip", ip_from_literal(domain.strip()), port)
        return cls("mx", domain, port)

    @classmethod
    def host(cls, name: str, port: int | None = None) -> Destination:
        """A host name reached through its A/AAAA records, never MX."""
        return cls("host", name, port)

    @classmethod
    def ip(cls, address: str, port: int | None = None) -> Destination:
        """An IP address: no DNS."""
        return cls("ip", address, port)

    def __str__(self) -> str:
        where = f"[{self.name}]" if self.kind == "ip" else self.name
        return f"{self.kind}:{where}" + (f":{self.port}" if self.port is not None else "")


class Hop(NamedTuple):
    """One address to try: the host name it was found under, its IP address, the port."""

    host: str
    ip: str
    port: int

    @property
    def label(self) -> str:
        """``"name [ip]"``, as logs and DSNs name a remote MTA."""
        return f"{self.host} [{self.ip}]"


# -- DNS -----------------------------------------------------------------------------------


class ResolveError(Exception):
    """The hops for a destination could not be found.

    ``code`` and ``status`` (RFC 3463) are what every recipient's result carries;
    ``text`` says why.  Raised as one of the two subclasses.
    """

    permanent: bool = False

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(f"{code} {status} {text}")
        self.code = code
        self.status = status
        self.text = text


class PermanentResolveError(ResolveError):
    """Retrying will not help: NXDOMAIN, null MX, no address records, mail loops."""

    permanent = True


class TemporaryResolveError(ResolveError):
    """Retry later: a DNS timeout, SERVFAIL or REFUSED from every name server."""


def _temporary_dns(name: str, rdtype: str, error: BaseException) -> TemporaryResolveError:
    # RFC 3463 X.4.3: directory server failure.
    return TemporaryResolveError(451, "4.4.3", f"DNS look-up of {name} {rdtype} failed: {error}")


def async_resolver(settings: Settings, timeout: float | None = None) -> dns.asyncresolver.Resolver:
    """A dnspython resolver as ``settings.dns`` says: ``nameservers`` ("ip" or
    "ip:port", port 53 by default) or, when empty, the system's (``/etc/resolv.conf``);
    each look-up bounded by ``timeout`` (default ``dns.timeout``)."""
    if settings.dns.nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        servers: list[dns.nameserver.Nameserver] = []
        for i, entry in enumerate(settings.dns.nameservers):
            host, port = parse_hostport(entry, default_port=53)
            try:
                ip = str(ipaddress.ip_address(host))
            except ValueError:
                raise ValueError(f"dns.nameservers[{i}]: {entry!r}: a name server must be an IP address") from None
            servers.append(dns.nameserver.Do53Nameserver(ip, port))
        resolver.nameservers = servers
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.timeout = timeout if timeout is not None else settings.dns.timeout
    resolver.lifetime = resolver.timeout
    return resolver


class Resolver:
    """MX and address look-ups with dnspython, with permanent and temporary failures
    told apart (``PermanentResolveError`` / ``TemporaryResolveError``).

    Built from ``settings.dns``: ``nameservers`` ("ip" or "ip:port", port 53 by
    default; each may have its own port) or, when empty, the system's resolver
    (``/etc/resolv.conf``); ``timeout`` bounds each look-up.  Names are always looked
    up as absolute names: no search list (a mail domain is fully qualified, RFC 5321
    §2.3.5).  No cache is kept here.
    """

    __slots__ = ("_resolver",)

    def __init__(self, settings: Settings) -> None:
        self._resolver = async_resolver(settings)

    @property
    def dnspython(self) -> dns.asyncresolver.Resolver:
        """dnspython's resolver underneath (for the TXT look-ups of MTA-STS)."""
        return self._resolver

    async def _query(self, name: str, rdtype: str, nxdomain_status: str) -> dns.resolver.Answer | None:
        """The answer, or None when the name exists without records of that type."""
        try:
            qname = dns.name.from_text(name)  # absolute: no search list
        except dns.exception.DNSException as e:
            raise PermanentResolveError(550, nxdomain_status, f"{name}: not a valid domain name ({e})") from None
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise PermanentResolveError(550, nxdomain_status, f"{name}: no such domain (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            return None
        except dns.exception.DNSException as e:  # timeout, SERVFAIL, REFUSED, bad reply
            raise _temporary_dns(name, rdtype, e) from None

    async def mx(self, domain: str) -> list[tuple[int, str]]:
        """The MX records of ``domain`` as ``(preference, host)``, by preference then
        host name; ``[]`` when the domain exists without MX records (the caller then
        uses the domain's own addresses, RFC 5321 §5.1).

        Raises ``PermanentResolveError`` on NXDOMAIN (550 5.1.2) and on a null MX
        (556 5.1.10, RFC 7505 §3-4); ``TemporaryResolveError`` (451 4.4.3) otherwise.
        A "." record mixed with real MX records breaks RFC 7505 §3; it is ignored.
        """
        answer = await self._query(domain, "MX", "5.1.2")
        if answer is None:
            return []
        records = [(int(r.preference), r.exchange) for r in answer]
        real = [(pref, host.to_text(omit_final_dot=True).lower()) for pref, host in records
                if host != dns.name.root]
        if not real:
            # RFC 7505 §3 (null MX) and RFC 7504 §3 (556 domain does not accept mail).
            raise PermanentResolveError(556, "5.1.10", f"{domain} does not accept mail (null MX, RFC 7505)")
        return sorted(set(real))

    async def addresses(self, host: str) -> list[str]:
        """The addresses of ``host``: its A records, then its AAAA records (IPv4 first,
        see the module docstring), without duplicates, in canonical form.

        Raises ``PermanentResolveError`` (550 5.4.4) when the host does not exist or has
        neither record; ``TemporaryResolveError`` when a look-up failed and the other
        gave nothing.  When one family fails temporarily and the other answers, the
        answer is used.
        """
        outcomes = await asyncio.gather(
            self._addresses_of(host, "A"), self._addresses_of(host, "AAAA"), return_exceptions=True
        )
        found: list[str] = []
        errors: list[ResolveError] = []
        for outcome in outcomes:
            if isinstance(outcome, ResolveError):
                errors.append(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                found.extend(ip for ip in outcome if ip not in found)
        if found:
            return found
        for error in errors:
            if not error.permanent:
                raise error
        if errors:
            raise errors[0]
        # RFC 3463 X.4.4: unable to route.
        raise PermanentResolveError(550, "5.4.4", f"{host}: no A or AAAA record")

    async def _addresses_of(self, host: str, rdtype: str) -> list[str]:
        answer = await self._query(host, rdtype, "5.4.4")
        if answer is None:
            return []
        return [str(ipaddress.ip_address(r.address)) for r in answer]


async def backs_up(resolver: Resolver, domain: str, hostname: str, own_addresses: Iterable[str]) -> bool:
    """Relay to All Hosts We Backup (seed 004): whether the MX records of ``domain``
    name this server (by ``hostname``, or by a non-loopback address of ours) below
    another host.  Raises (``ResolveError``) when DNS cannot tell: no permission."""
    ours_ips = set(own_addresses)
    records = await resolver.mx(domain)
    ours = []
    for pref, host in records:
        if host.rstrip(".").lower() == hostname.lower():
            ours.append(pref)
            continue
        try:
            addrs = await resolver.addresses(host)
        except Exception:  # a host we cannot look up is not us
            continue
        if any(a in ours_ips and not ipaddress.ip_address(a).is_loopback for a in addrs):
            ours.append(pref)
    return bool(ours) and any(pref < min(ours) for pref, _ in records)


# -- the plan ------------------------------------------------------------------------------


def _loops_back(name: str) -> PermanentResolveError:
    # RFC 5321 §5.1; RFC 3463 X.4.6: routing loop detected.
    return PermanentResolveError(554, "5.4.6", f"mail for {name} loops back to myself")


async def plan(
    destination: Destination, resolver: Resolver, is_self: IsSelf, *, default_port: int
) -> list[Hop]:
    """The hops to try for ``destination``, best first; never a hop that ``is_self``.

    ``default_port`` is used when ``destination.port`` is None (the caller passes
    ``settings.delivery.smtp_port``).  For an MX destination, MX hosts go by
    preference, equal preferences in random order, each host's addresses as
    ``Resolver.addresses`` orders them; a host whose look-up fails is skipped.

    RFC 5321 §5.1: when an MX host is this server, it and every MX record with an
    equal or larger preference value are dropped (we are a backup MX and only
    better MXs may get the mail).

    Raises ``PermanentResolveError`` when nothing is left because the mail would loop
    back to this server (554 5.4.6), the domain does not exist, has a null MX, or no
    host has an address; ``TemporaryResolveError`` when nothing is left and a look-up
    failed temporarily.
    """
    port = destination.port if destination.port is not None else default_port
    name = destination.name
    if destination.kind == "ip":
        candidates = [Hop(name, name, port)]
    elif destination.kind == "host":
        candidates = [Hop(name, ip, port) for ip in await resolver.addresses(name)]
    else:
        records = await resolver.mx(name)
        if records:
            return await _mx_hops(name, records, resolver, is_self, port)
        # RFC 5321 §5.1: no MX records → the domain itself, as an implicit MX of
        # preference 0.
        candidates = [Hop(name, ip, port) for ip in await resolver.addresses(name)]
    hops = [hop for hop in candidates if not is_self(*hop)]
    if not hops:
        raise _loops_back(name)
    return hops


async def _mx_hops(
    domain: str, records: list[tuple[int, str]], resolver: Resolver, is_self: IsSelf, port: int
) -> list[Hop]:
    hops: list[Hop] = []
    seen: set[Hop] = set()
    failure: ResolveError | None = None
    cut = False
    for _preference, group in itertools.groupby(sorted(records), key=lambda r: r[0]):
        hosts = [host for _, host in group]
        random.shuffle(hosts)  # RFC 5321 §5.1: SHOULD randomize equal preferences
        level: list[Hop] = []
        level_failures: list[ResolveError] = []
        # One level's hosts are looked up together: a slow name server costs one
        # timeout per level, not one per host.
        lookups = await asyncio.gather(*(resolver.addresses(h) for h in hosts), return_exceptions=True)
        for host, ips in zip(hosts, lookups):
            if isinstance(ips, ResolveError):
                level_failures.append(ips)
                continue
            if isinstance(ips, BaseException):
                raise ips
            for ip in ips:
                hop = Hop(host, ip, port)
                if is_self(*hop):
                    cut = True
                elif hop not in seen:  # the same host listed twice
                    seen.add(hop)
                    level.append(hop)
        if cut:
            # RFC 5321 §5.1: drop this preference level (ours) and all worse ones.
            break
        hops.extend(level)
        for error in level_failures:
            # Keep the first temporary failure: it decides between "retry" and
            # "bounce" when no hop is left.
            if failure is None or (failure.permanent and not error.permanent):
                failure = error
    if hops:
        return hops
    if failure is not None and not failure.permanent:
        raise failure
    if cut:
        raise _loops_back(domain)
    if failure is not None:
        raise PermanentResolveError(
            550, "5.4.4", f"no MX host of {domain} has an address (last: {failure.text})"
        )
    raise PermanentResolveError(550, "5.4.4", f"no MX host of {domain} has an address")  # pragma: no cover


# -- results ---------------------------------------------------------------------------------

# RFC 3463 §2 / RFC 2034 §4: an enhanced status code opens the text of a reply.
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def _default_status(code: int) -> str:
    return {2: "2.0.0", 4: "4.0.0", 5: "5.0.0"}.get(code // 100, "4.0.0")


def split_reply(code: int, message: str) -> tuple[str, str]:
    """``(enhanced status, text)`` of a reply whose lines are ``message``.

    The status is taken from the text when its class digit agrees with the code
    (RFC 2034 §4), else it is the default of the code's class (X.0.0).  Lines of a
    multi-line reply are joined with a space, each without its repeated status.
    """
    status = ""
    texts: list[str] = []
    for line in message.splitlines() or [""]:
        line = line.strip()
        m = _ENHANCED.match(line)
        if m and int(m.group(1)) == code // 100:
            status = status or f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"
            line = line[m.end():]
        if line:
            texts.append(line)
    return status or _default_status(code), " ".join(texts)


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What became of one recipient.

    ``code`` is an SMTP reply code and ``enhanced`` its RFC 3463 status ("5.1.1").
    ``remote_host`` ("name [ip]") is the server that sent this reply; it is "" when
    Waypost made the result itself (a DNS failure, no connection to any hop, a check
    made before sending), and ``text`` then says which host was involved.
    ``remote_dsn`` is True when the server advertised DSN, so NOTIFY and ORCPT went on
    with the recipient; when False and the recipient asked for NOTIFY=SUCCESS, the
    queue sends a "relayed" DSN on success (RFC 3461 §5.2.2).
    """

    address: str
    code: int
    enhanced: str
    text: str
    remote_host: str = ""
    remote_dsn: bool = False

    @property
    def ok(self) -> bool:
        """Accepted by the next hop: it has the message now."""
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        """Failed for good: bounce."""
        return 500 <= self.code < 600

    @property
    def temporary(self) -> bool:
        """Not delivered yet: retry later (any code that is neither 2xx nor 5xx)."""
        return not (self.ok or self.permanent)

    @property
    def smtp_reply(self) -> str:
        """``"550 5.1.1 no such user"``, for logs and DSN diagnostic codes."""
        return f"{self.code} {self.enhanced} {self.text}".rstrip()

    @classmethod
    def from_reply(cls, address: str, reply: SMTPResponse, hop: Hop, remote_dsn: bool) -> RecipientResult:
        """A result from the remote server's reply; a code that cannot end a command
        (1xx, 3xx, ...) is a protocol error and gives a temporary result."""
        status, text = split_reply(reply.code, reply.message)
        if reply.code // 100 not in (2, 4, 5):
            return cls(address, 451, "4.5.0", f"protocol error: unexpected reply {reply.code} {text}",
                       "", remote_dsn)
        return cls(address, reply.code, status, text, hop.label, remote_dsn)


# -- options ---------------------------------------------------------------------------------

# RFC 5321 §4.1.2: esmtp-param = esmtp-keyword ["=" esmtp-value];
# esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"); esmtp-value = 1*(%d33-60 / %d62-126)
_PARAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(=[\x21-\x3c\x3e-\x7e]+)?$")

# The extension (EHLO keyword, lower case) that defines each parameter.  A parameter
# not listed here is passed on when the server advertises an extension of its name.
_EXTENSION_OF = {
    "BODY": "8bitmime",      # RFC 6152
    "SMTPUTF8": "smtputf8",  # RFC 6531
    "SIZE": "size",          # RFC 1870
    "RET": "dsn",            # RFC 3461 §4.3
    "ENVID": "dsn",          # RFC 3461 §4.4
    "NOTIFY": "dsn",         # RFC 3461 §4.1
    "ORCPT": "dsn",          # RFC 3461 §4.2
}


def _split_params(options: Sequence[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for option in options:
        if not _PARAM.match(option):
            raise ValueError(f"malformed ESMTP parameter {option!r}")
        keyword, sep, value = option.partition("=")
        out.append((keyword.upper(), value if sep else None))
    return out


def _join(keyword: str, value: str | None) -> str:
    return keyword if value is None else f"{keyword}={value}"


def _passed(params: list[tuple[str, str | None]], extensions: dict[str, str]) -> list[str]:
    """The parameters the server advertised the extension for, in the given order."""
    return [_join(k, v) for k, v in params if _EXTENSION_OF.get(k, k.lower()) in extensions]


@dataclass(frozen=True, slots=True)
class _Job:
    """One delivery's inputs, checked once and shared by every hop's attempt."""

    helo_name: str
    connect_timeout: float
    command_timeout: float
    starttls: bool
    tls_context: ssl.SSLContext | None
    tls: TLSPolicy
    sender: str
    recipients: list[tuple[str, list[tuple[str, str | None]]]]
    data: bytes
    mail_params: list[tuple[str, str | None]]
    needs_utf8: bool
    bind_address: str = ""  # delivery.bind_address: the source of our connections
    auth: tuple[str, str] | None = None  # next-hop SMTP AUTH (user, password)
    # Called with the positions (in ``recipients``) the end of data was accepted for,
    # as soon as the reply is read: before QUIT, so that the caller can write it down.
    on_accepted: Callable[[list[int]], None] | None = None

    def source_for(self, ip: str) -> tuple[str, int] | None:
        """The address to bind before connecting to ``ip`` (same family), or None."""
        if self.bind_address and (":" in self.bind_address) == (":" in ip):
            return (self.bind_address, 0)
        return None

    def mail_options(self, extensions: dict[str, str]) -> list[str]:
        params = [(k, v) for k, v in self.mail_params if k not in ("SIZE", "SMTPUTF8")]
        if self.needs_utf8:
            params.append(("SMTPUTF8", None))
        # RFC 1870 §6: declare the size when the server takes SIZE; we know it exactly.
        params.append(("SIZE", str(len(self.data))))
        return _passed(params, extensions)


def _job(
    settings: Settings,
    sender: str,
    recipients: Sequence[tuple[str, Sequence[str]]],
    data: bytes,
    mail_options: Sequence[str],
    tls_context: ssl.SSLContext | None,
) -> _Job:
    mail_params = _split_params(mail_options)
    for keyword, value in mail_params:
        # RFC 6152 §2 / RFC 3030 §3: BINARYMIME needs BDAT, which we do not send.
        if keyword == "BODY" and (value or "").upper() not in ("7BIT", "8BITMIME"):
            raise ValueError(f"unsupported BODY={value} (only 7BIT and 8BITMIME can go with DATA)")
    rcpts = [(address, _split_params(options)) for address, options in recipients]
    # RFC 6531 §3.2: an address that is not ASCII needs SMTPUTF8 as much as the flag does.
    needs_utf8 = any(k == "SMTPUTF8" for k, _ in mail_params) or not sender.isascii() or any(
        not address.isascii() for address, _ in recipients
    )
    return _Job(
        helo_name=settings.server.hostname,
        connect_timeout=settings.delivery.connect_timeout,
        command_timeout=settings.delivery.command_timeout,
        starttls=settings.delivery.starttls,
        tls_context=tls_context,
        tls=TLSPolicy(),
        sender=sender,
        recipients=rcpts,
        data=data,
        mail_params=mail_params,
        needs_utf8=needs_utf8,
        bind_address=settings.delivery.bind_address,
    )


@functools.cache
def _opportunistic_context() -> ssl.SSLContext:
    # Opportunistic TLS (RFC 3207 §4.1 leaves the policy to the client): encrypt when
    # offered, verify nothing, since an MX name is not authenticated anyway without
    # DANE or MTA-STS.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# -- one SMTP session ------------------------------------------------------------------------


class _HopFailed(Exception):
    """This hop could not take the message; the next one may.  ``tls_broken`` asks
    for one more attempt at the same hop without STARTTLS."""

    def __init__(self, code: int, status: str, text: str, remote_host: str = "", tls_broken: bool = False) -> None:
        super().__init__(text)
        self.code = code
        self.status = status
        self.text = text
        self.remote_host = remote_host
        self.tls_broken = tls_broken

    @classmethod
    def refused(cls, hop: Hop, reply: SMTPResponse, phase: str) -> _HopFailed:
        """The server refused to go on (greeting, EHLO/HELO, any 421)."""
        status, text = split_reply(reply.code, reply.message)
        if 400 <= reply.code < 500:
            return cls(reply.code, status, text, hop.label)
        # A 5xx here refuses the session, not the message: another hop (or a later
        # try) may take it, so this stays temporary.  RFC 3463 X.4.0: other network
        # or routing status.
        return cls(451, "4.4.0", f"{hop.label} refused the session at {phase}: {reply.code} {status} {text}")


async def _reply_of(command: Awaitable[SMTPResponse]) -> SMTPResponse:
    """The reply to a command, whether aiosmtplib thinks it is an error or not."""
    try:
        return await command
    except aiosmtplib.SMTPResponseException as e:
        return SMTPResponse(e.code, e.message)


#: Most bytes of the replies to DATA and to the end of data that ``_EndOfDataTap``
#: follows (aiosmtplib's own limit for one reply is 32 KiB); beyond, it lets go.
TAP_LIMIT = 32 * 1024


class _EndOfDataTap(asyncio.Protocol):
    """Sits between the transport and aiosmtplib's protocol while DATA runs, and calls
    ``on_accepted()`` the moment the reply to the end of data is complete and 2xx.

    Why: that reply is the moment the next hop has the message.  aiosmtplib hands it
    to the coroutine that awaits ``SMTP.data()`` only on a later turn of the event loop
    (after every other callback ready then, which under load is many); a kill -9 in
    between used to lose the fact, and the message went out again after the restart.
    Here the journal is written in the very callback that read the bytes, before
    aiosmtplib sees them.  What remains is the time the reply spends in the kernel
    before this process reads it, which no client can close (SMTP delivers at least
    once, RFC 5321 §6.1).

    Only the transport's public protocol switch (``get_protocol``/``set_protocol``) is
    used; every event is passed on to aiosmtplib's protocol unchanged.  Replies are
    followed as RFC 5321 §4.2.1 writes them: a line ``NNN-`` continues, ``NNN `` (or
    a bare ``NNN``) ends one.  The first reply must be 354 (to DATA), else the tap lets
    go; the second is the reply to the end of data.
    """

    __slots__ = ("transport", "inner", "on_accepted", "buffer", "state", "fired")

    def __init__(self, transport: asyncio.BaseTransport, on_accepted: Callable[[], None]) -> None:
        self.transport = transport
        self.inner = transport.get_protocol()
        self.on_accepted = on_accepted
        self.buffer = bytearray()
        self.state = "data"  # -> "end" after 354 -> "done"
        self.fired = False

    @classmethod
    def install(cls, transport: asyncio.BaseTransport, on_accepted: Callable[[], None]) -> _EndOfDataTap:
        tap = cls(transport, on_accepted)
        transport.set_protocol(tap)
        return tap

    def remove(self) -> None:
        self.state = "done"
        if self.transport.get_protocol() is self:
            self.transport.set_protocol(self.inner)

    def _follow(self, data: bytes) -> None:
        self.buffer += data
        while self.state != "done":
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) > TAP_LIMIT:
                    self.state = "done"
                return
            line = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            if line[3:4] == b"-":  # RFC 5321 §4.2.1: more lines of this reply follow
                continue
            code = line[:3]
            if self.state == "data":
                self.state = "end" if code == b"354" else "done"
            else:
                self.state = "done"
                if code.isdigit() and code[:1] == b"2":
                    self.fired = True
                    try:
                        self.on_accepted()
                    except Exception:  # never into the transport: it would drop the connection
                        log.exception("event=journal-error")
        self.buffer.clear()

    # -- asyncio.Protocol: everything goes on to aiosmtplib's protocol ---------------------

    def data_received(self, data: bytes) -> None:
        if self.state != "done":
            self._follow(data)
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[attr-defined, no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Session:
    """One connection to one hop, running the transaction of a ``_Job``."""

    __slots__ = ("job", "hop", "starttls", "smtp", "phase", "dsn", "auth_used", "tls")

    def __init__(self, job: _Job, hop: Hop, starttls: bool, tls: TLSPolicy | None = None) -> None:
        self.job = job
        self.hop = hop
        self.tls = tls if tls is not None else job.tls
        if self.tls.dane and hop.host in self.tls.dane:
            # RFC 7672 §2.2: this host has validated TLSA records: TLS matching them, or
            # nothing (before MTA-STS, RFC 8461 §2).
            records = self.tls.dane[hop.host]
            self.tls = dataclasses.replace(
                self.tls, level="verify", testing=False, source="DANE",
                verify_host=lambda h, chain: check_chain(records, chain, [h.host]))
            starttls = True
        self.starttls = starttls and self.tls.level != "none"
        self.smtp = aiosmtplib.SMTP(
            hostname=hop.ip, port=hop.port, local_hostname=job.helo_name,
            timeout=job.command_timeout, start_tls=False,
            source_address=job.source_for(hop.ip),
        )
        self.phase = "connect"
        self.dsn = False
        self.auth_used = ""

    async def run(self) -> list[RecipientResult]:
        """The results of the transaction; raises ``_HopFailed`` when this hop could
        not be used and nothing was decided for any recipient."""
        try:
            return await self._run()
        except _HopFailed:
            raise
        except (aiosmtplib.SMTPException, OSError) as e:  # lost connection, timeout
            # RFC 3463 X.4.2: bad connection.
            raise _HopFailed(451, "4.4.2", f"lost connection with {self.hop.label} in {self.phase}: {e}") from None
        finally:
            self.smtp.close()

    async def _run(self) -> list[RecipientResult]:
        job, smtp, hop = self.job, self.smtp, self.hop
        try:
            await smtp.connect(timeout=job.connect_timeout)
        except aiosmtplib.SMTPConnectResponseError as e:
            raise _HopFailed.refused(hop, SMTPResponse(e.code, e.message), "the greeting") from None
        except (aiosmtplib.SMTPException, OSError) as e:
            # RFC 3463 X.4.1: no answer from host.
            raise _HopFailed(451, "4.4.1", f"connect to {hop.label}:{hop.port}: {e}") from None
        await self._hello()
        if self.starttls and "starttls" in smtp.esmtp_extensions:
            await self._starttls()
        elif self.tls.level in ("encrypt", "verify"):
            self._tls_failed("starttls-not-supported", f"{hop.label} does not offer STARTTLS")
        extensions = dict(smtp.esmtp_extensions)
        self.dsn = "dsn" in extensions
        if job.auth is not None:
            refused = await self._authenticate(extensions)
            if refused is not None:
                return refused

        if job.needs_utf8 and "smtputf8" not in extensions:
            # RFC 6531 §3.2: do not send it to a server without SMTPUTF8.
            return await self._all(550, "5.6.7", f"{hop.label} does not support SMTPUTF8, which this message needs")
        limit = extensions.get("size", "").strip()
        if limit.isdigit() and 0 < int(limit) < len(job.data):
            # RFC 1870 §6: do not send what the server declared too large.
            return await self._all(552, "5.3.4", f"message size {len(job.data)} exceeds the limit {limit} of {hop.label}")

        encoding = "utf-8" if job.needs_utf8 else "ascii"
        self.phase = "MAIL FROM"
        try:
            reply = await _reply_of(smtp.mail(job.sender, options=job.mail_options(extensions), encoding=encoding))
        except ValueError as e:  # raised before anything is sent
            return await self._all(553, "5.1.7", f"bad sender address <{job.sender}>: {e}")
        if reply.code == 421:  # RFC 5321 §3.8: the server is closing the channel
            raise _HopFailed.refused(hop, reply, self.phase)
        if not 200 <= reply.code < 300:
            refused = [RecipientResult.from_reply(a, reply, hop, self.dsn) for a, _ in job.recipients]
            await self._quit()
            return refused

        self.phase = "RCPT TO"
        results: list[RecipientResult | None] = []
        accepted: list[int] = []
        for i, (address, params) in enumerate(job.recipients):
            try:
                reply = await _reply_of(smtp.rcpt(address, options=_passed(params, extensions), encoding=encoding))
            except ValueError as e:  # raised before anything is sent
                results.append(RecipientResult(address, 553, "5.1.3", f"bad recipient address <{address}>: {e}"))
                continue
            if reply.code == 421:
                raise _HopFailed.refused(hop, reply, self.phase)
            if 200 <= reply.code < 300:
                accepted.append(i)
                results.append(None)
            else:
                results.append(RecipientResult.from_reply(address, reply, hop, self.dsn))
        if not accepted:
            await self._quit()  # no DATA without a recipient (RFC 5321 §3.3)
            return [r for r in results if r is not None]

        self.phase = "DATA"
        on_accepted = job.on_accepted
        tap = None
        if on_accepted is not None and smtp.transport is not None:
            tap = _EndOfDataTap.install(smtp.transport, lambda: on_accepted(accepted))
        try:
            reply = await _reply_of(smtp.data(job.data))
        except (aiosmtplib.SMTPException, OSError) as e:
            # The end of data may have reached the server: no other hop now (RFC 1047).
            for i in accepted:
                results[i] = RecipientResult(
                    job.recipients[i][0], 451, "4.4.2",
                    f"lost connection with {hop.label} in DATA: {e}", "", self.dsn,
                )
        else:
            # RFC 5321 §4.2.5: one reply to the end of data, for every accepted recipient.
            for i in accepted:
                results[i] = RecipientResult.from_reply(job.recipients[i][0], reply, hop, self.dsn)
            if on_accepted is not None and 200 <= reply.code < 300 and (tap is None or not tap.fired):
                on_accepted(accepted)  # a reply the tap could not follow: recorded late, still recorded
        finally:
            if tap is not None:
                tap.remove()
        await self._quit()
        return [r for r in results if r is not None]

    async def _hello(self) -> None:
        self.phase = "EHLO"
        smtp, name = self.smtp, self.job.helo_name
        reply = await _reply_of(smtp.ehlo(hostname=name))
        if 200 <= reply.code < 300:
            return
        if reply.code == 421 or not 500 <= reply.code < 600 or not smtp.is_connected:
            raise _HopFailed.refused(self.hop, reply, self.phase)
        # RFC 5321 §3.2: a server that does not know EHLO answers 5xx; use HELO.
        self.phase = "HELO"
        reply = await _reply_of(smtp.helo(hostname=name))
        if not 200 <= reply.code < 300:
            raise _HopFailed.refused(self.hop, reply, self.phase)

    def _tls_failed(self, result_type: str, detail: str) -> None:
        """A TLS requirement not met: reported; a hop failure unless only testing."""
        tls = self.tls
        if tls.report is not None:
            tls.report(tls, self.hop.host, self.hop.ip, result_type, detail)
        event(log, "tls-policy-failed", level=logging.WARNING, host=self.hop.label, policy=tls.source or tls.level,
              result=result_type, detail=detail, action="deliver (testing)" if tls.testing else "defer")
        if not tls.testing:
            # RFC 8461 §5 / RFC 7672 §2.2: never on in clear; RFC 3463 X.7.5 (X.7.10 TLS required).
            raise _HopFailed(451, "4.7.5", f"{detail}: the {tls.source or tls.level} policy requires TLS"
                             + (" with a verified certificate" if tls.level == "verify" else ""))

    async def _starttls(self) -> None:
        self.phase = "STARTTLS"
        tls = self.tls
        verify = tls.level == "verify"
        if verify and tls.verify_host is None:
            context = verified_context(tls.ca_file)
        else:
            context = self.job.tls_context or _opportunistic_context()
        server_name = None if _is_ip(self.hop.host) else self.hop.host
        try:
            await self.smtp.starttls(tls_context=context, server_hostname=server_name)
        except aiosmtplib.SMTPResponseException as e:
            if e.code == 421 or not self.smtp.is_connected:
                raise _HopFailed.refused(self.hop, SMTPResponse(e.code, e.message), self.phase) from None
            if tls.level in ("encrypt", "verify"):
                self._tls_failed("starttls-not-supported", f"{self.hop.label} refused STARTTLS: {e.code} {e.message}")
            return  # RFC 3207 §4: refused; opportunistic, so go on in clear
        except (aiosmtplib.SMTPException, OSError) as e:  # the handshake failed
            if verify:
                kind = _verify_failure(e)
                if tls.report is not None:
                    tls.report(tls, self.hop.host, self.hop.ip, kind, str(e))
                event(log, "tls-policy-failed", level=logging.WARNING, host=self.hop.label,
                      policy=tls.source or tls.level, result=kind, detail=str(e),
                      action="deliver (testing)" if tls.testing else "defer")
            if tls.required:
                raise _HopFailed(451, "4.7.5", f"TLS with {self.hop.label} failed ({e}): the {tls.source or tls.level} "
                                 "policy requires TLS" + (" with a verified certificate" if verify else "")) from None
            raise _HopFailed(
                451, "4.7.5", f"TLS handshake with {self.hop.label} failed: {e}", tls_broken=True
            ) from None
        if verify and tls.verify_host is not None:
            chain = _peer_chain(self.smtp)
            problem = tls.verify_host(self.hop, chain)
            if problem is not None:
                self._tls_failed(*problem)
                if tls.testing:
                    await self._hello()
                    return
        if verify and tls.report is not None:
            tls.report(tls, self.hop.host, self.hop.ip, "success", "")
        # RFC 3207 §4.2: forget what was learnt before TLS and ask again.
        await self._hello()

    async def _authenticate(self, extensions: dict[str, str]) -> list[RecipientResult] | None:
        """RFC 4954 towards the next hop; None when authenticated."""
        assert self.job.auth is not None
        user, password = self.job.auth
        offered = extensions.get("auth", "").upper().split()
        self.phase = "AUTH"
        methods = (("CRAM-MD5", self.smtp.auth_crammd5), ("PLAIN", self.smtp.auth_plain),
                   ("LOGIN", self.smtp.auth_login))
        for name, method in methods:
            if name not in offered:
                continue
            try:
                await method(user, password, timeout=self.job.command_timeout)
            except aiosmtplib.SMTPAuthenticationError as e:
                return await self._all(454 if e.code < 500 else 451, "4.7.0",
                                       f"{self.hop.label} refused AUTH {name} for {user}: {e.code} {e.message}")
            except (aiosmtplib.SMTPException, OSError) as e:
                raise _HopFailed(451, "4.4.2", f"AUTH {name} with {self.hop.label}: {e}") from None
            self.auth_used = name
            return None
        return await self._all(451, "4.7.0", f"{self.hop.label} offers no AUTH mechanism we use ({' '.join(offered) or 'none'})")

    async def _all(self, code: int, status: str, text: str) -> list[RecipientResult]:
        """The same result for every recipient, made here (not a remote reply)."""
        await self._quit()
        return [RecipientResult(a, code, status, text, "", self.dsn) for a, _ in self.job.recipients]

    async def _quit(self) -> None:
        # RFC 5321 §4.1.1.10: say QUIT and wait (briefly) for its reply; the results
        # are already known, so a failure here changes nothing.
        if not self.smtp.is_connected:
            return
        try:
            await self.smtp.quit(timeout=min(QUIT_TIMEOUT, self.job.command_timeout))
        except (aiosmtplib.SMTPException, OSError):
            pass


def _verify_failure(error: BaseException) -> str:
    """The RFC 8460 §4.3 result type of a failed verified handshake."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            code = seen.verify_code
            if code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
                return "certificate-host-mismatch"
            if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
                return "certificate-expired"
            return "certificate-not-trusted"
        seen = seen.__cause__ or seen.__context__
    return "validation-failure"


#: _ssl.ENCODING_DER: the format argument of Certificate.public_bytes (DER, not PEM).
_ENCODING_DER = 2


def _peer_chain(smtp: aiosmtplib.SMTP) -> list[bytes]:
    """The certificates the server sent (DER, leaf first)."""
    transport = smtp.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return []
    # Public from Python 3.13 (SSLObject.get_unverified_chain); on 3.11 and 3.12 the
    # same method of the underlying _ssl object (read only: nothing is patched).
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        leaf = ssl_object.getpeercert(binary_form=True)
        return [leaf] if leaf else []
    out: list[bytes] = []
    for c in getter() or []:
        out.append(c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER))
    return out


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- delivery --------------------------------------------------------------------------------


async def deliver_to_hops(
    *,
    settings: Settings,
    hops: Sequence[Hop],
    sender: str,
    recipients: Sequence[tuple[str, Sequence[str]]],
    data: bytes,
    mail_options: Sequence[str],
    tls_context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    on_accepted: Callable[[list[int]], None] | None = None,
    tls: TLSPolicy | None = None,
) -> list[RecipientResult]:
    """Run one SMTP transaction with the first hop that takes it; see ``deliver``.

    ``hops`` are tried in order (``plan`` makes them); with no hop, every recipient
    gets a temporary result.
    """
    job = dataclasses.replace(_job(settings, sender, recipients, data, mail_options, tls_context), auth=auth,
                              on_accepted=on_accepted, tls=tls or TLSPolicy(ca_file=settings.delivery.tls_ca_file))
    if not job.recipients:
        return []
    failure = _HopFailed(451, "4.4.4", "no hop to try")  # RFC 3463 X.4.4: unable to route
    for hop in hops:
        try:
            return await _Session(job, hop, job.starttls or job.tls.level != "may").run()
        except _HopFailed as e:
            failure = e
        if failure.tls_broken:
            try:
                if job.tls.testing:
                    # MTA-STS testing: the failure is reported; deliver as without a
                    # policy, opportunistic TLS first.
                    return await _Session(job, hop, True, TLSPolicy(ca_file=job.tls.ca_file)).run()
                return await _Session(job, hop, starttls=False).run()
            except _HopFailed as e:
                failure = e
    return [
        RecipientResult(address, failure.code, failure.status, failure.text, failure.remote_host)
        for address, _ in job.recipients
    ]


async def deliver(
    *,
    settings: Settings,
    resolver: Resolver,
    is_self: IsSelf,
    destination: Destination,
    sender: str,
    recipients: Sequence[tuple[str, Sequence[str]]],
    data: bytes,
    mail_options: Sequence[str],
    tls_context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    on_accepted: Callable[[list[int]], None] | None = None,
    tls: TLSPolicy | None = None,
) -> list[RecipientResult]:
    """Deliver one message to ``destination`` in one SMTP transaction.

    ``on_accepted(positions)`` is called, as soon as the end of data is answered 2xx,
    with the positions in ``recipients`` it accepted (the queue journals them): from the
    transport's callback that read the reply's last line, before aiosmtplib has parsed
    it and before this coroutine runs again (see ``_EndOfDataTap``); it must not block.

    ``auth`` (user, password): authenticate to the next hop (seed 003) with CRAM-MD5,
    PLAIN or LOGIN, the first the server offers in that order; a refused AUTH, or no
    mechanism offered, defers every recipient (4.7.x): it is reported, not bounced.

    ``recipients`` are ``(address, rcpt_options)`` pairs, e.g. ``("a@b.example",
    ["NOTIFY=FAILURE", "ORCPT=rfc822;a@b.example"])``; ``mail_options`` e.g.
    ``["BODY=8BITMIME", "RET=HDRS", "ENVID=x", "SMTPUTF8", "SIZE=123"]``.  A parameter
    goes to the server only when it advertised the extension that defines it (DSN for
    RET/ENVID/NOTIFY/ORCPT, 8BITMIME for BODY, SMTPUTF8, SIZE; any other parameter
    when an extension of its own name is advertised).  ``sender`` "" is the null
    reverse-path.  ``tls_context`` is used for STARTTLS (default: no verification).

    Returns one ``RecipientResult`` per recipient, in the order given; never raises
    for anything the network, DNS or the remote server does.  Raises ``ValueError``
    for malformed parameters (the caller's bug), or BODY=BINARYMIME.

    Failures: a ``ResolveError`` from ``plan`` gives its code to every recipient; a hop
    that cannot be used (refused or timed-out connection, greeting not 220, EHLO/HELO
    refused, lost connection, 421) passes the turn to the next hop, and when none is
    left every recipient is temporary with the last hop's error.  A 4xx/5xx reply to
    MAIL is every recipient's result; a reply to RCPT is that recipient's; the reply
    to the end of data is every accepted recipient's.  DATA is not sent when no
    recipient was accepted.  Timeouts: ``settings.delivery.connect_timeout`` for the
    connection and greeting, ``settings.delivery.command_timeout`` for each reply.
    """
    _job(settings, sender, recipients, data, mail_options, tls_context)  # check before DNS
    if not recipients:
        return []
    try:
        hops = await plan(destination, resolver, is_self, default_port=settings.delivery.smtp_port)
    except ResolveError as e:
        return [RecipientResult(address, e.code, e.status, e.text) for address, _ in recipients]
    if tls is not None and tls.dane_lookup is not None and destination.kind != "ip":
        dane = await tls.dane_lookup(destination.kind, destination.name, [(h.host, h.port) for h in hops])
        if dane:
            tls = dataclasses.replace(tls, dane=dane)
            event(log, "dane", destination=destination.name, hosts=",".join(sorted(dane)))
    if tls is not None and tls.mx is not None and destination.kind == "mx":
        mx_ok = tls.mx
        allowed = [h for h in hops if mx_ok(h.host) or (tls.dane is not None and h.host in tls.dane)]
        for h in {h.host for h in hops} - {h.host for h in allowed}:
            if tls.report is not None:
                tls.report(tls, h, "", "validation-failure", f"MX {h} not in the {tls.source} policy")
            event(log, "tls-policy-failed", level=logging.WARNING, host=h, policy=tls.source,
                  result="validation-failure", detail="MX host not listed by the policy", action="skip host")
        if not allowed:
            # RFC 8461 §4.2: no MX host matches an enforced policy: temporary, never elsewhere.
            return [RecipientResult(address, 451, "4.7.5", f"no MX host of {destination.name} matches its "
                                    f"{tls.source} policy") for address, _ in recipients]
        hops = allowed
    return await deliver_to_hops(
        settings=settings, hops=hops, sender=sender, recipients=recipients, data=data,
        mail_options=mail_options, tls_context=tls_context, auth=auth, on_accepted=on_accepted, tls=tls,
    )
