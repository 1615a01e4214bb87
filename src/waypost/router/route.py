"""What the router answers: a ``Route`` for an address in a ``Context``, with a trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Context", "Route", "Resolution", "LOCAL_TARGET"]

#: The queue that local deliveries wait in.
LOCAL_TARGET = "local"


@dataclass(frozen=True, slots=True)
class Context:
    """Who asks, and for what.

    ``kind``: "mail" (an SMTP recipient), "access" (a login name), "http" (a host
    name), "signal".  ``server_ip`` is the address the client connected to (multihoming).
    ``authenticated`` is the account address the client logged in as, if any.
    ``internal`` marks Waypost's own expansions (forwarders, groups), which may relay.
    """

    kind: str = "mail"
    client_ip: str | None = None
    server_ip: str | None = None
    authenticated: str | None = None
    internal: bool = False
    backup_mx: bool = False  # the caller found (by DNS) that we are a backup MX of the domain
    # Domain sharing: each peer's Minger answer for this address (host -> code, or an
    # error text), asked by the caller when the router returned kind "ask-peers".
    peer_answers: dict[str, int | str] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """One final answer.  ``kind`` is local, remote, held, discard, bounce (accepted,
    then bounced: Mail to Unknown "accepted and bounced"), refuse, or ask-peers (not
    final: the caller asks the domain-sharing peers by Minger and resolves again);
    ``Router.check_sender`` answers accept, refuse or ask-peers.

    local:   ``domain``/``name`` is the object found (``object_kind``); ``account`` the
             account an alias stands for; ``created`` that account's creation stamp
             (its identity: a name removed and made again is another account), so
             that a queued delivery stores only for the account it was accepted for.
    remote:  deliver ``address`` by SMTP: to the MX of ``domain`` when ``host`` is empty,
             else to ``host`` (a name: A/AAAA only when ``port`` is set; an IP address).
    refuse:  ``code``, ``status`` and ``reason`` are the SMTP reply to give.
    """

    kind: str
    address: str
    domain: str = ""
    name: str = ""
    object_kind: str = ""
    account: str = ""
    host: str = ""
    port: int | None = None
    code: int = 0
    status: str = ""
    reason: str = ""
    auth: str = ""  # "gateway": authenticate to the next hop with the gateway credentials
    mailbox: str = ""  # local: a mailbox other than INBOX (a rule's "store ~account/mailbox")
    forwarded: bool = False  # a copy made by account forwarding: leaves with an SRS sender
    created: float = 0.0  # local, an account or alias: the account's creation stamp

    @property
    def target(self) -> str:
        """The queue this route waits in: one queue per destination."""
        if self.kind == "local":
            return LOCAL_TARGET
        if self.kind == "remote":
            if not self.host:
                return f"mx:{self.domain}"
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{host}:{self.port}" if self.port else host
        if self.kind == "held":  # the domain's own queue, kept until ETRN/ATRN
            return f"mx:{self.domain}"
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) not in ("", None, 0)} | {"kind": self.kind}  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Route":
        return cls(**d)


@dataclass(slots=True)
class Resolution:
    """A route and every step that led to it (``waypost route`` prints the steps)."""

    route: Route
    trace: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return self.route.kind == "refuse"
