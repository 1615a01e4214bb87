"""WITHIN (RFC 5032) in the protocol core: OLDER and YOUNGER parse, refuse a zero or
missing interval, and match against the time of the test."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from waypost.imap.message import MessageView, evaluate
from waypost.imap.proto import And, BadCommand, Params, Rejected, Search, Within, parse_command


@dataclass
class Indexed:
    internaldate: float
    savedate: float | None = None
    seq: int = 1
    uid: int = 1
    flags: tuple[str, ...] = ()
    size: int = 0
    modseq: int = 1

    def view(self) -> MessageView:
        raise AssertionError("OLDER/YOUNGER read only the index")


@pytest.mark.parametrize("line,expected", [
    # RFC 5032 §4's example, and the two together.
    (b"A1 SEARCH UNSEEN YOUNGER 259200\r\n", None),
    (b"a SEARCH OLDER 3600\r\n", Search("a", Within("OLDER", 3600))),
    (b"b UID SEARCH YOUNGER 60 OLDER 30\r\n",
     Search("b", And((Within("YOUNGER", 60), Within("OLDER", 30))), uid=True)),
])
def test_rfc5032_commands_parse(line: bytes, expected: object) -> None:
    cmd = parse_command(line, Params())[0]
    if expected is not None:
        assert cmd == expected
    else:
        assert isinstance(cmd, Search) and Within("YOUNGER", 259200) in cmd.criteria.keys


@pytest.mark.parametrize("line", [b"a SEARCH OLDER 0\r\n", b"a SEARCH YOUNGER\r\n", b"a SEARCH OLDER -1\r\n",
                                  b"a SEARCH YOUNGER 1h\r\n", b"a SEARCH OLDER 99999999999\r\n"])
def test_malformed_is_bad(line: bytes) -> None:
    with pytest.raises((BadCommand, Rejected)):
        parse_command(line, Params())


def test_matching() -> None:
    hour_ago = Indexed(time.time() - 3600)
    assert evaluate(Within("OLDER", 1800), hour_ago, 1, 1)
    assert not evaluate(Within("YOUNGER", 1800), hour_ago, 1, 1)
    assert evaluate(Within("YOUNGER", 7200), hour_ago, 1, 1)
    assert not evaluate(Within("OLDER", 7200), hour_ago, 1, 1)
    # The same compiled key, later: the time is read at each test.
    fresh = Indexed(time.time() + 0.5)
    assert not evaluate(Within("OLDER", 1), fresh, 1, 1)
    time.sleep(1.6)
    assert evaluate(Within("OLDER", 1), fresh, 1, 1)
