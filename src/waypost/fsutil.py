"""Durable file writing shared by the spool and the mailstore.

``durable_batch`` is the group commit: it makes a batch of freshly written files durable
with one ``syncfs(2)`` (one flush of the file system for the whole batch) instead of one
``fsync`` per file, falling back to per-file ``fsync`` where ``syncfs`` is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = ["durable_batch", "fsync_dir", "write_new_file"]

_syncfs: Any = None
try:  # Linux: int syncfs(int fd)
    _syncfs = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs
    _syncfs.argtypes = [ctypes.c_int]
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _syncfs = None


def write_new_file(path: Path, data: bytes | Iterable[bytes]) -> int:
    """Create ``path`` (which must not exist) with ``data``; returns an open fd that the
    caller passes to ``durable_batch`` and then closes.  Raises OSError (ENOSPC, ...)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return fd


def durable_batch(fds: list[int]) -> None:
    """Make the data of every open file in ``fds`` durable (one flush when possible)."""
    if not fds:
        return
    if len(fds) > 1 and _syncfs is not None:
        if _syncfs(fds[0]) == 0:
            return
    for fd in fds:
        os.fsync(fd)


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
