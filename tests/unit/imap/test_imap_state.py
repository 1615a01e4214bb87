"""The state table: every command's legal states, the fixed reply in the wrong one,
and the transitions of RFC 3501 §3."""

from __future__ import annotations

import pytest

from waypost.imap.proto import (
    LEGAL,
    Command,
    R,
    SequenceSet,
    State,
    is_legal,
    next_state,
    parse_command,
    refusal,
)
from waypost.imap.proto.commands import COMMANDS
from waypost.imap.proto.commands.selected import UID_PARSERS

NA, AU, SE, LO = State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED, State.LOGOUT


def test_every_parsed_command_is_in_the_table() -> None:
    names = {n for n in COMMANDS if n != "UID"} | {"UID EXPUNGE"}
    assert names == set(LEGAL)
    assert set(UID_PARSERS) == {"COPY", "FETCH", "SEARCH", "STORE", "MOVE", "EXPUNGE", "SORT", "THREAD"}


@pytest.mark.parametrize(
    ("line", "states"),
    [
        (b"a CAPABILITY\r\n", {NA, AU, SE}),
        (b"a NOOP\r\n", {NA, AU, SE}),
        (b"a LOGOUT\r\n", {NA, AU, SE}),
        (b"a ID NIL\r\n", {NA, AU, SE}),
        (b"a STARTTLS\r\n", {NA}),
        (b"a LOGIN u p\r\n", {NA}),
        (b"a AUTHENTICATE PLAIN\r\n", {NA}),
        (b"a SELECT INBOX\r\n", {AU, SE}),
        (b"a APPEND INBOX {1+}\r\nx\r\n", {AU, SE}),
        (b"a IDLE\r\n", {AU, SE}),
        (b"a NAMESPACE\r\n", {AU, SE}),
        (b"a ENABLE CONDSTORE\r\n", {AU, SE}),
        (b"a GETACL INBOX\r\n", {AU, SE}),
        (b"a FETCH 1 FLAGS\r\n", {SE}),
        (b"a UID FETCH 1 FLAGS\r\n", {SE}),
        (b"a UID EXPUNGE 1\r\n", {SE}),
        (b"a UNSELECT\r\n", {SE}),
        (b"a MOVE 1 x\r\n", {SE}),
        (b"a CLOSE\r\n", {SE}),
    ],
)
def test_legal_states(line: bytes, states: set[State]) -> None:
    command, _ = parse_command(line)
    for state in State:
        assert is_legal(command, state) == (state in states)
        reply = refusal(command, state)
        assert (reply is None) == (state in states)
        if reply is not None:
            assert reply.status == "BAD"
            assert reply.tagged(command.tag).encode().startswith(b"a BAD ")


def test_wrong_state_replies_are_fixed() -> None:
    assert refusal("FETCH", AU) is R.NO_MAILBOX_SELECTED
    assert refusal("FETCH", NA) is R.NOT_AUTHENTICATED
    assert refusal("SELECT", NA) is R.NOT_AUTHENTICATED
    assert refusal("LOGIN", AU) is R.ALREADY_AUTHENTICATED
    assert refusal("LOGIN", SE) is R.ALREADY_AUTHENTICATED
    assert refusal("NOOP", LO) is R.LOGGING_OUT


def test_transitions() -> None:
    """RFC 3501 §3: (4) LOGIN/AUTHENTICATE, (5) SELECT/EXAMINE, (6) CLOSE or a failed
    SELECT/EXAMINE, (7) LOGOUT; UNSELECT is CLOSE without expunge (RFC 3691)."""
    assert next_state(NA, "LOGIN", "OK") is AU
    assert next_state(NA, "AUTHENTICATE", "OK") is AU
    assert next_state(NA, "LOGIN", "NO") is NA
    assert next_state(AU, "SELECT", "OK") is SE
    assert next_state(SE, "EXAMINE", "OK") is SE
    assert next_state(SE, "SELECT", "NO") is AU
    assert next_state(AU, "EXAMINE", "NO") is AU
    assert next_state(SE, "SELECT", "BAD") is SE  # "A rejected command ... never changes the state"
    assert next_state(SE, "CLOSE", "OK") is AU
    assert next_state(SE, "UNSELECT", "OK") is AU
    assert next_state(SE, "FETCH", "OK") is SE
    for state in (NA, AU, SE):
        assert next_state(state, "LOGOUT", "OK") is LO
    # a command refused for its state changes nothing
    assert next_state(NA, "SELECT", "OK") is NA
    assert next_state(AU, "CLOSE", "OK") is AU


def test_accepts_command_objects() -> None:
    command: Command
    command, _ = parse_command(b"a UID FETCH 1:* FLAGS\r\n")
    assert command.name == "FETCH"
    assert next_state(SE, command, "OK") is SE
    assert SequenceSet.of(1) == SequenceSet.parse("1")
