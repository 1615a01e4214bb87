"""NOTIFY (RFC 5465): SET replaces what the session hears of, NONE ends it.  The
watching is ``imap/notify.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ...log import event
from ..notify import SUPPORTED, Watcher, problem
from ..proto import Code, Notify, Tagged

if TYPE_CHECKING:
    from ..server import Connection

log = logging.getLogger("waypost.imap")


async def notify(conn: Connection, cmd: Notify) -> Tagged:
    old = conn.notify
    if cmd.groups is None:
        if old is not None:
            old.stop()
        conn.notify = None
        return Tagged(cmd.tag, "OK", "NOTIFY completed")
    refused = problem(cmd.groups)
    if refused is not None:
        kind, text = refused
        event(log, "imap-notify-refused", level=logging.INFO, peer=conn.peer, reason=text)
        if kind == "BAD":
            return Tagged(cmd.tag, "BAD", text)
        # RFC 5465 §5.9 (formal syntax): resp-text-code =/ "BADEVENT" SP "(" event *(SP event) ")"
        return Tagged(cmd.tag, "NO", text, Code("BADEVENT", "(" + " ".join(SUPPORTED) + ")"))
    if old is not None:
        old.stop()
    watcher = Watcher(conn, cmd.groups)
    initial = await asyncio.to_thread(watcher.snapshot)
    if cmd.status:
        conn.send(*initial)
    conn.notify = watcher
    watcher.start()
    return Tagged(cmd.tag, "OK", "NOTIFY completed")


HANDLERS: dict[str, Any] = {"NOTIFY": notify}
