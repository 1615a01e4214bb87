"""TLS for the sessions of our SMTP, LMTP, IMAP, POP3 and HTTP listeners, lean: an ``ssl.SSLObject`` over two
``ssl.MemoryBIO`` on a plain asyncio transport.

asyncio's own TLS (``connect_accepted_socket(ssl=...)``, ``loop.start_tls``) gives each
connection a 256 KiB read buffer, zeroed when the connection is made and kept until it
ends.  An IMAP session in IDLE cost 295 KiB over TLS against 12.6 KiB in clear
(bench/imap_idle ``--tls``): 10,000 phones connected all day would hold 2.9 GiB.  Here a
connection holds OpenSSL's state and what is in flight; the plain transports of an
event loop read into one buffer (``_read_buffer``), each read copied at once into its
connection's incoming BIO.

Only public API: ``TLSLayer`` is the protocol of a plain transport; the application's
protocol sees a ``TLSTransport`` (an ``asyncio.Transport``) once the handshake is done,
as with asyncio's TLS: through ``connection_made`` for implicit TLS (RFC 8314,
``accept``), or as what ``start_tls`` returns (STARTTLS), which the protocol keeps in
place of the plain transport.

Theory of operation: HANDSHAKE -> WRAPPED -> CLOSED.  Octets that come in go into the
incoming BIO and are worked by the state's step: the handshake, or reading plaintext
for the application (one ``data_received`` per arrival, all the records that came).
Every step ends by sending what OpenSSL put into the outgoing BIO (handshake flights,
records, session tickets, alerts, close_notify).  While the application has paused
reading, records wait in the incoming BIO and the plain transport stops reading.  A
close sends close_notify and closes the plain transport without waiting for the
peer's (RFC 8446 §6.1 lets either side close after sending its own).  The end of the
stream or the peer's close_notify is the application's ``eof_received``, then the
connection closes, as asyncio's TLS does (a TLS stream cannot stay half-open).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
import threading
from typing import Any, Callable

from .log import event

__all__ = ["TLSLayer", "TLSTransport", "accept", "start_tls"]

log = logging.getLogger(__name__)

#: The most plaintext one TLS record carries (RFC 8446 §5.1, RFC 5246 §6.2.1).
_RECORD = 16384

#: Seconds a closed connection may take to send what it still holds (a peer that stops
#: reading) before it is cut (asyncio's ssl_shutdown_timeout is 30 s too).
SHUTDOWN_TIMEOUT = 30.0


#: The application protocol of a layer whose connection is lost (its callbacks do nothing).
_GONE = asyncio.Protocol()

#: Octets one read of the plain socket takes at most (asyncio's own read size).
_READ_SIZE = 256 * 1024

_local = threading.local()


def _read_buffer() -> memoryview:
    """The buffer the plain transports of this thread read into: one for all the
    connections of an event loop, since each read is copied into its connection's
    incoming BIO in the same call (``get_buffer``, recv_into, ``buffer_updated``, with
    nothing run in between).  A connection holds no buffer of its own."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(_READ_SIZE))
    return view


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    WRAPPED = "wrapped"
    CLOSED = "closed"


class TLSLayer(asyncio.BufferedProtocol):
    """The protocol of the plain transport: TLS between it and ``app``.  ``waiter`` gets
    the ``TLSTransport`` when the handshake is done, or the error that ended it.
    ``connected``: the application protocol was connected before (STARTTLS), so its
    ``connection_made`` is not called again and it hears the ``connection_lost``
    whatever the handshake's outcome.  ``app`` is an ``asyncio.Protocol`` (plaintext
    comes through ``data_received``), not a ``BufferedProtocol``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: asyncio.Protocol, context: ssl.SSLContext,
                 waiter: asyncio.Future[TLSTransport], handshake_timeout: float | None = None,
                 connected: bool = False, shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
        if isinstance(app, asyncio.BufferedProtocol):
            raise TypeError("TLSLayer hands plaintext to data_received: a BufferedProtocol cannot take it")
        self._loop = loop
        self._app = app
        self._context = context
        self._waiter: asyncio.Future[TLSTransport] | None = waiter  # (dropped once settled: no cycle)
        self._handshake_timeout = handshake_timeout
        self._shutdown_timeout = shutdown_timeout
        self._error: Exception | None = None  # what broke the session, for connection_lost
        self._app_write_paused = False
        self._app_connected = connected
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw: asyncio.Transport | None = None
        self._state = _State.HANDSHAKE
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False          # the application paused reading
        self._read_scheduled = False
        self._unsent: list[bytes] = []  # plaintext OpenSSL could not take yet (a renegotiation)

    # -- the plain transport's protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        if self._handshake_timeout is not None:
            self._timer = self._loop.call_later(self._handshake_timeout, self._timed_out)
        self._handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self._incoming.write(_read_buffer()[:nbytes])
        if self._state is _State.HANDSHAKE:
            self._handshake()
        elif self._state is _State.WRAPPED:
            self._read()

    def eof_received(self) -> bool:
        if self._state is _State.HANDSHAKE:
            self._fail(ConnectionResetError("the connection ended during the TLS handshake"))
        elif self._state is _State.WRAPPED:
            self._read()  # (all that came is read already, unless reading is paused)
            self._peer_ended()
        return False  # the plain transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _State.CLOSED
        self._cancel_timer()
        self._settle(exc or ConnectionResetError("the connection ended during the TLS handshake"))
        if self._app_connected:
            self._app_connected = False
            self._app.connection_lost(exc or self._error)
        # Nothing more is said to the application: drop the reference that closes the
        # cycle application -> TLSTransport -> layer -> application, so that the
        # connection's OpenSSL state goes when the application lets go of it, not at the
        # garbage collector's next full pass (asyncio's transports drop theirs too).
        self._app = _GONE

    def pause_writing(self) -> None:
        if self._app_connected and not self._app_write_paused:
            self._app_write_paused = True
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app_write_paused:  # (only what was paused: a handshake's flight never is)
            self._app_write_paused = False
            if self._app_connected:
                self._app.resume_writing()

    # -- the steps ----------------------------------------------------------------------

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, OSError, ValueError) as e:  # (ValueError: a certificate check)
            self._flush()  # the alert that says why
            self._fail(e)
            return
        self._flush()
        self._cancel_timer()
        self._state = _State.WRAPPED
        transport = TLSTransport(self)
        if not self._app_connected:
            self._app_connected = True
            self._app.connection_made(transport)
        self._settle(transport)
        if self._incoming.pending or self._ssl.pending():
            self._schedule_read()  # what came with the last flight, once the caller has its transport

    def _read(self) -> None:
        self._read_scheduled = False
        if self._state is not _State.WRAPPED or self._paused:
            return
        chunks: list[bytes] = []
        ended = False
        try:
            while True:
                chunk = self._ssl.read(_RECORD)
                if not chunk:
                    ended = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # the peer's close_notify
            ended = True
        except (ssl.SSLError, OSError) as e:
            self._flush()
            self._broken(e)
            return
        self._flush()  # (post-handshake messages: key updates, tickets)
        if self._unsent:
            unsent, self._unsent = self._unsent, []
            for data in unsent:
                self._write(data)
        if chunks and self._app_connected:
            self._app.data_received(b"".join(chunks))
        if ended and self._state is _State.WRAPPED:
            self._peer_ended()

    def _schedule_read(self) -> None:
        if not self._read_scheduled:
            self._read_scheduled = True
            self._loop.call_soon(self._read_soon)

    def _read_soon(self) -> None:
        """``_read`` outside the plain transport's call (records that waited): a fault
        of the application's there ends the session, as the transport does with one in
        its own call, instead of going to the loop with the session left open."""
        try:
            self._read()
        except Exception as e:
            log.error("event=tls-session-error peer=%s error=%r", self._peer(), e, exc_info=True)
            self._error = e
            self._abort()

    def _peer_ended(self) -> None:
        """The end of the client's stream (close_notify, or the TCP end without one)."""
        if self._app_connected and self._state is _State.WRAPPED:
            self._app.eof_received()
        self._close()

    def _flush(self) -> None:
        if self._outgoing.pending and self._raw is not None and not self._raw.is_closing():
            self._raw.write(self._outgoing.read())

    def _fail(self, exc: BaseException) -> None:
        """The handshake failed: the waiter hears why, and the connection closes (after
        the alert, if any, is sent)."""
        self._cancel_timer()
        self._state = _State.CLOSED
        self._settle(exc)
        if self._raw is not None:
            self._raw.close()

    def _settle(self, outcome: TLSTransport | BaseException) -> None:
        """The waiter hears how the handshake ended, once."""
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def _broken(self, exc: BaseException) -> None:
        """A record that does not decrypt or a protocol error after the handshake."""
        event(log, "tls-error", level=logging.INFO, peer=self._peer(), error=str(exc) or type(exc).__name__)
        if isinstance(exc, Exception):
            self._error = exc
        self._state = _State.CLOSED
        if self._raw is not None:
            self._raw.close()

    def _timed_out(self) -> None:
        self._timer = None
        if self._state is _State.HANDSHAKE:
            self._fail(ConnectionAbortedError(f"TLS handshake did not finish in {self._handshake_timeout:g} s"))
            if self._raw is not None:
                self._raw.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _peer(self) -> str:
        peer = self._raw.get_extra_info("peername") if self._raw is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    # -- what TLSTransport asks for ---------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._state is not _State.WRAPPED or not data:
            return
        if self._unsent:
            self._unsent.append(data)
            return
        try:
            self._ssl.write(data)
        except ssl.SSLWantReadError:  # the peer is renegotiating: after its next records
            self._unsent.append(bytes(data))
        except (ssl.SSLError, OSError) as e:
            self._flush()
            self._broken(e)
            return
        self._flush()

    def _close(self) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._cancel_timer()
        try:
            self._ssl.unwrap()  # writes close_notify; the peer's is not waited for
        except (ssl.SSLError, OSError, ValueError):
            pass
        self._flush()
        if self._raw is not None:
            self._raw.close()
            if self._raw.get_write_buffer_size():  # a peer that does not read: not for ever
                self._timer = self._loop.call_later(self._shutdown_timeout, self._raw.abort)

    def _abort(self) -> None:
        self._state = _State.CLOSED
        self._cancel_timer()
        if self._raw is not None:
            self._raw.abort()

    def _pause_reading(self) -> None:
        if not self._paused:
            self._paused = True
            if self._raw is not None:
                self._raw.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            if self._raw is not None:
                self._raw.resume_reading()
            if self._incoming.pending or self._ssl.pending():
                self._schedule_read()

    def _extra(self, name: str, default: Any) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "sslcontext":
            return self._context
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        if name == "compression":
            return self._ssl.compression()
        return self._raw.get_extra_info(name, default) if self._raw is not None else default


class TLSTransport(asyncio.Transport):
    """What the application writes to and reads from: plaintext, over ``TLSLayer``."""

    def __init__(self, layer: TLSLayer) -> None:
        super().__init__()
        self._layer = layer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._layer._extra(name, default)

    def is_closing(self) -> bool:
        raw = self._layer._raw
        return self._layer._state is not _State.WRAPPED or raw is None or raw.is_closing()

    def close(self) -> None:
        self._layer._close()

    def abort(self) -> None:
        self._layer._abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer._write(bytes(data) if not isinstance(data, bytes) else data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # a TLS stream has no half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS has no half-close: close() sends close_notify")

    def pause_reading(self) -> None:
        self._layer._pause_reading()

    def resume_reading(self) -> None:
        self._layer._resume_reading()

    def is_reading(self) -> bool:
        return not self._layer._paused and self._layer._state is _State.WRAPPED

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._layer._raw is not None:
            self._layer._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        raw = self._layer._raw
        return raw.get_write_buffer_size() if raw is not None else 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        raw = self._layer._raw
        return raw.get_write_buffer_limits() if raw is not None else (0, 0)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._layer._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._layer._app


async def accept(sock: socket.socket, factory: Callable[[], asyncio.Protocol], context: ssl.SSLContext,
                 handshake_timeout: float | None = None,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> TLSTransport:
    """Implicit TLS on an accepted socket: the handshake, then ``factory``'s protocol is
    connected to the ``TLSTransport``.  Raises what ended the handshake (the connection
    is closed then, its descriptor out of the event loop's watch, and the protocol never
    connected)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[TLSTransport] = loop.create_future()
    app = factory()
    transport, _ = await loop.connect_accepted_socket(
        lambda: TLSLayer(loop, app, context, waiter, handshake_timeout, shutdown_timeout=shutdown_timeout), sock)
    try:
        return await waiter
    except BaseException:
        transport.abort()  # (an alert still queued goes too: the caller may close the socket)
        raise


async def start_tls(transport: asyncio.Transport, protocol: asyncio.Protocol, context: ssl.SSLContext,
                    handshake_timeout: float | None = None) -> TLSTransport:
    """STARTTLS: TLS from now on over ``transport`` (its protocol, ``protocol``, has sent
    its go-ahead).  Returns the transport to use from now on, as ``loop.start_tls``;
    raises what ended the handshake (the connection is closed then, and ``protocol``
    hears the ``connection_lost``)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[TLSTransport] = loop.create_future()
    layer = TLSLayer(loop, protocol, context, waiter, handshake_timeout, connected=True)
    transport.set_protocol(layer)
    layer.connection_made(transport)
    transport.resume_reading()  # (the protocol may have paused it)
    try:
        return await waiter
    except asyncio.CancelledError:
        transport.abort()
        raise
