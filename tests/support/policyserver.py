"""A small HTTPS server on 127.0.0.1 for MTA-STS policies (RFC 8461 §3.3), with a
certificate from the test CA (support.tls) for every ``mta-sts.<domain>`` it serves.

``policies[domain] = text`` sets what ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
answers (200, text/plain); ``answers[domain] = (status, content_type, body)`` makes it
answer anything else (a redirect, a wrong type, an oversized body).  ``requests``
counts the GETs per domain; a POST (a TLS-RPT report, RFC 8460 §5.4) is kept in
``posts`` as ``(host, path, content type, body)`` and answered 201.  Runs in a daemon thread; ``stop()`` ends it.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.server import free_port
from support.tls import CA

__all__ = ["PolicyServer"]


class PolicyServer:
    def __init__(self, domains: list[str], extra_names: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.posts: list[tuple[str, str, str, bytes]] = []
        self.policies: dict[str, str] = {}
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self.requests: dict[str, int] = {}
        leaf = CA.issue_cert(*[f"mta-sts.{d}" for d in domains], *extra_names)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                host = (self.headers.get("Host") or "").split(":")[0].lower()
                domain = host.removeprefix("mta-sts.")
                owner.requests[domain] = owner.requests.get(domain, 0) + 1
                if self.path != "/.well-known/mta-sts.txt":
                    status, ctype, body = 404, "text/plain", b"not found\n"
                elif domain in owner.answers:
                    status, ctype, body = owner.answers[domain]
                elif domain in owner.policies:
                    status, ctype, body = 200, "text/plain", owner.policies[domain].encode()
                else:
                    status, ctype, body = 404, "text/plain", b"no policy\n"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.test/.well-known/mta-sts.txt")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 22))
                owner.posts.append(((self.headers.get("Host") or "").split(":")[0].lower(), self.path,
                                    self.headers.get("Content-Type") or "", body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "PolicyServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "PolicyServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
