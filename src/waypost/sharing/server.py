"""The Minger server: answers our peers' "do you accept mail for this address?".

Thin asyncio adapter over ``waypost.sharing.proto``.  It owns the socket, the per-client
rate limit and the order of checks; it never decides whether an address exists: that
is the ``lookup`` callable it is given (the directory's answer, 3/4/5).

Theory of operation, per datagram (each step ends the query or passes it on):

    1. rate limit per client address (token bucket)   over the limit -> dropped, no reply
    2. parse (proto.parse_query; never raises)
    3. client address in the allowed networks?        no  -> 1 access denied
    4. well-formed query-string?                        no  -> 0 malformed
    5. credentials (proto.check_credentials)            bad -> 2 bad or missing credentials
    6. lookup(mailbox) -> 3 / 4 / 5                     error or timeout -> no reply

No reply on a lookup failure because the draft has no "try later" status: silence
makes the asking peer time out, which MDaemon turns into a 451 (temporary) for SMTP.

With ``waypost serve --workers N`` each worker binds the port with SO_REUSEPORT
(``reuse_port=True``); the kernel keeps one client's datagrams on one worker, so the
rate limit, which lives in each process, holds per worker.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from .proto import (
    DEFAULT_PORT,
    MIN_SECRET_LENGTH,
    Code,
    Malformed,
    check_credentials,
    check_secret,
    encode_reply,
    parse_query,
)

__all__ = [
    "ANSWER_CODES",
    "DEFAULT_BIND_HOST",
    "DEFAULT_LOOKUP_TIMEOUT",
    "DEFAULT_MAX_PENDING_LOOKUPS",
    "DEFAULT_MAX_TRACKED_CLIENTS",
    "DEFAULT_RATE_BURST",
    "DEFAULT_RATE_LOG_INTERVAL",
    "DEFAULT_RATE_PER_SECOND",
    "Lookup",
    "MingerServer",
    "RateLimiter",
    "ServerStats",
]

logger = logging.getLogger("waypost.sharing")

#: What a lookup may answer: the codes about the address itself (draft §3.1).
ANSWER_CODES = frozenset({Code.NOT_FOUND, Code.CANNOT_RECEIVE, Code.ACTIVE})

LookupResult = Code | int
#: ``lookup(mailbox) -> 3 | 4 | 5``, plain or async.  A plain one runs on the event
#: loop, so it must not block (answer from memory); anything slower is async.
Lookup = Callable[[str], LookupResult | Awaitable[LookupResult]]

#: Loopback by default: a server reachable by peers is bound on purpose.
DEFAULT_BIND_HOST = "127.0.0.1"
#: Sustained queries per second from one client address ...
DEFAULT_RATE_PER_SECOND = 50.0
#: ... and how many it may send at once before the rate applies.
DEFAULT_RATE_BURST = 100
#: At most one log line per client address per this many seconds while it is limited.
DEFAULT_RATE_LOG_INTERVAL = 60.0
#: Buckets kept; the least recently seen client is forgotten past this (memory bound).
DEFAULT_MAX_TRACKED_CLIENTS = 4096
#: Async lookups in flight at once; a query past this is dropped (and logged).
DEFAULT_MAX_PENDING_LOOKUPS = 256
#: Seconds an async lookup may take before the query goes unanswered.
DEFAULT_LOOKUP_TIMEOUT = 5.0


class _Bucket:
    __slots__ = ("tokens", "stamp", "dropped", "noticed_at")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.dropped = 0
        self.noticed_at: float | None = None


class RateLimiter:
    """Token buckets keyed by client address.  No I/O, no clock: ``now`` is passed in.

    Each key holds up to ``burst`` tokens, refilled at ``rate`` per second; a query
    takes one.  ``allow`` answers whether the query may go on, and how many dropped
    queries to report now: non-zero at most once per ``log_interval`` per key.
    """

    __slots__ = ("rate", "burst", "log_interval", "max_keys", "_buckets")

    def __init__(self, rate: float, burst: int, log_interval: float, max_keys: int) -> None:
        if not rate > 0:
            raise ValueError("rate_per_second must be positive")
        if burst < 1:
            raise ValueError("rate_burst must be at least 1")
        if not log_interval > 0:
            raise ValueError("rate_log_interval must be positive")
        if max_keys < 1:
            raise ValueError("max_tracked_clients must be at least 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self.log_interval = float(log_interval)
        self.max_keys = int(max_keys)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, 0
        bucket.dropped += 1
        if bucket.noticed_at is None or now - bucket.noticed_at >= self.log_interval:
            report, bucket.dropped, bucket.noticed_at = bucket.dropped, 0, now
            return False, report
        return False, 0


@dataclass(slots=True)
class ServerStats:
    """Counters since start: queries answered by lookup, refused (0/1/2), dropped."""

    answered: int = 0
    refused: int = 0
    dropped: int = 0
    failed: int = 0


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _client_ip(addr: Any) -> Address | None:
    try:
        ip = ipaddress.ip_address(addr[0])
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
    return ip


class MingerServer(asyncio.DatagramProtocol):
    """A Minger responder on one UDP socket.

    ``lookup``: the directory's answer for a mailbox, called only for well-formed,
    authorised queries; it gets the mailbox exactly as asked (case included).
    ``allowed_networks``: client networks that may ask ("0.0.0.0/0" and "::/0" for
    all); a query from elsewhere gets 1.  ``secret``: the shared secret, 16 to 50
    printable ASCII characters, or None for an anonymous-only server.
    ``allow_anonymous``: whether a query without digest is answered (else 2).
    Construction checks every setting and raises ``ValueError`` naming the bad one.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        allowed_networks: Iterable[str | Network],
        secret: str | None = None,
        allow_anonymous: bool = False,
        host: str = DEFAULT_BIND_HOST,
        port: int = DEFAULT_PORT,
        rate_per_second: float = DEFAULT_RATE_PER_SECOND,
        rate_burst: int = DEFAULT_RATE_BURST,
        rate_log_interval: float = DEFAULT_RATE_LOG_INTERVAL,
        max_tracked_clients: int = DEFAULT_MAX_TRACKED_CLIENTS,
        max_pending_lookups: int = DEFAULT_MAX_PENDING_LOOKUPS,
        lookup_timeout: float = DEFAULT_LOOKUP_TIMEOUT,
        reuse_port: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(lookup):
            raise ValueError("lookup must be callable")
        if secret is not None:
            try:
                check_secret(secret, min_length=MIN_SECRET_LENGTH)
            except ValueError as exc:
                raise ValueError(f"secret: {exc}") from None
        elif not allow_anonymous:
            raise ValueError("secret: required unless allow_anonymous is true")
        if isinstance(allowed_networks, str):
            raise ValueError("allowed_networks: give a list of networks, not one string")
        networks: list[Network] = []
        for net in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(net))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"allowed_networks: {net!r}: {exc}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"port: {port} is not a UDP port")
        if max_pending_lookups < 1:
            raise ValueError("max_pending_lookups must be at least 1")
        if not lookup_timeout > 0:
            raise ValueError("lookup_timeout must be positive")
        self._lookup = lookup
        self._networks = tuple(networks)
        self._secret = secret
        self._allow_anonymous = bool(allow_anonymous)
        self._host = host
        self._port = port
        self._limiter = RateLimiter(
            rate_per_second, rate_burst, rate_log_interval, max_tracked_clients
        )
        self._max_pending = max_pending_lookups
        self._lookup_timeout = float(lookup_timeout)
        self._reuse_port = reuse_port
        self._clock = clock
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.stats = ServerStats()

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket.  Logs "listening" with the address actually bound."""
        if self._transport is not None:
            raise RuntimeError("MingerServer already started")
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: self,
            local_addr=(self._host, self._port),
            reuse_port=True if self._reuse_port else None,
        )
        host, port = self.address
        logger.info("minger: listening on %s port %d", host, port)

    async def close(self) -> None:
        """Close the socket and cancel lookups in flight."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> MingerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the socket is bound to; the real port when started with 0."""
        if self._transport is None:
            raise RuntimeError("MingerServer not started")
        sockname = self._transport.get_extra_info("sockname")
        return str(sockname[0]), int(sockname[1])

    # -- DatagramProtocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.warning("minger: socket closed: %s", exc)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for replies to clients that went away: nothing to do.
        logger.debug("minger: socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self._handle(data, addr)
        except Exception:  # never let one datagram take the listener down
            self.stats.failed += 1
            logger.exception("minger: internal error on a datagram from %r", addr)

    # -- the checks, in order -------------------------------------------------------

    def _handle(self, data: bytes, addr: Any) -> None:
        ip = _client_ip(addr)
        who = str(ip) if ip is not None else repr(addr)
        allowed, report = self._limiter.allow(who, self._clock())
        if report:
            logger.warning(
                "minger: rate limit: dropping queries from %s (%d dropped since last notice)",
                who,
                report,
            )
        if not allowed:
            self.stats.dropped += 1
            return
        parsed = parse_query(data)
        if ip is None or not any(ip in net for net in self._networks):
            self._refuse(addr, who, parsed.mailbox, Code.ACCESS_DENIED, "client not allowed")
            return
        if isinstance(parsed, Malformed):
            reason = f"{parsed.reason}, {len(data)} octets"
            self._refuse(addr, who, parsed.mailbox, Code.MALFORMED, reason)
            return
        code = check_credentials(parsed, self._secret, self._allow_anonymous)
        if code is not None:
            reason = "anonymous query" if parsed.anonymous else "wrong digest"
            self._refuse(addr, who, parsed.mailbox, code, reason)
            return
        self._ask(parsed.mailbox, addr, who)

    def _refuse(self, addr: Any, who: str, mailbox: str | None, code: Code, reason: str) -> None:
        self.stats.refused += 1
        logger.info(
            "minger: refused query from %s for %s: %d %s (%s)",
            who,
            mailbox or "-",
            code,
            code.name,
            reason,
        )
        self._send(encode_reply(mailbox, code), addr)

    def _ask(self, mailbox: str, addr: Any, who: str) -> None:
        try:
            result = self._lookup(mailbox)
        except Exception:
            self.stats.failed += 1
            logger.exception("minger: lookup failed for %s from %s; not answered", mailbox, who)
            return
        if not inspect.isawaitable(result):
            self._answer(mailbox, addr, who, result)
            return
        if len(self._pending) >= self._max_pending:
            if inspect.iscoroutine(result):
                result.close()
            self.stats.dropped += 1
            logger.warning(
                "minger: %d lookups in flight; query from %s for %s dropped",
                len(self._pending),
                who,
                mailbox,
            )
            return
        task = asyncio.ensure_future(self._finish(mailbox, addr, who, result))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _finish(
        self, mailbox: str, addr: Any, who: str, pending: Awaitable[LookupResult]
    ) -> None:
        try:
            async with asyncio.timeout(self._lookup_timeout):
                result = await pending
        except TimeoutError:
            self.stats.failed += 1
            logger.warning(
                "minger: lookup for %s from %s took over %.1fs; not answered",
                mailbox,
                who,
                self._lookup_timeout,
            )
            return
        except Exception:
            self.stats.failed += 1
            logger.exception("minger: lookup failed for %s from %s; not answered", mailbox, who)
            return
        self._answer(mailbox, addr, who, result)

    def _answer(self, mailbox: str, addr: Any, who: str, result: object) -> None:
        try:
            code = Code(result)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            code = None
        if code not in ANSWER_CODES:
            self.stats.failed += 1
            logger.error(
                "minger: lookup for %s answered %r, not 3, 4 or 5; not answered", mailbox, result
            )
            return
        assert code is not None
        self.stats.answered += 1
        logger.debug("minger: %s asked for %s: %d %s", who, mailbox, code, code.name)
        self._send(encode_reply(mailbox, code), addr)

    def _send(self, payload: bytes, addr: Any) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.sendto(payload, addr)
