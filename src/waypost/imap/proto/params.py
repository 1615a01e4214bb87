"""The limits and switches of the IMAP command parser.

STYLE point 8: every limit is a named parameter, tested at its edge.  One frozen
``Params`` is built from the settings when the listener starts and handed to every
``parse_*`` call; the parser never reads settings itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["DEFAULT_PARAMS", "Params"]


@dataclass(frozen=True, slots=True)
class Params:
    """Limits applied while parsing client commands.

    ``max_line_length``
        Octets in one line of a command, CRLF included.  A command that carries
        literals is several lines; each is measured from the end of the previous
        literal.  RFC 7162 §4 asks servers to accept lines of at least 8192
        octets; every legal command must fit, and the largest legal ID (RFC 2971
        §3.3: 30 pairs, 1,024-octet values, escaped) needs about 63,500, so the
        default is 64 KiB (as in Dovecot).  A longer line is answered BAD and
        skipped through its CRLF.
    ``max_literal_size``
        Octets in one literal ``{n}`` or ``{n+}``.  A larger announcement is refused
        before any of its data is read (``LiteralTooLarge``).  Set it to the largest
        message APPEND may store.
    ``max_command_size``
        Octets in a whole command: every line and every literal.  Bounds what one
        command can make the server buffer, however many literals it carries.
    ``max_append_messages``
        Messages in one APPEND (RFC 3502 MULTIAPPEND).  One more is refused with
        ``BAD [LIMIT]`` before its literal is read.  The whole command is bounded
        by ``max_command_size`` as well.
    ``max_nesting_depth``
        Parenthesised lists inside one another, plus the search keys NOT and OR,
        which nest the same way (``NOT NOT NOT ...``).  Keeps the recursive parser
        far from Python's recursion limit.
    ``max_sequence_items``
        Comma-separated items in one sequence set (``1,3:5,9`` has three).
    ``utf8``
        RFC 6855 UTF8=ACCEPT is enabled: quoted strings may carry UTF-8.  Without
        it, 8-bit octets are allowed only inside literals (RFC 3501 §9 CHAR8).
    ``charsets``
        The SEARCH charsets we can decode; anything else is answered with
        ``NO [BADCHARSET (...)]`` listing these (RFC 3501 §6.4.4).
    """

    max_line_length: int = 64 * 1024
    max_literal_size: int = 64 * 1024 * 1024
    max_command_size: int = 65 * 1024 * 1024
    max_append_messages: int = 100
    max_nesting_depth: int = 32
    max_sequence_items: int = 2048
    utf8: bool = False
    charsets: tuple[str, ...] = ("UTF-8", "US-ASCII")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("max_") and (not isinstance(value, int) or value < 1):
                raise ValueError(f"Params.{f.name} must be a positive integer, not {value!r}")
        if self.max_line_length < 16:
            raise ValueError("Params.max_line_length must be at least 16 octets")
        if not self.charsets:
            raise ValueError("Params.charsets must name at least one charset")


DEFAULT_PARAMS = Params()
