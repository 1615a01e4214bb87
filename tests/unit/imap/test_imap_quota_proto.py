"""QUOTA (RFC 9208) in the protocol core: the RFC's command examples parse, the
responses serialise byte for byte, bad forms are rejected."""

from __future__ import annotations

import pytest

from waypost.imap.proto import GetQuota, GetQuotaRoot, Params, QuotaData, QuotaRootData, Rejected, SetQuota, Status
from waypost.imap.proto import parse_command
from waypost.imap.proto.state import State, is_legal


@pytest.mark.parametrize("line,expected", [
    # RFC 9208 §4.3.1, §4.3.2, §4.3.3 examples
    (b'G GETQUOTA ""\r\n', GetQuota("G", "")),
    (b"G GETQUOTAROOT INBOX\r\n", GetQuotaRoot("G", "INBOX")),
    (b'S SETQUOTA "" (STORAGE 512)\r\n', SetQuota("S", "", (("STORAGE", 512),))),
    (b'S SETQUOTA "" (STORAGE 512 MESSAGE 100)\r\n', SetQuota("S", "", (("STORAGE", 512), ("MESSAGE", 100)))),
    (b'S SETQUOTA "" ()\r\n', SetQuota("S", "", ())),
    (b"A042 STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)\r\n",
     Status("A042", "INBOX", ("MESSAGES", "DELETED", "DELETED-STORAGE"))),
])
def test_rfc9208_commands_parse(line, expected):
    assert parse_command(line, Params())[0] == expected


@pytest.mark.parametrize("line", [
    b"G GETQUOTA\r\n",
    b"G GETQUOTAROOT\r\n",
    b'S SETQUOTA "" (STORAGE)\r\n',
    b'S SETQUOTA "" (STORAGE x)\r\n',
    b'S SETQUOTA "" STORAGE 1\r\n',
])
def test_bad_quota_commands(line):
    with pytest.raises(Rejected):
        parse_command(line, Params())


def test_rfc9208_responses_serialise():
    assert QuotaRootData("INBOX", ("",)).encode() == b'* QUOTAROOT INBOX ""\r\n'
    assert QuotaRootData("comp.mail.mime", ()).encode() == b"* QUOTAROOT comp.mail.mime\r\n"
    assert QuotaData("", (("STORAGE", 10, 512),)).encode() == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert QuotaData("", (("STORAGE", 10, 512), ("MESSAGE", 3, 100))).encode() == \
        b'* QUOTA "" (STORAGE 10 512 MESSAGE 3 100)\r\n'


def test_quota_commands_need_authentication():
    for name in ("GETQUOTA", "GETQUOTAROOT", "SETQUOTA"):
        assert not is_legal(name, State.NOT_AUTHENTICATED)
        assert is_legal(name, State.AUTHENTICATED) and is_legal(name, State.SELECTED)
