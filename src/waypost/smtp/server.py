"""The SMTP, submission, ODMR and LMTP listeners: a thin asyncio adapter around
``waypost.smtp.proto``.

One ``WaypostSMTP`` per client.  ``data_received`` only feeds the connection's
buffer; one task per session takes the commands out in order, checks each against
the state table (``proto.state``) and runs it through the handler table
(``waypost.smtp.commands``), so a pipelining client (RFC 2920) gets its replies in
order.  A client that sends faster than it reads is paused (flow control both ways),
never the whole worker.

What this module owns: reading (with the command and DATA time-outs), writing,
the TLS upgrade (RFC 3207: what was pipelined behind STARTTLS in clear text is
dropped), the count of bad commands, and a graceful stop (a message being received
may finish).  Every decision about a command is a handler's.

A listener never writes a Maildir or spool file itself: it hands messages to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import tlslayer
from ..certs import make_tls_context
from ..config import Settings
from ..db import StorageUnavailable
from ..delivery import backs_up
from ..directory.session_account import SessionAccount
from ..flag import Flag
from ..log import event
from ..queue import QueueManager, Recipient
from ..router import Context, Router
from .proto import (
    BodyCheck,
    Connection,
    Line,
    MailOptions,
    Mode,
    NeedData,
    Params,
    State,
    TextEnd,
    multiline,
    refusal,
    state_of,
    wire,
)
from .replies import R, Reply

if TYPE_CHECKING:
    from .commands.text import MessageText

__all__ = ["SMTPService", "WaypostSMTP", "make_tls_context"]

log = logging.getLogger("waypost.smtp")

#: Octets buffered from a client (pipelined commands, message text not yet taken)
#: above which we stop reading from it.
_READ_HIGH = 512 * 1024


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
    # BURL (RFC 4468): the mail store whose URLAUTH URLs submission resolves, and
    # (name, domain) -> the account it stands for, as the IMAP listener looks users up
    mailstore: Any = None
    lookup_account: Callable[[str, str], Any] | None = None
    _backup_cache: dict[str, tuple[float, bool]] = field(default_factory=dict)
    # The inbound checks' DNS (waypost.mailauth.Lookup), made at first use: one resolver
    # per worker, whose cache keeps answers for their TTL (see smtp/commands/inbound.py).
    mailauth_lookup: Any = None
    sessions: set["WaypostSMTP"] = field(default_factory=set)
    _params: dict[Mode, Params] = field(default_factory=dict)

    def params(self, mode: Mode) -> Params:
        p = self._params.get(mode)
        if p is None:
            s = self.settings.smtp
            p = self._params[mode] = Params(mode=mode, max_line_length=s.max_line_length,
                                            max_message_size=s.max_message_size,
                                            max_auth_line=s.max_line_length * 12, smtputf8=s.smtputf8,
                                            burl=mode is Mode.SUBMISSION and self.mailstore is not None)
        return p

    def protocol_factory(self, mode: str | Mode) -> Callable[[], "WaypostSMTP"]:
        """For ``Acceptor(loop, sock, service.protocol_factory("smtp"))`` (``waypost.acceptor``)."""
        return lambda: WaypostSMTP(self, mode=mode)

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


#: The handler table and the verbs that check their own state, imported at the first
#: session (not at every one: an import statement costs even when the module is loaded).
_TABLE: tuple[dict[str, Any], frozenset[str]] | None = None


def _time_up(waiter: "asyncio.Future[bool]") -> None:
    if not waiter.done():
        waiter.set_result(True)


class ClientGone(Exception):
    """The client went away (or timed out) while a handler waited for it."""


class WaypostSMTP(asyncio.Protocol):
    """One client of one SMTP listener; see the module docstring.

    The handlers read and change the session through its attributes: the greeting
    (``host_name``, ``extended``), the login (``authenticated``, ``auth_data``), the
    transaction (``mail_from``, ``options``, ``recipients``, ``rcpt_tos``, and the BDAT
    chunks taken so far), and talk to the client through ``send``, ``read_line`` and
    ``read_text``."""

    __slots__ = (
        "service", "settings", "mode", "params", "conn", "transport", "peer", "client_ip", "server_ip",
        "tls", "host_name", "extended", "authenticated", "auth_data", "account", "auth_methods",
        "mail_from", "options", "recipients", "rcpt_tos", "chunks", "chunk_check", "chunk_size",
        "in_data", "errors", "auth_failures", "task", "_waiter", "_writable", "_eof", "_paused", "_closed", "_done", "_out",
    )

    def __init__(self, service: SMTPService, *, mode: str | Mode = "smtp") -> None:
        """``mode``: "smtp" (relay port, ETRN), "submission" (AUTH before MAIL), "odmr"
        (RFC 2645: AUTH, then ATRN; no mail is accepted there) or "lmtp" (RFC 2033)."""
        self.service = service
        self.settings = service.settings
        self.mode = mode if isinstance(mode, Mode) else Mode(mode)
        self.params = service.params(self.mode)
        self.conn = Connection(self.params)
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.client_ip: str | None = None
        self.server_ip: str | None = None
        self.tls = False
        self.host_name: str | None = None
        self.extended = False
        self.authenticated = False
        self.auth_data: str | None = None
        self.account: SessionAccount | None = None  # the account logged in to, as it was then
        methods = {"CRAM-MD5", "LOGIN", "PLAIN"}
        if self.mode is not Mode.ODMR and not self.settings.smtp.cram_md5:
            # CRAM-MD5 works only for accounts with a sealed secret, and a client that
            # sees it offered picks it before PLAIN and fails: offered where set.
            methods.discard("CRAM-MD5")
        self.auth_methods = sorted(methods)
        self.mail_from: str | None = None
        self.options = MailOptions()
        self.recipients: list[Recipient] = []
        self.rcpt_tos: list[str] = []
        self.chunks: MessageText | None = None  # the BDAT chunks of this transaction
        self.chunk_check: BodyCheck | None = None
        self.chunk_size = 0
        self.in_data = False  # reading or committing a message: a shutdown waits for it
        self.errors = 0
        self.auth_failures = 0
        self.task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[bool] | None = None  # _more waits for input on it
        self._writable = Flag()
        self._writable.set()
        self._eof = False
        self._paused = False
        self._closed = False
        self._done = False  # QUIT, 421, time-out: nothing more is read
        self._out: list[bytes] = []  # replies not yet written (see write)

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.transport is not None:  # the TLS transport replacing the plain one
            return
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client_ip = self.peer[0] if isinstance(self.peer, tuple) else None
        self.server_ip = sock[0] if isinstance(sock, tuple) else None
        # An implicit-TLS listener (RFC 8314, submissions): TLS from the first octet.
        self.tls = transport.get_extra_info("ssl_object") is not None
        self.service.sessions.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.conn.feed(data)
        self._wake()
        if len(self.conn) > _READ_HIGH and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        # Keep our half open: what the client sent before its EOF (a pipelined QUIT)
        # is still answered.  (An SSL transport cannot be half-closed.)
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._closed = True
        self._wake()
        self._writable.set()
        self.service.sessions.discard(self)

    def _wake(self) -> None:
        """Input (or its end) for the session waiting in ``_more``."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- output ---------------------------------------------------------------------

    def send(self, reply: Reply | str, raw: bool = False) -> None:
        """Write one reply (an enhanced status code added where it lacks one)."""
        self.write(wire(reply, raw))

    def send_lines(self, code: int, lines: list[str]) -> None:
        self.write(multiline(code, lines))

    def write(self, data: bytes) -> None:
        """Queue octets for the client.  They are written (one system call for all the
        replies queued) before the session waits for the client, so the replies to
        pipelined commands (RFC 2920) leave together, in order."""
        self._out.append(data)

    def flush(self) -> None:
        out = self._out
        if not out:
            return
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    async def drain(self) -> None:
        """Wait while the client does not read what we sent (at most the command
        time-out); ClientGone when it never does."""
        self.flush()
        if not self._writable.is_set():
            try:
                await asyncio.wait_for(self._writable.wait(), self.settings.smtp.command_timeout)
            except asyncio.TimeoutError:
                self._timed_out()
                raise ClientGone() from None
        if self._closed:
            raise ClientGone()

    def close(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    async def _account_gone(self) -> bool:
        """True (421 sent, the session closing) when the account this session logged in
        to was removed, disabled or made again under its name (another customer's
        account now) since: no more mail is sent in its name, as IMAP's sessions end.
        While the database cannot be reached the session goes on."""
        acct = self.account
        if acct is None or acct.unchanged():
            return False
        try:
            if await asyncio.to_thread(acct.check):
                return False
        except StorageUnavailable:
            return False
        event(log, "submission-account-gone", level=logging.WARNING, client=self.client_ip, mode=self.mode.value,
              account=acct.address)
        self.reset_transaction()
        self.send(R.ACCOUNT_GONE)
        self.finish()
        return True

    def finish(self) -> None:
        """Close after what was sent (QUIT, a fatal error); nothing more is read, not
        even what the client pipelined behind."""
        self.close()
        self._done = self._eof = True
        self._wake()

    def close_with(self, reply: Reply) -> None:
        """Send a last reply and close (server shutdown)."""
        self.send(reply)
        self.finish()

    async def error(self, reply: Reply) -> None:
        """A bad command: answer it, and close after too many (RFC 5321 §4.3.2 lets a
        server do so; we answer 421 first)."""
        self.errors += 1
        if self.errors > self.settings.smtp.max_errors:
            event(log, "too-many-errors", level=logging.WARNING, client=self.client_ip)
            self.send(R.TOO_MANY_ERRORS)
            self.finish()
            return
        self.send(reply)

    # -- input ----------------------------------------------------------------------

    async def _more(self, deadline: float, announce: bool = True) -> bool:
        """Wait for more octets until ``deadline`` (loop time); False at the end of
        input, and after a time-out (answered 421 unless not ``announce``, and closed)."""
        self.flush()
        if self._eof or self._done:
            return False
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        # One future woken by data_received (or EOF, or the end of the session) and one
        # timer, not asyncio.wait_for around an Event: that made a task, two futures and
        # two turns of the loop for every read, six or more reads per message.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(deadline, _time_up, waiter)
        try:
            timed_out = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if timed_out:
            if announce:
                self._timed_out()
            else:
                self.finish()
            return False
        return not self._done and not (self._eof and not len(self.conn))

    def _timed_out(self) -> None:
        event(log, "timeout", level=logging.INFO, client=self.client_ip)
        self.send(R.TIMEOUT)
        self.finish()

    async def read_line(self, limit: int, timeout: float | None = None, announce: bool = True) -> bytes | Reply:
        """A raw line without its CRLF (an AUTH response, a reply during ODMR turn-
        around), or the Reply refusing it; ClientGone when none comes (after
        ``timeout`` seconds: answered 421 unless not ``announce``)."""
        deadline = asyncio.get_running_loop().time() + (timeout or self.settings.smtp.command_timeout)
        while True:
            got = self.conn.next_line(limit)
            if not isinstance(got, NeedData):
                return got
            if not await self._more(deadline, announce):
                raise ClientGone()

    async def read_text(self, timeout: float, text: MessageText | None,
                        check: BodyCheck | None = None) -> TextEnd:
        """The message text after DATA's 354 or a BDAT command (``conn.start_data`` /
        ``start_chunk`` called), piece by piece into ``text`` (None: read and dropped),
        each piece fed to ``check`` as it arrives; ``text`` writes a big message to the
        spool as it comes (``commands/text.py``), so memory stays bounded.  ClientGone
        when the client goes away or takes longer than ``timeout`` for all of it."""
        deadline = asyncio.get_running_loop().time() + timeout
        conn = self.conn
        while True:
            got = conn.next_text()
            if isinstance(got, TextEnd):
                if got.tail:
                    if check is not None:
                        check.feed(got.tail)
                    if text is not None and text.add(got.tail):
                        await text.flush()
                return got
            if isinstance(got, bytes):
                if got:
                    if check is not None:
                        check.feed(got)
                    if text is not None and text.add(got):
                        await text.flush()
                continue
            if not await self._more(deadline):
                raise ClientGone()

    # -- what handlers use ------------------------------------------------------------

    @property
    def state(self) -> State:
        return state_of(self.host_name is not None, self.mail_from is not None, len(self.rcpt_tos),
                        self.chunks is not None)

    @property
    def rcpt_count(self) -> int:
        return len(self.rcpt_tos)

    def tls_offered(self) -> bool:
        return self.service.tls_context is not None and not self.tls and self.mode is not Mode.LMTP

    def context(self) -> Context:
        return Context(kind="mail", client_ip=self.client_ip, server_ip=self.server_ip,
                       authenticated=self.auth_data if self.authenticated else None)

    def reset_transaction(self) -> None:
        """RSET, a new greeting, the end of a message (RFC 5321 §4.1.1.5)."""
        self.mail_from = None
        self.options = MailOptions()
        self.recipients = []
        self.rcpt_tos = []
        if self.chunks is not None:
            self.chunks.abort()
        self.chunks = None
        self.chunk_check = None
        self.chunk_size = 0

    def reset_session(self) -> None:
        """After STARTTLS (RFC 3207 §4.2): the client greets again, and nothing it
        said before (not even a login) is kept."""
        self.reset_transaction()
        self.host_name = None
        self.extended = False
        self.authenticated = False
        self.auth_data = None
        self.account = None

    async def start_tls(self) -> bool:
        """Upgrade after "220 Ready to start TLS".  Whatever the client sent behind
        STARTTLS in clear text is dropped (RFC 3207 §4.2), never read as if it came
        over TLS: the buffer is cleared with no wait between it and the switch."""
        ctx = self.service.tls_context
        assert ctx is not None and self.transport is not None
        self.flush()  # the 220, in clear text
        self.conn.clear()
        try:
            new = await tlslayer.start_tls(self.transport, self, ctx,
                                           handshake_timeout=min(60.0, self.settings.smtp.command_timeout))
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError) as e:
            event(log, "tls-failed", level=logging.INFO, client=self.client_ip, error=repr(e))
            if self.transport is not None:
                self.transport.abort()
            self._done = self._eof = True
            return False
        if new is None:
            self._done = self._eof = True
            return False
        self.transport = new
        self.tls = True
        self._paused = False
        self.reset_session()
        return True

    # -- the session ------------------------------------------------------------------

    async def _run(self) -> None:
        global _TABLE
        if _TABLE is None:
            from .commands import HANDLERS, OWN_STATE_CHECK  # (they import this module)

            _TABLE = (HANDLERS, OWN_STATE_CHECK)
        HANDLERS, OWN_STATE_CHECK = _TABLE
        try:
            greeting = "LMTP" if self.mode is Mode.LMTP else "ESMTP"
            self.send(f"220 {self.settings.server.hostname} {greeting} Waypost", raw=True)
            loop = asyncio.get_running_loop()
            while not self._done and (not self._eof or len(self.conn)):
                got = self.conn.next_command()
                if isinstance(got, NeedData):
                    if not await self._more(loop.time() + self.settings.smtp.command_timeout):
                        break
                    continue
                if isinstance(got, Reply):
                    await self.error(got)
                    continue
                await self._command(got, HANDLERS, OWN_STATE_CHECK)
                if len(self._out) > 64:  # a client that pipelines without end
                    await self.drain()
                elif not self._writable.is_set():
                    await self.drain()
        except ClientGone:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=smtp-error client=%s", self.client_ip)
            self.send(R.LOCAL_ERROR)
        finally:
            self.reset_transaction()  # a BDAT transaction left unfinished: its file goes
            self.close()
            self.service.sessions.discard(self)

    async def _command(self, line: Line, handlers: dict[str, Any], own_check: frozenset[str]) -> None:
        verb = line.verb
        handler = handlers.get(verb)
        if handler is None or (verb == "LHLO" and self.mode is not Mode.LMTP):
            event(log, "unknown-command", level=logging.INFO, client=self.client_ip, command=verb[:20])
            await self.error(R.UNKNOWN_COMMAND.with_text(f'Command "{verb[:20]}" not recognized'))
            return
        if verb not in own_check:
            refused = refusal(verb, self.state, self.mode, self.authenticated)
            if refused is not None:
                self.send(refused)
                if verb == "DATA" and self.state is State.BDAT:
                    self.reset_transaction()
                return
        if verb != "QUIT" and await self._account_gone():
            return
        try:
            await handler(self, line.arg)
        except (ClientGone, asyncio.CancelledError):
            raise
        except StorageUnavailable as error:
            # The database is down or unreachable: "try again later", one log line;
            # the engine reconnects by itself and the next command may succeed.
            event(log, "storage-unavailable", level=logging.ERROR, client=self.client_ip,
                  command=verb[:20], error=str(error))
            self.send(R.LOCAL_ERROR)
        except Exception:
            log.exception("event=smtp-error client=%s", self.client_ip)
            self.send(R.LOCAL_ERROR)

