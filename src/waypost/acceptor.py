"""Accepting connections on a listening socket that every worker shares.

The master binds each listener once and forks the workers; each worker watches the same
socket.  asyncio's ``loop.create_server`` accepts, at each wake-up, every connection that
is waiting (up to its backlog, 1,024 here).  When 50 clients connect at once, the first
worker to wake takes all 50 and the other worker stays idle: bench/web measured rounds
at a third of the usual requests/s (650 against 2,400 a second, p99 110-140 ms against
40-70) whenever that happened, and the SMTP intake with two workers varied the same way.

``Acceptor`` takes one connection per wake-up (nginx's ``multi_accept off``): a worker
that is busy comes back to the socket later than an idle one, so connections go to the
workers that have time for them.  It uses only asyncio's public API (``add_reader``,
``connect_accepted_socket``), so the transports, TLS handshakes and time-outs are
asyncio's own, as with ``create_server``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl as ssl_module
from typing import Any, Callable

from .log import event

__all__ = ["Acceptor", "ACCEPT_RETRY_DELAY"]

log = logging.getLogger(__name__)

#: Seconds without accepting after the process or the system ran out of descriptors or
#: memory (asyncio's own delay for the same case).
ACCEPT_RETRY_DELAY = 1.0

#: accept(2) errors that mean "out of a resource": stop watching the socket for a while,
#: or the loop would spin on a socket that stays readable.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    """Serves ``factory``'s protocol on ``sock`` (listening and non-blocking), with TLS
    first when ``tls`` is given.  ``close()`` stops accepting and closes this worker's
    copy of the socket; ``wait_closed()`` waits for the handshakes under way."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any],
                 tls: ssl_module.SSLContext | None = None, handshake_timeout: float | None = None,
                 name: str = "") -> None:
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._tls = tls
        # (asyncio refuses a handshake time-out without TLS)
        self._handshake_timeout = handshake_timeout if tls is not None else None
        self._name = name
        self._pending: set[asyncio.Task[None]] = set()
        self._watching = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self._watch()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self._sock,)

    def is_serving(self) -> bool:
        return self._watching

    def _watch(self) -> None:
        self._retry = None
        if not self._closed and not self._watching:
            self._loop.add_reader(self._sock.fileno(), self._ready)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False

    def _ready(self) -> None:
        try:
            conn, _addr = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up while it waited
        except OSError as e:
            if e.errno in _RESOURCE_ERRORS:
                event(log, "accept-paused", level=logging.ERROR, listener=self._name, error=e.strerror,
                      seconds=ACCEPT_RETRY_DELAY)
                self._unwatch()
                self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._watch)
            else:
                event(log, "accept-failed", level=logging.WARNING, listener=self._name, error=e.strerror)
            return
        conn.setblocking(False)
        task = self._loop.create_task(self._connect(conn))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._tls,
                                                     ssl_handshake_timeout=self._handshake_timeout)
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as e:  # a failed TLS handshake, a client gone at once: its own affair
            # (asyncio's create_server says nothing of these either, outside debug mode)
            event(log, "accept-handshake-failed", level=logging.DEBUG, listener=self._name, error=repr(e))
            conn.close()

    def close(self) -> None:
        if self._closed:
            return
        self._unwatch()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._closed = True
        self._sock.close()  # this worker's descriptor; the master's stays open
        for task in self._pending:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
