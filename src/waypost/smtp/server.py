"""The SMTP and submission listeners, on aiosmtpd.

aiosmtpd parses EHLO, STARTTLS and AUTH and keeps the session; this subclass replaces
the parts a mail server needs to own:

* reading: our own buffered reader (``_readline``/``_read_data``) so that a bare CR or
  LF, a NUL, an overlong line or pipelined garbage gets a proper reply instead of a
  hang, DATA is read in large chunks, and plaintext pipelined after STARTTLS is dropped
  (RFC 3207 §4.2, the command-injection attack);
* MAIL and RCPT with their parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH; NOTIFY,
  ORCPT of RFC 3461) and a routing decision per recipient at RCPT time;
* DATA: the Received header, limits, and ``queue.submit`` (fsync before 250);
* replies: every reply carries an enhanced status code (RFC 2034) except the greeting,
  the EHLO/HELO lines and intermediate 334/354 replies.

Session states (RFC 5321 §4.1.4), in the order a client moves through them::

    connected --EHLO/HELO--> greeted --MAIL--> in-transaction --RCPT--> has-recipients
         ^                      ^                                            |
         |                      +--------- RSET / end of DATA ---------------+
         +-- STARTTLS (back to connected: the client must greet again)

A listener never writes a Maildir or spool file itself: it hands messages to the queue.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime
import email.utils
import errno
import inspect
import ipaddress
import logging
import re
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import aiosmtpd.smtp as aiosmtpd_smtp
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, TLSSetupException

from ..address import AddressError, normalize_domain, parse_address
from ..config import Settings
from ..delivery import backs_up
from ..directory.throttle import log_auth_failed
from ..log import event
from ..queue import QueueManager, Recipient, SpoolError
from ..queue.spool import new_message_id
from ..router import Context, Route, Router
from ..rules import Envelope as RuleEnvelope
from ..rules import header_fields
from .replies import R, Reply, default_enhanced

__all__ = ["SMTPService", "WaypostSMTP"]

log = logging.getLogger("waypost.smtp")

_REPLY = re.compile(r"^(\d{3})([ -])(.*)$", re.S)
_HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")
# RFC 3461 §4.2: NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" )
_NOTIFY = re.compile(r"^(NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY))*)$")
# RFC 3461 §4: xtext = *( xchar / hexchar ); ENVID at most 100 characters (§4.4)
_XTEXT = re.compile(r"^([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+$")


@dataclass
class SMTPService:
    """What every SMTP connection shares: settings, router, queue, password checks."""

    settings: Settings
    router: Router
    queue: QueueManager
    # async (login, password, server_ip, client_ip, proto) -> account | None (throttled and logged)
    authenticate: Callable[[str, str, str | None, str | None, str], Any]
    tls_context: ssl.SSLContext | None = None
    # async (login, challenge, hex digest, server_ip, client_ip, proto) -> account | None  (RFC 2195)
    authenticate_cram: Callable[[str, str, str, str | None, str | None, str], Any] | None = None
    # async (address) -> {peer host: Minger code or error text}  (domain sharing)
    ask_peers: Callable[[str], Any] | None = None
    # () -> the server-wide rules now in force (waypost.rules.ServerRules)
    rules: Callable[[], Any] | None = None
    _backup_cache: dict[str, tuple[float, bool]] = field(default_factory=dict)
    sessions: set["WaypostSMTP"] = field(default_factory=set)

    async def shutdown(self, grace: float) -> None:
        """SIGTERM: idle sessions get 421 4.3.0 at once; a session in the middle of a
        message may finish it (and its 250) within ``grace`` seconds, then gets 421 too."""
        for s in list(self.sessions):
            if not s.in_data:
                s.close_with(R.SHUTTING_DOWN)
        deadline = time.monotonic() + grace
        while any(s.in_data for s in self.sessions) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for s in list(self.sessions):
            s.close_with(R.SHUTTING_DOWN)

    async def backup_for(self, domain: str) -> bool:
        """Relay to All Hosts We Backup (seed 004): whether the domain's MX records name
        this server (by host name, or by a non-loopback address of ours) below another
        host.  Asked through DNS, remembered for ``relay.backup_mx_cache`` seconds."""
        now = time.monotonic()
        hit = self._backup_cache.get(domain)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            answer = await backs_up(self.queue.resolver, domain, self.settings.server.hostname,
                                    self.router.own_addresses)
        except Exception as e:  # a DNS failure is no permission; not cached
            event(log, "backup-mx-lookup-failed", level=logging.INFO, domain=domain, error=str(e))
            return False
        if len(self._backup_cache) > 10000:
            self._backup_cache.clear()
        self._backup_cache[domain] = (now + self.settings.relay.backup_mx_cache, answer)
        return answer


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.recipients: list[Recipient] = []
        self.params: dict[str, Any] = {}
        self.rcpt_count = 0
        self.declared_size = 0  # MAIL FROM SIZE= (RFC 1870), 0 when not given


class _IntrospectionCache:
    """aiosmtpd looks at every new connection object with ``inspect.getmembers`` (for
    its ``auth_*`` methods) and ``inspect.signature`` (of the EHLO hook): ~0.1 ms per
    connection.  The answers depend on the class only, so they are computed once per
    class here; aiosmtpd's ``inspect`` is this object (it uses nothing else of it)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._auth_names: dict[type, list[str]] = {}
        self._signatures: dict[Any, Any] = {}

    def getmembers(self, obj: Any) -> list[tuple[str, Any]]:
        names = self._auth_names.get(type(obj))
        if names is None:
            # The class's names (auth_* are methods): dir() of the class, not of the
            # instance, whose __dir__ lists only smtp_* names (WaypostSMTP.__dir__).
            names = self._auth_names[type(obj)] = [n for n in dir(type(obj)) if n.startswith("auth_")]
        return [(n, getattr(obj, n)) for n in names]

    def signature(self, fn: Any) -> Any:
        key = getattr(fn, "__func__", fn)
        sig = self._signatures.get(key)
        if sig is None:
            sig = self._signatures[key] = self._real.signature(fn)
        return sig

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


aiosmtpd_smtp.inspect = _IntrospectionCache(inspect)  # type: ignore[assignment]


class WaypostSMTP(SMTP):
    _smtp_names: tuple[str, ...] | None = None

    def __dir__(self) -> list[str]:
        """aiosmtpd builds its command table from ``dir(self)`` for every connection;
        the ``smtp_*`` names are all it looks for, and they are the class's."""
        cls = type(self)
        if cls._smtp_names is None:
            cls._smtp_names = tuple(n for n in object.__dir__(self) if n.startswith("smtp_"))
        return list(cls._smtp_names)

    def __init__(self, service: SMTPService, *, mode: str = "smtp") -> None:
        """``mode``: "smtp" (relay port, ETRN), "submission" (AUTH before MAIL) or "odmr"
        (RFC 2645: AUTH, then ATRN; no mail is accepted there)."""
        s = service.settings
        self.service = service
        self.mode = mode
        submission = mode == "submission"
        self.submission = submission
        # StreamReader limit; our own reader enforces the real limits.
        self.line_length_limit = 1 << 16
        super().__init__(
            handler=_NoHooks(),
            data_size_limit=s.smtp.max_message_size,
            enable_SMTPUTF8=s.smtp.smtputf8,
            decode_data=False,
            hostname=s.server.hostname,
            ident="ESMTP Waypost",
            tls_context=service.tls_context,
            require_starttls=False,
            timeout=s.smtp.command_timeout,
            auth_required=submission,
            auth_require_tls=s.smtp.auth_requires_tls,
            authenticator=None,
            auth_callback=None,
        )
        if mode != "odmr" and not s.smtp.cram_md5:
            # CRAM-MD5 works only for accounts with a sealed secret, and a client that
            # sees it offered picks it before PLAIN and fails: offered where set.
            self._auth_methods.pop("CRAM-MD5", None)
        self._buf = bytearray()
        self.in_data = False  # reading or committing a message: a shutdown waits for it
        self._errors = 0
        self._auth_failures = 0
        self._raw = False

    # -- envelope / session ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.service.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.service.sessions.discard(self)
        super().connection_lost(error)

    def close_with(self, reply: Reply) -> None:
        """Send a last reply and close (server shutdown)."""
        if self.transport is not None and not self.transport.is_closing():
            try:
                self._writer.write(f"{reply}\r\n".encode())
            except Exception:  # pragma: no cover - transport already gone
                pass
            self.transport.close()

    def _create_envelope(self) -> Envelope:
        return _Envelope()

    @property
    def env(self) -> _Envelope:
        # (aiosmtpd's constructor inspects every attribute before the first envelope exists)
        return self.envelope  # type: ignore[return-value]

    def _client_ip(self) -> str | None:
        peer = self.session.peer if self.session else None
        return peer[0] if isinstance(peer, tuple) else None

    def _server_ip(self) -> str | None:
        if self.transport is None:
            return None
        sock = self.transport.get_extra_info("sockname")
        return sock[0] if isinstance(sock, tuple) else None

    def _context(self) -> Context:
        return Context(kind="mail", client_ip=self._client_ip(), server_ip=self._server_ip(),
                       authenticated=self.session.auth_data if self.session and self.session.authenticated else None)

    # -- replies -------------------------------------------------------------------------

    async def push(self, status: Any) -> None:
        """Send a reply, adding the enhanced status code (RFC 2034 §3) it lacks."""
        if isinstance(status, Reply):
            status = str(status) if status.status else f"{status.code} {status.text}"
        elif isinstance(status, bytes):
            status = status.decode("utf-8", "replace")
        if not self._raw:
            m = _REPLY.match(status)
            if m and m.group(1)[0] in "245" and not _HAS_ENHANCED.match(m.group(3)):
                code = int(m.group(1))
                status = f"{m.group(1)}{m.group(2)}{default_enhanced(code)} {m.group(3)}"
        await super().push(status)

    async def _raw_push(self, status: str) -> None:
        self._raw = True
        try:
            await super().push(status)
        finally:
            self._raw = False

    # -- reading -------------------------------------------------------------------------

    async def _fill(self) -> bool:
        data = await self._reader.read(65536)
        if not data:
            return False
        self._buf += data
        return True

    async def _readline(self, limit: int) -> bytes | Reply | None:
        """One command line without its CRLF; a Reply for a line that is refused as it
        stands (too long, bare LF); None at end of input."""
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                break
            if len(self._buf) > limit:
                # Too long: discard through the end of the line, then answer.
                while True:
                    self._buf.clear()
                    if not await self._fill():
                        return None
                    j = self._buf.find(b"\n")
                    if j >= 0:
                        del self._buf[: j + 1]
                        return R.LINE_TOO_LONG
            start = len(self._buf)
            if not await self._fill():
                return None
        line = bytes(self._buf[: i + 1])
        del self._buf[: i + 1]
        if len(line) > limit:
            return R.LINE_TOO_LONG
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            return R.BARE_LF
        return line[:-2]

    async def challenge_auth(self, challenge: Any, encode_to_b64: bool = True,
                             log_client_response: bool = False) -> Any:
        """RFC 4954 §4 continuation, read through our own buffer."""
        challenge = challenge.encode() if isinstance(challenge, str) else challenge
        await self._raw_push("334 " + (base64.b64encode(challenge) if encode_to_b64 else challenge).decode())
        line = await self._readline(self.service.settings.smtp.max_line_length * 12)
        if line is None:
            raise ConnectionResetError("client went away during AUTH")
        if isinstance(line, Reply):
            await self.push(R.PARAM_SYNTAX.with_text("Bad AUTH response line"))
            return MISSING
        if line.strip() == b"*":
            await self.push(Reply(501, "5.7.0", "Authentication cancelled"))
            return MISSING
        try:
            return base64.b64decode(line.strip(), validate=True)
        except binascii.Error:
            await self.push(Reply(501, "5.5.2", "Cannot decode base64"))
            return MISSING

    # -- the command loop ------------------------------------------------------------------

    async def _handle_client(self) -> None:
        assert self.session is not None
        settings = self.service.settings
        await self._raw_push(f"220 {self.hostname} {self.__ident__}")
        while self.transport is not None:
            try:
                line = await self._readline(max(settings.smtp.max_line_length, 512))
                if line is None:
                    break
                if isinstance(line, Reply):
                    await self._error(line)
                    continue
                if b"\x00" in line:
                    await self._error(R.NUL_IN_COMMAND)
                    continue
                if not line:
                    await self._error(R.BAD_SYNTAX)
                    continue
                command_bytes, _, arg_bytes = line.partition(b" ")
                try:
                    command = command_bytes.upper().decode("ascii")
                    arg: str | None = arg_bytes.strip().decode("utf-8") if arg_bytes.strip() else None
                except UnicodeDecodeError:
                    await self._error(R.NOT_8BIT)
                    continue
                if arg is not None and not arg.isascii() and not settings.smtp.smtputf8:
                    await self._error(R.NOT_8BIT)
                    continue
                method = self._smtp_methods.get(command)
                if method is None:
                    event(log, "unknown-command", level=logging.INFO, client=self._client_ip(), command=command[:20])
                    await self._error(R.UNKNOWN_COMMAND.with_text(f'Command "{command[:20]}" not recognized'))
                    continue
                self._reset_timeout()
                await method(arg)
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except (ConnectionResetError, BrokenPipeError):
                self._writer.close()
                return
            except Exception as error:
                if isinstance(error, TLSSetupException):
                    event(log, "tls-failed", level=logging.INFO, client=self._client_ip(), error=repr(error.__cause__))
                    if self.transport is not None:
                        self.transport.close()
                    return
                log.exception("event=smtp-error client=%s", self._client_ip())
                await self.push(R.LOCAL_ERROR)

    async def _error(self, reply: Reply) -> None:
        """A bad command: answer it, and close after too many (RFC 5321 §4.3.2 lets a
        server do so; we answer 421 first)."""
        self._errors += 1
        if self._errors > self.service.settings.smtp.max_errors:
            event(log, "too-many-errors", level=logging.WARNING, client=self._client_ip())
            await self.push(R.TOO_MANY_ERRORS)
            if self.transport is not None:
                self.transport.close()
            return
        await self.push(reply)

    def _timeout_cb(self) -> None:
        event(log, "timeout", level=logging.INFO, client=self._client_ip())
        if self.transport is not None:
            try:
                self._writer.write(f"{R.TIMEOUT}\r\n".encode())
            except Exception:  # pragma: no cover - transport already closing
                pass
            self.transport.close()

    # -- greeting --------------------------------------------------------------------------

    async def smtp_HELO(self, hostname: str) -> None:
        if not hostname:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: HELO hostname"))
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = False
        self.session.host_name = hostname
        await self._raw_push(f"250 {self.hostname}")

    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: EHLO hostname"))
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self.hostname, "PIPELINING", f"SIZE {self.data_size_limit}", "8BITMIME"]
        if self.enable_SMTPUTF8:
            lines.append("SMTPUTF8")
        lines += ["ENHANCEDSTATUSCODES", "DSN"]
        if self.mode == "smtp":
            lines.append("ETRN")
        if self.mode == "odmr":
            lines.append("ATRN")
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        if not self._auth_require_tls or self._tls_protocol:
            lines.append("AUTH " + " ".join(sorted(self._auth_methods)))
        elif "CRAM-MD5" in self._auth_methods:
            # A challenge-response mechanism shows no password: offered before TLS too
            # (RFC 2645 ODMR clients such as fetchmail use it).
            lines.append("AUTH CRAM-MD5")
        # One write for the whole reply (one segment on the wire, not one per line).
        await self._raw_push("\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{text}" for i, text in enumerate(lines)))

    async def smtp_STARTTLS(self, arg: str) -> None:
        if arg:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: STARTTLS"))
            return
        if not self.tls_context or self._tls_protocol:
            await self.push(R.TLS_UNAVAILABLE)
            return
        # RFC 3207 §4.2: anything the client pipelined after STARTTLS is discarded.
        self._buf.clear()
        self._raw = False
        await super().smtp_STARTTLS(arg)
        self._buf.clear()
        assert self.session is not None
        self.session.host_name = None  # the client must say EHLO again
        self.session.extended_smtp = False

    async def smtp_NOOP(self, arg: str) -> None:
        await self.push(R.OK)

    async def smtp_RSET(self, arg: str) -> None:
        if arg:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: RSET"))
            return
        self._set_rset_state()
        await self.push(R.OK)

    async def smtp_HELP(self, arg: str | None) -> None:
        """RFC 5321 §4.1.1.8: 211 or 214 with help; the commands of this listener, or
        the syntax of one of them; 504 for a topic we have no help for."""
        commands = self._commands()
        if not arg:
            await self.push(R.HELP.with_text("Commands: " + " ".join(commands)))
            return
        topic = arg.split()[0].upper()
        if topic not in commands:
            await self.push(R.HELP_UNKNOWN.with_text(f"HELP topic {topic[:20]} unknown"))
            return
        await self.push(R.HELP.with_text(f"Syntax: {_HELP_SYNTAX[topic]}"))

    def _commands(self) -> list[str]:
        """The commands this listener serves, in the order a session uses them."""
        out = ["EHLO", "HELO"]
        if self.tls_context is not None and not self._tls_protocol:
            out.append("STARTTLS")
        out.append("AUTH")
        if self.mode == "odmr":
            out += ["ATRN", "TURN"]
        else:
            out += ["MAIL", "RCPT", "DATA"]
        out += ["RSET", "NOOP", "VRFY", "HELP", "QUIT"]
        if self.mode == "smtp":
            out.append("ETRN")
        return out

    async def smtp_VRFY(self, arg: str | None) -> None:
        if not arg:  # RFC 5321 §4.1.1.6: VRFY takes a string naming a user or mailbox
            await self.push(R.VRFY_SYNTAX)
            return
        # RFC 5321 §3.5.3: 252 when we will not verify (it would leak accounts).
        await self.push(Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"))

    async def smtp_EXPN(self, arg: str) -> None:
        await self.push(Reply(502, "5.5.1", "EXPN not available"))

    # -- AUTH -----------------------------------------------------------------------------

    async def smtp_AUTH(self, arg: str) -> None:
        if self.envelope is not None and self.env.mail_from is not None:
            # RFC 4954 §4: "The AUTH command is not permitted during a mail transaction."
            await self.push(Reply(503, "5.5.1", "AUTH not permitted during a mail transaction"))
            return
        if arg and arg.split()[0].upper() == "CRAM-MD5" and self._auth_require_tls and not self._tls_protocol:
            self._auth_require_tls = False
            try:
                await super().smtp_AUTH(arg)
            finally:
                self._auth_require_tls = True
            return
        await super().smtp_AUTH(arg)

    async def auth_CRAM__MD5(self, _: Any, args: list[str]) -> AuthResult:
        """RFC 2195: the server sends a unique challenge; the client answers with its
        name and HMAC-MD5(secret, challenge) in hex."""
        if len(args) != 1:
            await self.push(Reply(501, "5.5.4", "CRAM-MD5 takes no initial response"))
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.token_hex(8)}.{int(time.time())}@{self.hostname}>"
        blob = await self.challenge_auth(challenge)
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = blob.decode("utf-8", "replace").strip().rpartition(" ")
        if not user or not re.fullmatch(r"[0-9a-f]{32}", digest):
            await self.push(Reply(501, "5.5.2", "Malformed CRAM-MD5 response"))
            return AuthResult(success=False, handled=True)
        check = self.service.authenticate_cram
        account = await check(user, challenge, digest, self._server_ip(), self._client_ip(), self.mode) if check else None
        return await self._login_result(user, account)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        # RFC 4616: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            if args[1] == "=":
                blob = b""
            else:
                try:
                    blob = base64.b64decode(args[1], validate=True)
                except binascii.Error:
                    await self.push(Reply(501, "5.5.2", "Cannot decode base64"))
                    return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push(Reply(501, "5.5.2", "Cannot split PLAIN credentials"))
            return AuthResult(success=False, handled=True)
        authzid, login, password = parts
        if authzid and authzid != login:
            log_auth_failed(self.mode, self._client_ip(), login.decode("utf-8", "replace"), "authzid")
            await self.push(Reply(535, "5.7.8", "Authorization identity must be empty or the login"))
            return AuthResult(success=False, handled=True)
        return await self._check_login(login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth("Username:")
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await self.push(Reply(501, "5.5.2", "Cannot decode base64"))
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check_login(login, password)

    async def _check_login(self, login_b: bytes, password_b: bytes) -> AuthResult:
        try:
            login, password = login_b.decode("utf-8"), password_b.decode("utf-8")
        except UnicodeDecodeError:
            login, password = "", ""
        if login:
            account = await self.service.authenticate(login, password, self._server_ip(), self._client_ip(), self.mode)
        else:
            account = None
            log_auth_failed(self.mode, self._client_ip(), "", "no-login")
        return await self._login_result(login, account)

    async def _login_result(self, login: str, account: str | None) -> AuthResult:
        if account is None:
            # (logged, counted and throttled across connections by the authenticate callback)
            self._auth_failures += 1
            # Slow down guessing: each failure on a connection waits longer.
            await asyncio.sleep(min(0.5 * self._auth_failures, 5.0))
            if self._auth_failures >= 3:
                await self.push(Reply(421, "4.7.0", "Too many authentication failures"))
                if self.transport is not None:
                    self.transport.close()
                return AuthResult(success=False, handled=True)
            return AuthResult(success=False, handled=False, message=str(R.AUTH_FAILED))
        event(log, "auth", client=self._client_ip(), account=account)
        return AuthResult(success=True, handled=False, auth_data=account,
                          message="235 2.7.0 Authentication successful")

    # -- MAIL -----------------------------------------------------------------------------

    async def _needs(self) -> bool:
        """The checks before a transaction command; True if one failed (and was answered)."""
        assert self.session is not None
        if self.mode == "odmr":  # RFC 2645 §4: the ODMR server takes no mail
            await self.push(Reply(502, "5.5.1", "Mail is not accepted on the ODMR port; use ATRN"))
            return True
        if not self.session.host_name:
            await self.push(R.NEED_HELO)
            return True
        if self._auth_required and not self.session.authenticated:
            await self.push(R.AUTH_REQUIRED)
            return True
        return False

    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self._needs():
            return
        if self.env.mail_from is not None:
            await self.push(R.NESTED_MAIL)
            return
        parsed = _split_path(arg, "FROM:")
        if parsed is None:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: MAIL FROM:<address> [parameters]"))
            return
        path, params = parsed
        assert self.session is not None
        if params and not self.session.extended_smtp:
            await self.push(R.PARAM_SYNTAX.with_text("Parameters need EHLO"))
            return
        sender = path
        if sender:
            try:
                addr = parse_address(sender)
            except AddressError as e:
                await self.push(R.BAD_SENDER.with_text(f"Bad sender address syntax: {e}"))
                return
            sender = str(addr)
        opts: dict[str, Any] = {}
        declared = 0
        for key, value in params:
            if key == "SIZE":
                if not value or not (value.isascii() and value.isdigit()):
                    await self.push(R.PARAM_SYNTAX.with_text("SIZE needs a number"))
                    return
                if int(value) > self.service.settings.smtp.max_message_size:
                    await self.push(R.TOO_BIG)
                    return
                declared = int(value)
            elif key == "BODY":
                if (value or "").upper() not in ("7BIT", "8BITMIME"):
                    await self.push(R.PARAM_SYNTAX.with_text("BODY must be 7BIT or 8BITMIME"))
                    return
                opts["body"] = value.upper()  # type: ignore[union-attr]
            elif key == "SMTPUTF8":
                if value is not None or not self.enable_SMTPUTF8:
                    await self.push(R.UNKNOWN_PARAM.with_text("SMTPUTF8 takes no value" if value else "SMTPUTF8 not offered"))
                    return
                opts["smtputf8"] = True
            elif key == "RET":  # RFC 3461 §4.3
                if (value or "").upper() not in ("FULL", "HDRS"):
                    await self.push(R.PARAM_SYNTAX.with_text("RET must be FULL or HDRS"))
                    return
                opts["ret"] = value.upper()  # type: ignore[union-attr]
            elif key == "ENVID":  # RFC 3461 §4.4
                if not value or len(value) > 100 or not _XTEXT.match(value):
                    await self.push(R.PARAM_SYNTAX.with_text("ENVID must be xtext of at most 100 characters"))
                    return
                opts["envid"] = value
            elif key == "AUTH":  # RFC 4954 §5: accepted; we do not trust it from outside
                continue
            else:
                await self.push(R.UNKNOWN_PARAM.with_text(f"MAIL parameter {key} not recognized"))
                return
        if sender and not sender.isascii() and not opts.get("smtputf8"):
            await self.push(R.SMTPUTF8_REQUIRED)
            return
        if self.session.authenticated and not self._may_send_as(sender):
            event(log, "sender-refused", level=logging.WARNING, client=self._client_ip(),
                  account=self.session.auth_data, sender=f"<{sender}>", where="mail-from")
            await self.push(R.SENDER_NOT_OWNED)
            return
        if sender and self.service.settings.sharing.query_senders:
            refusal = await self._sender_refusal(sender)
            if refusal is not None:
                await self.push(refusal)
                return
        self.env.mail_from = sender
        self.env.params = opts
        self.env.declared_size = declared
        await self.push(R.SENDER_OK)

    async def _sender_refusal(self, sender: str) -> Reply | None:
        """Query Domain Sharing hosts for message senders (seed 002): the refusal for a
        sender in a shared domain that neither we nor a peer have, else None."""
        router = self.service.router
        res = router.check_sender(sender, self._context())
        if res.route.kind == "ask-peers":
            try:
                answers = await self.service.ask_peers(res.route.address) if self.service.ask_peers else {}
            except ValueError:  # not an address Minger can carry: nobody vouches for it
                answers = {}
            res = router.check_sender(sender, dataclasses.replace(self._context(), peer_answers=answers))
        route = res.route
        if route.kind != "refuse":
            return None
        event(log, "sender-refused", level=logging.INFO, client=self._client_ip(), sender=f"<{sender}>",
              reply=f"{route.code} {route.status}", reason=route.reason)
        return Reply(route.code, route.status, route.reason)
    def _may_send_as(self, address: str) -> bool:
        """The authenticated user may use ``address`` as a sender (Directory.may_send_as)."""
        assert self.session is not None
        return self.service.router.directory.may_send_as(str(self.session.auth_data), address)

    def _foreign_from(self, header: bytes) -> str | None:
        """An address of the From: (or Sender:) field the authenticated user may not
        use, or None."""
        fields = header_fields(header)
        values = fields.get("from", []) + fields.get("sender", [])
        for _, address in email.utils.getaddresses(values):
            if not address or not self._may_send_as(address):  # (an empty one: unparsable)
                return address or "(unparsable)"
        return None

    # -- RCPT -----------------------------------------------------------------------------

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self._needs():
            return
        if self.env.mail_from is None:
            await self.push(R.NEED_MAIL)
            return
        parsed = _split_path(arg, "TO:")
        if parsed is None or not parsed[0]:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: RCPT TO:<address> [parameters]"))
            return
        path, params = parsed
        assert self.session is not None
        if params and not self.session.extended_smtp:
            await self.push(R.PARAM_SYNTAX.with_text("Parameters need EHLO"))
            return
        notify = orcpt = ""
        for key, value in params:
            if key == "NOTIFY":  # RFC 3461 §4.1
                v = (value or "").upper()
                if not _NOTIFY.match(v):
                    await self.push(R.PARAM_SYNTAX.with_text("NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY"))
                    return
                notify = v
            elif key == "ORCPT":  # RFC 3461 §4.2: addr-type ";" xtext
                atype, sep, xt = (value or "").partition(";")
                if not sep or not atype or not xt or not _XTEXT.match(xt):
                    await self.push(R.PARAM_SYNTAX.with_text("ORCPT must be addr-type;xtext"))
                    return
                orcpt = value  # type: ignore[assignment]
            else:
                await self.push(R.UNKNOWN_PARAM.with_text(f"RCPT parameter {key} not recognized"))
                return
        if self.env.rcpt_count >= self.service.settings.smtp.max_recipients:
            await self.push(R.TOO_MANY_RCPTS)
            return
        if not path.isascii() and not self.env.params.get("smtputf8"):
            await self.push(R.SMTPUTF8_REQUIRED)
            return
        res = self.service.router.resolve(path, self._context())
        route = res.route
        if route.kind == "ask-peers" and self.service.ask_peers is not None:
            try:
                answers = await self.service.ask_peers(route.address)
            except ValueError:  # not an address Minger can carry: nobody is asked
                answers = {}
            res = self.service.router.resolve(path, dataclasses.replace(self._context(), peer_answers=answers))
            route = res.route
        if (route.kind == "refuse" and route.status == "5.7.1" and self.service.settings.relay.backup_mx
                and route.domain and await self.service.backup_for(route.domain)):
            route = self.service.router.as_backup(path, self._context(), route).route
        if route.kind == "refuse":
            event(log, "rcpt-refused", level=logging.INFO, client=self._client_ip(), sender=f"<{self.env.mail_from}>",
                  rcpt=f"<{path}>", reply=f"{route.code} {route.status}", reason=route.reason)
            if route.code == 550 and route.status == "5.1.1":
                await self._error(Reply(route.code, route.status, route.reason))  # guessing names
            else:
                await self.push(Reply(route.code, route.status, route.reason))
            return
        refusal = self._rule_refusal(path)
        if refusal is not None:
            await self.push(refusal)
            return
        routes = self.service.router.expand(route, ctx=self._context()) if route.kind == "local" else [route]
        if route.kind == "local" and len(routes) == 1 and await self._over_quota(path, routes):
            return
        for r in routes:
            self.env.recipients.append(Recipient(path, r, notify, orcpt))
        self.env.rcpt_count += 1
        self.env.rcpt_tos.append(path)
        await self.push(R.RCPT_OK.with_text(f"<{path}> OK"))

    async def _over_quota(self, path: str, routes: list[Route]) -> bool:
        """Refuse a recipient (one account: a group's full member does not stop the
        others) whose account is full now (or too full for the SIZE the client
        declared) with ``452 4.2.2`` (RFC 3463 X.2.2; temporary: the sender
        retries and may get through once the user makes room)."""
        mailstore = self.service.queue.mailstore
        size = self.env.declared_size
        for r in routes:
            if r.kind != "local" or not r.domain:
                continue
            account = r.account or r.name
            try:
                # Limits come from the directory's cache; usage, only when limited, is
                # one indexed row: cheaper inline than a trip to a thread.
                quota = mailstore.quota(r.domain, account)
            except Exception:  # the index unreadable now: delivery will check again
                log.exception("event=quota-error rcpt=<%s>", path)
                continue
            if quota.full or not quota.room_for(size):
                event(log, "rcpt-refused", level=logging.INFO, client=self._client_ip(),
                      sender=f"<{self.env.mail_from}>", rcpt=f"<{path}>", reply="452 4.2.2", reason="over quota")
                await self.push(R.MAILBOX_FULL)
                return True
        return False

    # -- server-wide rules ------------------------------------------------------------------

    def _rule_envelope(self, recipients: list[str], body: bytes | None = None) -> RuleEnvelope:
        sender = self.env.mail_from or ""
        domain = sender.rpartition("@")[2]
        router = self.service.router
        return RuleEnvelope(
            sender=sender, recipients=recipients,
            authenticated=bool(self.session and self.session.authenticated),
            trusted=router.is_trusted(self._client_ip()),
            local_sender=bool(domain) and router.directory.domain(domain) is not None,
            headers=header_fields(body) if body is not None else {}, size=len(body or b""),
        )

    def _rule_refusal(self, recipient: str) -> Reply | None:
        """A rule that refuses this recipient at once (seed 004), or None."""
        if self.service.rules is None:
            return None
        try:
            hit = self.service.rules().check_recipient(self._rule_envelope([recipient]), recipient)
        except Exception:  # a broken rule never loses mail: as if it had not matched
            log.exception("event=rule-error phase=rcpt")
            return None
        if hit is None:
            return None
        event(log, "rule-rejected", client=self._client_ip(), rule=hit[0], sender=f"<{self.env.mail_from}>",
              rcpt=f"<{recipient}>")
        return Reply(550, "5.7.1", hit[1])

    def _apply_rules(self, body: bytes) -> tuple[Reply | None, list[Recipient], bytes]:
        """After DATA: (a refusal, or None; the recipients; the header fields to add)."""
        recipients = list(self.env.recipients)
        if self.service.rules is None:
            return None, recipients, b""
        try:
            out = self.service.rules().apply(self._rule_envelope(list(self.env.rcpt_tos), body))
            if not out.matched:
                return None, recipients, b""
            event(log, "rules", client=self._client_ip(), sender=f"<{self.env.mail_from}>", matched=",".join(out.matched))
            if out.rejected:
                return Reply(550, "5.7.1", out.rejected), [], b""
            if out.discard:
                return Reply(250, "2.0.0", "OK: discarded by a server rule"), [], b""
            router = self.service.router
            internal = Context(kind="mail", internal=True)

            def routed(address: str, forwarded: bool = False) -> list[Recipient]:
                res = router.resolve(address, internal)
                rs = router.expand(res.route) if res.route.kind == "local" else [res.route]
                if forwarded:
                    rs = [dataclasses.replace(r, forwarded=True) if r.kind == "remote" else r for r in rs]
                return [Recipient(address, r) for r in rs]

            if out.redirect:
                recipients = [r for a in out.redirect for r in routed(a)]
            for a in out.mirror:
                recipients += routed(a)
            for a in out.forward:
                recipients += routed(a, forwarded=True)
            for target in out.store:
                recipients.append(Recipient(target, self._mailbox_route(target)))
            extra = "".join(h + "\r\n" for h in out.add_headers).encode("utf-8")
            return None, recipients, extra
        except Exception:
            log.exception("event=rule-error phase=data")
            return None, list(self.env.recipients), b""

    def _mailbox_route(self, target: str) -> Route:
        """``~account[@domain]/mailbox`` as a local delivery into that mailbox."""
        who, _, mailbox = target[1:].partition("/")
        directory = self.service.router.directory
        name, _, domain = who.partition("@")
        obj = directory.lookup(name, domain or directory.main_domain)
        acct = directory.account_of(obj) if obj is not None else None
        if acct is None:
            raise ValueError(f"store {target}: no such account")
        return Route("local", acct.address, domain=acct.domain, name=acct.name, object_kind="account",
                     account=acct.name, mailbox=mailbox)

    # -- DATA -----------------------------------------------------------------------------

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self._needs():
            return
        if self.env.mail_from is None:
            await self.push(R.NEED_MAIL)
            return
        if not self.env.rcpt_count:
            await self.push(R.NEED_RCPT)
            return
        if arg:
            await self.push(R.PARAM_SYNTAX.with_text("Syntax: DATA"))
            return
        settings = self.service.settings
        await self._raw_push(f"354 {R.DATA_GO.text}")
        self._reset_timeout(settings.smtp.data_timeout)
        self.in_data = True
        try:
            await self._data_phase(settings)
        finally:
            self.in_data = False

    async def _data_phase(self, settings: Settings) -> None:
        try:
            body = await self._read_data(settings.smtp.max_message_size)
        except asyncio.CancelledError:  # the connection was lost (aiosmtpd cancels us)
            event(log, "data-aborted", level=logging.INFO, client=self._client_ip())
            raise
        self._reset_timeout()
        if body is None:  # the client went away: nothing was accepted
            event(log, "data-aborted", level=logging.INFO, client=self._client_ip())
            if self.transport is not None:
                self.transport.close()
            return
        if isinstance(body, Reply):
            self._set_rset_state()
            await self.push(body)
            return
        problem = self._check_body(body)
        if problem is not None:
            event(log, "data-refused", level=logging.INFO, client=self._client_ip(), reply=f"{problem.code} {problem.status}")
            self._set_rset_state()
            await self.push(problem)
            return
        refusal, recipients, added = self._apply_rules(body)
        if refusal is not None:
            self._set_rset_state()
            await self.push(refusal)
            return
        if self.session is not None and self.session.authenticated:
            # The message as it will leave: with the fields rules added.
            foreign = self._foreign_from(added + body)
            if foreign is not None:
                event(log, "sender-refused", level=logging.WARNING, client=self._client_ip(),
                      account=self.session.auth_data, sender=f"<{foreign}>", where="from-header")
                self._set_rset_state()
                await self.push(R.FROM_NOT_OWNED)
                return
        msg_id = new_message_id()
        data = self._received_header(msg_id) + added + body
        if self.submission:
            data = _complete_headers(data, self.hostname)
        env = self.env
        params = dict(env.params, client=self._client_ip(), helo=self.session.host_name if self.session else "",
                      auth=self.session.auth_data if self.session and self.session.authenticated else None)
        self._set_rset_state()
        try:
            queued = await self.service.queue.submit(env.mail_from or "", recipients, data, params, msg_id=msg_id)
        except SpoolError as e:
            event(log, "spool-refused", level=logging.ERROR, client=self._client_ip(), error=str(e))
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            await self.push(R.NO_STORAGE if full else R.LOCAL_ERROR)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=submit-error client=%s", self._client_ip())
            await self.push(R.LOCAL_ERROR)
            return
        await self.push(R.QUEUED.with_text(f"OK: queued as {queued}"))

    async def _read_data(self, limit: int) -> bytes | Reply | None:
        """The message up to CRLF.CRLF, dot-unstuffed (RFC 5321 §4.5.2).  A message over
        ``limit`` is read through and answered 552 (RFC 5321 §4.5.3.1.10)."""
        buf = bytearray(b"\r\n")  # so that ".\r\n" right after 354 ends an empty message
        buf += self._buf
        self._buf.clear()
        start = 0
        too_big = False
        while True:
            end = buf.find(b"\r\n.\r\n", start)
            if end >= 0:
                break
            start = max(0, len(buf) - 4)
            if len(buf) > limit + 2 + 4:
                too_big = True
                keep = bytes(buf[-4:])
                buf = bytearray(keep)
                start = 0
            data = await self._reader.read(262144)
            if not data:
                return None
            buf += data
        self._buf += buf[end + 5:]
        if too_big:
            return R.TOO_BIG
        body = bytes(buf[2:end + 2])
        if len(body) > limit:
            return R.TOO_BIG
        # RFC 5321 §4.5.2: "if the first character is a period ... it is deleted".
        if body.startswith(b"."):
            body = body[1:]
        return body.replace(b"\r\n.", b"\r\n")

    def _check_body(self, body: bytes) -> Reply | None:
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            return R.BODY_BARE_LF
        if b"\x00" in body:
            return R.BODY_NUL
        if not body.isascii() and not self.env.params.get("body") == "8BITMIME" and not self.env.params.get("smtputf8"):
            return R.BODY_8BIT
        max_line = self.service.settings.smtp.max_line_length
        if len(body) > max_line - 2 and max(map(len, body.split(b"\r\n"))) > max_line - 2:
            return R.BODY_LONG_LINE
        return None

    def _received_header(self, msg_id: str) -> bytes:
        """RFC 5321 §4.4 trace field; protocol names of RFC 3848."""
        assert self.session is not None
        helo = self.session.host_name or "unknown"
        ip = self._client_ip() or "unknown"
        proto = "ESMTP" if self.session.extended_smtp else "SMTP"
        if self._tls_protocol is not None:
            proto += "S"
        if self.session.authenticated:
            proto += "A"
        if self.env.params.get("smtputf8"):
            proto = "UTF8" + proto.replace("ESMTP", "SMTP")
        tls = ""
        if self.session.ssl:
            cipher = self.transport.get_extra_info("cipher") if self.transport else None
            if cipher:
                tls = f"\r\n\t(using {cipher[1]} with cipher {cipher[0]})"
        rcpts = self.env.rcpt_tos
        for_clause = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
        date = _date_now()
        return (f"Received: from {_clean(helo)} ([{ip}]){tls}\r\n\tby {self.hostname} (Waypost) with {proto}"
                f" id {msg_id}{for_clause}; {date}\r\n").encode("utf-8")


    # -- on-demand relay: ETRN (RFC 1985), ATRN and TURN (RFC 2645) ---------------------

    async def smtp_ETRN(self, arg: str | None) -> None:
        settings = self.service.settings
        assert self.session is not None
        if self.mode != "smtp":
            await self.push(Reply(502, "5.5.1", "ETRN is served on the SMTP port"))
            return
        if not self.session.host_name:
            await self.push(R.NEED_HELO)
            return
        if self.env.mail_from is not None:  # RFC 1985 §3: not inside a mail transaction
            await self.push(Reply(503, "5.5.1", "ETRN not allowed inside a mail transaction"))
            return
        if not arg or " " in arg.strip():
            await self.push(Reply(501, "5.5.4", "Syntax: ETRN [@|#]domain"))
            return
        node = arg.strip()
        if not _client_in(self._client_ip(), settings.etrn.clients):
            event(log, "etrn-refused", level=logging.WARNING, client=self._client_ip(), node=node)
            await self.push(Reply(459, "4.7.1", f"Node {node} not allowed: this client may not send ETRN"))
            return
        targets, known = self._etrn_targets(node)
        if targets is None:
            await self.push(Reply(501, "5.5.4", f"Bad node name {node}"))
            return
        if not targets and not known:
            await self.push(Reply(459, "4.7.1", f"Node {node} not allowed: no mail is queued or held for it"))
            return
        try:
            started = await self.service.queue.release_now(targets) if targets else 0
        except Exception:
            log.exception("event=etrn-error node=%s", node)
            await self.push(Reply(458, "4.3.0", f"Unable to queue messages for node {node}"))
            return
        event(log, "etrn", client=self._client_ip(), node=node, messages=started)
        if started == 0:
            await self.push(Reply(251, "2.0.0", f"OK, no messages waiting for node {node}"))
        else:
            await self.push(Reply(253, "2.0.0", f"OK, {started} pending messages for node {node} started"))

    def _etrn_targets(self, node: str) -> tuple[list[str] | None, bool]:
        """RFC 1985 §5: "domain", "@domain" (with its subdomains) or "#queue".  Returns
        the queues to start (None: bad syntax) and whether the node is one we serve."""
        db = self.service.router.directory.db
        allowed = [normalize_domain(d) for d in self.service.settings.etrn.domains]  # checked at start
        queued = db.queue_targets()
        held = self.service.router.held_domains()
        if node.startswith("#"):
            name = node[1:].lower()
            target = name if ":" in name else f"mx:{name}"
            ok = not allowed or target.partition(":")[2] in allowed
            return ([target] if ok and target in queued else []), ok and (target in queued or name in held)
        sub = node.startswith("@")
        try:
            domain = normalize_domain(node[1:] if sub else node)
        except AddressError:
            return None, False

        def matches(d: str) -> bool:
            return d == domain or (sub and d.endswith("." + domain))

        permitted = [t for t in queued if t.startswith("mx:") and matches(t[3:]) and (not allowed or t[3:] in allowed)]
        known = bool(permitted) or any(matches(h) and (not allowed or h in allowed) for h in held)
        return permitted, known

    def _releasable(self) -> list[str]:
        """The domains the authenticated account may release with ATRN/TURN: the account
        named after a domain in the main domain (seed 004), and its atrn_domains."""
        assert self.session is not None
        account = str(self.session.auth_data or "")
        name, _, domain = account.partition("@")
        directory = self.service.router.directory
        out = []
        if domain == directory.main_domain and "." in name:
            out.append(name)
        obj = directory.db.get_object(domain, name)
        if obj is not None:
            out.extend(d.lower() for d in obj.data.get("atrn_domains", []))
        return sorted(set(out))

    async def smtp_ATRN(self, arg: str | None) -> None:
        await self._atrn(arg, "ATRN")

    async def smtp_TURN(self, arg: str | None) -> None:
        # RFC 2645 §5 / RFC 821 TURN: only for an authenticated client, meaning "all my domains".
        await self._atrn(None, "TURN")

    async def _atrn(self, arg: str | None, verb: str) -> None:
        assert self.session is not None
        if self.mode != "odmr":
            await self.push(Reply(502, "5.5.1", f"{verb} is served on the ODMR port"))
            return
        if not self.session.host_name:
            await self.push(R.NEED_HELO)
            return
        if not self.session.authenticated:
            await self.push(R.AUTH_REQUIRED)
            return
        may = self._releasable()
        if arg:
            try:
                asked = [normalize_domain(d) for d in arg.split(",") if d.strip()]
            except AddressError:
                await self.push(Reply(501, "5.5.4", f"Syntax: {verb} domain[,domain...]"))
                return
        else:
            asked = may
        refused = [d for d in asked if d not in may]
        if refused or not asked:
            event(log, "atrn-refused", level=logging.WARNING, account=self.session.auth_data, domains=",".join(refused))
            await self.push(Reply(450, "4.7.1", f"{verb} request refused for {', '.join(refused) or 'no domains'}"))
            return
        msgs = await self.service.queue.claim([f"mx:{d}" for d in asked])
        if not msgs:
            await self.push(Reply(453, "4.2.4", "You have no mail"))
            return
        event(log, "atrn", account=self.session.auth_data, domains=",".join(asked), messages=len(msgs))
        await self.push(Reply(250, "2.0.0", "OK now reversing the connection"))
        await self._turned(msgs)

    async def _turned(self, msgs: list[Any]) -> None:
        """RFC 2645 §4: the roles are reversed on this connection: we are the client."""
        queue = self.service.queue
        timeout = self.service.settings.delivery.command_timeout
        peer = f"odmr:{self.session.auth_data if self.session else ''}"
        self._reset_timeout(timeout * 4)
        pending = list(msgs)

        async def reply() -> tuple[int, str, str]:
            lines = []
            while True:
                line = await asyncio.wait_for(self._readline(4096), timeout)
                if line is None or isinstance(line, Reply):
                    raise ConnectionError("the customer's reply was cut or malformed")
                text = line.decode("utf-8", "replace")
                if len(text) < 3 or not text[:3].isdigit():
                    raise ConnectionError(f"not an SMTP reply: {text[:60]!r}")
                lines.append(text[4:])
                if text[3:4] != "-":
                    code = int(text[:3])
                    first = lines[0] if len(lines) == 1 else lines[-1]
                    m = re.match(r"^([245]\.\d{1,3}\.\d{1,3}) (.*)$", first)
                    return code, (m.group(1) if m else default_enhanced(code)), (m.group(2) if m else first)

        async def send(line: str) -> None:
            self._writer.write(line.encode("utf-8") + b"\r\n")
            await self._writer.drain()

        try:
            code, _, text = await reply()
            if code != 220:
                raise ConnectionError(f"greeting {code} {text}")
            await send(f"EHLO {self.hostname}")
            code, _, _ = await reply()
            if code != 250:
                await send(f"HELO {self.hostname}")
                code, _, text = await reply()
                if code != 250:
                    raise ConnectionError(f"HELO refused: {code} {text}")
            while pending:
                msg = pending[0]
                data = await queue.load(msg)
                await send(f"MAIL FROM:<{msg.sender}>")
                code, enh, text = await reply()
                results = []
                if code != 250:
                    results = [(r, code, enh, text) for r in msg.recipients]
                else:
                    accepted = []
                    for r in msg.recipients:
                        await send(f"RCPT TO:<{r.route.get('address') or r.address}>")
                        rc = await reply()
                        if rc[0] in (250, 251):
                            accepted.append(r)
                        else:
                            results.append((r, *rc))
                    if accepted:
                        await send("DATA")
                        code, enh, text = await reply()
                        if code == 354:
                            body = data if data.endswith(b"\r\n") else data + b"\r\n"
                            if body.startswith(b"."):
                                body = b"." + body
                            self._writer.write(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
                            await self._writer.drain()
                            code, enh, text = await reply()
                        else:  # DATA refused: the transaction is over (RFC 5321 §3.3)
                            await send("RSET")
                            await reply()
                        results.extend((r, code, enh, text) for r in accepted)
                    else:
                        await send("RSET")
                        await reply()
                await queue.record(msg, results, peer)
                pending.pop(0)
            await send("QUIT")
            try:
                await reply()
            except (ConnectionError, asyncio.TimeoutError):
                pass
        except (ConnectionError, asyncio.TimeoutError, OSError, asyncio.CancelledError) as e:
            event(log, "atrn-aborted", level=logging.WARNING, peer=peer, error=str(e) or "connection lost",
                  left=len(pending))
            if pending:  # nothing is lost: what was not finished stays queued (and held)
                await asyncio.shield(queue.unclaim(pending))
            if isinstance(e, asyncio.CancelledError):
                raise
        except Exception:  # anything else (a damaged spool file, the index): nothing stays stuck
            log.exception("event=atrn-error peer=%s", peer)
            if pending:
                await asyncio.shield(queue.unclaim(pending))
        finally:
            if self.transport is not None:
                self.transport.close()


#: HELP <command>: the syntax of each command (RFC 5321 §4.1.1, RFC 4954, RFC 3207,
#: RFC 1985, RFC 2645).
_HELP_SYNTAX = {
    "EHLO": "EHLO domain",
    "HELO": "HELO domain",
    "STARTTLS": "STARTTLS",
    "AUTH": "AUTH mechanism [initial-response]",
    "MAIL": "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=FULL|HDRS] [ENVID=id]",
    "RCPT": "RCPT TO:<address> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=type;address]",
    "DATA": "DATA (then the message, ended by a line holding only a dot)",
    "RSET": "RSET",
    "NOOP": "NOOP",
    "VRFY": "VRFY address",
    "HELP": "HELP [command]",
    "QUIT": "QUIT",
    "ETRN": "ETRN [@|#]domain",
    "ATRN": "ATRN [domain[,domain...]]",
    "TURN": "TURN",
}


def _client_in(ip: str | None, networks: list[str]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n, strict=False) for n in networks)


class _NoHooks:
    """aiosmtpd wants a handler object; all our policy lives in ``WaypostSMTP``."""


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The RFC 5322 date-time of now in local time (made once a second: every message
    of a busy second carries the same one)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        local = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).astimezone()
        _date_cache = (now, email.utils.format_datetime(local))
    return _date_cache[1]


def _clean(text: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", text)[:255]


def _split_path(arg: str | None, keyword: str) -> tuple[str, list[tuple[str, str | None]]] | None:
    """``FROM:<path> params`` → (address, [(KEY, value)]), or None when malformed.

    RFC 5321 §4.1.2: Reverse-path / Forward-path = Path;  Path = "<" [ A-d-l ":" ] Mailbox ">"
    A source route (A-d-l) is accepted and ignored (§4.1.1.3, §C)."""
    if arg is None or not arg[: len(keyword)].upper() == keyword:
        return None
    rest = arg[len(keyword):].lstrip()
    if not rest.startswith("<"):
        return None
    # Find the closing ">" outside a quoted local part.
    in_quote = escaped = False
    close = -1
    for i, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif ch == "\\" and in_quote:
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == ">" and not in_quote:
            close = i
            break
    if close < 0:
        return None
    path = rest[1:close]
    if path.startswith("@"):
        route, colon, mailbox = path.partition(":")
        if not colon:
            return None
        path = mailbox
    params: list[tuple[str, str | None]] = []
    for word in rest[close + 1:].split():
        key, eq, value = word.partition("=")
        if not key or not re.match(r"^[A-Za-z0-9][A-Za-z0-9-]*$", key) or (eq and not value):
            return None
        params.append((key.upper(), value if eq else None))
    return path, params


def _complete_headers(data: bytes, hostname: str) -> bytes:
    """RFC 6409 §8.3, §8.4: a submission server may add a missing Date and Message-ID."""
    end = data.find(b"\r\n\r\n")
    header = (data if end < 0 else data[: end + 2]).lower()
    extra = b""
    if b"\r\ndate:" not in b"\r\n" + header:
        extra += f"Date: {_date_now()}\r\n".encode()
    if b"\r\nmessage-id:" not in b"\r\n" + header:
        extra += f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n".encode()
    if not extra:
        return data
    # After our Received field (the first line block), before the client's headers.
    first_end = data.find(b"\r\n", 0)
    while first_end >= 0 and data[first_end + 2:first_end + 3] in (b" ", b"\t"):
        first_end = data.find(b"\r\n", first_end + 2)
    return data[: first_end + 2] + extra + data[first_end + 2:]


def make_tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

