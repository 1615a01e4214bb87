"""Bytes in, typed commands out.

``parse_command(buf, params)`` looks at the start of ``buf`` and returns the first
command and the octets after it, or raises ``NeedMore`` or a ``Rejected``.  It keeps
no state: the adapter appends what it reads to its buffer and calls again.

How a call goes:

1. *Framing* (``framing``): find the end of the command, line by line, stepping
   over literal data.  Limits are checked here, before any literal data is read.
2. When the buffer ends inside a literal, the command *up to that literal* is
   run through the grammar first, so that a bad command is refused before the
   server sends "+" or buffers a literal for nothing (RFC 3501 §7.5: "This
   permits the server to process commands and reject errors on a line-by-line
   basis", as in ``A044 BLURDYBLOOP {102856}``).
3. With the whole command in the buffer, the grammar of its command name (the
   table ``commands.COMMANDS``) builds the typed command.

Two exchanges that are not commands have their own entry points: the DONE line
that ends IDLE (``parse_idle_done``) and the client's lines during AUTHENTICATE
(``parse_sasl_response``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .commands import COMMANDS, Command
from .commands.not_authenticated import decode_base64
from .errors import BadCharset, BadCommand, LiteralTooLarge, NeedMore
from .framing import CommandSkipper, literal_marker
from .lexer import CharsetFailure, Incomplete, Reader, Reason, SyntaxFailure
from .params import DEFAULT_PARAMS, Params

__all__ = ["IdleDone", "SaslResponse", "parse_command", "parse_idle_done", "parse_sasl_response"]

# tag             = 1*<any ASTRING-CHAR except "+">
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/]*={0,2}\Z")


@dataclass(frozen=True, slots=True)
class IdleDone:
    """RFC 2177 §4:  idle ::= "IDLE" CRLF "DONE": the client ended IDLE."""


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """One client line of an AUTHENTICATE exchange (RFC 3501 §6.2.2): the decoded
    ``data``, or None when the client sent "*" to cancel (answer
    ``R.AUTHENTICATION_CANCELLED``, a tagged BAD)."""

    data: bytes | None

    @property
    def cancelled(self) -> bool:
        return self.data is None

    def __repr__(self) -> str:
        return "SaslResponse(cancelled)" if self.data is None else f"SaslResponse(<{len(self.data)} octets>)"


def parse_command(buf: bytes, params: Params = DEFAULT_PARAMS) -> tuple[Command, bytes]:
    """The command at the start of ``buf`` and the octets after it.

    Raises ``NeedMore`` when ``buf`` ends inside the command, ``BadCommand``,
    ``LiteralTooLarge`` or ``BadCharset`` when it is refused (see ``errors``).
    Never raises anything else, whatever the octets.
    """
    if buf.startswith(b"\r\n"):
        raise BadCommand(None, Reason.EMPTY_LINE, "", discard=2)
    end = _frame(buf, params)
    tag = _tag_of(buf)
    r = Reader(buf, end, params)
    try:
        command = _command(r)
    except SyntaxFailure as e:
        raise BadCommand(tag, e.reason, e.detail, discard=end) from None
    except CharsetFailure as e:
        raise BadCharset(tag, e.charset, params.charsets, discard=end) from None
    except Incomplete:  # the frame is complete, so the grammar wanted more than a command has
        raise BadCommand(tag, Reason.SYNTAX, "command ends too early", discard=end) from None
    return command, buf[end:]


def parse_idle_done(buf: bytes, params: Params = DEFAULT_PARAMS, *, tag: str | None = None) -> tuple[IdleDone, bytes]:
    """The line that ends IDLE.  Anything but DONE is a ``BadCommand`` (reason
    EXPECTED_DONE) tagged with ``tag``, the IDLE command's tag."""
    line, rest_at, marker = _line(buf, params, tag)
    if line.upper() == b"DONE":
        return IdleDone(), buf[rest_at:]
    discard, skipper = _rest_of_command(buf, rest_at, marker)
    raise BadCommand(tag, Reason.EXPECTED_DONE, "", discard=discard, skipper=skipper)


def parse_sasl_response(
    buf: bytes, params: Params = DEFAULT_PARAMS, *, tag: str | None = None
) -> tuple[SaslResponse, bytes]:
    """One client line during AUTHENTICATE: base64 data, or "*" to cancel.

    RFC 3501 §9:  authenticate = "AUTHENTICATE" SP auth-type *(CRLF base64)
    An empty line is an empty response.  Invalid base64 is a ``BadCommand``
    tagged with ``tag``, the AUTHENTICATE command's tag.
    """
    line, rest_at, marker = _line(buf, params, tag)
    if line == b"*":
        return SaslResponse(None), buf[rest_at:]
    r = Reader(buf, rest_at, params)
    try:
        if not _BASE64_LINE.match(line):
            r.fail(Reason.BAD_BASE64, "invalid base64")
        data = decode_base64(r, line)
    except SyntaxFailure as e:
        discard, skipper = _rest_of_command(buf, rest_at, marker)
        raise BadCommand(tag, e.reason, e.detail, discard=discard, skipper=skipper) from None
    return SaslResponse(data), buf[rest_at:]


# -- the grammar entry ----------------------------------------------------------------


def _command(r: Reader) -> Command:
    # command         = tag SP (command-any / command-auth / command-nonauth /
    #                   command-select) CRLF
    m = _TAG.match(r.buf, r.pos, r.end)
    if m is None:
        r.fail(Reason.BAD_TAG, "invalid tag")
    r.pos = m.end()
    tag = m.group().decode("ascii")
    if r.peek() != 0x20:
        if r.peek() == 0x0D:
            r.fail(Reason.SYNTAX, "missing command")
        r.fail(Reason.BAD_TAG, "invalid tag")
    r.pos += 1
    name = r.keyword("command name")
    parser = COMMANDS.get(name)
    if parser is None:
        r.fail(Reason.UNKNOWN_COMMAND, f"unknown command {name}")
    command = parser(r, tag)
    r.crlf()
    if r.pos != r.end:
        r.fail(Reason.SYNTAX, "unexpected data after the command")
    return command


def _tag_of(buf: bytes) -> str | None:
    """The tag, if the command starts with a readable one (for ``tag BAD``)."""
    m = _TAG.match(buf, 0, min(len(buf), 1024))
    if m is None or m.end() >= len(buf) or buf[m.end()] not in (0x20, 0x0D):
        return None
    return m.group().decode("ascii")


# -- framing --------------------------------------------------------------------------


def _frame(buf: bytes, params: Params) -> int:
    """The offset just past the command at the start of ``buf``; ``NeedMore`` when
    it is not all there; a ``Rejected`` when a limit is exceeded or the command is
    already known to be bad while a literal is awaited."""
    n = len(buf)
    pos = 0
    total = 0
    while True:
        lf = buf.find(b"\n", pos, min(n, pos + params.max_line_length))
        if lf < 0:
            if n - pos >= params.max_line_length:
                raise _line_too_long(buf, pos, params, _tag_of(buf))
            raise NeedMore(False, tag=_tag_of(buf))
        if lf == pos or buf[lf - 1] != 0x0D:
            raise BadCommand(_tag_of(buf), Reason.BARE_LF, "", discard=lf + 1)
        line_end = lf + 1
        marker = literal_marker(buf, pos, lf)
        total += line_end - pos
        if total > params.max_command_size:
            discard, skipper = _rest_of_command(buf, line_end, marker)
            raise BadCommand(
                _tag_of(buf),
                Reason.COMMAND_TOO_LONG,
                f"the command is longer than {params.max_command_size} octets",
                discard=discard,
                skipper=skipper,
            )
        if marker is None:
            return line_end
        size, synchronizing = marker
        # A synchronizing literal is unacknowledged while nothing follows its
        # header: the client waits for "+", even for {0} (RFC 3501 §4.3).
        waiting = synchronizing and n == line_end
        complete = n >= line_end + size and not waiting
        if not complete:
            _check_prefix(buf, line_end, params, marker)
        if size > params.max_literal_size or total + size > params.max_command_size:
            discard, skipper = _rest_of_command(buf, line_end, marker)
            raise LiteralTooLarge(_tag_of(buf), size, synchronizing, discard=discard, skipper=skipper)
        if not complete:
            raise NeedMore(waiting, size, literal_offset=line_end, tag=_tag_of(buf))
        total += size
        pos = line_end + size


def _check_prefix(buf: bytes, line_end: int, params: Params, marker: tuple[int, bool]) -> None:
    """Run the grammar over the command up to an awaited literal; refuse it now if
    it is already wrong."""
    r = Reader(buf, line_end, params)
    try:
        _command(r)
    except Incomplete:
        return
    except SyntaxFailure as e:
        discard, skipper = _rest_of_command(buf, line_end, marker)
        raise BadCommand(_tag_of(buf), e.reason, e.detail, discard=discard, skipper=skipper) from None
    except CharsetFailure as e:
        discard, skipper = _rest_of_command(buf, line_end, marker)
        raise BadCharset(_tag_of(buf), e.charset, params.charsets, discard=discard, skipper=skipper) from None


def _line_too_long(buf: bytes, pos: int, params: Params, tag: str | None) -> BadCommand:
    """The refusal of the line at ``pos``, which has no LF in its first
    ``max_line_length`` octets.  It is dropped through its own CRLF when that is in
    the buffer already, so that the commands after it in the same packet are read
    (as POP3 and SMTP resynchronise); otherwise the rest of it is skipped as it
    arrives.  A line that ends with a literal header takes its literal with it."""
    detail = f"a line is longer than {params.max_line_length} octets"
    lf = buf.find(b"\n", pos + params.max_line_length)
    if lf < 0:
        return BadCommand(tag, Reason.LINE_TOO_LONG, detail, discard=len(buf),
                          skipper=CommandSkipper(tail=buf[-64:]))
    discard, skipper = _rest_of_command(buf, lf + 1, literal_marker(buf, pos, lf))
    return BadCommand(tag, Reason.LINE_TOO_LONG, detail, discard=discard, skipper=skipper)


def _rest_of_command(buf: bytes, line_end: int, marker: tuple[int, bool] | None) -> tuple[int, CommandSkipper | None]:
    """How to get past a command refused at the end of a line: drop through the
    line, then skip whatever of the command the client still sends."""
    if marker is None:
        return line_end, None
    size, synchronizing = marker
    if synchronizing and len(buf) == line_end:
        return line_end, None  # the client waits for a "+" that will not come
    return line_end, CommandSkipper(literal=size)


def _line(buf: bytes, params: Params, tag: str | None) -> tuple[bytes, int, tuple[int, bool] | None]:
    """One CRLF-terminated line for the IDLE and AUTHENTICATE exchanges: its text,
    the offset after it, and its literal header if it ends with one."""
    n = len(buf)
    lf = buf.find(b"\n", 0, min(n, params.max_line_length))
    if lf < 0:
        if n >= params.max_line_length:
            raise _line_too_long(buf, 0, params, tag)
        raise NeedMore(False, tag=tag)
    if lf == 0 or buf[lf - 1] != 0x0D:
        raise BadCommand(tag, Reason.BARE_LF, "", discard=lf + 1)
    return buf[: lf - 1], lf + 1, literal_marker(buf, 0, lf)
