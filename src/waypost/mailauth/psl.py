"""Organisational domains (RFC 7489 §3.2) from the Public Suffix List.

The list is the snapshot shipped inside the ``publicsuffixlist`` package (updated with
each of its releases): nothing is fetched at run time.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList

__all__ = ["organizational_domain"]


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


@lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a name that is itself a
    public suffix (or unknown to the list with one label) is its own."""
    name = domain.rstrip(".").lower()
    org = _psl().privatesuffix(name)
    return org if org else name
