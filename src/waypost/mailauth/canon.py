"""One message, split once and canonicalized once for all its DKIM and ARC signatures
(RFC 6376 §3.4, §5.4.2; RFC 8617 §5.1).

``Canon`` holds the message normalised to CRLF and split into (header fields, body)
as dkimpy's ``rfc822_parse`` splits it, and remembers each canonicalized field (made
only for the fields a signature selects, and the ARC fields) and each body hash (per
hash, body algorithm and ``l=``): the DKIM signature, the ARC-Message-Signature and
the ARC-Seal of a signed and sealed message then share them.  ``dkimverify`` does the
verification on it.

The split and the "relaxed" forms give dkimpy's output octet for octet (dkimpy stays
the reference: tests/unit/mailauth/test_dkimverify.py compares them on generated
text) with fewer passes: dkimpy's whitespace rules replace every single space by
itself and split the whole body into lines to join them again.
"""

from __future__ import annotations

import re
from typing import Any, Callable

__all__ = ["Canon", "CanonError", "MessageFormatError", "RE_BTAG", "SIMPLE", "RELAXED", "TagListError", "c_value",
           "canonicalize_headers", "canonicalize_body", "parse_message", "relaxed_body", "parse_tags",
           "relaxed_headers", "simple_body"]

SIMPLE = b"simple"
RELAXED = b"relaxed"
ALGORITHMS = (SIMPLE, RELAXED)


class MessageFormatError(ValueError):
    """The header section cannot be split into fields (a line that is neither a field,
    a continuation nor an mbox "From " line)."""


class CanonError(ValueError):
    """A c= value that names no algorithm (``args[0]``: the part not understood)."""


# FWS = ([*WSP CRLF] 1*WSP) / obs-FWS (RFC 5322 §3.2.2), as dkimpy writes it.
FWS = rb"(?:(?:\s*\r?\n)?\s+)?"
#: The b= tag whose value is emptied for the header hash (RFC 6376 §3.7).  dkimpy's
#: ``RE_BTAG`` matches the same spans: its FWS before each base64 character is ``\s*``
#: as a language, so "base64 and white space, ending in base64" is the same value,
#: matched without a regex group per character (compared on random strings by the tests).
RE_BTAG = re.compile(rb"([;\s]b" + FWS + rb"=)(?:[\sa-zA-Z0-9+/=]*[a-zA-Z0-9+/=])?(?:\r?\n\Z)?")

# compress_whitespace is ``re.sub(b"[\t ]+", b" ", s)``: a run of one space is replaced
# by itself, so only the runs with a tab or of two or more need a match.
_WSP_RUN = re.compile(rb"[\t ]{2,}|\t")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
# A field name, then the colon (RFC 5322 §2.2 ftext, as dkimpy's split reads it).
_FIELD_NAME = re.compile(rb"([\x21-\x7e]+?):")
# Where a field ends: a line break not followed by white space (a continuation line).
_FIELD_SPLIT = re.compile(rb"\r\n(?![ \t])")


class TagListError(ValueError):
    """RFC 6376 §3.2: not a tag-list (``args[0]``: the tag-spec or the repeated tag)."""


def parse_tags(value: bytes) -> dict[bytes, bytes]:
    """RFC 6376 §3.2 tag-list: ``tag=value`` separated by ";" (a last ";" allowed), white
    space around both stripped; a tag starts with a letter and is given once."""
    tags: dict[bytes, bytes] = {}
    specs = value.strip().split(b";")
    if not specs[-1]:
        specs.pop()
    for spec in specs:
        key, eq, val = spec.partition(b"=")
        if not eq:
            raise TagListError(spec)
        key = key.strip()
        if not key[:1].isalpha():
            raise TagListError(spec)
        if key in tags:
            raise TagListError(key)
        tags[key] = val.strip()
    return tags


def c_value(c: bytes | None) -> tuple[bytes, bytes]:
    """(header algorithm, body algorithm) of a c= value (RFC 6376 §3.5: "simple" when
    absent; one name is the header algorithm, the body's is then "simple")."""
    parts = (c if c is not None else b"simple/simple").split(b"/")
    if len(parts) not in (1, 2):
        raise CanonError(c)
    if len(parts) == 1:
        parts.append(SIMPLE)
    for part in parts:
        if part not in ALGORITHMS:
            raise CanonError(part)
    return parts[0], parts[1]


# (``content.find(x) >= 0``, not ``x in content``: for bytes, ``in`` first tries its
# operand as an integer and clears the TypeError, about twice the time on a short value.)


def _compress(content: bytes) -> bytes:
    if content.find(b"\t") >= 0 or content.find(b"  ") >= 0:
        return _WSP_RUN.sub(b" ", content)
    return content


def _unfold(content: bytes) -> bytes:
    """Every LF goes, with the one CR before it."""
    if content.find(b"\n") >= 0:
        return content.replace(b"\r\n", b"").replace(b"\n", b"")
    return content


def simple_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.3: the empty lines at the end go; the body ends in one CRLF."""
    end = len(body)
    while end >= 2 and body[end - 2:end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n"


def relaxed_headers(headers: list[Any]) -> list[tuple[bytes, bytes]]:
    """RFC 6376 §3.4.2."""
    return [(x[0].lower().rstrip(), _compress(_unfold(x[1])).strip() + b"\r\n") for x in headers]


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 (an empty body hashes as nothing, not as CRLF)."""
    if body.find(b" \r\n") >= 0 or body.find(b"\t\r\n") >= 0:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    out = simple_body(_compress(body))
    return b"" if out == b"\r\n" else out


def canonicalize_headers(algorithm: bytes, headers: list[Any]) -> list[tuple[bytes, bytes]]:
    return relaxed_headers(headers) if algorithm == RELAXED else [(x[0], x[1]) for x in headers]


def canonicalize_body(algorithm: bytes, body: bytes) -> bytes:
    return relaxed_body(body) if algorithm == RELAXED else simple_body(body)


def parse_message(message: bytes) -> tuple[list[list[bytes]], bytes]:
    """(header fields as [name, value with CRLF], body) of a message whose every LF has
    a CR before it (``Canon`` makes it so), as dkimpy's ``rfc822_parse``.  The header
    section is cut into lines, the body is a slice."""
    end = message.find(b"\r\n\r\n")
    if message.startswith(b"\r\n"):
        return [], message[2:]
    if end < 0:
        return _parse_lines(message.split(b"\r\n")), b""
    head = message[:end]
    if head[:1] not in (b" ", b"\t"):
        # Field by field (a field: its line and the continuation lines after it), as
        # the loop below reads them line by line; a field whose name does not parse
        # (an mbox "From " line, whose continuation lines the loop gives to the field
        # before it) is left to the loop.
        headers: list[list[bytes]] = []
        for chunk in _FIELD_SPLIT.split(head):
            m = _FIELD_NAME.match(chunk)
            if m is None:
                break
            headers.append([m.group(1), chunk[m.end(0):] + b"\r\n"])
        else:
            return headers, message[end + 4:]
    return _parse_lines(head.split(b"\r\n")), message[end + 4:]


def _parse_lines(lines: list[bytes]) -> list[list[bytes]]:
    headers: list[list[bytes]] = []
    for line in lines:
        if not line:  # the message ended in CRLF and has no body
            break
        if line[0] in (0x09, 0x20):
            headers[-1][1] += line + b"\r\n"  # (an IndexError before any field, as in dkimpy)
            continue
        m = _FIELD_NAME.match(line)
        if m is not None:
            headers.append([m.group(1), line[m.end(0):] + b"\r\n"])
        elif not line.startswith(b"From "):
            raise MessageFormatError("Unexpected characters in RFC822 header: %r" % line)
    return headers


def _parsed_once(cache: dict[int, dict[bytes, bytes] | TagListError], index: int,
                 value: Callable[[], bytes]) -> dict[bytes, bytes]:
    """``parse_tags(value())`` kept in ``cache`` under ``index`` (a failure too: it raises
    again each time it is asked for)."""
    got = cache.get(index)
    if got is None:
        try:
            got = parse_tags(value())
        except TagListError as e:
            got = e
        cache[index] = got
    if isinstance(got, TagListError):
        raise TagListError(*got.args)
    return got


class Canon:
    """One message, split once, with the canonicalized forms every signature of it
    needs computed once."""

    __slots__ = ("message", "headers", "body", "_names", "_positions", "_bodies", "_hashes", "_tags",
                 "_relaxed_tags", "_relaxed")

    def __init__(self, message: bytes) -> None:
        if message.count(b"\n") == message.count(b"\r\n"):
            # Every LF has its CR (SMTP's text always): the two replacements below
            # would give the same octets, at two copies of the message.
            self.message = message
        else:
            self.message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.headers, self.body = parse_message(self.message)
        self._bodies: dict[bytes, bytes] = {}
        self._hashes: dict[tuple[Any, bytes, bytes | None], bytes] = {}
        self._tags: dict[int, dict[bytes, bytes] | TagListError] = {}
        self._relaxed_tags: dict[int, dict[bytes, bytes] | TagListError] = {}
        self._names: list[bytes] | None = None
        self._positions: dict[bytes, list[int]] | None = None
        self._relaxed: dict[int, tuple[bytes, bytes]] = {}

    def tags(self, index: int) -> dict[bytes, bytes]:
        """``parse_tags`` of field ``index``'s value (a signature field), parsed once per
        message: a DKIM signature's look-up of its key and its verification share it
        (ARC reads ``relaxed_tags``, and this only where the two may differ).  The dict
        is shared: callers must not change it.  A value that does not parse raises
        ``TagListError`` each time."""
        return _parsed_once(self._tags, index, lambda: self.headers[index][1])

    def relaxed_tags(self, index: int) -> dict[bytes, bytes]:
        """``parse_tags`` of field ``index``'s relaxed value (``field(RELAXED, index)``:
        what dkimpy's ARC verifier parses), parsed once per message; shared, as ``tags``."""
        return _parsed_once(self._relaxed_tags, index, lambda: self.field(RELAXED, index)[1])

    def header_names(self) -> list[bytes]:
        """The lower-case names of ``headers``, which are also the names of their relaxed
        forms (a name has no white space to strip: ``parse_message``)."""
        got = self._names
        if got is None:
            got = self._names = [x[0].lower() for x in self.headers]
        return got

    def positions(self) -> dict[bytes, list[int]]:
        """Each lower-case field name's indices in ``headers``, top to bottom."""
        got = self._positions
        if got is None:
            got = self._positions = {}
            for i, name in enumerate(self.header_names()):
                where = got.get(name)
                if where is None:
                    got[name] = [i]
                else:
                    where.append(i)
        return got

    def field(self, algorithm: bytes, index: int) -> tuple[bytes, bytes]:
        """``canonicalize_headers(algorithm, headers)[index]``, made for this field only
        (a signature covers a few of the fields: the others are never canonicalized)."""
        if algorithm != RELAXED:
            x = self.headers[index]
            return x[0], x[1]
        got = self._relaxed.get(index)
        if got is None:
            x = self.headers[index]
            got = self._relaxed[index] = (x[0].lower().rstrip(), _compress(_unfold(x[1])).strip() + b"\r\n")
        return got

    def hash_fields(self, hasher: Any, algorithm: bytes, include_headers: list[bytes],
                    sigheader: tuple[bytes, bytes]) -> None:
        """RFC 6376 §3.7: the fields ``include_headers`` (h=, lower-case) selects, then
        the signature field ``sigheader`` with its b= value emptied and without its final
        CRLF, into ``hasher``; only the fields selected are canonicalized.  RFC 6376
        §5.4.2: each name takes the lowest field of that name not taken yet (a name with
        no field left selects nothing), as dkimpy's ``select_headers``."""
        positions = self.positions()
        left: dict[bytes, int] = {}  # fields of each name not taken yet (the lowest first)
        relaxed = self._relaxed if algorithm == RELAXED else None
        update = hasher.update
        for h in include_headers:
            where = positions.get(h)
            if where is None:
                continue
            k = left.get(h, len(where))
            if k == 0:
                continue
            left[h] = k = k - 1
            i = where[k]
            if relaxed is None:
                x, y = self.headers[i]
            else:
                got = relaxed.get(i)
                x, y = got if got is not None else self.field(RELAXED, i)
            update(x)
            update(b":")
            update(y)
        _hash_signature_field(hasher, algorithm, sigheader)

    def body_hash(self, hasher: Callable[..., Any], algorithm: bytes, length: bytes | None) -> bytes:
        """The digest of the body under ``algorithm``, cut to ``l=`` when given (a bad
        ``l=`` raises ValueError)."""
        key = (hasher, algorithm, length)
        digest = self._hashes.get(key)
        if digest is None:
            body = self._bodies.get(algorithm)
            if body is None:
                body = self._bodies[algorithm] = canonicalize_body(algorithm, self.body)
            if length is not None:
                body = body[: int(length)]
            digest = self._hashes[key] = held_digest(hasher, body)
        return digest


#: ``hashlib`` lets the GIL go while it hashes 2,048 octets or more at once.
_GIL_FREE_HASH = 2048
#: Up to this size a body is hashed in pieces under that limit (``held_digest``).
HELD_HASH_MAX = 64 * 1024


def held_digest(hasher: Callable[..., Any], data: bytes) -> bytes:
    """``hasher(data).digest()``, keeping the GIL when ``data`` is small: hashing 4 KiB
    takes 3 microseconds, but when ``hashlib`` lets the GIL go for it, the event loop
    waits for a busy thread of the worker to give it back (up to the switch interval,
    5 ms).  A big body is hashed in one call: there the time saved for other threads
    is worth the wait."""
    if len(data) < _GIL_FREE_HASH or len(data) > HELD_HASH_MAX:
        return bytes(hasher(data).digest())
    h = hasher()
    view = memoryview(data)
    step = _GIL_FREE_HASH - 1
    for i in range(0, len(data), step):
        h.update(view[i:i + step])
    return bytes(h.digest())


def _tag_only(m: re.Match[bytes]) -> bytes:
    """The replacement ``b"\\1"`` (without re's template expansion per call)."""
    return m.group(1)


def _hash_signature_field(hasher: Any, algorithm: bytes, sigheader: tuple[bytes, bytes]) -> None:
    """The signature field, b= emptied, canonicalized, without its final CRLF (the
    relaxed form's strip already leaves none)."""
    value = RE_BTAG.sub(_tag_only, sigheader[1])
    if algorithm == RELAXED:
        hasher.update(sigheader[0].lower().rstrip())
        hasher.update(b":")
        hasher.update(_compress(_unfold(value)).strip())
    else:
        hasher.update(sigheader[0])
        hasher.update(b":")
        hasher.update(value.rstrip())
