"""SMTP replies, one catalogue: (code, enhanced status, text), used by the server and
the tests (tests assert code and enhanced status, not prose).

Enhanced status codes: RFC 3463; their use in replies: RFC 2034 (ENHANCEDSTATUSCODES).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Reply", "R", "default_enhanced"]


class Reply(NamedTuple):
    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"

    def with_text(self, text: str) -> "Reply":
        return Reply(self.code, self.status, text)


class R:
    OK = Reply(250, "2.0.0", "OK")
    SENDER_OK = Reply(250, "2.1.0", "Sender OK")
    RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
    QUEUED = Reply(250, "2.0.0", "OK: queued as {id}")
    DATA_GO = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
    BYE = Reply(221, "2.0.0", "Bye")
    HELP = Reply(214, "2.0.0", "Commands: {commands}")
    # 4xx
    TIMEOUT = Reply(421, "4.4.2", "Timeout waiting for data; closing connection")
    TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors; closing connection")
    # The account logged in to was removed, disabled or made again under its name: the
    # login is void, and the server closes (421, RFC 5321 §3.8).
    ACCOUNT_GONE = Reply(421, "4.7.0", "The account was removed or changed; log in again; closing connection")
    SHUTTING_DOWN = Reply(421, "4.3.0", "Server shutting down; try again later")
    LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing; try again later")
    NO_STORAGE = Reply(452, "4.3.1", "Insufficient system storage; try again later")
    TOO_MANY_RCPTS = Reply(452, "4.5.3", "Too many recipients")
    MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full (over quota); try again later")
    TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")
    # 5xx: syntax and sequence (RFC 5321 §4.2.4, RFC 3463 X.5.x)
    LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
    BARE_LF = Reply(500, "5.5.2", "Bare CR or LF in command; lines end with CRLF (RFC 5321 §2.3.8)")
    NUL_IN_COMMAND = Reply(500, "5.5.2", "NUL character in command")
    BAD_SYNTAX = Reply(500, "5.5.2", "Syntax error")
    UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command not recognized")
    NOT_8BIT = Reply(500, "5.5.2", "Non-ASCII characters in command")
    PARAM_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters")
    BAD_SENDER = Reply(501, "5.1.7", "Bad sender address syntax")
    BAD_RCPT = Reply(501, "5.1.3", "Bad recipient address syntax")
    NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
    HELP_UNKNOWN = Reply(504, "5.5.4", "HELP topic unknown")
    VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address")
    NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
    NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
    NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")
    NESTED_MAIL = Reply(503, "5.5.1", "Sender already given")
    AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
    AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
    ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
    TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
    # RFC 4468 §6 (BURL)
    BURL_MORE = Reply(250, "2.5.0", "Waiting for additional BURL or BDAT commands")
    BURL_FAILED = Reply(554, "5.6.6", "IMAP URL resolution failed")
    UNKNOWN_PARAM = Reply(555, "5.5.4", "Parameter not recognized or not implemented")
    BODY_8BIT = Reply(554, "5.6.1", "Message contains 8-bit data but BODY=8BITMIME was not declared (RFC 6152)")
    BODY_BARE_LF = Reply(554, "5.6.0", "Message contains a bare CR or LF (RFC 5321 §2.3.8)")
    BODY_NUL = Reply(554, "5.6.0", "Message contains a NUL character")
    BODY_LONG_LINE = Reply(554, "5.6.0", "Message has a line longer than 998 characters (RFC 5322 §2.1.1)")
    # RFC 6409 §6.1: a submission server may refuse a sender the user may not use.
    SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
    FROM_NOT_OWNED = Reply(550, "5.7.1", "From: address not owned by the authenticated user")
    SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8 (RFC 6531)")


# RFC 3463 classes for replies whose text does not carry a code of its own.
_DEFAULT = {
    211: "2.0.0", 214: "2.0.0", 220: "2.0.0", 221: "2.0.0", 235: "2.7.0", 250: "2.0.0", 251: "2.1.5", 252: "2.1.5",
    421: "4.3.0", 450: "4.2.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0", 455: "4.5.4",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 530: "5.7.0", 534: "5.7.9",
    535: "5.7.8", 538: "5.7.11", 550: "5.0.0", 551: "5.1.6", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0",
    555: "5.5.4",
}


def default_enhanced(code: int) -> str:
    return _DEFAULT.get(code, f"{code // 100}.0.0")
