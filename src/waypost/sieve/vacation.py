"""Vacation replies (RFC 5230) under the rules of RFC 3834: whether a message may be
answered at all, and the reply itself.  Pure; the caller checks the once-per-period
rule in the database (``Database.vacation_claim``) and queues the reply."""

from __future__ import annotations

import email.utils
import time
from email.header import Header

from .interpret import Action, Message

__all__ = ["build_reply", "refusal"]

#: RFC 5230 §4.6 / RFC 3834 §2: senders that are programs, not people.
_ROBOT_LOCALS = ("mailer-daemon", "listserv", "majordomo", "owner-", "-request", "-bounces", "noreply",
                 "no-reply", "postmaster")


def refusal(msg: Message, action: Action, own: list[str]) -> str | None:
    """Why no reply may go out (a few words for the log), or None when one may.
    ``own``: the account's addresses (RFC 5230 §4.5, with ``:addresses``)."""
    sender = msg.sender.lower()
    if not sender:
        return "null sender"  # RFC 5230 §4.6: never to the null sender (bounces)
    local = sender.rpartition("@")[0]
    if any(local.startswith(r) if r.endswith("-") else local.endswith(r) if r.startswith("-") else local == r
           for r in _ROBOT_LOCALS):
        return "sender is a program"
    auto = [v.strip().lower() for v in msg.header_values("Auto-Submitted")]
    if any(v and not v.startswith("no") for v in auto):
        return "auto-submitted"  # RFC 3834 §2 (and RFC 5230 §5.2)
    for h in ("List-Id", "List-Help", "List-Subscribe", "List-Unsubscribe", "List-Post", "List-Owner",
              "List-Archive"):
        if msg.header_values(h):
            return "mailing list"  # RFC 5230 §4.6, RFC 2369, RFC 2919
    if any(v.strip().lower() in ("bulk", "list", "junk") for v in msg.header_values("Precedence")):
        return "bulk"
    if msg.header_values("X-Auto-Response-Suppress") and any(
            "oof" in v.lower() or "all" in v.lower() for v in msg.header_values("X-Auto-Response-Suppress")):
        return "auto-response suppressed"
    mine = {a.lower() for a in own} | {a.lower() for a in action.addresses}
    if sender in mine:
        return "from the user"
    # RFC 5230 §4.5: the user's address must be in To, Cc, Bcc (or Resent-*).
    named = {a.lower() for h in ("To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")
             for _n, a in email.utils.getaddresses(msg.header_values(h)) if a}
    if not named & mine:
        return "not addressed to the user"
    return None


def build_reply(msg: Message, action: Action, user: str, hostname: str) -> bytes:
    """The reply (RFC 5230 §5): From the user (or ``:from`` when it is one of the
    user's addresses), To the sender, the
    subject ``:subject`` or "Auto: " and the original's, In-Reply-To and References,
    ``Auto-Submitted: auto-replied`` (RFC 3834 §5)."""
    original_subject = (msg.header_values("Subject") or [""])[0]
    subject = action.subject or f"Auto: {original_subject}".rstrip()
    # RFC 5230 §4.4: ":from" only as one of the user's own addresses (the account, the
    # address the mail came to, ``:addresses``): a script cannot forge another sender.
    own = {a.lower() for a in (user, msg.recipient, *action.addresses)}
    given = [a for _n, a in email.utils.getaddresses([action.from_])] if action.from_ else []
    from_ = action.from_ if len(given) == 1 and given[0].lower() in own else user
    msgid = msg.first("Message-ID")
    refs = " ".join(msg.fields().get("references", []))
    fields = [
        ("From", from_),
        ("To", msg.sender),
        ("Subject", Header(subject, "utf-8").encode() if not subject.isascii() else subject),
        ("Date", email.utils.formatdate(time.time(), localtime=False)),
        ("Message-ID", email.utils.make_msgid(domain=hostname)),
        ("Auto-Submitted", "auto-replied (vacation)"),
        ("Precedence", "bulk"),
    ]
    if msgid:
        fields.append(("In-Reply-To", msgid))
        fields.append(("References", f"{refs} {msgid}".strip()))
    body = action.reason.replace("\r\n", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    if action.mime:
        # RFC 5230 §4.8: the reason is a MIME entity, header included.
        head = "".join(f"{k}: {v}\r\n" for k, v in fields) + "MIME-Version: 1.0\r\n"
        return (head + body).encode("utf-8")
    fields += [("MIME-Version", "1.0"), ("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Transfer-Encoding", "8bit")]
    return ("".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n" + body).encode("utf-8")
