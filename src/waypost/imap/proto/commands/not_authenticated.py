"""Commands legal only before authentication: STARTTLS, AUTHENTICATE, LOGIN
(RFC 3501 §6.2), AUTHENTICATE with an initial response (RFC 4959)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader, Reason
from .base import Command, CommandParser

__all__ = ["PARSERS", "Authenticate", "Login", "StartTls", "decode_base64"]

# base64          = *(4base64-char) [base64-terminal]
# base64-char     = ALPHA / DIGIT / "+" / "/"
# base64-terminal = (2base64-char "==") / (3base64-char "=")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


# command-nonauth = login / authenticate / "STARTTLS"
@dataclass(frozen=True, slots=True)
class StartTls(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """``initial_response`` is the decoded SASL-IR data (``b""`` for "="), or None
    when the client waits for the server's first challenge."""

    mechanism: str
    initial_response: bytes | None = None
    name: ClassVar[str] = "AUTHENTICATE"

    def __repr__(self) -> str:  # the initial response may hold a password
        hidden = "None" if self.initial_response is None else "<hidden>"
        return f"Authenticate(tag={self.tag!r}, mechanism={self.mechanism!r}, initial_response={hidden})"


@dataclass(frozen=True, slots=True)
class Login(Command):
    """``password`` is decoded as UTF-8 with ``surrogateescape``, so any octets the
    client sent survive: ``password.encode("utf-8", "surrogateescape")``."""

    userid: str
    password: str
    name: ClassVar[str] = "LOGIN"

    def __repr__(self) -> str:  # never log a password
        return f"Login(tag={self.tag!r}, userid={self.userid!r}, password=<hidden>)"


def decode_base64(r: Reader, token: bytes) -> bytes:
    """Strict base64 (RFC 3501 §9 base64); anything else is BAD."""
    if len(token) % 4:
        r.fail(Reason.BAD_BASE64, "base64 length is not a multiple of 4")
    try:
        return base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        r.fail(Reason.BAD_BASE64, "invalid base64")


def _authenticate(r: Reader, tag: str) -> Command:
    # RFC 4959 §7:
    # authenticate  = "AUTHENTICATE" SP auth-type [SP (base64 / "=")]
    #                 *(CRLF base64)
    # auth-type       = atom
    r.sp()
    mechanism = r.keyword("SASL mechanism")
    if not r.skip_sp():
        return Authenticate(tag, mechanism)
    start = r.pos
    m = _BASE64.match(r.buf, r.pos, r.end)
    token = m.group() if m is not None else b""
    if not token:
        r.fail_here("initial response (base64 or '=')")
    r.pos = start + len(token)
    if token == b"=":
        return Authenticate(tag, mechanism, b"")
    return Authenticate(tag, mechanism, decode_base64(r, token))


def _login(r: Reader, tag: str) -> Command:
    # login           = "LOGIN" SP userid SP password
    # userid          = astring
    # password        = astring
    # ... with "%" and "*" also taken unquoted (``Reader.login_astring``).
    r.sp()
    userid = r.text(r.login_astring("user name"), "user name")
    r.sp()
    password = r.login_astring("password").decode("utf-8", "surrogateescape")
    return Login(tag, userid, password)


PARSERS: dict[str, CommandParser] = {
    "STARTTLS": lambda r, tag: StartTls(tag),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
}
