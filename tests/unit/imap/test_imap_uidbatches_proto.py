"""UIDBATCHES (draft-ietf-mailmaint-imap-uidbatches) in the protocol core: the draft's
command forms parse, the malformed ones are BAD, the response serialises byte for
byte, and the command is legal only with a mailbox selected."""

from __future__ import annotations

import pytest

from waypost.imap.proto import BadCommand, Params, Rejected, UidBatches, UidBatchesData, parse_command
from waypost.imap.proto.state import State, is_legal


@pytest.mark.parametrize("line,expected", [
    (b"A142 UIDBATCHES 2000\r\n", UidBatches("A142", 2000)),
    (b"A143 UIDBATCHES 1000 10:20\r\n", UidBatches("A143", 1000, (10, 20))),
    (b"A144 uidbatches 500 20:10\r\n", UidBatches("A144", 500, (20, 10))),  # refused later: CLIENTBUG
])
def test_commands_parse(line: bytes, expected: UidBatches) -> None:
    assert parse_command(line, Params())[0] == expected


@pytest.mark.parametrize("line", [b"a UIDBATCHES\r\n", b"a UIDBATCHES abc\r\n", b"a UIDBATCHES 500 10\r\n",
                                  b"a UIDBATCHES 0\r\n", b"a UIDBATCHES 500 0:3\r\n", b"a UIDBATCHES 500 1:*\r\n",
                                  b"a UIDBATCHES 500 1:2 x\r\n"])
def test_malformed_is_bad(line: bytes) -> None:
    with pytest.raises((BadCommand, Rejected)):
        parse_command(line, Params())


def test_response_serialises() -> None:
    assert UidBatchesData("A143", ((215295, 99696), (99695, 20351), (20350, 7830), (7829, 1))).encode() == \
        b'* UIDBATCHES (TAG "A143") 215295:99696,99695:20351,20350:7830,7829:1\r\n'
    assert UidBatchesData("A144", ()).encode() == b'* UIDBATCHES (TAG "A144")\r\n'


def test_selected_state_only() -> None:
    assert is_legal("UIDBATCHES", State.SELECTED) and not is_legal("UIDBATCHES", State.AUTHENTICATED)
