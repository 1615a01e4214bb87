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

__all__ = ["durable_batch", "fsync_dir", "overwrite_file", "write_new_file"]

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
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    return fd


def overwrite_file(path: Path, data: bytes | Iterable[bytes], size: int) -> int:
    """Write ``data`` over the existing file ``path`` of ``size`` bytes from its start
    and cut it to that length (its inode and blocks are reused); returns an open fd as
    ``write_new_file``.
    On error the file is left as garbage for the caller to drop."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        length = _write_all(fd, data)
        if length < size:
            os.ftruncate(fd, length)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes | Iterable[bytes]) -> int:
    chunks = [memoryview(data)] if isinstance(data, (bytes, bytearray, memoryview)) else [memoryview(c) for c in data]
    total = sum(len(c) for c in chunks)
    if len(chunks) > 64:  # far below IOV_MAX
        chunks = [memoryview(b"".join(chunks))]
    done = os.writev(fd, chunks)  # one system call in the usual case
    if done < total:
        rest = memoryview(b"".join(chunks))[done:]
        while rest:
            n = os.write(fd, rest)
            rest = rest[n:]
    return total


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
