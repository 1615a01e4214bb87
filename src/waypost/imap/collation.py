"""How SEARCH, SORT and THREAD compare text: I18NLEVEL=1 (RFC 5255 §4.3), the
i;unicode-casemap comparator (RFC 5051) by default.

RFC 5051 §2: a string is compared as the UTF-8 octets of its characters each mapped
to its (simple) titlecase, then put in Unicode normalization form KD.  ``casemap``
is that, for SORT's ordering and THREAD's base subjects.  ``fold`` is what SEARCH's
substring matching compares: the same decomposition (NFKD) after Unicode case
folding, which maps a little more together than titlecase (``ß`` matches ``ss``, as
it always has here); ASCII text folds to its lower case, so the SEARCH code may
compare 7-bit header octets lowered.
"""

from __future__ import annotations

import functools
import unicodedata

__all__ = ["casemap", "fold"]


@functools.lru_cache(maxsize=4096)
def _title(char: str) -> str:
    # UnicodeData.txt's simple titlecase mapping: Python's title() of one character
    # also applies SpecialCasing, whose mappings are several characters long; those
    # characters have no simple mapping and stay as they are.
    mapped = char.title()
    return mapped if len(mapped) == 1 else char


def casemap(text: str) -> bytes:
    """The i;unicode-casemap form of ``text`` (RFC 5051 §2), as octets to compare.
    ASCII text is its upper case (as i;ascii-casemap would have it)."""
    if text.isascii():
        return text.upper().encode("ascii")
    titled = unicodedata.normalize("NFKD", "".join(_title(c) for c in text))
    try:  # octets that were not UTF-8 came in as surrogate escapes: back to themselves
        return titled.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return titled.encode("utf-8", "surrogatepass")


def fold(text: str) -> str:
    """The form SEARCH matches substrings in: Unicode case folding, then NFKD."""
    if text.isascii():
        return text.lower()
    # Decomposed first, so that what decomposes to a capital (U+210C BLACK-LETTER
    # CAPITAL H is "H") is folded too.
    return unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
