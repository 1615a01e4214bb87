"""DNS look-ups for the verdict engine, through dnspython with ``dns.nameservers``.

Answers are told apart the way RFC 7208 §2.6 and RFC 7489 §6.6.3 need: records,
"void" (NXDOMAIN or no record of that type: ``[]``, with ``nxdomain`` saying which),
or a temporary failure (time-out, SERVFAIL, REFUSED: ``DNSTempError``).  Every query is
counted, so a check can say what it cost.
"""

from __future__ import annotations

import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from ..config import Settings
from ..delivery.remote import async_resolver

__all__ = ["Lookup", "DNSTempError", "DNSAnswer"]


class DNSTempError(Exception):
    """A look-up that may work later: a time-out or a server failure."""


class DNSAnswer(list[str]):
    """Records as text (TXT: the character-strings joined); empty = void."""

    nxdomain: bool = False


class Lookup:
    """One resolver for a whole check; ``queries`` counts what it asked."""

    __slots__ = ("resolver", "queries")

    def __init__(self, settings: Settings, timeout: float | None = None) -> None:
        self.resolver = async_resolver(settings, timeout)  # the delivery agent's, same settings
        self.queries = 0

    async def query(self, name: str, rdtype: str) -> DNSAnswer:
        self.queries += 1
        out = DNSAnswer()
        try:
            # Label by label, not from_text(): an SPF macro may leave any visible
            # character (and spaces) in a label, which a zone may well hold.
            qname = dns.name.Name([label.encode("utf-8") for label in name.rstrip(".").split(".")] + [b""])
        except (dns.exception.DNSException, ValueError):
            out.nxdomain = True  # a name that cannot exist (label too long, empty label)
            return out
        try:
            answer = await self.resolver.resolve(qname, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            out.nxdomain = True
            return out
        except dns.resolver.NoAnswer:
            return out
        except dns.exception.Timeout as e:
            raise DNSTempError(f"{name} {rdtype}: time-out ({e})") from None
        except dns.resolver.NoNameservers as e:
            raise DNSTempError(f"{name} {rdtype}: no server answered ({e})") from None
        except dns.exception.DNSException as e:
            raise DNSTempError(f"{name} {rdtype}: {e}") from None
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
