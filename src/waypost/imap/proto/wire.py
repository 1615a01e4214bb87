"""Writing IMAP data: atoms, strings (quoted or literal), NIL, numbers, flags, lists.

Every server-side string goes through ``string``, ``nstring`` or ``astring``, which
pick the form: an atom where the grammar allows one and the value is a plain word,
a quoted string for short 7-bit text, a literal for anything with CR, LF or 8-bit
octets or longer than ``MAX_QUOTED_LENGTH``.  NUL cannot be sent in any form (RFC
3501 §4.3.1, "unencoded binary strings are not permitted"): ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone

__all__ = [
    "MAX_QUOTED_LENGTH",
    "astring",
    "atom",
    "date_time",
    "flag",
    "flag_list",
    "nstring",
    "number",
    "paren",
    "string",
    "text",
]

#: Strings longer than this go out as literals even when they could be quoted; a
#: literal costs a few octets but no escaping, and clients read both.
MAX_QUOTED_LENGTH = 1024

_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+\Z')
_ASTRING = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+\Z')
# flag-fetch / flag-perm: "\" atom, an atom, or "\*"
_FLAG = re.compile(rb'(\\?[^\x00-\x20\x7f-\xff(){%*"\\\]]+|\\\*)\Z')

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _octets(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def atom(value: str | bytes) -> bytes:
    """atom = 1*ATOM-CHAR; ``ValueError`` if the value is not one."""
    raw = _octets(value)
    if not _ATOM.match(raw):
        raise ValueError(f"not an IMAP atom: {value!r}")
    return raw


def _quoted(raw: bytes) -> bytes | None:
    """The quoted form of 7-bit ``raw`` without NUL, CR or LF, or None."""
    if len(raw) > MAX_QUOTED_LENGTH or not raw.isascii() or b"\r" in raw or b"\n" in raw:
        return None
    if b"\\" in raw or b'"' in raw:
        raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return b'"' + raw + b'"'


def string(value: str | bytes) -> bytes:
    """string = quoted / literal"""
    # The common case first: short 7-bit text without CR, LF, NUL, quote, backslash.
    if (
        type(value) is str
        and value.isascii()
        and len(value) <= MAX_QUOTED_LENGTH
        and '"' not in value
        and "\\" not in value
        and "\r" not in value
        and "\n" not in value
        and "\x00" not in value
    ):
        return b'"' + value.encode("ascii") + b'"'
    raw = _octets(value)
    if b"\x00" in raw:
        raise ValueError("NUL cannot be sent in an IMAP string (RFC 3501 §4.3.1)")
    quoted = _quoted(raw)
    if quoted is not None:
        return quoted
    return b"{%d}\r\n" % len(raw) + raw


def nstring(value: str | bytes | None) -> bytes:
    """nstring = string / nil"""
    return b"NIL" if value is None else string(value)


def astring(value: str | bytes) -> bytes:
    """astring = 1*ASTRING-CHAR / string

    "NIL" in any case is quoted: it is a legal astring atom, but a careless client
    reads it as nil.
    """
    raw = _octets(value)
    if _ASTRING.match(raw) and raw.upper() != b"NIL":
        return raw
    return string(raw)


def number(value: int) -> bytes:
    if value < 0:
        raise ValueError("IMAP numbers are unsigned")
    return b"%d" % value


#: Flags already checked (a mailbox uses few): their wire form.
_FLAGS: dict[str, bytes] = {}


def flag(value: str) -> bytes:
    known = _FLAGS.get(value)
    if known is not None:
        return known
    raw = _octets(value)
    if not _FLAG.match(raw):
        raise ValueError(f"not an IMAP flag: {value!r}")
    if len(_FLAGS) < 4096:
        _FLAGS[value] = raw
    return raw


def flag_list(flags: Iterable[str]) -> bytes:
    """flag-list = "(" [flag *(SP flag)] ")" """
    return b"(" + b" ".join([flag(f) for f in flags]) + b")"


def paren(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def text(value: str) -> bytes:
    """text = 1*TEXT-CHAR: human-readable text, made safe.

    CR, LF and NUL become spaces and anything outside 7-bit ASCII becomes "?", so
    no text (which may quote a client's input) can end a response line early.
    """
    cleaned = value.replace("\r", " ").replace("\n", " ").replace("\x00", " ")
    return cleaned.encode("ascii", "replace")


def date_time(value: datetime) -> bytes:
    """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
                   SP time SP zone DQUOTE

    A naive datetime is taken as UTC.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f'"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year:04d} '
        f'{value.hour:02d}:{value.minute:02d}:{value.second:02d} '
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    ).encode("ascii")
