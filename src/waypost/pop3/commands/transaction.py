"""Commands of the TRANSACTION state (RFC 1939 §5, §7): STAT, LIST, RETR, DELE, NOOP,
RSET, TOP, UIDL.

Message numbers are those of the session's maildrop: fixed at login, a deleted one
answered ``-ERR`` (RFC 1939 §5: "a message-number ... which has been marked as
deleted ... is not ... to be referred to").  Sizes are octets as sent (CRLF line
ends), which is how messages are stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ...log import event
from ..maildrop import Maildrop, NoSuchMessage
from ..proto import Dele, List, MultiLine, Noop, R, Response, Retr, Rset, Stat, Top, Uidl, dot_stuff, top_of

if TYPE_CHECKING:
    from ...db import MessageRecord
    from ..server import Session

__all__ = ["HANDLERS"]

log = logging.getLogger("waypost.pop3")

#: Messages larger than this are read and dot-stuffed in a worker thread, so that
#: other sessions of the worker are not held up meanwhile.
THREAD_THRESHOLD = 256 * 1024


def _drop(session: Session) -> Maildrop:
    assert session.maildrop is not None  # TRANSACTION means the maildrop is open
    return session.maildrop


async def stat(session: Session, command: Stat) -> Response:
    count, size = _drop(session).stat()
    return R.STAT.format(count=count, size=size)


async def list_(session: Session, command: List) -> Response:
    drop = _drop(session)
    if command.number is not None:
        try:
            msg = drop.get(command.number)
        except NoSuchMessage as e:
            return e.reply
        return R.LIST_ONE.format(number=command.number, size=msg.size)
    count, size = drop.stat()
    return MultiLine.of_lines(R.LIST_ALL.format(count=count, size=size),
                              (f"{n} {m.size}" for n, m in drop.live()))


async def uidl(session: Session, command: Uidl) -> Response:
    drop = _drop(session)
    if command.number is not None:
        try:
            msg = drop.get(command.number)
        except NoSuchMessage as e:
            return e.reply
        return R.UIDL_ONE.format(number=command.number, uid=drop.unique_id(msg))
    return MultiLine.of_lines(R.UIDL_ALL, (f"{n} {drop.unique_id(m)}" for n, m in drop.live()))


async def _body(session: Session, number: int, msg: MessageRecord, lines: int | None) -> bytes | None:
    """The message (or its top), dot-stuffed; None when it is gone from the store."""
    drop = _drop(session)

    def load() -> bytes:
        data = drop.read(msg)
        return dot_stuff(data if lines is None else top_of(data, lines))

    try:
        if msg.size > THREAD_THRESHOLD:
            return await asyncio.to_thread(load)
        return load()
    except FileNotFoundError:
        event(log, "pop3-message-gone", peer=session.peer, number=number, uid=msg.uid)
        return None


async def retr(session: Session, command: Retr) -> Response:
    drop = _drop(session)
    try:
        msg = drop.get(command.number)
    except NoSuchMessage as e:
        return e.reply
    body = await _body(session, command.number, msg, None)
    if body is None:
        return R.MESSAGE_GONE.format(number=command.number)
    try:
        drop.mark_seen(msg)
    except Exception as e:  # the message is sent all the same
        log.warning("event=pop3-seen-error peer=%s uid=%s error=%r", session.peer, msg.uid, e)
    return MultiLine(R.RETR.format(size=msg.size), body, stuffed=True)


async def top(session: Session, command: Top) -> Response:
    drop = _drop(session)
    try:
        msg = drop.get(command.number)
    except NoSuchMessage as e:
        return e.reply
    body = await _body(session, command.number, msg, command.lines)
    if body is None:
        return R.MESSAGE_GONE.format(number=command.number)
    return MultiLine(R.TOP, body, stuffed=True)


async def dele(session: Session, command: Dele) -> Response:
    try:
        _drop(session).delete(command.number)
    except NoSuchMessage as e:
        return e.reply
    return R.DELE.format(number=command.number)


async def noop(session: Session, command: Noop) -> Response:
    return R.NOOP


async def rset(session: Session, command: Rset) -> Response:
    drop = _drop(session)
    drop.reset()
    count, size = drop.stat()
    return R.RSET.format(count=count, size=size)


HANDLERS: dict[str, Callable[[Session, Any], Awaitable[Response | None]]] = {
    "STAT": stat,
    "LIST": list_,
    "RETR": retr,
    "DELE": dele,
    "NOOP": noop,
    "RSET": rset,
    "TOP": top,
    "UIDL": uidl,
}
