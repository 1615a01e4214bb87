"""Organisational domains (RFC 7489 §3.2) from the Public Suffix List.

The list is the snapshot shipped inside the ``publicsuffixlist`` package (updated with
each of its releases): nothing is fetched at run time.  Reading it costs about 0.3 s
of CPU and 1.4 MiB, once per process: ``load`` does it at start-up (``waypost serve``,
before the workers fork, when the inbound checks are on), not in the first message's
DMARC check.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList

__all__ = ["load", "organizational_domain"]


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def load() -> None:
    """Read the list now (the first look-up would)."""
    _psl()


@lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a name that is itself a
    public suffix (or unknown to the list with one label) is its own."""
    name = domain.rstrip(".").lower()
    org = _psl().privatesuffix(name)
    return org if org else name
