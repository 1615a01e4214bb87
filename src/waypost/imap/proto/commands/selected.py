"""Commands legal only with a mailbox selected.

RFC 3501 §6.4: CHECK CLOSE EXPUNGE SEARCH FETCH STORE COPY UID; UNSELECT (RFC 3691),
UID EXPUNGE (RFC 4315), MOVE and UID MOVE (RFC 6851), FETCH (CHANGEDSINCE) and
STORE (UNCHANGEDSINCE) (RFC 7162).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from ..context import PartialRange, parse_partial_range
from ..fetch import FetchAttribute, parse_fetch_attributes
from ..lexer import Reader, Reason
from ..search import SearchKey, parse_search_program, parse_sort_program
from ..sequence import SequenceSet
from .base import Command, CommandParser

__all__ = [
    "PARSERS",
    "UID_PARSERS",
    "saves_result",
    "Check",
    "Close",
    "Copy",
    "Expunge",
    "Fetch",
    "Move",
    "RETURN_OPTIONS",
    "SORT_KEYS",
    "THREAD_ALGORITHMS",
    "Search",
    "Sort",
    "Store",
    "Thread",
    "UidBatches",
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
class UidBatches(Command):
    """UIDBATCHES (draft-ietf-mailmaint-imap-uidbatches): the UID ranges that cut the
    mailbox into batches of ``size`` messages, newest first; ``batches`` (first,
    last), 1-based, asks for only those batches."""

    size: int
    batches: tuple[int, int] | None = None
    name: ClassVar[str] = "UIDBATCHES"


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
    #: RFC 4731 RETURN options, upper case, in the client's order (``()`` stands
    #: for ALL); None without RETURN: the answer is a plain SEARCH response.
    returns: tuple[str, ...] | None = None
    #: RFC 9394 PARTIAL (in ``returns`` too, as "PARTIAL").
    partial: PartialRange | None = None
    name: ClassVar[str] = "SEARCH"


@dataclass(frozen=True, slots=True)
class Sort(Command):
    """SORT or UID SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO, RFC 5267
    RETURN).  ``keys`` are (sort key, reversed) in the client's order."""

    keys: tuple[tuple[str, bool], ...]
    criteria: SearchKey
    charset: str
    uid: bool = False
    returns: tuple[str, ...] | None = None
    partial: PartialRange | None = None
    name: ClassVar[str] = "SORT"


@dataclass(frozen=True, slots=True)
class Thread(Command):
    """THREAD or UID THREAD (RFC 5256 §3): ``algorithm`` upper case."""

    algorithm: str
    criteria: SearchKey
    charset: str
    uid: bool = False
    name: ClassVar[str] = "THREAD"


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
    #: RFC 9394 §3.2: UID FETCH (PARTIAL range): that page of the messages named.
    partial: PartialRange | None = None
    name: ClassVar[str] = "FETCH"
    #: RFC 7162 §3.2.6: UID FETCH ... (CHANGEDSINCE n VANISHED).
    vanished: bool = False


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


#: RFC 4731 §3.1 (MIN MAX ALL COUNT), RFC 5182 §4 (SAVE), RFC 5267 §4 (UPDATE,
#: CONTEXT) and RFC 9394 (PARTIAL, which takes a range).
RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL"})
#: RFC 5256 §3 and RFC 5957 §3.
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})
#: RFC 5256 §3, and REFS (draft-ietf-morg-inthread; Dovecot's THREAD=REFS).
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES", "REFS"})


_SAVING = re.compile(rb"[^ \r\n]+ (?:UID )?(?:SEARCH|SORT) RETURN \([^)\r\n]*\bSAVE\b"
                     # SORT's RETURN in Dovecot's place, after the charset
                     rb"|[^ \r\n]+ (?:UID )?SORT \([^)\r\n]*\) [^ \r\n]+ RETURN \([^)\r\n]*\bSAVE\b",
                     re.IGNORECASE)


def saves_result(line: bytes) -> bool:
    """Whether a command line (refused, so not parsed) asked to SAVE its result:
    RFC 5182 §2.1 empties the saved result when such a command fails."""
    return _SAVING.match(line) is not None


def _return_options(r: Reader) -> tuple[tuple[str, ...], PartialRange | None] | None:
    # RFC 4731 §3.1:
    # search-return-opts = SP "RETURN" SP "(" [search-return-opt
    #                      *(SP search-return-opt)] ")"
    start = r.pos
    if not (r.skip_sp() and r.take("RETURN")):
        r.pos = start
        return None
    return _return_list(r)


def _return_list(r: Reader) -> tuple[tuple[str, ...], PartialRange | None]:
    # The part of search-return-opts after "RETURN":
    # search-return-opt  = "MIN" / "MAX" / "ALL" / "COUNT"
    # RFC 5182 §4:  search-return-opt =/ "SAVE"
    # RFC 5267 §6:  search-return-opt =/ "UPDATE" / "CONTEXT"
    # RFC 9394 §3:  return-option =/ "PARTIAL" SP partial-range
    r.sp()
    r.open()
    options: list[str] = []
    partial: PartialRange | None = None
    if not r.try_close():
        while True:
            option = r.keyword("RETURN option")
            if option not in RETURN_OPTIONS:
                r.fail(Reason.UNKNOWN_OPTION, f"unknown RETURN option {option!r}")
            if option == "PARTIAL":
                if partial is not None:  # RFC 5267 §4.4: one PARTIAL at most
                    r.fail(Reason.SYNTAX, "RETURN PARTIAL given twice")
                r.sp()
                partial = parse_partial_range(r)
            if option not in options:
                options.append(option)
            if not r.skip_sp():
                break
        r.close()
    if partial is not None and "ALL" in options:
        # RFC 9394 §3.1: "PARTIAL and ALL ... MUST NOT be specified together"
        r.fail(Reason.SYNTAX, "RETURN PARTIAL and ALL exclude each other")
    return tuple(options), partial


def _search(uid: bool) -> CommandParser:
    # search          = "SEARCH" [SP "CHARSET" SP astring] 1*(SP search-key)
    # RFC 4731 §3.1:  search = "SEARCH" [search-return-opts] SP search-program
    def parse(r: Reader, tag: str) -> Command:
        got = _return_options(r)
        criteria, charset = parse_search_program(r)
        if got is None:
            return Search(tag, criteria, charset, uid)
        return Search(tag, criteria, charset, uid, got[0], got[1])

    return parse


def _sort(uid: bool) -> CommandParser:
    # RFC 5256 §5:
    # sort           = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
    # sort-criteria  = "(" sort-criterion *(SP sort-criterion) ")"
    # sort-criterion = ["REVERSE" SP] sort-key
    # sort-key       = "ARRIVAL" / "CC" / "DATE" / "FROM" / "SIZE" / "SUBJECT" / "TO"
    # RFC 5957 §4:  sort-key =/ "DISPLAYFROM" / "DISPLAYTO"
    # RFC 5267 §6:  sort =/ ["UID" SP] "SORT" search-return-opts SP sort-criteria SP search-criteria
    # Dovecot (and imaptest's CONTEXT=SORT scripts) put RETURN after the charset:
    #   SORT (ARRIVAL) US-ASCII RETURN (PARTIAL 1:10) ALL
    # RETURN is no search key, so both places are taken.
    def parse(r: Reader, tag: str) -> Command:
        got = _return_options(r)
        r.sp()
        r.open()
        keys: list[tuple[str, bool]] = []
        while True:
            key = r.keyword("sort key")
            reverse = key == "REVERSE"
            if reverse:
                r.sp()
                key = r.keyword("sort key")
            if key not in SORT_KEYS:
                r.fail(Reason.SYNTAX, f"unknown sort key {key!r}")
            keys.append((key, reverse))
            if not r.skip_sp():
                break
        r.close()

        def after_charset(r: Reader) -> None:
            nonlocal got
            if got is None and r.take("RETURN"):
                got = _return_list(r)
                r.sp()

        criteria, charset = parse_sort_program(r, after_charset)
        if got is None:
            return Sort(tag, tuple(keys), criteria, charset, uid)
        return Sort(tag, tuple(keys), criteria, charset, uid, got[0], got[1])

    return parse


def _thread(uid: bool) -> CommandParser:
    # RFC 5256 §5:
    # thread     = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    # thread-alg = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        algorithm = r.keyword("threading algorithm")
        if algorithm not in THREAD_ALGORITHMS:
            r.fail(Reason.SYNTAX, f"unknown threading algorithm {algorithm!r}")
        criteria, charset = parse_sort_program(r)
        return Thread(tag, algorithm, criteria, charset, uid)

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
    # fetch-modifier     =/ "VANISHED"   (UID FETCH only, with CHANGEDSINCE: §3.2.6)
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        sequence = r.sequence_set()
        r.sp()
        attributes, macro = parse_fetch_attributes(r)
        changed_since: int | None = None
        partial: PartialRange | None = None
        vanished = False
        if r.skip_sp():
            r.open()
            while True:
                modifier = r.keyword("FETCH modifier")
                if modifier == "PARTIAL" and uid and partial is None:
                    # RFC 9394 §3.2:  fetch-modifier =/ "PARTIAL" SP partial-range
                    # (UID FETCH only)
                    r.sp()
                    partial = parse_partial_range(r)
                elif modifier == "VANISHED" and uid and not vanished:
                    vanished = True
                elif modifier != "CHANGEDSINCE" or changed_since is not None:
                    r.fail(Reason.UNKNOWN_OPTION, f"unknown FETCH modifier {modifier!r}")
                else:
                    r.sp()
                    changed_since = r.mod_sequence(zero=False)
                if not r.skip_sp():
                    break
            r.close()
        if vanished and changed_since is None:
            # RFC 7162 §3.2.6: "The VANISHED UID FETCH modifier MUST only be
            # specified together with the CHANGEDSINCE UID FETCH modifier."
            r.fail(Reason.SYNTAX, "VANISHED needs CHANGEDSINCE")
        return Fetch(tag, sequence, attributes, uid, macro, changed_since, partial, vanished=vanished)

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


def _uidbatches(r: Reader, tag: str) -> Command:
    # draft-ietf-mailmaint-imap-uidbatches:
    # command-select =/ uidbatches
    # uidbatches     = "UIDBATCHES" SP nz-number [SP nz-number ":" nz-number]
    r.sp()
    size = r.nz_number("batch size")
    batches: tuple[int, int] | None = None
    if r.skip_sp():
        first = r.nz_number("batch number")
        r.expect(0x3A, "':'")
        batches = (first, r.nz_number("batch number"))
    return UidBatches(tag, size, batches)


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
    "SORT": _sort(uid=True),
    "THREAD": _thread(uid=True),
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
    "UIDBATCHES": _uidbatches,
    "SEARCH": _search(uid=False),
    "SORT": _sort(uid=False),
    "THREAD": _thread(uid=False),
    "FETCH": _fetch(uid=False),
    "STORE": _store(uid=False),
    "COPY": _copy(uid=False),
    "MOVE": _move(uid=False),
    "UID": _uid,
}
