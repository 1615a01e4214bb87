"""APPENDLIMIT (RFC 7889) and CREATE-SPECIAL-USE (RFC 6154 §3) in the protocol core: the
RFC's command lines parse and the responses serialise byte for byte."""

from __future__ import annotations

from waypost.imap.proto import Create, List, Params, Status, StatusData, parse_command


def test_rfc7889_status_and_list_parse() -> None:
    # RFC 7889 §4 and §5's examples
    assert parse_command(b"a STATUS INBOX (APPENDLIMIT)\r\n", Params())[0] == Status("a", "INBOX", ("APPENDLIMIT",))
    cmd = parse_command(b'b LIST "" % RETURN (STATUS (APPENDLIMIT))\r\n', Params())[0]
    assert isinstance(cmd, List) and cmd.return_status == ("APPENDLIMIT",)
    assert StatusData("INBOX", (("APPENDLIMIT", 257890),)).encode() == b"* STATUS INBOX (APPENDLIMIT 257890)\r\n"


def test_rfc6154_create_use_parses() -> None:
    assert parse_command(b"t2 CREATE MySpecialJunk (USE (\\Junk))\r\n", Params())[0] == \
        Create("t2", "MySpecialJunk", ("\\Junk",))
    assert parse_command(b"t3 CREATE Two (USE (\\Archive \\Flagged))\r\n", Params())[0] == \
        Create("t3", "Two", ("\\Archive", "\\Flagged"))
