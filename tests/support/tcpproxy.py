"""A TCP forwarder on 127.0.0.1: a port that "comes up" in front of a real server.

Used to show that the PostgreSQL engine recovers by itself: a server is started with a
database URL whose port nothing listens on (PostgreSQL itself is shared and must not be
stopped), then a ``TCPProxy`` to 127.0.0.1:5432 is opened on that port.
"""

from __future__ import annotations

import socket
import threading


class TCPProxy:
    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", listen_port))
        self._sock.listen(64)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0  # octets the clients sent through it (what reached the server)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, a is client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                if count:
                    with self._lock:
                        self.sent += len(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        """Stop listening and cut every forwarded connection."""
        with self._lock:
            self._closed = True
            conns, self._open = self._open, []
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux): the port is free at once
        except OSError:
            pass
        self._sock.close()
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self) -> "TCPProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
