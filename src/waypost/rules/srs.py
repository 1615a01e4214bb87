"""The Sender Rewriting Scheme, for forwarded mail (the "SRS0" form of libsrs2/Postfix).

A message forwarded to another domain leaves with ``SRS0=HHHH=TT=domain=local@ours`` as
its envelope sender, so the destination's SPF check sees our domain; a bounce to that
address comes back to us, is checked (hash and age) and goes on to the original sender.

    SRS0=HHHH=TT=domain=local@forwarder
    HHHH = first 4 characters of base64(HMAC-SHA1(key, TT domain local))  (case-insensitive check)
    TT   = day number (days since the epoch, mod 1024) in two base32 characters
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ["SRS", "MAX_AGE_DAYS"]

MAX_AGE_DAYS = 21
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class SRS:
    def __init__(self, key: bytes, domain: str) -> None:
        self.key = key
        self.domain = domain

    def _hash(self, stamp: str, domain: str, local: str) -> str:
        mac = hmac.new(self.key, f"{stamp}{domain}{local}".lower().encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(mac).decode("ascii")[:4]

    @staticmethod
    def _stamp(day: int) -> str:
        day %= 1024
        return _B32[day >> 5] + _B32[day & 31]

    def forward(self, sender: str, now: float | None = None) -> str:
        """The envelope sender for a forwarded copy of mail from ``sender``."""
        if not sender or "@" not in sender or sender.upper().startswith("SRS0="):
            return sender
        local, _, domain = sender.rpartition("@")
        stamp = self._stamp(int((now or time.time()) // 86400))
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{self.domain}"

    def reverse(self, local: str, now: float | None = None) -> str | None:
        """The original sender for an SRS0 local part we made (and still honour), else None."""
        if not local.upper().startswith("SRS0="):
            return None
        parts = local[5:].split("=", 3)
        if len(parts) != 4:
            return None
        mac, stamp, domain, orig = parts
        if not hmac.compare_digest(mac.lower(), self._hash(stamp.upper(), domain, orig).lower()):
            return None
        if len(stamp) != 2 or any(c not in _B32 for c in stamp.upper()):
            return None
        day = (_B32.index(stamp[0].upper()) << 5) | _B32.index(stamp[1].upper())
        today = int((now or time.time()) // 86400) % 1024
        if (today - day) % 1024 > MAX_AGE_DAYS:
            return None
        return f"{orig}@{domain}"
