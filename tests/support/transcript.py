"""Literal SMTP transcripts over a real socket: send exact bytes, read exact replies.

``t.send("MAIL FROM:<a@b>")`` sends the line with CRLF; ``t.expect(250, "2.1.0")``
reads one complete (possibly multi-line) reply and checks its code and enhanced status.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from .tls import client_context

__all__ = ["Transcript", "SMTPReply"]


@dataclass
class SMTPReply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        first = self.lines[0] if self.lines else ""
        word = first.split(" ", 1)[0]
        return word if word[:1] in "245" and word.count(".") == 2 else ""


class Transcript:
    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None) -> None:
        self.host = host
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.log: list[str] = []

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Transcript":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.log.append(f"C: {data!r}")
        self.sock.sendall(data)

    def send(self, line: str) -> None:
        self.send_raw(line.encode("utf-8") + b"\r\n")

    def _line(self) -> str | None:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line.decode("utf-8", "replace")

    def reply(self) -> SMTPReply:
        lines: list[str] = []
        code = 0
        while True:
            line = self._line()
            if line is None:
                raise ConnectionError("server closed the connection; transcript:\n" + "\n".join(self.log))
            self.log.append(f"S: {line}")
            code = int(line[:3])
            lines.append(line[4:])
            if line[3:4] != "-":
                return SMTPReply(code, lines)

    def expect(self, code: int, enhanced: str | None = None) -> SMTPReply:
        r = self.reply()
        assert r.code == code, f"expected {code}, got {r.code} {r.text}\n" + "\n".join(self.log)
        if enhanced is not None:
            assert r.enhanced == enhanced, f"expected {enhanced}, got {r.text!r}\n" + "\n".join(self.log)
        return r

    def cmd(self, line: str, code: int, enhanced: str | None = None) -> SMTPReply:
        self.send(line)
        return self.expect(code, enhanced)

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the server has closed the connection (reads until EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def starttls(self, context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> None:
        """STARTTLS, then a handshake that checks the server's certificate against the
        test CA (``support.tls``) for ``server_hostname`` (default: the address dialled)."""
        self.cmd("STARTTLS", 220)
        ctx = context or client_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname or self.host)
