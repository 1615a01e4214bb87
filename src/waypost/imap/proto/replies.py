"""IMAP replies, one catalogue (STYLE point 9): (status, response code, text), used
by the parser's errors, the state table, the server and the tests.  Tests assert
the status and the code, not the prose.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from .lexer import Reason
from .response import Code, Codes, ContinueRequest, ResponseCode, Tagged, Untagged

__all__ = ["BAD_COMMAND", "R", "Reply"]


class Reply(NamedTuple):
    status: Literal["OK", "NO", "BAD", "BYE", "+"]
    code: ResponseCode | None
    text: str

    def tagged(self, tag: str, *, code: ResponseCode | None = None, text: str | None = None) -> Tagged:
        """This reply as the completion of command ``tag``."""
        if self.status not in ("OK", "NO", "BAD"):
            raise ValueError(f"a {self.status} reply is never tagged")
        return Tagged(tag, self.status, text or self.text, code or self.code)

    def untagged(self, *, code: ResponseCode | None = None, text: str | None = None) -> Untagged:
        if self.status == "+":
            raise ValueError("a continuation request is not a status response")
        return Untagged(self.status, text or self.text, code or self.code)

    def to(self, tag: str | None, *, code: ResponseCode | None = None, text: str | None = None) -> Tagged | Untagged:
        """Tagged when the tag is known, else untagged (``* BAD``)."""
        if tag is None:
            return self.untagged(code=code, text=text)
        return self.tagged(tag, code=code, text=text)

    def continuation(self) -> ContinueRequest:
        if self.status != "+":
            raise ValueError("not a continuation request")
        return ContinueRequest(self.text)


class R:
    # -- continuation requests (RFC 3501 §7.5) --
    CONTINUE_LITERAL = Reply("+", None, "Ready for literal data")
    IDLING = Reply("+", None, "idling")
    # -- refusals by the parser: BAD, or * BAD when the tag cannot be read --
    SYNTAX = Reply("BAD", None, "Syntax error")
    EMPTY_LINE = Reply("BAD", None, "Empty command line")
    BAD_TAG = Reply("BAD", None, "Invalid tag")
    UNKNOWN_COMMAND = Reply("BAD", None, "Unknown command")
    LINE_TOO_LONG = Reply("BAD", None, "Command line too long")
    COMMAND_TOO_LONG = Reply("BAD", None, "Command too long")
    BARE_LF = Reply("BAD", None, "Lines end with CRLF")
    EIGHT_BIT = Reply("BAD", None, "8-bit octets are allowed only in literals")
    NUL = Reply("BAD", None, "NUL octets are not allowed")
    UNTERMINATED_QUOTED = Reply("BAD", None, "Unterminated quoted string")
    BAD_LITERAL = Reply("BAD", None, "Invalid literal")
    UNBALANCED_PARENTHESES = Reply("BAD", None, "Unbalanced parentheses")
    TOO_DEEP = Reply("BAD", None, "Too deeply nested")
    BAD_SEQUENCE = Reply("BAD", None, "Invalid sequence set")
    TOO_MANY_SEQUENCE_ITEMS = Reply("BAD", Codes.LIMIT, "Too many items in sequence set")
    BAD_NUMBER = Reply("BAD", None, "Invalid number")
    BAD_DATE = Reply("BAD", None, "Invalid date")
    BAD_FLAG = Reply("BAD", None, "Invalid flag")
    BAD_BASE64 = Reply("BAD", None, "Invalid base64")
    BAD_STRING = Reply("BAD", None, "Invalid string")
    UNKNOWN_OPTION = Reply("BAD", None, "Unknown option")
    TOO_MANY_MESSAGES = Reply("BAD", Codes.LIMIT, "Too many messages in one APPEND")
    # RFC 7888 §4 / RFC 7889: a literal larger than we take.  Synchronizing: the
    # client has sent nothing yet, the command simply fails.  Non-synchronizing:
    # the command is rejected and its data skipped.
    LITERAL_TOO_LARGE = Reply("NO", Codes.TOOBIG, "Literal too large")
    NONSYNC_LITERAL_TOO_LARGE = Reply("BAD", Codes.TOOBIG, "Non-synchronizing literal too large")
    # RFC 3501 §6.4.4: an unsupported charset is NO, not BAD.
    BAD_CHARSET = Reply("NO", Code("BADCHARSET"), "Unsupported charset")
    # -- wrong state (state.refusal) --
    NOT_AUTHENTICATED = Reply("BAD", None, "Log in first")
    ALREADY_AUTHENTICATED = Reply("BAD", None, "Already authenticated")
    NO_MAILBOX_SELECTED = Reply("BAD", None, "No mailbox selected")
    LOGGING_OUT = Reply("BAD", None, "Logging out")
    # -- IDLE (RFC 2177) and AUTHENTICATE (RFC 3501 §6.2.2) exchanges --
    EXPECTED_DONE = Reply("BAD", None, "Expected DONE")
    AUTHENTICATION_CANCELLED = Reply("BAD", None, "Authentication cancelled")
    # -- handlers: RFC 3501 §9 seq-number, "The server should respond with a
    #    tagged BAD response to a command that uses a message sequence number
    #    greater than the number of messages in the selected mailbox" --
    NO_SUCH_MESSAGE = Reply("BAD", None, "No such message")
    # -- COMPRESS (RFC 4978 §3) --
    COMPRESS_ACTIVE = Reply("OK", None, "DEFLATE active")
    COMPRESSION_ACTIVE = Reply("NO", Code("COMPRESSIONACTIVE"), "Compression is already active")


#: The reply for each reason a command is BAD.
BAD_COMMAND: dict[Reason, Reply] = {
    Reason.SYNTAX: R.SYNTAX,
    Reason.EMPTY_LINE: R.EMPTY_LINE,
    Reason.BAD_TAG: R.BAD_TAG,
    Reason.UNKNOWN_COMMAND: R.UNKNOWN_COMMAND,
    Reason.LINE_TOO_LONG: R.LINE_TOO_LONG,
    Reason.COMMAND_TOO_LONG: R.COMMAND_TOO_LONG,
    Reason.BARE_LF: R.BARE_LF,
    Reason.EIGHT_BIT: R.EIGHT_BIT,
    Reason.NUL: R.NUL,
    Reason.UNTERMINATED_QUOTED: R.UNTERMINATED_QUOTED,
    Reason.BAD_LITERAL: R.BAD_LITERAL,
    Reason.UNBALANCED_PARENTHESES: R.UNBALANCED_PARENTHESES,
    Reason.TOO_DEEP: R.TOO_DEEP,
    Reason.BAD_SEQUENCE: R.BAD_SEQUENCE,
    Reason.TOO_MANY_SEQUENCE_ITEMS: R.TOO_MANY_SEQUENCE_ITEMS,
    Reason.BAD_NUMBER: R.BAD_NUMBER,
    Reason.BAD_DATE: R.BAD_DATE,
    Reason.BAD_FLAG: R.BAD_FLAG,
    Reason.BAD_BASE64: R.BAD_BASE64,
    Reason.BAD_STRING: R.BAD_STRING,
    Reason.UNKNOWN_OPTION: R.UNKNOWN_OPTION,
    Reason.EXPECTED_DONE: R.EXPECTED_DONE,
    Reason.TOO_MANY_MESSAGES: R.TOO_MANY_MESSAGES,
}
