"""Where a command ends, without parsing it.

RFC 3501 §2.2: "The protocol receiver of an IMAP4rev1 client or server is either
reading a line, or is reading a sequence of octets with a known count followed by
a line."  A line that ends with a literal header, ``{n}`` CRLF or (RFC 7888)
``{n+}`` CRLF, is followed by n octets of data and then another line of the same
command; a literal8 (RFC 3516, ``~{n}``) ends its line the same way.  These two rules are all the parser needs to find the end of a command,
and all ``CommandSkipper`` needs to step over a refused one.
"""

from __future__ import annotations

__all__ = ["CommandSkipper", "literal_marker"]

#: Octets kept from the end of a line that is still arriving, enough for the
#: longest literal header we would ever act on: "{" 20 digits "+}" CRLF.
_TAIL = 32

#: The size reported for a literal whose octet count has too many digits to be
#: worth reading (it is refused as too large anyway).
HUGE = 2**63


def literal_marker(buf: bytes, start: int, lf: int) -> tuple[int, bool] | None:
    """(size, synchronizing) if the line ``buf[start:lf + 1]`` ends with a literal
    header, else None.

    RFC 3501 §9:   literal = "{" number "}" CRLF *CHAR8
    RFC 7888 §8:   literal = "{" number ["+"] "}" CRLF *CHAR8
    """
    if lf - start < 4 or buf[lf - 1] != 0x0D or buf[lf - 2] != 0x7D:
        return None
    brace = buf.rfind(b"{", start, lf - 2)
    if brace < 0:
        return None
    inner = buf[brace + 1 : lf - 2]
    synchronizing = True
    if inner.endswith(b"+"):
        inner = inner[:-1]
        synchronizing = False
    if not inner or not inner.isdigit():
        return None
    size = int(inner) if len(inner) <= 18 else HUGE
    return size, synchronizing


class CommandSkipper:
    """Drops the rest of a refused command as its octets arrive (sans-IO).

    Feed every octet received after the error's ``discard`` to ``feed``, which
    returns how many of them belong to the refused command; once ``done`` is true,
    the octets after those are the next command.  A synchronizing literal header
    ends the skipping (the client waits for a "+" that will not come); a
    non-synchronizing one makes the skipper drop its data and read on.
    """

    __slots__ = ("_literal", "_tail", "done")

    def __init__(self, literal: int = 0, tail: bytes = b"") -> None:
        #: literal octets still to drop before line scanning resumes
        self._literal = literal
        self._tail = tail[-_TAIL:]
        self.done = False

    def feed(self, data: bytes) -> int:
        pos = 0
        n = len(data)
        while not self.done and pos < n:
            if self._literal:
                take = min(self._literal, n - pos)
                self._literal -= take
                pos += take
                continue
            lf = data.find(b"\n", pos)
            if lf < 0:
                self._tail = (self._tail + data[pos:])[-_TAIL:]
                return n
            line = self._tail + data[pos : lf + 1]
            self._tail = b""
            pos = lf + 1
            marker = literal_marker(line, 0, len(line) - 1)
            if marker is not None and not marker[1]:
                self._literal = marker[0]
                continue
            self.done = True
        return pos

    def __repr__(self) -> str:
        return f"CommandSkipper(literal={self._literal}, done={self.done})"
