"""The ManageSieve listener (RFC 5804): a thin asyncio adapter around ``proto`` and
the command table ``HANDLERS``.  Scripts are read and written through the
``Database`` only, and checked with ``compile_script`` before they are stored: a
script with an error is refused with its line and column (RFC 5804 §2.6: "NO" and a
human-readable reason).

Login: SASL PLAIN (RFC 4616), only after STARTTLS unless
``managesieve.plaintext_without_tls``; the same throttle and ``event=auth-failed``
lines as every other protocol (the ``authenticate`` callback does that).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
from typing import Any, Awaitable, Callable

from ..db import Conflict, Database, NotFound, StorageUnavailable
from ..log import event
from .check import EXTENSIONS, compile_script
from .grammar import SieveError
from .interpret import MAX_REDIRECTS
from .proto import MAX_LINE, BadCommand, Command, NeedData, Reply, State, literal, parse_command, quoted, refusal

__all__ = ["ManageSieveService", "check_script_name"]

log = logging.getLogger("waypost.managesieve")

Authenticate = Callable[[str, str, "str | None", "str | None"], Awaitable["str | None"]]

#: RFC 5804 §1.6: a script name is at most this many characters.
MAX_NAME = 128


def check_script_name(name: str) -> str | None:
    """Why ``name`` cannot name a script, or None (RFC 5804 §1.6: no control
    characters, U+2028, U+2029; we also bound its length)."""
    if not name or len(name) > MAX_NAME:
        return f"a script name is 1 to {MAX_NAME} characters"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in name):
        return "control character in the script name"
    return None


class ManageSieveService:
    """What the sessions of one worker share."""

    def __init__(self, db: Database, authenticate: Authenticate, tls_context: ssl.SSLContext | None, *,
                 hostname: str, plaintext_without_tls: bool = False, idle_timeout: float = 1800.0,
                 max_scripts: int = 32, max_script_size: int = 1024 * 1024, failure_delay: float = 1.0,
                 max_failures: int = 3) -> None:
        self.db = db
        self.authenticate = authenticate
        self.tls_context = tls_context
        self.hostname = hostname
        self.plaintext_without_tls = plaintext_without_tls
        self.idle_timeout = idle_timeout
        self.max_scripts = max_scripts
        self.max_script_size = max_script_size
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.sessions: set[Session] = set()
        self.closing = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    async def shutdown(self, grace: float) -> None:
        self.closing = True
        for s in list(self.sessions):
            s.bye("Server shutting down")


class Session:
    __slots__ = ("service", "reader", "writer", "buf", "state", "tls", "peer", "server_ip", "user", "domain",
                 "account", "created", "failures", "bad")

    def __init__(self, service: ManageSieveService, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        self.buf = b""
        self.state = State.NOT_AUTHENTICATED
        self.tls = False
        peer = writer.get_extra_info("peername")
        sock = writer.get_extra_info("sockname")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server_ip: str | None = sock[0] if sock else None
        self.user = ""
        self.domain = ""
        self.account = ""
        self.created = 0.0  # the account object's creation time: a name made again is another account
        self.failures = 0
        self.bad = 0

    # -- output ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def bye(self, text: str) -> None:
        self.write(Reply("BYE", text).encode())
        self.writer.close()

    def capabilities(self) -> bytes:
        """RFC 5804 §1.7: one capability per line, then OK."""
        svc = self.service
        plain_ok = self.tls or svc.plaintext_without_tls
        lines = [(b'"IMPLEMENTATION"', quoted("Waypost")),
                 (b'"SIEVE"', quoted(" ".join(EXTENSIONS))),
                 (b'"SASL"', quoted("PLAIN" if plain_ok and self.state is State.NOT_AUTHENTICATED else "")),
                 (b'"MAXREDIRECTS"', quoted(str(MAX_REDIRECTS))),
                 (b'"VERSION"', quoted("1.0")),
                 (b'"UNAUTHENTICATE"', b"")]  # RFC 5804 §2.14
        if svc.tls_context is not None and not self.tls and self.state is State.NOT_AUTHENTICATED:
            lines.append((b'"STARTTLS"', b""))
        if self.state is State.AUTHENTICATED:
            lines.append((b'"OWNER"', quoted(self.user)))
        return b"".join(k + (b" " + v if v else b"") + b"\r\n" for k, v in lines)

    # -- input ----------------------------------------------------------------------

    async def _more(self) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), self.service.idle_timeout)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError):
            return False
        if not data:
            return False
        self.buf += data
        return True

    async def next_command(self) -> Command | BadCommand | None:
        while True:
            got, used = parse_command(self.buf, self.service.max_script_size + 1024)
            if isinstance(got, NeedData):
                if self.service.closing or not await self._more():
                    return None
                continue
            self.buf = self.buf[used:]
            return got

    async def read_string(self) -> str | None:
        """A client's SASL response line: a quoted string or a literal (RFC 5804
        §2.1); None for the cancel ("*") or a broken line."""
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_LINE or not await self._more():
                return None
        if self.buf.startswith(b"*\r\n"):
            self.buf = self.buf[3:]
            return None
        # Parsed as the argument of a command with no name of its own.
        got, used = parse_command(b"X " + self.buf)
        while isinstance(got, NeedData):
            if not await self._more():
                return None
            got, used = parse_command(b"X " + self.buf)
        self.buf = self.buf[max(used - 2, 0):]
        if isinstance(got, BadCommand) or len(got.args) != 1 or not isinstance(got.args[0], str):
            return None
        return got.args[0]

    # -- the session ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self.service.closing:
                self.bye("Server shutting down")
                return
            self.write(self.capabilities() + Reply("OK", f"{self.service.hostname} ManageSieve ready").encode())
            event(log, "managesieve-connect", peer=self.peer)
            while self.state is not State.LOGOUT:
                cmd = await self.next_command()
                if cmd is None:
                    break
                if isinstance(cmd, BadCommand):
                    event(log, "managesieve-bad-command", peer=self.peer, detail=cmd.reason)
                    self.write(Reply("NO", cmd.reason).encode())
                    self.bad += 1
                    if self.bad >= 10:
                        self.bye("Too many bad commands")
                        return
                    continue
                refused = refusal(cmd, self.state)
                if refused is not None:
                    event(log, "managesieve-bad-command", peer=self.peer, command=cmd.name, detail=refused.text)
                    self.write(refused.encode())
                    continue
                self.bad = 0
                if self.state is State.AUTHENTICATED and not await self._account_still_there():
                    # Removed, disabled or made again under its name (another customer's
                    # account now): this login is void (RFC 5804 §1.3 BYE).
                    event(log, "managesieve-account-gone", peer=self.peer, account=self.user)
                    self.bye("The account was removed or changed; log in again")
                    return
                try:
                    reply = await HANDLERS[cmd.name](self, cmd)
                except StorageUnavailable as e:  # RFC 5804 §1.3: TRYLATER, a temporary failure
                    event(log, "storage-unavailable", level=logging.ERROR, peer=self.peer, command=cmd.name,
                          error=str(e))
                    reply = Reply("NO", "The database cannot be reached now; try again later", "TRYLATER")
                except Exception as e:  # a bug: the client gets NO, the session goes on
                    log.exception("event=managesieve-error peer=%s command=%s error=%r", self.peer, cmd.name, e)
                    reply = Reply("NO", "Internal error")
                if reply is not None:
                    self.write(reply.encode())
                if self.failures >= self.service.max_failures:
                    self.bye("Too many failed logins")
                    return
                await self.writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            if not self.writer.is_closing():
                self.writer.close()

    async def _account_still_there(self) -> bool:
        """Whether the account this session logged in to is still the same enabled account."""
        obj = await asyncio.to_thread(self.service.db.get_object, self.domain, self.account)
        return (obj is not None and obj.kind == "account" and obj.created == self.created
                and bool(obj.data.get("enabled", True)))

    # -- what the handlers share ----------------------------------------------------

    def script_arg(self, name: Any) -> str | Reply:
        if not isinstance(name, str):
            return Reply("NO", "A script name is a string")
        problem = check_script_name(name)
        return Reply("NO", problem) if problem else name


# -- handlers (RFC 5804 §2), one per command ----------------------------------------


async def _capability(s: Session, cmd: Command) -> Reply:
    s.write(s.capabilities())
    return Reply("OK", "CAPABILITY completed")


async def _logout(s: Session, cmd: Command) -> Reply:
    s.state = State.LOGOUT
    return Reply("OK", "Logout completed")


async def _noop(s: Session, cmd: Command) -> Reply:
    # RFC 5804 §2.13: an argument is echoed back in a TAG response code.
    if cmd.args and isinstance(cmd.args[0], str):
        return Reply("OK", "Done", "TAG " + quoted(cmd.args[0]).decode())
    return Reply("OK", "Done")


async def _starttls(s: Session, cmd: Command) -> Reply | None:
    ctx = s.service.tls_context
    if ctx is None or s.tls:
        return Reply("NO", "TLS is not available" if ctx is None else "TLS is active already")
    s.write(Reply("OK", "Begin TLS negotiation now").encode())
    await s.writer.drain()
    s.buf = b""  # nothing sent in clear text behind STARTTLS is read as if over TLS
    try:
        await s.writer.start_tls(ctx)
    except (ssl.SSLError, OSError, ConnectionError) as e:
        event(log, "managesieve-tls-failed", peer=s.peer, error=str(e) or type(e).__name__)
        s.state = State.LOGOUT
        return None
    s.tls = True
    # RFC 5804 §2.2: the capabilities again, as they are under TLS.
    s.write(s.capabilities())
    return Reply("OK", "TLS negotiation successful")


async def _authenticate(s: Session, cmd: Command) -> Reply:
    mech = cmd.args[0]
    if not isinstance(mech, str) or mech.upper() != "PLAIN":
        return Reply("NO", "Only SASL PLAIN is offered")
    if not (s.tls or s.service.plaintext_without_tls):
        return Reply("NO", "Use STARTTLS before sending a password", "ENCRYPT-NEEDED")
    if len(cmd.args) == 2:
        response = cmd.args[1]
        if not isinstance(response, str):
            return Reply("NO", "The initial response is a string")
    else:
        s.write(b'""\r\n')  # RFC 5804 §2.1: an empty challenge
        await s.writer.drain()
        got = await s.read_string()
        if got is None:
            return Reply("NO", "Authentication cancelled")
        response = got
    try:
        authzid, authcid, password = base64.b64decode(response, validate=True).decode("utf-8").split("\0")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return Reply("NO", "Malformed PLAIN response")
    if authzid and authzid != authcid:
        return await _failed(s, authcid, "No authorization to act as another user", "AUTHZ-FAILED")
    address = await s.service.authenticate(authcid, password, s.server_ip, s.peer.rpartition(":")[0] or None)
    if address is None:
        return await _failed(s, authcid, "Authentication failed")
    name, _, domain = address.partition("@")
    obj = await asyncio.to_thread(s.service.db.get_object, domain, name)
    s.user, s.account, s.domain = address, name, domain
    s.created = obj.created if obj is not None else 0.0
    s.state = State.AUTHENTICATED
    event(log, "managesieve-login", peer=s.peer, account=address)
    return Reply("OK", "Authenticated")


async def _failed(s: Session, login: str, text: str, code: str = "") -> Reply:
    s.failures += 1
    delay = s.service.failure_delay * 2 ** (s.failures - 1)
    if delay > 0:
        await asyncio.sleep(min(delay, 4.0))
    return Reply("NO", text, code)


async def _unauthenticate(s: Session, cmd: Command) -> Reply:
    s.state = State.NOT_AUTHENTICATED
    s.user = s.account = s.domain = ""
    return Reply("OK", "Unauthenticated")


def _space(s: Session, name: str, size: int) -> Reply | None:
    """NO (QUOTA/...) when a script of ``size`` octets named ``name`` would not fit."""
    svc = s.service
    if size > svc.max_script_size:
        return Reply("NO", f"A script may have at most {svc.max_script_size} octets", "QUOTA/MAXSIZE")
    names = [n for n, _a in svc.db.sieve_list(s.domain, s.account)]
    if name not in names and len(names) >= svc.max_scripts:
        return Reply("NO", f"At most {svc.max_scripts} scripts", "QUOTA/MAXSCRIPTS")
    return None


async def _havespace(s: Session, cmd: Command) -> Reply:
    name = s.script_arg(cmd.args[0])
    if isinstance(name, Reply):
        return name
    size = cmd.args[1]
    if not isinstance(size, int):
        return Reply("NO", "HAVESPACE takes a script name and a number")
    return await asyncio.to_thread(_space, s, name, size) or Reply("OK", "Putscript would succeed")


def _check(text: str) -> Reply | None:
    try:
        compile_script(text)
    except SieveError as e:
        return Reply("NO", str(e))
    return None


async def _putscript(s: Session, cmd: Command) -> Reply:
    name = s.script_arg(cmd.args[0])
    if isinstance(name, Reply):
        return name
    text = cmd.args[1]
    if not isinstance(text, str):
        return Reply("NO", "The script is a string")
    refused = await asyncio.to_thread(_space, s, name, len(text.encode("utf-8"))) or _check(text)
    if refused is not None:
        event(log, "managesieve-refused", peer=s.peer, account=s.user, script=name, reason=refused.text)
        return refused
    await asyncio.to_thread(s.service.db.sieve_put, s.domain, s.account, name, text)
    event(log, "managesieve-put", peer=s.peer, account=s.user, script=name, size=len(text))
    return Reply("OK", "PUTSCRIPT completed")


async def _checkscript(s: Session, cmd: Command) -> Reply:
    text = cmd.args[0]
    if not isinstance(text, str):
        return Reply("NO", "The script is a string")
    return _check(text) or Reply("OK", "Script is valid")


async def _listscripts(s: Session, cmd: Command) -> Reply:
    rows = await asyncio.to_thread(s.service.db.sieve_list, s.domain, s.account)
    s.write(b"".join(quoted(n) + (b" ACTIVE" if active else b"") + b"\r\n" for n, active in rows))
    return Reply("OK", "LISTSCRIPTS completed")


async def _setactive(s: Session, cmd: Command) -> Reply:
    name = cmd.args[0]
    if not isinstance(name, str):
        return Reply("NO", "A script name is a string")
    try:  # RFC 5804 §2.8: "" deactivates
        await asyncio.to_thread(s.service.db.sieve_activate, s.domain, s.account, name or None)
    except NotFound:
        return Reply("NO", "There is no script by that name", "NONEXISTENT")
    event(log, "managesieve-setactive", peer=s.peer, account=s.user, script=name)
    return Reply("OK", "SETACTIVE completed")


async def _getscript(s: Session, cmd: Command) -> Reply:
    name = cmd.args[0]
    text = await asyncio.to_thread(s.service.db.sieve_get, s.domain, s.account, str(name))
    if text is None:
        return Reply("NO", "There is no script by that name", "NONEXISTENT")
    s.write(literal(text.encode("utf-8")) + b"\r\n")
    return Reply("OK", "GETSCRIPT completed")


async def _deletescript(s: Session, cmd: Command) -> Reply:
    try:
        await asyncio.to_thread(s.service.db.sieve_delete, s.domain, s.account, str(cmd.args[0]))
    except NotFound:
        return Reply("NO", "There is no script by that name", "NONEXISTENT")
    except Conflict:
        return Reply("NO", "The active script cannot be deleted", "ACTIVE")
    event(log, "managesieve-delete", peer=s.peer, account=s.user, script=str(cmd.args[0]))
    return Reply("OK", "DELETESCRIPT completed")


async def _renamescript(s: Session, cmd: Command) -> Reply:
    new = s.script_arg(cmd.args[1])
    if isinstance(new, Reply):
        return new
    try:
        await asyncio.to_thread(s.service.db.sieve_rename, s.domain, s.account, str(cmd.args[0]), new)
    except NotFound:
        return Reply("NO", "There is no script by that name", "NONEXISTENT")
    except Conflict:
        return Reply("NO", "A script by the new name exists", "ALREADYEXISTS")
    return Reply("OK", "RENAMESCRIPT completed")


HANDLERS: dict[str, Callable[[Session, Command], Awaitable[Reply | None]]] = {
    "CAPABILITY": _capability,
    "LOGOUT": _logout,
    "NOOP": _noop,
    "STARTTLS": _starttls,
    "AUTHENTICATE": _authenticate,
    "UNAUTHENTICATE": _unauthenticate,
    "HAVESPACE": _havespace,
    "PUTSCRIPT": _putscript,
    "CHECKSCRIPT": _checkscript,
    "LISTSCRIPTS": _listscripts,
    "SETACTIVE": _setactive,
    "GETSCRIPT": _getscript,
    "DELETESCRIPT": _deletescript,
    "RENAMESCRIPT": _renamescript,
}
