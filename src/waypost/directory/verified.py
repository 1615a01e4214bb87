"""Recently verified logins, so that a phone or a sync tool that logs in every minute does
not cost a full argon2id check each time (issue 14, "Logins").

What is kept, per worker and in memory only, is an HMAC under a random key made when the
object is created (never stored, never logged) of the account's identity, its *stored
password hash* and the presented password, with the time until which it counts as
verified.  Nothing in the cache gives a password or a hash back, and a dump of a worker's
memory holds digests under a key that a wrong guess cannot test without the worker.

Why this never outlives what it describes, in any process (STYLE.md point 13): the
stored hash is part of the key, and argon2 hashes are salted, so a password change made
anywhere (the CLI, the web admin, another worker or node) makes a new hash and every
digest made with the old one misses, in every worker, as soon as the directory shows the
new record.  Each login looks the account up afresh (``Database.get_object``, whose
in-process copy is dropped by the shared change token, ``waypost.db-changes``, at any
directory write), so that is at once.  A disabled or deleted account is refused before
the cache is asked.

Only successes are remembered; a wrong password misses and gets the full check (and is
counted by the login throttle like any other failure).  The cache is asked only for an
attempt the throttle let through: a hit never lifts a delay or a block.

Bounded: at most ``size`` entries (the least recently used goes first), each for at most
``ttl`` seconds from its full verification (a hit does not extend it).  ``size`` or
``ttl`` 0 turns it off.  Not thread-safe: used from one worker's event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from typing import Callable

from ..db import ObjectRecord

__all__ = ["VerifiedLogins"]


def _part(text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    return len(data).to_bytes(4, "big") + data  # length-prefixed: no two tuples read alike


class VerifiedLogins:
    """Successful password checks remembered for ``ttl`` seconds (``auth.verified_cache_*``)."""

    __slots__ = ("size", "ttl", "_clock", "_key", "_entries")

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, account: ObjectRecord, password: str) -> bytes | None:
        """None for what can never log in (not an account, no password, disabled)."""
        stored = account.data.get("password")
        if account.kind != "account" or not stored or not account.data.get("enabled", True) or not password:
            return None
        msg = _part(account.domain) + _part(account.name) + _part(stored) + _part(password)
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def known(self, account: ObjectRecord, password: str) -> bool:
        """Whether this password was verified for this account, with its present stored
        hash, less than ``ttl`` seconds ago."""
        if not self.enabled:
            return False
        digest = self._digest(account, password)
        if digest is None:
            return False
        until = self._entries.get(digest)
        if until is None:
            return False
        if until <= self._clock():
            del self._entries[digest]
            return False
        self._entries.move_to_end(digest)
        return True

    def remember(self, account: ObjectRecord, password: str) -> None:
        """Record a successful full check (call it only after one)."""
        if not self.enabled:
            return
        digest = self._digest(account, password)
        if digest is None:
            return
        self._entries[digest] = self._clock() + self.ttl
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
