"""What the parser says when it cannot return a command.

``NeedMore``: the buffer ends inside a command; read more and call again with the
longer buffer (the same octets at the start, more after them).  It is not an
error.  ``Rejected`` and its kinds: the command at the start of the buffer is
refused.  Each carries what the server must send (``reply()``) and how to get past
the refused octets so the connection can go on:

    drop ``discard`` octets from the front of the buffer;
    if ``skipper`` is not None, the client is still sending octets of this
    command (a non-synchronizing literal, the rest of an over-long line): feed
    every octet that arrives to ``skipper.feed`` until ``skipper.done``.

The reply can be sent at once, before the skipping is over: RFC 7888 §4 lets the
server send its tagged BAD or NO before it has read the whole non-synchronizing
literal.
"""

from __future__ import annotations

import abc

from typing import TYPE_CHECKING

from .lexer import Reason
from .replies import BAD_COMMAND, R
from .response import BadCharset as BadCharsetCode
from .response import Tagged, Untagged

if TYPE_CHECKING:
    from .framing import CommandSkipper

__all__ = ["BadCharset", "BadCommand", "LiteralTooLarge", "NeedMore", "Rejected"]


class NeedMore(Exception):
    """The buffer ends inside a command.

    ``continuation_required``: the buffer ends just after a synchronizing literal's
    ``{n}`` CRLF.  The client waits: send ``R.CONTINUE_LITERAL`` ("+ Ready for
    literal data") once for the literal at ``literal_offset``, then read.
    Otherwise just read more (``literal_size`` octets of literal data at
    ``literal_offset`` are due when it is set, the rest of a line when not).
    The offset identifies the literal across calls, so an adapter that remembers
    the last offset it answered never sends "+" twice.
    """

    def __init__(
        self,
        continuation_required: bool,
        literal_size: int | None = None,
        *,
        literal_offset: int | None = None,
        tag: str | None = None,
    ) -> None:
        super().__init__("need more input")
        self.continuation_required = continuation_required
        self.literal_size = literal_size
        self.literal_offset = literal_offset
        self.tag = tag

    def __repr__(self) -> str:
        return (
            f"NeedMore(continuation_required={self.continuation_required}, literal_size={self.literal_size}, "
            f"literal_offset={self.literal_offset}, tag={self.tag!r})"
        )


class Rejected(Exception, metaclass=abc.ABCMeta):
    """The command at the start of the buffer is refused; see the module docstring.
    Each kind of refusal says how it is answered (``reply``)."""

    def __init__(self, tag: str | None, discard: int, skipper: CommandSkipper | None, message: str) -> None:
        super().__init__(message)
        self.tag = tag
        self.discard = discard
        self.skipper = skipper

    @property
    def message(self) -> str:
        """What went wrong, for logs (the client gets ``reply()``)."""
        return str(self)

    @abc.abstractmethod
    def reply(self) -> Tagged | Untagged:
        """The response the server sends for this refusal."""


class BadCommand(Rejected):
    """Malformed input: answer ``tag BAD ...``, or ``* BAD ...`` when the tag could
    not be read (``tag`` is None).  ``reason`` says what was wrong (tests and logs
    use it); ``detail`` is the prose."""

    def __init__(
        self,
        tag: str | None,
        reason: Reason,
        detail: str,
        *,
        discard: int,
        skipper: CommandSkipper | None = None,
    ) -> None:
        super().__init__(tag, discard, skipper, f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

    def reply(self) -> Tagged | Untagged:
        reply = BAD_COMMAND[self.reason]
        return reply.to(self.tag, text=f"{reply.text}: {self.detail}" if self.detail else None)

    def __repr__(self) -> str:
        return f"BadCommand(tag={self.tag!r}, reason={self.reason}, discard={self.discard}, detail={self.detail!r})"


class LiteralTooLarge(Rejected):
    """A literal announced larger than ``Params.max_literal_size`` (or making the
    command larger than ``Params.max_command_size``), refused before any of its
    data is read.

    Synchronizing (``{n}``): the client waits for "+", which never comes; answer
    ``tag NO [TOOBIG]`` and drop the line (``skipper`` is None).
    Non-synchronizing (``{n+}``, RFC 7888 §4): the data is on its way; answer
    ``tag BAD [TOOBIG]`` and skip it with ``skipper``.  (The other choice RFC 7888
    §4 allows, an untagged BYE and closing the connection, is the adapter's.)
    """

    def __init__(
        self,
        tag: str | None,
        size: int,
        synchronizing: bool,
        *,
        discard: int,
        skipper: CommandSkipper | None,
    ) -> None:
        super().__init__(tag, discard, skipper, f"literal of {size} octets is too large")
        self.size = size
        self.synchronizing = synchronizing

    def reply(self) -> Tagged | Untagged:
        reply = R.LITERAL_TOO_LARGE if self.synchronizing else R.NONSYNC_LITERAL_TOO_LARGE
        return reply.to(self.tag)

    def __repr__(self) -> str:
        return (
            f"LiteralTooLarge(tag={self.tag!r}, size={self.size}, synchronizing={self.synchronizing}, "
            f"discard={self.discard})"
        )


class BadCharset(Rejected):
    """SEARCH CHARSET names a charset outside ``Params.charsets``: answer
    ``tag NO [BADCHARSET (UTF-8 US-ASCII)]`` (RFC 3501 §6.4.4: "it MUST return a
    tagged NO response (not a BAD)")."""

    def __init__(
        self,
        tag: str | None,
        charset: str,
        supported: tuple[str, ...],
        *,
        discard: int,
        skipper: CommandSkipper | None = None,
    ) -> None:
        super().__init__(tag, discard, skipper, f"unsupported charset {charset!r}")
        self.charset = charset
        self.supported = supported

    def reply(self) -> Tagged | Untagged:
        return R.BAD_CHARSET.to(self.tag, code=BadCharsetCode(self.supported))

    def __repr__(self) -> str:
        return f"BadCharset(tag={self.tag!r}, charset={self.charset!r}, discard={self.discard})"
