"""Typed client commands and their grammars, one module per group of states
(STYLE point 4), joined here into the dispatch table ``COMMANDS``."""

from __future__ import annotations

from . import any_state, authenticated, not_authenticated, selected
from .any_state import Capability, Id, Logout, Noop
from .authenticated import (
    LIST_RETURN_OPTIONS,
    LIST_SELECT_OPTIONS,
    STATUS_ITEMS,
    Append,
    AppendMessage,
    CatUrl,
    Create,
    Delete,
    DeleteAcl,
    Enable,
    Examine,
    GetAcl,
    Idle,
    List,
    ListRights,
    Lsub,
    MyRights,
    Namespace,
    Rename,
    Select,
    SetAcl,
    Status,
    Subscribe,
    Unsubscribe,
)
from .base import Command, CommandParser
from .not_authenticated import Authenticate, Login, StartTls
from .selected import Check, Close, Copy, Expunge, Fetch, Move, Search, Store, UidExpunge, Unselect

__all__ = [
    "COMMANDS",
    "LIST_RETURN_OPTIONS",
    "LIST_SELECT_OPTIONS",
    "STATUS_ITEMS",
    "Append",
    "AppendMessage",
    "CatUrl",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "CommandParser",
    "Copy",
    "Create",
    "Delete",
    "DeleteAcl",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "GetAcl",
    "Id",
    "Idle",
    "List",
    "ListRights",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "MyRights",
    "Namespace",
    "Noop",
    "Rename",
    "Search",
    "Select",
    "SetAcl",
    "StartTls",
    "Status",
    "Store",
    "Subscribe",
    "UidExpunge",
    "Unselect",
    "Unsubscribe",
]

#: Command name (upper case) -> grammar.  "UID" dispatches on to
#: ``selected.UID_PARSERS``.
COMMANDS: dict[str, CommandParser] = {
    **any_state.PARSERS,
    **not_authenticated.PARSERS,
    **authenticated.PARSERS,
    **selected.PARSERS,
}
