"""The IMAP listener: a thin asyncio adapter around ``waypost.imap.proto``.

One ``Connection`` per client.  ``data_received`` only appends to a buffer; one task per
connection reads commands from it with ``proto.parse_command`` and runs them one after
the other through the handler table (``waypost.imap.commands``), so a pipelining client
gets its answers in order.  Writes go out through ``Connection.send``; a client that does
not read makes ``send`` wait (the transport's flow control), never the whole worker.

After ``COMPRESS DEFLATE`` (RFC 4978) the connection keeps a ``proto.Deflate``: every
write is compressed, and one sync flush goes out at the end of each burst (scheduled
with ``call_soon`` by the first write after a flush, so a burst is whatever the
handlers send before the task next waits).  Octets from the client go to the
inflater, and are inflated into ``buf`` only as far as ``_READ_HIGH`` allows, or one
``_INFLATE_CHUNK`` at a time when the parser needs more: a zip bomb meets the parser's
line and literal limits like any other flood.  Compression sits inside TLS: the
``Connection`` sees the TLS transport's plaintext.

A listener never writes a Maildir file itself: the handlers call the ``Mailstore``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .. import tlslayer
from ..bus import Bus
from ..flag import Flag
from ..log import event
from ..db import ObjectRecord, StorageUnavailable
from ..mailstore import Mailstore, topic
from ..mailstore.access import Access
from .proto import (
    CapabilityCode,
    Command,
    CompressError,
    Deflate,
    IdleDone,
    LiteralTooLarge,
    NeedMore,
    Params,
    R,
    Rejected,
    Response,
    SaslResponse,
    State,
    Tagged,
    Untagged,
    next_state,
    parse_command,
    parse_idle_done,
    parse_sasl_response,
    refusal,
)
from .proto.commands.selected import saves_result
from .proto.response import Codes, ContinueRequest
from .commands import HANDLERS, UPDATES_WITHOUT_EXPUNGE
from .commands.context import updates as context_updates
from .session import Account, Selected

__all__ = ["IMAPService", "Connection"]

log = logging.getLogger("waypost.imap")

#: The empty set of a session that enabled nothing (shared: see ``Connection.turn_on``).
_NOTHING: frozenset[str] = frozenset()

#: Buffered octets from a client above which we stop reading from it.
_READ_HIGH = 1 << 20
#: Octets queued for a client above which ``send`` waits for it to read.
_WRITE_HIGH = 1 << 20
#: Plaintext octets inflated at a time when the parser asks for more (COMPRESS).
_INFLATE_CHUNK = 64 * 1024
#: Commands that do not need the selected mailbox's message records read first
#: (``load_records``): IDLE reads them when a change wakes it.
_NO_RECORDS = frozenset({"SELECT", "EXAMINE", "UNSELECT", "LOGOUT", "IDLE"})

#: (login, password, server_ip, client_ip) -> "name@domain" or None; it throttles and logs failures.
Authenticate = Callable[[str, str, "str | None", "str | None"], Awaitable["str | None"]]
#: (name, domain) -> the account record (aliases followed), or None.
LookupAccount = Callable[[str, str], "ObjectRecord | None"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The session limits of the IMAP listener (settings ``imap.*``)."""

    plaintext_without_tls: bool = False
    idle_timeout: float = 1800.0          # RFC 3501 §5.4: at least 30 minutes
    login_timeout: float = 60.0           # before authentication
    failure_delay: float = 1.0            # first failed login; doubles each time
    max_failures: int = 3                 # then BYE
    max_bad_commands: int = 20            # BAD in a row, then BYE
    idle_recheck: float = 30.0            # IDLE re-reads the index this often anyway
    expunged_keep: float = 7 * 86400.0    # expunge records (QRESYNC) kept this long


def prune_interval(keep: float) -> float:
    """Seconds between two prunes of the expunge records: a quarter of the time
    they are kept, between 1 s and 10 min."""
    return min(600.0, max(1.0, keep / 4))


_PRUNE_MARK = "imap-expunged-prune"


def prune_expunged(store: Mailstore, limits: Limits, now: float | None = None) -> int | None:
    """Drop the expunge records older than ``limits.expunged_keep`` and the header
    blocks kept of expunged messages older than twice the idle timeout (a session
    silent for longer is logged out; one that is not hears of the expunge at its next
    command but FETCH, STORE or SEARCH).  Every worker runs it; one that finds it
    done by another within the interval skips it (a race only prunes twice).
    Returns the records dropped, None when skipped."""
    db = store.db
    assert db is not None
    now = time.time() if now is None else now
    last = db.get_mark(_PRUNE_MARK)
    if isinstance(last, (int, float)) and 0 <= now - last < prune_interval(limits.expunged_keep) * 0.9:
        return None
    db.set_mark(_PRUNE_MARK, now)
    dropped = db.expunged_prune(now - limits.expunged_keep, now - 2 * limits.idle_timeout)
    if dropped:
        event(log, "expunged-pruned", records=dropped)
    return dropped


class IMAPService:
    """Everything the connections of one worker share."""

    def __init__(self, mailstore: Mailstore, authenticate: Authenticate, tls_context: ssl.SSLContext | None, *,
                 hostname: str, lookup: LookupAccount, bus: Bus | None = None, limits: Limits = Limits(),
                 params: Params | None = None) -> None:
        self.mailstore = mailstore
        self.lookup = lookup
        self.authenticate = authenticate
        self.tls_context = tls_context
        self.hostname = hostname
        self.bus = bus
        self.limits = limits
        self.params = params or Params()
        self.connections: set[Connection] = set()
        self.closing = False
        self._pruning: asyncio.Task[None] | None = None

    def start_pruning(self) -> None:
        """Prune the index's expunge records now and then (``prune_expunged``)."""
        if self._pruning is None:
            self._pruning = asyncio.get_running_loop().create_task(self._prune_loop())

    async def _prune_loop(self) -> None:
        every = prune_interval(self.limits.expunged_keep)
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(prune_expunged, self.mailstore, self.limits)
            except Exception as e:  # the database away: the next round tries again
                log.warning("event=expunged-prune-failed error=%r", e)

    def protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        return lambda: Connection(self)

    def capabilities(self, conn: Connection) -> tuple[str, ...]:
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE",
                "UNSELECT", "MULTIAPPEND", "BINARY", "CATENATE", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS",
                "SPECIAL-USE", "CONDSTORE", "QRESYNC", "ACL", "RIGHTS=kxte", "ESEARCH", "SEARCHRES", "SORT",
                "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "THREAD=REFS",
                "COMPRESS=DEFLATE", "STATUS=SIZE", "LIST-MYRIGHTS"]
        caps += ["SAVEDATE", "WITHIN", "PREVIEW", "CREATE-SPECIAL-USE", "URL-PARTIAL"]  # RFC 8514, 5032, 8970, 6154, 5550
        caps += ["UIDBATCHES"]  # draft-ietf-mailmaint-imap-uidbatches
        caps += ["I18NLEVEL=1"]  # RFC 5255 §4.3: i;unicode-casemap by default (collation.py)
        caps += [f"APPENDLIMIT={self.params.max_literal_size}"]  # RFC 7889 §3: the same for every mailbox
        caps += ["CONTEXT=SEARCH", "CONTEXT=SORT", "PARTIAL", "OBJECTID", "UTF8=ACCEPT", "IMAP4rev2"]
        caps += ["QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE"]  # RFC 9208
        caps += ["URLAUTH", "URLAUTH=BINARY", "NOTIFY"]  # RFC 4467, RFC 5524, RFC 5465
        if conn.state is State.NOT_AUTHENTICATED:
            if self.tls_context is not None and not conn.tls:
                caps.append("STARTTLS")
            if conn.plaintext_allowed():
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        return tuple(caps)

    async def shutdown(self, grace: float) -> None:
        """Tell every client BYE (RFC 3501 §7.1.5) and close; a command in progress
        gets up to ``grace`` seconds to finish first."""
        self.closing = True
        if self._pruning is not None:
            self._pruning.cancel()
        conns = list(self.connections)
        for c in conns:
            c.begin_shutdown()
        deadline = time.monotonic() + grace
        while any(not c.closed for c in conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in conns:
            c.abort()


class Connection(asyncio.Protocol):
    """One client; see the module docstring."""

    def __init__(self, service: IMAPService) -> None:
        self.service = service
        self.store = service.mailstore
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.access: Access | None = None
        self.selected: Selected | None = None
        self.tls = False
        self.peer = "?"
        self.server_ip: str | None = None
        self.enabled: frozenset[str] = _NOTHING  # RFC 5161 ENABLE (see turn_on)
        self.params = service.params  # with utf8 after ENABLE UTF8=ACCEPT or IMAP4rev2
        self.closed = False
        self.failures = 0
        self.bad_in_a_row = 0
        self._data = Flag()
        self._writable = Flag()
        self._writable.set()
        self._eof = False
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._idle_wake: Flag | None = None
        self._last_continuation: int | None = None
        self._shutdown_pending = False
        self.deflate: Deflate | None = None
        self._flush_scheduled = False
        self._corrupt = False
        self.notify: Any = None  # RFC 5465: the session's ``notify.Watcher``, after NOTIFY SET
        self._account_token: bytes | None = None  # settings token of the last account check

    def turn_on(self, *extensions: str) -> None:
        """ENABLE (RFC 5161) or an implicit enabling (RFC 7162 §3.1.8).  The set is
        replaced, not changed: most sessions enable nothing and share one empty set
        (216 octets each otherwise, for 10,000 sessions in IDLE).  Already enabled:
        nothing is made (a FETCH of MODSEQ enables CONDSTORE at each command)."""
        if not self.enabled.issuperset(extensions):
            self.enabled = self.enabled.union(extensions)

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server_ip = sock[0] if sock else None
        self.tls = transport.get_extra_info("ssl_object") is not None  # imaps (RFC 8314)
        self.service.connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.deflate is not None:
            self.deflate.feed(data)
            room = _READ_HIGH - len(self.buf)
            if room > 0:
                self._inflate(room)
            if self.deflate is not None and self.deflate.pending > _READ_HIGH and self.transport is not None:
                self.transport.pause_reading()
        else:
            self.buf += data
        self._input()
        if len(self.buf) > _READ_HIGH and self.transport is not None:
            self.transport.pause_reading()

    def _input(self) -> None:
        """Octets, the end of input or the end of the connection: whoever waits for
        input wakes (an IDLE waits on one event for this and its mailbox's changes)."""
        self._data.set()
        if self._idle_wake is not None:
            self._idle_wake.set()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._input()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deflate is not None and not self.closed:
            d = self.deflate
            event(log, "imap-compress-end", peer=self.peer, octets_in=d.octets_in, plain_in=d.plain_in,
                  octets_out=d.octets_out, plain_out=d.plain_out)
        self.closed = True
        self._eof = True
        self._input()
        self._writable.set()
        if self.notify is not None:
            self.notify.stop()
            self.notify = None
        self.service.connections.discard(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- output ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            if self.deflate is not None:
                data = self.deflate.compress(data)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush)
                if not data:
                    return
            self.transport.write(data)

    def _flush(self) -> None:
        """The end of a burst of output (RFC 4978 §4: Z_SYNC_FLUSH)."""
        if not self._flush_scheduled:
            return
        self._flush_scheduled = False
        if self.deflate is not None and self.transport is not None and not self.closed:
            self.transport.write(self.deflate.flush())

    def start_compression(self) -> None:
        """COMPRESS DEFLATE: from now on, both directions are deflate streams (the
        tagged OK has been sent).  Octets already received after the command are
        the first compressed ones."""
        assert self.deflate is None
        self.deflate = Deflate()
        rest, self.buf = self.buf, b""
        if rest:
            self.deflate.feed(rest)
            self._inflate(_READ_HIGH)

    def _inflate(self, limit: int) -> bool:
        """Inflate up to ``limit`` octets of the client's stream into ``buf``; True if
        any came.  A corrupt stream ends the connection."""
        if self.deflate is None or self._corrupt or not self.deflate.has_more:
            return False
        try:
            out = self.deflate.inflate(limit)
        except CompressError as e:
            event(log, "imap-compress-error", level=logging.INFO, peer=self.peer, detail=str(e))
            self.send(Untagged("BYE", "Corrupt compressed data"))
            self._corrupt = True
            self._eof = True  # nothing more is read from this client
            self._input()
            self.close()
            return False
        self.buf += out
        return bool(out)

    def send(self, *responses: Response) -> None:
        self.write(b"".join(r.encode() for r in responses))

    async def drain(self) -> None:
        if not self._writable.is_set():
            await self._writable.wait()

    def begin_shutdown(self) -> None:
        if not self._busy and self._idle_wake is None:
            self.send(Untagged("BYE", "Server shutting down"))
            self.close()
        else:
            self._shutdown_pending = True
            if self._idle_wake is not None:  # an IDLE says BYE now, not at its next look
                self._idle_wake.set()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self._flush()
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def plaintext_allowed(self) -> bool:
        return self.tls or self.service.limits.plaintext_without_tls

    # -- input ----------------------------------------------------------------------

    async def _more(self, timeout: float) -> bool:
        """Wait for more octets; False at EOF or timeout."""
        if self._inflate(_INFLATE_CHUNK):  # compressed octets received already come first
            return True
        if self._eof:
            return False
        self._data.clear()
        if self.transport is not None:
            # We wait because the command needs these octets (a literal may be far
            # larger than _READ_HIGH; Params.max_command_size bounds it).
            self.transport.resume_reading()
        try:
            await asyncio.wait_for(self._data.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return not (self._eof and not self.buf)

    def _timeout(self) -> float:
        limits = self.service.limits
        return limits.login_timeout if self.state is State.NOT_AUTHENTICATED else limits.idle_timeout

    async def _run(self) -> None:
        try:
            self.send(Untagged("OK", f"{self.service.hostname} Waypost IMAP4rev1 ready",
                               CapabilityCode(self.service.capabilities(self))))
            event(log, "imap-connect", peer=self.peer)
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=imap-error peer=%s", self.peer)
            try:
                self.send(Untagged("BYE", "Internal error"))
            except Exception:
                pass
        finally:
            self.close()

    async def _loop(self) -> None:
        skipper = None
        while self.state is not State.LOGOUT and not self.closed:
            if skipper is not None:
                used = skipper.feed(self.buf)
                self.buf = self.buf[used:]
                if not skipper.done:
                    if not await self._more(self._timeout()):
                        return
                    continue
                skipper = None
            if self._shutdown_pending:
                self.send(Untagged("BYE", "Server shutting down"))
                return
            if self._no_line(self.params):
                # What parse_command would raise (NeedMore, no literal), without the
                # exception: see ``_no_line``.
                if not await self._more_or_bye():
                    return
                continue
            try:
                command, rest = parse_command(self.buf, self.params)
            except NeedMore as more:
                if more.continuation_required and more.literal_offset != self._last_continuation:
                    self._last_continuation = more.literal_offset
                    self.send(R.CONTINUE_LITERAL.continuation())
                if not await self._more_or_bye():
                    return
                continue
            except Rejected as refused:
                self._last_continuation = None
                if self.selected is not None and saves_result(self.buf[:self.buf.find(b"\n")]):
                    self.selected.saved = set()  # RFC 5182 §2.1: a failed SAVE saves nothing
                self.buf = self.buf[refused.discard:]
                skipper = refused.skipper
                event(log, "imap-bad", level=logging.INFO, peer=self.peer, detail=refused.message)
                self.send(refused.reply())
                if isinstance(refused, LiteralTooLarge) and not refused.synchronizing:
                    # RFC 7888 §4: rather than read and drop a non-synchronizing
                    # literal of any size, say BYE and close.
                    self.send(Untagged("BYE", "Literal too large"))
                    return
                if self._count_bad():
                    return
                continue
            self._last_continuation = None
            self.buf = rest
            wrong_state = refusal(command, self.state)
            if wrong_state is not None:
                self.send(wrong_state.tagged(command.tag))
                if self._count_bad():
                    return
                continue
            if await self.account_gone():
                return
            self._busy = True
            try:
                result = await self._dispatch(command)
            finally:
                self._busy = False
            self.bad_in_a_row = self.bad_in_a_row + 1 if result == "BAD" else 0
            if result != "NONE":
                self.state = next_state(self.state, command, result)  # type: ignore[arg-type]
            if self.state is not State.SELECTED:
                self.selected = None
            if self.bad_in_a_row >= self.service.limits.max_bad_commands:
                self.send(Untagged("BYE", "Too many bad commands"))
                return
            await self.drain()

    async def account_gone(self) -> bool:
        """True (and BYE sent, the session ending) when the account this session logged
        in to was removed, disabled or made again under its name (another customer's
        account now): its login is void (RFC 3501 §7.1.5).  Asked before each command,
        before NOTIFY output and at each IDLE wake-up: nothing of the new owner's may
        reach the old session.  While the database cannot be reached the last verdict
        stands (the command itself is answered NO [UNAVAILABLE] if it needs it)."""
        if self.account is None or self.closed:
            return False
        try:
            there = await self._account_still_there()
        except StorageUnavailable:
            return False
        if there:
            return False
        event(log, "imap-account-gone", peer=self.peer, account=self.account.address)
        self.send(Untagged("BYE", "The account was removed or changed; log in again"))
        self.state = State.LOGOUT
        self.close()
        return True

    async def _account_still_there(self) -> bool:
        """Whether the account this session logged in to is still the same enabled
        account.  Looked up again only when the cached settings changed (any directory
        write, by any process, replaces the token), else once per command."""
        assert self.account is not None
        db = self.store.db
        token = db.settings_token() if db is not None else None
        if token is not None and token == self._account_token:
            return True
        obj = await asyncio.to_thread(self.service.lookup, self.account.name, self.account.domain)
        if (obj is None or obj.kind != "account" or obj.created != self.account.created
                or not obj.data.get("enabled", True)):
            return False
        self._account_token = token
        return True

    def account_checked(self, token: bytes | None) -> None:
        """The account was just found the same enabled account while the settings
        token was ``token`` (LOGIN's own look-up): no look-up before the next command
        unless the token changes."""
        self._account_token = token

    def _count_bad(self) -> bool:
        self.bad_in_a_row += 1
        if self.bad_in_a_row >= self.service.limits.max_bad_commands:
            self.send(Untagged("BYE", "Too many bad commands"))
            return True
        return False

    async def load_records(self) -> None:
        """The selected mailbox's message records, read in a thread when SELECT did not
        have them at hand (a 100,000-message mailbox just after a restart): never on
        the event loop, which every session of the worker shares."""
        sel = self.selected
        if sel is not None and not sel.loaded:
            await asyncio.to_thread(sel.load, self.store)

    def _no_line(self, params: Params) -> bool:
        """Whether the input holds no line yet, and is short enough to wait for one:
        the parsers would raise ``NeedMore`` (without a literal) and nothing else.  A
        session waits so at every command (an empty buffer, or half a line), and an
        exception caught in a coroutine makes the coroutine's frame an object of its
        own, kept as long as the session: 270-350 octets for each of the command loop
        and IDLE, paid by every one of 10,000 sessions in IDLE."""
        return len(self.buf) < params.max_line_length and b"\n" not in self.buf

    async def _more_or_bye(self) -> bool:
        """Wait for more input (see ``_more``); at the time-out, say BYE."""
        if await self._more(self._timeout()):
            return True
        if not self._eof and not self.closed:
            self.send(Untagged("BYE", "Autologout; idle for too long"))
        return False

    async def _dispatch(self, command: Command) -> str:
        """Run one command; its status, or "NONE" when the handler answered itself."""
        handler = HANDLERS[command.name]
        try:
            if command.name not in _NO_RECORDS:
                await self.load_records()
            reply = await handler(self, command)
        except StorageUnavailable as e:  # RFC 5530 §3: a temporary failure, one log line
            event(log, "storage-unavailable", level=logging.ERROR, peer=self.peer, command=command.name, error=str(e))
            reply = Tagged(command.tag, "NO", "The database cannot be reached now; try again later", Codes.UNAVAILABLE)
        except Exception as e:
            log.exception("event=imap-command-error peer=%s command=%s", self.peer, command.name)
            reply = Tagged(command.tag, "NO", f"Internal error ({type(e).__name__})")
        if reply is None:  # the handler has answered and set the state (LOGOUT, STARTTLS)
            return "NONE"
        if self.selected is not None and reply.status != "BAD" and command.name not in ("SELECT", "EXAMINE"):
            allow = command.name not in UPDATES_WITHOUT_EXPUNGE or getattr(command, "uid", False)
            try:
                await self.load_records()
                updates = self.selected.refresh(self.store, allow_expunge=allow)
                if updates:
                    self.send(*updates)
                if self.selected.deleted:
                    return self._selected_deleted(reply)
                await context_updates(self)  # RFC 5267 ADDTO/REMOVEFROM
            except StorageUnavailable as e:
                # The command's own answer stands; what changed meanwhile is told on a
                # later command, once the database answers again (the session stays).
                if reply.code != Codes.UNAVAILABLE:
                    event(log, "storage-unavailable", level=logging.ERROR, peer=self.peer, command=command.name,
                          step="updates", error=str(e))
        self.send(reply)
        return reply.status

    def _selected_deleted(self, reply: Tagged) -> str:
        """Another session deleted the selected mailbox: finish the command, then say
        BYE (what Dovecot does; RFC 3501 has no way to un-select a mailbox for the
        client)."""
        self.send(reply, Untagged("BYE", "The selected mailbox was deleted"))
        self.state = State.LOGOUT
        self.close()
        return "NONE"

    # -- exchanges inside a command ---------------------------------------------------

    async def read_sasl(self, tag: str, challenge: bytes = b"") -> SaslResponse | None:
        """Send a SASL challenge and read the client's line; None when the client went
        away or sent a bad line (already answered)."""
        self.send(ContinueRequest(data=challenge))
        while True:
            try:
                resp, self.buf = parse_sasl_response(self.buf, self.service.params, tag=tag)
                return resp
            except NeedMore:
                if not await self._more(self.service.limits.login_timeout):
                    return None
            except Rejected as refused:
                self.buf = self.buf[refused.discard:]
                self.send(refused.reply())
                return None

    async def idle(self, tag: str) -> Any:
        """RFC 2177: send updates as they happen until the client says DONE."""
        self.send(R.IDLING.continuation())
        wake = Flag()
        self._idle_wake = wake
        bus = self.service.bus
        topic_name = None
        heard: list[int] = []  # the bus serial of the topic's last dispatch since the last look

        def on_topic() -> None:
            assert bus is not None and topic_name is not None
            serial = bus.heard_serial(topic_name)
            if serial is not None:
                heard[:] = [serial]
            wake.set()

        if self.selected is not None and bus is not None:
            topic_name = topic(self.selected.box.id)
            bus.subscribe(topic_name, on_topic)
        deadline = time.monotonic() + self.service.limits.idle_timeout
        loop = asyncio.get_running_loop()
        outage = False  # the last look at the mailbox met an unreachable database
        params = self.service.params
        try:
            while True:
                if not self._no_line(params):  # (no line yet: NeedMore, not raised: see _no_line)
                    try:
                        _done, self.buf = parse_idle_done(self.buf, params, tag=tag)
                        return None
                    except NeedMore:
                        pass
                    except Rejected as refused:
                        self.buf = self.buf[refused.discard:]
                        return refused.reply()
                if self.closed or self._eof:
                    return None
                if self._shutdown_pending:
                    self.send(Untagged("BYE", "Server shutting down"))
                    self.state = State.LOGOUT
                    return None
                if time.monotonic() > deadline:
                    self.send(Untagged("BYE", "Autologout; idle for too long"))
                    self.state = State.LOGOUT
                    return None
                if self._inflate(_INFLATE_CHUNK):
                    continue
                self._data.clear()
                if self.transport is not None:
                    self.transport.resume_reading()
                # One event for the client's input and the mailbox's changes (``_input``
                # and ``on_topic`` set it): no task of its own per wait, which counted
                # when one change wakes a thousand sessions.
                # The re-check sets the same event: no cancelled task and no
                # TimeoutError at each of them (10,000 sessions make 333 a second).
                recheck = loop.call_later(self.service.limits.idle_recheck, wake.set)
                try:
                    await wake.wait()
                finally:
                    recheck.cancel()
                # Woken by the mailbox's topic (not by the client, the re-check or a
                # shutdown): what the worker's other sessions read after the same
                # dispatch is shared.
                woken = heard.pop() if heard else None
                wake.clear()
                if await self.account_gone():
                    return None
                if self.selected is not None:
                    try:
                        await self.load_records()
                        updates = self.selected.refresh(self.store, allow_expunge=True, woken=woken)
                    except StorageUnavailable as e:
                        # The database is down: keep idling (a phone should not be cut
                        # off for it) and look again at the next wake-up or re-check.
                        if not outage:
                            event(log, "storage-unavailable", level=logging.ERROR, peer=self.peer, command="IDLE",
                                  error=str(e))
                        outage = True
                        continue
                    outage = False
                    if updates:
                        self.send(*updates)
                    if self.selected.deleted:
                        self.send(Untagged("BYE", "The selected mailbox was deleted"))
                        self.state = State.LOGOUT
                        return None
                    await context_updates(self)
        finally:
            self._idle_wake = None
            if topic_name is not None and bus is not None:
                bus.unsubscribe(topic_name, on_topic)

    async def start_tls(self) -> bool:
        """Upgrade the transport (the tagged OK has been sent)."""
        ctx = self.service.tls_context
        assert ctx is not None and self.transport is not None
        try:
            new = await tlslayer.start_tls(self.transport, self, ctx, handshake_timeout=60.0)
        except (ssl.SSLError, OSError, ConnectionError) as e:
            event(log, "imap-tls-failed", peer=self.peer, error=str(e))
            self.closed = True
            return False
        if new is None:
            return False
        self.transport = new  # type: ignore[assignment]
        self.tls = True
        return True
