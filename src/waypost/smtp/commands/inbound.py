"""Inbound mail authentication at the SMTP listener (``mailauth.inbound``): the policy
applied to the verdict of ``waypost.mailauth.check_message`` after DATA.

Who is checked: mail on the SMTP listener (not submission, ODMR or LMTP) from a client
that is neither logged in, nor in ``relay.trusted_networks`` or
``mailauth.exempt_networks``.  What it gets:

* always (``tag`` and ``enforce``): every ``Authentication-Results`` field of the
  message that claims our host name as its authserv-id is removed (RFC 8601 §5: only
  we may speak for our host), and one field with our verdicts is added;
* ``enforce``: a DMARC failure whose disposition is ``reject`` gets 550 5.7.1, or
  goes into the Junk mailbox when the recipients' domains ask for that
  (``waypost domain set D --dmarc-reject junk``, else ``mailauth.dmarc_reject``);
  ``quarantine`` goes into Junk; a ``temperror`` that leaves a published policy open
  (a DNS time-out, SERVFAIL) gets 451 4.7.1, never 550.

The DNS look-ups are dnspython's asynchronous ones and DKIM verification works on keys
already fetched: the worker's event loop goes on serving other sessions meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...log import event
from ...mailauth import AnswerCache, Lookup, check_message
from ...queue import Recipient
from ..proto import Mode
from ..replies import Reply

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["Inbound", "applies", "check", "junked", "outside", "strip_forged"]

log = logging.getLogger("waypost.smtp")

_TEMP = Reply(451, "4.7.1", "Sender authentication (SPF/DKIM/DMARC) had a temporary DNS failure; try again later")


@dataclass(slots=True)
class Inbound:
    """The outcome for one message: a refusal, or the field to add and whether the
    local copies go into Junk; ``message`` is the text with forged fields removed."""

    reply: Reply | None
    header: bytes
    junk: bool
    message: bytes


def applies(s: WaypostSMTP) -> bool:
    """The message is checked: ``mailauth.inbound`` is on and it comes from outside."""
    return s.settings.mailauth.inbound != "off" and outside(s)


def outside(s: WaypostSMTP) -> bool:
    """Mail on the SMTP listener from a client neither logged in nor in our networks."""
    if s.mode is not Mode.SMTP or s.authenticated:
        return False
    if s.service.router.is_trusted(s.client_ip):
        return False
    exempt = s.settings.mailauth.exempt_networks
    if exempt and s.client_ip:
        try:
            ip = ipaddress.ip_address(s.client_ip.split("%")[0])
        except ValueError:
            return True
        if any(ip in ipaddress.ip_network(n, strict=False) for n in exempt):
            return False
    return True


_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")
_COMMENT = re.compile(r"\([^()]*\)")


def strip_forged(message: bytes, hostname: str) -> tuple[bytes, int]:
    """The message without the Authentication-Results fields whose authserv-id is
    ``hostname`` (any case); and how many were removed."""
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 2:])
    lowered = head.lower()
    if b"authentication-results" not in lowered:
        return message, 0
    want = hostname.rstrip(".").lower()
    if head.isascii() and want.encode("utf-8") not in lowered:
        return message, 0  # no field can name our host (without the text, no authserv-id can)
    fields = [f for f in _FIELD_START.split(head) if f]
    kept: list[bytes] = []
    removed = 0
    for f in fields:
        name, colon, value = f.partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            text = value.decode("utf-8", "replace").replace("\r\n", " ")
            while _COMMENT.search(text):
                text = _COMMENT.sub(" ", text)
            authserv = text.split(";", 1)[0].split()
            if authserv and authserv[0].rstrip(".").lower() == want:
                removed += 1
                continue
        kept.append(f)
    return b"".join(kept) + body, removed


def _reject_action(s: WaypostSMTP) -> str:
    """'reject' when every recipient's domain (its ``dmarc_reject`` setting, else
    ``mailauth.dmarc_reject``) says reject; else 'junk' (one reply for all at DATA)."""
    default = s.settings.mailauth.dmarc_reject
    directory = s.service.router.directory
    choices = set()
    for r in s.recipients:
        domain = r.route.domain if r.route.kind == "local" else ""
        rec = directory.domain(domain) if domain else None
        choices.add((rec.settings.get("dmarc_reject") if rec is not None else None) or default)
    return "reject" if choices <= {"reject"} else "junk"


def junked(recipients: list[Recipient]) -> list[Recipient]:
    """Local copies into Junk (a copy a rule stores into a named mailbox stays there)."""
    return [dataclasses.replace(r, route=dataclasses.replace(r.route, mailbox="Junk"))
            if r.route.kind == "local" and not r.route.mailbox else r for r in recipients]


def _lookup(s: WaypostSMTP) -> Lookup:
    """The worker's resolver for the checks, with a cache (``mailauth.AnswerCache``): the
    SPF, DMARC and DKIM key records of a sender that writes often are asked once per
    TTL, not per message."""
    lookup = s.service.mailauth_lookup
    if lookup is None:
        lookup = s.service.mailauth_lookup = Lookup(s.settings, cache=AnswerCache())
    assert isinstance(lookup, Lookup)
    return lookup


async def check(s: WaypostSMTP, message: bytes) -> Inbound:
    settings = s.settings
    hostname = settings.server.hostname
    enforce = settings.mailauth.inbound == "enforce"
    sender = s.mail_from or ""
    try:
        # asyncio.timeout, not wait_for: the check runs in this session's task (wait_for
        # made a task of its own for every message).
        async with asyncio.timeout(settings.mailauth.timeout):
            verdict = await check_message(settings, message, s.client_ip or "", s.host_name or "", sender,
                                          _lookup(s))
    except TimeoutError:
        event(log, "mailauth", level=logging.WARNING, client=s.client_ip, sender=f"<{sender}>",
              result="temperror", reason=f"checks took longer than {settings.mailauth.timeout}s",
              action="defer" if enforce else "tag")
        if enforce:
            return Inbound(_TEMP, b"", False, message)
        header = (f"Authentication-Results: {hostname};\r\n\tdmarc=temperror (checks did not finish in "
                  f"{settings.mailauth.timeout:g} s)\r\n").encode()
        stripped, _ = strip_forged(message, hostname)
        return Inbound(None, header, False, stripped)
    except asyncio.CancelledError:
        raise
    except Exception:
        # A fault of ours: the message is taken unchecked (never lost, never refused for it).
        log.exception("event=mailauth-error client=%s", s.client_ip)
        stripped, _ = strip_forged(message, hostname)
        return Inbound(None, b"", False, stripped)
    stripped, forged = strip_forged(message, hostname)
    if forged:
        event(log, "forged-authentication-results", level=logging.WARNING, client=s.client_ip,
              sender=f"<{sender}>", removed=forged, authserv_id=hostname)
    d = verdict.dmarc
    action, reply, junk = "accept", None, False
    if enforce:
        if d.result == "temperror" and (d.policy != "none" or not d.record_domain):
            action, reply = "defer", _TEMP
        elif d.result == "fail" and d.disposition == "reject":
            if _reject_action(s) == "reject":
                action = "reject"
                reply = Reply(550, "5.7.1", f"Message refused: {d.from_domain} publishes DMARC p=reject and this "
                                            "message has no aligned SPF or DKIM pass")
            else:
                action, junk = "junk", True
        elif d.result == "fail" and d.disposition == "quarantine":
            action, junk = "junk", True
    event(log, "mailauth", client=s.client_ip, helo=s.host_name or "", sender=f"<{sender}>",
          header_from=d.from_domain or "-", spf=verdict.spf.result,
          helo_spf=verdict.helo.result if verdict.helo is not None else "-",
          dkim=",".join(f"{r.result}:{r.domain}" for r in verdict.dkim) or "none",
          arc=verdict.arc.result + (f":{','.join(verdict.arc.sealers)}" if verdict.arc.sealers else ""),
          dmarc=d.result, policy=d.policy, disposition=d.disposition, action=action,
          mode=settings.mailauth.inbound, queries=verdict.dns_queries, override=d.override or "-")
    return Inbound(reply, verdict.header.encode("utf-8"), junk, stripped)
