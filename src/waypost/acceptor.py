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

Idle workers are all woken for each new connection, and the kernel tends to run the
same one first: sessions opened one after another (an IMAP client's, bench/web's 50)
went 46 to 4; and a worker that is busy for a moment (a garbage collection) when 50
clients connect at once finds them all taken.  ``Balance`` is a page of memory every
worker maps (made by the master before it forks them): each worker writes its number of
open connections there, and a worker with L more than the least loaded one (L >= 2) lets
a new connection wait ``BALANCE_DEFER`` x (L - 1) seconds, at most
``BALANCE_MAX_WAIT``, for the others before it takes it itself: once per connection, so
a worker that is stuck or gone delays each new connection by at most that much.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import select
import socket
import ssl as ssl_module
from typing import Any, Callable

from . import tlslayer
from .log import event

__all__ = ["Acceptor", "Balance", "ACCEPT_RETRY_DELAY", "BALANCE_DEFER", "BALANCE_MAX_WAIT"]

log = logging.getLogger(__name__)

#: Seconds without accepting after the process or the system ran out of descriptors or
#: memory (asyncio's own delay for the same case).
ACCEPT_RETRY_DELAY = 1.0

#: Seconds a worker ahead of the least loaded one lets a new connection wait for the
#: others, for each connection of its lead beyond the first; at most BALANCE_MAX_WAIT.
BALANCE_DEFER = 0.002
BALANCE_MAX_WAIT = 0.010

#: accept(2) errors that mean "out of a resource": stop watching the socket for a while,
#: or the loop would spin on a socket that stays readable.
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Balance:
    """Open connections of each worker (a slot each), in anonymous memory shared with
    the processes forked after it is made.  A slot is written by its worker only."""

    def __init__(self, workers: int) -> None:
        self.workers = max(workers, 1)
        self._map = mmap.mmap(-1, 8 * self.workers)  # MAP_SHARED | MAP_ANONYMOUS
        self._counts = memoryview(self._map).cast("q")
        self.slot = 0
        self._load: Callable[[], int] = lambda: 0

    def take(self, slot: int, load: Callable[[], int]) -> None:
        """In a worker, at its start: its slot (counting from 0) and how it counts its
        open connections."""
        self.slot = slot
        self._load = load
        self._counts[slot] = 0

    def publish(self, extra: int = 0) -> int:
        n = self._load() + extra
        self._counts[self.slot] = n
        return n

    def counts(self) -> list[int]:
        return list(self._counts)

    def lead(self, extra: int = 0) -> int:
        """How many connections this worker holds more than the least loaded other one
        (published first, with ``extra``)."""
        if self.workers < 2:
            return 0
        mine = self.publish(extra)
        return mine - min(c for i, c in enumerate(self._counts) if i != self.slot)


class Acceptor:
    """Serves ``factory``'s protocol on ``sock`` (listening and non-blocking), with TLS
    first when ``tls`` is given (waypost.tlslayer's, which keeps no read buffer per
    connection; ``factory``'s protocol takes plaintext by ``data_received``).
    ``close()`` stops accepting and closes this worker's
    copy of the socket; ``wait_closed()`` waits for the handshakes under way."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any],
                 tls: ssl_module.SSLContext | None = None, handshake_timeout: float | None = None,
                 name: str = "", balance: Balance | None = None) -> None:
        self._loop = loop
        self._balance = balance
        self._grace_until = 0.0  # loop time until which a wake-up takes the connection that waited
        self._sock = sock
        self._factory = factory
        self._tls = tls
        self._handshake_timeout = handshake_timeout
        self._name = name
        self._pending: set[asyncio.Task[None]] = set()
        self._watching = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self._watch()

    def _watch(self) -> None:
        self._retry = None
        if not self._closed and not self._watching:
            self._loop.add_reader(self._sock.fileno(), self._ready)
            self._watching = True

    def _waited(self) -> None:
        """The end of a wait for the other workers: if a connection still waits, the next
        wake-up (at once) takes it."""
        try:
            still, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):  # closed meanwhile
            still = []
        self._grace_until = self._loop.time() + 0.005 if still else 0.0
        self._watch()

    def _unwatch(self) -> None:
        if self._watching:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False

    def _ready(self) -> None:
        if self._balance is not None:
            now = self._loop.time()
            # Right after a wait that no other worker ended, the connection that waited
            # is taken; any other is weighed.
            if now >= self._grace_until:
                lead = self._balance.lead(len(self._pending))
                if lead >= 2:
                    self._unwatch()
                    self._retry = self._loop.call_later(min(BALANCE_DEFER * (lead - 1), BALANCE_MAX_WAIT),
                                                        self._waited)
                    return
            self._grace_until = 0.0
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
        if self._balance is not None:
            self._balance.publish(len(self._pending))

    async def _connect(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                await tlslayer.accept(conn, self._factory, self._tls, self._handshake_timeout)
            else:
                await self._loop.connect_accepted_socket(self._factory, conn)
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
