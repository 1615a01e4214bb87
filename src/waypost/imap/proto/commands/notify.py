"""NOTIFY (RFC 5465), legal once authenticated.

RFC 5465 §8:
    notify          = "NOTIFY" SP (notify-set / notify-none)
    notify-none     = "NONE"
    notify-set      = "SET" [status-indicator] SP event-groups
    status-indicator = SP "STATUS"
    event-groups    = event-group *(SP event-group)
    event-group     = "(" filter-mailboxes SP events ")"
    filter-mailboxes = filter-mailboxes-selected / filter-mailboxes-other
    filter-mailboxes-selected = "selected" / "selected-delayed"
    filter-mailboxes-other = "inboxes" / "personal" / "subscribed" /
                      ( "subtree" SP one-or-more-mailbox ) /
                      ( "mailboxes" SP one-or-more-mailbox )
    one-or-more-mailbox = mailbox / many-mailboxes
    many-mailboxes  = "(" mailbox *(SP mailbox) ")"
    events          = ( "(" event *(SP event) ")" ) / "NONE"
    event           = message-event / mailbox-event / user-event / event-ext
    message-event   = ( "MessageNew" [SP "(" fetch-att *(SP fetch-att) ")" ] )
                      / "MessageExpunge" / "FlagChange" / "AnnotationChange"
    mailbox-event   = "MailboxName" / "SubscriptionChange" / "MailboxMetadataChange"
    user-event      = "ServerMetadataChange"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader
from .base import Command, CommandParser

__all__ = ["EVENTS", "FILTERS", "Notify", "NotifyGroup", "PARSERS"]

#: Event names in their RFC spelling, by upper case.
EVENTS = {e.upper(): e for e in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange",
    "MailboxName", "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange",
)}
FILTERS = ("SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """One event group: its filter (upper case), the mailboxes SUBTREE or MAILBOXES
    names (wire form), and its events (RFC spelling; empty for NONE).
    ``fetch_atts``: the raw fetch-att list given with MessageNew, if any."""

    filter: str
    mailboxes: tuple[str, ...]
    events: tuple[str, ...]
    fetch_atts: str | None = None


@dataclass(frozen=True, slots=True)
class Notify(Command):
    """``groups`` None for NOTIFY NONE."""

    groups: tuple[NotifyGroup, ...] | None
    status: bool = False
    name: ClassVar[str] = "NOTIFY"


def _mailboxes(r: Reader) -> tuple[str, ...]:
    if r.peek() != 0x28:
        return (r.mailbox(),)
    r.open()
    out = [r.mailbox()]
    while r.skip_sp():
        out.append(r.mailbox())
    r.close()
    return tuple(out)


def _fetch_atts(r: Reader) -> str:
    """The parenthesised fetch-att list after MessageNew, as text (balanced parens)."""
    start = r.pos
    depth = 0
    while True:
        c = r.peek()
        if c in (0x0D, 0x0A):
            r.fail_here("')'")
        r.pos += 1
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return r.buf[start:r.pos].decode("ascii", "replace")


def _group(r: Reader) -> NotifyGroup:
    r.open()
    kind = r.keyword("mailbox filter")
    if kind not in FILTERS:
        r.fail_here("SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED, SUBTREE or MAILBOXES")
    mailboxes: tuple[str, ...] = ()
    if kind in ("SUBTREE", "MAILBOXES"):
        r.sp()
        mailboxes = _mailboxes(r)
    r.sp()
    events: list[str] = []
    fetch_atts = None
    if not r.take("NONE"):
        r.open()
        while True:
            word = r.keyword("event")
            events.append(EVENTS.get(word, word))
            if word == "MESSAGENEW" and r.peek() == 0x20 and r.buf[r.pos + 1:r.pos + 2] == b"(":
                r.sp()
                fetch_atts = _fetch_atts(r)
            if not r.skip_sp():
                break
        r.close()
        if not events:
            r.fail_here("an event")
    r.close()
    return NotifyGroup(kind, mailboxes, tuple(dict.fromkeys(events)), fetch_atts)


def _notify(r: Reader, tag: str) -> Command:
    r.sp()
    if r.take("NONE"):
        return Notify(tag, None)
    if not r.take("SET"):
        r.fail_here("SET or NONE")
    r.sp()
    status = r.take("STATUS")
    if status:
        r.sp()
    groups = [_group(r)]
    while r.skip_sp():
        groups.append(_group(r))
    return Notify(tag, tuple(groups), status)


PARSERS: dict[str, CommandParser] = {"NOTIFY": _notify}
