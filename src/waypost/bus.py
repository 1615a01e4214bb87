"""Change notifications between the processes that share one data directory.

Every worker (and the CLI, when it changes something a worker caches) may publish a
short topic such as ``mailbox 42``; every worker that started the bus hears it and calls
the callbacks subscribed to that topic.  The channel is one Unix datagram socket per
listening process in ``DATA/run/bus/``: a publisher sends the topic to each of them.  A
datagram is small and never blocks the publisher; a socket whose process is gone is
removed by the first publisher that finds it dead.

Between nodes (several machines on one PostgreSQL database, docs/cluster.md) a bus is
``link``ed to the database: what it publishes also goes out as ``NOTIFY waypost_bus``
(batched by a sender thread, never in the publisher's way), and what another node
publishes comes back through the database's LISTEN connection (``heard``) to this
process's subscribers.  A node's own topics are not taken back from the database: its
processes heard them on the socket already.

Delivery is best effort: a subscriber that must not miss a change also checks the
database now and then (IMAP IDLE re-reads the mailbox state every few seconds).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import queue as _queue
import threading
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["Bus"]

log = logging.getLogger("waypost.bus")

_MAX_TOPIC = 200


class Bus:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "bus"
        self._subs: dict[str, list[Callable[[], None]]] = {}
        # The serial of the last dispatch of each subscribed topic in this process (one
        # counter for all topics, so a value is never given twice, also after a topic
        # loses its last subscriber and gains one again): ``heard_serial``.
        self._serial = 0
        self._heard: dict[str, int] = {}
        self._sock: socket.socket | None = None
        self._path: Path | None = None
        self._send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._send.setblocking(False)
        self._send_lock = threading.Lock()
        self._node = ""
        self._relay: Callable[[str, Sequence[str]], None] | None = None
        self._outbox: _queue.SimpleQueue[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- between nodes ----------------------------------------------------------------

    def link(self, node: str, relay: Callable[[str, Sequence[str]], None], background: bool = True) -> None:
        """Also send every topic published here to the other nodes: ``relay(node,
        topics)`` (the database's ``publish_topics``).  ``background``: from a sender
        thread that batches what is published meanwhile (a server); else at once (a
        CLI command, which exits right after)."""
        self._node, self._relay = node, relay
        if background:
            self._outbox = _queue.SimpleQueue()
            threading.Thread(target=self._send_out, name="bus-relay", daemon=True).start()

    def _send_out(self) -> None:
        assert self._outbox is not None and self._relay is not None
        while True:
            topics = {self._outbox.get()}
            while len(topics) < 256:
                try:
                    topics.add(self._outbox.get_nowait())
                except _queue.Empty:
                    break
            try:
                self._relay(self._node, sorted(topics))
            except Exception as e:  # the database is down: IDLE re-reads the state anyway
                log.debug("event=bus-relay-error error=%s", e)

    def heard(self, node: str, topic: str) -> None:
        """A topic from the database (any thread): dispatched to this process's
        subscribers unless this node published it (its processes heard it already)."""
        if node == self._node or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._dispatch, topic)
        except RuntimeError:  # the loop is closed: the process is stopping
            pass

    # -- listening ----------------------------------------------------------------

    async def start(self) -> None:
        """Listen for topics published by any process of this data directory."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir / f"{os.getpid()}.sock"
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        self._sock, self._path = sock, path
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except RuntimeError:
                pass
            self._sock.close()
            self._sock = None
        if self._path is not None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                pass
            self._path = None
        self._send.close()

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(256):  # bounded: other work gets its turn
            try:
                data = self._sock.recv(_MAX_TOPIC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._dispatch(data.decode("utf-8", "replace"))

    def _dispatch(self, topic: str) -> None:
        subs = self._subs.get(topic)
        if not subs:
            return
        self._serial += 1
        self._heard[topic] = self._serial
        for callback in list(subs):
            try:
                callback()
            except Exception:
                log.exception("event=bus-callback-error topic=%s", topic)

    def subscribe(self, topic: str, callback: Callable[[], None]) -> None:
        self._subs.setdefault(topic, []).append(callback)

    def unsubscribe(self, topic: str, callback: Callable[[], None]) -> None:
        subs = self._subs.get(topic)
        if subs is None:
            return
        try:
            subs.remove(callback)
        except ValueError:
            pass
        if not subs:
            del self._subs[topic]
            self._heard.pop(topic, None)

    def heard_serial(self, topic: str) -> int | None:
        """Which dispatch of ``topic`` this process heard last (on the event loop):
        subscribers woken by the same dispatch may share what they read after it
        (``Mailstore.woken_state``), since any later change is a later dispatch.
        None when it was not heard while subscribed."""
        return self._heard.get(topic)

    # -- publishing (any thread, any process) --------------------------------------

    def publish(self, topic: str) -> None:
        if self._relay is not None:
            if self._outbox is not None:
                self._outbox.put(topic)
            else:
                try:
                    self._relay(self._node, [topic])
                except Exception as e:
                    log.debug("event=bus-relay-error error=%s", e)
        data = topic.encode("utf-8")[:_MAX_TOPIC]
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        with self._send_lock:
            for name in names:
                if not name.endswith(".sock"):
                    continue
                target = self.dir / name
                try:
                    self._send.sendto(data, str(target))
                except (BlockingIOError, InterruptedError):
                    pass  # that listener is flooded: it will re-read the database
                except OSError as e:
                    if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
                        try:  # its process is gone
                            target.unlink()
                        except OSError:
                            pass
                    else:
                        log.warning("event=bus-send-error socket=%s error=%s", name, e.strerror)
