"""The ManageSieve protocol core (RFC 5804 §4), sans-IO: commands with quoted strings,
literals (whole or still arriving), numbers; bad lines; replies on the wire."""

from __future__ import annotations

import pytest

from waypost.sieve.proto import BadCommand, Command, NeedData, Reply, State, parse_command, refusal


@pytest.mark.parametrize("buf,expected,used", [
    (b'PUTSCRIPT "foo" {5+}\r\nkeep;\r\n', Command("PUTSCRIPT", ("foo", "keep;")), 29),
    (b'putscript "foo" {5}\r\nkeep;\r\n', Command("PUTSCRIPT", ("foo", "keep;")), 28),
    (b'HAVESPACE "a\\"b\\\\" 12\r\nNOOP\r\n', Command("HAVESPACE", ('a"b\\', 12)), 23),
    (b"LISTSCRIPTS\r\n", Command("LISTSCRIPTS", ()), 13),
    (b'SETACTIVE ""\r\n', Command("SETACTIVE", ("",)), 14),
    (b'GETSCRIPT "caf\xc3\xa9"\r\n', Command("GETSCRIPT", ("café",)), 19),
])
def test_commands(buf, expected, used):
    assert parse_command(buf) == (expected, used)


@pytest.mark.parametrize("buf", [b"NOOP", b'PUTSCRIPT "foo" {5+}\r\nke', b'PUTSCRIPT "fo', b'X {3+}\r\nabc'])
def test_more_data_needed(buf):
    assert parse_command(buf) == (NeedData(), 0)


@pytest.mark.parametrize("buf,reason", [
    (b"\x01\r\n", "expected a command name"),
    (b'NOOP "a\\x"\r\n', "may be quoted"),
    (b"NOOP {x}\r\n", "bad literal length"),
    (b'NOOP "\xff"\r\n', "UTF-8"),
    (b"NOOP 99999999999\r\n", "number too large"),
    (b"NOOP  \r\n", "expected a string or a number"),
])
def test_bad_lines_are_dropped_whole(buf, reason):
    got, used = parse_command(buf)
    assert isinstance(got, BadCommand) and reason in got.reason and used == len(buf)


def test_literal_over_the_limit_is_dropped_when_it_arrives():
    head = b"PUTSCRIPT \"x\" {20+}\r\n"
    assert parse_command(head + b"a" * 10, max_literal=10) == (NeedData(), 0)
    got, used = parse_command(head + b"a" * 20 + b"\r\n", max_literal=10)
    assert isinstance(got, BadCommand) and used == len(head) + 20


def test_replies_and_state_table():
    assert Reply("OK").encode() == b"OK\r\n"
    assert Reply("NO", "x", "NONEXISTENT").encode() == b'NO (NONEXISTENT) "x"\r\n'
    assert Reply("NO", "two\r\nlines").encode() == b"NO {10}\r\ntwo\r\nlines\r\n"
    assert refusal(Command("PUTSCRIPT", ("a", "b")), State.NOT_AUTHENTICATED).text == "Authenticate first"
    assert refusal(Command("STARTTLS", ()), State.AUTHENTICATED) is not None
    assert refusal(Command("PUTSCRIPT", ("a",)), State.AUTHENTICATED) is not None
    assert refusal(Command("PUTSCRIPT", ("a", "b")), State.AUTHENTICATED) is None
    assert refusal(Command("FOO", ()), State.AUTHENTICATED).text == "Unknown command FOO"
