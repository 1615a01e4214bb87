"""STARTTLS, LOGIN and AUTHENTICATE (RFC 3501 §6.2; SASL-IR, RFC 4959; PLAIN, RFC 4616).

Plain-text passwords are taken only under TLS unless ``imap.plaintext_without_tls``
is set (RFC 3501 §6.2.3, LOGINDISABLED).  A failed login is answered after a delay
that doubles with each failure of the connection, and logged; after
``max_failures`` the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TYPE_CHECKING

from ...directory.throttle import log_auth_failed, peer_ip
from ...log import event
from ..proto import Authenticate, CapabilityCode, Codes, Login, R, StartTls, Tagged, Untagged
from ..proto.state import State
from ...mailstore.access import Access
from ..session import Account

if TYPE_CHECKING:
    from ..server import Connection

log = logging.getLogger("waypost.imap")


async def starttls(conn: Connection, cmd: StartTls) -> Tagged | None:
    if conn.service.tls_context is None or conn.tls:
        return Tagged(cmd.tag, "NO" if conn.tls else "BAD", "TLS is already active" if conn.tls else "TLS is not available")
    # RFC 3501 §6.2.1 / RFC 7817: anything the client pipelined after STARTTLS was
    # sent in the clear; it is dropped, never read as a command under TLS.  Reading
    # stops before the OK goes out, so the client's TLS handshake stays in the
    # socket for ``start_tls`` even if ``drain`` waits; what is buffered then is
    # plain text, dropped with no await before ``start_tls`` takes the socket.
    # After that, ``conn.buf`` fills with decrypted octets (the client's first
    # command under TLS may be there before ``start_tls`` returns): they are kept.
    if conn.transport is not None:
        conn.transport.pause_reading()
    conn.send(Tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    await conn.drain()
    if conn.buf:
        event(log, "imap-starttls-injection", peer=conn.peer, octets=len(conn.buf))
        conn.buf = b""
    if not await conn.start_tls():
        conn.state = State.LOGOUT
        conn.buf = b""
    return None


async def _login(conn: Connection, tag: str, login: str, password: str, how: str) -> Tagged | None:
    if not conn.plaintext_allowed():
        return Tagged(tag, "NO", "Use STARTTLS first", Codes.PRIVACYREQUIRED)
    address = await conn.service.authenticate(login, password, conn.server_ip, peer_ip(conn.peer))
    if address is None:
        # (logged, counted and throttled across connections by the authenticate callback)
        conn.failures += 1
        await asyncio.sleep(conn.service.limits.failure_delay * (2 ** (conn.failures - 1)))
        if conn.failures >= conn.service.limits.max_failures:
            conn.send(Tagged(tag, "NO", "Authentication failed", Codes.AUTHENTICATIONFAILED),
                      Untagged("BYE", "Too many failed logins"))
            conn.state = State.LOGOUT
            conn.close()
            return None
        return Tagged(tag, "NO", "Authentication failed", Codes.AUTHENTICATIONFAILED)
    name, _, domain = address.rpartition("@")
    # The settings token read before the look-up: the account as found is what any
    # change made after that token would replace, so the session's first command
    # need not look it up again (``Connection.account_gone``) unless one was made.
    db = conn.store.db
    token = db.settings_token() if db is not None else None
    obj = await asyncio.to_thread(conn.service.lookup, name, domain)
    conn.account = Account(domain, name, obj.created if obj is not None else 0.0)
    if obj is not None and obj.kind == "account" and obj.data.get("enabled", True):
        conn.account_checked(token)
    conn.access = Access(conn.store, domain, name, conn.service.lookup, me=obj)
    conn.failures = 0
    event(log, "imap-login", peer=conn.peer, account=address, mechanism=how)
    # RFC 3501 §7.2.1: the capabilities change once logged in; say so in the OK.
    conn.state = State.AUTHENTICATED
    caps = conn.service.capabilities(conn)
    conn.state = State.NOT_AUTHENTICATED
    return Tagged(tag, "OK", "Logged in", CapabilityCode(caps))


async def login(conn: Connection, cmd: Login) -> Tagged | None:
    return await _login(conn, cmd.tag, cmd.userid, cmd.password, "LOGIN")


async def authenticate(conn: Connection, cmd: Authenticate) -> Tagged | None:
    if cmd.mechanism.upper() != "PLAIN":
        return Tagged(cmd.tag, "NO", f"Unsupported mechanism {cmd.mechanism}", Codes.CANNOT)
    if not conn.plaintext_allowed():
        return Tagged(cmd.tag, "NO", "Use STARTTLS first", Codes.PRIVACYREQUIRED)
    data = cmd.initial_response
    if data is None:
        resp = await conn.read_sasl(cmd.tag)
        if resp is None:
            return None
        if resp.cancelled:
            return R.AUTHENTICATION_CANCELLED.tagged(cmd.tag)
        data = resp.data or b""
    # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    parts = data.split(b"\x00")
    if len(parts) != 3:
        return Tagged(cmd.tag, "BAD", "Malformed PLAIN response")
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return Tagged(cmd.tag, "BAD", "PLAIN response is not UTF-8")
    if authzid and authzid != authcid:
        reply = await _login(conn, cmd.tag, authcid, password, "PLAIN")
        if reply is not None and reply.status == "OK" and conn.account is not None \
                and authzid != conn.account.address:
            conn.account = None
            log_auth_failed("imap", peer_ip(conn.peer), authcid, "authzid")
            return Tagged(cmd.tag, "NO", "Cannot act as another user", Codes.AUTHORIZATIONFAILED)
        return reply
    return await _login(conn, cmd.tag, authcid, password, "PLAIN")


HANDLERS: dict[str, Any] = {"STARTTLS": starttls, "LOGIN": login, "AUTHENTICATE": authenticate}
