"""Which files of some directories any process opens, seen by the kernel (inotify(7)
``IN_OPEN``): a test measures what a server reads by the code path it took, without
hooks in the server.  Linux only (the tests' machine)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
from pathlib import Path
from types import TracebackType

__all__ = ["FileOpens"]

_IN_OPEN = 0x00000020
_IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event), then the name


class FileOpens:
    """``with FileOpens(dir1, dir2) as opens: ...; opens.names()``: the names of the files
    (not directories) opened in those directories since the watch began."""

    def __init__(self, *dirs: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(_IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._dirs: dict[int, Path] = {}
        for d in dirs:
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(d), _IN_OPEN)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d}")
            self._dirs[wd] = d
        self._seen: list[tuple[Path, str]] = []

    def _drain(self) -> None:
        while select.select([self._fd], [], [], 0)[0]:
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            at = 0
            while at < len(buf):
                wd, mask, _cookie, size = _EVENT.unpack_from(buf, at)
                name = buf[at + _EVENT.size:at + _EVENT.size + size].rstrip(b"\0").decode()
                at += _EVENT.size + size
                if name and not mask & _IN_ISDIR and wd in self._dirs:
                    self._seen.append((self._dirs[wd], name))

    def names(self) -> list[tuple[Path, str]]:
        """(directory, file name) of each open so far, in order (one per open)."""
        self._drain()
        return list(self._seen)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "FileOpens":
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
