"""The POP3 session state machine: one table, in this file (STYLE point 2).

Theory of operation (RFC 1939 §3, §4, §5, §6)::

    greeting +OK ──► AUTHORIZATION ──USER +OK──► USER_GIVEN ──PASS +OK──► TRANSACTION
                     AUTHORIZATION / USER_GIVEN ──AUTH +OK──────────────► TRANSACTION
                     USER_GIVEN ──PASS, USER or AUTH -ERR; STLS +OK──► AUTHORIZATION
                     AUTHORIZATION / USER_GIVEN ──QUIT──► CLOSED   (nothing removed)
    TRANSACTION ──QUIT──► UPDATE ──(messages marked deleted are removed; the
                                     answer to QUIT tells how it went)──► CLOSED

USER_GIVEN is AUTHORIZATION after a successful USER: RFC 1939 §7 lets PASS come
"only ... immediately after a successful USER command".  A positive answer to PASS
or AUTH means the maildrop is locked (RFC 1939 §4): a session is in TRANSACTION only
while it holds the lock, and the lock is let go when it leaves, whichever way.

A command is checked against ``LEGAL`` before it runs; in any other state it gets
the one fixed reply ``refusal`` names and changes nothing.  When a legal command has
been answered, ``next_state`` gives the state that follows from its name and whether
the answer was positive.  Anything not in ``TRANSITIONS`` keeps the state.

The session ends without UPDATE (and so without removing anything) when the
connection is lost, the client stays silent longer than the autologout timer
(RFC 1939 §3: "the server should close the TCP connection without removing any
messages or sending any response"), or the server shuts down.  Nothing is read from
the client in UPDATE or CLOSED.
"""

from __future__ import annotations

import enum

from .replies import R, Reply

__all__ = ["LEGAL", "TRANSITIONS", "State", "is_legal", "next_state", "refusal"]


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    USER_GIVEN = "authorization, USER given"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


_AU = State.AUTHORIZATION
_US = State.USER_GIVEN
_TR = State.TRANSACTION
_UP = State.UPDATE
_CL = State.CLOSED

_LOGGED_OUT = frozenset({_AU, _US})
_LOGGED_IN = frozenset({_TR})
_BOTH = _LOGGED_OUT | _LOGGED_IN

#: Command -> the states in which it is legal.
LEGAL: dict[str, frozenset[State]] = {
    # RFC 1939 §7, RFC 5034 §4, RFC 2595 §4: AUTHORIZATION only
    "USER": _LOGGED_OUT,
    "PASS": frozenset({_US}),
    "AUTH": _LOGGED_OUT,
    "AUTH-LIST": _LOGGED_OUT,
    "STLS": _LOGGED_OUT,
    # RFC 1939 §5, §6; RFC 2449 §5 (CAPA: "valid in the AUTHORIZATION and TRANSACTION states")
    "QUIT": _BOTH,
    "CAPA": _BOTH,
    # RFC 1939 §5: TRANSACTION only
    "STAT": _LOGGED_IN,
    "LIST": _LOGGED_IN,
    "RETR": _LOGGED_IN,
    "DELE": _LOGGED_IN,
    "NOOP": _LOGGED_IN,
    "RSET": _LOGGED_IN,
    "TOP": _LOGGED_IN,
    "UIDL": _LOGGED_IN,
}

#: (state, command, answered +OK) -> next state.  Absent: the state is kept.
TRANSITIONS: dict[tuple[State, str, bool], State] = {
    (_AU, "USER", True): _US,
    (_US, "USER", True): _US,
    (_US, "USER", False): _AU,
    (_US, "PASS", True): _TR,
    (_US, "PASS", False): _AU,
    (_AU, "AUTH", True): _TR,
    (_US, "AUTH", True): _TR,
    (_US, "AUTH", False): _AU,
    (_US, "STLS", True): _AU,   # TLS starts afresh: no USER carried over
    (_AU, "QUIT", True): _CL,
    (_US, "QUIT", True): _CL,
    (_TR, "QUIT", True): _UP,
    (_UP, "QUIT", True): _CL,
    (_UP, "QUIT", False): _CL,
}

#: The fixed reply for a command in a state where it is not legal.
_REFUSALS: dict[State, Reply] = {
    _AU: R.NOT_LOGGED_IN,
    _US: R.NOT_LOGGED_IN,
    _TR: R.ALREADY_LOGGED_IN,
    _UP: R.ALREADY_LOGGED_IN,
    _CL: R.ALREADY_LOGGED_IN,
}
_SPECIAL_REFUSALS: dict[tuple[str, State], Reply] = {
    ("PASS", _AU): R.USER_FIRST,
}


def is_legal(command: str, state: State) -> bool:
    return state in LEGAL.get(command, frozenset())


def refusal(command: str, state: State) -> Reply | None:
    """None when ``command`` may run in ``state``; else the one reply it gets."""
    if is_legal(command, state):
        return None
    return _SPECIAL_REFUSALS.get((command, state), _REFUSALS[state])


def next_state(state: State, command: str, ok: bool) -> State:
    return TRANSITIONS.get((state, command, ok), state)
