"""ETRN (RFC 1985): a client asks us to start the queue for a domain we hold mail for."""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING

from ...address import AddressError, normalize_domain
from ...log import event
from ..replies import Reply

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS"]

log = logging.getLogger("waypost.smtp")


async def etrn(s: WaypostSMTP, arg: str | None) -> None:
    # (Only on the SMTP listener, after a greeting, outside a transaction: the state table.)
    if not arg or " " in arg.strip():
        s.send(Reply(501, "5.5.4", "Syntax: ETRN [@|#]domain"))
        return
    node = arg.strip()
    if not _client_in(s.client_ip, s.settings.etrn.clients):
        event(log, "etrn-refused", level=logging.WARNING, client=s.client_ip, node=node)
        s.send(Reply(459, "4.7.1", f"Node {node} not allowed: this client may not send ETRN"))
        return
    targets, known = _targets(s, node)
    if targets is None:
        s.send(Reply(501, "5.5.4", f"Bad node name {node}"))
        return
    if not targets and not known:
        s.send(Reply(459, "4.7.1", f"Node {node} not allowed: no mail is queued or held for it"))
        return
    try:
        started = await s.service.queue.release_now(targets) if targets else 0
    except Exception:
        log.exception("event=etrn-error node=%s", node)
        s.send(Reply(458, "4.3.0", f"Unable to queue messages for node {node}"))
        return
    event(log, "etrn", client=s.client_ip, node=node, messages=started)
    if started == 0:
        s.send(Reply(251, "2.0.0", f"OK, no messages waiting for node {node}"))
    else:
        s.send(Reply(253, "2.0.0", f"OK, {started} pending messages for node {node} started"))


def _targets(s: WaypostSMTP, node: str) -> tuple[list[str] | None, bool]:
    """RFC 1985 §5: "domain", "@domain" (with its subdomains) or "#queue".  Returns
    the queues to start (None: bad syntax) and whether the node is one we serve."""
    router = s.service.router
    db = router.directory.db
    allowed = [normalize_domain(d) for d in s.settings.etrn.domains]  # checked at start
    queued = db.queue_targets()
    held = router.held_domains()
    if node.startswith("#"):
        name = node[1:].lower()
        target = name if ":" in name else f"mx:{name}"
        ok = not allowed or target.partition(":")[2] in allowed
        return ([target] if ok and target in queued else []), ok and (target in queued or name in held)
    sub = node.startswith("@")
    try:
        domain = normalize_domain(node[1:] if sub else node)
    except AddressError:
        return None, False

    def matches(d: str) -> bool:
        return d == domain or (sub and d.endswith("." + domain))

    permitted = [t for t in queued if t.startswith("mx:") and matches(t[3:]) and (not allowed or t[3:] in allowed)]
    known = bool(permitted) or any(matches(h) and (not allowed or h in allowed) for h in held)
    return permitted, known


def _client_in(ip: str | None, networks: list[str]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


HANDLERS = {"ETRN": etrn}
