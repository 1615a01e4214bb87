"""Quotas: how much an account's mailboxes may hold (RFC 9208 resources STORAGE and
MESSAGE).

Limits: the account's own (``quota_storage`` / ``quota_messages`` in its directory
record; ``"unlimited"`` overrides the domain's), else its domain's default (the same
keys in the domain's settings), else none.  A limit of 0 is a limit: nothing more may
be stored.  Usage comes from the
database (``Database.quota_usage``), which keeps it exact in every worker; nothing
here counts or caches it.

A message is refused when storing it would take the account past a limit; an account
is "over" (RCPT refused with ``452 4.2.2``) when it is at or past a limit already.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from ..db import Database

__all__ = ["STORAGE_KEY", "MESSAGES_KEY", "UNLIMITED", "OverQuota", "Quota", "limits_of", "quota_of"]

STORAGE_KEY = "quota_storage"
MESSAGES_KEY = "quota_messages"
UNLIMITED = "unlimited"


class OverQuota(OSError):
    """Storing would exceed the account's quota (EDQUOT, as a file system says it)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EDQUOT, message)


@dataclass(frozen=True, slots=True)
class Quota:
    """An account's limits (None: unlimited) and usage, read together."""

    domain: str
    account: str
    storage_limit: int | None
    message_limit: int | None
    storage: int
    messages: int

    @property
    def limited(self) -> bool:
        return self.storage_limit is not None or self.message_limit is not None

    def room_for(self, octets: int, count: int = 1) -> bool:
        """Whether ``count`` more messages of ``octets`` in all fit."""
        if self.storage_limit is not None and self.storage + octets > self.storage_limit:
            return False
        if self.message_limit is not None and self.messages + count > self.message_limit:
            return False
        return True

    @property
    def full(self) -> bool:
        """At or past a limit: not even an empty message fits."""
        return ((self.storage_limit is not None and self.storage >= self.storage_limit)
                or (self.message_limit is not None and self.messages >= self.message_limit))

    def percent(self) -> int:
        """The larger of the two usages in percent of their limits (0 when unlimited)."""
        out = 0
        if self.storage_limit is not None:
            out = max(out, 100 if self.storage_limit == 0 else self.storage * 100 // self.storage_limit)
        if self.message_limit is not None:
            out = max(out, 100 if self.message_limit == 0 else self.messages * 100 // self.message_limit)
        return out

    def refuse(self, octets: int, count: int = 1) -> None:
        """Raise OverQuota unless ``count`` messages of ``octets`` fit."""
        if not self.room_for(octets, count):
            raise OverQuota(f"{self.account}@{self.domain} is over quota")


def _limit(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def limits_of(db: Database, domain: str, account: str) -> tuple[int | None, int | None]:
    """(storage, messages) limits of an account: its own, else its domain's."""
    obj = db.get_object(domain, account)
    own = obj.data if obj is not None else {}
    dom = db.get_domain(domain)
    shared = dom.settings if dom is not None else {}
    out: list[int | None] = []
    for key in (STORAGE_KEY, MESSAGES_KEY):
        if own.get(key) == UNLIMITED:
            out.append(None)
            continue
        value = _limit(own.get(key))
        out.append(value if value is not None else _limit(shared.get(key)))
    return out[0], out[1]


def quota_of(db: Database, domain: str, account: str, usage: bool = False) -> Quota:
    """The account's quota; its usage is read only when it has a limit, or ``usage``."""
    storage_limit, message_limit = limits_of(db, domain, account)
    storage, messages = (db.quota_usage(domain, account) if usage or (storage_limit, message_limit) != (None, None)
                         else (0, 0))
    return Quota(domain, account, storage_limit, message_limit, storage, messages)
