"""The IMAP connection state machine: one table, in this file (STYLE point 2).

Theory of operation (RFC 3501 §3, the diagram on page 15):

    greeting OK ──────────► NOT_AUTHENTICATED ──LOGIN/AUTHENTICATE OK──► AUTHENTICATED
    greeting PREAUTH ─────────────────────────────────────────────────► AUTHENTICATED
    AUTHENTICATED ──SELECT/EXAMINE OK──► SELECTED
    SELECTED ──CLOSE/UNSELECT OK, or SELECT/EXAMINE NO──► AUTHENTICATED
    any state ──LOGOUT (or BYE: shutdown, autologout)──► LOGOUT
    greeting BYE ─────────────────────────────────────────────────────► LOGOUT

A command is first checked against ``LEGAL``; in any other state it gets the one
fixed reply ``refusal`` names and changes nothing.  When a legal command
completes, ``next_state`` gives the state that follows from its name and its
result: "A rejected command (BAD response) never changes the state of the
connection or of the selected mailbox.  A failed command (NO response) generally
does not change the state ...; the exception being the SELECT and EXAMINE
commands" (RFC 3501 §6), which leave no mailbox selected when they fail.

Where an RFC puts an extension command: IDLE, NAMESPACE and the ACL commands are
command-auth (authenticated or selected); ID is "valid in any state" (RFC 2971
§3.1); UNSELECT, MOVE and UID EXPUNGE are command-select.  ENABLE is "only valid in
the authenticated state", but "server implementations don't have to check that no
mailbox is selected" (RFC 5161 §3.1); we accept it while selected too, because
clients do send it there.
"""

from __future__ import annotations

import enum
from typing import Literal

from .commands import Command
from .replies import R, Reply

__all__ = ["LEGAL", "State", "is_legal", "next_state", "refusal"]


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_NA = State.NOT_AUTHENTICATED
_AU = State.AUTHENTICATED
_SE = State.SELECTED

_ANY = frozenset({_NA, _AU, _SE})
_NOT_AUTHENTICATED = frozenset({_NA})
_AUTHENTICATED = frozenset({_AU, _SE})
_SELECTED = frozenset({_SE})

#: Command name -> the states in which it is legal.  No command is legal in LOGOUT.
LEGAL: dict[str, frozenset[State]] = {
    # RFC 3501 §6.1, RFC 2971
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,
    # RFC 3501 §6.2
    "STARTTLS": _NOT_AUTHENTICATED,
    "AUTHENTICATE": _NOT_AUTHENTICATED,
    "LOGIN": _NOT_AUTHENTICATED,
    # RFC 3501 §6.3 and the command-auth extensions
    "SELECT": _AUTHENTICATED,
    "EXAMINE": _AUTHENTICATED,
    "CREATE": _AUTHENTICATED,
    "DELETE": _AUTHENTICATED,
    "RENAME": _AUTHENTICATED,
    "SUBSCRIBE": _AUTHENTICATED,
    "UNSUBSCRIBE": _AUTHENTICATED,
    "LIST": _AUTHENTICATED,
    "LSUB": _AUTHENTICATED,
    "STATUS": _AUTHENTICATED,
    "APPEND": _AUTHENTICATED,
    "NAMESPACE": _AUTHENTICATED,
    "ENABLE": _AUTHENTICATED,
    "IDLE": _AUTHENTICATED,
    "SETACL": _AUTHENTICATED,
    "DELETEACL": _AUTHENTICATED,
    "GETACL": _AUTHENTICATED,
    "LISTRIGHTS": _AUTHENTICATED,
    "MYRIGHTS": _AUTHENTICATED,
    "COMPRESS": _AUTHENTICATED,  # RFC 4978 §4: command-auth
    "GETQUOTA": _AUTHENTICATED,  # RFC 9208 §7: command-auth
    "GETQUOTAROOT": _AUTHENTICATED,
    "SETQUOTA": _AUTHENTICATED,
    "RESETKEY": _AUTHENTICATED,  # RFC 4467 §9: command-auth
    "GENURLAUTH": _AUTHENTICATED,
    "URLFETCH": _AUTHENTICATED,
    "NOTIFY": _AUTHENTICATED,  # RFC 5465 §8: command-auth
    # RFC 3501 §6.4 and the command-select extensions (UID X has X's states)
    "CHECK": _SELECTED,
    "CLOSE": _SELECTED,
    "EXPUNGE": _SELECTED,
    "UNSELECT": _SELECTED,
    "SEARCH": _SELECTED,
    "SORT": _SELECTED,
    "THREAD": _SELECTED,
    "FETCH": _SELECTED,
    "STORE": _SELECTED,
    "COPY": _SELECTED,
    "MOVE": _SELECTED,
    "UID EXPUNGE": _SELECTED,
    "CANCELUPDATE": _SELECTED,  # RFC 5267 §4.3
    "UIDBATCHES": _SELECTED,    # draft-ietf-mailmaint-imap-uidbatches
}

Result = Literal["OK", "NO", "BAD"]

#: (command name, result) -> the state after it, where it is not "unchanged".
_TRANSITIONS: dict[tuple[str, Result], State] = {
    ("LOGIN", "OK"): _AU,
    ("AUTHENTICATE", "OK"): _AU,
    ("SELECT", "OK"): _SE,
    ("EXAMINE", "OK"): _SE,
    ("SELECT", "NO"): _AU,
    ("EXAMINE", "NO"): _AU,
    ("CLOSE", "OK"): _AU,
    ("UNSELECT", "OK"): _AU,
    ("LOGOUT", "OK"): State.LOGOUT,
}


def _name(command: Command | str) -> str:
    return command if isinstance(command, str) else command.name


def is_legal(command: Command | str, state: State) -> bool:
    return state in LEGAL.get(_name(command), frozenset())


def refusal(command: Command | str, state: State) -> Reply | None:
    """None when ``command`` is legal in ``state``; else the fixed reply (BAD)."""
    legal = LEGAL.get(_name(command), frozenset())
    if state in legal:
        return None
    if state is State.LOGOUT:
        return R.LOGGING_OUT
    if state is _NA:
        return R.NOT_AUTHENTICATED
    if legal == _NOT_AUTHENTICATED:
        return R.ALREADY_AUTHENTICATED
    if legal == _SELECTED:
        return R.NO_MAILBOX_SELECTED
    return R.UNKNOWN_COMMAND


def next_state(state: State, command: Command | str, result: Result) -> State:
    """The state after ``command`` completed with ``result`` in ``state``."""
    if result == "BAD" or not is_legal(command, state):
        return state
    return _TRANSITIONS.get((_name(command), result), state)
