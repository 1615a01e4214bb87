"""Change notifications between the processes that share one data directory.

Every worker (and the CLI, when it changes something a worker caches) may publish a
short topic such as ``mailbox 42``; every worker that started the bus hears it and calls
the callbacks subscribed to that topic.  The channel is one Unix datagram socket per
listening process in ``DATA/run/bus/``: a publisher sends the topic to each of them.  A
datagram is small and never blocks the publisher; a socket whose process is gone is
removed by the first publisher that finds it dead.

Delivery is best effort: a subscriber that must not miss a change also checks the
database now and then (IMAP IDLE re-reads the mailbox state every few seconds).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Callable

__all__ = ["Bus"]

log = logging.getLogger("waypost.bus")

_MAX_TOPIC = 200


class Bus:
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "bus"
        self._subs: dict[str, list[Callable[[], None]]] = {}
        self._sock: socket.socket | None = None
        self._path: Path | None = None
        self._send = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._send.setblocking(False)
        self._send_lock = threading.Lock()

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
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

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
        for callback in list(self._subs.get(topic, ())):
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

    # -- publishing (any thread, any process) --------------------------------------

    def publish(self, topic: str) -> None:
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
