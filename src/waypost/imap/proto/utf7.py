"""Modified UTF-7 for international mailbox names (RFC 3501 §5.1.3).

"printable US-ASCII characters, except for "&", represent themselves; ... "&" is
represented by the two-octet sequence "&-".  All other characters ... are
represented in modified BASE64, with a further modification from [UTF-7] that ","
is used instead of "/"."  "&" shifts to modified BASE64 and "-" back.

``utf7_decode`` is strict, as RFC 3501 §5.1.3 asks servers to be about names given
to CREATE: no unterminated shift, no superfluous shift ("-&" while in BASE64), no
BASE64 for a character that can represent itself, no stray bits.  Anything else
is ``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["utf7_decode", "utf7_encode"]

_B64 = re.compile(rb"[A-Za-z0-9+,]+\Z")


def _direct(code: int) -> bool:
    # "characters with octet values 0x20-0x25 and 0x27-0x7e" (and "&" as "&-")
    return 0x20 <= code <= 0x7E


def utf7_encode(name: str) -> str:
    """A mailbox name in modified UTF-7 (always 7-bit ASCII).

    ``ValueError`` for a lone surrogate, which no ISO-10646 name contains.
    """
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _direct(ord(ch)):
            if run:
                out.append(_encode_run("".join(run)))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_encode_run("".join(run)))
    return "".join(out)


def _encode_run(text: str) -> str:
    data = text.encode("utf-16-be")  # UnicodeEncodeError (a ValueError) on lone surrogates
    encoded = base64.b64encode(data).rstrip(b"=").replace(b"/", b",")
    return "&" + encoded.decode("ascii") + "-"


def utf7_decode(name: str | bytes) -> str:
    """The Unicode form of a modified UTF-7 mailbox name; ``ValueError`` if the
    name is not correctly encoded."""
    raw = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    out: list[str] = []
    i = 0
    n = len(raw)
    last_run_end = -1
    while i < n:
        c = raw[i]
        if not _direct(c):
            raise ValueError(f"octet 0x{c:02x} is not allowed in a modified UTF-7 name")
        if c != 0x26:  # "&"
            out.append(chr(c))
            i += 1
            continue
        end = raw.find(b"-", i + 1)
        if end < 0:
            raise ValueError("shift to BASE64 without a closing '-'")
        if end == i + 1:
            out.append("&")
            i = end + 1
            continue
        if i == last_run_end:
            raise ValueError("superfluous shift: two BASE64 runs in a row")
        out.append(_decode_run(raw[i + 1 : end]))
        i = last_run_end = end + 1
    return "".join(out)


def _decode_run(encoded: bytes) -> str:
    if not _B64.match(encoded):
        raise ValueError("invalid character in modified BASE64")
    standard = encoded.replace(b",", b"/")
    try:
        data = base64.b64decode(standard + b"=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid modified BASE64") from None
    if base64.b64encode(data).rstrip(b"=") != standard:
        raise ValueError("modified BASE64 with stray bits")
    if len(data) % 2:
        raise ValueError("modified BASE64 does not hold whole UTF-16 units")
    try:
        text = data.decode("utf-16-be")
    except UnicodeDecodeError:
        raise ValueError("modified BASE64 holds invalid UTF-16") from None
    if any(_direct(ord(ch)) for ch in text):
        raise ValueError("printable ASCII must not be BASE64-encoded")
    return text
