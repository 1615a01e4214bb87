"""Framing: the client's octets as command lines, as DATA text, as BDAT chunks.

Sans-IO: ``feed`` the octets as they arrive, then ask for the next line or the next
piece of message text until the answer is ``NEED_DATA``.

Command lines (RFC 5321 §2.3.8): "lines consist of zero or more data characters
terminated by the sequence ASCII character "CR" (hex value 0D) followed immediately by
ASCII character "LF" (hex value 0A)"; a bare CR or LF in a command line is refused
(500) rather than guessed at.  A line longer than the limit is discarded up to its LF
as it arrives and answered once.

DATA (RFC 5321 §4.5.2, §4.1.1.4): the message ends at ``CRLF . CRLF`` and nowhere
else.  ``LF . LF``, ``LF . CRLF``, ``CR . CR`` or ``CRLF . LF`` end nothing: they
stay in the text, where ``BodyCheck`` refuses the bare CR or LF (554) at the end —
so no client can make us see two messages where a next hop sees one (the SMTP
smuggling attack of 2023).  A leading dot of a line is removed.  Text is handed out in
pieces of at most ``Params.max_chunk_piece`` octets, never the whole message at once.

BDAT (RFC 3030 §2): exactly ``chunk-size`` octets follow the command line, taken as
they are (no dot-stuffing, no end marker).
"""

from __future__ import annotations

from typing import Final

from ..replies import R, Reply

__all__ = ["BodyCheck", "ChunkReader", "DotReader", "InputBuffer", "NEED_DATA", "NeedData", "TextEnd"]


class NeedData:
    """Nothing complete is buffered: feed more octets."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class TextEnd:
    """The end of the message text (DATA) or of a chunk (BDAT).  ``tail``: the last
    piece of text; ``size``: the octets the client sent; ``too_big``: they were more
    than allowed (the text after the limit was read and dropped, RFC 5321
    §4.5.3.1.10)."""

    __slots__ = ("size", "too_big", "tail")

    def __init__(self, size: int, too_big: bool, tail: bytes = b"") -> None:
        self.size = size
        self.too_big = too_big
        self.tail = tail

    def __repr__(self) -> str:
        return f"TextEnd({self.size}, too_big={self.too_big}, tail={self.tail[:20]!r})"


class InputBuffer:
    """The octets received and not yet consumed, and command-line framing."""

    __slots__ = ("buf", "_skipping")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._skipping = False  # inside a line already answered as too long

    def __len__(self) -> int:
        return len(self.buf)

    def feed(self, data: bytes) -> None:
        self.buf += data

    def clear(self) -> None:
        """Forget everything buffered: after STARTTLS, what the client sent in clear
        text behind the command is never read as if it came over TLS (RFC 3207 §4.2)."""
        self.buf.clear()
        self._skipping = False

    def next_line(self, limit: int) -> bytes | Reply | NeedData:
        """The next command line without its CRLF; ``R.LINE_TOO_LONG`` for a line of
        more than ``limit`` octets (CRLF included), once it has ended; ``R.BARE_LF``
        for a line with a bare CR or LF (RFC 5321 §2.3.8)."""
        buf = self.buf
        i = buf.find(b"\n")
        if self._skipping:
            if i < 0:
                buf.clear()
                return NEED_DATA
            del buf[: i + 1]
            self._skipping = False
            return R.LINE_TOO_LONG
        if i < 0:
            if len(buf) > limit:
                buf.clear()
                self._skipping = True
            return NEED_DATA
        line = bytes(buf[: i + 1])
        del buf[: i + 1]
        if len(line) > limit:
            return R.LINE_TOO_LONG
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            return R.BARE_LF
        return line[:-2]

    def take(self, n: int) -> bytes:
        """Up to ``n`` buffered octets, consumed."""
        with memoryview(self.buf) as view:
            out = bytes(view[:n])  # one copy (a slice of the bytearray made two)
        del self.buf[:n]
        return out


class DotReader:
    """The text of one DATA command, dot-unstuffed, in bounded pieces.

    A ``CRLF`` is put in front of the first octet, so that ``.CRLF`` right after the
    354 ends an empty message and a dot at the start of the first line is unstuffed
    like every other.  The reader keeps a short tail of octets it has not handed out
    (from the last CRLF, or the last four octets) so that an end marker or a line's
    leading dot is recognised whatever the chunking of the input."""

    __slots__ = ("_pending", "_limit", "_piece", "_size", "_prefix", "_done", "_scanned")

    def __init__(self, limit: int, piece: int) -> None:
        self._pending = bytearray(b"\r\n")
        self._scanned = 0  # where in _pending the end marker may still start
        self._limit = limit
        self._piece = piece
        self._size = -2  # octets of the client's (stuffed) text, without our CRLF
        self._prefix = True
        self._done = False

    def next_piece(self, inp: InputBuffer) -> bytes | TextEnd | NeedData:
        """The next piece of unstuffed text (possibly empty), ``TextEnd`` once the end
        marker has been consumed (the octets behind it stay in ``inp``), or
        ``NEED_DATA``."""
        if self._done:
            raise RuntimeError("DotReader: the text has ended")
        pend = self._pending
        while True:
            end = _find_end(pend, self._scanned)
            if end >= 0:
                # The CRLF before the dot belongs to the text (RFC 5321 §4.1.1.4).
                if end + 5 < len(pend):
                    inp.buf[:0] = pend[end + 5:]
                text = bytes(pend[: end + 2])
                del pend[:]
                self._done = True
                piece = self._out(text)
                return TextEnd(self.size, self.too_big, piece)
            # Every start before the last four octets has been looked at: a marker
            # there would have been found.  Not scanned again as more arrives.
            self._scanned = max(len(pend) - 4, 0)
            if len(pend) >= self._piece or not inp.buf:
                break
            take = self._piece + 8 - len(pend)
            pend += inp.buf[:take]
            del inp.buf[:take]
        cut = pend.rfind(b"\r\n", 0, len(pend) - 4)
        if cut <= 0:
            cut = len(pend) - 4
            if cut > 0 and pend[cut - 1] == 0x0D:
                cut -= 1
            if cut <= 2:
                return NEED_DATA
        with memoryview(pend) as view:
            text = bytes(view[:cut])  # one copy (a slice of the bytearray made two)
        del pend[:cut]
        self._scanned = max(len(pend) - 4, 0)
        return self._out(text)

    def _out(self, text: bytes) -> bytes:
        self._size += len(text)
        if self._size > self._limit:
            return b""
        # RFC 5321 §4.5.2: "If the first character is a period and there are other
        # characters on the line, the first character is deleted."
        # (A text without any dot, such as base64, is passed over by memchr.)
        if b"." in text:
            text = text.replace(b"\r\n.", b"\r\n")
        if self._prefix:
            self._prefix = False
            text = text[2:]
        return text

    @property
    def size(self) -> int:
        return max(self._size, 0)

    @property
    def too_big(self) -> bool:
        return self._size > self._limit


class ChunkReader:
    """The octets of one BDAT chunk (RFC 3030 §2), in bounded pieces."""

    __slots__ = ("_left", "_piece")

    def __init__(self, size: int, piece: int) -> None:
        self._left = size
        self._piece = piece

    def next_piece(self, inp: InputBuffer) -> bytes | TextEnd | NeedData:
        if self._left == 0:
            return TextEnd(0, False)
        if not inp.buf:
            return NEED_DATA
        n = min(self._left, self._piece, len(inp.buf))
        piece = inp.take(n)
        self._left -= n
        if self._left == 0:
            return TextEnd(0, False, piece)
        return piece

    @property
    def left(self) -> int:
        return self._left


class BodyCheck:
    """What RFC 5321 and RFC 5322 ask of message text, checked piece by piece as it
    arrives (the whole message is never needed): no bare CR or LF (§2.3.8), no NUL,
    8-bit octets only with BODY=8BITMIME or SMTPUTF8 (RFC 6152), no line longer than
    ``max_line`` octets with its CRLF (RFC 5322 §2.1.1).  ``verdict`` gives the first
    problem in that order, or None."""

    __slots__ = ("_max", "_cr", "_line", "_longest", "bare", "nul", "eight_bit")

    def __init__(self, max_line: int) -> None:
        self._max = max_line - 2
        self._cr = False   # the last piece ended with CR
        self._line = 0     # octets of the line being read
        self._longest = 0
        self.bare = False
        self.nul = False
        self.eight_bit = False

    def feed(self, piece: bytes) -> None:
        if not piece:
            return
        if self._cr:
            if piece[0] != 0x0A:
                self.bare = True
            else:  # a CRLF across two pieces: the CR was counted in the line
                self._line -= 1
                self._longest = max(self._longest, self._line)
                self._line = 0
                piece = piece[1:]
                self._cr = False
                if not piece:
                    return
        crlf = piece.count(b"\r\n")
        self._cr = piece[-1] == 0x0D
        if piece.count(b"\n") != crlf or piece.count(b"\r") != crlf + self._cr:
            self.bare = True
        if not self.nul and b"\x00" in piece:
            self.nul = True
        if not self.eight_bit and not piece.isascii():
            self.eight_bit = True
        if crlf:
            first = piece.find(b"\r\n")
            last = piece.rfind(b"\r\n")
            self._longest = max(self._longest, self._line + first)
            if crlf > 1 and last - first > self._max and _has_long_line(piece, first + 2, last, self._max):
                self._longest = self._max + 1
            self._line = len(piece) - last - 2
        else:
            self._line += len(piece)

    def verdict(self, eight_bit_ok: bool) -> Reply | None:
        longest = max(self._longest, self._line - self._cr)
        if self.bare or self._cr:
            return R.BODY_BARE_LF
        if self.nul:
            return R.BODY_NUL
        if self.eight_bit and not eight_bit_ok:
            return R.BODY_8BIT
        if longest > self._max:
            return R.BODY_LONG_LINE
        return None


def _has_long_line(text: bytes, start: int, end: int, limit: int) -> bool:
    """Whether ``text[start:end]`` (whole lines separated by CRLF, the CRLF at ``end``
    behind them) has a line of more than ``limit`` octets, CRLF not counted.

    From the start of a line, the last LF within the next ``limit + 2`` octets ends
    the lines that fit there; none means the line is too long.  So one backward search
    (memrchr) per ``limit`` octets or so, not a look at every line."""
    pos = start
    stop = end + 2
    while end - pos > limit:
        lf = text.rfind(b"\n", pos, min(pos + limit + 2, stop))
        if lf < 0:
            return True
        pos = lf + 1
    return False


def _find_end(buf: bytearray, start: int) -> int:
    """Where the end marker CRLF.CRLF starts in ``buf`` at ``start`` or after, or -1.
    A text without a dot (base64, most of a big message) costs one memchr."""
    dot = buf.find(b".", start + 2)
    if dot < 0:
        return -1
    return buf.find(b"\r\n.\r\n", dot - 2)
