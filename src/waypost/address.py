"""E-mail addresses: splitting, normalising and checking (RFC 5321 §4.1.2, RFC 6531).

Pure functions used by every layer.  The domain part is compared in lower case, ASCII
form without a trailing dot (IDNA 2008 with the UTS #46 mapping, by the ``idna``
package); the local part keeps its spelling, and directory names are compared in lower
case.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

__all__ = [
    "Address",
    "AddressError",
    "normalize_domain",
    "parse_address",
    "is_ip_literal",
    "ip_from_literal",
]

# RFC 5321 §4.5.3.1.1-2: local part 64 octets, domain 255 octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255

# RFC 5321 §4.1.2:  Dot-string = Atom *("."  Atom);  Atom = 1*atext
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_STRING = re.compile(rf"^{_ATEXT}+(\.{_ATEXT}+)*$")
# Quoted-string = DQUOTE *QcontentSMTP DQUOTE
_QUOTED = re.compile(r'^"([\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"$')
# sub-domain = Let-dig [Ldh-str]
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# A whole domain of such labels, lower case, in one match.
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z")
# normalize_domain's answers: a pure function of its text, asked again and again for
# the same few domains (every RCPT, every look-up); bounded, and emptied when full.
_NORMALIZED: dict[str, str] = {}
_NORMALIZED_MAX = 65536


class AddressError(ValueError):
    """Not a valid address; the message says why."""


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str  # normalised; "" for an address without a domain

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def local_key(self) -> str:
        """The local part as the directory compares it: unquoted, lower case."""
        local = self.local
        if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
            local = re.sub(r"\\(.)", r"\1", local[1:-1])
        return local.lower()


def is_ip_literal(domain: str) -> bool:
    return domain.startswith("[") and domain.endswith("]")


def ip_from_literal(domain: str) -> str:
    """``[1.2.3.4]`` → ``1.2.3.4``; ``[IPv6:::1]`` → ``::1`` (RFC 5321 §4.1.3)."""
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
        return str(ipaddress.IPv6Address(inner))
    return str(ipaddress.IPv4Address(inner))


def normalize_domain(domain: str) -> str:
    """Lower case, IDNA (punycode) labels, no trailing dot; raises AddressError."""
    done = _NORMALIZED.get(domain)
    if done is not None:
        return done
    d = _normalize_domain(domain)
    if len(_NORMALIZED) >= _NORMALIZED_MAX:
        _NORMALIZED.clear()
    _NORMALIZED[domain] = d
    return d


def _normalize_domain(domain: str) -> str:
    d = domain.strip()
    if d.endswith("."):
        d = d[:-1]
    if not d:
        raise AddressError("empty domain")
    if is_ip_literal(d):
        try:
            ip = ip_from_literal(d)
        except ValueError:
            raise AddressError(f"bad address literal {domain!r}") from None
        return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    if not d.isascii():
        # IDNA 2008 (RFC 5891) with the UTS #46 mapping (case, width, the ideographic
        # full stop), non-transitional: "faß.de" is xn--fa-hia.de.  Python's own "idna"
        # codec is IDNA 2003, which maps it to fass.de: another domain.
        try:
            d = idna.encode(d, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise AddressError(f"bad international domain {domain!r}") from None
    d = d.lower()
    if len(d) > MAX_DOMAIN:
        raise AddressError("domain longer than 255 octets")
    if not _DOMAIN.match(d):
        raise AddressError(f"bad domain {domain!r}")
    return d


def parse_address(text: str, *, allow_no_domain: bool = False) -> Address:
    """Split ``local@domain`` at the last ``@`` and check both parts."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not text:
        raise AddressError("empty address")
    local, at, domain = text.rpartition("@")
    if not at:
        if not allow_no_domain:
            raise AddressError(f"{text!r} has no domain")
        local, domain = text, ""
    if not local:
        raise AddressError("empty local part")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError("local part longer than 64 octets")
    if not (_DOT_STRING.match(local) or _QUOTED.match(local)):
        raise AddressError(f"bad local part {local!r}")
    return Address(local, normalize_domain(domain) if domain else "")
