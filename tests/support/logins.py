"""Logins over raw sockets, one connection each, from a chosen 127.0.0.x source
address: for the tests of the login throttle and of remembered logins, where each
attempt must be a connection of its own (the listeners' per-connection limits play no
part) and the reply is all that is read."""

from __future__ import annotations

import base64
import socket

__all__ = ["imap_login", "pop3_login", "smtp_login"]


def _connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.settimeout(30)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def _lines(s: socket.socket, until: bytes) -> bytes:
    """What the server sent up to a whole line that starts with ``until``."""
    data = b""
    while not any(line.startswith(until) for line in data.split(b"\r\n")[:-1]):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def imap_login(inst, user: str, password: str, source: str = "127.0.0.1") -> bool:
    with _connect(inst.imap_port, source) as s:
        _lines(s, b"* OK")
        s.sendall(f'a LOGIN "{user}" "{password}"\r\n'.encode())
        return b"a OK" in _lines(s, b"a ")


def pop3_login(inst, user: str, password: str, source: str = "127.0.0.1") -> bool:
    with _connect(inst.pop3_port, source) as s:
        _lines(s, b"+OK")
        s.sendall(f"USER {user}\r\n".encode())
        _lines(s, b"+OK")
        s.sendall(f"PASS {password}\r\n".encode())
        return _lines(s, b"").startswith(b"+OK")


def smtp_login(inst, user: str, password: str, source: str = "127.0.0.1") -> bool:
    with _connect(inst.submission_port, source) as s:
        _lines(s, b"220 ")
        s.sendall(b"EHLO c\r\n")
        _lines(s, b"250 ")
        s.sendall(b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()) + b"\r\n")
        reply = _lines(s, b"")
        while not reply[3:4] == b" ":
            reply += s.recv(4096)
        return reply.startswith(b"235")
