"""FETCH data items as values: ``Att`` for the simple ones, ``BodySection`` for
``BODY[section]<partial>`` and ``BODY.PEEK[...]``, ``BinarySection`` for RFC 3516
``BINARY[part]<partial>``, ``BINARY.PEEK[...]`` and ``BINARY.SIZE[...]``, and their
grammar.

The same ``Section`` names the part in the request and in the FETCH response
(``response.BodySectionItem``), so the server echoes exactly what was asked.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from .lexer import Reader, Reason

__all__ = [
    "MACROS",
    "Att",
    "BinarySection",
    "BodySection",
    "FetchAttribute",
    "Section",
    "parse_fetch_attributes",
]


class Att(enum.Enum):
    """The fetch-att items that take no arguments; the value is the wire name.

    RFC 3501 §9:
      fetch-att       = "ENVELOPE" / "FLAGS" / "INTERNALDATE" /
                        "RFC822" [".HEADER" / ".SIZE" / ".TEXT"] /
                        "BODY" ["STRUCTURE"] / "UID" / ...
    RFC 7162 §7:
      fetch-att       =/ fetch-mod-sequence
      fetch-mod-sequence = "MODSEQ"
    RFC 8474 §7:
      fetch-att       =/ "EMAILID" / "THREADID"
    RFC 8514 §4:
      fetch-att       =/ "SAVEDATE"
    RFC 8970 §6:
      fetch-att       =/ "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"]
      preview-mod     = "LAZY"
    (LAZY is taken and changes nothing: the preview is always made.)
    """

    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822 = "RFC822"
    RFC822_HEADER = "RFC822.HEADER"
    RFC822_SIZE = "RFC822.SIZE"
    RFC822_TEXT = "RFC822.TEXT"
    BODY = "BODY"
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"
    EMAILID = "EMAILID"
    THREADID = "THREADID"
    SAVEDATE = "SAVEDATE"
    PREVIEW = "PREVIEW"


_BY_NAME = {a.value: a for a in Att}

#: RFC 3501 §6.4.5: the three macros, "used by itself, and not in conjunction with
#: other macros or data items".
MACROS: dict[str, tuple[Att, ...]] = {
    "ALL": (Att.FLAGS, Att.INTERNALDATE, Att.RFC822_SIZE, Att.ENVELOPE),
    "FAST": (Att.FLAGS, Att.INTERNALDATE, Att.RFC822_SIZE),
    "FULL": (Att.FLAGS, Att.INTERNALDATE, Att.RFC822_SIZE, Att.ENVELOPE, Att.BODY),
}

#: section-text = section-msgtext / "MIME";
#: section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
SECTION_TEXTS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")

_ATT_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_WORD = re.compile(rb"[A-Za-z.]+")
_PLAIN_FIELD = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+\Z')


@dataclass(frozen=True, slots=True)
class Section:
    """section = "[" [section-spec] "]"

    ``parts`` is the section-part (``(4, 2)`` for ``4.2``, empty for the whole
    message); ``text`` one of ``SECTION_TEXTS`` or ``None``; ``fields`` the
    header-list of HEADER.FIELDS[.NOT], as the client spelled it.
    """

    parts: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        pieces = [str(p) for p in self.parts]
        if self.text is not None:
            pieces.append(self.text)
        spec = ".".join(pieces)
        if self.fields:
            spec += " (" + " ".join(_field_wire(f) for f in self.fields) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class BodySection:
    """fetch-att = "BODY" section ["<" number "." nz-number ">"] /
                   "BODY.PEEK" section ["<" number "." nz-number ">"]

    ``partial`` is (first octet, octet count).  ``peek`` is BODY.PEEK: the server
    must not set \\Seen (RFC 3501 §6.4.5).
    """

    section: Section = Section()
    partial: tuple[int, int] | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class BinarySection:
    """RFC 3516 §6:
    fetch-att      =/ "BINARY" [".PEEK"] section-binary [partial] /
                      "BINARY.SIZE" section-binary
    section-binary = "[" [section-part] "]"

    ``parts`` as in ``Section``; ``size`` is BINARY.SIZE (no partial); ``peek`` is
    BINARY.PEEK, which does not set \\Seen.
    """

    parts: tuple[int, ...] = ()
    partial: tuple[int, int] | None = None
    peek: bool = False
    size: bool = False

    @property
    def spec(self) -> str:
        return ".".join(str(p) for p in self.parts)


FetchAttribute = Att | BodySection | BinarySection


def parse_fetch_attributes(r: Reader) -> tuple[tuple[FetchAttribute, ...], str | None]:
    """The data items of FETCH: a macro, one fetch-att, or a list of them.

    ("ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")")
    Returns the items (macros expanded) and the macro name, if one was used.
    """
    if r.peek() == 0x28:
        r.open()
        items = [_fetch_att(r)]
        while r.skip_sp():
            items.append(_fetch_att(r))
        r.close()
        return tuple(dict.fromkeys(items)), None
    name = r.peek_keyword()
    if name in MACROS:
        r.take(name)
        return MACROS[name], name
    return (_fetch_att(r),), None


def _fetch_att(r: Reader) -> FetchAttribute:
    m = _ATT_NAME.match(r.buf, r.pos, r.end)
    if m is None:
        r.fail_here("fetch data item")
    name = m.group().decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and m.end() < r.end and r.buf[m.end()] == 0x5B:
        r.pos = m.end()
        section = _section(r)
        partial = _partial(r)
        return BodySection(section, partial, peek=name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE") and m.end() < r.end and r.buf[m.end()] == 0x5B:
        r.pos = m.end()
        parts = _section_binary(r)
        if name == "BINARY.SIZE":
            return BinarySection(parts, size=True)
        return BinarySection(parts, _partial(r), peek=name == "BINARY.PEEK")
    att = _BY_NAME.get(name)
    if att is None:
        r.fail(Reason.SYNTAX, f"unknown fetch data item {name!r}")
    r.pos = m.end()
    if att is Att.PREVIEW:
        _preview_mods(r)
    return att


def _preview_mods(r: Reader) -> None:
    # "PREVIEW (LAZY)"; a "(" that follows with something else is no preview-mod
    # (FETCH 1 PREVIEW (CHANGEDSINCE 5): the fetch modifiers).
    start = r.pos
    if not (r.skip_sp() and r.peek() == 0x28):
        r.pos = start
        return
    r.open()
    if r.peek_keyword() != "LAZY":
        r.pos = start
        return
    while True:
        if r.keyword("preview modifier") != "LAZY":
            r.fail(Reason.SYNTAX, "the only PREVIEW modifier is LAZY")
        if not r.skip_sp():
            break
    r.close()


def _section(r: Reader) -> Section:
    # section         = "[" [section-spec] "]"
    # section-spec    = section-msgtext / (section-part ["." section-text])
    # section-part    = nz-number *("." nz-number)
    r.expect(0x5B, "'['")
    parts: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    if r.peek() != 0x5D:
        if 0x30 <= r.peek() <= 0x39:
            parts.append(r.nz_number("section part"))
            while r.peek() == 0x2E:
                r.pos += 1
                if 0x30 <= r.peek() <= 0x39:
                    parts.append(r.nz_number("section part"))
                else:
                    break
            else:
                r.expect(0x5D, "']'")
                return Section(tuple(parts))
        text, fields = _section_text(r, after_part=bool(parts))
    r.expect(0x5D, "']'")
    return Section(tuple(parts), text, fields)


def _section_binary(r: Reader) -> tuple[int, ...]:
    # section-binary  = "[" [section-part] "]"
    r.expect(0x5B, "'['")
    parts: list[int] = []
    if r.peek() != 0x5D:
        parts.append(r.nz_number("section part"))
        while r.peek() == 0x2E:
            r.pos += 1
            parts.append(r.nz_number("section part"))
    r.expect(0x5D, "']'")
    return tuple(parts)


def _section_text(r: Reader, *, after_part: bool) -> tuple[str, tuple[str, ...]]:
    # section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
    # section-text    = section-msgtext / "MIME"
    m = _SECTION_WORD.match(r.buf, r.pos, r.end)
    if m is None:
        r.fail_here("section text")
    word = m.group().decode("ascii").upper()
    if word not in SECTION_TEXTS or (word == "MIME" and not after_part):
        r.fail(Reason.SYNTAX, f"bad section {word!r}")
    r.pos = m.end()
    if word.startswith("HEADER.FIELDS"):
        r.sp()
        return word, _header_list(r)
    return word, ()


def _header_list(r: Reader) -> tuple[str, ...]:
    # header-list     = "(" header-fld-name *(SP header-fld-name) ")"
    # header-fld-name = astring
    r.open()
    names = [_field_name(r)]
    while r.skip_sp():
        names.append(_field_name(r))
    r.close()
    return tuple(names)


def _field_name(r: Reader) -> str:
    raw = r.astring("header field name")
    if not raw or not raw.isascii():
        r.fail(Reason.SYNTAX, "header field names are non-empty ASCII")
    return raw.decode("ascii")


def _partial(r: Reader) -> tuple[int, int] | None:
    # ["<" number "." nz-number ">"]
    if r.pos >= r.end or r.buf[r.pos] != 0x3C:
        return None
    r.pos += 1
    first = r.number("partial origin")
    r.expect(0x2E, "'.'")
    count = r.nz_number("partial length")
    r.expect(0x3E, "'>'")
    return first, count


def _field_wire(name: str) -> str:
    raw = name.encode("ascii", "replace")
    if _PLAIN_FIELD.match(raw):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
