"""The router table: parse, validate, format and compile CommuniGate Pro-style records.

This module owns the text form of the table (ROUTER.md "The Router table") and the
compiled index that answers one question: *which record applies to this address, and
what does it rewrite the address to?*  It never decides whether an address is local,
remote, relayable or held — ``resolve.py`` does, which is why a ``Match`` carries the
record with its prefixes.  No I/O, no directory, no DNS.

Syntax, one record a line::

    [Prefix:] [Prefix:] left = right        # comment

* ``#`` starts a comment at the start of a line or after white space (``#`` is a legal
  character of a local part, so ``<a#b@x.com>`` is not cut).
* Prefixes, any case: one of ``Mail:``, ``Signal:``, ``Access:`` (which kind of name the
  record applies to) and/or one of ``Relay:``, ``NoRelay:``, ``RelayAll:`` (what it
  permits).  Seed 004 writes ``Mail:target.domain = ...`` and then suggests "You may want
  to add a Relay:, NoRelay: or RelayAll: prefix to these Router records", so one of each
  group may be combined (``Relay: Mail: target.domain = ...``).
* Left: a domain (``friend.com``, ``other-port``, ``[1.2.3.4]``), a domain pattern with
  one ``*`` (``*.domain.dom``; also ``mail*.x.com`` or ``*``), or an address in angle
  brackets with at most one ``*`` (``<LoginPage%*@domain.dom>``, ``<joe@*.x.com>``).
* Right: an address or a domain, possibly with one ``*`` (only if the left has one).
  Optional angle brackets are dropped.  ``._via`` and ``.smtp`` become ``.via``.

Theory of operation
-------------------
``parse_table`` turns text into ``Record`` objects (normalised: domains in lower-case
IDNA form, ``.via`` spelled one way) and a ``TableError`` for every bad line; one bad
line never hides the others.  ``RoutingTable.compile`` builds immutable indexes, so a
running server swaps in a new table in one assignment:

1. exact addresses: ``dict["local@domain"]`` (local part compared in lower case);
2. address patterns with the ``*`` in the local part: ``dict[domain]`` → a prefix/suffix
   index (below); with the ``*`` in the domain: ``dict[local]`` → the same over domains;
3. exact domains: ``dict[domain]``;
4. ``*.suffix`` patterns: ``dict[suffix]``; a look-up walks the labels of the domain,
   longest suffix first;
5. other domain patterns (``mail*.x.com``, ``*``): a prefix/suffix index.

A prefix/suffix index keys patterns ``P*S`` by ``P``, then by ``S``; a look-up tries only
the prefix and suffix lengths that occur, longest literal first.  No look-up scans the
records.  Each index slot holds the records with that left side in table order, since
records with one left side can differ in prefix (``Mail:`` and ``Signal:`` records for
``target.domain`` in seed 004): the first one that applies to the kind of name wins.

Precedence (ROUTER.md): address-level before domain-level; exact before wildcard; among
wildcards the longest literal part wins; then table order.  ``*`` matches one or more
characters; in an address pattern it matches inside the local part or inside the domain,
whichever side it is written on, never across the ``@``.  A ``NoRelay:`` record is seen
only by a look-up for a trusted client (ROUTER.md: for anyone else "it does not exist").

Rewriting (ROUTER.md), for an address ``L@D``:

* domain-level record, right side without ``@``: ``L@right``;
* domain-level record, right side ``X@Y``: ``L%X@Y`` (the original local part kept in
  front of a ``%``);
* address-level record: the right side as written; without ``@`` it is an address with
  no domain, i.e. in the main domain (seed 004: ``<LoginPage%*@fict> = *``);
* in every case a ``*`` on the right is replaced with what the left ``*`` matched.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from ..address import AddressError, normalize_domain
from .special import is_final_domain, normalize_via

__all__ = [
    "KINDS",
    "MAX_HOPS",
    "MAX_LINE_LENGTH",
    "Match",
    "Prefix",
    "Record",
    "RecordError",
    "RoutingLoop",
    "RoutingTable",
    "TableError",
    "format_record",
    "format_table",
    "parse_record",
    "parse_table",
]

#: Longest accepted line of the table text (characters, comment included).
MAX_LINE_LENGTH = 4096
#: Most records applied to one address before routing is called a loop (ROUTER.md: "a
#: hop limit (say 16) that turns a routing loop into a clear refusal").
MAX_HOPS = 16
#: The kinds of name a look-up is for; "http" (a web host name) behaves as "access".
KINDS = ("mail", "signal", "access", "http")


class Prefix(str, enum.Enum):
    """A record prefix, spelled as CommuniGate spells it."""

    MAIL = "Mail"
    SIGNAL = "Signal"
    ACCESS = "Access"
    RELAY = "Relay"
    NORELAY = "NoRelay"
    RELAYALL = "RelayAll"

    def __str__(self) -> str:
        return self.value


_PREFIX_BY_NAME = {p.value.lower(): p for p in Prefix}
_SCOPES = frozenset({Prefix.MAIL, Prefix.SIGNAL, Prefix.ACCESS})

# A record's mask: which kinds it applies to (bits 1, 2, 4), and whether it is visible to
# untrusted clients (8) or to trusted ones only (16, NoRelay:).  A look-up asks for one
# kind bit and for 8 (untrusted) or 8|16 (trusted).
_MAIL, _SIGNAL, _ACCESS = 1, 2, 4
_KIND_BITS = {"mail": _MAIL, "signal": _SIGNAL, "access": _ACCESS, "http": _ACCESS}
_SCOPE_MASK: dict[Prefix | None, int] = {
    None: _MAIL | _SIGNAL | _ACCESS,
    Prefix.MAIL: _MAIL,
    Prefix.SIGNAL: _SIGNAL,
    Prefix.ACCESS: _ACCESS,
}
_VISIBLE, _TRUSTED_ONLY = 8, 16


class RecordError(ValueError):
    """One line that is not a valid record; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TableError:
    """A bad line of the table text, for the import report (1-based line numbers)."""

    line_no: int
    line: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}: {self.line.strip()!r}"


@dataclass(frozen=True, slots=True)
class Record:
    """One valid record.  Made by ``parse_record``/``parse_table``, never by hand.

    ``left``/``right`` are the normalised texts (``format_record`` writes them back);
    the fields after ``line_no`` are their parsed parts, for the compiler.  Two records
    are equal when prefixes, left and right are: the line number does not count.
    """

    scope: Prefix | None
    relay: Prefix | None
    left: str
    right: str
    line_no: int = field(compare=False)
    #: True for ``<local@domain>`` on the left, False for a domain.
    is_address: bool = field(compare=False, repr=False)
    #: Address-level: the local part of the left side in lower case (may hold ``*``).
    left_local: str = field(compare=False, repr=False)
    #: The (normalised) domain of the left side (may hold ``*``).
    left_domain: str = field(compare=False, repr=False)
    #: Right side: local part (None for a domain-level right side without ``@``).
    right_local: str | None = field(compare=False, repr=False)
    #: Right side: domain (None for an address-level right side without ``@``).
    right_domain: str | None = field(compare=False, repr=False)
    #: The record as a line of the table (``format_record``), made at its first use
    #: and kept: every trace step of a resolution through it quotes it.
    text: str = field(default="", compare=False, repr=False)

    @property
    def prefix(self) -> str:
        """The prefixes as written back: ``""``, ``"Mail:"``, ``"Relay: Mail:"``."""
        return " ".join(f"{p.value}:" for p in (self.relay, self.scope) if p is not None)

    @property
    def has_wildcard(self) -> bool:
        return "*" in self.left

    def __str__(self) -> str:
        return format_record(self)


class Match:
    """The record that applies to an address, and the address it rewrites it to.

    ``local``/``domain``: the result; ``domain`` is ``""`` for an address with no domain
    (the main domain).  ``capture``: what the left ``*`` matched, else None.
    ``from_local``/``from_domain``: the address that was looked up.
    """

    __slots__ = ("record", "local", "domain", "capture", "from_local", "from_domain")

    def __init__(
        self,
        record: Record,
        local: str,
        domain: str,
        capture: str | None,
        from_local: str,
        from_domain: str,
    ) -> None:
        self.record = record
        self.local = local
        self.domain = domain
        self.capture = capture
        self.from_local = from_local
        self.from_domain = from_domain

    @property
    def address(self) -> str:
        """The result as text: ``local@domain``, or ``local`` when there is no domain."""
        return f"{self.local}@{self.domain}" if self.domain else self.local

    @property
    def relay(self) -> Prefix | None:
        """The record's Relay:/NoRelay:/RelayAll: prefix; the resolver decides with it."""
        return self.record.relay

    @property
    def scope(self) -> Prefix | None:
        return self.record.scope

    @property
    def description(self) -> str:
        """One trace line: ``line 3 (Relay: friend.com = ...): joe@friend.com -> ...``."""
        src = f"{self.from_local}@{self.from_domain}" if self.from_domain else self.from_local
        return f"router line {self.record.line_no} ({format_record(self.record)}): {src} -> {self.address}"

    def __repr__(self) -> str:
        return f"Match({self.description!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Match):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


class RoutingLoop(Exception):
    """More than ``max_hops`` records applied to one address: a loop in the table."""

    def __init__(self, matches: Sequence[Match], max_hops: int) -> None:
        first = matches[0]
        src = f"{first.from_local}@{first.from_domain}" if first.from_domain else first.from_local
        super().__init__(f"routing loop: more than {max_hops} router records applied to {src}")
        self.matches = list(matches)
        self.max_hops = max_hops


# -- parsing -------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"([A-Za-z]+)[ \t]*:[ \t]*")
_SPACE_RE = re.compile(r"\s")
# A domain already in normal form (lower-case LDH labels, no trailing dot): the common
# case, checked by one regex instead of normalize_domain's label loop.
_LDH = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_DOMAIN = re.compile(rf"(?:{_LDH}\.)*{_LDH}")
# A local part as the table accepts it: RFC 5321 §4.1.2 atext and dots, which include
# the '%', '!' and '*' the router uses; no quoted strings (they would need white space
# and '@' handling that CommuniGate's table syntax does not define).
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+")


def _strip_comment(line: str) -> str:
    i = line.find("#")
    while i != -1:
        if i == 0 or line[i - 1] in " \t":
            return line[:i]
        i = line.find("#", i + 1)
    return line


def _domain(text: str, side: str) -> str:
    """A domain or domain pattern (one ``*``) in normal form; raises RecordError."""
    if "*" not in text:
        if len(text) <= 255 and _FAST_DOMAIN.fullmatch(text):
            return text
        try:
            return normalize_domain(text)
        except (AddressError, ValueError, UnicodeError) as e:
            raise RecordError(f"bad domain on the {side} side: {e}") from None
    if text == "*":
        return text
    if "[" in text or "]" in text:
        raise RecordError(f"'*' in an IP literal on the {side} side")
    if text.startswith("*.") and len(text) > 2:
        return "*." + _domain(text[2:], side)
    if not text.isascii():
        raise RecordError(f"a domain pattern other than '*.domain' must be ASCII on the {side} side")
    low = text.lower()
    if low.endswith(".") and len(low) > 1:
        low = low[:-1]
    _domain(low.replace("*", "x"), side)  # the rest must be domain syntax
    return low


def _local(text: str, side: str) -> str:
    if not _LOCAL_RE.fullmatch(text):
        raise RecordError(f"bad local part {text!r} on the {side} side")
    return text


def parse_record(line: str, line_no: int = 0) -> Record | None:
    """One line of the table: a Record, or None for a blank or comment line.

    Raises ``RecordError`` with the reason for a bad line.
    """
    if len(line) > MAX_LINE_LENGTH:
        raise RecordError(f"line longer than {MAX_LINE_LENGTH} characters")
    s = _strip_comment(line).strip().lstrip("\ufeff").strip()
    if not s:
        return None

    scope: Prefix | None = None
    relay: Prefix | None = None
    while (m := _PREFIX_RE.match(s)) is not None:
        word = m.group(1)
        p = _PREFIX_BY_NAME.get(word.lower())
        if p is None:
            raise RecordError(f"unknown prefix {word + ':'!r}")
        if p in _SCOPES:
            if scope is not None:
                raise RecordError(f"two of Mail:/Signal:/Access: ({scope.value}: and {p.value}:)")
            scope = p
        else:
            if relay is not None:
                raise RecordError(f"two of Relay:/NoRelay:/RelayAll: ({relay.value}: and {p.value}:)")
            relay = p
        s = s[m.end():]

    # Split at the '=' after the left side; an address in brackets may itself hold '='.
    if s.startswith("<"):
        gt = s.find(">")
        eq = s.find("=")
        if gt == -1 or (eq != -1 and eq < gt and "=" not in s[gt:]):
            raise RecordError("unbalanced '<' on the left side")
        left, rest = s[: gt + 1], s[gt + 1:].lstrip()
        if not rest.startswith("="):
            raise RecordError("missing '='" if "=" not in rest else "unexpected text between '>' and '='")
        right = rest[1:].strip()
    else:
        eq = s.find("=")
        if eq == -1:
            raise RecordError("missing '='")
        left, right = s[:eq].strip(), s[eq + 1:].strip()
    if not left:
        raise RecordError("empty left side")
    if not right:
        raise RecordError("empty right side")
    if left.count("*") > 1:
        raise RecordError("more than one '*' on the left side")
    if right.count("*") > 1:
        raise RecordError("more than one '*' on the right side")
    if "*" in right and "*" not in left:
        raise RecordError("'*' on the right side but none on the left")

    # Left side.
    if left.startswith("<"):
        inner = left[1:-1]
        if not inner:
            raise RecordError("empty address on the left side")
        if "<" in inner or ">" in inner:
            raise RecordError("unbalanced '<' on the left side")
        if _SPACE_RE.search(inner):
            raise RecordError("white space inside the address on the left side")
        loc, at, dom = inner.rpartition("@")
        if not at:
            raise RecordError("an address on the left side needs local@domain")
        if not loc:
            raise RecordError("empty local part on the left side")
        if not dom:
            raise RecordError("empty domain on the left side")
        loc = _local(loc, "left")
        dom = _domain(dom, "left")
        is_address = True
        left_local = loc.lower()
        left_text = f"<{loc}@{dom}>"
    else:
        if ">" in left or "<" in left:
            raise RecordError("unbalanced '>' on the left side")
        if "@" in left:
            raise RecordError("a domain on the left side has no '@' (write <local@domain> for an address)")
        if _SPACE_RE.search(left):
            raise RecordError("white space in the domain on the left side")
        dom = _domain(left, "left")
        is_address = False
        left_local = ""
        left_text = dom

    # Right side.
    if right.startswith("<"):
        if not right.endswith(">"):
            raise RecordError("unbalanced '<' on the right side")
        right = right[1:-1].strip()
        if not right:
            raise RecordError("empty right side")
    if "<" in right or ">" in right:
        raise RecordError("unbalanced '<' or '>' on the right side")
    if _SPACE_RE.search(right):
        raise RecordError("white space in the right side (one record per line)")
    rloc, at, rdom = right.rpartition("@")
    right_local: str | None
    right_domain: str | None
    if at:
        if not rloc:
            raise RecordError("empty local part on the right side")
        if not rdom:
            raise RecordError("empty domain on the right side")
        right_local = _local(rloc, "right")
        right_domain = _domain(normalize_via(rdom), "right")
        right_text = f"{right_local}@{right_domain}"
    elif is_address:
        # An address with no domain: an address in the main domain (ROUTER.md).
        right_local, right_domain = _local(right, "right"), None
        right_text = right_local
    else:
        right_local, right_domain = None, _domain(normalize_via(right), "right")
        right_text = right_domain

    return Record(scope, relay, left_text, right_text, line_no,
                  is_address, left_local, dom, right_local, right_domain)


def parse_table(text: str) -> tuple[list[Record], list[TableError]]:
    """All records of a table text, and one ``TableError`` for each bad line."""
    records: list[Record] = []
    errors: list[TableError] = []
    # Lines end at LF, CRLF or CR only (str.splitlines would also split at the C0/C1
    # separators and U+2028, and line numbers would no longer match an editor's).
    for n, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        try:
            rec = parse_record(line, n)
        except RecordError as e:
            errors.append(TableError(n, line, e.reason))
            continue
        if rec is not None:
            records.append(rec)
    return records, errors


def format_record(rec: Record) -> str:
    """One record as a line of the table: ``[Prefix: ]left = right``."""
    text = rec.text
    if not text:
        prefix = rec.prefix
        text = f"{prefix} {rec.left} = {rec.right}" if prefix else f"{rec.left} = {rec.right}"
        # Kept in the record (frozen for its users; the same text whoever makes it
        # first): not made for the 100,000 records of a big table that never match.
        object.__setattr__(rec, "text", text)
    return text


def format_table(records: Iterable[Record]) -> str:
    """The table as text (export); ``parse_table`` reads it back to equal records."""
    return "".join(format_record(r) + "\n" for r in records)


# -- compiled table ----------------------------------------------------------------------

# An index entry: (mask, table order, record).
_Entry = tuple[int, int, Record]


def _append(index: dict[str, tuple[_Entry, ...]], key: str, entry: _Entry) -> None:
    # Slots hold tuples from the start: most keys have one record, and building lists
    # first doubles the objects a 100,000-record compile allocates.
    index[key] = index.get(key, ()) + (entry,)


def _first(entries: Sequence[_Entry], kind_bit: int, visible: int) -> _Entry | None:
    """The first entry (table order) that applies to this kind of name and client."""
    for e in entries:
        if e[0] & kind_bit and e[0] & visible:
            return e
    return None


class _PatternIndex:
    """Patterns ``P*S`` over one string, keyed by ``P`` then by ``S``.

    ``find`` tries each prefix length that occurs (shortest first) and, within the
    prefix, each suffix length that occurs (longest first), so its cost depends on how
    many different lengths there are, not on how many patterns.
    """

    __slots__ = ("_building", "prefix_lengths", "buckets")

    def __init__(self) -> None:
        self._building: dict[str, dict[str, tuple[_Entry, ...]]] = {}
        self.prefix_lengths: tuple[int, ...] = ()
        self.buckets: dict[str, tuple[tuple[int, ...], dict[str, tuple[_Entry, ...]]]] = {}

    def add(self, prefix: str, suffix: str, entry: _Entry) -> None:
        _append(self._building.setdefault(prefix, {}), suffix, entry)

    def freeze(self) -> None:
        self.prefix_lengths = tuple(sorted({len(p) for p in self._building}))
        self.buckets = {
            p: (tuple(sorted({len(s) for s in by_suffix}, reverse=True)),
                by_suffix)
            for p, by_suffix in self._building.items()
        }
        self._building = {}

    def find(self, s: str, kind_bit: int, visible: int) -> tuple[_Entry, int, int] | None:
        """The best entry matching ``s`` and its prefix and suffix lengths."""
        n = len(s)
        best: _Entry | None = None
        best_lit = -1
        best_lp = best_ls = 0
        for lp in self.prefix_lengths:
            if lp >= n:
                break
            bucket = self.buckets.get(s[:lp])
            if bucket is None:
                continue
            lengths, by_suffix = bucket
            for ls in lengths:
                lit = lp + ls
                if lit < best_lit:
                    break  # shorter from here on: cannot win
                if lit >= n:
                    continue  # '*' must match at least one character
                entries = by_suffix.get(s[n - ls:])
                if entries is None:
                    continue
                e = _first(entries, kind_bit, visible)
                if e is None:
                    continue
                if best is None or lit > best_lit or e[1] < best[1]:
                    best, best_lit, best_lp, best_ls = e, lit, lp, ls
                break  # the longest suffix that matches wins within this prefix
        if best is None:
            return None
        return best, best_lp, best_ls


def _slice_capture(original: str, lowered: str, lp: int, ls: int) -> str:
    # Matching is done in lower case; the capture keeps the spelling of the original
    # unless lower-casing changed the length (a few non-ASCII letters do).
    src = original if len(original) == len(lowered) else lowered
    return src[lp: len(src) - ls]


def _rewrite(rec: Record, local: str, domain: str, cap: str | None) -> Match:
    rl, rd = rec.right_local, rec.right_domain
    if cap is not None:
        if rl is not None:
            rl = rl.replace("*", cap, 1)
        if rd is not None and "*" in rd:
            rd = normalize_via(rd.replace("*", cap, 1).lower())
    if rec.is_address:
        assert rl is not None
        return Match(rec, rl, rd or "", cap, local, domain)
    assert rd is not None
    if rl is None:  # "L@D" -> "L@right"
        return Match(rec, local, rd, cap, local, domain)
    return Match(rec, f"{local}%{rl}", rd, cap, local, domain)  # "L@D" -> "L%X@Y"


class RoutingTable:
    """A compiled, immutable router table.  Build with ``compile``; share freely.

    A running server replaces its table by assigning a new one: a look-up in progress
    keeps the table it started with.
    """

    __slots__ = (
        "records",
        "_exact_addr",
        "_addr_domains",
        "_local_wild",
        "_domain_wild_addr",
        "_has_addr",
        "_exact_domain",
        "_label_wild",
        "_domain_wild",
    )

    def __init__(self) -> None:
        self.records: tuple[Record, ...] = ()
        self._exact_addr: dict[str, tuple[_Entry, ...]] = {}
        self._addr_domains: frozenset[str] = frozenset()
        self._local_wild: dict[str, _PatternIndex] = {}
        self._domain_wild_addr: dict[str, _PatternIndex] = {}
        self._has_addr = False
        self._exact_domain: dict[str, tuple[_Entry, ...]] = {}
        self._label_wild: dict[str, tuple[_Entry, ...]] = {}
        self._domain_wild: _PatternIndex | None = None

    @classmethod
    def compile(cls, records: Iterable[Record]) -> RoutingTable:
        t = cls()
        t.records = tuple(records)
        exact_addr: dict[str, tuple[_Entry, ...]] = {}
        addr_domains: set[str] = set()
        exact_domain: dict[str, tuple[_Entry, ...]] = {}
        label_wild: dict[str, tuple[_Entry, ...]] = {}
        domain_wild = _PatternIndex()
        has_domain_wild = False
        for order, rec in enumerate(t.records):
            mask = _SCOPE_MASK[rec.scope] | (_TRUSTED_ONLY if rec.relay is Prefix.NORELAY else _VISIBLE)
            entry: _Entry = (mask, order, rec)
            dom = rec.left_domain
            if rec.is_address:
                loc = rec.left_local
                sl, sd = loc.find("*"), dom.find("*")
                if sl >= 0:
                    idx = t._local_wild.get(dom)
                    if idx is None:
                        idx = t._local_wild[dom] = _PatternIndex()
                    idx.add(loc[:sl], loc[sl + 1:], entry)
                elif sd >= 0:
                    idx = t._domain_wild_addr.get(loc)
                    if idx is None:
                        idx = t._domain_wild_addr[loc] = _PatternIndex()
                    idx.add(dom[:sd], dom[sd + 1:], entry)
                else:
                    _append(exact_addr, f"{loc}@{dom}", entry)
                    addr_domains.add(dom)
            elif "*" not in dom:
                _append(exact_domain, dom, entry)
            elif dom.startswith("*.") and "*" not in dom[2:]:
                _append(label_wild, dom[2:], entry)
            else:
                star = dom.find("*")
                domain_wild.add(dom[:star], dom[star + 1:], entry)
                has_domain_wild = True
        for idx in (*t._local_wild.values(), *t._domain_wild_addr.values()):
            idx.freeze()
        if has_domain_wild:
            domain_wild.freeze()
            t._domain_wild = domain_wild
        t._exact_addr = exact_addr
        t._addr_domains = frozenset(addr_domains)
        t._has_addr = bool(exact_addr or t._local_wild or t._domain_wild_addr)
        t._exact_domain = exact_domain
        t._label_wild = label_wild
        return t

    @classmethod
    def from_text(cls, text: str) -> tuple[RoutingTable, list[TableError]]:
        """Parse and compile; the table holds every valid record."""
        records, errors = parse_table(text)
        return cls.compile(records), errors

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def lookup(self, local: str, domain: str, kind: str = "mail", *, trusted: bool = False) -> Match | None:
        """The record that applies to ``local@domain`` for this kind of name, rewritten.

        ``domain`` should be normalised (lower case, IDNA, no trailing dot) as
        ``waypost.address.normalize_domain`` makes it.  ``kind``: one of ``KINDS``.
        ``trusted``: the client may see ``NoRelay:`` records (ROUTER.md: for anyone
        else such a record "does not exist", so the next best record applies).
        """
        kind_bit = _KIND_BITS.get(kind)
        if kind_bit is None:
            raise ValueError(f"unknown kind of name {kind!r}; expected one of {', '.join(KINDS)}")
        visible = _VISIBLE | _TRUSTED_ONLY if trusted else _VISIBLE
        d = domain.lower()

        # 1. Address-level records: exact, then patterns (longest literal, table order).
        if self._has_addr:
            lkey = local.lower()
            if d in self._addr_domains:
                entries = self._exact_addr.get(f"{lkey}@{d}")
                if entries is not None:
                    e = _first(entries, kind_bit, visible)
                    if e is not None:
                        return _rewrite(e[2], local, domain, None)
            best: _Entry | None = None
            best_lit = -1
            cap = ""
            idx = self._local_wild.get(d)
            if idx is not None:
                found = idx.find(lkey, kind_bit, visible)
                if found is not None:
                    best, lp, ls = found
                    best_lit = lp + ls + 1 + len(d)
                    cap = _slice_capture(local, lkey, lp, ls)
            idx = self._domain_wild_addr.get(lkey)
            if idx is not None:
                found = idx.find(d, kind_bit, visible)
                if found is not None:
                    e, lp, ls = found
                    lit = lp + ls + 1 + len(lkey)
                    if best is None or lit > best_lit or (lit == best_lit and e[1] < best[1]):
                        best, best_lit = e, lit
                        cap = d[lp: len(d) - ls]
            if best is not None:
                return _rewrite(best[2], local, domain, cap)

        # 2. Domain-level records: exact, then patterns.
        entries = self._exact_domain.get(d)
        if entries is not None:
            e = _first(entries, kind_bit, visible)
            if e is not None:
                return _rewrite(e[2], local, domain, None)
        dbest: _Entry | None = None
        dbest_lit = -1
        dcap = ""
        if self._label_wild:
            pos = d.find(".")
            while pos != -1:  # longest suffix first
                if pos > 0:
                    entries = self._label_wild.get(d[pos + 1:])
                    if entries is not None:
                        e = _first(entries, kind_bit, visible)
                        if e is not None:
                            dbest, dbest_lit, dcap = e, len(d) - pos, d[:pos]
                            break
                pos = d.find(".", pos + 1)
        if self._domain_wild is not None:
            found = self._domain_wild.find(d, kind_bit, visible)
            if found is not None:
                e, lp, ls = found
                lit = lp + ls
                if dbest is None or lit > dbest_lit or (lit == dbest_lit and e[1] < dbest[1]):
                    dbest, dcap = e, d[lp: len(d) - ls]
        if dbest is not None:
            return _rewrite(dbest[2], local, domain, dcap)
        return None

    def chain(
        self,
        local: str,
        domain: str,
        kind: str = "mail",
        *,
        trusted: bool = False,
        main_domain: str = "",
        max_hops: int = MAX_HOPS,
    ) -> list[Match]:
        """Apply records again and again until none applies; every step, in order.

        The address given is always looked up (an admin may route an IP literal); a
        result stops the chain when it is final (ROUTER.md: "a `.via` host, an IP
        literal") or has no domain and ``main_domain`` is not given (with it, an address
        without a domain is looked up in the main domain).  Raises ``RoutingLoop`` when a record would apply after
        ``max_hops`` have.
        """
        steps: list[Match] = []
        if not domain:
            domain = main_domain
        while True:
            m = self.lookup(local, domain, kind, trusted=trusted)
            if m is None:
                return steps
            if len(steps) >= max_hops:
                raise RoutingLoop(steps + [m], max_hops)
            steps.append(m)
            local, domain = m.local, m.domain
            if not domain:
                if not main_domain:
                    return steps
                domain = main_domain
            if is_final_domain(domain):
                return steps
