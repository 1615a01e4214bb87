"""AUTH (RFC 4954) with the mechanisms PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195).

Passwords are checked by the service's ``authenticate`` callbacks, which also throttle
and log failures across connections; here a connection slows down with each failure
and is closed after the third."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING

from ...directory.session_account import SessionAccount
from ...directory.throttle import log_auth_failed
from ...log import event
from ..proto import Auth, parse_auth
from ..replies import R, Reply

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS"]

log = logging.getLogger("waypost.smtp")


class _Cancelled(Exception):
    """The exchange ended with an answer already sent (cancelled, bad base64)."""


async def auth(s: WaypostSMTP, arg: str | None) -> None:
    # (In a transaction, or before a greeting: refused by the state table.)
    if not s.extended:
        s.send(Reply(500, "5.5.2", "Error: command 'AUTH' not recognized"))
        return
    cram = bool(arg) and (arg or "").split()[0].upper() == "CRAM-MD5"
    if s.settings.smtp.auth_requires_tls and not s.tls and not cram:
        s.send(R.ENCRYPTION_REQUIRED)
        return
    if s.authenticated:
        s.send(Reply(503, "5.5.1", "Already authenticated"))
        return
    command = parse_auth(arg)
    if isinstance(command, Reply):
        s.send(command)
        return
    mechanism = _MECHANISMS.get(command.mechanism)
    if mechanism is None or command.mechanism not in s.auth_methods:
        s.send(Reply(504, "5.5.4", "Unrecognized authentication type"))
        return
    try:
        account = await mechanism(s, command)
    except _Cancelled:
        return
    if account is None:
        # (logged, counted and throttled across connections by the authenticate callback)
        s.auth_failures += 1
        # Slow down guessing: each failure on a connection waits longer.
        await asyncio.sleep(min(0.5 * s.auth_failures, 5.0))
        if s.auth_failures >= 3:
            s.send(Reply(421, "4.7.0", "Too many authentication failures"))
            s.finish()
            return
        s.send(R.AUTH_FAILED)
        return
    event(log, "auth", client=s.client_ip, account=account)
    s.authenticated = True
    s.auth_data = account
    # What each later command checks (SessionAccount): the account as it is now.
    s.account = await asyncio.to_thread(SessionAccount.load, s.service.router.directory.db, account)
    s.send(Reply(235, "2.7.0", "Authentication successful"))


async def challenge(s: WaypostSMTP, text: str) -> bytes:
    """RFC 4954 §4 continuation: "334 base64", then the client's base64 line."""
    s.send("334 " + base64.b64encode(text.encode()).decode(), raw=True)
    line = await s.read_line(s.params.max_auth_line)
    if isinstance(line, Reply):
        s.send(R.PARAM_SYNTAX.with_text("Bad AUTH response line"))
        raise _Cancelled()
    if line.strip() == b"*":
        s.send(Reply(501, "5.7.0", "Authentication cancelled"))
        raise _Cancelled()
    return _b64(s, line.strip())


def _b64(s: WaypostSMTP, text: bytes | str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        s.send(Reply(501, "5.5.2", "Cannot decode base64"))
        raise _Cancelled() from None


async def plain(s: WaypostSMTP, command: Auth) -> str | None:
    # RFC 4616: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    if command.initial is None:
        blob = await challenge(s, "")
    elif command.initial == "=":
        blob = b""
    else:
        blob = _b64(s, command.initial)
    parts = blob.split(b"\x00")
    if len(parts) != 3:
        s.send(Reply(501, "5.5.2", "Cannot split PLAIN credentials"))
        raise _Cancelled()
    authzid, login, password = parts
    if authzid and authzid != login:
        log_auth_failed(s.mode.value, s.client_ip, login.decode("utf-8", "replace"), "authzid")
        s.send(Reply(535, "5.7.8", "Authorization identity must be empty or the login"))
        raise _Cancelled()
    return await _check_login(s, login, password)


async def login(s: WaypostSMTP, command: Auth) -> str | None:
    user = await challenge(s, "Username:") if command.initial is None else _b64(s, command.initial)
    password = await challenge(s, "Password:")
    return await _check_login(s, user, password)


async def cram_md5(s: WaypostSMTP, command: Auth) -> str | None:
    """RFC 2195: the server sends a unique challenge; the client answers with its
    name and HMAC-MD5(secret, challenge) in hex."""
    if command.initial is not None:
        s.send(Reply(501, "5.5.4", "CRAM-MD5 takes no initial response"))
        raise _Cancelled()
    text = f"<{secrets.token_hex(8)}.{int(time.time())}@{s.settings.server.hostname}>"
    blob = await challenge(s, text)
    user, _, digest = blob.decode("utf-8", "replace").strip().rpartition(" ")
    if not user or not re.fullmatch(r"[0-9a-f]{32}", digest):
        s.send(Reply(501, "5.5.2", "Malformed CRAM-MD5 response"))
        raise _Cancelled()
    check = s.service.authenticate_cram
    if check is None:
        return None
    account = await check(user, text, digest, s.server_ip, s.client_ip, s.mode.value)
    return str(account) if account is not None else None


async def _check_login(s: WaypostSMTP, login_b: bytes, password_b: bytes) -> str | None:
    try:
        user, password = login_b.decode("utf-8"), password_b.decode("utf-8")
    except UnicodeDecodeError:
        user, password = "", ""
    if not user:
        log_auth_failed(s.mode.value, s.client_ip, "", "no-login")
        return None
    account = await s.service.authenticate(user, password, s.server_ip, s.client_ip, s.mode.value)
    return str(account) if account is not None else None


_MECHANISMS = {"PLAIN": plain, "LOGIN": login, "CRAM-MD5": cram_md5}

HANDLERS = {"AUTH": auth}
