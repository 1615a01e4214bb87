"""The client commands, one typed value each, as the parser makes them.

``name`` is the keyword in upper case: the key of the state table and of the
handler table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "Auth", "AuthList", "Capa", "Command", "Dele", "List", "Noop", "Pass", "Quit", "Retr", "Rset",
    "Stat", "Stls", "Top", "Uidl", "User",
]


class Command:
    __slots__ = ()
    name: ClassVar[str]


# -- AUTHORIZATION (RFC 1939 §7, RFC 5034 §4, RFC 2595 §4) --------------------------


@dataclass(frozen=True, slots=True)
class User(Command):
    name: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, slots=True, repr=False)
class Pass(Command):
    name: ClassVar[str] = "PASS"
    password: str

    def __repr__(self) -> str:  # never a password in a log line or a test failure
        return "Pass(password=...)"


@dataclass(frozen=True, slots=True, repr=False)
class Auth(Command):
    """``initial`` None: no initial response (the server sends an empty challenge);
    b"" for "=" (an empty one)."""

    name: ClassVar[str] = "AUTH"
    mechanism: str
    initial: bytes | None = None

    def __repr__(self) -> str:
        return f"Auth(mechanism={self.mechanism!r}, initial={'...' if self.initial else self.initial!r})"


@dataclass(frozen=True, slots=True)
class AuthList(Command):
    """A bare ``AUTH`` (RFC 1734 clients): list the mechanisms.  Its own name in the
    state table, because a positive answer to it logs nobody in."""

    name: ClassVar[str] = "AUTH-LIST"


@dataclass(frozen=True, slots=True)
class Stls(Command):
    name: ClassVar[str] = "STLS"


# -- any state --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capa(Command):
    name: ClassVar[str] = "CAPA"


@dataclass(frozen=True, slots=True)
class Quit(Command):
    name: ClassVar[str] = "QUIT"


# -- TRANSACTION (RFC 1939 §5, §7) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stat(Command):
    name: ClassVar[str] = "STAT"


@dataclass(frozen=True, slots=True)
class List(Command):
    name: ClassVar[str] = "LIST"
    number: int | None = None


@dataclass(frozen=True, slots=True)
class Retr(Command):
    name: ClassVar[str] = "RETR"
    number: int


@dataclass(frozen=True, slots=True)
class Dele(Command):
    name: ClassVar[str] = "DELE"
    number: int


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Rset(Command):
    name: ClassVar[str] = "RSET"


@dataclass(frozen=True, slots=True)
class Top(Command):
    name: ClassVar[str] = "TOP"
    number: int
    lines: int


@dataclass(frozen=True, slots=True)
class Uidl(Command):
    name: ClassVar[str] = "UIDL"
    number: int | None = None
