"""MTA-STS (RFC 8461) for outbound delivery: the receiving domain's policy, fetched over
HTTPS, cached in the database, and the TLS it asks of our delivery.

Theory of operation (RFC 8461 §5).  Before delivering to a domain's MX hosts:

1. ask DNS for ``_mta-sts.<domain>`` TXT (``v=STSv1; id=...``);
2. a policy cached for the domain (table-free: a JSON value ``mta-sts:<domain>`` through
   ``Database.get_mark``/``set_mark``, shared by every worker and node) that has not
   outlived its ``max_age`` and has the record's ``id`` is used as it is;
3. otherwise the policy is fetched from
   ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.3: HTTPS with a certificate
   valid for that name, no redirect followed, 200 and ``text/plain`` only, at most
   ``MAX_POLICY`` octets, ``delivery.mta_sts_timeout``) and cached;
4. a fetch that fails, or a TXT look-up that fails or finds nothing, falls back on a
   cached policy that has not expired (§5.1: this is what defeats an attacker who strips
   the record); without one there is no policy.

What a policy asks (§5): ``enforce`` — only MX hosts matching its ``mx`` patterns, and
TLS with a certificate valid (PKIX, ``delivery.tls_ca_file`` or the system's store) for
the MX host name; a hop that cannot give it is a temporary failure, never a delivery
in clear; ``testing`` — deliver as without a policy, and report what would have failed
(TLS-RPT); ``none`` — nothing.  The HTTP client is ours (a GET on one TLS connection,
addresses from ``dns.nameservers``): no other client resolves through the test and
production settings alike.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable

import dns.asyncresolver
import dns.exception
import dns.resolver

from ..config import Settings
from ..log import event

__all__ = ["Policy", "PolicyError", "MTASTS", "parse_policy", "parse_record", "verified_context", "MAX_POLICY"]

log = logging.getLogger("waypost.delivery")

#: RFC 8461 §3.3: "senders SHOULD impose a limit on the response size ... 64k".
MAX_POLICY = 64 * 1024
#: RFC 8461 §3.2: max_age is at most 31557600 seconds (about one year).
MAX_AGE_LIMIT = 31_557_600
#: The response head (status line and fields) read at most.
MAX_HEAD = 16 * 1024

# RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT)
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
# RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain
_MX_PATTERN = re.compile(r"^(\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


class PolicyError(ValueError):
    """A policy or record that cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One domain's policy as fetched, with the record ``id`` it was fetched for."""

    domain: str
    id: str
    mode: str                    # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int
    fetched: float
    text: str = ""

    def matches(self, host: str) -> bool:
        """RFC 8461 §4.1: an MX pattern is the host name, or ``*.`` and the host name
        without its leftmost label (a wildcard covers exactly one label)."""
        host = host.rstrip(".").lower()
        for pattern in self.mx:
            if pattern.startswith("*."):
                if "." in host and host.split(".", 1)[1] == pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False

    def expired(self, now: float) -> bool:
        return now >= self.fetched + self.max_age

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "id": self.id, "mode": self.mode, "mx": list(self.mx),
                "max_age": self.max_age, "fetched": self.fetched, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        return cls(str(d["domain"]), str(d["id"]), str(d["mode"]), tuple(str(m) for m in d["mx"]),
                   int(d["max_age"]), float(d["fetched"]), str(d.get("text", "")))


def parse_record(text: str) -> str:
    """The ``id`` of a ``v=STSv1`` TXT record (RFC 8461 §3.1); PolicyError otherwise."""
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts or parts[0].replace(" ", "") != "v=STSv1":
        raise PolicyError("not an STSv1 record (RFC 8461 §3.1)")
    tags: dict[str, str] = {}
    for p in parts[1:]:
        key, eq, value = p.partition("=")
        if not eq:
            raise PolicyError(f"{p!r}: not key=value")
        tags[key.strip()] = value.strip()
    record_id = tags.get("id", "")
    if not _RECORD_ID.match(record_id):
        raise PolicyError(f"id={record_id!r}: not 1 to 32 letters and digits (RFC 8461 §3.1)")
    return record_id


def parse_policy(domain: str, record_id: str, text: str, now: float) -> Policy:
    """RFC 8461 §3.2: ``key: value`` lines (CRLF or LF); ``version: STSv1``, ``mode``,
    ``max_age`` once each, ``mx`` one or more times (not needed for ``none``)."""
    if len(text.encode("utf-8")) > MAX_POLICY:
        raise PolicyError(f"policy longer than {MAX_POLICY} octets")
    fields: dict[str, list[str]] = {}
    for line in re.split(r"\r?\n", text):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"line {line[:60]!r}: not key: value (RFC 8461 §3.2)")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("version is not STSv1 (RFC 8461 §3.2)")
    mode = (fields.get("mode") or [""])[0].lower()
    if len(fields.get("mode", [])) != 1 or mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"mode {mode!r}: not enforce, testing or none (RFC 8461 §3.2)")
    age = fields.get("max_age", [])
    if len(age) != 1 or not age[0].isdigit() or len(age[0]) > 10:
        raise PolicyError("max_age missing or not a number (RFC 8461 §3.2)")
    max_age = min(int(age[0]), MAX_AGE_LIMIT)
    mx = tuple(m.lower().rstrip(".") for m in fields.get("mx", []))
    for m in mx:
        if not _MX_PATTERN.match(m):
            raise PolicyError(f"mx {m!r}: not a host name or *.name (RFC 8461 §3.2)")
    if mode != "none" and not mx:
        raise PolicyError("no mx line (RFC 8461 §3.2)")
    return Policy(domain, record_id, mode, mx, max_age, now, text)


@functools.lru_cache(maxsize=4)
def verified_context(ca_file: str) -> ssl.SSLContext:
    """A client context that checks the chain (``ca_file``, else the system's store)
    and the host name: MTA-STS policy fetches and verified SMTP TLS."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8461 §3.3 via RFC 7525 / RFC 8996
    return context


class FetchError(Exception):
    pass


async def fetch_policy_text(host: str, addresses: list[str], port: int, context: ssl.SSLContext,
                            timeout: float) -> str:
    """``GET /.well-known/mta-sts.txt`` from ``host`` (the first address that answers)."""
    last: Exception = FetchError("no address")
    for ip in addresses:
        try:
            return await asyncio.wait_for(_get(host, ip, port, context), timeout)
        except asyncio.TimeoutError:
            last = FetchError(f"{host} [{ip}]: no answer in {timeout:g} s")
        except FetchError as e:
            last = e
            if "HTTP" in str(e) or "Content-Type" in str(e) or "longer" in str(e):
                break  # the server answered: another address would say the same
        except (OSError, ssl.SSLError) as e:
            last = FetchError(f"{host} [{ip}]: {e}")
    raise last


async def _get(host: str, ip: str, port: int, context: ssl.SSLContext) -> str:
    reader, writer = await asyncio.open_connection(ip, port, ssl=context, server_hostname=host)
    try:
        authority = host if port == 443 else f"{host}:{port}"
        writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {authority}\r\n"
                     "User-Agent: Waypost\r\nAccept: text/plain\r\nConnection: close\r\n\r\n".encode("ascii"))
        await writer.drain()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(4096)
            if not chunk:
                raise FetchError(f"{host}: connection closed in the response head")
            head += chunk
            if len(head) > MAX_HEAD:
                raise FetchError(f"{host}: response head longer than {MAX_HEAD} octets")
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or not status[0].startswith("HTTP/1."):
            raise FetchError(f"{host}: not an HTTP/1.x response")
        if status[1] != "200":
            # RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed"; only 200 is a policy.
            raise FetchError(f"{host}: HTTP {' '.join(status[1:])}")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        media = fields.get("content-type", "").split(";")[0].strip().lower()
        if media != "text/plain":
            raise FetchError(f"{host}: Content-Type {media or '(none)'}, not text/plain (RFC 8461 §3.3)")
        body = bytearray(rest)
        chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        length = fields.get("content-length", "")
        if length and not chunked:
            if not length.isdigit() or int(length) > MAX_POLICY:
                raise FetchError(f"{host}: policy longer than {MAX_POLICY} octets")
            while len(body) < int(length):
                chunk = await reader.read(int(length) - len(body))
                if not chunk:
                    raise FetchError(f"{host}: connection closed in the body")
                body += chunk
            data = bytes(body[: int(length)])
        else:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                body += chunk
                if len(body) > MAX_POLICY + 1024:
                    raise FetchError(f"{host}: policy longer than {MAX_POLICY} octets")
            data = _unchunk(bytes(body)) if chunked else bytes(body)
        if len(data) > MAX_POLICY:
            raise FetchError(f"{host}: policy longer than {MAX_POLICY} octets")
        return data.decode("utf-8", "replace")
    finally:
        writer.close()


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise FetchError("bad chunked body")
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return bytes(out)


class MTASTS:
    """Policies for the domains we deliver to; one per worker (state in the database)."""

    __slots__ = ("settings", "db", "resolver", "addresses", "clock")

    def __init__(self, settings: Settings, db: Any, resolver: dns.asyncresolver.Resolver,
                 addresses: Callable[[str], Any], clock: Callable[[], float] = time.time) -> None:
        """``addresses(host)``: the delivery resolver's A/AAAA look-up (a coroutine)."""
        self.settings = settings
        self.db = db
        self.resolver = resolver
        self.addresses = addresses
        self.clock = clock

    def _key(self, domain: str) -> str:
        return f"mta-sts:{domain}"

    async def cached(self, domain: str) -> Policy | None:
        value = await asyncio.to_thread(self.db.get_mark, self._key(domain))
        if not isinstance(value, dict):
            return None
        try:
            return Policy.from_dict(value)
        except (KeyError, TypeError, ValueError):
            return None

    async def _record_id(self, domain: str) -> tuple[str | None, str]:
        """(the id, "") or (None, why not)."""
        try:
            answer = await self.resolver.resolve(f"_mta-sts.{domain}", "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None, "no _mta-sts record"
        except dns.exception.DNSException as e:
            return None, f"_mta-sts look-up failed: {e}"
        ids = []
        for r in answer:
            text = b"".join(r.strings).decode("utf-8", "replace")
            if text.startswith("v=STSv1"):
                try:
                    ids.append(parse_record(text))
                except PolicyError as e:
                    return None, f"_mta-sts record: {e}"
        if len(ids) != 1:
            # RFC 8461 §3.1: several records (or none that is STSv1) is no record.
            return None, f"{len(ids)} STSv1 records"
        return ids[0], ""

    async def policy(self, domain: str) -> Policy | None:
        """The policy that applies to delivery to ``domain`` now (None: no policy)."""
        domain = domain.rstrip(".").lower()
        now = self.clock()
        cached = await self.cached(domain)
        if cached is not None and cached.expired(now):
            cached = None
        record_id, why = await self._record_id(domain)
        if record_id is None:
            if cached is not None:
                event(log, "mta-sts-cached", level=logging.DEBUG, domain=domain, id=cached.id, reason=why)
            return cached
        if cached is not None and cached.id == record_id:
            return cached
        host = f"mta-sts.{domain}"
        s = self.settings.delivery
        try:
            addresses = await self.addresses(host)
            text = await fetch_policy_text(host, list(addresses), s.mta_sts_port, verified_context(s.tls_ca_file),
                                           s.mta_sts_timeout)
            policy = parse_policy(domain, record_id, text, now)
        except Exception as e:  # a fetch that fails never stops delivery: no policy, or the cached one
            event(log, "mta-sts-fetch-failed", level=logging.WARNING, domain=domain, id=record_id,
                  error=getattr(e, "text", None) or str(e) or type(e).__name__,
                  using="cached policy " + cached.id if cached is not None else "no policy")
            return cached
        await asyncio.to_thread(self.db.set_mark, self._key(domain), policy.to_dict())
        event(log, "mta-sts-policy", domain=domain, id=record_id, mode=policy.mode, mx=",".join(policy.mx),
              max_age=policy.max_age)
        return policy
