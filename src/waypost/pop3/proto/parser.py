"""Command lines in, typed commands out.

RFC 2449 §3 (the general grammar of commands)::

    keyword   = 3*4VCHAR
    param     = 1*VCHAR
    command   = keyword *(SP param) CRLF        ;255 octets maximum

Keywords are case-insensitive (RFC 1939 §3).  We accept runs of SP or HTAB between
parameters, as most servers do; a line that breaks any other rule is refused with
the one reply the ``Rejected`` carries, and the session goes on.

Only USER and PASS may carry 8-bit octets, and then only as UTF-8 (RFC 6856 §3 lets
clients send UTF-8 user names and passwords); any other command is 7-bit.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Callable, Final

from .commands import (
    Auth,
    AuthList,
    Capa,
    Command,
    Dele,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from .params import DEFAULT_PARAMS, Params
from .replies import R, Reply

__all__ = ["CANCEL", "COMMANDS", "KEYWORDS", "Cancel", "Rejected", "decode_plain", "parse_command", "parse_sasl_response"]


class Rejected(Exception):
    """The line is not a command we can run; answer ``reply`` and read the next."""

    def __init__(self, reply: Reply, detail: str = "") -> None:
        super().__init__(detail or reply.text)
        self.reply = reply
        self.detail = detail or reply.text


class Cancel:
    """The client cancelled an AUTH exchange with "*" (RFC 5034 §4)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CANCEL"


CANCEL: Final = Cancel()

_SEPARATORS = re.compile(rb"[ \t]+")
# Octets no command line may carry: CTLs other than HTAB, and DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]+")
# The keyword and the one separator after it; the rest is the parameters (for PASS,
# the password, spaces and all).
_KEYWORD = re.compile(rb"([^ \t]*)[ \t]?")


def _params(rest: bytes, params: Params) -> list[bytes]:
    words = [w for w in _SEPARATORS.split(rest) if w]
    for w in words:
        if len(w) > params.max_argument_length:
            raise Rejected(R.ARGUMENT_TOO_LONG)
    return words


def _ascii_only(rest: bytes) -> None:
    if any(b > 0x7F for b in rest):
        raise Rejected(R.EIGHT_BIT)


def _text(word: bytes) -> str:
    try:
        return word.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(R.BAD_UTF8) from None


def _number(word: bytes, params: Params, *, zero: bool = False) -> int:
    # RFC 1939 §3: numbers are 1*DIGIT; message numbers start at 1 (§5), the line
    # count of TOP may be 0 (§7).
    if not _DIGITS.fullmatch(word) or len(word) > params.max_number_digits:
        raise Rejected(R.BAD_NUMBER)
    n = int(word)
    if n == 0 and not zero:
        raise Rejected(R.BAD_NUMBER, "message numbers start at 1")
    return n


def _arity(words: list[bytes], least: int, most: int) -> None:
    if not least <= len(words) <= most:
        raise Rejected(R.SYNTAX, f"{least} to {most} arguments expected, {len(words)} given")


def _no_arguments(make: Callable[[], Command]) -> Callable[[bytes, Params], Command]:
    def parse(rest: bytes, params: Params) -> Command:
        _ascii_only(rest)
        _arity(_params(rest, params), 0, 0)
        return make()
    return parse


# RFC 1939 §7: USER name
def _user(rest: bytes, params: Params) -> Command:
    words = _params(rest, params)
    _arity(words, 1, 1)
    return User(_text(words[0]))


# RFC 1939 §7: PASS string.  "Since the PASS command has exactly one argument, a
# POP3 server may treat spaces in the argument as part of the password, instead of
# as argument separators."  So the argument is everything after the first space.
def _pass(rest: bytes, params: Params) -> Command:
    if not rest or len(rest) > params.max_argument_length:
        raise Rejected(R.SYNTAX if not rest else R.ARGUMENT_TOO_LONG)
    return Pass(_text(rest))


def _base64(word: bytes) -> bytes:
    if word == b"=":  # RFC 5034 §4: "=" is an empty initial response
        return b""
    try:
        return base64.b64decode(word, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(R.BAD_BASE64) from None


# RFC 5034 §4: AUTH mechanism [initial-response]
#     mechanism         = 1*20mech-char ; RFC 4422 §3.1 (SASL mechanism names)
#     initial-response  = base64 / "="
# A bare AUTH (RFC 1734 clients) asks for the list of mechanisms.
_MECHANISM = re.compile(rb"[A-Za-z0-9_-]{1,20}")


def _auth(rest: bytes, params: Params) -> Command:
    _ascii_only(rest)
    words = _params(rest, params)
    _arity(words, 0, 2)
    if not words:
        return AuthList()
    if not _MECHANISM.fullmatch(words[0]):
        raise Rejected(R.SYNTAX, "invalid mechanism name")
    initial = _base64(words[1]) if len(words) == 2 else None
    return Auth(words[0].decode("ascii").upper(), initial)


def _optional_number(make: Callable[[int | None], Command]) -> Callable[[bytes, Params], Command]:
    def parse(rest: bytes, params: Params) -> Command:
        _ascii_only(rest)
        words = _params(rest, params)
        _arity(words, 0, 1)
        return make(_number(words[0], params) if words else None)
    return parse


def _one_number(make: Callable[[int], Command]) -> Callable[[bytes, Params], Command]:
    def parse(rest: bytes, params: Params) -> Command:
        _ascii_only(rest)
        words = _params(rest, params)
        _arity(words, 1, 1)
        return make(_number(words[0], params))
    return parse


# RFC 1939 §7: TOP msg n ("n ... must be a non-negative number")
def _top(rest: bytes, params: Params) -> Command:
    _ascii_only(rest)
    words = _params(rest, params)
    _arity(words, 2, 2)
    return Top(_number(words[0], params), _number(words[1], params, zero=True))


_PARSERS: dict[bytes, Callable[[bytes, Params], Command]] = {
    b"USER": _user,
    b"PASS": _pass,
    b"AUTH": _auth,
    b"STLS": _no_arguments(Stls),
    b"CAPA": _no_arguments(Capa),
    b"QUIT": _no_arguments(Quit),
    b"STAT": _no_arguments(Stat),
    b"LIST": _optional_number(lambda n: List(n)),
    b"RETR": _one_number(Retr),
    b"DELE": _one_number(Dele),
    b"NOOP": _no_arguments(Noop),
    b"RSET": _no_arguments(Rset),
    b"TOP": _top,
    b"UIDL": _optional_number(lambda n: Uidl(n)),
}

#: The keywords the parser knows.
KEYWORDS = frozenset(k.decode() for k in _PARSERS)
#: The names of the commands it makes (the keys of the state and handler tables).
COMMANDS = KEYWORDS | {AuthList.name}


def parse_command(line: bytes, params: Params = DEFAULT_PARAMS) -> Command:
    """One command from one line (without its CRLF); raises ``Rejected``."""
    if _CONTROL.search(line):
        raise Rejected(R.CONTROL)
    if not line.strip(b" \t"):
        raise Rejected(R.EMPTY_COMMAND)
    head = _KEYWORD.match(line)
    assert head is not None  # the pattern matches any line
    keyword, rest = head.group(1), line[head.end():]
    parse = _PARSERS.get(keyword.upper()) if keyword.isascii() else None
    if parse is None:
        # Name the keyword in the log only when it looks like one: a client that
        # mistakes a password for a command must not put it in the log.
        looks_like_one = 3 <= len(keyword) <= 4 and keyword.isascii() and keyword.isalpha()
        raise Rejected(R.UNKNOWN_COMMAND, f"unknown command {keyword.decode().upper()}" if looks_like_one
                       else "unknown command")
    if keyword.upper() != b"PASS":
        rest = rest.strip(b" \t")
    return parse(rest, params)


def parse_sasl_response(line: bytes) -> bytes | Cancel:
    """A line answering an AUTH challenge (RFC 5034 §4): base64, or "*" to cancel."""
    line = line.strip(b" \t")
    if line == b"*":
        return CANCEL
    if _CONTROL.search(line) or not line.isascii():
        raise Rejected(R.BAD_BASE64)
    if line == b"":
        return b""
    return _base64(line)


def decode_plain(message: bytes) -> tuple[str, str, str]:
    """(authzid, authcid, password) of a PLAIN response (RFC 4616 §2)::

        message   = [authzid] UTF8NUL authcid UTF8NUL passwd
    """
    parts = message.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise Rejected(R.BAD_PLAIN)
    try:
        authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise Rejected(R.BAD_PLAIN) from None
    return authzid, authcid, passwd
