"""The delivered-journal: what the next hop accepted, written before anything else.

A remote server's ``250`` to the end of data and the queue index recording it are
apart by the QUIT, a thread hop and an index transaction that may wait for the write
lock; a kill -9 in between used to deliver every such message again after the restart.
So the moment the reply is read, each accepted recipient is appended to this process's
journal, ``journal/<pid>``, one line ``<queue id> <recipient index>``: one ``write(2)``,
no flush (what a kill -9 must not lose is in the kernel already; a power cut may still
repeat a delivery, which SMTP's at-least-once allows).  Once every recorded outcome is
in the index the file is cut back to nothing.  A journal whose process is gone is read
back into the index, then removed: at start-up, by a worker that starts, and by the
supervisor for a worker it has just reaped, before that worker's leases are given back
(the other way round, another worker could claim and send again what the dead one's
next hop had already taken).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Iterable

__all__ = ["Journal"]

log = logging.getLogger("waypost.queue")


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd: int | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.directory / str(os.getpid()),
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def record(self, rows: Iterable[tuple[str, int]]) -> int:
        """Note (queue id, recipient index) pairs as delivered; returns how many."""
        text = "".join(f"{msg_id} {idx}\n" for msg_id, idx in rows)
        if not text:
            return 0
        n = text.count("\n")
        with self._lock:
            try:
                os.write(self._open(), text.encode())
            except OSError as e:  # only a duplicate is at stake, never a loss
                log.warning("event=journal-error error=%r", e)
                return 0
            self._pending += n
        return n

    def settled(self, n: int) -> None:
        """``n`` recorded rows are now in the index; with none left, empty the file."""
        if n <= 0:
            return
        with self._lock:
            self._pending = max(self._pending - n, 0)
            if self._pending == 0 and self._fd is not None:
                try:
                    os.ftruncate(self._fd, 0)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                if self._pending == 0:
                    try:
                        os.unlink(self.directory / str(os.getpid()))
                    except OSError:
                        pass

    def orphaned(self, everything: bool = False) -> list[tuple[Path, set[tuple[str, int]]]]:
        """Journals of processes that are gone (``everything``: of any process but this
        one, at start-up), with the rows each holds."""
        out = []
        for entry in os.scandir(self.directory):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid == os.getpid():
                if self._fd is not None:
                    continue  # our own, open
            elif not everything and _alive(pid):
                continue
            rows = _read(Path(entry.path))
            if rows is not None:
                out.append((Path(entry.path), rows))
        return out

    def of(self, pid: int) -> list[tuple[Path, set[tuple[str, int]]]]:
        """The journal of one process that is gone (a worker the supervisor has just
        reaped), with its rows; ``[]`` when it left none."""
        path = self.directory / str(pid)
        rows = _read(path)
        return [] if rows is None else [(path, rows)]


def _read(path: Path) -> set[tuple[str, int]] | None:
    """The (queue id, recipient index) rows of a journal file; None when it cannot be read."""
    rows: set[tuple[str, int]] = set()
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    rows.add((parts[0], int(parts[1])))
    except OSError:
        return None
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
