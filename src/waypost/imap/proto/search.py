"""SEARCH criteria as a typed tree, and their grammar.

The tree is normalised where RFC 3501 §6.4.4 states an equivalence, so a search
engine has fewer cases: ``NEW`` is ``And(HasFlag("\\Recent"), HasFlag("\\Seen",
False))``, ``OLD`` is ``HasFlag("\\Recent", False)``, ``UNSEEN`` is
``HasFlag("\\Seen", False)``, ``KEYWORD k`` is ``HasFlag(k)``.  Several keys in a row
(the implicit AND) become ``And``.  Strings are decoded with the CHARSET the client
named; a charset outside ``Params.charsets`` is reported as ``BadCharset`` (the
server answers ``NO [BADCHARSET (...)]``, RFC 3501 §6.4.4).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import date
from typing import Callable, Literal, cast

from .lexer import CharsetFailure, Reader, Reason
from .sequence import SequenceSet

__all__ = [
    "All",
    "And",
    "Body",
    "DateKey",
    "EnvelopeField",
    "HasFlag",
    "Header",
    "Larger",
    "ModSeqKey",
    "Within",
    "Not",
    "ObjectIdKey",
    "Or",
    "SearchKey",
    "SequenceKey",
    "Smaller",
    "Text",
    "parse_search_program",
    "parse_sort_program",
]


@dataclass(frozen=True, slots=True)
class All:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class HasFlag:
    """ANSWERED DELETED DRAFT FLAGGED RECENT SEEN KEYWORD (``present``) and their
    UN- forms, OLD (``present=False``)."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class EnvelopeField:
    """BCC CC FROM SUBJECT TO <string>: the envelope field contains ``value``."""

    field: Literal["BCC", "CC", "FROM", "SUBJECT", "TO"]
    value: str


@dataclass(frozen=True, slots=True)
class Header:
    """HEADER <field-name> <string>; an empty value matches any message that has
    the field (RFC 3501 §6.4.4)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Body:
    """BODY <string>: in the body of the message."""

    value: str


@dataclass(frozen=True, slots=True)
class Text:
    """TEXT <string>: in the header or the body."""

    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE ON SINCE (internal date), SENTBEFORE SENTON SENTSINCE (Date:
    header, ``sent=True``) and SAVEDBEFORE SAVEDON SAVEDSINCE (RFC 8514 save date,
    ``saved=True``), disregarding time and time zone."""

    op: Literal["BEFORE", "ON", "SINCE"]
    date: date
    sent: bool = False
    saved: bool = False


@dataclass(frozen=True, slots=True)
class Larger:
    """LARGER <n>: RFC 822 size larger than ``size`` octets."""

    size: int


@dataclass(frozen=True, slots=True)
class Smaller:
    """SMALLER <n>: RFC 822 size smaller than ``size`` octets."""

    size: int


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """<sequence set> (message numbers) or UID <sequence set> (``uid=True``)."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """RFC 7162 §3.1.5: MODSEQ ["/flags/<flag>" priv|shared|all] <mod-sequence>:
    messages whose mod-sequence is at least ``modseq``."""

    modseq: int
    entry: str | None = None
    entry_type: Literal["priv", "shared", "all"] | None = None


@dataclass(frozen=True, slots=True)
class Within:
    """RFC 5032 §4 (search-key =/ ( "OLDER" / "YOUNGER" ) SP nz-number): messages
    whose internal date is more than (OLDER) or at most (YOUNGER) ``seconds`` ago."""

    op: Literal["OLDER", "YOUNGER"]
    seconds: int


@dataclass(frozen=True, slots=True)
class ObjectIdKey:
    """RFC 8474 §6 (search-key =/ "EMAILID" SP objectid / "THREADID" SP objectid):
    the message with this EMAILID, or the messages of this THREADID."""

    kind: Literal["EMAILID", "THREADID"]
    value: str


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class And:
    """Several keys that must all match (a parenthesised list, or the top level)."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    All
    | HasFlag
    | EnvelopeField
    | Header
    | Body
    | Text
    | DateKey
    | Larger
    | Smaller
    | SequenceKey
    | ModSeqKey
    | ObjectIdKey
    | Within
    | Not
    | Or
    | And
)

# Flag keys without argument: name -> (flag, present)
_FLAG_KEYS: dict[str, tuple[str, bool]] = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
    "OLD": ("\\Recent", False),
}
_ENVELOPE_KEYS = ("BCC", "CC", "FROM", "SUBJECT", "TO")
_OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")
_DATE_KEYS: dict[str, tuple[Literal["BEFORE", "ON", "SINCE"], bool]] = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}
# RFC 8514 §4:
# search-key =/ "SAVEDBEFORE" SP date / "SAVEDON" SP date / "SAVEDSINCE" SP date /
#               "SAVEDATESUPPORTED"
_SAVED_KEYS: dict[str, Literal["BEFORE", "ON", "SINCE"]] = {
    "SAVEDBEFORE": "BEFORE", "SAVEDON": "ON", "SAVEDSINCE": "SINCE"}


class _Strings:
    """Decodes search strings with the client's CHARSET."""

    __slots__ = ("codec", "strict")

    def __init__(self, codec: str, strict: bool) -> None:
        self.codec = codec
        self.strict = strict

    def decode(self, r: Reader, raw: bytes) -> str:
        if not self.strict:
            # No CHARSET: US-ASCII by RFC 3501 §6.4.4.  8-bit text can only have
            # come in a literal; we read it as UTF-8, which is what such clients send.
            return raw.decode("utf-8", "replace")
        try:
            return raw.decode(self.codec)
        except UnicodeDecodeError:
            r.fail(Reason.BAD_STRING, f"search string is not valid {self.codec}")


def parse_search_program(r: Reader) -> tuple[SearchKey, str | None]:
    """[SP "CHARSET" SP astring] 1*(SP search-key), the cursor just after SEARCH.

    RFC 3501 §9:
      search          = "SEARCH" [SP "CHARSET" SP astring] 1*(SP search-key)
    Returns the criteria (an ``And`` when there are several) and the charset.
    """
    r.sp()
    charset: str | None = None
    strings = _Strings("ascii", strict=False)
    if r.take("CHARSET"):
        r.sp()
        raw = r.astring("charset")
        charset = raw.decode("ascii", "replace")
        strings = _Strings(_codec(r, charset), strict=True)
        r.sp()
    return _keys(r, strings), charset


def parse_sort_program(r: Reader, after_charset: Callable[[Reader], None] | None = None) -> tuple[SearchKey, str]:
    """SP charset 1*(SP search-key), the cursor after the sort criteria or the
    threading algorithm.

    RFC 5256 §5:
      search-criteria = charset 1*(SP search-key)
    The charset is not optional here; it decodes the strings as in SEARCH.
    ``after_charset`` may read more (SORT's RETURN in Dovecot's place) and the SP
    after it.
    """
    r.sp()
    charset = r.astring("charset").decode("ascii", "replace")
    strings = _Strings(_codec(r, charset), strict=True)
    r.sp()
    if after_charset is not None:
        after_charset(r)
    return _keys(r, strings), charset


def _keys(r: Reader, strings: _Strings) -> SearchKey:
    keys = [_search_key(r, strings)]
    while r.skip_sp():
        keys.append(_search_key(r, strings))
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def _codec(r: Reader, charset: str) -> str:
    if charset.upper() not in (c.upper() for c in r.params.charsets):
        raise CharsetFailure(charset)
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise CharsetFailure(charset) from None


def _search_key(r: Reader, strings: _Strings) -> SearchKey:
    """search-key = "ALL" / "ANSWERED" / "BCC" SP astring / ... / sequence-set /
                    "(" search-key *(SP search-key) ")"
    RFC 7162 §7:  search-key =/ search-modsequence
    """
    c = r.peek()
    if c == 0x28:
        r.open()
        keys = [_search_key(r, strings)]
        while r.skip_sp():
            keys.append(_search_key(r, strings))
        r.close()
        return keys[0] if len(keys) == 1 else And(tuple(keys))
    if 0x30 <= c <= 0x39 or c == 0x2A or c == 0x24:  # RFC 5182: "$" too
        return SequenceKey(r.sequence_set())
    name = r.keyword("search key")
    if name == "ALL":
        return All()
    flag = _FLAG_KEYS.get(name)
    if flag is not None:
        return HasFlag(*flag)
    if name == "NEW":
        return And((HasFlag("\\Recent"), HasFlag("\\Seen", False)))
    if name in _ENVELOPE_KEYS:
        r.sp()
        field = cast(Literal["BCC", "CC", "FROM", "SUBJECT", "TO"], name)
        return EnvelopeField(field, strings.decode(r, r.astring()))
    when = _DATE_KEYS.get(name)
    if when is not None:
        r.sp()
        return DateKey(when[0], r.date(), sent=when[1])
    if name in ("OLDER", "YOUNGER"):
        r.sp()
        return Within(cast(Literal["OLDER", "YOUNGER"], name), r.nz_number("interval"))
    saved = _SAVED_KEYS.get(name)
    if saved is not None:
        r.sp()
        return DateKey(saved, r.date(), saved=True)
    if name == "SAVEDATESUPPORTED":
        # RFC 8514 §4.2: all messages of a mailbox that keeps save dates; every
        # mailbox here does.
        return All()
    if name == "BODY":
        r.sp()
        return Body(strings.decode(r, r.astring()))
    if name == "TEXT":
        r.sp()
        return Text(strings.decode(r, r.astring()))
    if name == "HEADER":
        # "HEADER" SP header-fld-name SP astring
        r.sp()
        field_name = r.astring("header field name")
        if not field_name.isascii():
            r.fail(Reason.SYNTAX, "header field names are ASCII")
        r.sp()
        return Header(field_name.decode("ascii"), strings.decode(r, r.astring()))
    if name in ("KEYWORD", "UNKEYWORD"):
        # "KEYWORD" SP flag-keyword ; flag-keyword = atom
        r.sp()
        return HasFlag(r.atom("keyword").decode("ascii"), name == "KEYWORD")
    if name in ("LARGER", "SMALLER"):
        r.sp()
        size = r.number("size")
        return Larger(size) if name == "LARGER" else Smaller(size)
    if name == "UID":
        r.sp()
        return SequenceKey(r.sequence_set(), uid=True)
    if name == "NOT":
        r.sp()
        r.enter()
        key = _search_key(r, strings)
        r.leave()
        return Not(key)
    if name == "OR":
        r.sp()
        r.enter()
        left = _search_key(r, strings)
        r.sp()
        right = _search_key(r, strings)
        r.leave()
        return Or(left, right)
    if name == "MODSEQ":
        return _modseq(r)
    if name in ("EMAILID", "THREADID"):
        # RFC 8474 §3:  objectid = 1*255(ALPHA / DIGIT / "_" / "-")
        r.sp()
        value = r.atom("objectid")
        if _OBJECTID.fullmatch(value) is None:
            r.fail(Reason.SYNTAX, "an object id is 1 to 255 letters, digits, '_' or '-'")
        return ObjectIdKey(cast(Literal["EMAILID", "THREADID"], name), value.decode("ascii"))
    r.fail(Reason.SYNTAX, f"unknown search key {name!r}")


def _modseq(r: Reader) -> ModSeqKey:
    # RFC 7162 §7:
    # search-modsequence = "MODSEQ" [search-modseq-ext] SP mod-sequence-valzer
    # search-modseq-ext  = SP entry-name SP entry-type-req
    # entry-flag-name    = DQUOTE "/flags/" attr-flag DQUOTE
    # entry-type-req     = entry-type-resp / "all"
    # entry-type-resp    = "priv" / "shared"
    r.sp()
    entry: str | None = None
    entry_type: Literal["priv", "shared", "all"] | None = None
    if r.peek() == 0x22:
        raw = r.quoted()
        if not raw.lower().startswith(b"/flags/") or len(raw) <= 7 or not raw.isascii():
            r.fail(Reason.SYNTAX, "MODSEQ entry names are \"/flags/<flag>\"")
        entry = raw.decode("ascii")
        r.sp()
        kind = r.keyword("entry type").lower()
        if kind not in ("priv", "shared", "all"):
            r.fail(Reason.SYNTAX, "MODSEQ entry type is priv, shared or all")
        entry_type = cast(Literal["priv", "shared", "all"], kind)
        r.sp()
    return ModSeqKey(r.mod_sequence(zero=True), entry, entry_type)
