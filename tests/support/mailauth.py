"""Helpers of the mail authentication tests: a message, DKIM keys in the database with
their records in the test DNS server."""

from __future__ import annotations

import time

from waypost.db import DKIMKeyRecord
from waypost.mailauth import generate_key
from waypost.mailauth.keys import dns_name, dns_record

__all__ = ["MESSAGE", "add_key", "txt_strings"]

MESSAGE = (b"From: Alice <alice@example.test>\r\n"
           b"To: bob@example.net\r\n"
           b"Subject: hello\r\n"
           b"Date: Fri, 04 Dec 2026 20:00:00 +0000\r\n"
           b"Message-ID: <1@example.test>\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n"
           b"Received: from somewhere by here; Fri, 04 Dec 2026 20:00:00 +0000\r\n"
           b"\r\n"
           b"Hello there.\r\n"
           b"A second line.  With  spaces.   \r\n")


def txt_strings(value: str) -> list[str]:
    """A TXT value as character-strings of at most 255 octets (RFC 6376 §3.6.2.2)."""
    return [value[i:i + 255] for i in range(0, len(value), 255)]


def add_key(db, secrets, dns, domain: str, selector: str, algorithm: str = "rsa", active: bool = True,
            publish: bool = True) -> DKIMKeyRecord:
    material = generate_key(algorithm)
    now = time.time()
    key = DKIMKeyRecord(domain, selector, algorithm, secrets.seal(material.private), material.public, now,
                        now if active else 0.0)
    db.dkim_key_add(key)
    if publish:
        dns.set(dns_name(domain, selector), "TXT", [txt_strings(dns_record(algorithm, material.public))])
    return key
