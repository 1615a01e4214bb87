"""POP3 responses and their one catalogue (STYLE point 9).

RFC 2449 §3 (the general grammar; 512 octets per first line, RFC 2449 §4)::

    single-line  = status [SP text] CRLF        ;512 octets maximum
    multi-line   = single-line *dot-stuffed "." CRLF
    dot-stuffed  = *CHAR CRLF                   ;must be dot-stuffed
    status       = "+OK" / "-ERR"

RFC 2449 §8 (extended response codes)::

    resp-code    = "[" resp-level *("/" resp-level) "]"
    resp-level   = 1*rchar
    rchar        = %x21-2E / %x30-5C / %x5E-7F

Tests assert ``ok`` and ``code``, never the prose.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any, Iterable

__all__ = ["Code", "Continuation", "MultiLine", "R", "Reply", "Response", "dot_stuff"]

CRLF = b"\r\n"

#: RFC 2449 §4: the first line of a response, CRLF included.
MAX_STATUS_LINE = 512


class Code:
    """Response codes, sent only to clients that may see them (all do: we announce
    RESP-CODES and AUTH-RESP-CODE in CAPA)."""

    # RFC 2449 §8.1.1: "the maildrop is locked by another POP3 session"
    IN_USE = "IN-USE"
    # RFC 3206 §4: a temporary problem on the server; trying later may work.
    SYS_TEMP = "SYS/TEMP"
    # RFC 3206 §4: a permanent problem on the server.
    SYS_PERM = "SYS/PERM"
    # RFC 3206 §5: "a problem with the user's credentials ... or an attempt to
    # authenticate in violation of policy".
    AUTH = "AUTH"


@dataclass(frozen=True, slots=True)
class Reply:
    """A single-line response.  ``text`` may hold ``{name}`` holes: see ``format``."""

    ok: bool
    code: str | None
    text: str

    def format(self, **values: Any) -> Reply:
        return replace(self, text=self.text.format(**values))

    def encode(self) -> bytes:
        head = "+OK" if self.ok else "-ERR"
        if self.code:
            head += f" [{self.code}]"
        text = " ".join(self.text.split())  # never a CR or LF inside a response line
        line = (f"{head} {text}" if text else head).encode("utf-8", "replace")
        return line[: MAX_STATUS_LINE - 2] + CRLF


def dot_stuff(body: bytes) -> bytes:
    """The body of a multi-line response: every line ends with CRLF, and a line that
    begins with "." gets one more (RFC 1939 §3: 'If any line of the multi-line
    response begins with the termination octet, the line is "byte-stuffed" by
    pre-pending the termination octet to that line').  Lines that end in a bare LF
    (a file dropped into the Maildir by another program) are sent with CRLF."""
    if not body:
        return b""
    if body.count(b"\n") != body.count(b"\r\n"):
        body = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not body.endswith(CRLF):
        body += CRLF
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body


@dataclass(frozen=True, slots=True)
class MultiLine:
    """A positive status line, then ``body``, then the terminating "." line.  ``body``
    is raw octets, dot-stuffed when encoded, unless ``stuffed`` says that was done
    already (a large message is stuffed in a worker thread)."""

    status: Reply
    body: bytes = b""
    stuffed: bool = False

    @property
    def ok(self) -> bool:
        return self.status.ok

    @classmethod
    def of_lines(cls, status: Reply, lines: Iterable[str]) -> MultiLine:
        return cls(status, b"".join(line.encode("utf-8") + CRLF for line in lines))

    def chunks(self) -> tuple[bytes, bytes, bytes]:
        """The wire form in three pieces, so that a large body is not copied again."""
        return self.status.encode(), self.body if self.stuffed else dot_stuff(self.body), b"." + CRLF

    def encode(self) -> bytes:
        return b"".join(self.chunks())


@dataclass(frozen=True, slots=True)
class Continuation:
    """A SASL challenge: "+" SP base64 CRLF (RFC 5034 §4)."""

    challenge: bytes = b""

    @property
    def ok(self) -> bool:
        return True

    def encode(self) -> bytes:
        return b"+ " + base64.b64encode(self.challenge) + CRLF


Response = Reply | MultiLine | Continuation


class R:
    """The catalogue: every response the server sends comes from here."""

    GREETING = Reply(True, None, "{hostname} Waypost POP3 server ready")
    # -- refused by the line buffer and the parser (the session goes on) --
    LINE_TOO_LONG = Reply(False, None, "Line too long")
    EMPTY_COMMAND = Reply(False, None, "Empty command")
    UNKNOWN_COMMAND = Reply(False, None, "Unknown command")
    SYNTAX = Reply(False, None, "Syntax error in arguments")
    EIGHT_BIT = Reply(False, None, "8-bit octets are not allowed here")
    CONTROL = Reply(False, None, "Control characters are not allowed")
    BAD_UTF8 = Reply(False, None, "Argument is not valid UTF-8")
    BAD_NUMBER = Reply(False, None, "Invalid number")
    ARGUMENT_TOO_LONG = Reply(False, None, "Argument too long")
    BAD_BASE64 = Reply(False, None, "Invalid base64 data")
    TOO_MANY_BAD = Reply(False, None, "Too many bad commands, closing connection")
    # -- wrong state (state.refusal): one fixed reply each --
    NOT_LOGGED_IN = Reply(False, None, "Command not valid before login")
    ALREADY_LOGGED_IN = Reply(False, None, "Command not valid after login")
    USER_FIRST = Reply(False, None, "Send USER first")
    # -- AUTHORIZATION --
    USER_OK = Reply(True, None, "Send PASS")
    LOGGED_IN = Reply(True, None, "Logged in, {count} messages ({size} octets)")
    LOGIN_FAILED = Reply(False, Code.AUTH, "Authentication failed")
    PLAINTEXT_DISABLED = Reply(False, Code.AUTH, "Plain-text login is allowed only after STLS")
    AUTHZID_REFUSED = Reply(False, Code.AUTH, "Logging in as another user is not allowed")
    BAD_PLAIN = Reply(False, None, "Malformed PLAIN response")
    UNSUPPORTED_MECHANISM = Reply(False, None, "Unsupported authentication mechanism")
    AUTH_CANCELLED = Reply(False, None, "Authentication cancelled")
    MECHANISMS = Reply(True, None, "Mechanisms follow")
    IN_USE = Reply(False, Code.IN_USE, "Maildrop is locked by another POP3 session")
    # The account was removed, disabled or made again under its name since the login
    # (RFC 3206 §4 AUTH: the authorization is void); the session is closed, nothing removed.
    ACCOUNT_GONE = Reply(False, Code.AUTH, "The account was removed or changed; log in again")
    LOGIN_UNAVAILABLE = Reply(False, Code.SYS_TEMP, "Cannot open the maildrop now, try again later")
    STLS_BEGIN = Reply(True, None, "Begin TLS negotiation")
    STLS_ACTIVE = Reply(False, None, "TLS is already active")
    STLS_UNAVAILABLE = Reply(False, None, "TLS is not available")
    # -- any state --
    CAPA = Reply(True, None, "Capability list follows")
    BYE = Reply(True, None, "{hostname} Waypost POP3 server signing off")
    # -- TRANSACTION --
    STAT = Reply(True, None, "{count} {size}")
    LIST_ALL = Reply(True, None, "{count} messages ({size} octets)")
    LIST_ONE = Reply(True, None, "{number} {size}")
    UIDL_ALL = Reply(True, None, "Unique-id listing follows")
    UIDL_ONE = Reply(True, None, "{number} {uid}")
    RETR = Reply(True, None, "{size} octets")
    TOP = Reply(True, None, "Top of message follows")
    DELE = Reply(True, None, "Message {number} deleted")
    RSET = Reply(True, None, "Maildrop has {count} messages ({size} octets)")
    NOOP = Reply(True, None, "")
    NO_SUCH_MESSAGE = Reply(False, None, "No such message")
    MESSAGE_DELETED = Reply(False, None, "Message {number} already deleted")
    MESSAGE_GONE = Reply(False, None, "Message {number} was removed by another session")
    # -- UPDATE (RFC 1939 §6) --
    UPDATE_FAILED = Reply(False, Code.SYS_TEMP, "Some deleted messages were not removed")
    # -- the server's own trouble --
    SHUTTING_DOWN = Reply(False, Code.SYS_TEMP, "Server shutting down")
    INTERNAL_ERROR = Reply(False, Code.SYS_TEMP, "Internal error")
