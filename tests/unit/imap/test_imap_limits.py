"""Every ``Params`` limit at its edge (STYLE point 8): the limit passes, one more fails."""

from __future__ import annotations

from typing import Any

import pytest

from waypost.imap.proto import (
    DEFAULT_PARAMS,
    BadCommand,
    LiteralTooLarge,
    NeedMore,
    Params,
    Reason,
    SequenceSet,
    parse_command,
)


def test_defaults() -> None:
    assert DEFAULT_PARAMS.max_line_length == 64 * 1024  # RFC 7162 §4: at least 8192; RFC 2971 ID: ~63,500
    assert DEFAULT_PARAMS.charsets == ("UTF-8", "US-ASCII")


@pytest.mark.parametrize(
    "field", ["max_line_length", "max_literal_size", "max_command_size", "max_nesting_depth", "max_sequence_items"]
)
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        overrides: dict[str, Any] = {field: 0}
        Params(**overrides)


def test_line_length_edge() -> None:
    params = Params(max_line_length=32)
    line = b"A1 LOGIN user " + b"p" * (32 - 16) + b"\r\n"
    assert len(line) == 32
    parse_command(line, params)
    longer = line[:-2] + b"p\r\n"
    with pytest.raises(BadCommand) as bad:
        parse_command(longer, params)
    assert bad.value.reason is Reason.LINE_TOO_LONG


def test_line_length_is_detected_before_the_line_ends() -> None:
    params = Params(max_line_length=32)
    with pytest.raises(NeedMore):
        parse_command(b"A1 LOGIN " + b"x" * 22, params)  # 31 octets, may still end in CRLF
    with pytest.raises(BadCommand) as bad:
        parse_command(b"A1 LOGIN " + b"x" * 23, params)  # 32 octets and no LF: too long
    assert bad.value.reason is Reason.LINE_TOO_LONG


def test_line_length_applies_to_each_line_of_a_command() -> None:
    params = Params(max_line_length=32)
    first = b"A1 LOGIN {3}\r\n"
    second = b" " + b"p" * 29 + b"\r\n"  # the line after the literal data "abc"
    assert len(second) == 32
    parse_command(first + b"abc" + second, params)
    with pytest.raises(BadCommand) as bad:
        parse_command(first + b"abc p" + second[1:], params)
    assert bad.value.reason is Reason.LINE_TOO_LONG


def test_literal_size_edge() -> None:
    params = Params(max_literal_size=10)
    ok = b"A1 LOGIN {10+}\r\n0123456789 x\r\n"
    parse_command(ok, params)
    with pytest.raises(LiteralTooLarge) as big:
        parse_command(b"A1 LOGIN {11+}\r\n", params)
    assert big.value.size == 11


def test_literal_size_checked_when_the_data_is_already_there() -> None:
    params = Params(max_literal_size=10)
    with pytest.raises(LiteralTooLarge):
        parse_command(b"A1 LOGIN {11+}\r\n01234567890 x\r\n", params)


def test_command_size_edge() -> None:
    command = b"A1 LOGIN {5+}\r\nabcde {5+}\r\nfghij\r\n"
    parse_command(command, Params(max_command_size=len(command)))
    with pytest.raises(LiteralTooLarge) as big:
        parse_command(command, Params(max_command_size=len(command) - 3))
    assert big.value.size == 5


def test_command_size_counts_lines_too() -> None:
    command = b"A1 SEARCH TEXT {1+}\r\na TEXT {1+}\r\nb TEXT c\r\n"
    parse_command(command, Params(max_command_size=len(command)))
    with pytest.raises(BadCommand) as bad:
        parse_command(command, Params(max_command_size=len(command) - 1))
    assert bad.value.reason is Reason.COMMAND_TOO_LONG


@pytest.mark.parametrize(
    ("template", "unit"),
    [
        (b"A1 SEARCH %sALL%s\r\n", (b"(", b")")),
        (b"A1 SEARCH %sALL%s\r\n", (b"NOT ", b"")),
        (b"A1 SEARCH %sALL%s\r\n", (b"OR ALL ", b"")),
    ],
)
def test_nesting_depth_edge(template: bytes, unit: tuple[bytes, bytes]) -> None:
    params = Params(max_nesting_depth=4)

    def nested(levels: int) -> bytes:
        return template % (unit[0] * levels, unit[1] * levels)

    parse_command(nested(4), params)
    with pytest.raises(BadCommand) as bad:
        parse_command(nested(5), params)
    assert bad.value.reason is Reason.TOO_DEEP


def test_nesting_depth_counts_lists_inside_lists() -> None:
    params = Params(max_nesting_depth=2)
    parse_command(b"A1 FETCH 1 (BODY[HEADER.FIELDS (DATE)])\r\n", params)
    parse_command(b'A1 LIST "" * RETURN (STATUS (MESSAGES))\r\n', params)
    for line in (b"A1 SEARCH (NOT (ALL))\r\n", b'A1 CREATE x (USE (\\Sent))\r\n'):
        with pytest.raises(BadCommand) as bad:
            parse_command(line, Params(max_nesting_depth=1))
        assert bad.value.reason is Reason.TOO_DEEP


def test_deep_nesting_never_reaches_the_recursion_limit() -> None:
    with pytest.raises(BadCommand) as bad:
        parse_command(b"A1 SEARCH " + b"NOT " * 100_000 + b"ALL\r\n", Params(max_line_length=1_000_000))
    assert bad.value.reason is Reason.TOO_DEEP


def test_sequence_items_edge() -> None:
    params = Params(max_sequence_items=3)
    command, _ = parse_command(b"A1 FETCH 1,3:4,* FLAGS\r\n", params)
    assert command.sequence == SequenceSet.of(1, (3, 4), None)  # type: ignore[attr-defined]
    for line in (b"A1 FETCH 1,3:4,*,9 FLAGS\r\n", b"A1 SEARCH UID 1,2,3,4\r\n", b"A1 UID EXPUNGE 1,2,3,4\r\n"):
        with pytest.raises(BadCommand) as bad:
            parse_command(line, params)
        assert bad.value.reason is Reason.TOO_MANY_SEQUENCE_ITEMS
        assert bad.value.reply().code is not None  # [LIMIT]
