"""Maildir delivery with group commit."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..fsutil import durable_batch, fsync_dir, write_new_file

__all__ = ["Delivery", "Mailstore"]

_SUBDIRS = ("cur", "new", "tmp")


@dataclass(frozen=True, slots=True)
class Delivery:
    domain: str
    account: str
    data: bytes | tuple[bytes, ...]  # chunks are written one after the other (no joined copy)
    mailbox: str = "INBOX"


class Mailstore:
    def __init__(self, root: Path, hostname: str | None = None) -> None:
        self.root = root
        # Maildir unique names: time.MusecPpidQn.host (the "/" and ":" of a host
        # name are encoded as the Maildir convention asks).
        host = hostname or socket.gethostname()
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._counter = itertools.count()
        self._known: set[Path] = set()
        self._lock = threading.Lock()

    def mailbox_path(self, domain: str, account: str, mailbox: str = "INBOX") -> Path:
        base = self.root / domain / account
        if mailbox.upper() == "INBOX":
            return base
        # Maildir++: hierarchy separator "." inside the folder name, leading dot.
        return base / ("." + mailbox.replace("/", "."))

    def ensure(self, path: Path) -> None:
        """Create the Maildir (0700) if needed; every directory created is made durable
        in its parent, so a new mailbox survives a power cut like its first message."""
        if path in self._known:
            return
        created: list[Path] = []
        for parent in reversed([path, *path.parents]):
            if not parent.exists() and self.root in (parent, *parent.parents):
                parent.mkdir(mode=0o700, exist_ok=True)
                created.append(parent)
        for sub in _SUBDIRS:
            if not (path / sub).exists():
                (path / sub).mkdir(mode=0o700, exist_ok=True)
                created.append(path / sub)
        for d in {c.parent for c in created}:
            fsync_dir(d)
        with self._lock:
            self._known.add(path)

    def unique_name(self, size: int) -> str:
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(self._counter)}.{self._host},S={size}"

    def deliver_batch(self, items: Sequence[Delivery]) -> list[str | OSError]:
        """Store each message in its mailbox's ``new/``; one flush for the whole batch.

        Returns, per item, the file name given or the OSError that stopped it (a full
        disk fails the items it hit, not the others)."""
        results: list[str | OSError] = []
        written: list[tuple[int, Path, Path, int]] = []  # (fd, tmp, new, result index)
        for item in items:
            try:
                box = self.mailbox_path(item.domain, item.account, item.mailbox)
                self.ensure(box)
                chunks = item.data if isinstance(item.data, tuple) else (item.data,)
                name = self.unique_name(sum(len(c) for c in chunks))
                tmp = box / "tmp" / name
                fd = write_new_file(tmp, chunks)
            except OSError as e:
                results.append(e)
                continue
            written.append((fd, tmp, box / "new" / name, len(results)))
            results.append(name)
        try:
            durable_batch([w[0] for w in written])
        except OSError as e:
            for fd, tmp, _new, i in written:
                os.close(fd)
                _unlink(tmp)
                results[i] = e
            return results
        dirs: set[Path] = set()
        for fd, tmp, new, i in written:
            os.close(fd)
            try:
                os.rename(tmp, new)
                dirs.add(new.parent)
            except OSError as e:
                _unlink(tmp)
                results[i] = e
        for d in dirs:
            fsync_dir(d)
        return results


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
