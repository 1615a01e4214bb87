"""PREVIEW (RFC 8970): a short plain-text abstract of a message for a client's message
list, made from the message's own text (never its header fields).

RFC 8970 §3.1: the preview is at most 256 characters (not octets) of UTF-8, without
markup, with white space runs as one space; what is not useful to a reader (quoted
replies, a signature, an attachment) should be left out.  Here: the first text/plain
part that is no attachment, else the first text/html one with its markup removed; its
lines quoted with ">" and everything after a "-- " signature line left out.  A
message with no such text has the empty preview ("").
"""

from __future__ import annotations

import binascii
import html
import re

from .message import MAX_MIME_DEPTH, MAX_MIME_PARTS, _base64, _decode, _encoding, _Entity, _parse
from .message import _MESSAGE, _MULTIPART

__all__ = ["MAX_PREVIEW", "preview"]

#: RFC 8970 §3.1: "MUST NOT be more than 256 characters".
MAX_PREVIEW = 256

_WHITE = re.compile(r"\s+")
_INVISIBLE = re.compile(r"(?is)<(script|style|head|title)\b.*?</\1\s*>|<!--.*?-->")
_TAG = re.compile(r"(?s)<[^>]*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def preview(data: bytes) -> str:
    """The message's preview text; ``""`` when it has no text to show."""
    try:
        root = _parse(data, MAX_MIME_DEPTH, MAX_MIME_PARTS)
    except Exception:  # a message we cannot take apart has no preview rather than an error
        return ""
    part = _first(root, b"PLAIN") or _first(root, b"HTML")
    if part is None:
        return ""
    text = _text_of(data, part)
    if part.subtype == b"HTML":
        text = html.unescape(_TAG.sub(" ", _INVISIBLE.sub(" ", text)))
    return _abstract(text)


def _first(ent: _Entity, subtype: bytes) -> _Entity | None:
    """The first TEXT/<subtype> leaf, depth first, that is not an attachment; not
    inside an attached message (MESSAGE/RFC822) either."""
    if ent.kind == _MULTIPART:
        for child in ent.children:
            found = _first(child, subtype)
            if found is not None:
                return found
        return None
    if ent.kind == _MESSAGE:
        return None
    disposition = ent.fields.get(b"disposition", b"").strip().lower()
    if disposition.startswith(b"attachment"):
        return None
    return ent if ent.type == b"TEXT" and ent.subtype == subtype else None


def _text_of(data: bytes, ent: _Entity) -> str:
    raw = data[ent.body : ent.end]
    encoding = _encoding(ent.fields.get(b"transfer-encoding"))
    if encoding == "QUOTED-PRINTABLE":
        raw = binascii.a2b_qp(raw)
    elif encoding == "BASE64":
        raw = _base64(raw)
    charset = next((v for k, v in ent.params if k == b"CHARSET"), b"")
    return _decode(raw, charset.decode("ascii", "replace"))


def _abstract(text: str) -> str:
    kept: list[str] = []
    size = 0
    for line in text.splitlines():
        if line.rstrip() == "--":  # "-- " starts a signature (RFC 3676 §4.3)
            break
        if line.lstrip().startswith(">"):
            continue
        line = _WHITE.sub(" ", _CONTROL.sub("", line)).strip()
        if line:
            kept.append(line)
            size += len(line) + 1
            if size > MAX_PREVIEW:
                break
    return " ".join(kept)[:MAX_PREVIEW].rstrip()
