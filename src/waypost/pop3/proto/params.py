"""The limits of the POP3 command parser.

STYLE point 8: every limit is a named parameter, tested at its edge.  One frozen
``Params`` is built when the listener starts and handed to the line buffer and the
parser; the parser never reads settings itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["DEFAULT_PARAMS", "Params"]


@dataclass(frozen=True, slots=True)
class Params:
    """Limits applied while reading client lines.

    ``max_line_length``
        Octets in one command line, CRLF included.  RFC 2449 §4 raised the limit of
        RFC 1939 (47 octets) to 255 and says servers MUST accept that much; we accept
        more, because clients send long ``AUTH PLAIN`` initial responses and long
        passwords anyway.  A longer line is answered ``-ERR`` and skipped up to its
        end; the session goes on.
    ``max_sasl_line_length``
        Octets in one line answering an ``AUTH`` challenge (RFC 5034 §4: base64, not
        subject to the command-line limit).
    ``max_argument_length``
        Characters in one argument (a user name, a password).  RFC 1939 §3 allows 40;
        RFC 2449 §4 lets an argument take the whole 255-octet line.
    ``max_number_digits``
        Digits in a message number or a line count (RFC 1939: ``1*DIGIT``); nine
        digits keep every number far below what a maildrop holds.
    """

    max_line_length: int = 1000
    max_sasl_line_length: int = 4096
    max_argument_length: int = 255
    max_number_digits: int = 9

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Params.{f.name} must be a positive integer, not {value!r}")
        # RFC 2449 §4: "Servers which support the CAPA command MUST support commands
        # up to 255 octets."
        if self.max_line_length < 255:
            raise ValueError("Params.max_line_length must be at least 255 octets (RFC 2449 §4)")
        if self.max_sasl_line_length < self.max_line_length:
            raise ValueError("Params.max_sasl_line_length must be at least max_line_length")


DEFAULT_PARAMS = Params()
