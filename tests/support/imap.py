"""Literal IMAP transcripts over a real socket: send exact bytes, read exact responses."""

from __future__ import annotations

import asyncio
import re
import socket

__all__ = ["AsyncClient", "Raw"]


class Raw:
    """A literal IMAP transcript over a socket; literals are folded into their line."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""
        self.greeting = self.line()

    def _raw_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def line(self) -> bytes:
        """One response, literals included (``{n}`` CRLF and the n octets kept)."""
        line = self._raw_line()
        while (m := re.search(rb"\{(\d+)\}$", line)) is not None:
            n = int(m.group(1))
            while len(self.buf) < n:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError(self.buf)
                self.buf += data
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self._raw_line()
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, data: bytes | str, tag: bytes | None = None) -> list[bytes]:
        """Send ``data`` (CRLF added); the responses up to and with the tagged one."""
        if isinstance(data, str):
            data = data.encode()
        self.send(data + b"\r\n")
        tag = tag or data.split(b" ", 1)[0]
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def close(self) -> None:
        self.sock.close()


class AsyncClient:
    """An IMAP client on asyncio streams, for a server served in the test's own event
    loop (``IMAPService`` on ``loop.create_server``): one command at a time, the
    response lines up to the tagged one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def login(cls, port: int, address: str, password: str) -> "AsyncClient":
        c = cls(*await asyncio.open_connection("127.0.0.1", port))
        await c.reader.readline()  # greeting
        assert (await c.cmd(f"a LOGIN {address} {password}"))[-1].startswith(b"a OK")
        return c

    async def cmd(self, line: str) -> list[bytes]:
        tag = line.split(" ", 1)[0].encode()
        self.writer.write(line.encode() + b"\r\n")
        out = []
        while True:
            got = await asyncio.wait_for(self.reader.readline(), 10)
            assert got, f"closed after {out!r}"
            out.append(got)
            if got.startswith(tag + b" "):
                return out
