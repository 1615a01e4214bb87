"""Literal IMAP transcripts over a real socket: send exact bytes, read exact responses."""

from __future__ import annotations

import asyncio
import re
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from waypost.db.sqlite import SQLiteDatabase
from waypost.directory import Directory
from waypost.mailstore import Mailstore

__all__ = ["AsyncClient", "OneAccount", "Raw", "listening", "one_account"]


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


@dataclass
class OneAccount:
    """A SQLite index holding one domain and one account, with its Maildir."""

    db: SQLiteDatabase
    directory: Directory
    store: Mailstore


def one_account(tmp: Path, address: str) -> OneAccount:
    """The index in ``tmp`` of the account ``address`` (its domain the main one)."""
    name, domain = address.split("@", 1)
    db = SQLiteDatabase(tmp / "index.sqlite")
    db.add_domain(domain)
    directory = Directory(db, domain)
    directory.add_account(address)
    store = Mailstore(tmp / "mail", hostname="test", db=db)
    store.ensure_account(domain, name)
    return OneAccount(db, directory, store)


@asynccontextmanager
async def listening(service: Any) -> AsyncIterator[int]:
    """``service`` (an ``IMAPService``) served on 127.0.0.1 in this event loop: its
    port; the listener is closed after."""
    server = await asyncio.get_running_loop().create_server(service.protocol_factory(), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
