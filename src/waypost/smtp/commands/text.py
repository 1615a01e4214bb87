"""The text of the message being received: in memory while it is small, written to the
spool while it arrives once it is big (issue 15 point 5).

A message of a few KiB — nearly all of them — stays a list of pieces and is written
to the spool with its envelope in one go, as before (the fast path: no file is made
before the end of DATA).  Beyond ``IN_MEMORY`` octets the pieces so far and every later
one go to a ``SpoolStream`` (a file of the spool's ``tmp/``, format 2) in writes of
``STREAM_BUFFER`` octets made in a thread; what is kept in memory is the message's
header section (at most ``HEAD_LIMIT`` octets: the rules and the sender checks read it)
and the buffer of the next write.  So memory per session is bounded by about
``IN_MEMORY`` + ``STREAM_BUFFER`` + the read buffer, whatever the size of the message,
and a big message's disk writes never stall the event loop that serves the small ones.

The checks that read the text as it arrives (``proto.BodyCheck``: bare CR/LF, NUL,
8-bit, line length) run on each piece whether it is kept or streamed.  The checks that
need the whole message at once (inbound SPF/DKIM/DMARC, Rspamd, DKIM signing) read a
streamed text back from its file (``whole``).
"""

from __future__ import annotations

import asyncio

from ...queue import Spool, SpoolStream

__all__ = ["HEAD_LIMIT", "IN_MEMORY", "MessageText", "header_section"]

#: Octets of text held in memory before the message is streamed to the spool.
IN_MEMORY = 1024 * 1024
#: Most octets of the header section kept for the rules once a message is streamed.
HEAD_LIMIT = 256 * 1024


def header_section(pieces: list[bytes], limit: int = 1 << 20) -> bytes:
    """The message's header section with the empty line after it (RFC 5322 §2.1), or
    as much of the start of the message as ``limit`` allows when it has none."""
    head = b""
    for piece in pieces:
        start = max(len(head) - 3, 0)
        head += piece
        end = head.find(b"\r\n\r\n", start)
        if end >= 0:
            return head[: end + 4]
        if len(head) >= limit:
            break
    return head[:limit]


class MessageText:
    """The text of one message (DATA, or every BDAT/BURL chunk of one transaction)."""

    __slots__ = ("pieces", "size", "stream", "head", "_spool", "_last")

    def __init__(self, spool: Spool) -> None:
        self.pieces: list[bytes] = []  # the text, while in memory
        self.size = 0
        self.stream: SpoolStream | None = None
        self.head = b""  # once streamed: the header section
        self._spool = spool
        self._last = b""  # the last two octets

    def add(self, piece: bytes) -> bool:
        """Take a piece; True when ``flush`` must be awaited before the next one."""
        if not piece:
            return False
        self.size += len(piece)
        self._last = piece[-2:] if len(piece) >= 2 else (self._last + piece)[-2:]
        if self.stream is not None:
            return self.stream.write(piece)
        self.pieces.append(piece)
        return self.size > IN_MEMORY

    async def flush(self) -> None:
        """Move the text to the spool stream (made at the first call) and write what it
        buffers; SpoolError when the disk refuses."""
        if self.stream is None:
            if self.size <= IN_MEMORY:
                return
            self.stream = self._spool.open_stream()
            self.head = header_section(self.pieces, HEAD_LIMIT)
            for piece in self.pieces:
                self.stream.write(piece)
            self.pieces = []
        await self.stream.flush()

    @property
    def ends_with_crlf(self) -> bool:
        return self._last == b"\r\n"

    def header(self) -> bytes:
        """The header section (what the rules and the From check read)."""
        return self.head if self.stream is not None else header_section(self.pieces)

    async def whole(self) -> bytes:
        """The text as one string, read back from the spool if it was streamed (then
        it is in memory from now on: the stream is dropped)."""
        if self.stream is not None:
            await self.stream.flush()
            text = await asyncio.to_thread(self.stream.read_text)
            self.stream.abort()
            self.stream = None
            self.pieces = [text]
        elif len(self.pieces) > 1:
            self.pieces = [b"".join(self.pieces)]
        return self.pieces[0] if self.pieces else b""

    def abort(self) -> None:
        """The transaction is over without this text: drop it (and its file)."""
        if self.stream is not None:
            self.stream.abort()
            self.stream = None
        self.pieces = []
