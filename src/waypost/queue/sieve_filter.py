"""Each account's Sieve script at local delivery: what to store where, what to send.

Runs in a worker thread (it reads the database), once per local recipient, after the
server-wide rules (which ran when the message was accepted).  Nothing is stored or
queued here: ``plan`` returns a ``Filtered`` that the queue manager carries out, so
that the redirects and the vacation reply are in the spool before the recipient is
recorded as delivered.

Safety (issue 21): a script that does not compile or fails at run time never loses
the message: it is kept in INBOX and the error logged (``event=sieve-error``).  A
message that comes back to an account it was redirected from (``Delivered-To`` of the
account in its header, which every redirected copy gets) is kept, not redirected again
(``event=sieve-loop``); a run sends at most ``interpret.MAX_REDIRECTS`` copies.
``fileinto`` a mailbox that does not exist creates it; a name that cannot be a mailbox
is kept in INBOX instead.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..db import Database, QueuedMessage, QueuedRecipient
from ..log import event
from ..mailstore import MailboxNameError, Mailstore, normalize_name
from ..sieve import Message, SieveError, build_reply, compiled, refusal, run

__all__ = ["Filtered", "SieveFilter"]

log = logging.getLogger("waypost.sieve")


@dataclass(slots=True)
class Filtered:
    """What one recipient's script decided."""

    deliveries: list[tuple[str, tuple[str, ...]]] = field(default_factory=lambda: [("INBOX", ())])
    redirects: list[str] = field(default_factory=list)
    reject: str = ""                                   # the reason: bounced with 550 5.7.1
    vacation: tuple[str, bytes] | None = None          # (to, reply)
    redirect_header: bytes = b""                       # prepended to each redirected copy
    data: bytes | None = None                          # the message as editheader left it


def _has_delivered_to(data: bytes, address: str) -> bool:
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[:end + 2]
    rx = re.compile(rb"^delivered-to:[ \t]*<?" + re.escape(address.encode()) + rb">?[ \t]*\r?$", re.I | re.M)
    return rx.search(header) is not None


class SieveFilter:
    def __init__(self, db: Database, mailstore: Mailstore, hostname: str) -> None:
        self.db = db
        self.mailstore = mailstore
        self.hostname = hostname

    def plan(self, msg: QueuedMessage, r: QueuedRecipient, body: bytes) -> Filtered | None:
        """The script's decision for this recipient, or None (no script: plain delivery)."""
        route: dict[str, Any] = r.route
        if route.get("mailbox"):  # a server rule's "store ~account/mailbox": as the rule says
            return None
        domain = route["domain"]
        account = route.get("account") or route["name"]
        active = self.db.sieve_active(domain, account)
        if active is None:
            return None
        name, text = active
        user = f"{account}@{domain}"
        fields: dict[str, Any] = dict(id=msg.msg_id, account=user, script=name)
        try:
            script = compiled(text)
        except SieveError as e:
            event(log, "sieve-error", logging.WARNING, **fields, error=str(e), action="kept in INBOX")
            return Filtered()
        message = Message(body, msg.sender, r.address,
                          mailbox_exists=lambda m: self._exists(domain, account, m))
        result = run(script, message)
        if result.error is not None:
            event(log, "sieve-error", logging.WARNING, **fields, error=str(result.error), action="kept in INBOX")
            return Filtered()
        out = Filtered(deliveries=[], data=result.data)
        for mailbox, flags in result.deliveries():
            if mailbox == "INBOX":
                out.deliveries.append((mailbox, flags))
                continue
            try:
                mailbox = normalize_name(mailbox)
                self.mailstore.check_folder(mailbox)
            except MailboxNameError as e:
                event(log, "sieve-error", logging.WARNING, **fields, error=f"fileinto {mailbox!r}: {e}",
                      action="kept in INBOX")
                mailbox = "INBOX"
            if all(m != mailbox for m, _f in out.deliveries):
                out.deliveries.append((mailbox, flags))
        looped = False
        for a in result.actions:
            if a.kind == "redirect":
                if _has_delivered_to(body, user):
                    looped = True
                    continue
                out.redirects.append(a.target)
            elif a.kind in ("reject", "ereject"):
                out.reject = a.reason or "rejected by the recipient's filter"
            elif a.kind == "vacation":
                out.vacation = self._vacation(message, a, user, r.address, domain, account, fields)
        if looped:
            event(log, "sieve-loop", logging.WARNING, **fields, action="kept in INBOX, not redirected again")
            if all(m != "INBOX" for m, _f in out.deliveries):
                out.deliveries.insert(0, ("INBOX", result.flags))
        if out.redirects:
            out.redirect_header = f"Delivered-To: {user}\r\n".encode()
        event(log, "sieve", **fields, stored=",".join(m for m, _f in out.deliveries) or "-",
              redirected=len(out.redirects), rejected=bool(out.reject), vacation=out.vacation is not None)
        return out

    def _exists(self, domain: str, account: str, name: str) -> bool:
        try:
            return self.mailstore.get(domain, account, name) is not None
        except MailboxNameError:
            return False

    def _vacation(self, message: Message, action: Any, user: str, rcpt: str, domain: str, account: str,
                  fields: dict[str, Any]) -> tuple[str, bytes] | None:
        own = [user, rcpt]
        why = refusal(message, action, own)
        if why is not None:
            event(log, "vacation-skipped", **fields, sender=f"<{message.sender}>", reason=why)
            return None
        now = time.time()
        if not self.db.vacation_claim(domain, account, action.handle, message.sender.lower(), now,
                                      now + action.days * 86400):
            event(log, "vacation-skipped", **fields, sender=f"<{message.sender}>", reason="replied within the period")
            return None
        return message.sender, build_reply(message, action, user, self.hostname)
