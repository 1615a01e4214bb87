"""CANCELUPDATE (RFC 5267 §4.3), legal with a mailbox selected: the end of the
updates of search contexts (see ``proto/context.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader
from .base import Command, CommandParser

__all__ = ["PARSERS", "CancelUpdate"]


@dataclass(frozen=True, slots=True)
class CancelUpdate(Command):
    """RFC 5267 §4.3:  cancelupdate = "CANCELUPDATE" 1*(SP quoted)
    ``tags`` are the tags of the searches whose updates end."""

    tags: tuple[str, ...]
    name: ClassVar[str] = "CANCELUPDATE"


def parse_cancel_update(r: Reader, tag: str) -> Command:
    tags = []
    while r.skip_sp():
        tags.append(r.text(r.string("search tag"), "search tag"))
    if not tags:
        r.fail_here("the tag of a search")
    return CancelUpdate(tag, tuple(dict.fromkeys(tags)))


PARSERS: dict[str, CommandParser] = {"CANCELUPDATE": parse_cancel_update}
