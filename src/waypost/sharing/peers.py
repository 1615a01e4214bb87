"""Domain-sharing peers: the list, kept in the database (secrets sealed), and the
directory's answer our Minger server gives about a mailbox.

A peer is another server hosting the same domain(s) for other users (seed 002): where
its SMTP server is, where its Minger server is, the secret to ask it with, and which of
our domains it shares (empty: every local domain).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..db import Database
from ..secrets import Secrets
from .client import Peer
from .proto import Code

__all__ = ["PEERS_KEY", "SharingPeer", "load_peers", "save_peers", "directory_code"]

PEERS_KEY = "sharing.peers"


@dataclass(slots=True)
class SharingPeer:
    host: str
    smtp_port: int = 25
    minger_port: int = 4069
    secret: str = ""  # sealed in the database; clear in memory
    domains: list[str] = field(default_factory=list)

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
                               list(raw.get("domains", []))))
    return out


def save_peers(db: Database, secrets: Secrets, peers: list[SharingPeer]) -> None:
    rows: list[dict[str, Any]] = []
    for p in peers:
        row = asdict(p)
        row["secret"] = secrets.seal(p.secret) if p.secret else ""
        rows.append(row)
    db.set_value(PEERS_KEY, rows)


def directory_code(db: Database, address: str) -> int:
    """What our Minger server answers about ``address``: 5 exists and receives, 4 exists
    but cannot receive (a disabled account), 3 no such mailbox here."""
    local, _, domain = address.lower().rpartition("@")
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
