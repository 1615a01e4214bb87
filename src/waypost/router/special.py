"""Special domains on the right side of the router table (ROUTER.md "Special domains").

Pure string functions used by the table and by the resolver: they say what a
``.via`` domain or an IP literal asks for (which host, which port, MX look-up or not)
and turn a percent-hack local part back into an envelope address.  No DNS here: the
caller looks up what a ``Via`` names.

Forms (seed 004 "Bypassing MX/SRV", "forward mail to the other SMTP MTA"):

=============================  ==============================================
``host.via``                   server ``host``, found by MX like any domain
``host.PORT.via``              ``host`` on PORT, A/AAAA only (no MX)
``1.2.3.4.PORT.via``           that IPv4 address and port
``1.2.3.4.via``                that IPv4 address, the standard port
``[1.2.3.4]``, ``[IPv6:...]``  an IP literal: that address, the standard port
=============================  ==============================================

Older spellings, accepted on import and normalised (ROUTER.md): ``._via`` (the
CommuniGate 6.x manual) and ``.smtp`` (seed 000, the 5.1 manual:
``aname%domain.dom@otherserver.dom.smtp``) both mean ``.via``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from ..address import ip_from_literal, is_ip_literal

__all__ = [
    "VIA_SUFFIX",
    "LEGACY_VIA_SUFFIXES",
    "Via",
    "normalize_via",
    "is_via",
    "is_final_domain",
    "parse_via",
    "unpercent",
]

VIA_SUFFIX = ".via"
#: Older CommuniGate spellings of ``.via``: ``._via`` (6.x) and ``.smtp`` (seed 000, 5.1).
LEGACY_VIA_SUFFIXES = ("._via", ".smtp")
#: Highest TCP port.
MAX_PORT = 65535

_PORT = re.compile(r"[0-9]{1,5}")
# RFC 1123 §2.1 / RFC 3696 §2: a host name's labels; the top-level one is never all
# digits, which is why a numeric last label before ``.via`` can only be a port.
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def normalize_via(domain: str) -> str:
    """``x._via`` and ``x.smtp`` → ``x.via`` (any case); anything else unchanged."""
    low = domain.lower()
    for old in LEGACY_VIA_SUFFIXES:
        if low.endswith(old) and len(low) > len(old):
            return domain[: -len(old)] + VIA_SUFFIX
    return domain


def is_via(domain: str) -> bool:
    """True for ``something.via`` (after normalising the older spellings)."""
    d = normalize_via(domain).lower()
    return d.endswith(VIA_SUFFIX) and len(d) > len(VIA_SUFFIX)


def is_final_domain(domain: str) -> bool:
    """A domain that ends routing (ROUTER.md: "a `.via` host, an IP literal")."""
    return is_ip_literal(domain) or is_via(domain)


@dataclass(frozen=True, slots=True)
class Via:
    """Where a special domain sends the message.

    ``host``: a host name, or an IP address without brackets when ``is_ip``.
    ``port``: the explicit port, or None for the protocol's standard port (25 for
    SMTP, 5060 for SIP).  An MX (or SRV) look-up is done only for a host name without
    an explicit port (seed 004: "The SMTP module does not look at the MX records if the
    port number of a remote host is explicitly specified").
    """

    host: str
    port: int | None = None
    is_ip: bool = False

    @property
    def mx(self) -> bool:
        """Whether the host is found by MX look-up (else A/AAAA, or it is an address)."""
        return not self.is_ip and self.port is None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host


def _ipv4(text: str) -> str | None:
    if not (text[:1].isdigit() and text[-1:].isdigit()):
        return None  # no dotted quad (an exception from ipaddress costs more than the rest)
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def parse_via(domain: str) -> Via | None:
    """What a ``.via`` domain or an IP literal asks for; None if it is neither, or is
    malformed (a bad port, a bad host name, a numeric "host" that is no IPv4 address).

    ``friend.com.via`` → Via("friend.com") (MX);
    ``relay.domain.25.via`` → Via("relay.domain", 25);
    ``127.0.0.1.26.via`` → Via("127.0.0.1", 26, is_ip=True);
    ``[11.22.33.44]`` → Via("11.22.33.44", None, is_ip=True).

    Remembered per process (bounded): a pure function of its text, asked at every
    resolution through a ``.via`` record.
    """
    d = normalize_via(domain.strip()).lower()
    if is_ip_literal(d):
        try:
            return Via(ip_from_literal(d), None, True)
        except ValueError:
            return None
    if not d.endswith(VIA_SUFFIX):
        return None
    rest = d[: -len(VIA_SUFFIX)]
    if not rest:
        return None
    ip = _ipv4(rest)
    if ip is not None:  # 1.2.3.4.via: the whole is an address (1.2.3 is no host)
        return Via(ip, None, True)
    host, port = rest, None
    head, dot, last = rest.rpartition(".")
    if _PORT.fullmatch(last):
        if not dot:
            return None  # "25.via": a port without a host
        port = int(last)
        if not 1 <= port <= MAX_PORT:
            return None
        host = head
        ip = _ipv4(host)
        if ip is not None:
            return Via(ip, port, True)
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    return Via(host, port, False)


def unpercent(local: str) -> tuple[str, str] | None:
    """``name%dom`` → ``("name", "dom")``: the last ``%`` turns into ``@`` (seed 004:
    "The resulting envelope address (aname%domain.dom) is converted to the standard form
    (aname@domain.dom)"; seed 001 uses the same form for logins, ``info%client2.com``).

    None when there is no ``%`` or one side of it is empty.  The domain is returned as
    written: the caller normalises it.
    """
    name, pct, dom = local.rpartition("%")
    if not pct or not name or not dom:
        return None
    return name, dom
