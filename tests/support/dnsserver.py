"""A small, real DNS server for tests: a zone given as a Python dict, on 127.0.0.1.

It answers over UDP and TCP on the same free port (``dns.port``), so a test points
Waypost's resolver at it through the settings (``dns.nameservers =
[dns.nameserver]``) instead of monkeypatching anything::

    zone = {
        "example.test": {"MX": [(10, "mx1.example.test")]},
        "mx1.example.test": {"A": ["127.0.0.1"]},
    }
    with TestDNSServer(zone) as dns:
        settings = Settings().replace("dns", nameservers=[dns.nameserver])

Semantics (kept close to an authoritative server):

* a name that is not in the zone → NXDOMAIN;
* a name in the zone without the asked type → NOERROR and no answer (NODATA);
* a name with a CNAME answers any other type with the CNAME and the target's records
  when the target is in the zone (NXDOMAIN when it is not);
* ``fail(name, "SERVFAIL")`` makes a name answer with that response code;
  ``drop(name)`` makes the server ignore queries for it (the client times out);
  ``drop(name, "TXT")`` only the queries of that type.

Record values: ``A``/``AAAA`` an address string; ``MX`` a ``(preference, host)`` pair
(``(0, ".")`` is a null MX, RFC 7505); ``TXT`` a string or a list of strings (one
record of several character-strings); ``CNAME`` and ``PTR`` a host name; ``TLSA`` a
``(usage, selector, matching type, data bytes)`` tuple (RFC 6698).

DNSSEC is not signed here: ``secure(name, ...)`` makes the answers for those names
carry the AD bit, as a validating resolver on 127.0.0.1 (unbound) sets it for data it
validated (RFC 4035 §3.2.3); every other answer has it clear (insecure data).  Names are compared in
lower case without the trailing dot.  Every query is logged in ``queries`` as
``(name, type, transport)`` so a test can assert what was (not) asked.

The server binds 127.0.0.1 only, and runs in two daemon threads (one per transport):
zone changes made with ``set``/``remove``/``fail``/``drop`` while it runs take effect
on the next query.
"""

from __future__ import annotations

import builtins
import errno
import socketserver
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TLSA, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["TestDNSServer", "Zone"]

#: ``{name: {type: [value, ...]}}``; see the module docstring for the value forms.
Zone = Mapping[str, Mapping[str, Sequence[Any]]]

ADDRESS = "127.0.0.1"
TTL = 60
SUPPORTED_TYPES = ("A", "AAAA", "MX", "TXT", "CNAME", "PTR", "TLSA")
# Longest CNAME chain followed inside the zone (a loop ends here instead of hanging).
MAX_CNAME_CHAIN = 8
# Attempts at finding a port free for both TCP and UDP.
PORT_ATTEMPTS = 50
# Seconds between the serving threads' looks at a stop request (stop() waits this long).
POLL_INTERVAL = 0.05


def _key(name: str) -> str:
    return name.rstrip(".").lower()


class _Drop(Exception):
    """Raised by the resolver for a query that must get no answer at all."""


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, owner: TestDNSServer) -> None:
        self.owner = owner

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        # From the raw labels: str() escapes what an SPF macro may leave in a name (spaces).
        qname = _key(".".join(label.decode("utf-8", "replace") for label in request.q.qname.label))
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        zone, failures, drops = self.owner._snapshot((qname, qtype, handler.protocol))
        if qname in drops or (qname, qtype) in drops:
            raise _Drop()
        reply = request.reply()
        # reply() copies the query's flags: the AD bit a client asked with (RFC 6840
        # §5.7) must not come back unless the data is "secure".
        reply.header.ad = 1 if qname in self.owner._secure else 0
        if qname in failures:
            reply.header.rcode = getattr(RCODE, failures[qname])
            return reply
        name = qname
        for _ in range(MAX_CNAME_CHAIN):
            records = zone.get(name)
            if records is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            cname = records.get("CNAME")
            if cname and qtype != "CNAME":
                reply.add_answer(_rr(name, "CNAME", cname[0]))
                name = _key(str(cname[0]))
                continue
            for value in records.get(qtype, ()):
                reply.add_answer(_rr(name, qtype, value))
            return reply
        reply.header.rcode = RCODE.SERVFAIL
        return reply


def _rr(name: str, rtype: str, value: Any) -> RR:
    if rtype == "A":
        rdata: Any = A(value)
    elif rtype == "AAAA":
        rdata = AAAA(value)
    elif rtype == "MX":
        preference, host = value
        rdata = MX(host if host == "." else host.rstrip(".") + ".", int(preference))
    elif rtype == "TXT":
        rdata = TXT(list(value) if isinstance(value, (list, tuple)) else value)
    elif rtype == "CNAME":
        rdata = CNAME(value.rstrip(".") + ".")
    elif rtype == "PTR":
        rdata = PTR(value.rstrip(".") + ".")
    elif rtype == "TLSA":
        usage, selector, mtype, data = value
        rdata = TLSA(int(usage), int(selector), int(mtype), bytes(data))
    else:  # pragma: no cover - rejected by _check
        raise ValueError(rtype)
    return RR(DNSLabel([label.encode("utf-8") for label in name.split(".")]), getattr(QTYPE, rtype), rdata=rdata,
              ttl=TTL)


class _Handler(DNSHandler):  # type: ignore[misc]
    def handle(self) -> None:
        try:
            super().handle()
        except _Drop:
            pass  # no reply: the client sees a timeout


class _UDPServer(socketserver.ThreadingMixIn, socketserver.UDPServer):
    # No SO_REUSEADDR: on Linux it would let two UDP sockets share a port.
    allow_reuse_address = False
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _check(name: str, rtype: str, values: Sequence[Any]) -> list[Any]:
    if rtype not in SUPPORTED_TYPES:
        raise ValueError(f"{name}: unsupported record type {rtype!r} (supported: {', '.join(SUPPORTED_TYPES)})")
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} {rtype}: give a list of values, not a single string")
    checked = list(values)
    for value in checked:
        if rtype == "MX" and not (isinstance(value, tuple) and len(value) == 2):
            raise ValueError(f"{name} MX: expected (preference, host), got {value!r}")
        _rr(_key(name), rtype, value)  # raises on a malformed value
    return checked


class TestDNSServer:
    """A DNS server for one test; see the module docstring.

    Use as a context manager, or call ``start()`` and ``stop()``.  ``port`` is valid
    once started.  Thread-safe: the zone may change while queries are served.
    """

    __test__ = False  # not a test class, despite the name

    def __init__(self, zone: Zone | None = None) -> None:
        self._lock = threading.Lock()
        self._zone: dict[str, dict[str, list[Any]]] = {}
        self._failures: dict[str, str] = {}
        self._drops: builtins.set[Any] = builtins.set()
        self._secure: frozenset[str] = frozenset()
        self._queries: list[tuple[str, str, str]] = []
        self._servers: list[DNSServer] = []
        self.port = 0
        for name, records in (zone or {}).items():
            for rtype, values in records.items():
                self.set(name, rtype, values)

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> TestDNSServer:
        """Bind UDP and TCP on one free port of 127.0.0.1 and serve in the background."""
        if self._servers:
            raise RuntimeError("already started")
        resolver = _ZoneResolver(self)
        logger = DNSLogger(logf=lambda _message: None)
        last_error: OSError | None = None
        for _ in range(PORT_ATTEMPTS):
            tcp = DNSServer(resolver, address=ADDRESS, port=0, logger=logger, handler=_Handler, server=_TCPServer)
            port = tcp.server.server_address[1]
            try:
                udp = DNSServer(resolver, address=ADDRESS, port=port, logger=logger, handler=_Handler,
                                server=_UDPServer)
            except OSError as e:  # the UDP port is taken: try another
                tcp.server.server_close()
                if e.errno != errno.EADDRINUSE:
                    raise
                last_error = e
                continue
            self._servers = [udp, tcp]
            self.port = port
            for server in self._servers:
                thread = threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True
                )
                thread.start()
            return self
        raise RuntimeError(f"no port free for both UDP and TCP on {ADDRESS}: {last_error}")

    def stop(self) -> None:
        """Stop serving and close both sockets; safe to call twice."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.server.shutdown()
            server.server.server_close()

    def __enter__(self) -> TestDNSServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"``, the form ``dns.nameservers`` takes."""
        if not self.port:
            raise RuntimeError("not started")
        return f"{ADDRESS}:{self.port}"

    # -- the zone -----------------------------------------------------------------------

    def set(self, name: str, rtype: str, values: Iterable[Any]) -> None:
        """Replace the ``rtype`` records of ``name``; an empty list removes them (the
        name stays, so it answers NODATA).  Adds the name when it is new."""
        rtype = rtype.upper()
        checked = _check(name, rtype, list(values))
        with self._lock:
            records = self._zone.setdefault(_key(name), {})
            if checked:
                records[rtype] = checked
            else:
                records.pop(rtype, None)

    def secure(self, *names: str) -> None:
        """Answers for these names carry the AD bit from now on (see the module docstring)."""
        with self._lock:
            self._secure = self._secure | {_key(n) for n in names}

    def remove(self, name: str) -> None:
        """Remove a name and all its records: it answers NXDOMAIN from now on."""
        with self._lock:
            self._zone.pop(_key(name), None)

    def fail(self, name: str, rcode: str = "SERVFAIL") -> None:
        """Answer every query for ``name`` with ``rcode`` (e.g. SERVFAIL, REFUSED)."""
        if not hasattr(RCODE, rcode):
            raise ValueError(f"unknown response code {rcode!r}")
        with self._lock:
            self._failures[_key(name)] = rcode

    def drop(self, name: str, rtype: str | None = None) -> None:
        """Never answer queries for ``name`` (of ``rtype`` only, when given): the
        client's look-up times out."""
        with self._lock:
            self._drops.add(_key(name) if rtype is None else (_key(name), rtype.upper()))

    def heal(self, name: str) -> None:
        """Undo ``fail`` and ``drop`` for ``name``."""
        with self._lock:
            self._failures.pop(_key(name), None)
            self._drops = {d for d in self._drops if d != _key(name) and not (isinstance(d, tuple) and d[0] == _key(name))}

    # -- the query log ------------------------------------------------------------------

    @property
    def queries(self) -> list[tuple[str, str, str]]:
        """Every query so far as ``(name, type, "udp" | "tcp")``, oldest first."""
        with self._lock:
            return list(self._queries)

    def asked(self, name: str, rtype: str | None = None) -> bool:
        """Whether ``name`` was queried (for ``rtype``, or for any type)."""
        name = _key(name)
        return any(q[0] == name and (rtype is None or q[1] == rtype.upper()) for q in self.queries)

    def clear_queries(self) -> None:
        with self._lock:
            self._queries.clear()

    def _snapshot(
        self, query: tuple[str, str, str]
    ) -> tuple[dict[str, dict[str, list[Any]]], dict[str, str], frozenset[Any]]:
        """Log ``query`` and return a consistent copy of the zone and the failures."""
        with self._lock:
            self._queries.append(query)
            zone = {name: dict(records) for name, records in self._zone.items()}
            return zone, dict(self._failures), frozenset(self._drops)

