"""IMAP URLs (RFC 5092) of the form CATENATE takes (RFC 4469 §5): a message on this
server, or a section of it, named relative to the server.

RFC 5092 §11:
  imessagepart   = [enc-mailbox] [uidvalidity] iuid [isection] [ipartial]
  uidvalidity    = ";UIDVALIDITY=" nz-number
  iuid           = "/" ";UID=" nz-number
  isection       = "/" ";SECTION=" enc-section
  ipartial       = "/" ";PARTIAL=" number ["." nz-number]

CATENATE takes only the server-relative form (``/mailbox;UIDVALIDITY=n/;UID=n...``);
an ``imap://`` URL, which may name another server or user, is refused (``BADURL``).
URLAUTH (RFC 4467) takes the ``imap://user@host/...;URLAUTH=access`` form
(``parse_auth_url``).  No I/O: what the URL names is looked up by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from .fetch import Section, _section
from .lexer import Incomplete, Reader, SyntaxFailure
from .params import DEFAULT_PARAMS
from .utf7 import utf7_encode

__all__ = ["AuthUrl", "ImapUrl", "parse_auth_url", "parse_imap_url"]

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
    return _message_part(m)


def _message_part(m: re.Match[str]) -> ImapUrl:
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


# -- URLAUTH (RFC 4467) ------------------------------------------------------------
#
# RFC 4467 §9 (and RFC 5092 §11):
#   authimapurl      = "imap://" enc-user [iauth] "@" hostport "/" imessagepart
#   authimapurlfull  = authimapurl iurlauth
#   authimapurlrump  = authimapurl iurlauth-rump
#   iurlauth-rump    = [expire] ";URLAUTH=" access
#   iurlauth         = iurlauth-rump iua-verifier
#   iua-verifier     = ":" uauth-mechanism ":" enc-urlauth
#   expire           = ";EXPIRE=" date-time           ; RFC 3339
#   access           = ("submit+" enc-user) / ("user+" enc-user) / "authuser" / "anonymous"
#   uauth-mechanism  = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")
#   enc-urlauth      = 32*HEXDIG

_AUTH_URL = re.compile(
    r"(?P<rump>imap://(?P<user>[^;@/?#]+)(?:;AUTH=[^@/?#]+)?@(?P<host>[^/?#]+)"
    r"/(?P<mailbox>[^;/?#][^;?#]*?)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/?#;]*))?"
    r"(?:/;PARTIAL=(?P<origin>[0-9]{1,10})(?:\.(?P<count>[1-9][0-9]{0,9}))?)?"
    r"(?:;EXPIRE=(?P<expire>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})))?"
    r";URLAUTH=(?P<access>anonymous|authuser|(?:submit|user)\+[^:;/?#]+))"
    r"(?::(?P<mechanism>[A-Za-z0-9.-]+):(?P<token>[0-9A-Fa-f]{32,}))?\Z",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class AuthUrl:
    """An ``imap://`` URL with URLAUTH (RFC 4467): ``rump`` is its text up to and
    including the access identifier, which the verifier is computed over; ``user``
    and the user of ``access`` are %-decoded; ``access`` is ``submit``, ``user``,
    ``authuser`` or ``anonymous`` (lower case), ``access_user`` the user after
    ``submit+``/``user+``; ``mechanism`` and ``token`` are None in a rump."""

    rump: str
    user: str
    host: str
    part: ImapUrl
    expire: datetime | None
    access: str
    access_user: str | None
    mechanism: str | None
    token: str | None


def parse_auth_url(url: str) -> AuthUrl:
    """The parts of a URLAUTH URL, rump or full; ``ValueError`` when it is not one."""
    m = _AUTH_URL.match(url)
    if m is None:
        raise ValueError("not an IMAP URLAUTH URL")
    expire: datetime | None = None
    if m.group("expire"):
        expire = datetime.fromisoformat(m.group("expire").upper().replace("Z", "+00:00"))
        if expire.tzinfo is None:
            raise ValueError("expiry without a time zone")
    kind, _, who = m.group("access").partition("+")
    user = unquote(m.group("user"), errors="strict")
    if not user:
        raise ValueError("no user")
    return AuthUrl(
        rump=m.group("rump"), user=user, host=m.group("host").lower(),
        part=_message_part(m),
        expire=expire, access=kind.lower(), access_user=unquote(who, errors="strict") if who else None,
        mechanism=m.group("mechanism").upper() if m.group("mechanism") else None,
        token=m.group("token").lower() if m.group("token") else None,
    )
