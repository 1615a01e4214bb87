"""The tokens of IMAP4rev1 commands: atoms, strings, numbers, lists, dates, flags.

IMAP has no lexical layer separate from its grammar ("[" is an atom character but
delimits a section; "]" ends an astring but not an atom), so this is a cursor
(``Reader``) with one method per ABNF token, called by the command grammars.  A
``Reader`` works on one *frame*: the octets of one command that ``framing`` has
found, or, while a literal is still awaited, the command up to that literal.
Reading past the frame raises ``Incomplete``; anything else that does not match the
grammar raises ``SyntaxFailure`` with a ``Reason``.  Neither leaves this package:
``parser`` turns them into ``NeedMore`` and ``BadCommand``.

All ABNF quoted below is RFC 3501 §9 unless another RFC is named.
"""

from __future__ import annotations

import enum
import re
from datetime import date, datetime, timedelta, timezone
from typing import NoReturn

from .params import Params
from .sequence import SAVED, SEQUENCE_CHARS, SequenceError, SequenceSet

__all__ = ["Incomplete", "Reader", "Reason", "SyntaxFailure"]


class Reason(enum.Enum):
    """Why a command is BAD; the reply text for each is in ``replies``."""

    SYNTAX = "syntax"
    EMPTY_LINE = "empty-line"
    BAD_TAG = "bad-tag"
    UNKNOWN_COMMAND = "unknown-command"
    LINE_TOO_LONG = "line-too-long"
    COMMAND_TOO_LONG = "command-too-long"
    BARE_LF = "bare-lf"
    EIGHT_BIT = "8-bit"
    NUL = "nul"
    UNTERMINATED_QUOTED = "unterminated-quoted"
    BAD_LITERAL = "bad-literal"
    UNBALANCED_PARENTHESES = "unbalanced-parentheses"
    TOO_DEEP = "too-deep"
    BAD_SEQUENCE = "bad-sequence"
    TOO_MANY_SEQUENCE_ITEMS = "too-many-sequence-items"
    BAD_NUMBER = "bad-number"
    BAD_DATE = "bad-date"
    BAD_FLAG = "bad-flag"
    BAD_BASE64 = "bad-base64"
    BAD_STRING = "bad-string"
    UNKNOWN_OPTION = "unknown-option"
    EXPECTED_DONE = "expected-done"
    TOO_MANY_MESSAGES = "too-many-messages"


class SyntaxFailure(Exception):
    """The frame does not match the grammar at ``pos``."""

    def __init__(self, reason: Reason, detail: str, pos: int) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.pos = pos


class Incomplete(Exception):
    """The grammar needs octets beyond the end of the frame (a literal not yet read)."""


class CharsetFailure(Exception):
    """SEARCH named a charset we cannot decode (answered NO, not BAD)."""

    def __init__(self, charset: str) -> None:
        super().__init__(charset)
        self.charset = charset


SP = 0x20
CR = 0x0D
LF = 0x0A
DQUOTE = 0x22
BACKSLASH = 0x5C
LPAREN = 0x28
RPAREN = 0x29
LBRACE = 0x7B

# atom-specials   = "(" / ")" / "{" / SP / CTL / list-wildcards /
#                   quoted-specials / resp-specials
# ATOM-CHAR       = <any CHAR except atom-specials>
# (CHAR is %x01-7F, CTL is %x00-1F / %x7F; 8-bit octets are not CHARs at all.)
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# ASTRING-CHAR   = ATOM-CHAR / resp-specials
_ASTRING = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# LOGIN's userid and password: ASTRING-CHAR plus the list-wildcards "%" and "*".
# Not RFC 3501 grammar, but what real clients send (imaplib writes
# ``LOGIN info%client2.com secret``) and what other servers take: seed 001's
# ``name%domain`` login must work from them.
_LOGIN_ASTRING = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
# list-mailbox    = 1*list-char / string
# list-char       = ATOM-CHAR / list-wildcards / resp-specials
_LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
# QUOTED-CHAR     = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials
_QUOTED_RUN = re.compile(rb'[^"\\\r\n\x00]*')
# literal         = "{" number "}" CRLF *CHAR8
# RFC 7888 §8:  literal = "{" number ["+"] "}" CRLF *CHAR8
_LITERAL_HEADER = re.compile(rb"\{([0-9]+)(\+?)\}\r\n")
_LITERAL8_HEADER = re.compile(rb"~\{([0-9]+)(\+?)\}\r\n")
_DIGITS = re.compile(rb"[0-9]+")
# date-text       = date-day "-" date-month "-" date-year
# date-day        = 1*2DIGIT
# date-year       = 4DIGIT
_DATE_TEXT = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
# date-time       = DQUOTE date-day-fixed "-" date-month "-" date-year
#                   SP time SP zone DQUOTE
# date-day-fixed  = (SP DIGIT) / 2DIGIT
# time            = 2DIGIT ":" 2DIGIT ":" 2DIGIT
# zone            = ("+" / "-") 4DIGIT
_DATE_TIME = re.compile(
    rb'"( [0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
# date-month      = "Jan" / "Feb" / "Mar" / "Apr" / "May" / "Jun" /
#                   "Jul" / "Aug" / "Sep" / "Oct" / "Nov" / "Dec"
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

# flag            = "\Answered" / "\Flagged" / "\Deleted" /
#                   "\Seen" / "\Draft" / flag-keyword / flag-extension
#                     ; Does not include "\Recent"
SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}
RECENT = "\\Recent"

#: RFC 7162 §7: mod-sequence-value = 1*DIGIT ; Positive unsigned 63-bit integer
MAX_MODSEQ = 2**63 - 1


class Reader:
    """A cursor over one frame ``buf[pos:end]`` of a client command."""

    __slots__ = ("buf", "depth", "end", "parens", "params", "pos")

    def __init__(self, buf: bytes, end: int, params: Params, pos: int = 0) -> None:
        self.buf = buf
        self.end = end
        self.params = params
        self.pos = pos
        #: nesting levels in use: parentheses plus NOT/OR search keys
        self.depth = 0
        #: parentheses open
        self.parens = 0

    # -- failures ---------------------------------------------------------------

    def fail(self, reason: Reason, detail: str) -> NoReturn:
        raise SyntaxFailure(reason, f"{detail} (octet {self.pos})", self.pos)

    def fail_here(self, expected: str) -> NoReturn:
        """The octet at the cursor is not what the grammar wants; say why."""
        if self.pos >= self.end:
            raise Incomplete()
        c = self.buf[self.pos]
        if c >= 0x80:
            self.fail(Reason.EIGHT_BIT, f"8-bit octet where {expected} was expected")
        if c == 0:
            self.fail(Reason.NUL, "NUL octet in command")
        if c == CR:
            if self.parens > 0:
                self.fail(Reason.UNBALANCED_PARENTHESES, f"line ends inside a parenthesised list, expected {expected}")
            self.fail(Reason.SYNTAX, f"line ends where {expected} was expected")
        if c == RPAREN and self.parens == 0:
            self.fail(Reason.UNBALANCED_PARENTHESES, "')' without '('")
        self.fail(Reason.SYNTAX, f"expected {expected}, found {chr(c)!r}")

    # -- single octets ----------------------------------------------------------

    def peek(self) -> int:
        if self.pos >= self.end:
            raise Incomplete()
        return self.buf[self.pos]

    def expect(self, octet: int, what: str) -> None:
        if self.peek() != octet:
            self.fail_here(what)
        self.pos += 1

    def sp(self) -> None:
        """SP: exactly one space (RFC 3501 §9 note 2: no TAB, no extra spaces)."""
        self.expect(SP, "SP")

    def skip_sp(self) -> bool:
        """Consume one SP if there is one."""
        if self.peek() == SP:
            self.pos += 1
            return True
        return False

    def crlf(self) -> None:
        """CRLF that ends the command; anything else left over is an error."""
        c = self.peek()
        if c == RPAREN:
            self.fail(Reason.UNBALANCED_PARENTHESES, "')' without '('")
        if c != CR:
            self.fail_here("end of line")
        self.pos += 1
        self.expect(LF, "LF")

    # -- parenthesised lists ----------------------------------------------------

    def open(self) -> None:
        """ "(" of a parenthesised list, counted against ``max_nesting_depth``."""
        self.expect(LPAREN, "'('")
        self.parens += 1
        self.enter()

    def close(self) -> None:
        if self.peek() != RPAREN:
            if self.peek() == CR:
                self.fail(Reason.UNBALANCED_PARENTHESES, "missing ')'")
            self.fail_here("')'")
        self.pos += 1
        self.parens -= 1
        self.depth -= 1

    def enter(self) -> None:
        """One more level of nesting (a "(" or a NOT/OR search key)."""
        self.depth += 1
        if self.depth > self.params.max_nesting_depth:
            self.fail(Reason.TOO_DEEP, f"nested deeper than {self.params.max_nesting_depth} levels")

    def leave(self) -> None:
        self.depth -= 1

    def try_close(self) -> bool:
        """Consume ")" if it is next."""
        if self.peek() == RPAREN:
            self.pos += 1
            self.parens -= 1
            self.depth -= 1
            return True
        return False

    # -- atoms ------------------------------------------------------------------

    def _run(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail_here(what)
        self.pos = m.end()
        if self.pos < self.end and self.buf[self.pos] >= 0x80:
            self.fail(Reason.EIGHT_BIT, f"8-bit octet in {what}")
        return m.group()

    def atom(self, what: str = "atom") -> bytes:
        """atom = 1*ATOM-CHAR"""
        return self._run(_ATOM, what)

    def keyword(self, what: str = "keyword") -> str:
        """An atom compared case-insensitively (command names, search keys...)."""
        return self.atom(what).decode("ascii").upper()

    def peek_keyword(self) -> str | None:
        """The atom at the cursor, upper-cased, without consuming it."""
        m = _ATOM.match(self.buf, self.pos, self.end)
        return None if m is None else m.group().decode("ascii").upper()

    def take(self, word: str) -> bool:
        """Consume ``word`` (case-insensitive) if it is the next atom."""
        m = _ATOM.match(self.buf, self.pos, self.end)
        if m is not None and m.group().upper() == word.encode("ascii"):
            self.pos = m.end()
            return True
        return False

    # -- strings ----------------------------------------------------------------

    def astring(self, what: str = "astring") -> bytes:
        """astring = 1*ASTRING-CHAR / string"""
        c = self.peek()
        if c == DQUOTE or c == LBRACE:
            return self.string(what)
        return self._run(_ASTRING, what)

    def login_astring(self, what: str = "astring") -> bytes:
        """An astring whose atom form may also hold "%" and "*" (``_LOGIN_ASTRING``)."""
        c = self.peek()
        if c == DQUOTE or c == LBRACE:
            return self.string(what)
        return self._run(_LOGIN_ASTRING, what)

    def string(self, what: str = "string") -> bytes:
        """string = quoted / literal"""
        c = self.peek()
        if c == DQUOTE:
            return self.quoted()
        if c == LBRACE:
            return self.literal()
        self.fail_here(what)

    def nstring(self, what: str = "string or NIL") -> bytes | None:
        """nstring = string / nil"""
        if self.take("NIL"):
            return None
        return self.string(what)

    def quoted(self) -> bytes:
        """quoted = DQUOTE *QUOTED-CHAR DQUOTE

        QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\\" quoted-specials
        TEXT-CHAR is a 7-bit CHAR; 8-bit octets are allowed only when UTF8=ACCEPT
        is enabled (RFC 6855 §3), and then must be UTF-8.
        """
        self.expect(DQUOTE, "'\"'")
        out = bytearray()
        buf, end = self.buf, self.end
        while True:
            m = _QUOTED_RUN.match(buf, self.pos, end)
            assert m is not None  # a "*" pattern always matches
            out += m.group()
            self.pos = m.end()
            if self.pos >= end:
                self.fail(Reason.UNTERMINATED_QUOTED, "quoted string not terminated")
            c = buf[self.pos]
            if c == DQUOTE:
                self.pos += 1
                break
            if c == BACKSLASH:
                nxt = buf[self.pos + 1] if self.pos + 1 < end else -1
                if nxt != DQUOTE and nxt != BACKSLASH:
                    self.fail(Reason.SYNTAX, "'\\' in a quoted string escapes only '\"' and '\\'")
                out.append(nxt)
                self.pos += 2
                continue
            if c == 0:
                self.fail(Reason.NUL, "NUL octet in quoted string")
            self.fail(Reason.UNTERMINATED_QUOTED, "quoted string not terminated")
        if not out.isascii():
            if not self.params.utf8:
                self.fail(Reason.EIGHT_BIT, "8-bit octet in quoted string (use a literal)")
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(Reason.EIGHT_BIT, "quoted string is not UTF-8")
        return bytes(out)

    def literal(self) -> bytes:
        """literal = "{" number ["+"] "}" CRLF *CHAR8   (RFC 3501 §9, RFC 7888 §8)

        CHAR8 = %x01-ff: a literal may carry 8-bit octets but not NUL (binary data
        needs RFC 3516 literal8, ``literal8``).
        """
        at = self.pos
        data = self._literal_data(_LITERAL_HEADER)
        if b"\x00" in data:
            self.pos = at
            self.fail(Reason.NUL, "NUL octet in literal")
        return data

    def literal8(self) -> bytes:
        """literal8 = "~{" number ["+"] "}" CRLF *OCTET   (RFC 3516 §4.1, RFC 7888 §8)"""
        return self._literal_data(_LITERAL8_HEADER)

    def _literal_data(self, header: re.Pattern[bytes]) -> bytes:
        m = header.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail(Reason.BAD_LITERAL, "bad literal syntax")
        digits = m.group(1)
        if len(digits) > 18:  # framing refuses such a literal before its data
            raise Incomplete()
        size = int(digits)
        start = m.end()
        if start + size > self.end:
            raise Incomplete()
        data = self.buf[start : start + size]
        self.pos = start + size
        return bytes(data)

    def list_mailbox(self) -> bytes:
        """list-mailbox = 1*list-char / string"""
        c = self.peek()
        if c == DQUOTE or c == LBRACE:
            return self.string("mailbox pattern")
        return self._run(_LIST_CHARS, "mailbox pattern")

    # -- text decoding ----------------------------------------------------------

    def text(self, raw: bytes, what: str) -> str:
        """Octets of a string as text: UTF-8, strictly (8-bit can only come from a
        literal or, with UTF8=ACCEPT, a quoted string)."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(Reason.BAD_STRING, f"{what} is not UTF-8")

    def mailbox(self) -> str:
        """mailbox = "INBOX" / astring

        ; INBOX is case-insensitive.  All case variants of INBOX (e.g., "iNbOx")
        ; MUST be interpreted as INBOX not as an astring.

        The name stays in its wire form (modified UTF-7, RFC 3501 §5.1.3); decoding
        it is the caller's choice (``utf7_decode``).
        """
        name = self.text(self.astring("mailbox name"), "mailbox name")
        return "INBOX" if name.upper() == "INBOX" else name

    # -- numbers ----------------------------------------------------------------

    def _digits(self, what: str, max_digits: int) -> bytes:
        m = _DIGITS.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail_here(what)
        if m.end() - m.start() > max_digits:
            self.fail(Reason.BAD_NUMBER, f"{what} is too large")
        self.pos = m.end()
        return m.group()

    def number(self, what: str = "number") -> int:
        """number = 1*DIGIT ; Unsigned 32-bit integer (0 <= n < 4,294,967,296)"""
        start = self.pos
        value = int(self._digits(what, 10))
        if value > 4_294_967_295:
            self.pos = start
            self.fail(Reason.BAD_NUMBER, f"{what} is larger than 32 bits")
        return value

    def nz_number(self, what: str = "non-zero number") -> int:
        """nz-number = digit-nz *DIGIT ; Non-zero unsigned 32-bit integer"""
        start = self.pos
        if self.peek() == 0x30:
            self.fail(Reason.BAD_NUMBER, f"{what} must not start with 0")
        value = self.number(what)
        if value == 0:
            self.pos = start
            self.fail(Reason.BAD_NUMBER, f"{what} must not be 0")
        return value

    def mod_sequence(self, *, zero: bool) -> int:
        """RFC 7162 §7:
        mod-sequence-value  = 1*DIGIT ; Positive unsigned 63-bit integer
        mod-sequence-valzer = "0" / mod-sequence-value
        """
        start = self.pos
        value = int(self._digits("mod-sequence", 19))
        if value > MAX_MODSEQ or (value == 0 and not zero):
            self.pos = start
            self.fail(Reason.BAD_NUMBER, "mod-sequence out of range")
        return value

    def sequence_set(self) -> SequenceSet:
        """sequence-set = (seq-number / seq-range) *("," sequence-set)

        Limited to ``Params.max_sequence_items`` items.  RFC 5182 §4:
        sequence-set =/ seq-last-command; seq-last-command = "$" (``SAVED``).
        """
        if self.peek() == 0x24:
            self.pos += 1
            return SAVED
        m = SEQUENCE_CHARS.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail_here("sequence set")
        try:
            value = SequenceSet.parse(m.group(), max_items=self.params.max_sequence_items)
        except SequenceError as e:
            self.fail(Reason.TOO_MANY_SEQUENCE_ITEMS if e.too_many else Reason.BAD_SEQUENCE, str(e))
        self.pos = m.end()
        return value

    # -- dates ------------------------------------------------------------------

    def date(self) -> date:
        """date = date-text / DQUOTE date-text DQUOTE"""
        quoted = self.peek() == DQUOTE
        if quoted:
            self.pos += 1
        m = _DATE_TEXT.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail(Reason.BAD_DATE, "expected a date like 1-Feb-1994")
        month = m.group(2).decode("ascii").upper()
        if month not in MONTHS:
            self.fail(Reason.BAD_DATE, f"unknown month {month!r}")
        try:
            value = date(int(m.group(3)), MONTHS.index(month) + 1, int(m.group(1)))
        except ValueError:
            self.fail(Reason.BAD_DATE, "no such date")
        self.pos = m.end()
        if quoted:
            self.expect(DQUOTE, "'\"' closing the date")
        return value

    def date_time(self) -> datetime:
        """date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
                       SP time SP zone DQUOTE"""
        m = _DATE_TIME.match(self.buf, self.pos, self.end)
        if m is None:
            self.fail(Reason.BAD_DATE, 'expected a date-time like "17-Jul-1996 02:44:25 -0700"')
        g = m.groups()
        month = g[1].decode("ascii").upper()
        if month not in MONTHS:
            self.fail(Reason.BAD_DATE, f"unknown month {month!r}")
        zh, zm = int(g[7]), int(g[8])
        if zm > 59:
            self.fail(Reason.BAD_DATE, "bad time zone")
        offset = timedelta(hours=zh, minutes=zm)
        try:
            value = datetime(
                int(g[2]),
                MONTHS.index(month) + 1,
                int(g[0]),
                int(g[3]),
                int(g[4]),
                int(g[5]),
                tzinfo=timezone(-offset if g[6] == b"-" else offset),
            )
        except ValueError:
            self.fail(Reason.BAD_DATE, "no such date or time")
        self.pos = m.end()
        return value

    # -- flags ------------------------------------------------------------------

    def flag(self) -> str:
        """flag = "\\Answered" / ... / flag-keyword / flag-extension

        flag-keyword = atom;  flag-extension = "\\" atom.  System flags come out
        in their canonical spelling; "\\Recent" and "\\*" are refused (they are not
        ``flag``s, only ``flag-fetch`` and ``flag-perm``).
        """
        if self.peek() == BACKSLASH:
            self.pos += 1
            if self.peek() == 0x2A:
                self.fail(Reason.BAD_FLAG, "\\* is not a flag")
            name = "\\" + self.atom("flag").decode("ascii")
            upper = name.upper()
            if upper == RECENT.upper():
                self.fail(Reason.BAD_FLAG, "\\Recent cannot be set by a client")
            return SYSTEM_FLAGS.get(upper, name)
        return self.atom("flag").decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        """flag-list = "(" [flag *(SP flag)] ")" """
        self.open()
        flags: list[str] = []
        if not self.try_close():
            flags.append(self.flag())
            while self.skip_sp():
                flags.append(self.flag())
            self.close()
        return tuple(dict.fromkeys(flags))
