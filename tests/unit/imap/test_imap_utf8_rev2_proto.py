"""UTF8=ACCEPT (RFC 6855) and IMAP4rev2 (RFC 9051) in the protocol core: what a
session's parameters allow once enabled, and the IMAP4rev2 STATUS item."""

from __future__ import annotations

import dataclasses

import pytest

from waypost.imap.commands.authenticated import decode_name, encode_name
from waypost.imap.proto import Enable, Params, Rejected, Status, StatusData, parse_command


def test_enable_parses():
    assert parse_command(b"t ENABLE UTF8=ACCEPT IMAP4rev2\r\n", Params())[0] == \
        Enable("t", ("UTF8=ACCEPT", "IMAP4REV2"))


def test_utf8_quoted_strings_only_once_enabled():
    line = 'a CREATE "Réunion"\r\n'.encode()
    with pytest.raises(Rejected):
        parse_command(line, Params())
    utf8 = dataclasses.replace(Params(), utf8=True)
    cmd = parse_command(line, utf8)[0]
    assert cmd.mailbox == "Réunion"  # type: ignore[attr-defined]
    with pytest.raises(Rejected):  # still UTF-8 only
        parse_command(b'a CREATE "R\xe9union"\r\n', utf8)


def test_names_in_utf8_or_modified_utf7():
    assert decode_name("R&AOk-union") == "Réunion"
    assert encode_name("Réunion") == "R&AOk-union"
    # RFC 6855 §3: after ENABLE UTF8=ACCEPT names are UTF-8 as they stand.
    assert decode_name("Réunion", utf8=True) == "Réunion"
    assert decode_name("R&AOk-union", utf8=True) == "R&AOk-union"
    assert encode_name("Réunion", utf8=True) == "Réunion"
    assert decode_name("inbox", utf8=True) == "INBOX"


def test_status_deleted():
    # RFC 9051 §6.3.11: status-att =/ "DELETED"
    assert parse_command(b"s STATUS blurdybloop (MESSAGES DELETED)\r\n", Params())[0] == \
        Status("s", "blurdybloop", ("MESSAGES", "DELETED"))
    assert StatusData("blurdybloop", (("MESSAGES", 231), ("DELETED", 7))).encode() == \
        b"* STATUS blurdybloop (MESSAGES 231 DELETED 7)\r\n"
