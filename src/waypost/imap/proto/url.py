"""IMAP URLs (RFC 5092) of the form CATENATE takes (RFC 4469 §5): a message on this
server, or a section of it, named relative to the server.

RFC 5092 §11:
  imessagepart   = [enc-mailbox] [uidvalidity] iuid [isection] [ipartial]
  uidvalidity    = ";UIDVALIDITY=" nz-number
  iuid           = "/" ";UID=" nz-number
  isection       = "/" ";SECTION=" enc-section
  ipartial       = "/" ";PARTIAL=" number ["." nz-number]

Only the server-relative form (``/mailbox;UIDVALIDITY=n/;UID=n...``) is taken; an
``imap://`` URL, which may name another server or user, is refused (``BADURL``).
No I/O: what the URL names is looked up by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .fetch import Section, _section
from .lexer import Incomplete, Reader, SyntaxFailure
from .params import DEFAULT_PARAMS
from .utf7 import utf7_encode

__all__ = ["ImapUrl", "parse_imap_url"]

_URL = re.compile(
    r"/(?P<mailbox>[^;/?#][^;?#]*?)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/?#]*))?"
    r"(?:/;PARTIAL=(?P<origin>[0-9]{1,10})(?:\.(?P<count>[1-9][0-9]{0,9}))?)?\Z",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ImapUrl:
    """``mailbox`` in its wire form (modified UTF-7), as a command would name it."""

    mailbox: str
    uid: int
    uidvalidity: int | None = None
    section: Section = Section()
    partial: tuple[int, int | None] | None = None


def parse_imap_url(url: str) -> ImapUrl:
    """The parts of a server-relative IMAP URL; ``ValueError`` when it is not one."""
    m = _URL.match(url)
    if m is None:
        raise ValueError("not a server-relative IMAP message URL")
    # RFC 5092 §3.2: the mailbox name is %-encoded UTF-8.
    name = unquote(m.group("mailbox"), errors="strict")
    mailbox = "INBOX" if name.upper() == "INBOX" else utf7_encode(name)
    section = Section()
    if m.group("section") is not None:
        spec = b"[" + unquote(m.group("section")).encode("utf-8") + b"]"
        r = Reader(spec, len(spec), DEFAULT_PARAMS)
        try:
            section = _section(r)
        except (SyntaxFailure, Incomplete):
            raise ValueError("bad section") from None
        if r.pos != len(spec):
            raise ValueError("bad section")
    partial: tuple[int, int | None] | None = None
    if m.group("origin") is not None:
        partial = (int(m.group("origin")), int(m.group("count")) if m.group("count") else None)
    uidvalidity = int(m.group("uidvalidity")) if m.group("uidvalidity") else None
    return ImapUrl(mailbox, int(m.group("uid")), uidvalidity, section, partial)
