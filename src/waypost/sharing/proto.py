"""Minger wire format (draft-hathcock-minger-06), sans-IO.

Bytes in, typed values out; typed values in, bytes out.  Nothing here touches a socket,
a clock or the event loop.  ``parse_query`` and ``parse_reply`` never raise, whatever
the bytes; the encoders raise ``ValueError`` on arguments that cannot be put on the wire.

Theory of operation: one query datagram from client to server, one reply datagram back
(draft §2.1, §3).  There is no session and no state, so there is no state table; the
server's decision order lives in ``waypost.sharing.server``.  Where the draft is silent
(line endings, size limits, case in replies, what to echo for garbage) the choice made
here is named next to the code and explained in docs/minger.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "DEFAULT_PORT",
    "DIGEST_LENGTH",
    "MAX_DATAGRAM_SIZE",
    "MAX_DOMAIN_LENGTH",
    "MAX_LOCAL_PART_LENGTH",
    "MAX_MAILBOX_LENGTH",
    "MAX_SECRET_LENGTH",
    "MIN_SECRET_LENGTH",
    "Code",
    "Malformed",
    "Query",
    "Reply",
    "check_credentials",
    "check_secret",
    "digest",
    "digest_matches",
    "encode_query",
    "encode_reply",
    "is_valid_mailbox",
    "parse_query",
    "parse_reply",
    "same_mailbox",
]

# -- limits -------------------------------------------------------------------------

#: draft §2: "Minger is a UDP protocol that operates on port 4069."
DEFAULT_PORT = 4069

#: The draft sets no size limit.  Ours: 512 octets, which holds the longest legal
#: mailbox (254) plus " d=" and a digest (27) with room for tags, and which crosses any
#: IPv4 path without fragmentation (576-octet minimum reassembly size, RFC 791).
#: A larger datagram is malformed; we never send one.
MAX_DATAGRAM_SIZE = 512

#: RFC 5321 §4.5.3.1.1 and §4.5.3.1.3: a local-part is at most 64 octets; a path
#: (mailbox plus "<" and ">") at most 256, so a mailbox is at most 254.
MAX_LOCAL_PART_LENGTH = 64
MAX_MAILBOX_LENGTH = 254
#: RFC 5321 §4.5.3.1.2; with MAX_MAILBOX_LENGTH the effective bound is 252.
MAX_DOMAIN_LENGTH = 255

#: draft §2.1: ``shared-secret = 1*50(VCHAR)``.
MAX_SECRET_LENGTH = 50
#: draft §5: "that shared secret should be at least 128 bits"; MDaemon's settings ask
#: for "a text string of at least 16 characters".  A server refuses a shorter one.
MIN_SECRET_LENGTH = 16

#: base64 of a 16-octet MD5 value, with its "==" padding.
DIGEST_LENGTH = 24


class Code(IntEnum):
    """draft §3.1, the status codes, one digit each (``status = %x30-35``)."""

    #: "invalid request (for example, malformed query string)"
    MALFORMED = 0
    #: "access denied (for example, query from unauthorized IP)"
    ACCESS_DENIED = 1
    #: "bad or missing credentials (returned when anonymous mode is disabled and no
    #: credentials were provided in the query string or when the credentials
    #: themselves are invalid)"
    BAD_CREDENTIALS = 2
    #: "email address does not exist"
    NOT_FOUND = 3
    #: "email address exists but can not receive mail (for example, the account ...
    #: has exceeded local storage constraints or it is otherwise disabled ...)"
    CANNOT_RECEIVE = 4
    #: "email address exists and is active (able to receive mail)"
    ACTIVE = 5


# -- values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """A well-formed query.  ``digest`` is None for an anonymous query (draft §4).

    ``mailbox`` is exactly as received (its case kept: the digest covers it verbatim).
    ``tags`` keeps the draft's tag/value pairs in order; no tag is defined yet.
    """

    mailbox: str
    digest: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.digest is None


@dataclass(frozen=True, slots=True)
class Malformed:
    """A datagram that is not a query-string.

    ``mailbox`` is set when the first field is a well-formed mailbox (the error is in
    the digest or the tags), so that the reply can name it; otherwise None.
    """

    reason: str
    mailbox: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply: the mailbox the server names, and its status code."""

    mailbox: str
    code: Code


# -- grammar ------------------------------------------------------------------------

# draft §2.1:  mailbox = Local-part "@" Domain   ; as defined in [RFC2821]
#
# RFC 5321 §4.1.2 (which obsoletes 2821; same productions):
#   Local-part = Dot-string / Quoted-string
#   Dot-string = Atom *("."  Atom)
#   Atom       = 1*atext
# We accept Dot-string only: a Quoted-string may hold SP, which the draft's
# SP-separated query cannot carry unambiguously.
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
# RFC 5321 §4.1.2:
#   Domain     = sub-domain *("." sub-domain)
#   sub-domain = Let-dig [Ldh-str]
#   Ldh-str    = *( ALPHA / DIGIT / "-" ) Let-dig
# RFC 2821 required two labels or more; we take 5321's form, which allows one.
_SUB_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
# RFC 5321 §4.1.3:  address-literal = "[" ( IPv4-address-literal /
#   IPv6-address-literal / General-address-literal ) "]";  dcontent = %d33-90 / %d94-126
# We check the outer form only; the router decides what a literal means.
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX_RE = re.compile(rf"({_DOT_STRING})@({_DOMAIN}|{_ADDRESS_LITERAL})")

# RFC 5034 §4 (the base64 the draft points to):
#   base64          = base64-terminal / ( 1*(4base64-char) [base64-terminal] )
#   base64-char     = ALPHA / DIGIT / "+" / "/"     ;; Case-sensitive
#   base64-terminal = (2base64-char "==") / (3base64-char "=")
_B64 = r"[A-Za-z0-9+/]"
_BASE64_RE = re.compile(rf"(?:{_B64}{{4}})*(?:{_B64}{{2}}==|{_B64}{{3}}=)|(?:{_B64}{{4}})+")

# draft §2.1:
#   tag-spec  = tag-name "=" tag-value
#   tag-name  = 1 * ( ALPHA / DIGIT / "_") ; except 'd'
#   tag-value = 1 * (ALPHA / DIGIT / "_")
_TAG_RE = re.compile(r"([A-Za-z0-9_]+)=([A-Za-z0-9_]+)")

# ABNF VCHAR = %x21-7E  (RFC 5234 appendix B.1)
_VCHAR_RE = re.compile(r"[\x21-\x7e]+")

# draft §2.1:  query-string = mailbox [SP %x64 "=" digest] [SP tag-list]
# %x64 is a lower-case "d" only; ABNF quoted strings would be case-insensitive.
_DIGEST_PREFIX = "d="


def is_valid_mailbox(mailbox: str) -> bool:
    """True if ``mailbox`` is ``Local-part "@" Domain`` in our reading, within limits."""
    if len(mailbox) > MAX_MAILBOX_LENGTH:
        return False
    m = _MAILBOX_RE.fullmatch(mailbox)
    if m is None:
        return False
    local, domain = m.group(1), m.group(2)
    return len(local) <= MAX_LOCAL_PART_LENGTH and len(domain) <= MAX_DOMAIN_LENGTH


def same_mailbox(a: str, b: str) -> bool:
    """True if two mailboxes name the same address for matching a reply to a query.

    The draft does not say whether a server keeps the case of the mailbox in its reply
    (§3.1 only says it is "the email address for which verification ... is desired"),
    so a client compares without regard to ASCII case.
    """
    return a.lower() == b.lower() if a.isascii() and b.isascii() else a == b


def check_secret(secret: str, *, min_length: int = 1) -> None:
    """Raise ``ValueError`` unless ``secret`` is ``min_length*50(VCHAR)`` (draft §2.1)."""
    if not isinstance(secret, str) or _VCHAR_RE.fullmatch(secret) is None:
        raise ValueError("a Minger shared secret is printable ASCII without spaces (VCHAR)")
    if len(secret) < min_length:
        raise ValueError(f"a Minger shared secret must have at least {min_length} characters")
    if len(secret) > MAX_SECRET_LENGTH:
        raise ValueError(f"a Minger shared secret has at most {MAX_SECRET_LENGTH} characters")


def digest(secret: str, mailbox: str) -> str:
    """draft §2.2: base64 of the MD5 of ``digest-text``.

    ``digest-text = shared-secret ":" mailbox ; input text for digest``
    The mailbox is taken verbatim, as it stands in the query.
    """
    text = f"{secret}:{mailbox}".encode("ascii")
    return base64.b64encode(hashlib.md5(text).digest()).decode("ascii")


def digest_matches(secret: str, mailbox: str, presented: str) -> bool:
    """Constant-time check of a presented digest (its length alone may show)."""
    try:
        expected = digest(secret, mailbox).encode("ascii")
        offered = presented.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, offered)


def check_credentials(query: Query, secret: str | None, allow_anonymous: bool) -> Code | None:
    """The credential rule: None if the query may be answered, else the code to send.

    draft §4: servers "MAY be configured to refuse anonymous queries.  If so, they
    MUST respond with a status of "2"."  A digest that is present but wrong is "bad
    credentials" (§3.1, code 2) whether or not anonymous queries are allowed: the
    draft leaves this open; we do not let a wrong secret pass as anonymous.
    """
    if query.digest is None:
        return None if allow_anonymous else Code.BAD_CREDENTIALS
    if secret is None or not digest_matches(secret, query.mailbox, query.digest):
        return Code.BAD_CREDENTIALS
    return None


# -- datagrams ----------------------------------------------------------------------


def _strip_line_end(datagram: bytes) -> bytes:
    # The draft's grammar has no line ending and mingerd sends none; we send none and
    # accept one trailing CRLF or LF from peers that add it.
    if datagram.endswith(b"\r\n"):
        return datagram[:-2]
    if datagram.endswith(b"\n"):
        return datagram[:-1]
    return datagram


def _decode_line(datagram: bytes) -> str | None:
    """The datagram as one line of printable ASCII and SP, or None."""
    if not datagram or len(datagram) > MAX_DATAGRAM_SIZE:
        return None
    line = _strip_line_end(datagram)
    if not line or any(b < 0x20 or b > 0x7E for b in line):
        return None
    return line.decode("ascii")


def parse_query(datagram: bytes) -> Query | Malformed:
    """Parse one query datagram.  Never raises: anything else is ``Malformed``.

    draft §2.1:
        query-string = mailbox [SP %x64 "=" digest] [SP tag-list]
        tag-list     = tag-spec *(SP tag-spec) ; tag/value list
    §2.2: "Tag-names are case-sensitive and MUST NOT be used more than once."
    """
    try:
        return _parse_query(datagram)
    except Exception:  # a bug here must not become a crash on hostile input
        return Malformed("unparseable")


def _parse_query(datagram: bytes) -> Query | Malformed:
    if not isinstance(datagram, (bytes, bytearray, memoryview)):
        return Malformed("not bytes")
    data = bytes(datagram)
    if not data:
        return Malformed("empty datagram")
    if len(data) > MAX_DATAGRAM_SIZE:
        return Malformed(f"datagram larger than {MAX_DATAGRAM_SIZE} octets")
    line = _decode_line(data)
    if line is None:
        return Malformed("not one line of printable ASCII")
    fields = line.split(" ")
    mailbox = fields[0]
    if not is_valid_mailbox(mailbox):
        return Malformed("not a mailbox")
    rest = fields[1:]
    found_digest: str | None = None
    if rest and rest[0].startswith(_DIGEST_PREFIX):
        found_digest = rest[0][len(_DIGEST_PREFIX):]
        if _BASE64_RE.fullmatch(found_digest) is None:
            return Malformed("digest is not base64", mailbox)
        rest = rest[1:]
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    for field in rest:
        m = _TAG_RE.fullmatch(field)
        if m is None:
            return Malformed("not a tag-spec", mailbox)
        name, value = m.group(1), m.group(2)
        if name == "d":  # "tag-name = ... ; except 'd'": d= only as the digest, first
            return Malformed("tag 'd' out of place", mailbox)
        if name in seen:
            return Malformed("tag used more than once", mailbox)
        seen.add(name)
        tags.append((name, value))
    return Query(mailbox, found_digest, tuple(tags))


def encode_query(
    mailbox: str, secret: str | None, tags: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """The query datagram for ``mailbox``; anonymous when ``secret`` is None.

    Raises ``ValueError`` if the mailbox, the secret or a tag cannot be sent.
    """
    if not is_valid_mailbox(mailbox):
        raise ValueError(f"not a mailbox Minger can carry: {mailbox!r}")
    parts = [mailbox]
    if secret is not None:
        check_secret(secret)
        parts.append(_DIGEST_PREFIX + digest(secret, mailbox))
    names: set[str] = set()
    for name, value in tags:
        if _TAG_RE.fullmatch(f"{name}={value}") is None or name == "d" or name in names:
            raise ValueError(f"not a Minger tag: {name!r}={value!r}")
        names.add(name)
        parts.append(f"{name}={value}")
    data = " ".join(parts).encode("ascii")
    if len(data) > MAX_DATAGRAM_SIZE:
        raise ValueError(f"query larger than {MAX_DATAGRAM_SIZE} octets")
    return data


def encode_reply(mailbox: str | None, code: Code | int) -> bytes:
    """The reply datagram: ``mailbox SP status``, no line ending.

    draft §3 gives ``response-string = mailbox status`` but its examples (§3.2) read
    ``arvel@example.com 3``; we send the SP, as mingerd and the examples do.
    ``mailbox=None`` gives the bare status digit, which we send (as mingerd does) when
    a datagram holds no mailbox to name.
    """
    status = Code(code)
    if mailbox is None:
        return str(int(status)).encode("ascii")
    if not is_valid_mailbox(mailbox):
        raise ValueError(f"not a mailbox Minger can carry: {mailbox!r}")
    return f"{mailbox} {int(status)}".encode("ascii")


def parse_reply(datagram: bytes) -> Reply | None:
    """Parse one reply datagram; None if it is not ``mailbox SP status``.  Never raises.

    draft §3:  status = %x30-35 ; single digit result code from 0 - 5
    Lenient on the mailbox (any printable ASCII without SP: it is matched against the
    question, not interpreted); a bare status without mailbox is None (it answers
    nothing we can match).
    """
    try:
        if not isinstance(datagram, (bytes, bytearray, memoryview)):
            return None
        line = _decode_line(bytes(datagram))
        if line is None:
            return None
        mailbox, sep, status = line.rpartition(" ")
        if not sep or len(status) != 1 or status not in "012345":
            return None
        if _VCHAR_RE.fullmatch(mailbox) is None or len(mailbox) > MAX_MAILBOX_LENGTH:
            return None
        return Reply(mailbox, Code(int(status)))
    except Exception:
        return None
