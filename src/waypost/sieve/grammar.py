"""Sieve (RFC 5228) text to a syntax tree: the lexical tokens of §8.1 and the grammar
of §8.2.  Pure: text in, ``Command`` trees out, or ``SieveError`` with the line and
column where the text goes wrong.

RFC 5228 §8.1:

    bracket-comment = "/*" *not-star 1*STAR *(not-star-slash *not-star 1*STAR) "/"
    hash-comment    = "#" *octet-not-crlf CRLF
    identifier      = (ALPHA / "_") *(ALPHA / DIGIT / "_")
    multi-line      = "text:" *(SP / HTAB) (hash-comment / CRLF)
                      *(multiline-literal / multiline-dotstart) "." CRLF
    number          = 1*DIGIT [ QUANTIFIER ]      QUANTIFIER = "K" / "M" / "G"
    quoted-string   = DQUOTE quoted-text DQUOTE
    tag             = ":" identifier

RFC 5228 §8.2:

    argument     = string-list / number / tag
    arguments    = *argument [ test / test-list ]
    block        = "{" commands "}"
    command      = identifier arguments (";" / block)
    commands     = *command
    start        = commands
    string-list  = "[" string *("," string) "]" / string
    test         = identifier arguments
    test-list    = "(" test *("," test) ")"
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Command", "Number", "SieveError", "StringList", "Tag", "Test", "parse"]

#: Limits (STYLE point 8): nesting of blocks and tests, and the script's length.
MAX_NESTING = 32
MAX_SCRIPT = 1024 * 1024


class SieveError(ValueError):
    """A script that cannot run: ``line`` and ``column`` (1-based) say where."""

    def __init__(self, message: str, line: int, column: int = 1) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # lower case, without the ":"
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class StringList:
    values: tuple[str, ...]
    line: int
    column: int
    single: bool  # written as one string, not as a [list]


Argument = Tag | Number | StringList


@dataclass(slots=True)
class Test:
    name: str  # lower case
    arguments: list[Argument]
    tests: list["Test"]
    line: int
    column: int
    tags: dict[str, Argument | None] = field(default_factory=dict)
    positional: list[Argument] = field(default_factory=list)
    comparator: str = "i;ascii-casemap"  # set by the checker from :comparator


@dataclass(slots=True)
class Command:
    name: str  # lower case
    arguments: list[Argument]
    tests: list[Test]
    block: list["Command"] | None
    line: int
    column: int
    # Filled in by the checker (``check.py``): tagged arguments by name, positional ones.
    tags: dict[str, Argument | None] = field(default_factory=dict)
    positional: list[Argument] = field(default_factory=list)


# -- tokens --------------------------------------------------------------------------

_QUANT = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str    # ident | tag | number | string | punct | end
    value: object
    line: int
    column: int


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.col = 1

    def _advance(self, n: int) -> None:
        for ch in self.s[self.i:self.i + n]:
            if ch == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
        self.i += n

    def _skip(self) -> None:
        s = self.s
        while self.i < len(s):
            ch = s[self.i]
            if ch in " \t\r\n":
                self._advance(1)
            elif ch == "#":
                end = s.find("\n", self.i)
                self._advance((len(s) if end < 0 else end + 1) - self.i)
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    raise SieveError("unterminated /* comment", self.line, self.col)
                self._advance(end + 2 - self.i)
            else:
                return

    def tokens(self) -> list[_Tok]:
        out: list[_Tok] = []
        s = self.s
        while True:
            self._skip()
            if self.i >= len(s):
                out.append(_Tok("end", None, self.line, self.col))
                return out
            line, col = self.line, self.col
            ch = s[self.i]
            if ch.isascii() and (ch.isalpha() or ch == "_"):
                j = self.i
                while j < len(s) and s[j].isascii() and (s[j].isalnum() or s[j] == "_"):
                    j += 1
                word = s[self.i:j]
                if word.lower() == "text" and j < len(s) and s[j] == ":":
                    self._advance(j + 1 - self.i)
                    out.append(_Tok("string", self._multiline(line, col), line, col))
                    continue
                self._advance(j - self.i)
                out.append(_Tok("ident", word.lower(), line, col))
            elif ch == ":":
                j = self.i + 1
                if j >= len(s) or not (s[j].isascii() and (s[j].isalpha() or s[j] == "_")):
                    raise SieveError("a tag is ':' and a name", line, col)
                while j < len(s) and s[j].isascii() and (s[j].isalnum() or s[j] == "_"):
                    j += 1
                out.append(_Tok("tag", s[self.i + 1:j].lower(), line, col))
                self._advance(j - self.i)
            elif ch.isascii() and ch.isdigit():
                j = self.i
                while j < len(s) and s[j].isascii() and s[j].isdigit():
                    j += 1
                value = int(s[self.i:j])
                if j < len(s) and s[j].upper() in _QUANT:
                    value *= _QUANT[s[j].upper()]
                    j += 1
                if value >= 2 ** 63:
                    raise SieveError("number too large", line, col)
                out.append(_Tok("number", value, line, col))
                self._advance(j - self.i)
            elif ch == '"':
                out.append(_Tok("string", self._quoted(line, col), line, col))
            elif ch in "[],;{}()":
                out.append(_Tok("punct", ch, line, col))
                self._advance(1)
            else:
                raise SieveError(f"unexpected character {ch!r}", line, col)

    def _quoted(self, line: int, col: int) -> str:
        # quoted-text = *(quoted-safe / quoted-special / quoted-other)
        # RFC 5228 §2.4.2: "\\" and "\"" stand for themselves; any other "\" is dropped.
        s = self.s
        j = self.i + 1
        buf: list[str] = []
        while True:
            if j >= len(s):
                raise SieveError("unterminated string", line, col)
            ch = s[j]
            if ch == '"':
                break
            if ch == "\\" and j + 1 < len(s):
                buf.append(s[j + 1])
                j += 2
                continue
            buf.append(ch)
            j += 1
        self._advance(j + 1 - self.i)
        return "".join(buf).replace("\r\n", "\n").replace("\n", "\r\n")

    def _multiline(self, line: int, col: int) -> str:
        s = self.s
        j = self.i
        while j < len(s) and s[j] in " \t":
            j += 1
        if j < len(s) and s[j] == "#":
            j = s.find("\n", j)
            j = len(s) if j < 0 else j
        elif s.startswith("\r\n", j):
            j += 1
        if j >= len(s) or s[j] != "\n":
            raise SieveError("text: must end its line", line, col)
        self._advance(j + 1 - self.i)
        lines: list[str] = []
        while True:
            if self.i >= len(s):
                raise SieveError("multi-line string without its final '.' line", line, col)
            end = s.find("\n", self.i)
            raw = s[self.i:] if end < 0 else s[self.i:end]
            self._advance((len(s) if end < 0 else end + 1) - self.i)
            text = raw[:-1] if raw.endswith("\r") else raw
            if text == ".":
                break
            lines.append(text[1:] if text.startswith("..") else text)  # dot-stuffing
        return "".join(x + "\r\n" for x in lines)


# -- grammar -------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.t = tokens
        self.k = 0

    def peek(self) -> _Tok:
        return self.t[self.k]

    def take(self) -> _Tok:
        tok = self.t[self.k]
        self.k += 1
        return tok

    def is_punct(self, ch: str) -> bool:
        tok = self.peek()
        return tok.kind == "punct" and tok.value == ch

    def expect(self, ch: str, what: str) -> None:
        tok = self.take()
        if tok.kind != "punct" or tok.value != ch:
            raise SieveError(f"expected {what}", tok.line, tok.column)

    def commands(self, depth: int) -> list[Command]:
        out: list[Command] = []
        while True:
            tok = self.peek()
            if tok.kind == "end" or (tok.kind == "punct" and tok.value == "}"):
                return out
            out.append(self.command(depth))

    def command(self, depth: int) -> Command:
        tok = self.take()
        if tok.kind != "ident":
            raise SieveError("expected a command", tok.line, tok.column)
        args, tests = self.arguments(depth)
        block: list[Command] | None = None
        if self.is_punct("{"):
            if depth >= MAX_NESTING:
                raise SieveError(f"blocks nested deeper than {MAX_NESTING}", tok.line, tok.column)
            self.take()
            block = self.commands(depth + 1)
            self.expect("}", "'}'")
        else:
            end = self.peek()
            if not (end.kind == "punct" and end.value == ";"):
                raise SieveError(f"expected ';' after {tok.value}", end.line, end.column)
            self.take()
        return Command(str(tok.value), args, tests, block, tok.line, tok.column)

    def arguments(self, depth: int) -> tuple[list[Argument], list[Test]]:
        args: list[Argument] = []
        while True:
            tok = self.peek()
            if tok.kind == "tag":
                self.take()
                args.append(Tag(str(tok.value), tok.line, tok.column))
            elif tok.kind == "number":
                self.take()
                args.append(Number(int(tok.value), tok.line, tok.column))  # type: ignore[call-overload]
            elif tok.kind == "string" or (tok.kind == "punct" and tok.value == "["):
                args.append(self.string_list())
            else:
                break
        tests: list[Test] = []
        tok = self.peek()
        if tok.kind == "ident":
            tests.append(self.test(depth + 1))
        elif tok.kind == "punct" and tok.value == "(":
            self.take()
            tests.append(self.test(depth + 1))
            while self.is_punct(","):
                self.take()
                tests.append(self.test(depth + 1))
            self.expect(")", "',' or ')' in the test list")
        return args, tests

    def test(self, depth: int) -> Test:
        tok = self.take()
        if tok.kind != "ident":
            raise SieveError("expected a test", tok.line, tok.column)
        if depth > MAX_NESTING:
            raise SieveError(f"tests nested deeper than {MAX_NESTING}", tok.line, tok.column)
        args, tests = self.arguments(depth)
        return Test(str(tok.value), args, tests, tok.line, tok.column)

    def string_list(self) -> StringList:
        tok = self.take()
        if tok.kind == "string":
            return StringList((str(tok.value),), tok.line, tok.column, True)
        values: list[str] = []
        while True:
            s = self.take()
            if s.kind != "string":
                raise SieveError("expected a string in the list", s.line, s.column)
            values.append(str(s.value))
            if self.is_punct(","):
                self.take()
                continue
            self.expect("]", "',' or ']' in the string list")
            return StringList(tuple(values), tok.line, tok.column, False)


def parse(text: str) -> list[Command]:
    """The script's commands (syntax only; ``check`` validates their meaning)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SCRIPT:
        raise SieveError(f"script longer than {MAX_SCRIPT} octets", 1)
    p = _Parser(_Lexer(text).tokens())
    out = p.commands(0)
    tok = p.peek()
    if tok.kind != "end":
        raise SieveError("unexpected '}'", tok.line, tok.column)
    return out
