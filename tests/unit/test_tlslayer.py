"""waypost.tlslayer: TLS over a plain transport (ssl.SSLObject and two MemoryBIOs), for
the IMAP and POP3 sessions that stay connected for hours.

Real sockets on 127.0.0.1, a real event loop, certificates from the test CA; the
clients are asyncio's and the standard library's TLS, so each side of each handshake
is somebody else's code."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import ssl
import time
import tracemalloc
from typing import Any

import pytest
from support.tls import CA, client_context

from waypost import tlslayer
from waypost.acceptor import Acceptor

NAME = "tls.test"


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CA.issue_cert(NAME).configure_cert(ctx)
    return ctx


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class Echo(asyncio.Protocol):
    """Answers each line with the line upper-cased; "STARTTLS" switches to TLS, "BIG n"
    answers n octets, "PAUSE"/"RESUME" stop and start reading (with the octets that
    came meanwhile counted), "COUNT" the octets received so far, "BYE" closes; a line
    longer than 64 KiB is only counted."""

    made: list["Echo"] = []

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.transport: Any = None
        self.buf = b""
        self.received = 0
        self.eof = False
        self.lost = asyncio.get_running_loop().create_future()
        self.tls_info: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.tls_info = transport.get_extra_info("ssl_object")
        Echo.made.append(self)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.buf += data
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            self.line(line.strip())

    def line(self, line: bytes) -> None:
        if line == b"STARTTLS":
            self.transport.write(b"GO\n")
            self.buf = b""  # what came behind the command in clear is dropped
            asyncio.get_running_loop().create_task(self.upgrade())
        elif line.startswith(b"BIG "):
            self.transport.write(b"x" * int(line[4:]) + b"\n")
        elif line == b"PAUSE":
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(0.3, self.transport.resume_reading)
        elif line == b"BYE":
            self.transport.write(b"BYE\n")
            self.transport.close()
        elif line.startswith(b"COUNT"):
            self.transport.write(b"%d\n" % self.received)
        elif len(line) > 65536:
            pass  # a payload: counted only
        else:
            self.transport.write(line.upper() + b"\n")

    async def upgrade(self) -> None:
        assert self.context is not None
        self.transport = await tlslayer.start_tls(self.transport, self, self.context, handshake_timeout=5)
        self.tls_info = self.transport.get_extra_info("ssl_object")

    def eof_received(self) -> None:
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def _serve(context: ssl.SSLContext, timeout: float | None = 5.0,
                 implicit: bool = True) -> tuple[Acceptor, int]:
    sock = _listening()
    Echo.made = []
    loop = asyncio.get_running_loop()
    acc = Acceptor(loop, sock, lambda: Echo(context), tls=context if implicit else None,
                   handshake_timeout=timeout)
    return acc, sock.getsockname()[1]


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line + b"\n")
    return await asyncio.wait_for(reader.readline(), 5)


async def test_implicit_tls_carries_lines_both_ways_and_says_it_is_tls():
    ctx = _server_context()
    acc, port = await _serve(ctx)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                       server_hostname=NAME, limit=1 << 21)
        assert await _ask(reader, writer, b"hello") == b"HELLO\n"
        [server] = Echo.made
        assert server.tls_info is not None and server.tls_info.version() in ("TLSv1.3", "TLSv1.2")
        assert server.transport.get_extra_info("cipher") is not None
        assert server.transport.get_extra_info("peername") == writer.get_extra_info("sockname")
        # Many lines in one write, and an answer bigger than a record (16 KiB).
        writer.write(b"".join(b"l%d\n" % i for i in range(500)))
        for i in range(500):
            assert await asyncio.wait_for(reader.readline(), 5) == b"L%d\n" % i
        assert len(await _ask(reader, writer, b"BIG 1000000")) == 1000001
        assert await _ask(reader, writer, b"BYE") == b"BYE\n"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # close_notify, then the end
        assert await asyncio.wait_for(server.lost, 5) is None
        writer.close()
    finally:
        acc.close()


async def test_the_client_ending_is_the_protocol_s_eof_then_connection_lost():
    ctx = _server_context()
    acc, port = await _serve(ctx)
    try:
        # With close_notify (asyncio's client closes that way) ...
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                       server_hostname=NAME)
        assert await _ask(reader, writer, b"a") == b"A\n"
        writer.close()
        server = Echo.made[-1]
        await asyncio.wait_for(server.lost, 5)
        assert server.eof
        # ... and without: the TCP connection just ends (SSLSocket.close sends no
        # close_notify).
        def plain_end() -> bytes:
            tls = client_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                               server_hostname=NAME)
            tls.sendall(b"b\n")
            got = tls.recv(10)
            tls.close()
            return got
        assert await asyncio.to_thread(plain_end) == b"B\n"
        server = Echo.made[-1]
        await asyncio.wait_for(server.lost, 5)
        assert server.eof
    finally:
        acc.close()


async def test_paused_reading_holds_the_records_and_resuming_delivers_them_all():
    ctx = _server_context()
    acc, port = await _serve(ctx)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                       server_hostname=NAME)
        writer.write(b"PAUSE\n")
        await asyncio.sleep(0.05)
        server = Echo.made[-1]
        assert not server.transport.is_reading()
        before = server.received
        payload = b"y" * (4 * 1024 * 1024)
        writer.write(payload + b"\n")
        await asyncio.sleep(0.1)
        assert server.received == before  # nothing while paused
        await writer.drain()
        assert (await _ask(reader, writer, b"COUNT")).strip() == b"%d" % (before + len(payload) + 1 + 6)
        writer.close()
    finally:
        acc.close()


async def test_starttls_upgrades_and_drops_what_came_in_clear_behind_the_command():
    ctx = _server_context()
    acc, port = await _serve(ctx, implicit=False)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _ask(reader, writer, b"plain") == b"PLAIN\n"
        writer.write(b"STARTTLS\nINJECTED\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"GO\n"
        await writer.start_tls(client_context(), server_hostname=NAME)
        assert await _ask(reader, writer, b"secret") == b"SECRET\n"
        server = Echo.made[-1]
        assert server.tls_info is not None
        assert await _ask(reader, writer, b"BYE") == b"BYE\n"
        await asyncio.wait_for(server.lost, 5)
        writer.close()
    finally:
        acc.close()


async def test_a_failed_starttls_handshake_ends_the_session_and_the_protocol_hears_it():
    ctx = _server_context()
    acc, port = await _serve(ctx, implicit=False)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"GO\n"
        writer.write(b"this is no ClientHello\r\n")
        await asyncio.wait_for(reader.read(), 5)  # an alert, then the end
        server = Echo.made[-1]
        assert server.tls_info is None
        await asyncio.wait_for(server.lost, 5)
        writer.close()
    finally:
        acc.close()


async def test_plain_text_or_silence_on_the_tls_port_ends_the_connection_and_the_next_client_is_served():
    ctx = _server_context()
    acc, port = await _serve(ctx, timeout=0.5)
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(b"a1 LOGIN plain text\r\n")
        assert (await asyncio.wait_for(r1.read(), 5))[:1] in (b"", b"\x15")  # nothing, or an alert
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)  # says nothing: the time-out ends it
        assert await asyncio.wait_for(r2.read(), 5) == b""
        assert Echo.made == []  # no session ever started
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                       server_hostname=NAME)
        assert await _ask(reader, writer, b"ok") == b"OK\n"
        for w in (w1, w2, writer):
            w.close()
    finally:
        acc.close()


async def _memory_per_session(lean: bool, n: int = 40) -> float:
    """Python-allocated octets per TLS session held open (tracemalloc): served by the
    Acceptor (``lean``) or by asyncio's own TLS (``create_server(ssl=...)``)."""
    ctx = _server_context()
    acc: Any
    if lean:
        acc, port = await _serve(ctx)
    else:
        acc = await asyncio.get_running_loop().create_server(lambda: Echo(ctx), sock=_listening(), ssl=ctx)
        port = acc.sockets[0].getsockname()[1]
    clients = []
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(), server_hostname=NAME)
        assert await _ask(reader, writer, b"warm") == b"WARM\n"
        clients.append(writer)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                           server_hostname=NAME)
            assert await _ask(reader, writer, b"hi") == b"HI\n"
            clients.append(writer)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return (after - before) / n
    finally:
        for w in clients:
            w.close()
        acc.close()


async def test_a_tls_session_holds_no_read_buffer_of_its_own():
    """asyncio's TLS keeps a 256 KiB buffer per connection (both sides of each
    connection are in this process here, the client's asyncio TLS included, so the
    figures are per pair)."""
    asyncio_tls = await _memory_per_session(lean=False)
    lean = await _memory_per_session(lean=True)
    assert asyncio_tls - lean > 200 * 1024, (asyncio_tls, lean)


@pytest.mark.parametrize("cut", ["abort", "close"])
async def test_the_server_closing_or_aborting_is_seen_by_the_client(cut):
    ctx = _server_context()
    acc, port = await _serve(ctx)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                       server_hostname=NAME)
        assert await _ask(reader, writer, b"x") == b"X\n"
        server = Echo.made[-1]
        getattr(server.transport, cut)()
        assert server.transport.is_closing()
        server.transport.write(b"after the end\n")  # dropped, no error
        try:
            got = await asyncio.wait_for(reader.read(), 5)
        except (ConnectionResetError, ssl.SSLError):
            got = b""
        assert got == b""
        await asyncio.wait_for(server.lost, 5)
        writer.close()
    finally:
        acc.close()


async def test_a_record_that_does_not_decrypt_ends_the_session_with_a_log_line(caplog):
    ctx = _server_context()
    acc, port = await _serve(ctx)
    try:
        def tamper() -> bytes:
            tls = client_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                               server_hostname=NAME)
            tls.sendall(b"one\n")
            got = tls.recv(10)
            # A TLS application-data record header and a body that is no record of
            # this session: the server cannot decrypt it.
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
            try:
                rest = tls.recv(100)
            except (ssl.SSLError, OSError):
                rest = b""
            tls.close()
            return got + rest
        with caplog.at_level(logging.INFO, logger="waypost.tlslayer"):
            assert (await asyncio.to_thread(tamper)).startswith(b"ONE\n")
            server = Echo.made[-1]
            assert isinstance(await asyncio.wait_for(server.lost, 5), ssl.SSLError)  # not a clean end
        assert any(getattr(r, "fields", {}).get("event") == "tls-error" for r in caplog.records)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                       server_hostname=NAME)
        assert await _ask(reader, writer, b"next") == b"NEXT\n"
        writer.close()
    finally:
        acc.close()


async def test_a_closed_session_s_tls_state_goes_without_the_garbage_collector():
    """Sessions ended and let go of by their protocol leave no SSLObject behind while
    the cyclic garbage collector is off (a cycle through the layer would keep each one,
    about 17 KiB of OpenSSL state, until the collector's next full pass)."""
    ctx = _server_context()
    acc, port = await _serve(ctx)
    gc.collect()
    gc.disable()
    try:
        before = sum(1 for o in gc.get_objects() if isinstance(o, ssl.SSLObject) and o.server_side)
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                           server_hostname=NAME)
            assert await _ask(reader, writer, b"BYE") == b"BYE\n"
            await asyncio.wait_for(Echo.made[-1].lost, 5)
            writer.close()
            await writer.wait_closed()
        Echo.made = []
        await asyncio.sleep(0.1)
        after = sum(1 for o in gc.get_objects() if isinstance(o, ssl.SSLObject) and o.server_side)
    finally:
        gc.enable()
        acc.close()
    assert after - before <= 1, (before, after)


async def _accept_one(handler: Any, **kwargs: Any) -> tuple[int, asyncio.Task[Any]]:
    """A listening socket whose one connection goes to ``tlslayer.accept``."""
    sock = _listening()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()

    async def one() -> Any:
        conn, _ = await loop.sock_accept(sock)
        sock.close()
        conn.setblocking(False)
        return await tlslayer.accept(conn, handler, _server_context(), 5, **kwargs)
    return sock.getsockname()[1], loop.create_task(one())


async def test_a_close_that_cannot_send_what_it_holds_ends_within_the_shutdown_time_out():
    """The server writes 20 MB and closes; the client never reads.  asyncio's TLS cuts
    such a connection after ssl_shutdown_timeout; so must this."""
    app = Echo()
    port, accepted = await _accept_one(lambda: app, shutdown_timeout=0.5)

    def silent_client() -> None:
        tls = client_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                           server_hostname=NAME)
        tls.sendall(b"BIG 20000000\nBYE\n")
        time.sleep(4)  # reads nothing
        tls.close()
    client = asyncio.get_running_loop().run_in_executor(None, silent_client)
    await accepted
    started = time.monotonic()
    await asyncio.wait_for(app.lost, 3)
    assert time.monotonic() - started < 3
    await client


class Faulty(Echo):
    """Fails on the first line it reads."""

    def line(self, line: bytes) -> None:
        raise RuntimeError("a fault of the application")


def _last_flight_with_data(port: int, data: bytes) -> bytes:
    """A client (SSLObject over memory BIOs on a blocking socket) that sends its last
    handshake flight and ``data`` in one segment, then reads until the end: records
    that come with the handshake's end wait in the server's BIO, and are read after
    the handshake, outside the plain transport's call."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(incoming, outgoing, server_hostname=NAME)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    obj.write(data)
    sock.sendall(outgoing.read())  # Finished and the data, together
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except OSError:  # reset: the session was cut
        pass
    sock.close()
    return got


async def test_a_fault_of_the_application_on_records_that_came_with_the_handshake_ends_the_session(caplog):
    app = Faulty()
    port, accepted = await _accept_one(lambda: app)
    client = asyncio.get_running_loop().run_in_executor(None, _last_flight_with_data, port, b"boom\n")
    with caplog.at_level(logging.ERROR, logger="waypost.tlslayer"):
        await accepted
        assert isinstance(await asyncio.wait_for(app.lost, 5), RuntimeError)
    assert any("event=tls-session-error" in r.getMessage() for r in caplog.records)
    await asyncio.wait_for(client, 5)  # the client saw the end (not left waiting)


async def test_records_that_came_with_the_handshake_reach_the_application():
    app = Echo()
    port, accepted = await _accept_one(lambda: app)
    got = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
        None, _last_flight_with_data, port, b"first\nBYE\n"), 10)
    await accepted
    await asyncio.wait_for(app.lost, 5)
    assert app.received == len(b"first\nBYE\n")
    assert got  # the answers, sealed (the client does not decrypt them)


async def test_sessions_read_at_the_same_time_each_get_their_own_octets():
    """The plain transports share one read buffer: twenty sessions sending at once,
    each a different payload in many records, get their own answers only."""
    ctx = _server_context()
    acc, port = await _serve(ctx)
    try:
        async def session(i: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(),
                                                           server_hostname=NAME)
            lines = [b"s%d-%d-" % (i, n) + b"z" * (n * 37 % 3000) for n in range(200)]
            writer.write(b"".join(line + b"\n" for line in lines))
            for line in lines:
                assert await asyncio.wait_for(reader.readline(), 10) == line.upper() + b"\n"
            writer.close()
        await asyncio.gather(*(session(i) for i in range(20)))
    finally:
        acc.close()
