"""Commands of the AUTHORIZATION state: USER, PASS (RFC 1939 §7), AUTH (RFC 5034 §4,
mechanism PLAIN, RFC 4616) and STLS (RFC 2595 §4).

Plain-text logins need TLS unless ``plaintext_without_tls`` is set (RFC 2595 §2.2:
"Clients and servers MUST implement STARTTLS ... and SHOULD NOT send or accept
passwords in the clear").  Checking the password is the ``authenticate`` callback's
business, and so is every form of login name (``name``, ``name@domain``,
``name%domain``, the domain of the address the client connected to): they are
passed through untouched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ...directory.session_account import SessionAccount
from ...directory.throttle import peer_ip
from ...log import event
from ..maildrop import Maildrop
from ..proto import (
    CANCEL,
    Auth,
    AuthList,
    Continuation,
    LineTooLong,
    MultiLine,
    Pass,
    R,
    Rejected,
    Reply,
    Response,
    Stls,
    User,
    decode_plain,
    parse_sasl_response,
)

if TYPE_CHECKING:
    from ..server import Session

__all__ = ["HANDLERS", "login"]

log = logging.getLogger("waypost.pop3")

MECHANISMS = ("PLAIN",)


async def user(session: Session, command: User) -> Response:
    if not session.plaintext_allowed():
        return R.PLAINTEXT_DISABLED
    session.user = command.user
    return R.USER_OK


async def pass_(session: Session, command: Pass) -> Response:
    name, session.user = session.user, None
    assert name is not None  # the state table lets PASS in only after USER
    return await login(session, name, command.password)


async def auth_list(session: Session, command: AuthList) -> Response:
    # RFC 1734 (obsolete, still sent): a bare AUTH lists the mechanisms.
    return MultiLine.of_lines(R.MECHANISMS, MECHANISMS if session.plaintext_allowed() else ())


async def auth(session: Session, command: Auth) -> Response:
    if command.mechanism not in MECHANISMS:
        return R.UNSUPPORTED_MECHANISM
    if not session.plaintext_allowed():
        return R.PLAINTEXT_DISABLED
    data = command.initial
    if data is None:
        # RFC 5034 §4: no initial response, so an empty challenge.
        session.send(Continuation())
        line = await session.next_line(session.params.max_sasl_line_length)
        if line is None:
            return R.AUTH_CANCELLED
        if isinstance(line, LineTooLong):
            return R.LINE_TOO_LONG
        try:
            answer = parse_sasl_response(line.data)
        except Rejected as refused:
            return refused.reply
        if answer is CANCEL:
            return R.AUTH_CANCELLED
        assert isinstance(answer, bytes)
        data = answer
    try:
        authzid, authcid, password = decode_plain(data)
    except Rejected as refused:
        return refused.reply
    return await login(session, authcid, password, authzid)


async def login(session: Session, name: str, password: str, authzid: str = "") -> Reply:
    """Check the credentials, then lock and open the maildrop (RFC 1939 §4)."""
    svc = session.service
    try:
        address = await svc.authenticate(name, password, session.server_ip, peer_ip(session.peer))
    except Exception as e:
        log.error("event=pop3-auth-error peer=%s login=%s error=%r", session.peer, name, e)
        return R.LOGIN_UNAVAILABLE
    if address is None:
        return await session.login_failed(name, "bad credentials")
    if authzid and authzid not in (name, address):
        return await session.login_failed(name, "authorization identity refused", R.AUTHZID_REFUSED)
    # The credentials are right: the run of failures "in a row" ends here, also when
    # the maildrop turns out to be locked (IN-USE) and the client tries again.
    session.failures = 0
    account, at, domain = address.rpartition("@")
    if not at or not account or not domain:
        log.error("event=pop3-auth-error peer=%s login=%s error=%r", session.peer, name,
                  f"authenticate returned {address!r}, not name@domain")
        return R.LOGIN_UNAVAILABLE
    try:
        drop = Maildrop.open(svc.mailstore, domain, account)
    except Exception as e:
        log.error("event=pop3-maildrop-error peer=%s account=%s error=%r", session.peer, address, e)
        return R.LOGIN_UNAVAILABLE
    if drop is None:
        # RFC 2449 §8.1.1: IN-USE.  The credentials were right: no failure counted.
        event(log, "pop3-in-use", peer=session.peer, account=address)
        return R.IN_USE
    session.maildrop = drop
    if svc.mailstore.db is not None:  # (what each later command checks: SessionAccount)
        session.account = await asyncio.to_thread(SessionAccount.load, svc.mailstore.db, address)
    count, size = drop.stat()
    event(log, "pop3-login", peer=session.peer, account=address, tls=session.tls, messages=count)
    return R.LOGGED_IN.format(count=count, size=size)


async def stls(session: Session, command: Stls) -> Response | None:
    if session.tls:
        return R.STLS_ACTIVE
    if session.service.tls_context is None:
        return R.STLS_UNAVAILABLE
    session.send(R.STLS_BEGIN)
    session.user = None
    await session.start_tls()
    return None


HANDLERS: dict[str, Callable[[Session, Any], Awaitable[Response | None]]] = {
    "USER": user,
    "PASS": pass_,
    "AUTH": auth,
    "AUTH-LIST": auth_list,
    "STLS": stls,
}
