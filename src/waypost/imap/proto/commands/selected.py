"""Commands legal only with a mailbox selected.

RFC 3501 §6.4: CHECK CLOSE EXPUNGE SEARCH FETCH STORE COPY UID; UNSELECT (RFC 3691),
UID EXPUNGE (RFC 4315), MOVE and UID MOVE (RFC 6851), FETCH (CHANGEDSINCE) and
STORE (UNCHANGEDSINCE) (RFC 7162).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..fetch import FetchAttribute, parse_fetch_attributes
from ..lexer import Reader, Reason
from ..search import SearchKey, parse_search_program
from ..sequence import SequenceSet
from .base import Command, CommandParser

__all__ = [
    "PARSERS",
    "UID_PARSERS",
    "Check",
    "Close",
    "Copy",
    "Expunge",
    "Fetch",
    "Move",
    "Search",
    "Store",
    "UidExpunge",
    "Unselect",
]

# store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP
#                   (flag-list / (flag *(SP flag)))
_STORE_ITEM = re.compile(rb"([+-]?)FLAGS(\.SILENT)?", re.IGNORECASE)


# command-select  = "CHECK" / "CLOSE" / "EXPUNGE" / copy / fetch / store /
#                   uid / search
@dataclass(frozen=True, slots=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    name: ClassVar[str] = "EXPUNGE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    # RFC 3691 §4:  command-select  /= "UNSELECT"
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class UidExpunge(Command):
    # RFC 4315 §4:  uid-expunge = "UID" SP "EXPUNGE" SP sequence-set
    sequence: SequenceSet
    name: ClassVar[str] = "UID EXPUNGE"


@dataclass(frozen=True, slots=True)
class Search(Command):
    """SEARCH or UID SEARCH.  ``charset`` as the client named it (None when
    absent); the strings in ``criteria`` are already decoded with it."""

    criteria: SearchKey
    charset: str | None = None
    uid: bool = False
    name: ClassVar[str] = "SEARCH"


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """FETCH or UID FETCH.

    ``attributes`` has the macro expanded; ``macro`` keeps its name.  The server
    adds UID to the response of a UID FETCH (RFC 3501 §6.4.8) and MODSEQ when
    ``changed_since`` is set (RFC 7162 §3.1.4.1); the parser does not.
    """

    sequence: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    macro: str | None = None
    changed_since: int | None = None
    name: ClassVar[str] = "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """STORE or UID STORE: ``mode`` "" replaces the flags, "+" adds, "-" removes."""

    sequence: SequenceSet
    flags: tuple[str, ...]
    mode: Literal["", "+", "-"] = ""
    silent: bool = False
    uid: bool = False
    unchanged_since: int | None = None
    name: ClassVar[str] = "STORE"


@dataclass(frozen=True, slots=True)
class Copy(Command):
    sequence: SequenceSet
    mailbox: str
    uid: bool = False
    name: ClassVar[str] = "COPY"


@dataclass(frozen=True, slots=True)
class Move(Command):
    sequence: SequenceSet
    mailbox: str
    uid: bool = False
    name: ClassVar[str] = "MOVE"


# -- SEARCH ---------------------------------------------------------------------------


def _search(uid: bool) -> CommandParser:
    # search          = "SEARCH" [SP "CHARSET" SP astring] 1*(SP search-key)
    def parse(r: Reader, tag: str) -> Command:
        criteria, charset = parse_search_program(r)
        return Search(tag, criteria, charset, uid)

    return parse


# -- FETCH ----------------------------------------------------------------------------


def _fetch(uid: bool) -> CommandParser:
    # RFC 4466 §3:
    # fetch           = "FETCH" SP sequence-set SP ("ALL" / "FULL" /
    #                   "FAST" / fetch-att /
    #                   "(" fetch-att *(SP fetch-att) ")")
    #                   [fetch-modifiers]
    # fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")"
    # RFC 7162 §7:
    # fetch-modifier     =/ chgsince-fetch-mod
    # chgsince-fetch-mod = "CHANGEDSINCE" SP mod-sequence-value
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        sequence = r.sequence_set()
        r.sp()
        attributes, macro = parse_fetch_attributes(r)
        changed_since: int | None = None
        if r.skip_sp():
            r.open()
            while True:
                modifier = r.keyword("FETCH modifier")
                if modifier != "CHANGEDSINCE":
                    r.fail(Reason.UNKNOWN_OPTION, f"unknown FETCH modifier {modifier!r}")
                r.sp()
                changed_since = r.mod_sequence(zero=False)
                if not r.skip_sp():
                    break
            r.close()
        return Fetch(tag, sequence, attributes, uid, macro, changed_since)

    return parse


# -- STORE ----------------------------------------------------------------------------


def _store(uid: bool) -> CommandParser:
    # RFC 4466 §3:
    # store           = "STORE" SP sequence-set [store-modifiers]
    #                   SP store-att-flags
    # store-modifiers =  SP "(" store-modifier *(SP store-modifier) ")"
    # RFC 7162 §7:
    # store-modifier  =/ "UNCHANGEDSINCE" SP mod-sequence-valzer
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        sequence = r.sequence_set()
        r.sp()
        unchanged_since: int | None = None
        if r.peek() == 0x28:
            r.open()
            while True:
                modifier = r.keyword("STORE modifier")
                if modifier != "UNCHANGEDSINCE":
                    r.fail(Reason.UNKNOWN_OPTION, f"unknown STORE modifier {modifier!r}")
                r.sp()
                unchanged_since = r.mod_sequence(zero=True)
                if not r.skip_sp():
                    break
            r.close()
            r.sp()
        m = _STORE_ITEM.match(r.buf, r.pos, r.end)
        if m is None:
            r.fail_here("FLAGS, +FLAGS or -FLAGS")
        r.pos = m.end()
        mode: Literal["", "+", "-"] = "+" if m.group(1) == b"+" else "-" if m.group(1) == b"-" else ""
        silent = m.group(2) is not None
        r.sp()
        if r.peek() == 0x28:
            flags = r.flag_list()
        else:
            listed = [r.flag()]
            while r.skip_sp():
                listed.append(r.flag())
            flags = tuple(dict.fromkeys(listed))
        return Store(tag, sequence, flags, mode, silent, uid, unchanged_since)

    return parse


# -- COPY, MOVE -----------------------------------------------------------------------


def _copy(uid: bool) -> CommandParser:
    # copy            = "COPY" SP sequence-set SP mailbox
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        sequence = r.sequence_set()
        r.sp()
        return Copy(tag, sequence, r.mailbox(), uid)

    return parse


def _move(uid: bool) -> CommandParser:
    # RFC 6851 §5:  move = "MOVE" SP sequence-set SP mailbox
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        sequence = r.sequence_set()
        r.sp()
        return Move(tag, sequence, r.mailbox(), uid)

    return parse


def _uid_expunge(r: Reader, tag: str) -> Command:
    r.sp()
    return UidExpunge(tag, r.sequence_set())


# -- UID ------------------------------------------------------------------------------

#: uid = "UID" SP (copy / fetch / search / store)       (RFC 3501 §9)
#: uid = "UID" SP (copy / fetch / search / store / move) (RFC 6851 §5)
#: command-select =/ uid-expunge                          (RFC 4315 §4)
UID_PARSERS: dict[str, CommandParser] = {
    "COPY": _copy(uid=True),
    "FETCH": _fetch(uid=True),
    "SEARCH": _search(uid=True),
    "STORE": _store(uid=True),
    "MOVE": _move(uid=True),
    "EXPUNGE": _uid_expunge,
}


def _uid(r: Reader, tag: str) -> Command:
    r.sp()
    name = r.keyword("UID command")
    parser = UID_PARSERS.get(name)
    if parser is None:
        r.fail(Reason.UNKNOWN_COMMAND, f"unknown command UID {name}")
    return parser(r, tag)


PARSERS: dict[str, CommandParser] = {
    "CHECK": lambda r, tag: Check(tag),
    "CLOSE": lambda r, tag: Close(tag),
    "EXPUNGE": lambda r, tag: Expunge(tag),
    "UNSELECT": lambda r, tag: Unselect(tag),
    "SEARCH": _search(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _copy(uid=False),
    "MOVE": _move(uid=False),
    "UID": _uid,
}
