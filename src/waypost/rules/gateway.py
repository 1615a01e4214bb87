"""Gateway forwarding rules (PMailServer2's "mail forwarding / SMTP gateway", seed 003).

An ordered table; the first rule whose match applies to a recipient decides where the
message goes.  One rule a line, ``#`` comments::

    MATCH  DESTINATION  [rewrite=DOMAIN]

* MATCH: a whole address (``user1@example.jp``), a domain (``@example.jp``), or ``*``
  (every recipient).  Seed 003: "the rules are judged from the top", so a ``*`` first
  shadows every rule after it (setting B's warning).
* DESTINATION: a host name or an IP address, either with ``:PORT`` (default: the
  standard SMTP port, ``delivery.smtp_port``), or ``MTA`` — deliver normally.  A host
  name is looked up by A/AAAA only: the rule names the server to connect to.
* ``rewrite=DOMAIN``: our reading of the seed's 変換ホスト名 ("converted host name"):
  the recipient's domain is replaced on the way (mail for ``user@mail2.example.jp``
  handed to server B as ``user@example.jp``).

Pure: parsing and matching only.  The router applies the rules; delivery does the AUTH.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from ..address import AddressError, normalize_domain, parse_address
from ..config import parse_hostport
from ..db import VersionedText

__all__ = ["GatewayRule", "GatewayError", "GatewayTable", "parse_gateway", "RULES_KEY", "CREDENTIALS_KEY"]

#: The table text, in the database.
RULES_KEY = "gateway.rules"
#: Next-hop SMTP AUTH credentials: {"*": {...}, "sender@domain": {...}} (passwords sealed).
CREDENTIALS_KEY = "gateway.credentials"

_OPTION = re.compile(r"^rewrite=(.+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GatewayError:
    line_no: int
    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class GatewayRule:
    line_no: int
    match: str                 # "user@domain", "@domain" or "*"
    host: str                  # "" for MTA
    port: int | None = None
    rewrite: str = ""

    @property
    def mta(self) -> bool:
        return not self.host

    def applies(self, address: str) -> bool:
        a = address.lower()
        if self.match == "*":
            return True
        if self.match.startswith("@"):
            return a.rpartition("@")[2] == self.match[1:]
        return a == self.match

    def envelope(self, address: str) -> str:
        """The recipient as handed to the destination (rewritten domain, if any)."""
        if not self.rewrite:
            return address
        return f"{address.rpartition('@')[0]}@{self.rewrite}"

    def __str__(self) -> str:
        dest = "MTA" if self.mta else (f"{self.host}:{self.port}" if self.port else self.host)
        return f"{self.match} {dest}" + (f" rewrite={self.rewrite}" if self.rewrite else "")


def _rule(line_no: int, text: str) -> GatewayRule:
    words = text.split()
    if len(words) < 2 or len(words) > 3:
        raise ValueError("expected: MATCH DESTINATION [rewrite=DOMAIN]")
    match, dest = words[0], words[1]
    if match != "*":
        try:
            if match.startswith("@"):
                match = "@" + normalize_domain(match[1:])
            else:
                match = str(parse_address(match)).lower()
        except AddressError as e:
            raise ValueError(f"match {words[0]!r}: {e}") from None
    host, port = "", None
    if dest.upper() != "MTA":
        try:
            host, port_ = parse_hostport(dest, default_port=0)
        except ValueError as e:
            raise ValueError(f"destination: {e}") from None
        port = port_ or None
        try:
            host = str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            try:
                host = normalize_domain(host)
            except AddressError as e:
                raise ValueError(f"destination {dest!r}: {e}") from None
    rewrite = ""
    if len(words) == 3:
        m = _OPTION.match(words[2])
        if not m:
            raise ValueError(f"unknown option {words[2]!r} (expected rewrite=DOMAIN)")
        if not host:
            raise ValueError("rewrite= needs a destination host, not MTA")
        try:
            rewrite = normalize_domain(m.group(1))
        except AddressError as e:
            raise ValueError(f"rewrite: {e}") from None
    return GatewayRule(line_no, match, host, port, rewrite)


def parse_gateway(text: str) -> tuple[list[GatewayRule], list[GatewayError]]:
    """Every rule, and an error for every bad line (one bad line hides no other)."""
    rules: list[GatewayRule] = []
    errors: list[GatewayError] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        try:
            rules.append(_rule(n, line))
        except ValueError as e:
            errors.append(GatewayError(n, raw, str(e)))
    return rules, errors


class GatewayTable:
    """The rules in order; ``first`` is the rule that decides (seed 003: first match wins)."""

    def __init__(self, rules: list[GatewayRule]) -> None:
        self.rules = rules

    @classmethod
    def from_text(cls, text: str) -> "GatewayTable":
        rules, _ = parse_gateway(text)
        return cls(rules)

    def first(self, address: str) -> GatewayRule | None:
        for rule in self.rules:
            if rule.applies(address):
                return rule
        return None


def gateway_store(db: Any) -> VersionedText[GatewayTable]:
    """The table as stored; a running server uses a new one at once."""
    return VersionedText(db, RULES_KEY, GatewayTable.from_text)


def store_rules(db: Any, text: str) -> tuple[int, list[GatewayError]]:
    """Validate the whole text; only if every line is good, make it the table."""
    rules, errors = parse_gateway(text)
    if errors:
        return 0, errors
    gateway_store(db).put(text)
    return len(rules), []


def set_credentials(db: Any, secrets: Any, who: str, user: str, password: str) -> None:
    """Next-hop AUTH credentials: ``who`` is "*" (the common account, used for every
    forward) or a local sender address (that user's own upstream account)."""
    creds = dict(db.get_value(CREDENTIALS_KEY) or {})
    creds[who.lower()] = {"user": user, "password": secrets.seal(password)}
    db.set_value(CREDENTIALS_KEY, creds)


def remove_credentials(db: Any, who: str) -> bool:
    creds = dict(db.get_value(CREDENTIALS_KEY) or {})
    found = creds.pop(who.lower(), None) is not None
    db.set_value(CREDENTIALS_KEY, creds)
    return found


def credentials_for(db: Any, secrets: Any, account: str) -> tuple[str, str] | None:
    """The upstream account of the local account that authenticated and sent the message
    (seed 003), else the common one; ``account`` "" means not authenticated."""
    creds = db.get_value(CREDENTIALS_KEY) or {}
    entry = (creds.get(account.lower()) if account else None) or creds.get("*")
    if not entry:
        return None
    return entry["user"], secrets.open(entry["password"])
