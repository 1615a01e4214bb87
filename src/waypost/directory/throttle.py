"""Login throttling against password guessing, shared by every protocol and worker.

Failed logins are counted in the database (``Database.login_failure_add``) under two
keys: the client address (an IPv6 client by its /64, which one attacker holds whole)
and the account the login name stands for (names that are no account count against
the client only, so that a flood of made-up names adds no rows of its own).  SMTP AUTH,
IMAP and POP3 logins in every worker (and, with PostgreSQL, every node) read and write
the same rows, so an attacker gains nothing by spreading attempts over connections,
protocols or processes.

* Up to ``free_failures`` failures: no delay.  After that, each attempt waits before its
  password is checked: ``delay`` seconds, doubled with each further failure, at most
  ``max_delay``.
* At ``block_after`` failures the key is blocked for ``block_time`` seconds: attempts are
  refused after ``max_delay`` without the password being checked.
* A count starts again ``window`` seconds after its last failure.
* A client address from which the account logged in successfully within
  ``known_client_days`` is *known*: the account's count (someone else guessing its
  password) neither slows nor blocks the real user there.  The client's own count
  still applies.

Every failed login, on every protocol, is logged in one format, which the fail2ban
filter of ``docs/fail2ban/`` reads::

    event=auth-failed proto=imap client=192.0.2.7 login=alice@example.com reason=credentials

The password is never logged.  This module keeps no state of its own.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from ..db import Database
from ..log import event

__all__ = ["LoginThrottle", "ThrottlePolicy", "Verdict", "client_key", "log_auth_failed", "peer_ip"]

log = logging.getLogger("waypost.auth")

#: A known client's last-seen time is rewritten at most this often (seconds): a mail
#: client that logs in every minute does not write to the database every minute.
_KNOWN_REFRESH = 86400.0


def log_auth_failed(proto: str, client: str | None, login: str, reason: str) -> None:
    """The one log line of a failed login (see the module docstring).  ``client`` and
    ``proto`` come first: ``login`` is the client's text (quoted when it has spaces)."""
    event(log, "auth-failed", level=logging.WARNING, proto=proto, client=client or "unknown",
          login=login[:128], reason=reason)


def peer_ip(peer: str) -> str | None:
    """The address of a ``host:port`` peer string as the listeners keep it."""
    host, sep, _ = peer.rpartition(":")
    return host.strip("[]") if sep and host else None


def client_key(client_ip: str | None) -> str | None:
    """The key a client address counts under: the address, or an IPv6 address's /64."""
    if not client_ip:
        return None
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None:
        return "client:" + str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return f"client:{addr.ipv4_mapped or addr}" if isinstance(addr, ipaddress.IPv6Address) else f"client:{addr}"


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The ``auth.*`` settings."""

    free_failures: int = 5
    delay: float = 1.0
    max_delay: float = 30.0
    block_after: int = 30
    block_time: float = 900.0
    window: float = 3600.0
    known_client_days: float = 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one login attempt before its password is checked."""

    delay: float                  # seconds to wait first
    blocked: bool                 # refuse it unchecked (after the delay)
    keys: tuple[str, ...]         # the keys a failure counts against
    client: str | None            # the client key (for the known-client record)


class LoginThrottle:
    def __init__(self, db: Database, policy: ThrottlePolicy) -> None:
        self.db = db
        self.policy = policy

    def assess(self, client_ip: str | None, account: str | None, now: float) -> Verdict:
        """Reads only.  ``account``: the address the login name stands for, or None."""
        p = self.policy
        ckey = client_key(client_ip)
        akey = f"account:{account}" if account else None
        keys = tuple(k for k in (ckey, akey) if k)
        rows = self.db.login_failures_get(keys, now - p.window)
        if akey in rows and ckey is not None and account:
            seen = self.db.login_known_get(account, ckey)
            if seen is not None and seen >= now - p.known_client_days * 86400:
                del rows[akey]  # a known client: the account's count does not apply here
        failures = max((n for n, _ in rows.values()), default=0)
        blocked = any(until > now for _, until in rows.values())
        if blocked:
            return Verdict(p.max_delay, True, keys, ckey)
        if failures < p.free_failures:
            return Verdict(0.0, False, keys, ckey)
        steps = min(failures - p.free_failures, 32)
        return Verdict(min(p.delay * (2 ** steps), p.max_delay), False, keys, ckey)

    def failed(self, verdict: Verdict, now: float) -> None:
        """Count a failure (a write: call it off the event loop)."""
        p = self.policy
        if verdict.keys:
            self.db.login_failure_add(verdict.keys, now, now - p.window, p.block_after, now + p.block_time)

    def succeeded(self, verdict: Verdict, account: str, now: float) -> None:
        """Remember the client as known for the account (a write at most once a day)."""
        if verdict.client is None:
            return
        seen = self.db.login_known_get(account, verdict.client)
        if seen is None or seen < now - _KNOWN_REFRESH:
            self.db.login_known_set(account, verdict.client, now, now - self.policy.known_client_days * 86400)
