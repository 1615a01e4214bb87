"""ManageSieve (RFC 5804) protocol core: bytes in, typed commands out; replies in,
bytes out.  No I/O: a command whose literal has not fully arrived asks for more
(``NeedData``), and the asyncio adapter (``managesieve.py``) reads more.

Theory of operation (RFC 5804 §1.2, §2): the server greets with its capabilities and
OK; the client is NOT_AUTHENTICATED until AUTHENTICATE succeeds (STARTTLS first, to
send a password), then AUTHENTICATED until LOGOUT.  A command in the wrong state gets
the one fixed reply ``refusal`` gives.

RFC 5804 §4 (formal syntax, the parts the server reads):

    command        = command-name *(SP argument) CRLF    (names are case-insensitive)
    argument       = string / number
    string         = quoted / literal-c2s
    literal-c2s    = "{" number "+}" CRLF *OCTET   ; we also take "{" number "}"
    number         = 1*DIGIT                         ; 0 .. 4294967295
    quoted         = DQUOTE *QUOTED-CHAR DQUOTE
    QUOTED-CHAR    = SAFE-UTF8-CHAR / "\\" QUOTED-SPECIALS
    QUOTED-SPECIALS = DQUOTE / "\\"
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BadCommand", "Command", "NeedData", "Reply", "State", "parse_command", "quoted", "literal", "refusal",
           "LEGAL", "MAX_LINE", "MAX_LITERAL"]

#: Limits (STYLE point 8): a command line without its literals; one literal (a script).
MAX_LINE = 8192
MAX_LITERAL = 1024 * 1024 + 1024


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    LOGOUT = "logout"


_NA, _AU = State.NOT_AUTHENTICATED, State.AUTHENTICATED
_ANY = frozenset({_NA, _AU})

#: Command -> (states where legal, (least, most) arguments).
LEGAL: dict[str, tuple[frozenset[State], tuple[int, int]]] = {
    "CAPABILITY": (_ANY, (0, 0)),        # RFC 5804 §2.4
    "LOGOUT": (_ANY, (0, 0)),            # §2.3
    "NOOP": (_ANY, (0, 1)),              # §2.13
    "STARTTLS": (frozenset({_NA}), (0, 0)),           # §2.2
    "AUTHENTICATE": (frozenset({_NA}), (1, 2)),       # §2.1
    "HAVESPACE": (frozenset({_AU}), (2, 2)),          # §2.5
    "PUTSCRIPT": (frozenset({_AU}), (2, 2)),          # §2.6
    "LISTSCRIPTS": (frozenset({_AU}), (0, 0)),        # §2.7
    "SETACTIVE": (frozenset({_AU}), (1, 1)),          # §2.8
    "GETSCRIPT": (frozenset({_AU}), (1, 1)),          # §2.9
    "DELETESCRIPT": (frozenset({_AU}), (1, 1)),       # §2.10
    "RENAMESCRIPT": (frozenset({_AU}), (2, 2)),       # §2.11
    "CHECKSCRIPT": (frozenset({_AU}), (1, 1)),        # §2.12
    "UNAUTHENTICATE": (frozenset({_AU}), (0, 0)),     # §2.14
}


@dataclass(frozen=True, slots=True)
class Command:
    name: str                           # upper case
    args: tuple[str | int, ...]         # strings are text (UTF-8 decoded)


@dataclass(frozen=True, slots=True)
class NeedData:
    """More octets are needed (a literal, or the rest of the line)."""


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A line that is not a command; ``consumed`` octets are dropped."""

    reason: str
    consumed: int


def quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def literal(data: bytes) -> bytes:
    """literal-s2c = "{" number "}" CRLF *OCTET"""
    return b"{%d}\r\n" % len(data) + data


def _string(text: str) -> bytes:
    """A quoted string when it can be one, else a literal (CR, LF, long texts)."""
    if "\r" in text or "\n" in text or len(text) > 1024:
        return literal(text.encode("utf-8"))
    return quoted(text)


@dataclass(frozen=True, slots=True)
class Reply:
    """OK / NO / BYE [SP "(" resp-code ")"] [SP string] CRLF (RFC 5804 §4)."""

    status: str                       # OK | NO | BYE
    text: str = ""
    code: str = ""

    def encode(self) -> bytes:
        out = self.status.encode()
        if self.code:
            out += b" (" + self.code.encode() + b")"
        if self.text:
            out += b" " + _string(self.text)
        return out + b"\r\n"


def parse_command(buf: bytes, max_literal: int = MAX_LITERAL) -> tuple[Command | NeedData | BadCommand, int]:
    """The first command in ``buf`` and the octets it took, or NeedData (nothing
    consumed) or BadCommand (with the octets to drop: the line, and a literal it
    announced when that arrived)."""
    end = buf.find(b"\r\n")
    if end < 0:
        if len(buf) > MAX_LINE:
            return BadCommand(f"line longer than {MAX_LINE} octets", len(buf)), len(buf)
        return NeedData(), 0
    i = 0
    n = len(buf)
    args: list[str | int] = []
    name = ""

    def bad(reason: str) -> tuple[BadCommand, int]:
        line_end = buf.find(b"\r\n", i)
        consumed = (line_end + 2) if line_end >= 0 else n
        return BadCommand(reason, consumed), consumed

    # command-name: an atom
    j = i
    while j < n and (buf[j:j + 1].isalpha() or buf[j:j + 1] == b"_"):
        j += 1
    if j == i:
        return bad("expected a command name")
    name = buf[i:j].decode("ascii").upper()
    i = j
    while True:
        if buf.startswith(b"\r\n", i):
            return Command(name, tuple(args)), i + 2
        if buf[i:i + 1] != b" ":
            return bad("expected a space or the end of the line")
        i += 1
        c = buf[i:i + 1]
        if c == b'"':
            j = i + 1
            out = bytearray()
            while True:
                if j >= n:
                    return NeedData(), 0
                ch = buf[j]
                if ch == 0x22:
                    break
                if ch in (0x0D, 0x0A):
                    return bad("CR or LF in a quoted string")
                if ch == 0x5C:
                    if j + 1 >= n:
                        return NeedData(), 0
                    if buf[j + 1] not in (0x22, 0x5C):
                        return bad("only \\\\ and \\\" may be quoted")
                    out.append(buf[j + 1])
                    j += 2
                    continue
                out.append(ch)
                j += 1
            try:
                args.append(out.decode("utf-8"))
            except UnicodeDecodeError:
                return bad("a string is UTF-8")
            i = j + 1
        elif c == b"{":
            close = buf.find(b"}", i)
            if close < 0 or close > end:
                return bad("bad literal")
            spec = buf[i + 1:close]
            if spec.endswith(b"+"):
                spec = spec[:-1]
            if not spec.isdigit() or len(spec) > 10:
                return bad("bad literal length")
            size = int(spec)
            if not buf.startswith(b"\r\n", close + 1):
                return bad("a literal's length ends its line")
            start = close + 3
            if size > max_literal:
                # Too big to take: the whole literal is dropped as it arrives.
                if n < start + size:
                    return NeedData(), 0
                return BadCommand(f"literal larger than {max_literal} octets", start + size), start + size
            if n < start + size:
                return NeedData(), 0
            try:
                args.append(buf[start:start + size].decode("utf-8"))
            except UnicodeDecodeError:
                after = buf.find(b"\r\n", start + size)
                consumed = after + 2 if after >= 0 else n
                return BadCommand("a string is UTF-8", consumed), consumed
            i = start + size
            end = buf.find(b"\r\n", i)
            if end < 0:
                return NeedData(), 0
        elif c.isdigit():
            j = i
            while j < n and buf[j:j + 1].isdigit():
                j += 1
            value = int(buf[i:j])
            if value > 4294967295:
                return bad("number too large")
            args.append(value)
            i = j
        else:
            return bad("expected a string or a number")


def refusal(cmd: Command, state: State) -> Reply | None:
    """The fixed reply for a command unknown, in the wrong state, or with the wrong
    number of arguments; None when it may run."""
    legal = LEGAL.get(cmd.name)
    if legal is None:
        return Reply("NO", f"Unknown command {cmd.name}")
    states, (least, most) = legal
    if state not in states:
        if state is State.NOT_AUTHENTICATED:
            return Reply("NO", "Authenticate first")
        return Reply("NO", f"{cmd.name} is not allowed now")
    if not least <= len(cmd.args) <= most:
        return Reply("NO", f"{cmd.name} takes {least}" + (f" to {most}" if most != least else "") + " arguments")
    return None
