"""What TOP sends of a message (RFC 1939 §7): "the headers of the message, the blank
line separating the headers from the body, and then the number of lines of the
indicated message's body"."""

from __future__ import annotations

__all__ = ["top_of"]


def top_of(message: bytes, lines: int) -> bytes:
    """The header, the blank line and the first ``lines`` body lines of ``message``
    (all of it when it is shorter).  Lines end with LF, with or without a CR."""
    pos = 0
    in_header = True
    taken = 0
    size = len(message)
    while pos < size:
        end = message.find(b"\n", pos)
        end = size if end < 0 else end + 1
        if in_header:
            if message[pos:end] in (b"\r\n", b"\n"):
                in_header = False
        else:
            if taken == lines:
                return message[:pos]
            taken += 1
        pos = end
    return message
