"""Sending from WebUser: the submission path of SMTP AUTH without SMTP.  The sender
is the logged-in account, checked by ``Directory.may_send_as`` (the one send-as
check); each recipient is routed by the Router (``Context(kind="mail",
authenticated=...)``, as after AUTH) and expanded like an RCPT; the server-wide rules
apply as on SMTP (at "RCPT" and over the whole message); the message goes to
``QueueManager.submit`` (spooled durably before we answer), then a copy into Sent."""

from __future__ import annotations

import asyncio
import email.utils
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..address import AddressError, parse_address
from ..log import event
from ..queue import Recipient
from ..router import Context
from ..rules import Envelope, ServerRules, header_fields
from ..rules.outcome import rule_routes

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["SendError", "Sent", "recipients_of", "submit"]

log = logging.getLogger("waypost.web")

#: Recipients one web message may have (smtp.max_recipients applies as well).
MAX_RECIPIENTS = 100


class SendError(Exception):
    """Why a message was not sent (shown to the user; nothing was queued)."""


@dataclass(frozen=True, slots=True)
class Sent:
    queue_id: str
    recipients: list[str]
    saved: bool      # a copy is in Sent


def recipients_of(*fields: str) -> list[str]:
    """The addresses of To/Cc/Bcc form fields; SendError for one that is not an address."""
    out: list[str] = []
    for _name, address in email.utils.getaddresses([f for f in fields if f.strip()]):
        if not address:
            continue
        try:
            out.append(str(parse_address(address)))
        except AddressError as e:
            raise SendError(f"{address}: {e}") from None
    if not out:
        raise SendError("no recipient")
    return list(dict.fromkeys(out))


async def submit(server: "Server", rules_now: Callable[[], ServerRules], account: str, addresses: list[str],
                 data: bytes, client_ip: str | None, secure: bool) -> Sent:
    if not server.directory.may_send_as(account, account):  # a disabled account cannot send either
        raise SendError("this account may not send mail")
    limit = min(MAX_RECIPIENTS, server.settings.smtp.max_recipients)
    if len(addresses) > limit:
        raise SendError(f"at most {limit} recipients")
    ctx = Context(kind="mail", client_ip=client_ip, authenticated=account)
    router = server.router
    rules = rules_now()
    domain = account.rpartition("@")[2]

    def envelope(rcpts: list[str], head: bytes | None = None) -> Envelope:
        return Envelope(sender=account, recipients=rcpts, authenticated=True, trusted=router.is_trusted(client_ip),
                        local_sender=router.directory.domain(domain) is not None,
                        headers=header_fields(head) if head is not None else {}, size=len(data))

    recipients: list[Recipient] = []
    for address in addresses:  # as RCPT TO after AUTH
        route = router.resolve(address, ctx).route
        if route.kind == "refuse":
            event(log, "rcpt-refused", level=logging.INFO, client=client_ip, account=account,
                  rcpt=f"<{address}>", reply=f"{route.code} {route.status}", reason=route.reason)
            raise SendError(f"{address}: {route.code} {route.status} {route.reason}")
        hit = rules.check_recipient(envelope([address]), address)
        if hit is not None:
            event(log, "rule-rejected", client=client_ip, rule=hit[0], sender=f"<{account}>", rcpt=f"<{address}>")
            raise SendError(f"{address}: 550 5.7.1 {hit[1]}")
        routes = router.expand(route, ctx=ctx) if route.kind == "local" else [route]
        recipients += [Recipient(address, r) for r in routes]
    # After the message, as after DATA: the rules over the whole message.
    head = data[: data.find(b"\r\n\r\n") + 4] if b"\r\n\r\n" in data else data
    out = rules.apply(envelope(addresses, head))
    extra = b""
    if out.matched:
        event(log, "rules", client=client_ip, sender=f"<{account}>", matched=",".join(out.matched))
        if out.rejected:
            raise SendError(f"550 5.7.1 {out.rejected}")
        if out.discard:
            return Sent("", addresses, await asyncio.to_thread(_save_copy, server, account, data))
        if out.redirect:
            recipients = []
        recipients += [Recipient(a, r) for a, r in rule_routes(router, out)]
        extra = "".join(h + "\r\n" for h in out.add_headers).encode("utf-8")
    proto = "HTTPSA" if secure else "HTTPA"
    received = (f"Received: from [{client_ip or 'unknown'}]\r\n\tby {server.settings.server.hostname} (Waypost)"
                f" with {proto}; {email.utils.formatdate(localtime=True)}\r\n").encode()
    params = {"client": client_ip, "helo": "", "auth": account}
    queue_id = await server.queue.submit(account, recipients, received + extra + data, params)
    event(log, "web-sent", id=queue_id, account=account, rcpts=len(addresses))
    return Sent(queue_id, addresses, await asyncio.to_thread(_save_copy, server, account, data))


def _save_copy(server: "Server", account: str, data: bytes) -> bool:
    name, _, domain = account.rpartition("@")
    store = server.mailstore
    store.ensure_account(domain, name)
    box = store.get(domain, name, "Sent")
    if box is None:
        return False
    try:
        store.append(box, data, ["\\Seen"])
    except Exception as e:  # over quota, a disk error: the message has been sent anyway
        event(log, "web-sent-copy-failed", level=logging.WARNING, account=account, error=repr(e))
        return False
    return True
