"""Every listener keeps the backlog of ``server.listen_backlog`` (issue 13 item 10).

asyncio's ``create_server(sock=...)`` calls ``listen(100)`` on the socket it is given
unless told otherwise, which cut the backlog set at bind time down to 100: of a burst
of connections, those beyond it waited for SYN retransmissions (or for ever, when the
client's ACK of a SYN cookie was dropped).  The listeners are now served by
``waypost.acceptor``, which never calls ``listen`` again.  The kernel's view is read with ``ss``
(iproute2): for a listening socket, Send-Q is its backlog and Recv-Q the connections
waiting to be accepted.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time

from support.server import wait_for

BURST = 300


def listen_queue(port: int) -> tuple[int, int]:
    """(connections waiting to be accepted, backlog) of the listening socket on ``port``."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    fields = out.split()
    assert fields and fields[0] == "LISTEN", out
    return int(fields[1]), int(fields[2])


def test_every_listener_has_the_configured_backlog(instance):
    instance.configure(server={"listen_backlog": 700})
    instance.start()
    ports = [instance.smtp_port, instance.submission_port, instance.odmr_port, instance.imap_port, instance.pop3_port]
    assert [listen_queue(p)[1] for p in ports] == [700] * 5


def _burst(instance, port: int, greeting: bytes) -> None:
    """Stop the server, open BURST connections at once, let it go on: every one is
    greeted.  While it is stopped, the kernel completes handshakes into the backlog."""
    pgid = instance.proc.pid
    socks: list[socket.socket] = []
    os.killpg(pgid, signal.SIGSTOP)
    try:
        for _ in range(BURST):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        # All of them wait in the accept queue (at most backlog + 1 would).
        wait_for(lambda: listen_queue(port)[0] >= BURST, timeout=10, what=f"{BURST} connections queued")
    finally:
        os.killpg(pgid, signal.SIGCONT)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    greeted = 0
    deadline = time.monotonic() + 30
    try:
        while greeted < BURST and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                data = s.recv(512)
                assert data.startswith(greeting), data
                sel.unregister(s)
                greeted += 1
    finally:
        sel.close()
        for s in socks:
            s.close()
    assert greeted == BURST


def test_a_burst_of_connections_is_greeted(instance):
    instance.start()
    _burst(instance, instance.smtp_port, b"220 ")
    _burst(instance, instance.imap_port, b"* OK")


def _held_by(port: int, pids: list[int]) -> dict[int, int]:
    """Established connections on the server side of ``port``, by worker pid."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout
    held = dict.fromkeys(pids, 0)
    for pid in pids:
        held[pid] = out.count(f"pid={pid},")
    return held


def _sessions(port: int, n: int) -> list[socket.socket]:
    """``n`` IMAP sessions opened one after another, each greeted before the next."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert s.recv(512).startswith(b"* OK")
        out.append(s)
    return out


def test_two_workers_share_sessions_opened_one_after_another_also_after_one_is_killed(instance):
    """waypost.acceptor's Balance: the workers share a page of connection counts; a
    worker ahead lets a new connection wait for the others.  Sessions opened one after
    another went 46 to 4 without it.  A worker killed with SIGKILL is replaced, the
    replacement starts at 0 in its slot and takes new sessions; none waits for the dead."""
    instance.configure(server={"workers": 2})
    instance.start()
    ready = instance.expect_log(r"event=worker-ready", count=2, timeout=30)
    pids = [int(line.split("pid=")[1].split()[0]) for line in ready]
    socks = _sessions(instance.imap_port, 20)
    try:
        held = _held_by(instance.imap_port, pids)
        assert sum(held.values()) == 20 and min(held.values()) >= 6, held
        os.kill(pids[0], signal.SIGKILL)
        instance.expect_log(r"event=worker-died", count=1, timeout=30)
        ready = instance.expect_log(r"event=worker-ready", count=3, timeout=30)
        new = int(ready[2].split("pid=")[1].split()[0])
        t = time.monotonic()
        socks += _sessions(instance.imap_port, 10)
        assert time.monotonic() - t < 5
        held = _held_by(instance.imap_port, [pids[1], new])
        # The survivor holds its share of the first 20; the replacement, at 0, takes
        # most of the next 10.
        assert held[new] >= 6, held
    finally:
        for s in socks:
            s.close()
