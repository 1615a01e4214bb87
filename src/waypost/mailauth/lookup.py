"""DNS look-ups for the verdict engine, through dnspython with ``dns.nameservers``.

Answers are told apart the way RFC 7208 §2.6 and RFC 7489 §6.6.3 need: records,
"void" (NXDOMAIN or no record of that type: ``[]``, with ``nxdomain`` saying which),
or a temporary failure (time-out, SERVFAIL, REFUSED: ``DNSTempError``).  Every query is
counted, so a check can say what it cost.

``AnswerCache`` keeps answers for their TTL in the process that asked (the SMTP
listener's worker gives one to its ``Lookup``): records, and void answers for their
negative TTL (RFC 2308: the SOA's minimum; 300 s without an SOA, as dnspython), never
a temporary failure.  DNS data is not shared state of ours: an entry is as true as the
TTL its publisher gave it, in every process at once, so nothing has to be told to other
workers (STYLE.md point 13).  It stands in front of dnspython, whose cached
``resolve`` still builds a query name, an answer object and our text per call (about
0.05 ms each, four to five per message); a hit here is a dictionary look-up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import dns.exception
import dns.message
import dns.name
import dns.resolver
import dns.reversename

from ..config import Settings
from ..delivery.remote import async_resolver

__all__ = ["AnswerCache", "Lookup", "DNSTempError", "DNSAnswer", "CACHE_SIZE", "MAX_TTL"]

#: Answers an ``AnswerCache`` holds at most (each a few hundred octets).
CACHE_SIZE = 10_000
#: A TTL longer than this is cut to it (RFC 2181 §8 allows 68 years; RFC 8767 suggests
#: a day as a cap for a cache).
MAX_TTL = 86_400


class DNSTempError(Exception):
    """A look-up that may work later: a time-out or a server failure."""


class DNSAnswer(list[str]):
    """Records as text (TXT: the character-strings joined); empty = void; ``ttl``: how
    long the answer may be kept (0 for one that must not be)."""

    nxdomain: bool = False
    ttl: float = 0


class AnswerCache:
    """Answers by (query name, type) until their TTL runs out; at most ``size`` of them
    (when full, the expired ones go, then the oldest)."""

    __slots__ = ("size", "clock", "_entries", "hits", "misses", "pending")

    def __init__(self, size: int = CACHE_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.clock = clock
        self._entries: dict[tuple[bytes, str], tuple[float, tuple[str, ...], bool]] = {}
        self.hits = 0
        self.misses = 0
        #: Queries on their way, by key: (their event loop, the task).
        self.pending: dict[tuple[bytes, str], tuple[asyncio.AbstractEventLoop, asyncio.Task[DNSAnswer]]] = {}

    def get(self, key: tuple[bytes, str]) -> DNSAnswer | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self.clock():
            self.misses += 1
            return None
        self.hits += 1
        out = DNSAnswer(entry[1])  # a new list each time: a caller may change its own
        out.nxdomain = entry[2]
        return out

    def put(self, key: tuple[bytes, str], answer: DNSAnswer, ttl: float) -> None:
        if ttl <= 0:
            return
        entries = self._entries
        if key not in entries and len(entries) >= self.size:
            now = self.clock()
            for k in [k for k, e in entries.items() if e[0] <= now]:
                del entries[k]
            while len(entries) >= self.size:
                del entries[next(iter(entries))]
        entries[key] = (self.clock() + min(ttl, MAX_TTL), tuple(answer), answer.nxdomain)

    def __len__(self) -> int:
        return len(self._entries)


def _negative_ttl(e: dns.resolver.NXDOMAIN, qname: dns.name.Name) -> float:
    """How long an NXDOMAIN may be kept (RFC 2308 §5), as dnspython reckons it."""
    try:
        response = e.responses().get(qname)
        return response.resolve_chaining().minimum_ttl if isinstance(response, dns.message.QueryMessage) else 0
    except Exception:  # an odd response: not kept
        return 0


def _forget(cache: AnswerCache, key: tuple[bytes, str], task: asyncio.Task[DNSAnswer]) -> None:
    if cache.pending.get(key, (None, None))[1] is task:
        del cache.pending[key]
    if not task.cancelled():
        task.exception()  # retrieved: a failure nobody awaited any more is not "never retrieved"


class Lookup:
    """One resolver for a whole check; ``queries`` counts what it asked (answers from
    ``cache`` included)."""

    __slots__ = ("resolver", "queries", "cache")

    def __init__(self, settings: Settings, timeout: float | None = None, cache: AnswerCache | None = None) -> None:
        self.resolver = async_resolver(settings, timeout)  # the delivery agent's, same settings
        self.queries = 0
        self.cache = cache

    def own(self) -> Lookup:
        """A ``Lookup`` for one check: this one's resolver and cache (answers and queries
        on their way shared), and a count of its own.  The worker's checks run at once,
        and one that waits for DNS lets others ask meanwhile: counted on the shared
        object, each check's figure took in the others' queries."""
        view = Lookup.__new__(Lookup)
        view.resolver, view.cache, view.queries = self.resolver, self.cache, 0
        return view

    async def query(self, name: str, rdtype: str) -> DNSAnswer:
        self.queries += 1
        cache = self.cache
        if cache is not None:
            # DNS names compare without regard to ASCII case (RFC 4343): bytes.lower()
            # folds ASCII only, as that does.
            key = (name.rstrip(".").encode("utf-8", "surrogateescape").lower(), rdtype)
            hit = cache.get(key)
            if hit is not None:
                return hit
            # Sessions that ask the same name at once (a burst from one sender, a cold
            # cache) share one query; each gets its own copy of the answer.
            loop = asyncio.get_running_loop()
            pending = cache.pending.get(key)
            if pending is None or pending[0] is not loop:
                task = loop.create_task(self._fetch(key, name, rdtype))
                cache.pending[key] = (loop, task)
                task.add_done_callback(lambda done: _forget(cache, key, done))
            else:
                task = pending[1]
            out = await asyncio.shield(task)  # one session's time-out does not end the others' query
            copy = DNSAnswer(out)
            copy.nxdomain, copy.ttl = out.nxdomain, out.ttl
            return copy
        return await self._query(name, rdtype)

    async def _fetch(self, key: tuple[bytes, str], name: str, rdtype: str) -> DNSAnswer:
        out = await self._query(name, rdtype)
        if self.cache is not None:
            self.cache.put(key, out, out.ttl)
        return out

    async def _query(self, name: str, rdtype: str) -> DNSAnswer:
        out = DNSAnswer()
        try:
            # Label by label, not from_text(): an SPF macro may leave any visible
            # character (and spaces) in a label, which a zone may well hold.
            qname = dns.name.Name([label.encode("utf-8") for label in name.rstrip(".").split(".")] + [b""])
        except (dns.exception.DNSException, ValueError):
            out.nxdomain = True  # a name that cannot exist (label too long, empty label)
            return out
        try:
            answer = await self.resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as e:
            out.nxdomain = True
            out.ttl = _negative_ttl(e, qname)
            return out
        except dns.exception.Timeout as e:
            raise DNSTempError(f"{name} {rdtype}: time-out ({e})") from None
        except dns.resolver.NoNameservers as e:
            raise DNSTempError(f"{name} {rdtype}: no server answered ({e})") from None
        except dns.exception.DNSException as e:
            raise DNSTempError(f"{name} {rdtype}: {e}") from None
        out.ttl = answer.chaining_result.minimum_ttl  # the answer's, or the negative TTL of a NODATA
        if answer.rrset is None:
            return out
        for r in answer:
            if rdtype == "TXT":
                out.append(b"".join(r.strings).decode("utf-8", "replace"))
            elif rdtype == "MX":
                out.append(r.exchange.to_text(omit_final_dot=True).lower())
            elif rdtype in ("PTR", "CNAME"):
                out.append(r.target.to_text(omit_final_dot=True).lower())
            else:
                out.append(r.to_text())
        return out

    async def ptr(self, ip: str) -> DNSAnswer:
        return await self.query(dns.reversename.from_address(ip).to_text(), "PTR")
