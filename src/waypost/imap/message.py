"""Reading a stored message for IMAP: ENVELOPE, BODYSTRUCTURE, ``BODY[section]`` and
the message side of SEARCH.

Owns the interpretation of message bytes (RFC 5322 headers, RFC 2045/2046 MIME
structure, RFC 2047 encoded-words) for the IMAP server.  Pure functions over the
bytes the mailstore keeps: no I/O, no event loop, no mailbox state.  The wire form
of the values is ``proto.structure``'s; the server caches them with ``to_json``.

Messages are stored with CRLF.  Bare LF is tolerated: it is recognised as a line
end everywhere, sizes and sections are always the octets *as stored*, and nothing
is rewritten.

Theory of operation: headers are found with byte searches and one regular
expression per question (the hot path, ``HEADER.FIELDS`` and ENVELOPE, never builds
a tree); a numbered section or BODYSTRUCTURE parses the MIME tree once into
``_Entity`` offsets (header, body, end of each part), from which both are read, so
they always agree on part numbers.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from email.utils import mktime_tz, parsedate_tz
from typing import Any, Protocol

from ..db import SortKeys
from .collation import fold
from .proto.fetch import Section
from .proto.search import (
    All,
    And,
    Body,
    DateKey,
    EnvelopeField,
    HasFlag,
    Header,
    Larger,
    ModSeqKey,
    Not,
    ObjectIdKey,
    Or,
    SearchKey,
    SequenceKey,
    Smaller,
    Text,
    Within,
)
from .proto.sequence import SequenceSet
from .proto.structure import (
    Address,
    BodyStructure,
    Envelope,
    MultiPart,
    SinglePart,
    address_list_wire,
    address_wire,
    envelope_wire,
    multipart_wire,
    single_part_wire,
)

__all__ = [
    "CONTENT_BODY",
    "CONTENT_HEADER",
    "CONTENT_NONE",
    "MAX_MIME_DEPTH",
    "MAX_MIME_PARTS",
    "FieldLiteral",
    "FieldStrings",
    "HeaderFilter",
    "MessageView",
    "SearchTarget",
    "bodystructure",
    "cached_body_wire",
    "address_list",
    "cached_envelope_wire",
    "content_needed",
    "decode_header",
    "envelope",
    "evaluate",
    "field_filter",
    "field_key",
    "field_keys",
    "field_strings",
    "from_json",
    "header_end",
    "header_value",
    "list_keys",
    "matcher",
    "partial",
    "plain_header",
    "prefilter",
    "searchable",
    "section",
    "to_json",
]

#: Multiparts and MESSAGE/RFC822 parts nested deeper than this are not opened: they
#: are described (and numbered) as one APPLICATION/OCTET-STREAM part.  Dovecot's rule
#: and default (``mime.max_nested_parts``).
MAX_MIME_DEPTH = 100
#: MIME parts split out of one message; boundaries after the last one are ignored
#: (the octets stay in the enclosing multipart's body).  Dovecot's default.
MAX_MIME_PARTS = 10_000

Str = str | bytes

# --------------------------------------------------------------------------- headers

# RFC 5322 §2.2 / §3.6.8:  field = field-name ":" unstructured CRLF, where a line
# starting with WSP continues the field (folding, §2.2.3); §4.5.1 (obsolete) allows
# WSP before the colon.  A field runs to the first LF not followed by WSP; the
# value group keeps the folds (``_unfold`` removes them) but not that last LF.
_VALUE = rb"([^\n]*(?:\n[ \t][^\n]*)*)"


class _FieldScan:
    """A field regex run over the header lines ``data[start:hend]``.

    ``rest`` starts with the LF that ends the previous line: a literal prefix lets
    the regex engine jump from line end to line end (optionally checking the first
    octet with ``lookahead``) instead of trying every octet as ``^`` + re.M does,
    about ten times faster.  ``first`` reads the first line when no LF precedes it.
    """

    __slots__ = ("first", "rest")

    def __init__(self, pattern: bytes, flags: int = 0, lookahead: bytes = b"") -> None:
        self.first = re.compile(pattern, flags)
        self.rest = re.compile(rb"\n" + lookahead + pattern, flags)

    def finditer(self, data: bytes, start: int, hend: int) -> Iterator[re.Match[bytes]]:
        if hend <= start:
            return
        if start and data[start - 1] == 0x0A:
            yield from self.rest.finditer(data, start - 1, hend)
            return
        m = self.first.match(data, start, hend)
        if m is not None:
            yield m
        yield from self.rest.finditer(data, start, hend)

    def findall(self, data: bytes, start: int, hend: int) -> list[Any]:
        if hend <= start:
            return []
        if start and data[start - 1] == 0x0A:
            return self.rest.findall(data, start - 1, hend)
        m = self.first.match(data, start, hend)
        found = self.rest.findall(data, start, hend)
        if m is not None:
            found.insert(0, m.group(1) if self.first.groups == 1 else m.groups())
        return found


_ANY_FIELD = _FieldScan(rb"([^\s:]+)[ \t]*:" + _VALUE)
_ENVELOPE_FIELD = _FieldScan(
    rb"(date|subject|from|sender|reply-to|to|cc|bcc|in-reply-to|message-id)[ \t]*:" + _VALUE,
    re.I,
    rb"(?=[DdSsFfRrTtCcBbIiMm])",
)
_MIME_FIELD = _FieldScan(
    rb"content-(type|transfer-encoding|id|description|disposition|language|location)[ \t]*:" + _VALUE,
    re.I,
)


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _split(data: bytes, start: int, end: int) -> tuple[int, int]:
    """``(hend, body)`` for the entity ``data[start:end]``.

    RFC 5322 §2.1: the header is separated from the body by an empty line.
    ``data[start:hend]`` is the header with its line ends, ``data[hend:body]`` the
    empty line.  Without an empty line the whole entity is header (``hend == body ==
    end``), as Dovecot reads it.
    """
    if data.startswith(b"\r\n", start, end):
        return start, start + 2
    if data.startswith(b"\n", start, end):
        return start, start + 1
    m = _BLANK_LINE.search(data, start, end)  # faster than two bytes.find here
    if m is None:
        return end, end
    return m.start() + 1, m.end()


def header_end(data: bytes) -> int | None:
    """Where the body starts (after the header's empty line) when ``data``, the start
    of a message, holds the whole header; None when more octets are needed to tell.

    ``data[:header_end(data)]`` is the header block that ``section(HEADER)`` gives for
    the full message: a reader can stop there (at EOF without an empty line, the
    whole message is header).
    """
    hend, body = _split(data, 0, len(data))
    return body if body > hend else None


def _unfold(raw: bytes) -> bytes:
    """RFC 5322 §2.2.3: unfolding removes the CRLFs; the WSP after the colon goes too."""
    return raw.translate(None, b"\r\n").lstrip(b" \t")


def _text(raw: bytes) -> Str:
    """A header-derived string for the wire: ``str`` when 7-bit, else the raw bytes.

    NUL cannot be sent in an IMAP string (RFC 3501 §4.3.1); like Dovecot we send 0x80.
    """
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"\x80")
    return raw.decode("ascii") if raw.isascii() else raw


# ------------------------------------------------------------------ address lists

# RFC 5322 §3.4:
#   address-list = (address *("," address)) / obs-addr-list
#   address      = mailbox / group
#   mailbox      = name-addr / addr-spec
#   name-addr    = [display-name] angle-addr
#   angle-addr   = [CFWS] "<" addr-spec ">" [CFWS] / obs-angle-addr
#   group        = display-name ":" [group-list] ";" [CFWS]
#   addr-spec    = local-part "@" domain
#   obs-angle-addr = [CFWS] "<" obs-route addr-spec ">" [CFWS]
#   obs-route    = obs-domain-list ":"
_T_ATOM, _T_QUOTED, _T_LITERAL, _T_SPECIAL, _T_COMMENT = range(5)
_ADDRESS_TOKEN = re.compile(
    rb"([ \t\r\n]+)"  # 1 FWS
    rb'|"((?:[^"\\]|\\.)*)"?'  # 2 quoted-string (an unterminated one runs to the end)
    rb"|(\[(?:[^\[\]\\]|\\.)*\]?)"  # 3 domain-literal
    rb"|([<>@,;:.])"  # 4 specials that matter here
    rb'|([^ \t\r\n()<>@,;:."\[\]\\]+)'  # 5 atext (8-bit octets pass through)
    rb"|(.)",  # 6 stray ) ] \
    re.S,
)
_QUOTED_PAIR = re.compile(rb"\\(.)", re.S)
_GROUP_END = Address(None, None, None, None)

_Token = tuple[int, bytes, bool]  # kind, text (quotes removed), preceded by CFWS


def _comment(value: bytes, pos: int) -> tuple[bytes, int]:
    """comment = "(" *([FWS] ccontent) [FWS] ")"  (nested); returns (inner text, end)."""
    depth = 0
    out = bytearray()
    n = len(value)
    while pos < n:
        c = value[pos]
        if c == 0x5C and pos + 1 < n:  # quoted-pair
            out.append(value[pos + 1])
            pos += 2
            continue
        pos += 1
        if c == 0x28:
            depth += 1
            if depth == 1:
                continue
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                break
        out.append(c)
    return bytes(out), pos


def _address_tokens(value: bytes) -> list[_Token]:
    tokens: list[_Token] = []
    pos, n, spaced = 0, len(value), False
    while pos < n:
        if value[pos] == 0x28:
            text, pos = _comment(value, pos)
            tokens.append((_T_COMMENT, text, spaced))
            spaced = True
            continue
        m = _ADDRESS_TOKEN.match(value, pos)
        assert m is not None  # group 6 matches any octet
        pos = m.end()
        group = m.lastindex
        if group == 1:
            spaced = True
            continue
        if group == 2:
            text = m.group(2)
            if b"\\" in text:
                text = _QUOTED_PAIR.sub(rb"\1", text)
            tokens.append((_T_QUOTED, text, spaced))
        elif group == 3:
            tokens.append((_T_LITERAL, m.group(3), spaced))
        elif group == 4:
            tokens.append((_T_SPECIAL, m.group(4), spaced))
        else:
            tokens.append((_T_ATOM, m.group(), spaced))
        spaced = False
    return tokens


def _is(token: _Token, special: bytes) -> bool:
    return token[0] == _T_SPECIAL and token[1] == special


def _phrase(tokens: list[_Token], a: int, b: int) -> bytes | None:
    """display-name = phrase: words joined by one space, quotes removed, comments
    dropped, encoded-words left as they are (IMAP sends them raw)."""
    out: list[bytes] = []
    for kind, text, spaced in tokens[a:b]:
        if kind == _T_COMMENT:
            continue
        if out and spaced:
            out.append(b" ")
        out.append(text)
    return b"".join(out) or None


def _last_comment(tokens: list[_Token], a: int, b: int) -> bytes | None:
    # "user@host (Real Name)": Dovecot (and UW) use the comment as the name.
    for kind, text, _ in reversed(tokens[a:b]):
        if kind == _T_COMMENT:
            return b" ".join(text.split()) or None
    return None


def _addr_spec(tokens: list[_Token], a: int, b: int) -> tuple[bytes, bytes | None] | None:
    """addr-spec = local-part "@" domain; a local part alone has no host (NIL)."""
    local: list[bytes] = []
    domain: list[bytes] = []
    at = False
    for kind, text, _ in tokens[a:b]:
        if kind == _T_COMMENT:
            continue
        if not at and kind == _T_SPECIAL and text == b"@":
            at = True
            continue
        (domain if at else local).append(text)
    if not local and not at:
        return None
    return b"".join(local), (b"".join(domain) or None) if at else None


def _angle_addr(tokens: list[_Token], a: int, b: int) -> tuple[bytes | None, bytes, bytes | None]:
    """The inside of "<" ... ">": (adl, mailbox, host)."""
    adl: bytes | None = None
    if a < b and _is(tokens[a], b"@"):
        # obs-route = obs-domain-list ":"; obs-domain-list = *(CFWS / ",") "@" domain ...
        for c in range(a, b):
            if _is(tokens[c], b":"):
                adl = b"".join(t[1] for t in tokens[a:c] if t[0] != _T_COMMENT)
                a = c + 1
                break
    spec = _addr_spec(tokens, a, b)
    if spec is None:
        return adl, b"", b""  # "<>", the null path: not a group marker
    return adl, spec[0], spec[1]


def _opt_text(raw: bytes | None) -> Str | None:
    return None if raw is None else _text(raw)


# The common forms, ``local@domain`` and ``[phrase] <local@domain>`` in a list
# without comments, groups or routes, read without tokenising; anything else falls
# back to the full parser (and gives the same result for these forms).
_SIMPLE_ADDRESS = re.compile(
    rb'[ \t]*(?:([^\s"(),.:;<>@\[\]\\][^"(),:;<>@\[\]\\]*?)|"((?:[^"\\\r\n]|\\.)*)")?[ \t]*<'
    rb"([^\s\"(),:;<>@\[\]\\]+)@([^\s\"(),:;<>@\[\]\\]+)>"
    rb'|[ \t]*([^\s"(),:;<>@\[\]\\]+)@([^\s"(),:;<>@\[\]\\]+)'
)
_LIST_SEPARATOR = re.compile(rb"[ \t]*(?:,[ \t]*|\Z)")


def _simple_addresses(value: bytes) -> tuple[Address, ...] | None:
    out: list[Address] = []
    pos, n = 0, len(value)
    while True:
        m = _SIMPLE_ADDRESS.match(value, pos)
        if m is None:
            return None
        sep = _LIST_SEPARATOR.match(value, m.end())
        if sep is None:
            return None
        if m.group(5) is not None:
            out.append(Address(None, None, _text(m.group(5)), _text(m.group(6))))
        else:
            name = m.group(1)
            if name is not None:
                name = b" ".join(name.split())
            elif m.group(2) is not None:
                name = m.group(2)
                if b"\\" in name:
                    name = _QUOTED_PAIR.sub(rb"\1", name)
            out.append(Address(_text(name) if name else None, None, _text(m.group(3)), _text(m.group(4))))
        pos = sep.end()
        if pos >= n:
            return tuple(out)


def _addresses(value: bytes) -> tuple[Address, ...]:
    """An address-list header as ENVELOPE addresses (RFC 3501 §7.4.2): groups as a
    (NIL NIL name NIL) ... (NIL NIL NIL NIL) pair, route addresses with their adl."""
    simple = _simple_addresses(value)
    if simple is not None:
        return simple
    tokens = _address_tokens(value)
    out: list[Address] = []
    i, n = 0, len(tokens)
    in_group = False
    while i < n:
        tok = tokens[i]
        if _is(tok, b","):
            i += 1
            continue
        if _is(tok, b";"):
            if in_group:
                out.append(_GROUP_END)
                in_group = False
            i += 1
            continue
        j = i
        while j < n:
            kind, text = tokens[j][0], tokens[j][1]
            if kind == _T_SPECIAL and (text in (b"<", b",", b";") or (text == b":" and not in_group)):
                break
            j += 1
        stop = tokens[j][1] if j < n else b""
        if stop == b":":
            out.append(Address(None, None, _text(_phrase(tokens, i, j) or b""), None))
            in_group = True
            i = j + 1
            continue
        if stop == b"<":
            name = _phrase(tokens, i, j)
            k = j + 1
            while k < n and not _is(tokens[k], b">"):
                k += 1
            adl, mailbox, host = _angle_addr(tokens, j + 1, k)
            e = k + 1
            while e < n and not (_is(tokens[e], b",") or _is(tokens[e], b";")):
                e += 1
            if name is None:
                name = _last_comment(tokens, k, e)
            i = e
            out.append(Address(_opt_text(name), _opt_text(adl), _text(mailbox), _opt_text(host)))
            continue
        spec = _addr_spec(tokens, i, j)
        if spec is not None:
            name = _last_comment(tokens, i, j)
            out.append(Address(_opt_text(name), None, _text(spec[0]), _opt_text(spec[1])))
        i = j
    if in_group:
        out.append(_GROUP_END)
    return tuple(out)


# ------------------------------------------------------------------------ envelope


def _envelope_at(data: bytes, start: int, hend: int) -> Envelope:
    fields: dict[bytes, bytes] = {}
    for name, value in _ENVELOPE_FIELD.findall(data, start, hend):
        name = name.lower()
        if name not in fields:  # the first occurrence counts, as in Dovecot
            fields[name] = value

    def string(name: bytes) -> Str | None:
        raw = fields.get(name)
        return None if raw is None else _text(_unfold(raw))

    def addresses(name: bytes) -> tuple[Address, ...]:
        raw = fields.get(name)
        return () if raw is None else _addresses(_unfold(raw))

    from_ = addresses(b"from")
    # RFC 3501 §7.4.2: "If the Sender or Reply-To lines are absent in the [RFC-2822]
    # header, or are present but empty, the server sets the corresponding member of
    # the envelope to be the same value as the from member".
    return Envelope(
        date=string(b"date"),
        subject=string(b"subject"),
        from_=from_,
        sender=addresses(b"sender") or from_,
        reply_to=addresses(b"reply-to") or from_,
        to=addresses(b"to"),
        cc=addresses(b"cc"),
        bcc=addresses(b"bcc"),
        in_reply_to=string(b"in-reply-to"),
        message_id=string(b"message-id"),
    )


def envelope(data: bytes) -> Envelope:
    """The ENVELOPE of a message (RFC 3501 §7.4.2).

    Date, subject, in-reply-to and message-id are the unfolded header values as
    written (encoded-words are not decoded: IMAP sends them raw); address fields are
    parsed into ``Address`` values.  Strings with 8-bit octets are ``bytes``.  The
    first occurrence of a field counts.  Never raises.
    """
    hend, _ = _split(data, 0, len(data))
    return _envelope_at(data, 0, hend)


# -------------------------------------------------------------------- MIME fields

# RFC 2045 §5.1:
#   content   := "Content-Type" ":" type "/" subtype *(";" parameter)
#   parameter := attribute "=" value
#   value     := token / quoted-string
#   token     := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
#   tspecials := "(" / ")" / "<" / ">" / "@" / "," / ";" / ":" / "\" / <">
#                "/" / "[" / "]" / "?" / "="
_TOKEN = rb'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+'
_CONTENT_TYPE = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*/[ \t]*(" + _TOKEN + rb")")
_LEADING_TOKEN = re.compile(rb"[ \t]*(" + _TOKEN + rb")")
_PARAMETER = re.compile(
    rb"[ \t]*;[ \t]*(" + _TOKEN + rb')[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"?|([^;]*))', re.S
)
# RFC 2231 §3: attribute "*" section ["*"] -- continuations are joined below; an
# extended value (charset'language'%XX) stays encoded under its "NAME*" name.
_CONTINUATION = re.compile(rb"(.+?)\*([0-9]+)(\*?)\Z", re.S)

Params = list[tuple[bytes, bytes]]


def _strip_comments(raw: bytes) -> bytes:
    """Remove RFC 5322 comments, leaving quoted strings alone."""
    if b"(" not in raw:
        return raw
    out = bytearray()
    depth, quoted, i, n = 0, False, 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x5C and i + 1 < n and (quoted or depth):
            if not depth:
                out += raw[i : i + 2]
            i += 2
            continue
        if depth:
            depth += 1 if c == 0x28 else -1 if c == 0x29 else 0
            if not depth:
                out.append(0x20)
        elif c == 0x22:
            quoted = not quoted
            out.append(c)
        elif c == 0x28 and not quoted:
            depth = 1
        else:
            out.append(c)
        i += 1
    return bytes(out)


def _parameters(raw: bytes, pos: int) -> Params:
    params: Params = []
    n = len(raw)
    while pos < n:
        m = _PARAMETER.match(raw, pos)
        if m is None:
            nxt = raw.find(b";", pos + 1)  # skip what cannot be read up to the next ";"
            if nxt < 0:
                break
            pos = nxt
            continue
        quoted = m.group(2)
        if quoted is None:
            value = m.group(3).rstrip(b" \t")
        else:
            value = _QUOTED_PAIR.sub(rb"\1", quoted) if b"\\" in quoted else quoted
        params.append((m.group(1).upper(), value))
        pos = m.end()
    if any(b"*" in name for name, _ in params):
        params = _join_continuations(params)
    return params


def _join_continuations(params: Params) -> Params:
    sections: dict[bytes, list[tuple[int, bytes, bytes]]] = {}
    order: list[tuple[bytes, bytes | None]] = []
    for name, value in params:
        m = _CONTINUATION.match(name)
        if m is None:
            order.append((name, value))
            continue
        base = m.group(1)
        if base not in sections:
            sections[base] = []
            order.append((base, None))
        sections[base].append((int(m.group(2)), m.group(3), value))
    joined: Params = []
    for name, maybe in order:
        if maybe is not None:
            joined.append((name, maybe))
            continue
        parts = sorted(sections[name], key=lambda s: s[0])
        extended = parts[0][1] == b"*"
        joined.append((name + b"*" if extended else name, b"".join(p[2] for p in parts)))
    return joined


def _content_type(raw: bytes) -> tuple[bytes, bytes, Params] | None:
    value = _strip_comments(_unfold(raw))
    m = _CONTENT_TYPE.match(value)
    if m is None:
        return None  # RFC 2045 §5.2: an invalid Content-Type means text/plain
    return m.group(1).upper(), m.group(2).upper(), _parameters(value, m.end())


def _disposition(raw: bytes | None) -> tuple[Str, tuple[tuple[Str, Str], ...]] | None:
    # RFC 2183: disposition := "Content-Disposition" ":" disposition-type
    #                          *(";" disposition-parm)
    if raw is None:
        return None
    value = _strip_comments(_unfold(raw))
    m = _LEADING_TOKEN.match(value)
    if m is None:
        return None
    return _text(m.group(1).upper()), _param_list(_parameters(value, m.end()))


def _language(raw: bytes | None) -> tuple[Str, ...]:
    # RFC 3282: Content-Language = "Content-Language" ":" 1#Language-tag
    if raw is None:
        return ()
    tags = _strip_comments(_unfold(raw)).split(b",")
    return tuple(_text(t) for t in (tag.strip() for tag in tags) if t)


def _encoding(raw: bytes | None) -> Str:
    # RFC 2045 §6.1: mechanism := "7bit" / "8bit" / "binary" / "quoted-printable" /
    # "base64" / ietf-token / x-token; absent (or unreadable) means 7BIT.
    if raw is None:
        return "7BIT"
    m = _LEADING_TOKEN.match(_strip_comments(_unfold(raw)))
    if m is None:
        return "7BIT"
    return _text(m.group(1).upper())


def _plain_field(raw: bytes | None) -> Str | None:
    return None if raw is None else _text(_unfold(raw).strip())


def _param_list(params: Params) -> tuple[tuple[Str, Str], ...]:
    return tuple((_text(name), _text(value)) for name, value in params)


# ----------------------------------------------------------------------- MIME tree

_LEAF, _MULTIPART, _MESSAGE = 0, 1, 2
_DEFAULT_TEXT: tuple[bytes, bytes] = (b"TEXT", b"PLAIN")
_MESSAGE_RFC822: tuple[bytes, bytes] = (b"MESSAGE", b"RFC822")  # the default in a digest, RFC 2046 §5.1.5


class _Entity:
    """One MIME entity as offsets into the message: header ``[start, hend)``, the
    empty line, body ``[body, end)``; its children (multipart) or the message it
    encapsulates (MESSAGE/RFC822)."""

    __slots__ = (
        "start", "hend", "body", "end", "kind", "type", "subtype", "params", "fields", "children", "inner",
    )

    def __init__(self, start: int, hend: int, body: int, end: int, fields: dict[bytes, bytes]) -> None:
        self.start = start
        self.hend = hend
        self.body = body
        self.end = end
        self.fields = fields
        self.kind = _LEAF
        self.type = b""
        self.subtype = b""
        self.params: Params = []
        self.children: list[_Entity] = []
        self.inner: _Entity | None = None


class _Tree:
    __slots__ = ("data", "max_depth", "parts_left")

    def __init__(self, data: bytes, max_depth: int, max_parts: int) -> None:
        self.data = data
        self.max_depth = max_depth
        self.parts_left = max_parts


def _mime_fields(data: bytes, start: int, hend: int) -> dict[bytes, bytes]:
    fields: dict[bytes, bytes] = {}
    if hend > start:
        for name, value in _MIME_FIELD.findall(data, start, hend):
            fields.setdefault(name.lower(), value)
    return fields


def _build(tree: _Tree, start: int, end: int, depth: int, digest: bool) -> _Entity:
    data = tree.data
    tree.parts_left -= 1
    hend, body = _split(data, start, end)
    ent = _Entity(start, hend, body, end, _mime_fields(data, start, hend))
    raw_type = ent.fields.get(b"type")
    parsed = None if raw_type is None else _content_type(raw_type)
    if parsed is None:
        ent.type, ent.subtype = _MESSAGE_RFC822 if digest else _DEFAULT_TEXT
    else:
        ent.type, ent.subtype, ent.params = parsed
    nests = ent.type == b"MULTIPART" or (ent.type, ent.subtype) == _MESSAGE_RFC822
    if nests and depth >= tree.max_depth:
        ent.type, ent.subtype = b"APPLICATION", b"OCTET-STREAM"
    elif ent.type == b"MULTIPART":
        ent.kind = _MULTIPART
        boundary = next((v for k, v in ent.params if k == b"BOUNDARY"), b"")
        if boundary:
            in_digest = ent.subtype == b"DIGEST"
            for s, e in _body_parts(tree, body, end, b"--" + boundary):
                ent.children.append(_build(tree, s, e, depth + 1, in_digest))
    elif nests:
        ent.kind = _MESSAGE
        ent.inner = _build(tree, body, end, depth + 1, False)
    return ent


# Boundaries declared in a body: read only to settle a boundary line that another,
# longer boundary also starts (see ``_body_parts``).
_DECLARED_BOUNDARY = re.compile(rb'boundary[ \t]*=[ \t]*(?:"([^"\r\n]+)"|([^\s;"]+))', re.I)


def _body_parts(tree: _Tree, body: int, end: int, delimiter: bytes) -> Iterator[tuple[int, int]]:
    """The ``(start, end)`` of each body part of a multipart body.

    RFC 2046 §5.1.1:
      multipart-body := [preamble CRLF] dash-boundary transport-padding CRLF
                        body-part *encapsulation close-delimiter transport-padding
                        [CRLF epilogue]
      encapsulation  := delimiter transport-padding CRLF body-part
      delimiter      := CRLF dash-boundary
    The CRLF before a boundary line belongs to the delimiter, not to the part.  A
    boundary line only has to *start* with the delimiter (the RFC's note to
    implementors; Dovecot reads it so too), but when a boundary declared inside
    this body is longer and also starts the line, the line is that one's (Dovecot's
    "longest match").  A missing close-delimiter ends the last part at the end of
    the body.
    """
    data = tree.data
    pos = body
    part_start = -1
    longer: list[bytes] | None = None
    while tree.parts_left > 0:
        i = data.find(delimiter, pos, end)
        if i < 0:
            break
        if i != body and data[i - 1] != 0x0A:
            pos = i + 1
            continue
        after = i + len(delimiter)
        closing = data.startswith(b"--", after, end)
        if not closing and after < end and data[after] not in b" \t\r\n":
            if longer is None:
                longer = [
                    b"--" + (m.group(1) or m.group(2))
                    for m in _DECLARED_BOUNDARY.finditer(data, body, end)
                    if len(m.group(1) or m.group(2)) + 2 > len(delimiter)
                ]
            if any(data.startswith(other, i, end) for other in longer):
                pos = after
                continue
        if part_start >= 0:
            e = i
            if e > part_start and data[e - 1] == 0x0A:
                e -= 1
                if e > part_start and data[e - 1] == 0x0D:
                    e -= 1
            yield part_start, e
            part_start = -1
        if closing:
            return
        nl = data.find(b"\n", i, end)
        pos = part_start = end if nl < 0 else nl + 1
    if part_start >= 0 and tree.parts_left > 0:
        yield part_start, end


def _parse(data: bytes, max_depth: int, max_parts: int) -> _Entity:
    tree = _Tree(data, max_depth, max_parts)
    return _build(tree, 0, len(data), 0, False)


# ----------------------------------------------------------------- BODYSTRUCTURE

_US_ASCII: tuple[Str, Str] = ("CHARSET", "US-ASCII")
# What Dovecot writes for a multipart without parts (no boundary, or none found):
# the grammar needs at least one.
_EMPTY_PART = SinglePart("TEXT", "PLAIN", (_US_ASCII,), size=0, lines=0)


def _structure(data: bytes, ent: _Entity, binary: bool = False) -> BodyStructure:
    f = ent.fields
    disposition = _disposition(f.get(b"disposition"))
    language = _language(f.get(b"language"))
    location = _plain_field(f.get(b"location"))
    params = _param_list(ent.params)
    if ent.kind == _MULTIPART:
        parts = tuple(_structure(data, child, binary) for child in ent.children) or (_EMPTY_PART,)
        return MultiPart(parts, _text(ent.subtype), params, disposition, language, location)
    lines: int | None = None
    env: Envelope | None = None
    inner_body: BodyStructure | None = None
    body = _binary_body(data, ent) if binary else None
    size = ent.end - ent.body if body is None else len(body)
    if ent.kind == _MESSAGE:
        inner = ent.inner
        assert inner is not None
        env = _envelope_at(data, inner.start, inner.hend)
        inner_body = _structure(data, inner, binary)
        lines = data.count(b"\n", ent.body, ent.end) if body is None else body.count(b"\n")
    elif ent.type == b"TEXT":
        lines = data.count(b"\n", ent.body, ent.end) if body is None else body.count(b"\n")
        if not any(name == b"CHARSET" for name, _ in ent.params):
            params += (_US_ASCII,)  # RFC 2046 §4.1.2: the default charset
    encoding = _encoding(f.get(b"transfer-encoding"))
    if body is not None and ent.kind == _LEAF and encoding in ("BASE64", "QUOTED-PRINTABLE"):
        # RFC 5524 §4 (the examples): with BINARY, the structure names the domain of
        # the data sent, not the encoding that was undone.
        encoding = _domain(body)
    return SinglePart(
        type=_text(ent.type),
        subtype=_text(ent.subtype),
        params=params,
        id=_plain_field(f.get(b"id")),
        description=_plain_field(f.get(b"description")),
        encoding=encoding,
        size=size,
        lines=lines,
        envelope=env,
        body=inner_body,
        md5=None,
        disposition=disposition,
        language=language,
        location=location,
    )


#: RFC 2045 §2.7-2.8: 7bit and 8bit data have lines of at most 998 octets.
_LONG_LINE = re.compile(rb"[^\r\n]{999}")


def _domain(body: bytes) -> str:
    """The domain of decoded data (RFC 3516 §4.2, RFC 2045 §2.7-2.9): BINARY with a
    NUL or a line over 998 octets; else 8BIT with an octet over 127; else 7BIT."""
    if b"\0" in body or _LONG_LINE.search(body):
        return "BINARY"
    return "8BIT" if not body.isascii() else "7BIT"


def bodystructure(
    data: bytes, *, binary: bool = False, max_depth: int = MAX_MIME_DEPTH, max_parts: int = MAX_MIME_PARTS
) -> BodyStructure:
    """The BODYSTRUCTURE of a message (RFC 3501 §7.4.2); BODY is its
    ``encode(extensible=False)``.

    Types, subtypes, encodings, parameter and disposition names are upper case;
    parameter values as written (RFC 2231 continuations joined, extended values left
    encoded).  Sizes are octets of the body as stored, lines its LF count; with
    ``binary``, the size and LF count of each part's body as BINARY gives it, and a
    part whose base64 or quoted-printable was undone has the domain of the decoded
    data for its encoding (7BIT, 8BIT or BINARY: URLFETCH's BODYPARTSTRUCTURE with
    BINARY, RFC 5524 §4).  A part without Content-Type is TEXT/PLAIN ("CHARSET" "US-ASCII")
    (MESSAGE/RFC822 in a multipart/digest); an unreadable message degrades to
    TEXT/PLAIN.  Never raises.
    """
    try:
        return _structure(data, _parse(data, max_depth, max_parts), binary)
    except Exception:  # a safety net: FETCH must answer for any stored message
        _, body = _split(data, 0, len(data))
        return SinglePart("TEXT", "PLAIN", (_US_ASCII,), size=len(data) - body, lines=data.count(b"\n", body))


# ----------------------------------------------------------------------- sections


@functools.lru_cache(maxsize=256)
def _field_subset(names: tuple[str, ...], exclude: bool) -> _FieldScan:
    alternatives = b"|".join(re.escape(n.encode("ascii", "replace")) for n in names)
    field = rb"[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*)"  # the rest of the field, without its last LF
    if exclude:
        return _FieldScan(rb"((?!(?:" + alternatives + rb")[ \t]*:)[^\s:]+" + field, re.I)
    initials = sorted({n[:1].lower() for n in names} | {n[:1].upper() for n in names})
    lookahead = b""
    if "" not in initials:
        lookahead = b"(?=[" + b"".join(re.escape(c.encode("ascii", "replace")) for c in initials) + b"])"
    return _FieldScan(rb"((?:" + alternatives + rb")" + field, re.I, lookahead)


def _message_section(data: bytes, start: int, end: int, text: str | None, names: tuple[str, ...]) -> bytes:
    if text is None:
        return data[start:end]
    hend, body = _split(data, start, end)
    if text == "HEADER":
        return data[start:body]
    if text == "TEXT":
        return data[body:end]
    if text not in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        return b""
    # RFC 3501 §6.4.5: the subset "contains only those header fields with a
    # field-name that matches one of the names in the list" (or not, for .NOT): the
    # lines as they are, in their order, then the blank line.
    scan = _field_subset(names, text == "HEADER.FIELDS.NOT")
    blank = data[hend:body] or b"\r\n"
    if data[hend - 1 : hend] == b"\n":
        # Every field ends with the LF that the matches leave out.
        found = scan.findall(data, start, hend)
        return b"\n".join(found) + b"\n" + blank if found else blank
    # A header that ends without a line end (and without a body).
    out = b"".join(data[m.start(1) : m.end() + 1] for m in scan.finditer(data, start, hend))
    return out + (b"" if not out or out.endswith(b"\n") else b"\r\n") + blank


def _resolve(root: _Entity, parts: tuple[int, ...]) -> _Entity | None:
    """The entity named by a section-part (RFC 3501 §6.4.5).

    A multipart's parts are numbered from 1; a message that is not multipart has
    only a part 1, its body; numbers after a MESSAGE/RFC822 part name the parts of
    the message it encapsulates.
    """
    node = root
    is_message = True  # ``node`` is a message whose part numbers come next
    for n in parts:
        if not is_message and node.kind == _MESSAGE:
            assert node.inner is not None
            node, is_message = node.inner, True
        if node.kind == _MULTIPART:
            if not 1 <= n <= len(node.children):
                return None
            node = node.children[n - 1]
        elif not (is_message and n == 1):
            return None
        is_message = False
    return node


def section(
    data: bytes, sec: Section, *, max_depth: int = MAX_MIME_DEPTH, max_parts: int = MAX_MIME_PARTS
) -> bytes:
    """The octets of ``BODY[sec]`` (RFC 3501 §6.4.5), as stored; the partial
    ``<origin.count>`` is not applied (see ``partial``).

    "" is the message, HEADER its header with the blank line, TEXT its body,
    HEADER.FIELDS[.NOT] the matching lines in order followed by the blank line.
    ``n.MIME`` is the MIME header of part n; ``n.HEADER`` / ``n.TEXT`` /
    ``n.HEADER.FIELDS`` need a MESSAGE/RFC822 part n.  A part that does not exist is
    ``b""`` (what servers send).  Never raises.
    """
    if not sec.parts:
        return _message_section(data, 0, len(data), sec.text, sec.fields)
    try:
        node = _resolve(_parse(data, max_depth, max_parts), sec.parts)
    except Exception:  # a safety net, as in ``bodystructure``
        return b""
    if node is None:
        return b""
    if sec.text is None:
        return data[node.body : node.end]
    if sec.text == "MIME":
        return data[node.start : node.body]
    if node.kind != _MESSAGE or node.inner is None:
        return b""
    return _message_section(data, node.inner.start, node.inner.end, sec.text, sec.fields)


class UnknownCte(ValueError):
    """A part's content-transfer-encoding is not one we can undo (RFC 3516 §4.2:
    answer ``NO [UNKNOWN-CTE]``)."""


def binary_section(
    data: bytes, parts: tuple[int, ...], *, max_depth: int = MAX_MIME_DEPTH, max_parts: int = MAX_MIME_PARTS
) -> bytes:
    """The octets of ``BINARY[parts]`` (RFC 3516 §4.2): the body of the part with its
    content-transfer-encoding (base64, quoted-printable) undone.  ``[]`` is the whole
    message as stored; a multipart or MESSAGE/RFC822 part is its body with each part
    in it converted so (see ``_binary_body``: what Dovecot sends); a part that does
    not exist is ``b""``.  Raises ``UnknownCte`` for a leaf part in any other
    encoding than 7bit, 8bit, binary, base64 and quoted-printable."""
    if not parts:
        return data
    try:
        node = _resolve(_parse(data, max_depth, max_parts), parts)
    except Exception:  # a safety net, as in ``section``
        return b""
    if node is None:
        return b""
    if node.kind != _LEAF:
        return _binary_body(data, node)
    encoding = _encoding(node.fields.get(b"transfer-encoding"))
    if encoding not in ("7BIT", "8BIT", "BINARY", "BASE64", "QUOTED-PRINTABLE"):
        raise UnknownCte(str(encoding))
    return _binary_body(data, node)


def _binary_body(data: bytes, ent: _Entity) -> bytes:
    """The body of ``ent`` as BINARY gives it: a leaf's base64 or quoted-printable
    undone (any other encoding as stored); in a multipart or MESSAGE/RFC822 body,
    every part converted so, the Content-Transfer-Encoding field of each part whose
    encoding was undone saying ``binary`` (Dovecot's binary converter does the same;
    imaptest's urlauth-binary expects it); everything between the parts as stored."""
    if ent.kind == _LEAF:
        raw = data[ent.body:ent.end]
        encoding = _encoding(ent.fields.get(b"transfer-encoding"))
        if encoding == "BASE64":
            return _base64(raw)
        if encoding == "QUOTED-PRINTABLE":
            return _quoted_printable(raw)
        return raw
    children = ent.children if ent.kind == _MULTIPART else [ent.inner] if ent.inner is not None else []
    out: list[bytes] = []
    pos = ent.body
    for child in children:
        header = data[child.start:child.hend]
        if child.kind == _LEAF and _encoding(child.fields.get(b"transfer-encoding")) in ("BASE64",
                                                                                         "QUOTED-PRINTABLE"):
            nl = b"\r\n" if header.endswith(b"\r\n") else b"\n"
            header = _CTE_FIELD.sub(lambda _m: b"Content-Transfer-Encoding: binary" + nl, header, count=1)
        out += [data[pos:child.start], header, data[child.hend:child.body], _binary_body(data, child)]
        pos = child.end
    out.append(data[pos:ent.end])
    return b"".join(out)


# A Content-Transfer-Encoding field with its folded continuation lines.
_CTE_FIELD = re.compile(rb"^content-transfer-encoding[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*", re.I | re.M)


def without_nul(data: bytes, *, max_depth: int = MAX_MIME_DEPTH, max_parts: int = MAX_MIME_PARTS) -> bytes:
    """``data`` with the body of every leaf part that holds a NUL octet encoded in
    base64 (lines of 76 characters) and its Content-Transfer-Encoding field saying so;
    ``data`` itself when it holds no NUL.

    What APPEND stores of a message sent as a literal8 (RFC 3516 §4.4) with NUL in
    it: no string but a literal8 can carry NUL, and a literal8 is only a BINARY
    response (RFC 3516 §6: BODY sections are nstrings), so BODY[...] and RFC822 of
    the message are sent converted, as Dovecot sends them, and BINARY[part] gives the
    part's octets back.  (Parts beyond ``max_parts`` or ``max_depth`` stay as sent.)"""
    if b"\x00" not in data:
        return data
    try:
        root = _parse(data, max_depth, max_parts)
    except Exception:  # a safety net, as in ``section``: stored as sent
        return data
    leaves: list[_Entity] = []
    todo = [root]
    while todo:
        ent = todo.pop()
        if ent.kind == _MULTIPART:
            todo.extend(ent.children)
        elif ent.kind == _MESSAGE and ent.inner is not None:
            todo.append(ent.inner)
        elif b"\x00" in data[ent.body:ent.end]:
            leaves.append(ent)
    out: list[bytes] = []
    pos = 0
    for ent in sorted(leaves, key=lambda e: e.start):
        header = data[ent.start:ent.hend]
        nl = b"\r\n" if header.endswith(b"\r\n") or not header else b"\n"
        field = b"Content-Transfer-Encoding: base64" + nl
        header, n = _CTE_FIELD.subn(lambda _m: field, header, count=1)
        if not n:
            header += field
        encoded = base64.b64encode(data[ent.body:ent.end])
        lines = nl.join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
        out += [data[pos:ent.start], header, data[ent.hend:ent.body] or nl, lines]
        pos = ent.end
    out.append(data[pos:])
    return b"".join(out)


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _quoted_printable(raw: bytes) -> bytes:
    """RFC 2045 §6.7: trailing white space of a line is dropped (rule 3); "=" at the
    end of a line, white space after it allowed, is a soft line break (rule 5);
    "=XX" is an octet; any other "=" is kept as it is (§6.7 note 1).  Line ends
    come out as CRLF.  (``binascii.a2b_qp`` keeps the trailing white space and
    misses "= " soft breaks.)"""
    out: list[bytes] = []
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        line = line.removesuffix(b"\r").rstrip(b" \t")
        if line.endswith(b"="):
            out.append(line[:-1])
            continue
        out.append(line)
        if i < len(lines) - 1:
            out.append(b"\r\n")
    return _QP_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), b"".join(out))


def partial(data: bytes, origin: int, count: int) -> bytes:
    """``<origin.count>`` (RFC 3501 §6.4.5): ``count`` octets from ``origin``; an
    origin past the end gives the empty string."""
    return data[origin : origin + count]


# ------------------------------------------------------------------------- search

# RFC 2047 §2:  encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
# RFC 2231 §5:  charset may carry "*" language.
_ENCODED_WORD = re.compile(rb"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_MONTHS = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1
)}
# RFC 5322 §3.3: date = day month year (FWS around them; obs forms allow more CFWS)
_DATE = re.compile(rb"(?:^|[^0-9])([0-9]{1,2})[ \t-]+([A-Za-z]{3})[A-Za-z]*\.?[ \t-]+([0-9]{2,4})(?![0-9])")
_ASCII_CHARSETS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "646"})


def _base64(raw: bytes) -> bytes:
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:
        clean = _NOT_BASE64.sub(b"", raw)
        return binascii.a2b_base64(clean[: len(clean) // 4 * 4])


def _decode(raw: bytes, charset: str | None) -> str:
    """Octets in a declared charset; undeclared, US-ASCII or unknown charsets are
    read as UTF-8 (what 8-bit text in them usually is), replacing what is not."""
    name = (charset or "").strip().lower()
    if name and name not in _ASCII_CHARSETS:
        try:
            return raw.decode(codecs.lookup(name).name, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_header(raw: bytes) -> str:
    """An unfolded field value with its RFC 2047 encoded-words decoded; white space
    between two encoded-words is dropped (RFC 2047 §6.2)."""
    value = _unfold(raw)
    if b"=?" not in value:
        return _decode(value, None)
    out: list[str] = []
    pos = 0
    charset: str | None = None  # of the encoded-words collected in ``pending``
    pending = b""
    for m in _ENCODED_WORD.finditer(value):
        gap = value[pos : m.start()]
        if charset is None or gap.strip(b" \t"):
            if charset is not None:
                out.append(_decode(pending, charset))
                charset, pending = None, b""
            out.append(_decode(gap, None))
        word_charset = m.group(1).decode("ascii", "replace").lower()
        text = m.group(3)
        try:
            octets = _base64(text) if m.group(2) in b"Bb" else binascii.a2b_qp(text, header=True)
        except binascii.Error:
            octets = text
        if charset is not None and word_charset != charset:
            out.append(_decode(pending, charset))
            pending = b""
        charset = word_charset
        pending += octets  # adjacent words may split a multi-octet character
        pos = m.end()
    if charset is not None:
        out.append(_decode(pending, charset))
    out.append(_decode(value[pos:], None))
    return "".join(out)


def _parse_date(raw: bytes) -> date | None:
    value = _unfold(raw)
    m = _DATE.search(value)
    if m is not None:
        day, month, year = int(m.group(1)), _MONTHS.get(m.group(2).lower()), int(m.group(3))
        # RFC 5322 §4.3: a two-digit year below 50 is 20xx, other two- and
        # three-digit years are 1900 + year.
        if len(m.group(3)) == 2 and year < 50:
            year += 2000
        elif len(m.group(3)) < 4:
            year += 1900
    else:
        parsed = parsedate_tz(value.decode("latin-1"))
        if parsed is None:
            return None
        year, month, day = parsed[0], parsed[1], parsed[2]
    if month is None:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


#: A field name as ``_ANY_FIELD`` reads one: anything else names no field.
_FIELD_NAME = re.compile(rb"[^\s:]+\Z")


@functools.lru_cache(maxsize=256)
def _named_field(wanted: bytes) -> _FieldScan:
    """The values of the fields called ``wanted`` (lower case), as ``_ANY_FIELD``
    finds them, without reading the other fields."""
    return _FieldScan(re.escape(wanted) + rb"[ \t]*:" + _VALUE, re.I)


def address_list(raw: bytes | None) -> tuple[Address, ...]:
    """An address field's value (``header_value``) parsed as ENVELOPE parses it."""
    return () if raw is None else _addresses(_unfold(raw))


def decode_header(raw: bytes) -> str:
    """A field value unfolded, its RFC 2047 encoded-words decoded (SORT, THREAD)."""
    return _decode_header(raw)


def header_value(block: bytes, name: str) -> bytes | None:
    """The unfolded value of the first field called ``name`` (any case) in a
    header block, or None."""
    wanted = name.encode("ascii", "replace").lower()
    if not _FIELD_NAME.match(wanted):
        return None
    hend = _split(block, 0, len(block))[0]
    values = _named_field(wanted).findall(block, 0, hend)
    return _unfold(values[0]) if values else None


_LIST_FIELD = _FieldScan(rb"(date|from|subject)[ \t]*:" + _VALUE, re.I, rb"(?=[DdFfSs])")


def date_from_subject(block: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The unfolded values of the first Date, From and Subject fields of a header
    block (None for one it lacks), in one scan of it: what a message list sorts by."""
    hend = _split(block, 0, len(block))[0]
    found: dict[bytes, bytes] = {}
    for name, value in _LIST_FIELD.findall(block, 0, hend):
        found.setdefault(name.lower(), value)
    date, sender, subject = found.get(b"date"), found.get(b"from"), found.get(b"subject")
    return (None if date is None else _unfold(date), None if sender is None else _unfold(sender),
            None if subject is None else _unfold(subject))


#: Characters of each field a list keeps for sorting (``list_keys``).
LIST_KEY_FIELD = 300


def list_keys(block: bytes, internaldate: float) -> SortKeys:
    """The sort keys of a message list (WebUser) for a message whose header block, or
    start (the scan stops at the header's end), is ``block``: one scan of IMAP's field
    scanner for Date, From and Subject (``date_from_subject``) and its RFC 2047 decoder,
    instead of ``email``'s parser of the whole header (0.8 ms a message).  A message
    without a usable Date sorts by ``internaldate`` (RFC 5256 §2.2)."""
    date = internaldate
    raw_date, raw_from, raw_subject = date_from_subject(block)
    if raw_date:
        parsed = parsedate_tz(raw_date.decode("latin-1"))
        if parsed is not None:
            try:
                date = float(mktime_tz(parsed))
            except (OverflowError, ValueError):
                pass
    return SortKeys(date, _list_text(raw_from), _list_text(raw_subject))


def _list_text(raw: bytes | None) -> str:
    """A field's decoded text, white space collapsed, lower case, at most
    ``LIST_KEY_FIELD`` characters ("" when there is none)."""
    if raw is None:
        return ""
    return " ".join(_decode_header(raw).split())[:LIST_KEY_FIELD].lower()


class MessageView:
    """The content side of SEARCH for one message, computed lazily and cached.

    ``data`` is the message or a function returning it; it is only called when a
    question needs the octets.  ``header``, when given, is the message's header block
    (``data[:header_end(data)]``): questions on header fields are answered from it
    without ``data``.  Matching is case-insensitive (``collation.fold``) on decoded
    text: RFC 2047 words in header fields, quoted-printable and base64 bodies in
    their declared charset.  ``strings``, when given, answers HEADER and the
    envelope fields instead of the header: ``strings(name, addresses)`` must be
    ``field_strings(header, *field_key(name, addresses))`` (a cache of it).
    """

    __slots__ = ("_load", "_data", "_header", "_fields", "_header_text", "_body_text", "_strings")

    def __init__(self, data: bytes | Callable[[], bytes], header: bytes | None = None,
                 strings: Callable[[bytes, bool], FieldStrings] | None = None) -> None:
        self._strings = strings
        self._load: Callable[[], bytes] | None = None
        self._data: bytes | None = None
        if isinstance(data, bytes):
            self._data = data
        else:
            self._load = data
        self._header = header
        self._fields: list[tuple[bytes, bytes]] | None = None
        self._header_text: str | None = None
        self._body_text: str | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            assert self._load is not None
            self._data, self._load = self._load(), None
        return self._data

    def _head(self) -> tuple[bytes, int]:
        """The octets that hold the header and where its fields end."""
        data = self.data if self._header is None else self._header
        return data, _split(data, 0, len(data))[0]

    def _header_fields(self) -> list[tuple[bytes, bytes]]:
        if self._fields is None:
            data, hend = self._head()
            self._fields = [(name.lower(), value) for name, value in _ANY_FIELD.findall(data, 0, hend)]
        return self._fields

    def _values(self, name: str) -> list[bytes]:
        """The raw values of the fields called ``name`` (any case), in order."""
        wanted = name.encode("ascii", "replace").lower()
        if self._fields is not None:
            return [raw for field, raw in self._fields if field == wanted]
        if not _FIELD_NAME.match(wanted):
            return []
        data, hend = self._head()
        return _named_field(wanted).findall(data, 0, hend)

    def header_contains(self, name: str, value: str) -> bool:
        """RFC 3501 §6.4.4 HEADER: a field called ``name`` whose value contains
        ``value``; an empty ``value`` matches any message that has the field."""
        needle = fold(value)
        if self._strings is not None:
            values: Iterable[Any] = self._strings(field_key(name, False)[0], False)[0]
            return any(needle in v for v in values) if needle else bool(values)
        values = self._values(name)
        if not needle:
            return bool(values)
        return any(needle in _folded_value(raw) for raw in values)

    def envelope_contains(self, field: str, value: str) -> bool:
        """BCC CC FROM SUBJECT TO: the field's decoded text contains ``value``; for
        the address fields, or one of its addresses as parsed does (display name,
        ``mailbox@host``, ``name <mailbox@host>``), so that comments, quoting and
        white space in the field do not hide an address (as in Dovecot)."""
        if self._strings is not None:
            needle = fold(value)
            values, addresses = self._strings(*field_key(field, True))
            if not needle:
                return bool(values)
            return any(needle in v for v in values) or any(needle in a for a in addresses)
        if self.header_contains(field, value):
            return True
        name = field.lower()
        needle = fold(value)
        if name not in _ADDRESS_FIELDS or not needle:
            return False
        for raw in self._values(name):
            for address in _addresses(_unfold(raw)):
                if needle in _address_text(address):
                    return True
        return False

    def body_contains(self, value: str) -> bool:
        """RFC 3501 §6.4.4 BODY: the decoded text of the body parts contains
        ``value``; parts that are not text are searched as they are stored unless
        they are base64 or quoted-printable (binary)."""
        return fold(value) in self._body()

    def text_contains(self, value: str) -> bool:
        """RFC 3501 §6.4.4 TEXT: the header or the body contains ``value``."""
        needle = fold(value)
        return needle in self._headers() or needle in self._body()

    def sent_date(self) -> date | None:
        """The date of the Date: field, disregarding time and time zone (RFC 3501
        §6.4.4 SENTBEFORE/SENTON/SENTSINCE); ``None`` without a readable one."""
        values = self._values("date")
        return _parse_date(values[0]) if values else None

    def _headers(self) -> str:
        if self._header_text is None:
            self._header_text = fold("\n".join(
                f"{name.decode('latin-1')}: {_decode_header(raw)}" for name, raw in self._header_fields()
            ))
        return self._header_text

    def _body(self) -> str:
        if self._body_text is None:
            data = self.data
            pieces: list[str] = []
            try:
                root = _parse(data, MAX_MIME_DEPTH, MAX_MIME_PARTS)
                _body_texts(data, root, pieces)
            except Exception:  # search the octets rather than fail the SEARCH
                _, body = _split(data, 0, len(data))
                pieces = [_decode(data[body:], None)]
            self._body_text = fold("\n".join(pieces))
        return self._body_text


def _body_texts(data: bytes, ent: _Entity, out: list[str]) -> None:
    if ent.kind == _MULTIPART:
        for child in ent.children:
            _body_texts(data, child, out)
        return
    if ent.kind == _MESSAGE:
        inner = ent.inner
        assert inner is not None
        out.extend(_decode_header(value) for _, value in _ANY_FIELD.findall(data, inner.start, inner.hend))
        _body_texts(data, inner, out)
        return
    raw = data[ent.body : ent.end]
    encoding = _encoding(ent.fields.get(b"transfer-encoding"))
    if encoding == "QUOTED-PRINTABLE":
        decoded, coded = binascii.a2b_qp(raw), True
    elif encoding == "BASE64":
        decoded, coded = _base64(raw), True
    else:
        decoded, coded = raw, False
    if ent.type == b"TEXT":
        charset = next((v for k, v in ent.params if k == b"CHARSET"), b"")
        out.append(_decode(decoded, charset.decode("ascii", "replace")))
    elif not coded:
        out.append(_decode(raw, None))


#: SEARCH keys whose field is an address list (RFC 3501 §6.4.4).
_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc"})
#: What separates the words of an address as written: white space and specials.
_ADDRESS_SEPARATORS = re.compile(r'[\s()<>@,;:\\".\[\]]+')


#: What HEADER and the envelope keys compare of one message's fields of one name
#: (``field_strings``): the values, then the addresses as parsed.
FieldStrings = tuple[tuple[str, ...], tuple[str, ...]]


def _folded_value(raw: bytes) -> str:
    """A field value as HEADER compares it (RFC 3501 §6.4.4): unfolded, RFC 2047
    words decoded, case-folded (``collation.fold``)."""
    if raw.isascii() and b"=?" not in raw:
        # 7-bit text without encoded-words decodes to itself, and its fold is its
        # ASCII lower case.
        return _unfold(raw).lower().decode("ascii")
    return fold(_decode_header(raw))


def field_key(name: str, envelope: bool) -> tuple[bytes, bool]:
    """What ``field_strings`` is asked for a key on the field ``name``: the name as
    the header is searched for it, and whether its addresses count too (the envelope
    keys FROM, TO, CC and BCC)."""
    return name.encode("ascii", "replace").lower(), envelope and name.lower() in _ADDRESS_FIELDS


def field_strings(header: bytes, wanted: bytes, addresses: bool) -> FieldStrings:
    """The strings HEADER (``addresses`` False) or an envelope key (``field_key``)
    looks for its folded needle in, in the fields called ``wanted`` of this header
    block: each value as ``_folded_value`` gives it, then, with ``addresses``, each
    address as parsed (``_address_text``).  A needle is found when it is in one of
    them; an empty one when there is a value.  ``MessageView`` answers from these
    when given them, so they must say what it says from the header."""
    raws = MessageView(header, header=header)._values(wanted.decode("latin-1"))
    values = tuple(_folded_value(raw) for raw in raws)
    if not addresses:
        return values, ()
    return values, tuple(_address_text(a) for raw in raws for a in _addresses(_unfold(raw)))


def _address_text(address: Address) -> str:
    """An address as SEARCH compares it: its display name (encoded-words decoded),
    ``mailbox@host`` and ``name <mailbox@host>``, casefolded, one per line."""
    def text(value: Str | None) -> str:
        if value is None:
            return ""
        return _decode_header(value.encode("utf-8") if isinstance(value, str) else value)

    name, mailbox, host = text(address.name), text(address.mailbox), text(address.host)
    spec = f"{mailbox}@{host}" if host else mailbox
    return fold(f"{name}\n{spec}\n{name} <{spec}>")


class SearchTarget(Protocol):
    """What SEARCH knows about a message without reading it; the server implements
    it.  ``flags`` includes ``\\Recent`` when the message is recent; ``internaldate``
    is seconds since the epoch; ``view()`` is only called when a key needs the
    content, at most once per ``evaluate``."""

    @property
    def seq(self) -> int: ...

    @property
    def uid(self) -> int: ...

    @property
    def flags(self) -> tuple[str, ...]: ...

    @property
    def size(self) -> int: ...

    @property
    def internaldate(self) -> float: ...

    @property
    def savedate(self) -> float | None:
        """RFC 8514: when it was stored in this mailbox; None when unknown."""
        ...

    @property
    def modseq(self) -> int: ...

    @property
    def emailid(self) -> str:
        """RFC 8474 EMAILID (only read by an EMAILID search key)."""
        ...

    def view(self) -> MessageView: ...


class _Search:
    """A target whose view is read at most once (``evaluate``'s promise)."""

    __slots__ = ("seq", "uid", "flags", "size", "internaldate", "savedate", "modseq", "_msg", "_view")

    @property
    def emailid(self) -> str:
        return self._msg.emailid

    def __init__(self, msg: SearchTarget) -> None:
        self.seq = msg.seq
        self.uid = msg.uid
        self.flags = msg.flags
        self.size = msg.size
        self.internaldate = msg.internaldate
        self.savedate = msg.savedate
        self.modseq = msg.modseq
        self._msg = msg
        self._view: MessageView | None = None

    def view(self) -> MessageView:
        if self._view is None:
            self._view = self._msg.view()
        return self._view


def evaluate(key: SearchKey, msg: SearchTarget, largest_seq: int, largest_uid: int) -> bool:
    """Whether ``msg`` matches the search key (RFC 3501 §6.4.4, RFC 7162 §3.1.5).

    ``largest_seq`` / ``largest_uid`` are what "*" stands for in a sequence set (the
    number of messages, the highest UID).  Numbers that name no message simply match
    nothing here; a server that wants a BAD for them checks the set first.  Dates on
    the internal date are local dates (as Dovecot compares them); the sent date is
    the Date: field's own date, and a message without one matches no SENT* key.
    """
    return _matcher(key, largest_seq, largest_uid)(_Search(msg))


def matcher(key: SearchKey, largest_seq: int, largest_uid: int) -> Callable[[SearchTarget], bool]:
    """``evaluate`` for many messages: the key is read once, into a function of the
    target.  It calls ``view()`` once for each content key it evaluates: a target
    should keep its view (``evaluate`` sees to it)."""
    return _matcher(key, largest_seq, largest_uid)


Predicate = Callable[[Any], bool]


@functools.lru_cache(maxsize=64)
def _matcher(key: SearchKey, largest_seq: int, largest_uid: int) -> Predicate:
    return _COMPILERS[type(key)](key, largest_seq, largest_uid)


def _compile(key: SearchKey, largest_seq: int, largest_uid: int) -> Predicate:
    return _COMPILERS[type(key)](key, largest_seq, largest_uid)


def _all(key: All, ls: int, lu: int) -> Predicate:
    return lambda m: True


def _has_flag(key: HasFlag, ls: int, lu: int) -> Predicate:
    # Flags and keywords are matched without regard to case.
    wanted, present = key.flag.lower(), key.present

    def has_flag(m: Any) -> bool:
        for f in m.flags:
            if f.lower() == wanted:
                return present
        return not present

    return has_flag


def _envelope_field(key: EnvelopeField, ls: int, lu: int) -> Predicate:
    field, value = key.field, key.value
    return lambda m: bool(m.view().envelope_contains(field, value))


def _header(key: Header, ls: int, lu: int) -> Predicate:
    name, value = key.name, key.value
    return lambda m: bool(m.view().header_contains(name, value))


def _body(key: Body, ls: int, lu: int) -> Predicate:
    value = key.value
    return lambda m: bool(m.view().body_contains(value))


def _text_key(key: Text, ls: int, lu: int) -> Predicate:
    value = key.value
    return lambda m: bool(m.view().text_contains(value))


def _date(key: DateKey, ls: int, lu: int) -> Predicate:
    op, when, sent, saved = key.op, key.date, key.sent, key.saved

    def on_date(m: Any) -> bool:
        if sent:
            day = m.view().sent_date()
        elif saved:  # RFC 8514 §4.2; a message with no save date has its internal date
            day = date.fromtimestamp(m.internaldate if m.savedate is None else m.savedate)
        else:
            day = date.fromtimestamp(m.internaldate)
        if day is None:
            return False
        if op == "BEFORE":
            return bool(day < when)
        if op == "ON":
            return bool(day == when)
        return bool(day >= when)

    return on_date


def _within(key: Within, ls: int, lu: int) -> Predicate:
    # RFC 5032 §3: against the time of the search, so read at each test (the
    # compiled key is cached across searches).
    seconds, older = key.seconds, key.op == "OLDER"

    def within(m: Any) -> bool:
        age = time.time() - m.internaldate
        return age > seconds if older else age <= seconds

    return within


def _larger(key: Larger, ls: int, lu: int) -> Predicate:
    size = key.size
    return lambda m: bool(m.size > size)


def _smaller(key: Smaller, ls: int, lu: int) -> Predicate:
    size = key.size
    return lambda m: bool(m.size < size)


@functools.lru_cache(maxsize=64)
def _spans(sequence: SequenceSet, largest: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # ``uid=True`` resolution clips to 1..largest and never raises.
    ranges = sequence.resolve(largest, uid=True)
    return tuple(r.start for r in ranges), tuple(r.stop for r in ranges)


def _sequence(key: SequenceKey, largest_seq: int, largest_uid: int) -> Predicate:
    uid = key.uid
    starts, stops = _spans(key.sequence, largest_uid if uid else largest_seq)

    def in_set(m: Any) -> bool:
        number = m.uid if uid else m.seq
        i = bisect_right(starts, number) - 1
        return i >= 0 and number < stops[i]

    return in_set


def _modseq(key: ModSeqKey, ls: int, lu: int) -> Predicate:
    # Per-flag mod-sequences are not kept: the message's own one stands for them
    # (RFC 7162 §3.1.5 allows it).
    modseq = key.modseq
    return lambda m: bool(m.modseq >= modseq)


def _object_id(key: ObjectIdKey, ls: int, lu: int) -> Predicate:
    # THREADID: no message has one (RFC 8474 §5.2: THREADID NIL).
    if key.kind == "THREADID":
        return lambda m: False
    value = key.value
    return lambda m: bool(m.emailid == value)


def _not(key: Not, ls: int, lu: int) -> Predicate:
    inner = _compile(key.key, ls, lu)
    return lambda m: not inner(m)


def _or(key: Or, ls: int, lu: int) -> Predicate:
    left, right = _compile(key.left, ls, lu), _compile(key.right, ls, lu)
    return lambda m: bool(left(m) or right(m))


def _and(key: And, ls: int, lu: int) -> Predicate:
    parts = tuple(_compile(k, ls, lu) for k in _cheap_first(key.keys))

    def every(m: Any) -> bool:
        for p in parts:
            if not p(m):
                return False
        return True

    return every


#: What a search key reads of a message: nothing but the index, the header, or all.
CONTENT_NONE, CONTENT_HEADER, CONTENT_BODY = 0, 1, 2


def content_needed(key: SearchKey) -> int:
    """``CONTENT_NONE``, ``CONTENT_HEADER`` (header fields only: HEADER, FROM,
    SUBJECT, SENT*, ...) or ``CONTENT_BODY`` (BODY, TEXT)."""
    if isinstance(key, (Body, Text)):
        return CONTENT_BODY
    if isinstance(key, (EnvelopeField, Header)):
        return CONTENT_HEADER
    if isinstance(key, DateKey):
        return CONTENT_HEADER if key.sent else CONTENT_NONE
    if isinstance(key, Not):
        return content_needed(key.key)
    if isinstance(key, Or):
        return max(content_needed(key.left), content_needed(key.right))
    if isinstance(key, And):
        return max((content_needed(k) for k in key.keys), default=CONTENT_NONE)
    return CONTENT_NONE


@functools.lru_cache(maxsize=256)
def _cheap_first(keys: tuple[SearchKey, ...]) -> tuple[SearchKey, ...]:
    """The keys of an AND with those that need the message octets last."""
    return tuple(sorted(keys, key=content_needed))


_COMPILERS: dict[type, Callable[[Any, int, int], Predicate]] = {
    All: _all,
    HasFlag: _has_flag,
    EnvelopeField: _envelope_field,
    Header: _header,
    Body: _body,
    Text: _text_key,
    DateKey: _date,
    Larger: _larger,
    Smaller: _smaller,
    SequenceKey: _sequence,
    ModSeqKey: _modseq,
    ObjectIdKey: _object_id,
    Within: _within,
    Not: _not,
    Or: _or,
    And: _and,
}


# ------------------------------------------------------------------ search prefilter

#: (needle, plain_only): the needle is in ``searchable(block)`` of every message that
#: can match; when ``plain_only``, only of those whose header is plain.
FilterLiteral = tuple[bytes, bool]


def plain_header(block: bytes) -> bool:
    """Whether the header's text is its octets: 7-bit, without NUL, encoded-word or
    quoted-pair.  Every word of a plain header's decoded, unfolded, casefolded field
    values, and of its addresses as parsed, is then in ``searchable(block)``."""
    return block.isascii() and b"=?" not in block and b"\x00" not in block and b"\\" not in block


def searchable(block: bytes) -> bytes:
    """The header block as ``HeaderFilter`` reads it: lower case, without CR (which
    unfolding removes, even inside a line)."""
    return block.lower().replace(b"\r", b"")


class HeaderFilter:
    """A cheap necessary condition of a search key on a message's header block.

    ``clauses``: every clause has a literal that holds (see ``FilterLiteral``) for every
    message that can match.  A message for which ``__call__(searchable(block),
    plain_header(block))`` is False does not match the key; one for which it is
    True still has to be evaluated.
    """

    __slots__ = ("clauses",)

    def __init__(self, clauses: tuple[tuple[FilterLiteral, ...], ...]) -> None:
        self.clauses = clauses

    def __call__(self, lowered: bytes, plain: bool) -> bool:
        for clause in self.clauses:
            for needle, plain_only in clause:
                if (plain_only and not plain) or needle in lowered:
                    break
            else:
                return False
        return True


def _clauses(key: SearchKey) -> list[tuple[FilterLiteral, ...]]:
    if isinstance(key, (Header, EnvelopeField)):
        name = key.name if isinstance(key, Header) else key.field
        wanted = name.encode("ascii", "replace").lower()
        if not _FIELD_NAME.match(wanted):
            return [()]  # names no field: nothing matches
        out: list[tuple[FilterLiteral, ...]] = [((wanted, False),)]
        needle = fold(key.value)
        if needle.isascii():
            # The decoded value of a plain header is its octets without CR and LF,
            # and an LF in a field is followed by white space: a needle's words
            # (between white space) are in the header's octets without CR.
            words = needle.split()
            if isinstance(key, EnvelopeField) and name.lower() in _ADDRESS_FIELDS:
                # An address also matches as parsed (``envelope_contains``): only
                # the pieces between specials are sure to be in the octets.
                words = [w for w in _ADDRESS_SEPARATORS.split(needle) if w]
            if words:
                out.insert(0, ((max(words, key=len).encode("ascii"), True),))
        return out
    if isinstance(key, And):
        return [c for k in key.keys for c in _clauses(k)]
    if isinstance(key, Or):
        left, right = _clauses(key.left), _clauses(key.right)
        if left and right:
            return [left[0] + right[0]]
    return []


#: (field name, with addresses, folded needle), as ``field_key``: the needle is in
#: one of ``field_strings`` of every message that can match (any string when the
#: needle is empty).
FieldLiteral = tuple[bytes, bool, str]


def _field_literal(key: Header | EnvelopeField) -> FieldLiteral:
    name = key.name if isinstance(key, Header) else key.field
    wanted, addresses = field_key(name, isinstance(key, EnvelopeField))
    return wanted, addresses, fold(key.value)


def _disjunction(key: SearchKey) -> tuple[FieldLiteral, ...] | None:
    """The literals of a key that is an OR of field keys (a field key is an OR of one)."""
    if isinstance(key, (Header, EnvelopeField)):
        return (_field_literal(key),)
    if isinstance(key, Or):
        left, right = _disjunction(key.left), _disjunction(key.right)
        if left is not None and right is not None:
            return left + right
    return None


def field_filter(key: SearchKey) -> tuple[list[tuple[FieldLiteral, ...]], bool]:
    """Clauses on ``field_strings`` that every match of ``key`` passes (each one
    literal of a clause at least), and whether passing them all is matching (the
    key is an AND of ORs of HEADER and envelope keys: ``exact``)."""
    one = _disjunction(key)
    if one is not None:
        return [one], True
    if isinstance(key, And):
        parts = [field_filter(k) for k in key.keys]
        return [c for clauses, _ in parts for c in clauses], all(exact for _, exact in parts)
    if isinstance(key, Or):
        (left, _), (right, _) = field_filter(key.left), field_filter(key.right)
        if left and right:
            return [left[0] + right[0]], False
    return [], False


def field_keys(key: SearchKey) -> set[tuple[bytes, bool]] | None:
    """The ``field_key``s of the header fields ``key`` reads, when these are all of
    the message it reads (HEADER and the envelope keys); None when it reads more
    (BODY, TEXT, SENT*)."""
    if isinstance(key, (Header, EnvelopeField)):
        return {_field_literal(key)[:2]}
    if isinstance(key, (Body, Text)) or (isinstance(key, DateKey) and key.sent):
        return None
    subkeys: tuple[SearchKey, ...] = ()
    if isinstance(key, Not):
        subkeys = (key.key,)
    elif isinstance(key, Or):
        subkeys = (key.left, key.right)
    elif isinstance(key, And):
        subkeys = key.keys
    out: set[tuple[bytes, bool]] = set()
    for k in subkeys:
        got = field_keys(k)
        if got is None:
            return None
        out |= got
    return out


def prefilter(key: SearchKey) -> HeaderFilter | None:
    """A ``HeaderFilter`` for ``key``, or None when its header says nothing."""
    clauses = _clauses(key)
    if not clauses:
        return None
    clauses.sort(key=lambda c: -max((len(n) for n, _ in c), default=1 << 30))
    return HeaderFilter(tuple(clauses))


# --------------------------------------------------------------------------- JSON
#
# The cached form: strings as JSON strings, 8-bit strings as {"b64": ...}, NIL as
# null; an address as [name, adl, mailbox, host]; an envelope as its ten fields in
# wire order; a body part as ["1", type, subtype, params, id, description, encoding,
# size, lines, envelope, body, md5, disposition, language, location], a multipart
# as ["m", parts, subtype, params, disposition, language, location].

_JSON_VERSION = 1


def _s(value: Str | None) -> Any:
    if value is None or isinstance(value, str):
        return value
    return {"b64": base64.b64encode(value).decode("ascii")}


def _uns(value: Any) -> Str | None:
    if value is None or isinstance(value, str):
        return value
    return base64.b64decode(value["b64"])


def _unstr(value: Any) -> Str:
    out = _uns(value)
    if out is None:
        raise ValueError("a string was expected, not null")
    return out


def _addresses_json(addresses: tuple[Address, ...]) -> Any:
    return [[_s(a.name), _s(a.adl), _s(a.mailbox), _s(a.host)] for a in addresses]


def _envelope_json(env: Envelope) -> Any:
    return [
        _s(env.date),
        _s(env.subject),
        *(_addresses_json(a) for a in (env.from_, env.sender, env.reply_to, env.to, env.cc, env.bcc)),
        _s(env.in_reply_to),
        _s(env.message_id),
    ]


def _envelope_from_json(obj: Any) -> Envelope:
    def addresses(items: Any) -> tuple[Address, ...]:
        return tuple(Address(_uns(a[0]), _uns(a[1]), _uns(a[2]), _uns(a[3])) for a in items)

    return Envelope(
        date=_uns(obj[0]),
        subject=_uns(obj[1]),
        from_=addresses(obj[2]),
        sender=addresses(obj[3]),
        reply_to=addresses(obj[4]),
        to=addresses(obj[5]),
        cc=addresses(obj[6]),
        bcc=addresses(obj[7]),
        in_reply_to=_uns(obj[8]),
        message_id=_uns(obj[9]),
    )


def _params_json(params: tuple[tuple[Str, Str], ...]) -> Any:
    return [[_s(k), _s(v)] for k, v in params]


def _params_from_json(obj: Any) -> tuple[tuple[Str, Str], ...]:
    return tuple((_unstr(k), _unstr(v)) for k, v in obj)


def _disposition_json(value: tuple[Str, tuple[tuple[Str, Str], ...]] | None) -> Any:
    return None if value is None else [_s(value[0]), _params_json(value[1])]


def _disposition_from_json(obj: Any) -> tuple[Str, tuple[tuple[Str, Str], ...]] | None:
    return None if obj is None else (_unstr(obj[0]), _params_from_json(obj[1]))


def _body_json(body: BodyStructure) -> Any:
    if isinstance(body, MultiPart):
        return [
            "m",
            [_body_json(p) for p in body.parts],
            _s(body.subtype),
            _params_json(body.params),
            _disposition_json(body.disposition),
            [_s(x) for x in body.language],
            _s(body.location),
        ]
    return [
        "1",
        _s(body.type),
        _s(body.subtype),
        _params_json(body.params),
        _s(body.id),
        _s(body.description),
        _s(body.encoding),
        body.size,
        body.lines,
        None if body.envelope is None else _envelope_json(body.envelope),
        None if body.body is None else _body_json(body.body),
        _s(body.md5),
        _disposition_json(body.disposition),
        [_s(x) for x in body.language],
        _s(body.location),
    ]


def _body_from_json(obj: Any) -> BodyStructure:
    if obj[0] == "m":
        return MultiPart(
            tuple(_body_from_json(p) for p in obj[1]),
            _unstr(obj[2]),
            _params_from_json(obj[3]),
            _disposition_from_json(obj[4]),
            tuple(_unstr(x) for x in obj[5]),
            _uns(obj[6]),
        )
    if obj[0] != "1":
        raise ValueError(f"not a cached body structure: {obj[0]!r}")
    return SinglePart(
        type=_unstr(obj[1]),
        subtype=_unstr(obj[2]),
        params=_params_from_json(obj[3]),
        id=_uns(obj[4]),
        description=_uns(obj[5]),
        encoding=_unstr(obj[6]),
        size=int(obj[7]),
        lines=None if obj[8] is None else int(obj[8]),
        envelope=None if obj[9] is None else _envelope_from_json(obj[9]),
        body=None if obj[10] is None else _body_from_json(obj[10]),
        md5=_uns(obj[11]),
        disposition=_disposition_from_json(obj[12]),
        language=tuple(_unstr(x) for x in obj[13]),
        location=_uns(obj[14]),
    )


def to_json(env: Envelope, body: BodyStructure) -> dict[str, Any]:
    """ENVELOPE and BODYSTRUCTURE as a JSON-serialisable dict, for the index."""
    return {"v": _JSON_VERSION, "envelope": _envelope_json(env), "body": _body_json(body)}


def from_json(obj: dict[str, Any]) -> tuple[Envelope, BodyStructure]:
    """The inverse of ``to_json``; ``ValueError`` for anything else (recompute)."""
    if not isinstance(obj, dict) or obj.get("v") != _JSON_VERSION:
        raise ValueError("not a cached message structure of this version")
    try:
        return _envelope_from_json(obj["envelope"]), _body_from_json(obj["body"])
    except (KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed cached message structure: {exc}") from None


# The wire forms straight from the cached form: what ``from_json`` and ``encode``
# give, without building the values (FETCH ENVELOPE / BODY / BODYSTRUCTURE).


def _addresses_wire(items: Any) -> bytes:
    if not items:
        return b"NIL"
    out = []
    for a in items:
        name, adl, mailbox, host = a
        if type(name) is dict or type(adl) is dict or type(mailbox) is dict or type(host) is dict:
            name, adl, mailbox, host = _uns(name), _uns(adl), _uns(mailbox), _uns(host)
        out.append(address_wire(name, adl, mailbox, host))
    return address_list_wire(out)


def _envelope_wire(obj: Any) -> bytes:
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = obj
    from_wire = _addresses_wire(from_)
    return envelope_wire(
        _uns(date), _uns(subject), from_wire,
        from_wire if sender == from_ else _addresses_wire(sender),
        from_wire if reply_to == from_ else _addresses_wire(reply_to),
        _addresses_wire(to), _addresses_wire(cc), _addresses_wire(bcc), _uns(in_reply_to), _uns(message_id),
    )


def _body_wire(obj: Any, extensible: bool) -> bytes:
    if obj[0] == "m":
        return multipart_wire([_body_wire(p, extensible) for p in obj[1]], _unstr(obj[2]),
                              _params_from_json(obj[3]), _disposition_from_json(obj[4]),
                              tuple(_unstr(x) for x in obj[5]), _uns(obj[6]), extensible)
    if obj[0] != "1":
        raise ValueError(f"not a cached body structure: {obj[0]!r}")
    return single_part_wire(
        _unstr(obj[1]), _unstr(obj[2]), _params_from_json(obj[3]), _uns(obj[4]), _uns(obj[5]), _unstr(obj[6]),
        int(obj[7]), None if obj[8] is None else int(obj[8]),
        None if obj[9] is None else _envelope_wire(obj[9]),
        None if obj[10] is None else _body_wire(obj[10], extensible),
        _uns(obj[11]), _disposition_from_json(obj[12]), tuple(_unstr(x) for x in obj[13]), _uns(obj[14]),
        extensible,
    )


def _cached(obj: dict[str, Any], key: str) -> Any:
    if not isinstance(obj, dict) or obj.get("v") != _JSON_VERSION:
        raise ValueError("not a cached message structure of this version")
    return obj[key]


def cached_envelope_wire(obj: dict[str, Any]) -> bytes:
    """``from_json(obj)[0].encode()`` (the ENVELOPE value), faster; ``ValueError``
    for what is not ``to_json``'s."""
    try:
        return _envelope_wire(_cached(obj, "envelope"))
    except (KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed cached message structure: {exc}") from None


def cached_body_wire(obj: dict[str, Any], extensible: bool = True) -> bytes:
    """``from_json(obj)[1].encode(extensible)`` (BODYSTRUCTURE, or BODY without
    ``extensible``), faster; ``ValueError`` for what is not ``to_json``'s."""
    try:
        return _body_wire(_cached(obj, "body"), extensible)
    except (KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed cached message structure: {exc}") from None
