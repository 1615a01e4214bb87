"""QRESYNC (RFC 7162 §3.2) in the protocol core: the RFC's command lines parse to the
typed commands, its response lines serialise byte for byte, and the malformed forms
are refused (tagged BAD)."""

from __future__ import annotations

import pytest

from waypost.imap.proto import (
    Att,
    BadCommand,
    Enable,
    Examine,
    Fetch,
    Params,
    QresyncParams,
    Rejected,
    Select,
    SequenceSet,
    VanishedData,
    parse_command,
)


@pytest.mark.parametrize("line,expected", [
    # RFC 7162 §3.2.3
    (b"A01 ENABLE QRESYNC\r\n", Enable("A01", ("QRESYNC",))),
    # §3.2.5.1
    (b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
     Select("A02", "INBOX", qresync=QresyncParams(
         67890007, 20050715194045000, SequenceSet.of(41, (43, 211), (214, 541))))),
    # §3.2.5.2: known UIDs and seq-match-data
    (b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999"
     b" 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))\r\n",
     Select("B04", "INBOX", qresync=QresyncParams(
         67890007, 90060115194045000, SequenceSet.of((1, 29997)),
         (SequenceSet.of(5000, 7500, 9000, (9990, 9999)),
          SequenceSet.of(15000, 22500, 27000, 29970, 29973, 29976, 29979, 29982, 29985, 29988, 29991,
                         29994, 29997))))),
    # Only the two numbers; seq-match-data without known UIDs; with CONDSTORE too.
    (b"A03 EXAMINE INBOX (QRESYNC (67890007 1))\r\n",
     Examine("A03", "INBOX", qresync=QresyncParams(67890007, 1))),
    (b"A04 SELECT INBOX (QRESYNC (1 2 (1:2 5,7)))\r\n",
     Select("A04", "INBOX", qresync=QresyncParams(1, 2, None, (SequenceSet.of((1, 2)), SequenceSet.of(5, 7))))),
    (b"A05 SELECT INBOX (CONDSTORE QRESYNC (1 2))\r\n",
     Select("A05", "INBOX", True, qresync=QresyncParams(1, 2))),
    # §3.2.6
    (b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
     Fetch("s100", SequenceSet.of((300, 500)), (Att.FLAGS,), uid=True, changed_since=12345, vanished=True)),
    (b"s101 UID FETCH 1:* (FLAGS) (VANISHED CHANGEDSINCE 7)\r\n",
     Fetch("s101", SequenceSet.of((1, None)), (Att.FLAGS,), uid=True, changed_since=7, vanished=True)),
])
def test_rfc7162_commands_parse(line: bytes, expected: object) -> None:
    assert parse_command(line, Params())[0] == expected


@pytest.mark.parametrize("line", [
    b"A SELECT INBOX (QRESYNC)\r\n",
    b"A SELECT INBOX (QRESYNC ())\r\n",
    b"A SELECT INBOX (QRESYNC (1))\r\n",
    b"A SELECT INBOX (QRESYNC (0 1))\r\n",             # uidvalidity = nz-number
    b"A SELECT INBOX (QRESYNC (1 0))\r\n",             # mod-sequence-value is not 0
    b"A SELECT INBOX (QRESYNC (1 1 1:*))\r\n",         # known-uids: "*" is not allowed
    b"A SELECT INBOX (QRESYNC (1 1 $))\r\n",
    b"A SELECT INBOX (QRESYNC (1 1 1:5 (1:*  1:5)))\r\n",
    b"A SELECT INBOX (QRESYNC (1 1 1:5 (1:2)))\r\n",   # seq-match-data needs both sets
    b"A SELECT INBOX (QRESYNC (1 1) QRESYNC (1 1))\r\n",
    b"A SELECT INBOX (QRESYNC (1 1 1:5 (1 1) x))\r\n",
    b"A FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)\r\n",  # VANISHED: UID FETCH only
    b"A UID FETCH 1:* (FLAGS) (VANISHED)\r\n",             # ... and with CHANGEDSINCE
    b"A UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED VANISHED)\r\n",
    b"A UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 2)\r\n",
])
def test_malformed_qresync_is_bad(line: bytes) -> None:
    with pytest.raises((BadCommand, Rejected)):
        parse_command(line, Params())


def test_vanished_responses_serialise() -> None:
    # RFC 7162 §3.2.5.1 and §3.2.10
    assert VanishedData(SequenceSet.parse("41,43:116,118,120:211,214:540"), earlier=True).encode() == \
        b"* VANISHED (EARLIER) 41,43:116,118,120:211,214:540\r\n"
    assert VanishedData(SequenceSet.parse("405,407,410,425")).encode() == b"* VANISHED 405,407,410,425\r\n"
    assert VanishedData(SequenceSet.from_numbers([300, 301, 302, 405, 411]), earlier=True).encode() == \
        b"* VANISHED (EARLIER) 300:302,405,411\r\n"
