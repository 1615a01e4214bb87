"""The ``listen.metrics`` listener: ``GET /metrics`` in the Prometheus text format.

A deliberately small HTTP/1.1 responder (one request per connection, then close): the
scraper is a machine on a private address, and the web listener (``waypost.web``) is a
separate concern.  Every worker serves the shared socket; whichever accepts reads every
worker's files (see ``waypost.metrics``).  With ``metrics.token`` set, a request needs
``Authorization: Bearer <token>`` (RFC 6750 §2.1); a wrong or missing one gets 401.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..log import event
from . import connection, render

if TYPE_CHECKING:
    from ..db import Database

__all__ = ["MetricsListener", "MAX_REQUEST_HEAD", "READ_TIMEOUT"]

log = logging.getLogger("waypost.metrics")

#: Longest request line plus header section read (bytes); longer gets 431.
MAX_REQUEST_HEAD = 8192
#: Seconds a client has to send its request head.
READ_TIMEOUT = 10.0

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsListener:
    __slots__ = ("directory", "db", "token")

    def __init__(self, directory: Path, db: "Database", token: str = "") -> None:
        self.directory = directory
        self.db = db
        self.token = token

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else str(peer)
        connection("metrics")
        try:
            status, body, extra = await self._answer(reader, client)
            head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *extra]
            if status.startswith("200"):
                head.append(f"Content-Type: {_CONTENT_TYPE}")
            else:
                head.append("Content-Type: text/plain; charset=utf-8")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
        except (ConnectionError, asyncio.TimeoutError):
            pass
        except Exception:
            log.exception("event=metrics-error client=%s", client)
            # An answer, not a closed connection: the scraper records a failed scrape.
            try:
                body = b"500 Internal Server Error\n"
                writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
            except (ConnectionError, OSError):
                pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _answer(self, reader: asyncio.StreamReader, client: str) -> tuple[str, bytes, list[str]]:
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            return self._refuse(client, "431 Request Header Fields Too Large", "request head too long")
        except asyncio.IncompleteReadError:
            return self._refuse(client, "400 Bad Request", "incomplete request")
        if len(raw) > MAX_REQUEST_HEAD:
            return self._refuse(client, "431 Request Header Fields Too Large", "request head too long")
        try:
            text = raw.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
            return self._refuse(client, "400 Bad Request", "undecodable")
        lines = text.split("\r\n")
        # RFC 9112 §3: request-line = method SP request-target SP HTTP-version
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self._refuse(client, "400 Bad Request", "malformed request line")
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                return self._refuse(client, "400 Bad Request", "malformed header field")
            headers[name.lower()] = value.strip()
        if method != "GET":
            return self._refuse(client, "405 Method Not Allowed", f"method {method[:16]}", ["Allow: GET"])
        if target.partition("?")[0] != "/metrics":
            return self._refuse(client, "404 Not Found", f"path {target[:64]}")
        if self.token:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                # RFC 6750 §3: the challenge names the scheme.
                return self._refuse(client, "401 Unauthorized", "token", ['WWW-Authenticate: Bearer realm="metrics"'])
        body = await asyncio.to_thread(render, self.directory, self.db)
        return "200 OK", body, []

    @staticmethod
    def _refuse(client: str, status: str, why: str, extra: list[str] | None = None
                ) -> tuple[str, bytes, list[str]]:
        event(log, "metrics-refused", level=logging.WARNING, client=client, status=status[:3], reason=why)
        return status, (status + "\n").encode("latin-1"), extra or []
