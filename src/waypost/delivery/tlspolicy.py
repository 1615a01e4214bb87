"""Which TLS a remote delivery must have: ``delivery.tls_policy`` for the destination,
else the receiving domain's MTA-STS policy (RFC 8461), else opportunistic TLS.

The order is the administrator's first (an override is how a broken peer is dealt
with), then the domain's published wish.  DANE (RFC 7672) slots in before MTA-STS
where the resolver gives validated TLSA records (RFC 8461 §2: DANE wins when both
exist).
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .dane import DANE, trusted_resolver
from .mtasts import MTASTS
from .remote import Destination, TLSPolicy, TLSReport, async_resolver

__all__ = ["TLSPolicies", "override_for"]


def override_for(settings: Settings, name: str) -> str | None:
    """The ``delivery.tls_policy`` level for a domain or host name: an exact entry, else
    the longest ``.parent`` entry that covers it."""
    name = name.rstrip(".").lower()
    best: tuple[int, str] | None = None
    for entry in settings.delivery.tls_policy:
        key, _eq, level = entry.partition("=")
        key, level = key.strip().rstrip(".").lower(), level.strip()
        if key == name:
            return level
        if key.startswith(".") and (name.endswith(key) or name == key[1:]):
            if best is None or len(key) > best[0]:
                best = (len(key), level)
    return best[1] if best else None


class TLSPolicies:
    """One per worker: the TLS policy of each delivery."""

    __slots__ = ("settings", "mta_sts", "ca_file", "dane")

    def __init__(self, settings: Settings, db: Any, resolver: Any) -> None:
        """``resolver``: the delivery ``Resolver`` (its look-ups and dnspython resolver)."""
        self.settings = settings
        self.ca_file = str(settings.path(settings.delivery.tls_ca_file)) if settings.delivery.tls_ca_file else ""
        self.mta_sts = MTASTS(settings, db, resolver.dnspython, resolver.addresses) if settings.delivery.mta_sts else None
        # DANE only with a validating resolver on this host that we were told to trust.
        self.dane = (DANE(async_resolver(settings)) if settings.delivery.dane and trusted_resolver(settings)
                     else None)

    async def policy_for(self, destination: Destination, report: TLSReport | None = None) -> TLSPolicy:
        level = override_for(self.settings, destination.name) if destination.kind != "ip" else None
        if level is not None:
            return TLSPolicy(level=level, source=f"delivery.tls_policy {level}", ca_file=self.ca_file, report=report)
        dane = self.dane.records if self.dane is not None else None
        if destination.kind == "mx" and self.mta_sts is not None:
            policy = await self.mta_sts.policy(destination.name)
            if policy is not None and policy.mode == "enforce":
                return TLSPolicy(level="verify", mx=policy.matches, source="MTA-STS", ca_file=self.ca_file,
                                 report=report, dane_lookup=dane, policy_text=policy.text)
            if policy is not None and policy.mode == "testing":
                return TLSPolicy(level="verify", testing=True, source="MTA-STS testing", ca_file=self.ca_file,
                                 report=report, dane_lookup=dane, policy_text=policy.text)
        return TLSPolicy(level="may" if self.settings.delivery.starttls else "none", ca_file=self.ca_file,
                         report=report, dane_lookup=dane)
