"""Commands legal in every state but logout: CAPABILITY, NOOP, LOGOUT (RFC 3501
§6.1) and ID (RFC 2971 §3.1: "This command is valid in any state")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader
from .base import Command, CommandParser

__all__ = ["PARSERS", "Capability", "Id", "Logout", "Noop"]


# command-any     = "CAPABILITY" / "LOGOUT" / "NOOP" / x-command
@dataclass(frozen=True, slots=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """``parameters`` is None for ``ID NIL``; else (field, value) pairs in order,
    value None for NIL.  RFC 2971 §3.3 caps fields at 30 octets and pairs at 30;
    the server may enforce that, the parser does not."""

    parameters: tuple[tuple[str, str | None], ...] | None
    name: ClassVar[str] = "ID"


def _id(r: Reader, tag: str) -> Command:
    # RFC 2971 §4:
    # id ::= "ID" SPACE id_params_list
    # id_params_list ::= "(" #(string SPACE nstring) ")" / nil
    r.sp()
    if r.take("NIL"):
        return Id(tag, None)
    r.open()
    pairs: list[tuple[str, str | None]] = []
    if not r.try_close():
        while True:
            field = r.text(r.string("ID field"), "ID field")
            r.sp()
            raw = r.nstring("ID value")
            pairs.append((field, None if raw is None else r.text(raw, "ID value")))
            if not r.skip_sp():
                break
        r.close()
    return Id(tag, tuple(pairs))


PARSERS: dict[str, CommandParser] = {
    "CAPABILITY": lambda r, tag: Capability(tag),
    "NOOP": lambda r, tag: Noop(tag),
    "LOGOUT": lambda r, tag: Logout(tag),
    "ID": _id,
}
