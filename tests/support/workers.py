"""Which worker process of a running ``waypost serve`` holds a client's connection.

With ``server.workers = 2`` the kernel spreads connections over the workers
(SO_REUSEPORT); a test that must run a sequence across two workers opens connections
until two land on different ones.  The answer comes from ``/proc``: the server end of
the TCP connection (``/proc/net/tcp``) is a socket inode, and the worker is the process
of the server's process group with a descriptor on that inode.  Linux only.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["worker_of", "on_two_workers"]

T = TypeVar("T")


def _hex_addr(addr: tuple[str, int]) -> str:
    packed = socket.inet_aton(addr[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{addr[1]:04X}"


def _server_inode(client: socket.socket) -> int | None:
    local = _hex_addr(client.getsockname()[:2])
    remote = _hex_addr(client.getpeername()[:2])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        # The server's end: its local address is our peer, its remote address is us.
        if fields[1] == remote and fields[2] == local:
            return int(fields[9])
    return None


def worker_of(client: socket.socket, group: int, timeout: float = 5.0) -> int:
    """The pid of the process in process group ``group`` that holds the server end of
    ``client`` (a connection already answered, so already accepted)."""
    deadline = time.monotonic() + timeout
    while True:
        inode = _server_inode(client)
        if inode is not None:
            target = f"socket:[{inode}]"
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                try:
                    if os.getpgid(pid) != group:
                        continue
                    fds = os.listdir(f"/proc/{pid}/fd")
                except (ProcessLookupError, FileNotFoundError, PermissionError):
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except OSError:
                        continue
        if time.monotonic() > deadline:
            raise AssertionError("no worker holds this connection")
        time.sleep(0.02)


def on_two_workers(connect: Callable[[], T], sock: Callable[[T], socket.socket], close: Callable[[T], None],
                   group: int, tries: int = 64, timeout: float = 20.0) -> tuple[T, T]:
    """Two connections made by ``connect`` that are served by different workers.
    ``tries`` at once, then one every 50 ms until ``timeout``: the server's start
    returns when its first worker is ready, and until the second has its listening
    socket every connection lands on the first."""
    first = connect()
    first_pid = worker_of(sock(first), group)
    deadline = time.monotonic() + timeout
    made = 0
    while True:
        other = connect()
        made += 1
        if worker_of(sock(other), group) != first_pid:
            return first, other
        close(other)
        if made >= tries:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    close(first)
    raise AssertionError(f"{made} connections in {timeout:g} s all landed on worker {first_pid}")
