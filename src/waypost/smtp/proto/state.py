"""The SMTP session state table: one table, in this file (STYLE point 2).

Theory of operation (RFC 5321 §4.1.4, §3.3; RFC 3030 §2; RFC 2033 §4)::

    CONNECTED --EHLO/HELO/LHLO--> GREETED --MAIL--> MAIL --RCPT 250--> RCPT
        ^                            ^                                   |
        |                            |                   DATA ... CRLF.CRLF
        |                            +---- RSET / end of message --------+
        |                            +---- BDAT n LAST ------ BDAT <-- BDAT n
        |                            +---- BURL url LAST ---- BDAT <-- BURL url
        +-- STARTTLS (the client must greet again; RFC 3207 §4.2)

The state is not stored: it follows from the session (greeted?  a sender?  recipients?
a BDAT chunk taken?) through ``state_of``, so it can never disagree with the envelope.
Before a command runs, ``refusal`` looks it up: first whether this listener serves it
at all (``Mode``), then whether the client has greeted, then whether it must be
authenticated first (submission; ATRN on ODMR), then the state.  A command refused
here gets one fixed reply and changes nothing, except DATA after BDAT, which RFC 3030
§2 leaves "indeterminate": we end the transaction (the client must RSET anyway).
"""

from __future__ import annotations

import enum

from ..replies import R, Reply
from .params import Mode

__all__ = ["State", "TRANSACTION", "refusal", "state_of"]


class State(enum.Enum):
    CONNECTED = "connected"       # no EHLO/HELO/LHLO yet (or again after STARTTLS)
    GREETED = "greeted"           # no transaction
    MAIL = "mail"                 # a sender, no recipient yet
    RCPT = "rcpt"                 # a sender and at least one recipient
    BDAT = "bdat"                 # BDAT chunks taken, the LAST one not yet


def state_of(greeted: bool, has_sender: bool, recipients: int, chunks: bool) -> State:
    if not greeted:
        return State.CONNECTED
    if not has_sender:
        return State.GREETED
    if chunks:
        return State.BDAT
    return State.RCPT if recipients else State.MAIL


_C, _G, _M, _R, _B = State.CONNECTED, State.GREETED, State.MAIL, State.RCPT, State.BDAT
TRANSACTION = frozenset({_M, _R, _B})

_ODMR_NO_MAIL = Reply(502, "5.5.1", "Mail is not accepted on the ODMR port; use ATRN")
_ETRN_ELSEWHERE = Reply(502, "5.5.1", "ETRN is served on the SMTP port")

#: (mode, verb) -> the reply for a command this listener does not serve.
_NOT_SERVED: dict[tuple[Mode, str], Reply] = {
    **{(Mode.ODMR, v): _ODMR_NO_MAIL for v in ("MAIL", "RCPT", "DATA", "BDAT", "BURL")},
    # RFC 4468 §3: BURL is a submission command.
    **{(m, "BURL"): Reply(502, "5.5.1", "BURL is served on the submission port") for m in (Mode.SMTP, Mode.LMTP)},
    **{(m, v): Reply(502, "5.5.1", f"{v} is served on the ODMR port")
       for m in (Mode.SMTP, Mode.SUBMISSION, Mode.LMTP) for v in ("ATRN", "TURN")},
    **{(m, "ETRN"): _ETRN_ELSEWHERE for m in (Mode.SUBMISSION, Mode.ODMR, Mode.LMTP)},
    # RFC 2033 §4.1: an LMTP server greets with LHLO only; HELO and EHLO are SMTP's.
    (Mode.LMTP, "HELO"): Reply(500, "5.5.1", "This is LMTP: use LHLO (RFC 2033 §4.1)"),
    (Mode.LMTP, "EHLO"): Reply(500, "5.5.1", "This is LMTP: use LHLO (RFC 2033 §4.1)"),
    (Mode.LMTP, "AUTH"): Reply(502, "5.5.1", "AUTH is not offered on the LMTP listener"),
}

#: Commands that need an authenticated client first, by mode (RFC 6409 §4.3 for
#: submission; RFC 2645 §3 for ATRN).
_NEEDS_AUTH: dict[Mode, frozenset[str]] = {
    Mode.SUBMISSION: frozenset({"MAIL", "RCPT", "DATA", "BDAT", "BURL"}),
    Mode.ODMR: frozenset({"ATRN", "TURN"}),
}

#: Commands that need a greeting first.
_NEEDS_GREETING = frozenset({"MAIL", "RCPT", "DATA", "BDAT", "BURL", "ETRN", "ATRN", "TURN"})

#: (verb, state) -> the fixed reply of a command in a state where it is not legal.
_REFUSED: dict[tuple[str, State], Reply] = {
    ("MAIL", _M): R.NESTED_MAIL, ("MAIL", _R): R.NESTED_MAIL, ("MAIL", _B): R.NESTED_MAIL,
    ("RCPT", _G): R.NEED_MAIL,
    ("RCPT", _B): Reply(503, "5.5.1", "RCPT not allowed after BDAT"),
    ("DATA", _G): R.NEED_MAIL, ("DATA", _M): R.NEED_RCPT,
    # RFC 3030 §2: "If a DATA statement is issued after a BDAT for the current
    # transaction, a 503 "Bad sequence of commands" MUST be issued."
    ("DATA", _B): Reply(503, "5.5.1", "DATA not allowed after BDAT; transaction ended"),
    ("BDAT", _G): R.NEED_MAIL, ("BDAT", _M): R.NEED_RCPT,
    # RFC 4468 §3: BURL takes part in the transaction as BDAT does (and mixes with it).
    ("BURL", _G): R.NEED_MAIL, ("BURL", _M): R.NEED_RCPT,
    # RFC 1985 §3, RFC 4954 §4: not inside a mail transaction
    **{("ETRN", s): Reply(503, "5.5.1", "ETRN not allowed inside a mail transaction") for s in TRANSACTION},
    **{("AUTH", s): Reply(503, "5.5.1", "AUTH not permitted during a mail transaction") for s in TRANSACTION},
    ("AUTH", _C): Reply(503, "5.5.1", "Error: send EHLO first"),
}


def refusal(verb: str, state: State, mode: Mode, authenticated: bool) -> Reply | None:
    """None when ``verb`` may run now; else the one reply it gets."""
    reply = _NOT_SERVED.get((mode, verb))
    if reply is not None:
        return reply
    if state is _C and verb in _NEEDS_GREETING:
        return R.NEED_HELO
    if not authenticated and verb in _NEEDS_AUTH.get(mode, ()):
        return R.AUTH_REQUIRED
    return _REFUSED.get((verb, state))
