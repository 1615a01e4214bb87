"""The base of every typed command, and the signature of a command grammar."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader

__all__ = ["Command", "CommandParser"]


@dataclass(frozen=True, slots=True)
class Command:
    """One client command.  ``name`` is the key of the state table (``state.LEGAL``);
    UID FETCH, UID STORE... share the name of their plain form and set ``uid``."""

    tag: str
    name: ClassVar[str] = ""


#: A command grammar: called with the cursor just after the command name (and its
#: tag); consumes the arguments, not the final CRLF.
CommandParser = Callable[[Reader, str], Command]
