"""Splitting the client's octets into lines (RFC 1939 §3: "Commands in the POP3
consist of a case-insensitive keyword, possibly followed by one or more arguments
... terminated by a CRLF pair").

Sans-IO: ``feed`` the octets as they arrive, then ask ``next_event`` until it says
``NEED_DATA``.  A pipelining client (RFC 2449 §6.6) may send many lines at once; they
come out one at a time, in order.  A line longer than the limit comes out as one
``LineTooLong`` event, and the rest of it, however long, is discarded as it arrives:
the buffer never holds more than one line's worth of a client's octets that are not
yet lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Line", "LineBuffer", "LineTooLong", "NEED_DATA", "NeedData"]


@dataclass(frozen=True, slots=True)
class Line:
    """One complete line, without its CRLF (a bare LF ends a line too, as with most
    servers; a CR before it is dropped)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line exceeded the limit; it is being discarded up to its LF."""

    limit: int


class NeedData:
    """No complete line is buffered: feed more octets."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class LineBuffer:
    """The octets received and not yet returned as lines."""

    __slots__ = ("_buf", "_skipping")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside a line already reported as too long

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Forget everything buffered.  After STLS, octets the client sent in clear
        text behind the command must never be read as if they came over TLS
        (RFC 2595 §8 warns about exactly this kind of injection)."""
        self._buf.clear()
        self._skipping = False

    def next_event(self, max_length: int) -> Line | LineTooLong | NeedData:
        """The next line of at most ``max_length`` octets, line end included."""
        while True:
            end = self._buf.find(b"\n")
            if self._skipping:
                if end < 0:
                    self._buf.clear()
                    return NEED_DATA
                del self._buf[: end + 1]
                self._skipping = False
                continue
            if end < 0:
                # Not yet a line: it is too long already if even its LF cannot fit.
                if len(self._buf) >= max_length:
                    self._buf.clear()
                    self._skipping = True
                    return LineTooLong(max_length)
                return NEED_DATA
            if end + 1 > max_length:
                del self._buf[: end + 1]
                return LineTooLong(max_length)
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            return Line(line)
