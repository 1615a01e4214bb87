"""The POP3 listener: a thin asyncio adapter around ``waypost.pop3.proto``.

One ``Session`` per client.  ``data_received`` only feeds the line buffer; one task
per session takes the lines out in order, checks each command against the state
table and runs it through the handler table (``waypost.pop3.commands``), so a
pipelining client (RFC 2449 §6.6) gets its answers in order.  A client that sends
faster than it reads is paused (flow control both ways), never the whole worker.

The maildrop lock is held from a positive PASS or AUTH until the session ends, by
QUIT, a lost connection, the autologout timer or shutdown; only QUIT from
TRANSACTION removes messages (RFC 1939 §6).

A listener never writes a Maildir file itself: the maildrop calls the ``Mailstore``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Awaitable, Callable

from .. import tlslayer
from ..db import StorageUnavailable
from ..directory.session_account import SessionAccount
from ..directory.throttle import log_auth_failed, peer_ip
from ..flag import Flag
from ..log import event
from ..mailstore import Mailstore
from .maildrop import Maildrop
from .proto import (
    DEFAULT_PARAMS,
    Command,
    Line,
    LineBuffer,
    LineTooLong,
    MultiLine,
    NeedData,
    Params,
    R,
    Rejected,
    Reply,
    Response,
    State,
    next_state,
    parse_command,
    refusal,
)

__all__ = ["Authenticate", "POP3Service", "Session"]

log = logging.getLogger("waypost.pop3")

#: ``authenticate(login, password, server_ip, client_ip)`` -> "name@domain", or None;
#: it throttles and logs failed logins (``event=auth-failed``) itself.
Authenticate = Callable[[str, str, "str | None", "str | None"], Awaitable["str | None"]]

#: Octets buffered from a client (pipelined lines) above which we stop reading.
_READ_HIGH = 64 * 1024


class POP3Service:
    """Everything the sessions of one worker share.

    ``plaintext_without_tls``: allow USER/PASS and AUTH PLAIN before STLS.
    ``failure_delay``: the pause before answering the first failed login of a
    session; it doubles with each failure in a row, up to ``max_failure_delay``, and
    the session is closed after ``max_failures``.  ``idle_timeout``: the autologout
    timer (RFC 1939 §3 asks for at least 10 minutes; tests use less).
    ``max_bad_commands``: refused lines in a row (unknown, malformed, wrong state,
    too long) before the session is closed.  ``params``: the parser's limits.
    """

    def __init__(self, mailstore: Mailstore, authenticate: Authenticate, tls_context: ssl.SSLContext | None, *,
                 hostname: str, plaintext_without_tls: bool = False, failure_delay: float = 1.0,
                 max_failure_delay: float = 4.0, max_failures: int = 3, idle_timeout: float = 600.0,
                 max_bad_commands: int = 10, params: Params = DEFAULT_PARAMS) -> None:
        if failure_delay < 0 or max_failure_delay < 0 or idle_timeout <= 0:
            raise ValueError("POP3Service: delays must not be negative, idle_timeout must be positive")
        if max_failures < 1 or max_bad_commands < 1:
            raise ValueError("POP3Service: max_failures and max_bad_commands must be at least 1")
        self.mailstore = mailstore
        self.authenticate = authenticate
        self.tls_context = tls_context
        self.hostname = hostname
        self.plaintext_without_tls = plaintext_without_tls
        self.failure_delay = failure_delay
        self.max_failure_delay = max_failure_delay
        self.max_failures = max_failures
        self.idle_timeout = idle_timeout
        self.max_bad_commands = max_bad_commands
        self.params = params
        self.sessions: set[Session] = set()
        self.closing = False

    def protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        """For ``Acceptor(loop, sock, service.protocol_factory())`` (``waypost.acceptor``)."""
        return lambda: Session(self)

    async def shutdown(self, grace: float) -> None:
        """Answer every session ``-ERR [SYS/TEMP]`` and close it, without UPDATE: marks
        are dropped, nothing is removed.  A command in progress (a RETR being sent, a
        QUIT removing messages) gets up to ``grace`` seconds to finish first.  Every
        maildrop lock is released when this returns."""
        self.closing = True
        sessions = list(self.sessions)
        for s in sessions:
            s.begin_shutdown()
        running = [t for s in sessions if (t := s.task) is not None and not t.done()]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for s in sessions:
            s.abort()
        late = [t for t in running if not t.done()]
        for t in late:
            t.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
        for s in sessions:
            s.release()


class Session(asyncio.Protocol):
    """One client; see the module docstring."""

    __slots__ = (
        "service", "params", "transport", "lines", "state", "tls", "peer", "server_ip", "user",
        "maildrop", "account", "failures", "bad_in_a_row", "task", "_data", "_writable", "_eof",
        "_paused", "_closing", "_input_lost", "_timed_out",
    )

    def __init__(self, service: POP3Service) -> None:
        self.service = service
        self.params = service.params
        self.transport: asyncio.Transport | None = None
        self.lines = LineBuffer()
        self.state = State.AUTHORIZATION
        self.tls = False
        self.peer = "?"
        self.server_ip: str | None = None
        self.user: str | None = None  # the name of a successful USER, until PASS
        self.maildrop: Maildrop | None = None
        self.account: SessionAccount | None = None  # the account logged in to, as it was then
        self.failures = 0  # failed logins in a row
        self.bad_in_a_row = 0
        self.task: asyncio.Task[None] | None = None
        self._data = Flag()
        self._writable = Flag()
        self._writable.set()
        self._eof = False
        self._paused = False
        self._closing = False
        self._input_lost = False  # EOF, autologout or shutdown while waiting for a line
        self._timed_out = False

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if self.transport is not None:  # the TLS transport replacing the plain one
            return
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server_ip = sock[0] if sock else None
        self.tls = transport.get_extra_info("ssl_object") is not None  # pop3s (RFC 8314)
        self.service.sessions.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.lines.feed(data)
        self._data.set()
        if len(self.lines) > _READ_HIGH and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._data.set()
        # Keep our half open: what the client sent before its EOF (a pipelined QUIT)
        # is still answered.  The session closes the transport when it is done.  (An
        # SSL transport cannot be half-closed.)
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._data.set()
        self._writable.set()
        # A vanished client never leaves its maildrop locked: the task lets it go as it
        # ends, which it does as soon as it has answered what was sent before the EOF
        # (a QUIT among it still removes what was marked).
        if self.task is None or self.task.done():
            self.release()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- output ---------------------------------------------------------------------

    def send(self, response: Response) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if isinstance(response, MultiLine):
            for chunk in response.chunks():
                if chunk:
                    t.write(chunk)
        else:
            t.write(response.encode())

    async def drain(self) -> bool:
        """Wait until the client has read most of what was sent; False when it has
        not within the autologout time, or the connection is gone."""
        if not self._writable.is_set():
            try:
                await asyncio.wait_for(self._writable.wait(), self.service.idle_timeout)
            except asyncio.TimeoutError:
                event(log, "pop3-timeout", peer=self.peer, state=self.state.value, waiting="write")
                self._timed_out = True
                return False
        return self.transport is not None and not self.transport.is_closing()

    def begin_shutdown(self) -> None:
        self._closing = True
        self._data.set()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def release(self) -> None:
        """Drop the maildrop (and its lock) without UPDATE."""
        drop, self.maildrop = self.maildrop, None
        if drop is not None:
            drop.close()
            event(log, "pop3-unlocked", peer=self.peer, account=f"{drop.box.account}@{drop.box.domain}",
                  marked=len(drop.deleted))

    # -- what handlers use ------------------------------------------------------------

    def plaintext_allowed(self) -> bool:
        return self.tls or self.service.plaintext_without_tls

    def capabilities(self) -> list[str]:
        """RFC 2449 §6; the same list in both states (RFC 2449 §5: "Capabilities
        available in the AUTHORIZATION state MUST be announced in both states")."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.plaintext_allowed():
            caps += ["USER", "SASL PLAIN"]
        if self.service.tls_context is not None and not self.tls:
            caps.append("STLS")  # RFC 2595 §4
        caps.append("IMPLEMENTATION Waypost")
        return caps

    async def next_line(self, max_length: int) -> Line | LineTooLong | None:
        """The next line from the client; None when it went away, stayed silent past
        the autologout timer, or the server is shutting down."""
        while True:
            if self._closing:
                self._input_lost = True
                return None
            got = self.lines.next_event(max_length)
            if not isinstance(got, NeedData):
                return got
            if not await self._more():
                self._input_lost = True
                return None

    async def _more(self) -> bool:
        if self._eof or self._closing:
            return False
        self._data.clear()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        try:
            await asyncio.wait_for(self._data.wait(), self.service.idle_timeout)
        except asyncio.TimeoutError:
            # RFC 1939 §3: the autologout timer closes the connection "without removing
            # any messages or sending any response to the client".
            event(log, "pop3-timeout", peer=self.peer, state=self.state.value)
            self._timed_out = True
            return False
        return not self._closing and not (self._eof and not len(self.lines))

    async def login_failed(self, login: str, reason: str, reply: Reply = R.LOGIN_FAILED) -> Reply:
        """Log the failure, then answer after a pause that doubles with each failure in
        a row on this connection."""
        self.failures += 1
        svc = self.service
        if reason != "bad credentials":  # (those the authenticate callback logged)
            log_auth_failed("pop3", peer_ip(self.peer), login, reason.replace(" ", "-"))
        delay = min(svc.failure_delay * 2 ** (self.failures - 1), svc.max_failure_delay)
        if delay > 0:
            await asyncio.sleep(delay)
        return reply

    async def start_tls(self) -> bool:
        """RFC 2595 §4: upgrade the connection after "+OK" to STLS.  Whatever the client
        sent behind STLS in clear text is dropped, never read as if it came over TLS."""
        ctx = self.service.tls_context
        assert ctx is not None and self.transport is not None
        self.lines.clear()
        try:
            new = await tlslayer.start_tls(self.transport, self, ctx,
                                           handshake_timeout=min(60.0, self.service.idle_timeout))
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError) as e:
            event(log, "pop3-tls-failed", peer=self.peer, error=str(e) or type(e).__name__)
            self.abort()
            self._eof = True
            return False
        if new is None:
            self._eof = True
            return False
        self.transport = new
        self.tls = True
        self._paused = False
        event(log, "pop3-tls", peer=self.peer)
        return True

    # -- the session ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self.service.closing:  # accepted while shutting down: a negative greeting
                self.send(R.SHUTTING_DOWN)
                return
            self.send(R.GREETING.format(hostname=self.service.hostname))
            event(log, "pop3-connect", peer=self.peer, server_ip=self.server_ip)
            await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=pop3-error peer=%s", self.peer)
            self.send(R.INTERNAL_ERROR)
        finally:
            if self.maildrop is not None and self.state is State.TRANSACTION:
                event(log, "pop3-disconnect", peer=self.peer, state=self.state.value, removed=0,
                      reason="timeout" if self._timed_out else "shutdown" if self._closing else "connection lost")
            self.release()
            self.close()
            self.service.sessions.discard(self)

    async def _serve(self) -> None:
        while self.state not in (State.UPDATE, State.CLOSED):
            got = await self.next_line(self.params.max_line_length)
            if got is None:
                self._goodbye()
                return
            if isinstance(got, LineTooLong):
                if self._refuse(R.LINE_TOO_LONG, f"line longer than {got.limit} octets"):
                    return
                continue
            try:
                command = parse_command(got.data, self.params)
            except Rejected as refused:
                if self._refuse(refused.reply, refused.detail):
                    return
                continue
            wrong_state = refusal(command.name, self.state)
            if wrong_state is not None:
                if self._refuse(wrong_state, f"{command.name} in state {self.state.value}"):
                    return
                continue
            self.bad_in_a_row = 0
            if self.state is State.TRANSACTION and await self._account_gone():
                return
            response = await self._dispatch(command)
            if self._input_lost:  # the command waited for a line that never came
                self._goodbye()
                return
            if response is not None:
                self.send(response)
            self.state = next_state(self.state, command.name, response is None or response.ok)
            if self.state is State.UPDATE:
                reply = self._update()
                self.send(reply)
                self.state = next_state(self.state, command.name, reply.ok)
            if self.failures >= self.service.max_failures:
                event(log, "pop3-too-many-failures", level=logging.WARNING, peer=self.peer, failures=self.failures)
                return
            if not await self.drain():
                return

    async def _account_gone(self) -> bool:
        """True (``-ERR [AUTH]`` sent, the session to be closed without UPDATE: nothing
        marked is removed) when the account this session logged in to was removed,
        disabled or made again under its name (another customer's account now), as
        IMAP's sessions end.  While the database cannot be reached the session goes on."""
        acct = self.account
        if acct is None or acct.unchanged():
            return False
        try:
            if await asyncio.to_thread(acct.check):
                return False
        except StorageUnavailable:
            return False
        event(log, "pop3-account-gone", level=logging.WARNING, peer=self.peer, account=acct.address)
        self.send(R.ACCOUNT_GONE)
        self.state = State.CLOSED
        return True

    def _refuse(self, reply: Reply, detail: str) -> bool:
        """Answer a refused line; True when that was one too many in a row."""
        event(log, "pop3-bad-command", peer=self.peer, state=self.state.value, detail=detail)
        self.send(reply)
        self.bad_in_a_row += 1
        if self.bad_in_a_row >= self.service.max_bad_commands:
            event(log, "pop3-too-many-bad-commands", level=logging.WARNING, peer=self.peer)
            self.send(R.TOO_MANY_BAD)
            return True
        return False

    def _goodbye(self) -> None:
        if self._closing and not self._eof:
            self.send(R.SHUTTING_DOWN)

    async def _dispatch(self, command: Command) -> Response | None:
        from .commands import HANDLERS

        try:
            return await HANDLERS[command.name](self, command)
        except StorageUnavailable as e:  # [SYS/TEMP] (RFC 3206): try again later, one log line
            event(log, "storage-unavailable", level=logging.ERROR, peer=self.peer, command=command.name, error=str(e))
            return R.INTERNAL_ERROR
        except Exception as e:
            log.exception("event=pop3-command-error peer=%s command=%s error=%r", self.peer, command.name, e)
            return R.INTERNAL_ERROR

    def _update(self) -> Reply:
        """The UPDATE state (RFC 1939 §6): remove what was marked, let the lock go, and
        say how it went.  "In no case may the server remove any messages not marked
        as deleted."""
        drop, self.maildrop = self.maildrop, None
        if drop is None:
            return R.BYE.format(hostname=self.service.hostname)
        account = f"{drop.box.account}@{drop.box.domain}"
        marked = len(drop.deleted)
        try:
            drop.update()
        except Exception as e:
            log.error("event=pop3-update-failed peer=%s account=%s error=%r", self.peer, account, e)
            return R.UPDATE_FAILED
        finally:
            drop.close()
        event(log, "pop3-update", peer=self.peer, account=account, removed=marked)
        return R.BYE.format(hostname=self.service.hostname)
