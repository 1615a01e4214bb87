"""DANE for SMTP (RFC 7672): TLSA records, validated by DNSSEC, that say which
certificate an MX host must present.

Theory of operation.  Waypost does not validate DNSSEC itself: it trusts the AD
(authenticated data) bit of a validating resolver running on this host (unbound,
``dns.nameservers`` on 127.0.0.1 or ::1), and only when ``dns.trust_ad`` says so (the
settings refuse it for a resolver elsewhere: the bit could be forged on the way).

For an MX destination whose MX answer is authenticated (RFC 7672 §2.2.1: an insecure
MX RRset means no DANE), each MX host's ``_<port>._tcp.<host>`` TLSA RRset is asked
for (§2.2.2 for a host destination: the host itself).  An authenticated RRset with
usable records (usage DANE-TA(2) or DANE-EE(3), selector 0 or 1, matching 0, 1 or 2;
§3.1) makes that host "DANE": STARTTLS is required and the certificate must match
(§3.1.1 DANE-EE: the leaf certificate or key, no name or date checked; §3.1.2
DANE-TA: a certificate of the chain the server sent, the leaf issued under it, valid
now, and naming the MX host).  A TLSA look-up that fails (not NXDOMAIN/NODATA) for a
host of a secure MX set makes the host unusable for now (§2.2: it may be an attack).
Hosts without TLSA records go on as without DANE.  DANE comes before MTA-STS for the
hosts it covers (RFC 8461 §2).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.resolver
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..config import Settings, parse_hostport

__all__ = ["DANE", "TLSARecord", "check_chain", "trusted_resolver"]

USAGES = (2, 3)          # DANE-TA, DANE-EE (RFC 7672 §3.1: PKIX-TA and PKIX-EE are not used for SMTP)
SELECTORS = (0, 1)       # full certificate, SubjectPublicKeyInfo
MATCHING = (0, 1, 2)     # exact, SHA2-256, SHA2-512


class TLSARecord(NamedTuple):
    usage: int
    selector: int
    mtype: int
    data: bytes


def trusted_resolver(settings: Settings) -> bool:
    """``dns.trust_ad`` is on and every name server is this host (config.py checks it too)."""
    if not settings.dns.trust_ad or not settings.dns.nameservers:
        return False
    for ns in settings.dns.nameservers:
        try:
            if not ipaddress.ip_address(parse_hostport(ns, default_port=53)[0]).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _selected(cert: x509.Certificate, selector: int) -> bytes:
    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(record: TLSARecord, cert: x509.Certificate) -> bool:
    data = _selected(cert, record.selector)
    if record.mtype == 1:
        data = hashlib.sha256(data).digest()
    elif record.mtype == 2:
        data = hashlib.sha512(data).digest()
    return data == record.data


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [n.lower().rstrip(".") for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                if isinstance(a.value, str)]


def _names_host(cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    for name in _names(cert):
        for host in hosts:
            host = host.lower().rstrip(".")
            if name == host or (name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]):
                return True
    return False


def check_chain(records: Sequence[TLSARecord], chain_der: Sequence[bytes], hosts: Sequence[str],
                now: datetime | None = None) -> tuple[str, str] | None:
    """None when the chain the server sent satisfies one of ``records``; else (RFC
    8460 result type, reason).  ``hosts``: the names the leaf may carry (DANE-TA)."""
    if not records:
        return "tlsa-invalid", "no usable TLSA record (or its look-up failed)"
    if not chain_der:
        return "validation-failure", "the server sent no certificate"
    try:
        chain = [x509.load_der_x509_certificate(c) for c in chain_der]
    except ValueError as e:
        return "validation-failure", f"a certificate does not parse: {e}"
    leaf = chain[0]
    for r in records:
        if r.usage == 3 and _matches(r, leaf):
            return None  # RFC 7672 §3.1.1: DANE-EE, no name or validity checks
    now = now or datetime.now(timezone.utc)
    for r in records:
        if r.usage != 2:
            continue
        for depth, ta in enumerate(chain):
            if depth == 0 or not _matches(r, ta):
                continue
            # The leaf must be issued under this trust anchor through the chain sent.
            try:
                for i in range(depth):
                    chain[i].verify_directly_issued_by(chain[i + 1])
            except (ValueError, TypeError, Exception) as e:  # InvalidSignature and friends
                return "validation-failure", f"the chain does not lead to the DANE-TA certificate: {e!r}"
            if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
                return "certificate-expired", "the leaf certificate is not valid now (DANE-TA)"
            if not _names_host(leaf, hosts):
                return "certificate-host-mismatch", f"the certificate names none of {', '.join(hosts)} (DANE-TA)"
            return None
    return "validation-failure", "no certificate matches the TLSA records"


class DANE:
    """TLSA look-ups through the validating resolver; one per worker."""

    __slots__ = ("resolver",)

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        # RFC 6840 §5.7: ask for the AD bit (a validating resolver sets it then).
        self.resolver.flags = dns.flags.RD | dns.flags.AD

    async def _secure(self, name: str, rdtype: str) -> tuple[Any, bool]:
        """(the answer or None for NXDOMAIN/NODATA, authenticated); DNSException up."""
        try:
            answer = await self.resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as e:
            response = e.response(e.qnames()[0]) if e.qnames() else None
            return None, bool(response is not None and response.flags & dns.flags.AD)
        ad = bool(answer.response.flags & dns.flags.AD)
        return (answer if answer.rrset is not None else None), ad

    async def records(self, kind: str, name: str, hosts: Sequence[tuple[str, int]]) -> dict[str, list[TLSARecord]]:
        """The DANE hosts of a delivery: host → usable TLSA records ([] = the look-up
        failed: the host may not be used now).  Hosts not in the result have no DANE."""
        if kind == "mx":
            try:
                mx, secure = await self._secure(name, "MX")
            except dns.exception.DNSException:
                return {}
            if mx is not None and not secure:
                return {}  # RFC 7672 §2.2.1: an insecure MX RRset: no DANE
        out: dict[str, list[TLSARecord]] = {}
        for host, port in dict.fromkeys(hosts):
            if host in out:
                continue
            try:
                answer, secure = await self._secure(f"_{port}._tcp.{host}", "TLSA")
            except dns.exception.DNSException:
                out[host] = []  # §2.2: a failed look-up is not "no records"
                continue
            if answer is None or not secure:
                continue
            usable = [TLSARecord(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in answer
                      if r.usage in USAGES and r.selector in SELECTORS and r.mtype in MATCHING]
            # §3.1: an RRset with no usable record is as if there were none ("unusable").
            if usable:
                out[host] = usable
        return out
