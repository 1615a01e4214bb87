"""What one SMTP listener offers, and its limits.

STYLE point 8: every limit is a named parameter.  One frozen ``Params`` is built when
the listener starts (from ``[smtp]`` settings and the listener's ``Mode``) and handed to
the framing and the parser; the core never reads settings itself.

The four listeners share one grammar and differ in what they serve (``Mode``):

=========== =================================================================
SMTP        relay and final delivery (RFC 5321); ETRN (RFC 1985)
SUBMISSION  message submission (RFC 6409): AUTH before MAIL
ODMR        on-demand mail relay (RFC 2645): AUTH, then ATRN; no mail taken
LMTP        local delivery from another MTA (RFC 2033): LHLO, one reply per
            recipient after DATA / BDAT LAST
=========== =================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DEFAULT_PARAMS", "Mode", "Params"]


class Mode(enum.Enum):
    SMTP = "smtp"
    SUBMISSION = "submission"
    ODMR = "odmr"
    LMTP = "lmtp"


@dataclass(frozen=True, slots=True)
class Params:
    """Limits and offers of one listener.

    ``max_line_length``
        Octets in a line of message text, CRLF included (RFC 5321 §4.5.3.1.6: 1000).
        A command line may be as long, and never shorter than 512 (§4.5.3.1.4).
    ``max_message_size``
        Octets of one message (the SIZE we advertise, RFC 1870); above it: 552.
    ``max_auth_line``
        Octets of one line answering an AUTH challenge (base64, RFC 4954 §4).
    ``max_chunk_piece``
        The largest piece of message text the framing hands out at once: memory per
        session stays bounded whatever a client sends.
    ``smtputf8``
        Advertise SMTPUTF8 (RFC 6531) and take UTF-8 in commands.
    ``chunking``
        Advertise CHUNKING and take BDAT (RFC 3030).
    ``burl``
        Take BURL (RFC 4468) on the submission listener: ``BURL`` before AUTH, ``BURL
        imap`` after it (the IMAP URLs we resolve are our own store's, for the user
        who authenticated).
    """

    mode: Mode = Mode.SMTP
    max_line_length: int = 1000
    max_message_size: int = 50 * 1024 * 1024
    max_auth_line: int = 12000
    max_chunk_piece: int = 256 * 1024
    smtputf8: bool = True
    chunking: bool = True
    burl: bool = False

    def __post_init__(self) -> None:
        if self.max_line_length < 512:
            raise ValueError("Params.max_line_length: RFC 5321 §4.5.3.1.4 requires at least 512")
        if self.max_message_size < 1 or self.max_auth_line < 1 or self.max_chunk_piece < 16:
            raise ValueError("Params: sizes must be positive")

    @property
    def max_command_length(self) -> int:
        """Octets in one command line, CRLF included (RFC 5321 §4.5.3.1.4: at least 512)."""
        return max(self.max_line_length, 512)

    def verbs(self, *, tls_offered: bool) -> list[str]:
        """The commands this listener serves, in the order a session uses them (HELP)."""
        if self.mode is Mode.LMTP:
            out = ["LHLO"]
        else:
            out = ["EHLO", "HELO"]
        if tls_offered:
            out.append("STARTTLS")
        if self.mode is not Mode.LMTP:
            out.append("AUTH")
        if self.mode is Mode.ODMR:
            out += ["ATRN", "TURN"]
        else:
            out += ["MAIL", "RCPT", "DATA"]
            if self.chunking:
                out.append("BDAT")
            if self.burl and self.mode is Mode.SUBMISSION:
                out.append("BURL")
        out += ["RSET", "NOOP", "VRFY", "HELP", "QUIT"]
        if self.mode is Mode.SMTP:
            out.append("ETRN")
        return out

    def extensions(self, *, tls_offered: bool, auth: list[str], authenticated: bool = False) -> list[str]:
        """The EHLO (LHLO) keywords after the greeting line (RFC 5321 §4.1.1.1)."""
        lines = ["PIPELINING", f"SIZE {self.max_message_size}", "8BITMIME"]
        if self.smtputf8:
            lines.append("SMTPUTF8")
        lines += ["ENHANCEDSTATUSCODES", "DSN"]
        if self.chunking and self.mode is not Mode.ODMR:
            lines.append("CHUNKING")
        if self.mode is Mode.SMTP:
            lines.append("ETRN")
        if self.burl and self.mode is Mode.SUBMISSION:
            # RFC 4468 §3: the URL schemes are listed once the client has authenticated.
            lines.append("BURL imap" if authenticated else "BURL")
        if self.mode is Mode.ODMR:
            lines.append("ATRN")
        if tls_offered:
            lines.append("STARTTLS")
        if auth:
            lines.append("AUTH " + " ".join(auth))
        return lines


DEFAULT_PARAMS = Params()
