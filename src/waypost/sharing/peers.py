"""Domain-sharing peers: the list, kept in the database (secrets sealed), and the
directory's answer our Minger server gives about a mailbox.

A peer is another server hosting the same domain(s) for other users (seed 002): where
its SMTP server is, where its Minger server is, the secret to ask it with, and which of
our domains it shares (empty: every local domain).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..address import AddressError, normalize_domain
from ..db import Database
from ..secrets import Secrets
from .client import Peer, query_many
from .proto import Code

__all__ = ["CACHE_KEY", "PEERS_KEY", "SharingPeer", "ask_peers", "remember", "load_peers", "save_peers", "directory_code"]

#: Where the peers are kept, and the positive answers remembered ({address: {peer, expires}}).
PEERS_KEY = "sharing.peers"
CACHE_KEY = "sharing.cache"


@dataclass(slots=True)
class SharingPeer:
    host: str
    smtp_port: int = 25
    minger_port: int = 4069
    secret: str = ""  # sealed in the database; clear in memory
    domains: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)  # how its connections are recognised

    def minger(self) -> Peer:
        return Peer(self.host, self.minger_port, self.secret or None)

    def shares(self, domain: str) -> bool:
        return not self.domains or domain in self.domains

    @property
    def name(self) -> str:
        return f"{self.host}:{self.smtp_port}"


def load_peers(db: Database, secrets: Secrets) -> list[SharingPeer]:
    out = []
    for raw in db.get_value(PEERS_KEY) or []:
        secret = secrets.open(raw["secret"]) if raw.get("secret") else ""
        out.append(SharingPeer(raw["host"], int(raw["smtp_port"]), int(raw["minger_port"]), secret,
                               list(raw.get("domains", [])), list(raw.get("addresses", []))))
    return out


def save_peers(db: Database, secrets: Secrets, peers: list[SharingPeer]) -> None:
    rows: list[dict[str, Any]] = []
    for p in peers:
        row = asdict(p)
        row["secret"] = secrets.seal(p.secret) if p.secret else ""
        rows.append(row)
    db.set_value(PEERS_KEY, rows)


async def ask_peers(db: Database, secrets: Secrets, address: str, timeout: float,
                    cache_ttl: float) -> dict[str, int | str]:
    """Ask every peer that shares the address's domain at once; {host: code or "error:
    ..."}.  A positive answer is remembered for ``cache_ttl`` seconds."""
    domain = address.rpartition("@")[2].lower()
    peers = [p for p in await asyncio.to_thread(load_peers, db, secrets) if p.shares(domain)]
    if not peers:
        return {}
    found = await query_many([p.minger() for p in peers], address, timeout)
    answers: dict[str, int | str] = {}
    for p in peers:
        a = found[p.minger()]
        answers[p.host] = int(a) if isinstance(a, Code) else f"error: {a}"
    for host, answer in answers.items():
        if answer == int(Code.ACTIVE):
            await asyncio.to_thread(remember, db, address, host, cache_ttl)
            break
    return answers


def remember(db: Database, address: str, peer_host: str, ttl: float) -> None:
    """Cache a positive answer (seed 002: remembered for days; negative ones are not)."""
    now = time.time()
    cache = {a: e for a, e in (db.get_value(CACHE_KEY) or {}).items() if e["expires"] > now}
    cache[address.lower()] = {"peer": peer_host, "expires": now + ttl}
    db.set_value(CACHE_KEY, cache)


def directory_code(db: Database, address: str) -> int:
    """What our Minger server answers about ``address``: 5 exists and receives, 4 exists
    but cannot receive (a disabled account), 3 no such mailbox here."""
    local, _, domain = address.lower().rpartition("@")
    try:  # a peer may ask in U-labels: read the domain as the router does (IDNA 2008)
        domain = normalize_domain(domain) if domain else domain
    except AddressError:
        return int(Code.NOT_FOUND)
    rec = db.get_domain(domain)
    if rec is None or not local:
        return int(Code.NOT_FOUND)
    obj = db.get_object(rec.name, local)
    if obj is None:
        return int(Code.NOT_FOUND)
    if obj.kind == "alias":
        obj = db.get_object(rec.name, obj.data.get("target", "")) or obj
    if obj.kind == "account" and not obj.data.get("enabled", True):
        return int(Code.CANNOT_RECEIVE)
    return int(Code.ACTIVE)
