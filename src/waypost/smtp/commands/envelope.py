"""The envelope: MAIL FROM (RFC 5321 §4.1.1.2) and RCPT TO (§4.1.1.3), with their
parameters, the sender checks (send-as for an authenticated user, RFC 6409 §6.1;
Query Domain Sharing hosts for message senders) and one routing decision per
recipient, made at RCPT time by the router (and the server-wide rules)."""

from __future__ import annotations

import dataclasses
import email.utils
import logging
from typing import TYPE_CHECKING

from ... import metrics
from ...address import AddressError, parse_address
from ...log import event
from ...queue import Recipient
from ...router import Route
from ...router.resolve import used_sharing_cache
from ...rules import Envelope as RuleEnvelope
from ...rules import header_fields
from ..proto import parse_mail, parse_mail_params, parse_rcpt, parse_rcpt_params
from ..replies import R, Reply

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS", "may_send_as", "foreign_from", "rule_envelope"]

log = logging.getLogger("waypost.smtp")


async def mail(s: WaypostSMTP, arg: str | None) -> None:
    command = parse_mail(arg)
    if isinstance(command, Reply):
        s.send(command)
        return
    if command.params and not s.extended:
        s.send(R.PARAM_SYNTAX.with_text("Parameters need EHLO"))
        return
    sender = command.path
    if sender:
        try:
            sender = str(parse_address(sender))
        except AddressError as e:
            s.send(R.BAD_SENDER.with_text(f"Bad sender address syntax: {e}"))
            return
    opts = parse_mail_params(command.params, s.params)
    if isinstance(opts, Reply):
        s.send(opts)
        return
    if sender and not sender.isascii() and not opts.smtputf8:
        s.send(R.SMTPUTF8_REQUIRED)
        return
    if s.authenticated and not may_send_as(s, sender):
        event(log, "sender-refused", level=logging.WARNING, client=s.client_ip,
              account=s.auth_data, sender=f"<{sender}>", where="mail-from")
        s.send(R.SENDER_NOT_OWNED)
        return
    if sender and s.settings.sharing.query_senders:
        refused = await _sender_refusal(s, sender)
        if refused is not None:
            s.send(refused)
            return
    s.mail_from = sender
    s.options = opts
    s.send(R.SENDER_OK)


async def _sender_refusal(s: WaypostSMTP, sender: str) -> Reply | None:
    """Query Domain Sharing hosts for message senders (seed 002): the refusal for a
    sender in a shared domain that neither we nor a peer have, else None."""
    router = s.service.router
    res = router.check_sender(sender, s.context())
    if used_sharing_cache(res.trace):
        metrics.minger_cache_hit()
    if res.route.kind == "ask-peers":
        try:
            answers = await s.service.ask_peers(res.route.address) if s.service.ask_peers else {}
        except ValueError:  # not an address Minger can carry: nobody vouches for it
            answers = {}
        res = router.check_sender(sender, dataclasses.replace(s.context(), peer_answers=answers))
    route = res.route
    if route.kind != "refuse":
        return None
    event(log, "sender-refused", level=logging.INFO, client=s.client_ip, sender=f"<{sender}>",
          reply=f"{route.code} {route.status}", reason=route.reason)
    return Reply(route.code, route.status, route.reason)


def may_send_as(s: WaypostSMTP, address: str) -> bool:
    """The authenticated user may use ``address`` as a sender (Directory.may_send_as)."""
    return s.service.router.directory.may_send_as(str(s.auth_data), address)


def foreign_from(s: WaypostSMTP, header: bytes) -> str | None:
    """An address of the From: (or Sender:) field the authenticated user may not
    use, or None."""
    fields = header_fields(header)
    values = fields.get("from", []) + fields.get("sender", [])
    for _, address in email.utils.getaddresses(values):
        if not address or not may_send_as(s, address):  # (an empty one: unparsable)
            return address or "(unparsable)"
    return None


async def rcpt(s: WaypostSMTP, arg: str | None) -> None:
    command = parse_rcpt(arg)
    if isinstance(command, Reply):
        s.send(command)
        return
    path = command.path
    if command.params and not s.extended:
        s.send(R.PARAM_SYNTAX.with_text("Parameters need EHLO"))
        return
    dsn = parse_rcpt_params(command.params)
    if isinstance(dsn, Reply):
        s.send(dsn)
        return
    notify, orcpt = dsn
    if s.rcpt_count >= s.settings.smtp.max_recipients:
        s.send(R.TOO_MANY_RCPTS)
        return
    if not path.isascii() and not s.options.smtputf8:
        s.send(R.SMTPUTF8_REQUIRED)
        return
    service = s.service
    router = service.router
    res = router.resolve(path, s.context())
    route = res.route
    if used_sharing_cache(res.trace):
        metrics.minger_cache_hit()
    if route.kind == "ask-peers" and service.ask_peers is not None:
        try:
            answers = await service.ask_peers(route.address)
        except ValueError:  # not an address Minger can carry: nobody is asked
            answers = {}
        res = router.resolve(path, dataclasses.replace(s.context(), peer_answers=answers))
        route = res.route
    if (route.kind == "refuse" and route.status == "5.7.1" and s.settings.relay.backup_mx
            and route.domain and await service.backup_for(route.domain)):
        route = router.as_backup(path, s.context(), route).route
    if route.kind == "refuse":
        event(log, "rcpt-refused", level=logging.INFO, client=s.client_ip, sender=f"<{s.mail_from}>",
              rcpt=f"<{path}>", reply=f"{route.code} {route.status}", reason=route.reason)
        if route.code == 550 and route.status == "5.1.1":
            await s.error(Reply(route.code, route.status, route.reason))  # guessing names
        else:
            s.send(Reply(route.code, route.status, route.reason))
        return
    refused = _rule_refusal(s, path)
    if refused is not None:
        s.send(refused)
        return
    routes = router.expand(route, ctx=s.context()) if route.kind == "local" else [route]
    if route.kind == "local" and len(routes) == 1 and _over_quota(s, path, routes):
        return
    for r in routes:
        s.recipients.append(Recipient(path, r, notify, orcpt))
    s.rcpt_tos.append(path)
    s.send(R.RCPT_OK.with_text(f"<{path}> OK"))

def _over_quota(s: WaypostSMTP, path: str, routes: list[Route]) -> bool:
    """Refuse a recipient (one account: a group's full member does not stop the
    others) whose account is full now (or too full for the SIZE the client declared)
    with ``452 4.2.2`` (RFC 3463 X.2.2; temporary: the sender retries and may get
    through once the user makes room)."""
    mailstore = s.service.queue.mailstore
    size = s.options.size or 0
    for r in routes:
        if r.kind != "local" or not r.domain:
            continue
        account = r.account or r.name
        try:
            # Limits come from the directory's cache; usage, only when limited, is one
            # indexed row: cheaper inline than a trip to a thread.
            quota = mailstore.quota(r.domain, account)
        except Exception:  # the index unreadable now: delivery will check again
            log.exception("event=quota-error rcpt=<%s>", path)
            continue
        if quota.full or not quota.room_for(size):
            event(log, "rcpt-refused", level=logging.INFO, client=s.client_ip,
                  sender=f"<{s.mail_from}>", rcpt=f"<{path}>", reply="452 4.2.2", reason="over quota")
            s.send(R.MAILBOX_FULL)
            return True
    return False


def rule_envelope(s: WaypostSMTP, recipients: list[str], head: bytes | None = None, size: int = 0) -> RuleEnvelope:
    """What the server-wide rules see: the envelope and, after the message, its
    header section and size."""
    sender = s.mail_from or ""
    domain = sender.rpartition("@")[2]
    router = s.service.router
    return RuleEnvelope(
        sender=sender, recipients=recipients,
        authenticated=s.authenticated,
        trusted=router.is_trusted(s.client_ip),
        local_sender=bool(domain) and router.directory.domain(domain) is not None,
        headers=header_fields(head) if head is not None else {}, size=size,
    )


def _rule_refusal(s: WaypostSMTP, recipient: str) -> Reply | None:
    """A rule that refuses this recipient at once (seed 004), or None."""
    if s.service.rules is None:
        return None
    try:
        hit = s.service.rules().check_recipient(rule_envelope(s, [recipient]), recipient)
    except Exception:  # a broken rule never loses mail: as if it had not matched
        log.exception("event=rule-error phase=rcpt")
        return None
    if hit is None:
        return None
    event(log, "rule-rejected", client=s.client_ip, rule=hit[0], sender=f"<{s.mail_from}>",
          rcpt=f"<{recipient}>")
    return Reply(550, "5.7.1", hit[1])


HANDLERS = {"MAIL": mail, "RCPT": rcpt}
