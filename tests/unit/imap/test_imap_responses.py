"""How values become strings on the wire: atom, quoted string, literal or NIL, and
the guards that keep a response from being split or corrupted."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waypost.imap.proto import (
    Att,
    BadCharsetCode,
    BodySectionItem,
    BodyStructureItem,
    CapabilityCode,
    ContinueRequest,
    CopyUid,
    Envelope,
    FetchData,
    InternalDateItem,
    ListData,
    MultiPart,
    Params,
    R,
    Rfc822Item,
    Section,
    SequenceSet,
    SinglePart,
    StatusData,
    Tagged,
    Untagged,
    encode_all,
)
from waypost.imap.proto.lexer import Reader
from waypost.imap.proto.wire import MAX_QUOTED_LENGTH, astring, nstring, string


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("foo/bar]", b"foo/bar]"),
        ("", b'""'),
        ("Sent Mail", b'"Sent Mail"'),
        ('say "hi"', b'"say \\"hi\\""'),
        ("back\\slash", b'"back\\\\slash"'),
        ("NIL", b'"NIL"'),
        ("nil", b'"nil"'),
        ("50%", b'"50%"'),
        ("a*", b'"a*"'),
        ("(x)", b'"(x)"'),
        ("{3}", b'"{3}"'),
        ("two\r\nlines", b"{10}\r\ntwo\r\nlines"),
        ("café", b"{5}\r\ncaf\xc3\xa9"),
    ],
)
def test_astring_picks_the_form(value: str, wire: bytes) -> None:
    assert astring(value) == wire


def test_string_never_an_atom_and_long_strings_are_literals() -> None:
    assert string("INBOX") == b'"INBOX"'
    assert string(b"x" * MAX_QUOTED_LENGTH).startswith(b'"')
    assert string(b"x" * (MAX_QUOTED_LENGTH + 1)).startswith(b"{%d}\r\n" % (MAX_QUOTED_LENGTH + 1))
    assert nstring(None) == b"NIL"
    assert nstring("") == b'""'


def test_nul_is_never_sent() -> None:
    with pytest.raises(ValueError):
        string(b"a\x00b")


@given(st.binary(max_size=2 * MAX_QUOTED_LENGTH).filter(lambda b: b"\x00" not in b))
def test_every_string_reads_back(value: bytes) -> None:
    """What we write as an astring or a string, our own lexer reads as the same octets."""
    for wire in (astring(value), string(value)):
        buf = wire + b"\r\n"
        reader = Reader(buf, len(buf), Params())
        assert reader.astring() == value
        reader.crlf()


def test_text_cannot_split_the_response() -> None:
    """A text that quotes the client must not smuggle a CRLF into the stream."""
    assert Tagged("A1", "BAD", "evil\r\n* OK injected").encode() == b"A1 BAD evil  * OK injected\r\n"
    assert Untagged("OK", "caf\u00e9").encode() == b"* OK caf?\r\n"
    with pytest.raises(ValueError):
        Tagged("A1", "OK", "")


def test_names_with_specials_are_quoted_in_every_response() -> None:
    assert ListData((), "/", 'a "b"').encode() == b'* LIST () "/" "a \\"b\\""\r\n'
    assert ListData((), "\\", "x").encode() == b'* LIST () "\\\\" x\r\n'
    assert StatusData("my box", (("MESSAGES", 1),)).encode() == b'* STATUS "my box" (MESSAGES 1)\r\n'
    with pytest.raises(ValueError):
        ListData((), "//", "x").encode()
    with pytest.raises(ValueError):
        ListData(("bad flag",), "/", "x").encode()


def test_codes() -> None:
    assert BadCharsetCode(("UTF-8", "US-ASCII")).encode() == b"BADCHARSET (UTF-8 US-ASCII)"
    assert BadCharsetCode().encode() == b"BADCHARSET"
    assert CapabilityCode(("IMAP4rev1", "IDLE")).encode() == b"CAPABILITY IMAP4rev1 IDLE"
    assert (
        Tagged("a1", "OK", "Logged in", CapabilityCode(("IMAP4rev1", "LITERAL+"))).encode()
        == b"a1 OK [CAPABILITY IMAP4rev1 LITERAL+] Logged in\r\n"
    )
    with pytest.raises(ValueError):
        CopyUid(1, SequenceSet.parse("1:*"), SequenceSet.parse("2")).encode()


def test_continuation_with_challenge_and_catalogue() -> None:
    assert ContinueRequest(data=b"").encode() == b"+ \r\n"
    assert ContinueRequest(data=b"hi").encode() == b"+ aGk=\r\n"
    assert R.CONTINUE_LITERAL.continuation().encode() == b"+ Ready for literal data\r\n"
    with pytest.raises(ValueError):
        R.CONTINUE_LITERAL.tagged("a1")


def test_fetch_items() -> None:
    utc = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    plus_0530 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert InternalDateItem(utc).encode() == b'INTERNALDATE "02-Jan-2024 03:04:05 +0000"'
    assert InternalDateItem(plus_0530).encode() == b'INTERNALDATE "02-Jan-2024 03:04:05 +0530"'
    assert InternalDateItem(datetime(2024, 1, 2)).encode() == b'INTERNALDATE "02-Jan-2024 00:00:00 +0000"'
    assert BodySectionItem(Section(), b"abc", origin=0).encode() == b'BODY[]<0> "abc"'
    assert BodySectionItem(Section((1,)), None).encode() == b"BODY[1] NIL"
    assert Rfc822Item(Att.RFC822_HEADER, b"a: b\r\n\r\n").encode() == b"RFC822.HEADER {8}\r\na: b\r\n\r\n"
    with pytest.raises(ValueError):
        FetchData(1, ()).encode()


def test_bodystructure_with_extension_data() -> None:
    part = SinglePart(
        "TEXT",
        "PLAIN",
        (("CHARSET", "UTF-8"),),
        encoding="QUOTED-PRINTABLE",
        size=10,
        lines=1,
        disposition=("inline", ()),
        language=("en",),
    )
    assert BodyStructureItem(part).encode() == (
        b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 10 1 '
        b'NIL ("inline" NIL) "en" NIL)'
    )
    attached = SinglePart(
        "MESSAGE",
        "RFC822",
        encoding="7BIT",
        size=20,
        lines=2,
        envelope=Envelope(None, "hi"),
        body=SinglePart("APPLICATION", "OCTET-STREAM", encoding="BASE64", size=4),
    )
    assert MultiPart((attached,), "MIXED", (("BOUNDARY", "x"),), language=("en", "fr")).encode() == (
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 20 (NIL "hi" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 4 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) '
        b'"MIXED" ("BOUNDARY" "x") NIL ("en" "fr") NIL)'
    )
    with pytest.raises(ValueError):
        SinglePart("MESSAGE", "RFC822").encode()
    with pytest.raises(ValueError):
        MultiPart((), "MIXED").encode()


def test_encode_all() -> None:
    assert encode_all([Untagged("OK", "a"), Tagged("t", "OK", "b")]) == b"* OK a\r\nt OK b\r\n"


def test_every_rejection_reply_is_in_the_catalogue() -> None:
    from waypost.imap.proto import Reason
    from waypost.imap.proto.replies import BAD_COMMAND

    assert set(BAD_COMMAND) == set(Reason)
    assert all(reply.status == "BAD" for reply in BAD_COMMAND.values())
