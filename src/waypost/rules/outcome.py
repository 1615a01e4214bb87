"""What the server-wide rules' outcome does to a message's recipients: the routes of
``redirect``, ``mirror``, ``forward`` and ``store`` actions.  One place for every
listener that applies the rules (SMTP after DATA, WebUser's send)."""

from __future__ import annotations

import dataclasses

from ..router import Context, Route, Router
from .server import Outcome

__all__ = ["mailbox_route", "rule_routes"]


def mailbox_route(router: Router, target: str) -> Route:
    """``~account[@domain]/mailbox`` as a local delivery into that mailbox."""
    who, _, mailbox = target[1:].partition("/")
    directory = router.directory
    name, _, domain = who.partition("@")
    obj = directory.lookup(name, domain or directory.main_domain)
    acct = directory.account_of(obj) if obj is not None else None
    if acct is None:
        raise ValueError(f"store {target}: no such account")
    return Route("local", acct.address, domain=acct.domain, name=acct.name, object_kind="account",
                 account=acct.name, mailbox=mailbox, created=acct.created)


def rule_routes(router: Router, out: Outcome) -> list[tuple[str, Route]]:
    """The (address, route) pairs the outcome adds, resolved as Waypost's own mail.
    With ``out.redirect`` they replace the message's recipients; else they join them."""
    internal = Context(kind="mail", internal=True)

    def routed(address: str, forwarded: bool = False) -> list[tuple[str, Route]]:
        res = router.resolve(address, internal)
        rs = router.expand(res.route) if res.route.kind == "local" else [res.route]
        if forwarded:
            rs = [dataclasses.replace(r, forwarded=True) if r.kind == "remote" else r for r in rs]
        return [(address, r) for r in rs]

    pairs: list[tuple[str, Route]] = []
    for a in out.redirect:
        pairs += routed(a)
    for a in out.mirror:
        pairs += routed(a)
    for a in out.forward:
        pairs += routed(a, forwarded=True)
    for target in out.store:
        pairs.append((target, mailbox_route(router, target)))
    return pairs
