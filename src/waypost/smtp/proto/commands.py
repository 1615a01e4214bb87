"""Typed SMTP commands (RFC 5321 §4.1.1 and the extensions we serve).

A command line becomes a ``Line`` (its verb and the raw argument) first; the state
table is consulted on the verb, and only then is the argument parsed into one of the
typed commands below.  That order is the order of the replies RFC 5321 and our
clients expect: MAIL before EHLO is 503 whatever its argument looks like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Auth", "Bdat", "Burl", "Line", "Mail", "MailOptions", "Rcpt"]


@dataclass(frozen=True, slots=True)
class Line:
    """``verb [SP argument]``: the verb in upper case, the argument stripped, or None."""

    verb: str
    arg: str | None


@dataclass(slots=True)
class MailOptions:
    """The parameters of MAIL FROM we act on (RFC 1870, 6152, 6531, 3461, 4954)."""

    size: int | None = None
    body: str | None = None          # "7BIT" / "8BITMIME"
    smtputf8: bool = False
    ret: str | None = None           # "FULL" / "HDRS"
    envid: str | None = None

    def as_params(self) -> dict[str, object]:
        """The queue's envelope parameters (as the queue and DSN code read them)."""
        out: dict[str, object] = {}
        if self.body is not None:
            out["body"] = self.body
        if self.smtputf8:
            out["smtputf8"] = True
        if self.ret is not None:
            out["ret"] = self.ret
        if self.envid is not None:
            out["envid"] = self.envid
        return out


@dataclass(frozen=True, slots=True)
class Mail:
    """``MAIL FROM:<reverse-path> [params]``; ``path`` is "" for the null path."""

    path: str
    params: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rcpt:
    """``RCPT TO:<forward-path> [params]``."""

    path: str
    params: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Bdat:
    """``BDAT chunk-size [LAST]`` (RFC 3030 §2)."""

    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Burl:
    """``BURL absolute-URI [LAST]`` (RFC 4468 §3)."""

    url: str
    last: bool


@dataclass(frozen=True, slots=True)
class Auth:
    """``AUTH mechanism [initial-response]`` (RFC 4954 §4)."""

    mechanism: str
    initial: str | None
