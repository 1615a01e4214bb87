"""The change token that the settings caches of every process of a data directory read.

Eight bytes in a small file that every process maps into memory: a write to cached
settings stores eight new random bytes; a cached row is used only while the token it
was read under is still the current one.  A look-up costs a comparison of eight bytes
instead of a query, and a change made by any process (a worker, the CLI) is seen by the
next look-up everywhere on this machine.  (Several machines sharing one PostgreSQL
database also hear each other's changes through ``LISTEN``; see ``postgres.py``.)
"""

from __future__ import annotations

import json
import mmap
import os
from typing import Any

__all__ = ["changes_token", "value_entry", "value_of"]


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


# A server-wide value as the settings cache keeps it: (text, how, value).  Decoding the
# JSON on every read cost a resolution more than its table look-up; what cannot be
# changed by a caller is decoded once and handed out as is.
_AS_IS, _FRESH_EMPTY, _DECODE = 0, 1, 2


def value_entry(text: str | None) -> tuple[str | None, int, Any]:
    """The cache entry of a stored value's text (None: no value)."""
    if text is None:
        return None, _AS_IS, None
    value = json.loads(text)
    if isinstance(value, (list, dict)):
        return (text, _FRESH_EMPTY, type(value)) if not value else (text, _DECODE, None)
    return text, _AS_IS, value  # a number, a string, true/false, null: immutable


def value_of(entry: tuple[str | None, int, Any]) -> Any:
    """What ``get_value`` gives for a cache entry: a caller may change a list or a
    dictionary it is given, so those are new each time."""
    text, how, value = entry
    if how == _AS_IS:
        return value
    if how == _FRESH_EMPTY:
        return value()
    assert text is not None
    return json.loads(text)
