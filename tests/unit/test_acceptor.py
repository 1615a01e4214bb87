"""waypost.acceptor: a worker takes one waiting connection per wake-up, so that a busy
worker leaves the connections waiting on a shared socket to the other workers; a worker
with more connections than the others lets a new one wait for them (``Balance``); and
an accept(2) that fails for want of descriptors pauses the listener instead of spinning.

Real sockets on 127.0.0.1, a real event loop; the "other worker" is a thread accepting on
the same socket, or (for ``Balance``'s shared page) a process forked after it."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import select
import socket
import threading
import time

import pytest

from waypost import acceptor
from waypost.acceptor import Acceptor, Balance


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


class _Busy(asyncio.Protocol):
    """A session whose start keeps its worker busy for 100 ms."""
    made: list[_Busy] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _Busy.made.append(self)
        self.transport = transport
        time.sleep(0.1)


def test_a_busy_worker_leaves_the_waiting_connections_to_the_other_workers():
    listener = _listening()
    port = listener.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]  # all ten wait in the backlog
    other: list[socket.socket] = []
    _Busy.made = []

    dup = listener.dup()  # the other worker's descriptor of the same socket

    def other_worker() -> None:
        deadline = time.monotonic() + 10
        dup.settimeout(0.05)
        while len(other) + len(_Busy.made) < 10 and time.monotonic() < deadline:
            try:
                other.append(dup.accept()[0])
            except TimeoutError:
                continue
            time.sleep(0.02)
        dup.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = Acceptor(loop, listener, _Busy, name="test")
        thread = threading.Thread(target=other_worker)
        thread.start()
        deadline = time.monotonic() + 10
        while len(other) + len(_Busy.made) < 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        await asyncio.to_thread(thread.join)
        for p in _Busy.made:
            p.transport.close()
        await asyncio.sleep(0)

    try:
        asyncio.run(main())
        assert len(other) + len(_Busy.made) == 10
        # asyncio's create_server takes every waiting connection at its first wake-up
        # (10 here); one a wake-up, with 100 ms of work each, leaves most to the other.
        assert len(_Busy.made) <= 3, (len(_Busy.made), len(other))
        assert listener.fileno() == -1  # close() closed this worker's descriptor
    finally:
        for s in clients + other:
            s.close()


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


def test_out_of_descriptors_pauses_accepting_then_serves_the_waiting_client(caplog, monkeypatch):
    monkeypatch.setattr(acceptor, "ACCEPT_RETRY_DELAY", 0.2)
    listener = _listening()
    port = listener.getsockname()[1]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server = Acceptor(loop, listener, _Echo, name="test")
        client = socket.create_connection(("127.0.0.1", port))
        client.settimeout(5)
        spare: list[socket.socket] = []
        # Every descriptor taken: accept(2) fails with EMFILE.
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                spare.append(socket.socket())
        except OSError:
            pass
        try:
            for _ in range(50):
                if any(r.getMessage() == "accept-paused" for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
        finally:
            for s in spare:
                s.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        client.sendall(b"ping")
        got = await asyncio.to_thread(client.recv, 10)  # served after the pause
        client.close()
        server.close()
        await server.wait_closed()
        return got

    with caplog.at_level(logging.INFO, logger="waypost.acceptor"):
        got = asyncio.run(main())
    paused = [r.fields for r in caplog.records if r.getMessage() == "accept-paused"]
    assert paused and paused[0]["listener"] == "test" and paused[0]["error"], paused
    assert got == b"ping"


@pytest.mark.parametrize("tls", [False, True])
def test_connections_are_served_plain_and_with_tls_first(tls, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    listener = _listening()
    port = listener.getsockname()[1]

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server = Acceptor(loop, listener, _Echo, tls=server_ctx if tls else None, handshake_timeout=5, name="t")
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx if tls else None, server_hostname="localhost" if tls else None)
        writer.write(b"hello")
        got = await asyncio.wait_for(reader.readexactly(5), 5)
        writer.close()
        # A client that speaks no TLS at all: its handshake fails, the listener goes on.
        if tls:
            bad = socket.create_connection(("127.0.0.1", port))
            bad.sendall(b"EHLO x\r\n")
            await asyncio.sleep(0.1)
            bad.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                           server_hostname="localhost")
            writer.write(b"again")
            got += await asyncio.wait_for(reader.readexactly(5), 5)
            writer.close()
        server.close()
        await server.wait_closed()
        return got

    assert asyncio.run(main()) == (b"helloagain" if tls else b"hello")


def test_the_balance_page_is_shared_by_the_processes_forked_after_it():
    balance = Balance(2)
    pid = os.fork()
    if pid == 0:  # the other worker: five connections open
        try:
            balance.take(1, lambda: 5)
            balance.publish()
        finally:
            os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    load = [6]
    balance.take(0, lambda: load[0])
    assert balance.counts() == [0, 5]
    assert balance.lead() == 1  # 6 against 5
    load[0] = 7
    assert balance.lead(extra=1) == 3  # 7 open and 1 being set up, against 5
    assert balance.counts() == [8, 5]
    assert Balance(1).lead() == 0


def _sequential_connections(port: int, n: int) -> list[socket.socket]:
    """``n`` clients, one after another (25 ms apart), as an IMAP client's sessions."""
    out = []
    for _ in range(n):
        out.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.025)
    return out


def _other_worker(listener: socket.socket) -> tuple[int, int, int]:
    """A process accepting on ``listener`` until told to stop, 3 ms after each wake-up (a
    worker busy for a moment): (pid, stop pipe, count pipe)."""
    stop_r, stop_w = os.pipe()
    count_r, count_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(stop_w)
            os.close(count_r)
            taken = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ready, _, _ = select.select([listener, stop_r], [], [], 1)
                if stop_r in ready:
                    break
                if listener in ready:
                    time.sleep(0.003)
                    try:
                        taken.append(listener.accept()[0])
                    except BlockingIOError:
                        pass
            os.write(count_w, str(len(taken)).encode())
        finally:
            os._exit(0)
    os.close(stop_r)
    os.close(count_w)
    return pid, stop_w, count_r


@pytest.mark.parametrize("other_accepts", [True, False])
def test_a_worker_ahead_leaves_new_connections_to_the_others_but_takes_them_when_nobody_does(other_accepts):
    listener = _listening()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    balance = Balance(2)
    balance.take(0, lambda: 10)  # this worker: 10 open; the other (slot 1): none
    mine: list[asyncio.Transport] = []

    class Counted(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            mine.append(transport)  # type: ignore[arg-type]

    other = _other_worker(listener) if other_accepts else None

    async def main() -> list[socket.socket]:
        loop = asyncio.get_running_loop()
        server = Acceptor(loop, listener, Counted, name="test", balance=balance)
        clients = await asyncio.to_thread(_sequential_connections, port, 20)
        await asyncio.sleep(0.5)
        server.close()
        await server.wait_closed()
        for t in mine:
            t.close()
        await asyncio.sleep(0)
        return clients

    clients = asyncio.run(main())
    taken = 0
    if other is not None:
        pid, stop_w, count_r = other
        os.close(stop_w)
        taken = int(os.read(count_r, 20) or b"0")
        os.close(count_r)
        assert os.waitpid(pid, 0)[1] == 0
    try:
        assert len(mine) + taken == 20
        if other_accepts:
            # Each waited 10 ms and the other took it after its 3 (a few may not, when
            # this shared machine leaves the other process without a CPU that long);
            # without Balance this worker, first to wake, takes them all.
            assert len(mine) <= 4, (len(mine), taken)
        else:
            assert len(mine) == 20  # nobody else: each taken after its wait
    finally:
        for s in clients:
            s.close()
