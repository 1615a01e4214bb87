"""The web listener of one worker: uvicorn's HTTP/1.1 protocol on a socket the
supervisor bound, in the worker's own event loop (like every other listener: one
``waypost.acceptor.Acceptor`` per socket, TLS from the server's STARTTLS context, by
``waypost.tlslayer`` as for the mail listeners).  uvicorn's
``Server.serve`` is not used: it would take the worker's SIGTERM/SIGINT handlers."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.server import ServerState

from ..acceptor import Acceptor, Balance
from .app import build_app

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["WebService"]

log = logging.getLogger("waypost.web")


class WebService:
    def __init__(self, server: "Server") -> None:
        self.app = build_app(server)
        self._config = uvicorn.Config(self.app, lifespan="off", access_log=False, server_header=False,
                                      date_header=True, proxy_headers=False, log_config=None,
                                      timeout_keep_alive=15, h11_max_incomplete_event_size=64 * 1024)
        self._config.load()
        self._state = ServerState()
        self._servers: list[Acceptor] = []

    def serve(self, sock: socket.socket, tls: ssl.SSLContext | None, name: str = "http",
              balance: Balance | None = None) -> Acceptor:
        loop = asyncio.get_running_loop()
        config, state = self._config, self._state

        def protocol() -> Any:
            return config.http_protocol_class(config=config, server_state=state, app_state={})  # type: ignore[call-arg]

        # (uvicorn's protocols take plaintext through data_received: waypost.tlslayer
        # serves them, without asyncio's 256 KiB read buffer per connection.)
        server = Acceptor(loop, sock, protocol, tls=tls, name=name, balance=balance)
        self._servers.append(server)
        log.info("event=listening proto=%s", "https" if tls is not None else "http")
        return server

    def connections(self) -> int:
        return len(self._state.connections)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting; requests in progress get ``grace`` seconds, idle keep-alive
        connections are closed at once."""
        for server in self._servers:
            server.close()
        for conn in list(self._state.connections):
            conn.shutdown()
        deadline = time.monotonic() + grace
        while self._state.tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self._state.tasks):
            task.cancel()
