"""RESETKEY, GENURLAUTH and URLFETCH (RFC 4467), with the extended URLFETCH of
URLAUTH=BINARY (RFC 5524).  The keys, the verifier and the checks are in
``imap/urlauth.py``, which the submission listener's BURL uses as well.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ...log import event
from .. import message as mime
from .. import urlauth
from ..proto import BadUrl, Codes, GenUrlAuth, GenUrlAuthData, ResetKey, Tagged, UrlFetch, UrlFetchData, UrlFetchItem
from ..proto.response import nstring8
from .authenticated import decode_name, utf8_names

if TYPE_CHECKING:
    from ..server import Connection

log = logging.getLogger("waypost.imap")


async def resetkey(conn: Connection, cmd: ResetKey) -> Tagged:
    assert conn.access is not None
    # RFC 4467 §7.1: a mechanism that is not supported is an error.
    if any(m not in urlauth.MECHANISMS for m in cmd.mechanisms):
        return Tagged(cmd.tag, "BAD", "Unknown URLAUTH mechanism")
    name: str | None = None
    if cmd.mailbox is not None:
        try:
            name = decode_name(cmd.mailbox, utf8_names(conn))
        except ValueError:
            return Tagged(cmd.tag, "NO", "No such mailbox", Codes.NONEXISTENT)
    done = await asyncio.to_thread(urlauth.reset, conn.store, conn.access, name)
    if not done:
        return Tagged(cmd.tag, "NO", "No such mailbox", Codes.NONEXISTENT)
    event(log, "imap-urlauth-resetkey", peer=conn.peer, user=conn.access.address, mailbox=name or "*")
    return Tagged(cmd.tag, "OK", "RESETKEY completed")


async def genurlauth(conn: Connection, cmd: GenUrlAuth) -> Tagged:
    assert conn.access is not None
    if any(m not in urlauth.MECHANISMS for _, m in cmd.urls):
        return Tagged(cmd.tag, "BAD", "Unknown URLAUTH mechanism")
    out: list[str] = []
    for rump, mechanism in cmd.urls:
        try:
            out.append(await asyncio.to_thread(urlauth.authorize, conn.store, conn.access, conn.service.lookup,
                                               rump, mechanism))
        except urlauth.UrlError as e:
            # RFC 4467 §7.2: no URL is authorized when one of them cannot be.
            event(log, "imap-urlauth-badurl", peer=conn.peer, user=conn.access.address, url=rump[:200],
                  reason=str(e))
            return Tagged(cmd.tag, "NO", "Cannot authorize the URL", BadUrl(rump))
    conn.send(GenUrlAuthData(tuple(out)))
    return Tagged(cmd.tag, "OK", "GENURLAUTH completed")


async def urlfetch(conn: Connection, cmd: UrlFetch) -> Tagged:
    assert conn.access is not None
    who = urlauth.Requester(user=(conn.access.domain, conn.access.account))
    for item in cmd.items:
        got = await asyncio.to_thread(urlauth.fetch, conn.store, conn.service.lookup, item.url, who,
                                      conn.access.domain)
        if got is None:
            # RFC 4467 §7.3: a URL that is not valid or not authorized is answered NIL.
            event(log, "imap-urlfetch-nil", peer=conn.peer, user=conn.access.address, url=item.url[:200])
            conn.send(UrlFetchData(item.url))
        elif item.args is None:
            conn.send(UrlFetchData(item.url, got.octets()))
        else:
            conn.send(UrlFetchData(item.url, ext=_extended(got, item)))
        await conn.drain()
    return Tagged(cmd.tag, "OK", "URLFETCH completed")


def _extended(got: urlauth.Fetched, item: UrlFetchItem) -> tuple[tuple[str, bytes], ...]:
    """RFC 5524 §4: the items asked for, in the order BODYPARTSTRUCTURE, BODY, BINARY.
    With BINARY, the structure gives the size and lines of each part as BINARY gives
    it, the encodings as written (what Dovecot answers, and imaptest's urlauth-binary
    expects); a part whose encoding cannot be undone has BINARY NIL and its structure
    as stored."""
    assert item.args is not None
    decoded: bytes | None = None
    if "BINARY" in item.args:
        try:
            decoded = mime.binary_section(got.message, got.part.section.parts) \
                if got.part.section.text is None else got.octets()
        except mime.UnknownCte:
            decoded = None
        if decoded is not None and got.part.partial is not None:
            origin, count = got.part.partial
            decoded = decoded[origin:] if count is None else decoded[origin:origin + count]
    out: list[tuple[str, bytes]] = []
    if "BODYPARTSTRUCTURE" in item.args:
        binary = decoded is not None and got.part.section.text is None
        part = urlauth.part_structure(mime.bodystructure(got.message, binary=binary), got.part.section.parts)
        out.append(("BODYPARTSTRUCTURE", b"NIL" if part is None else part.encode(True)))
    if "BODY" in item.args:
        out.append(("BODY", nstring8(got.octets())))
    if "BINARY" in item.args:
        out.append(("BINARY", nstring8(decoded)))
    return tuple(out)


HANDLERS: dict[str, Any] = {
    "RESETKEY": resetkey,
    "GENURLAUTH": genurlauth,
    "URLFETCH": urlfetch,
}
