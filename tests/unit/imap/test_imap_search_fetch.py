"""SEARCH keys (every RFC 3501 key, OR/NOT/lists, dates, CHARSET, MODSEQ) and FETCH
data items (macros, sections, partials, PEEK, MODSEQ, CHANGEDSINCE)."""

from __future__ import annotations

from datetime import date

import pytest

from waypost.imap.proto import (
    MACROS,
    All,
    And,
    Att,
    BadCharset,
    Body,
    BodySection,
    DateKey,
    EnvelopeField,
    Fetch,
    HasFlag,
    Header,
    Larger,
    ModSeqKey,
    Not,
    Or,
    Params,
    Search,
    SearchKey,
    Section,
    SequenceKey,
    SequenceSet,
    Smaller,
    Text,
    parse_command,
)


def criteria(text: str, params: Params = Params()) -> SearchKey:
    command, _ = parse_command(b"A1 SEARCH " + text.encode() + b"\r\n", params)
    assert isinstance(command, Search)
    return command.criteria


D = date(1994, 2, 1)

KEYS: list[tuple[str, SearchKey]] = [
    ("ALL", All()),
    ("ANSWERED", HasFlag("\\Answered")),
    ('BCC "x"', EnvelopeField("BCC", "x")),
    ("BEFORE 1-Feb-1994", DateKey("BEFORE", D)),
    ("BODY word", Body("word")),
    ("CC x", EnvelopeField("CC", "x")),
    ("DELETED", HasFlag("\\Deleted")),
    ("DRAFT", HasFlag("\\Draft")),
    ("FLAGGED", HasFlag("\\Flagged")),
    ("FROM x", EnvelopeField("FROM", "x")),
    ('HEADER Message-ID "<a@b>"', Header("Message-ID", "<a@b>")),
    ("KEYWORD $Forwarded", HasFlag("$Forwarded")),
    ("LARGER 1000", Larger(1000)),
    ("NEW", And((HasFlag("\\Recent"), HasFlag("\\Seen", False)))),
    ("NOT SEEN", Not(HasFlag("\\Seen"))),
    ("OLD", HasFlag("\\Recent", False)),
    ('ON "1-Feb-1994"', DateKey("ON", D)),
    ("OR SEEN DELETED", Or(HasFlag("\\Seen"), HasFlag("\\Deleted"))),
    ("RECENT", HasFlag("\\Recent")),
    ("SEEN", HasFlag("\\Seen")),
    ("SENTBEFORE 1-Feb-1994", DateKey("BEFORE", D, sent=True)),
    ("SENTON 01-feb-1994", DateKey("ON", D, sent=True)),
    ("SENTSINCE 1-FEB-1994", DateKey("SINCE", D, sent=True)),
    ("SINCE 1-Feb-1994", DateKey("SINCE", D)),
    ("SMALLER 10", Smaller(10)),
    ("SUBJECT {5}\r\nhello", EnvelopeField("SUBJECT", "hello")),
    ('TEXT ""', Text("")),
    ("TO x", EnvelopeField("TO", "x")),
    ("UID 1:*", SequenceKey(SequenceSet.of((1, None)), uid=True)),
    ("UNANSWERED", HasFlag("\\Answered", False)),
    ("UNDELETED", HasFlag("\\Deleted", False)),
    ("UNDRAFT", HasFlag("\\Draft", False)),
    ("UNFLAGGED", HasFlag("\\Flagged", False)),
    ("UNKEYWORD $Junk", HasFlag("$Junk", False)),
    ("UNSEEN", HasFlag("\\Seen", False)),
    ("2,4:7", SequenceKey(SequenceSet.of(2, (4, 7)))),
    ("*", SequenceKey(SequenceSet.of(None))),
    ("(SEEN)", HasFlag("\\Seen")),
    ("(SEEN UNDELETED)", And((HasFlag("\\Seen"), HasFlag("\\Deleted", False)))),
    ("MODSEQ 620162338", ModSeqKey(620162338)),
    ('MODSEQ "/flags/\\\\draft" all 0', ModSeqKey(0, "/flags/\\draft", "all")),
    ("seen", HasFlag("\\Seen")),
]


@pytest.mark.parametrize(("text", "expected"), KEYS, ids=[k for k, _ in KEYS])
def test_every_search_key(text: str, expected: SearchKey) -> None:
    assert criteria(text) == expected


def test_rfc3501_uid_search_example() -> None:
    """§6.4.8: "UID SEARCH 1:100 UID 443:557"."""
    command, _ = parse_command(b"A1 UID SEARCH 1:100 UID 443:557\r\n")
    assert command == Search(
        "A1",
        And((SequenceKey(SequenceSet.of((1, 100))), SequenceKey(SequenceSet.of((443, 557)), uid=True))),
        uid=True,
    )


def test_nested_or_not() -> None:
    assert criteria("OR (FROM a NOT TO b) OR SEEN (1:3)") == Or(
        And((EnvelopeField("FROM", "a"), Not(EnvelopeField("TO", "b")))),
        Or(HasFlag("\\Seen"), SequenceKey(SequenceSet.of((1, 3)))),
    )


def test_charset_decodes_literals() -> None:
    word = "привет".encode()
    command, _ = parse_command(b"A1 SEARCH CHARSET UTF-8 BODY {%d}\r\n" % len(word) + word + b"\r\n")
    assert command == Search("A1", Body("привет"), "UTF-8")


def test_charset_us_ascii_refuses_8_bit_literal() -> None:
    from waypost.imap.proto import BadCommand, Reason

    with pytest.raises(BadCommand) as bad:
        parse_command(b"A1 SEARCH CHARSET US-ASCII BODY {2}\r\n\xc3\xa9\r\n")
    assert bad.value.reason is Reason.BAD_STRING


def test_no_charset_reads_8_bit_literal_as_utf8() -> None:
    command, _ = parse_command("A1 SEARCH BODY {2}\r\né\r\n".encode())
    assert command == Search("A1", Body("é"))


def test_unknown_charset_names_the_supported_ones() -> None:
    with pytest.raises(BadCharset) as bad:
        parse_command(b"A1 SEARCH CHARSET ISO-8859-1 ALL\r\n")
    assert bad.value.supported == ("UTF-8", "US-ASCII")
    # a server that lists it can take it
    params = Params(charsets=("UTF-8", "US-ASCII", "ISO-8859-1"))
    command, _ = parse_command(b"A1 SEARCH CHARSET ISO-8859-1 BODY {1}\r\n\xe9\r\n", params)
    assert command == Search("A1", Body("é"), "ISO-8859-1")
    # listed but unknown to Python: still BADCHARSET, not a crash
    with pytest.raises(BadCharset):
        parse_command(b"A1 SEARCH CHARSET X-NONE ALL\r\n", Params(charsets=("X-NONE",)))


# -- FETCH ----------------------------------------------------------------------------


def fetch(text: str) -> Fetch:
    command, _ = parse_command(b"A1 FETCH 1 " + text.encode() + b"\r\n")
    assert isinstance(command, Fetch)
    return command


@pytest.mark.parametrize("macro", ["ALL", "FAST", "FULL", "all", "Fast"])
def test_macros(macro: str) -> None:
    command = fetch(macro)
    assert command.macro == macro.upper()
    assert command.attributes == MACROS[macro.upper()]


@pytest.mark.parametrize("att", list(Att))
def test_every_simple_item(att: Att) -> None:
    assert fetch(att.value).attributes == (att,)
    assert fetch(f"({att.value.lower()})").attributes == (att,)


SECTIONS = [
    ("BODY[]", BodySection()),
    ("BODY.PEEK[]", BodySection(peek=True)),
    ("BODY[HEADER]", BodySection(Section((), "HEADER"))),
    ("BODY[TEXT]<0.2048>", BodySection(Section((), "TEXT"), (0, 2048))),
    ("body.peek[header.fields (date from)]", BodySection(Section((), "HEADER.FIELDS", ("date", "from")), peek=True)),
    ("BODY[HEADER.FIELDS.NOT (X-Foo)]", BodySection(Section((), "HEADER.FIELDS.NOT", ("X-Foo",)))),
    ("BODY[1]", BodySection(Section((1,)))),
    ("BODY[3.HEADER]", BodySection(Section((3,), "HEADER"))),
    ("BODY[4.1.MIME]", BodySection(Section((4, 1), "MIME"))),
    ("BODY[4.2.2.1]", BodySection(Section((4, 2, 2, 1)))),
    ("BODY[4.2.TEXT]<100.5>", BodySection(Section((4, 2), "TEXT"), (100, 5))),
]


@pytest.mark.parametrize(("text", "expected"), SECTIONS, ids=[s for s, _ in SECTIONS])
def test_sections(text: str, expected: BodySection) -> None:
    assert fetch(text).attributes == (expected,)


def test_section_wire_form() -> None:
    """The section a response echoes (RFC 3501 §7.4.2)."""
    assert str(Section((4, 2), "HEADER.FIELDS", ("DATE", "FROM"))) == "4.2.HEADER.FIELDS (DATE FROM)"
    assert str(Section((), "HEADER.FIELDS", ("X Y",))) == 'HEADER.FIELDS ("X Y")'
    assert str(Section((1, 2))) == "1.2"
    assert str(Section()) == ""


def test_changedsince_modifier() -> None:
    command, _ = parse_command(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n")
    assert command == Fetch("s100", SequenceSet.of((1, None)), (Att.FLAGS,), uid=True, changed_since=12345)


@pytest.mark.parametrize("line", [b"A1 FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n", b"A1 FETCH 1 FLAGS (CHANGEDSINCE)\r\n"])
def test_changedsince_needs_a_positive_modseq(line: bytes) -> None:
    from waypost.imap.proto import BadCommand

    with pytest.raises(BadCommand):
        parse_command(line)
