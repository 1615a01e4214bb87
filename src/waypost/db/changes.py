"""The change token that the settings caches of every process of a data directory read.

Eight bytes in a small file that every process maps into memory: a write to cached
settings stores eight new random bytes; a cached row is used only while the token it
was read under is still the current one.  A look-up costs a comparison of eight bytes
instead of a query, and a change made by any process (a worker, the CLI) is seen by the
next look-up everywhere on this machine.  (Several machines sharing one PostgreSQL
database also hear each other's changes through ``LISTEN``; see ``postgres.py``.)
"""

from __future__ import annotations

import mmap
import os

__all__ = ["changes_token"]


def changes_token(path: str) -> mmap.mmap | bytearray | None:
    """The shared change token in the file ``path`` (eight bytes, mapped); read-only for a
    user who may only read the data directory; None (nothing is cached) when there is
    none to read."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return mmap.mmap(fd, 8, access=mmap.ACCESS_READ) if os.fstat(fd).st_size >= 8 else None
        finally:
            os.close(fd)
    try:
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 8)
        return mmap.mmap(fd, 8)
    finally:
        os.close(fd)
