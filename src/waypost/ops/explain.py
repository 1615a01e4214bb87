"""The route explainer (``waypost route``, the admin pages and ``POST /api/v1/route``):
every step of a resolution, as the listener would take it, asking the domain-sharing
peers and DNS (Relay to All Hosts We Backup) where a listener would."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Settings
    from ..db import Database
    from ..router import Router

__all__ = ["explain"]


async def explain(router: "Router", settings: "Settings", db: "Database", address: str, kind: str = "mail",
                  client_ip: str | None = None, server_ip: str | None = None,
                  authenticated: str | None = None) -> dict[str, Any]:
    """``{"input", "kind", "trace": [...], ...}``: for ``kind`` access the ``account``;
    else the ``route``, its ``target`` queue and the ``deliveries`` it expands to."""
    from ..router import Context

    ctx = Context(kind=kind, client_ip=client_ip, server_ip=server_ip, authenticated=authenticated)
    if kind == "access":
        trace: list[str] = []
        acct = router.resolve_login(address, ctx, trace)
        return {"input": address, "kind": kind, "account": acct.address if acct else None, "trace": trace}
    res = router.resolve(address, ctx)
    if res.route.kind == "ask-peers":  # domain sharing: ask the peers now, as the listener would
        from ..secrets import Secrets
        from ..sharing.peers import ask_peers

        s = settings.sharing
        answers = await ask_peers(db, Secrets(settings.data_dir), res.route.address, s.timeout, s.cache_ttl)
        again = router.resolve(address, dataclasses.replace(ctx, peer_answers=answers))
        res.trace.extend(again.trace[1:])
        res.route = again.route
    if res.route.kind == "refuse" and res.route.status == "5.7.1" and settings.relay.backup_mx and res.route.domain:
        # Relay to All Hosts We Backup: DNS is asked as the SMTP listener asks it.
        from ..delivery import Resolver, backs_up

        domain = res.route.domain
        try:
            ours = await backs_up(Resolver(settings), domain, settings.server.hostname, router.own_addresses)
        except Exception as e:  # a DNS failure is no permission
            res.trace.append(f"relay.backup_mx: the MX records of {domain} could not be read ({e})")
            ours = False
        else:
            res.trace.append(f"relay.backup_mx: we are {'' if ours else 'not '}a backup MX of {domain} (DNS)")
        if ours:
            again = router.as_backup(address, ctx, res.route)
            res.trace.extend(again.trace[1:])
            res.route = again.route
    routes = router.expand(res.route, res.trace) if res.route.kind == "local" else [res.route]
    return {"input": address, "kind": kind, "route": res.route.to_dict(), "target": res.route.target,
            "deliveries": [r.to_dict() | {"target": r.target} for r in routes], "trace": res.trace}
