"""One SMTP connection, sans-IO: octets in, events out; replies in, octets out.

The adapter feeds what it reads (``feed``) and asks for the next event of the kind
the session is waiting for: a command (``next_command``), a line answering an AUTH
challenge (``next_auth_line``), or a piece of message text after ``start_data`` or
``start_chunk`` (``next_text``).  ``NEED_DATA`` means: read more, feed it, ask again.
Replies become octets through ``wire``; nothing here writes, sleeps or awaits.

Every reply carries an enhanced status code (RFC 2034 §3) unless it is "raw": the
greeting, the EHLO/HELO/LHLO lines and the intermediate 334/354 replies.
"""

from __future__ import annotations

import re

from ..replies import Reply, default_enhanced
from .commands import Line
from .framing import ChunkReader, DotReader, InputBuffer, NeedData, TextEnd
from .params import Params
from .parser import parse_line

__all__ = ["Connection", "multiline", "wire"]

_HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")


def wire(reply: Reply | str, raw: bool = False) -> bytes:
    """The octets of one reply (RFC 5321 §4.2: ``code SP text CRLF``).  A ``str`` is a
    reply line as it stands; an enhanced code is added where it lacks one."""
    if isinstance(reply, Reply):
        reply = f"{reply.code} {reply.status} {reply.text}" if reply.status else f"{reply.code} {reply.text}"
    if not raw and len(reply) >= 4 and reply[0] in "245" and reply[:3].isdigit() and reply[3] in " -":
        if not _HAS_ENHANCED.match(reply[4:]):
            reply = f"{reply[:4]}{default_enhanced(int(reply[:3]))} {reply[4:]}"
    return (reply + "\r\n").encode("utf-8", "replace")


def multiline(code: int, lines: list[str]) -> bytes:
    """RFC 5321 §4.2.1: ``code-text`` for every line but the last, ``code SP text``
    for the last; one write for the whole reply."""
    return "".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{text}\r\n"
                   for i, text in enumerate(lines)).encode("utf-8", "replace")


class Connection:
    """The input side of one connection and the framing mode it is in."""

    __slots__ = ("params", "input", "_text")

    def __init__(self, params: Params) -> None:
        self.params = params
        self.input = InputBuffer()
        self._text: DotReader | ChunkReader | None = None

    def feed(self, data: bytes) -> None:
        self.input.feed(data)

    def clear(self) -> None:
        """Drop what is buffered (STARTTLS, RFC 3207 §4.2)."""
        self.input.clear()

    def __len__(self) -> int:
        return len(self.input)

    def next_command(self) -> Line | Reply | NeedData:
        """The next command line, parsed into verb and argument, or the reply that
        refuses the line as it stands (too long, bare CR/LF, NUL, not UTF-8)."""
        got = self.input.next_line(self.params.max_command_length)
        if isinstance(got, bytes):
            return parse_line(got, self.params)
        return got

    def next_line(self, limit: int) -> bytes | Reply | NeedData:
        """A raw line (an AUTH response; a reply of the client during ODMR turn-around)."""
        return self.input.next_line(limit)

    def start_data(self) -> None:
        """The 354 has been sent: what follows is message text up to CRLF.CRLF."""
        self._text = DotReader(self.params.max_message_size, self.params.max_chunk_piece)

    def start_chunk(self, size: int) -> None:
        """A BDAT command was read: ``size`` octets of text follow."""
        self._text = ChunkReader(size, self.params.max_chunk_piece)

    def next_text(self) -> bytes | TextEnd | NeedData:
        """The next piece of message text; ``TextEnd`` at its end, after which commands
        are read again."""
        if self._text is None:
            raise RuntimeError("Connection.next_text outside DATA/BDAT")
        got = self._text.next_piece(self.input)
        if isinstance(got, TextEnd):
            self._text = None
        return got

    @property
    def in_text(self) -> bool:
        return self._text is not None


