"""waypost.imap.message: ENVELOPE, BODYSTRUCTURE, BODY[section] and SEARCH evaluation
over stored message bytes (RFC 3501 §6.4.4, §6.4.5, §7.4.2)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waypost.imap import message
from waypost.imap.message import (
    MAX_MIME_DEPTH,
    MessageView,
    bodystructure,
    envelope,
    evaluate,
    from_json,
    partial,
    section,
    to_json,
)
from waypost.imap.proto.fetch import Section
from waypost.imap.proto.search import (
    All,
    And,
    Body,
    DateKey,
    EnvelopeField,
    HasFlag,
    Header,
    Larger,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SequenceKey,
    Smaller,
    Text,
)
from waypost.imap.proto.sequence import SequenceSet
from waypost.imap.proto.structure import Address, MultiPart, SinglePart


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def sec(spec: str, *fields: str) -> Section:
    """Section("1.2.MIME") from its wire spelling (without the header-list)."""
    parts: list[int] = []
    words = spec.split(".") if spec else []
    while words and words[0].isdigit():
        parts.append(int(words.pop(0)))
    return Section(tuple(parts), ".".join(words) or None, fields)


def lines_of(total: int, count: int) -> bytes:
    """``count`` CRLF lines of filler adding up to exactly ``total`` octets."""
    chars = total - 2 * count
    short, extra = divmod(chars, count)
    return b"".join(b"x" * (short + (i < extra)) + b"\r\n" for i in range(count))


# --------------------------------------------------------------------------- RFC 3501

RFC3501_SAMPLE = (
    crlf(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
        "From: Terry Gray <gray@cac.washington.edu>\n"
        "Subject: IMAP4rev1 WG mtg summary and minutes\n"
        "To: imap@cac.washington.edu\n"
        "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\n"
        "Message-Id: <B27397-0100000@cac.washington.edu>\n"
        "MIME-Version: 1.0\n"
        "\n"
    )
    + lines_of(3028, 92)
)


def test_rfc3501_section8_envelope() -> None:
    assert envelope(RFC3501_SAMPLE).encode() == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )


def test_rfc3501_section8_body() -> None:
    # No Content-Type: TEXT/PLAIN in US-ASCII, 7BIT (RFC 2045 §5.2, §6.1).
    body = bodystructure(RFC3501_SAMPLE)
    assert body.encode(extensible=False) == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    assert body.encode() == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92 NIL NIL NIL NIL)'


def test_rfc3501_section742_bodystructure_example() -> None:
    data = (
        crlf(
            "From: gray@cac.washington.edu\n"
            "MIME-Version: 1.0\n"
            "Content-Type: MULTIPART/MIXED; BOUNDARY=x\n"
            "\n"
            "--x\n"
            "\n"
        )
        + lines_of(1152, 23)
        + crlf(
            "\n--x\n"
            "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\n"
            "Content-ID: <960723163407.20117h@cac.washington.edu>\n"
            "Content-Description: Compiler diff\n"
            "Content-Transfer-Encoding: BASE64\n"
            "\n"
        )
        + lines_of(4554, 73)
        + b"\r\n--x--\r\n"
    )
    assert bodystructure(data).encode(extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )


# ------------------------------------------------------------------ a real MIME tree

ALT_PLAIN_MIME = crlf("Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n")
ALT_PLAIN = crlf("Caf=E9 cr=E8me for everyone.\nSee the attached re=\nport.")
ALT_HTML_MIME = crlf("Content-Type: text/html; charset=utf-8\n\n")
ALT_HTML = crlf("<p>Café crème for everyone.</p>")
ALT_BODY = b"--alt\r\n" + ALT_PLAIN_MIME + ALT_PLAIN + b"\r\n--alt\r\n" + ALT_HTML_MIME + ALT_HTML + b"\r\n--alt--\r\n"
ALT_MIME = crlf('Content-Type: multipart/alternative; boundary="alt"\n\n')

PDF_MIME = crlf(
    'Content-Type: application/pdf; name="report.pdf"\n'
    "Content-Transfer-Encoding: base64\n"
    'Content-Disposition: attachment; filename="report.pdf"\n'
    "\n"
)
PDF = b"JVBERi0xLjQK"

INNER_HEADER = crlf(
    "From: Carol <carol@example.com>\n"
    "To: alice@example.net\n"
    "Subject: Numbers\n"
    "Date: Mon, 1 Jan 2024 09:00:00 +0100\n"
    "Message-ID: <numbers@example.com>\n"
    "Content-Type: multipart/mixed; boundary=inner\n"
    "\n"
)
INNER_TEXT_MIME = crlf("Content-Type: text/plain\n\n")
INNER_TEXT = b"Here are the numbers."
INNER_CSV_MIME = crlf(
    "Content-Type: text/csv; charset=us-ascii\nContent-Disposition: attachment; filename=numbers.csv\n\n"
)
INNER_CSV = crlf("a,b\n1,2")
INNER_BODY = (
    b"--inner\r\n" + INNER_TEXT_MIME + INNER_TEXT
    + b"\r\n--inner\r\n" + INNER_CSV_MIME + INNER_CSV
    + b"\r\n--inner--\r\n"
)
FORWARDED = INNER_HEADER + INNER_BODY
FORWARD_MIME = crlf("Content-Type: message/rfc822\nContent-Description: Forwarded message\n\n")

TOP_HEADER = crlf(
    "Return-Path: <alice@example.net>\n"
    "From: Alice <alice@example.net>\n"
    "To: Bob <bob@example.org>,\n"
    "  carol@example.com\n"
    "Subject: =?UTF-8?Q?Quarterly_report_=E2=80=93_draft?=\n"
    "Date: Tue, 2 Jan 2024 10:00:00 +0000\n"
    "Message-ID: <report@example.net>\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="outer"\n'
    "\n"
)
TOP_BODY = (
    crlf("This is a multi-part message in MIME format.\n--outer\n")
    + ALT_MIME
    + ALT_BODY
    + b"\r\n--outer\r\n"
    + PDF_MIME
    + PDF
    + b"\r\n--outer\r\n"
    + FORWARD_MIME
    + FORWARDED
    + b"\r\n--outer--\r\n"
    + b"epilogue\r\n"
)
NESTED = TOP_HEADER + TOP_BODY


def test_nested_bodystructure() -> None:
    inner_envelope = (
        b'("Mon, 1 Jan 2024 09:00:00 +0100" "Numbers" '
        b'(("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) '
        b'(("Carol" NIL "carol" "example.com")) ((NIL NIL "alice" "example.net")) '
        b'NIL NIL NIL "<numbers@example.com>")'
    )
    expected = (
        b"("
        b'(("TEXT" "PLAIN" ("CHARSET" "ISO-8859-1") NIL NIL "QUOTED-PRINTABLE" 57 2 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 33 0 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "alt") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") NIL NIL "BASE64" 12 NIL'
        b' ("ATTACHMENT" ("FILENAME" "report.pdf")) NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL "Forwarded message" "7BIT" %d ' % len(FORWARDED)
        + inner_envelope
        + b' (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 21 0 NIL NIL NIL NIL)'
        b'("TEXT" "CSV" ("CHARSET" "us-ascii") NIL NIL "7BIT" 8 1 NIL'
        b' ("ATTACHMENT" ("FILENAME" "numbers.csv")) NIL NIL)'
        b' "MIXED" ("BOUNDARY" "inner") NIL NIL NIL) %d NIL NIL NIL NIL)' % FORWARDED.count(b"\n")
        + b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)'
    )
    assert len(ALT_PLAIN) == 57 and len(ALT_HTML) == 33 and len(INNER_CSV) == 8
    assert bodystructure(NESTED).encode() == expected


def test_nested_body_is_the_non_extensible_form() -> None:
    body = bodystructure(NESTED).encode(extensible=False)
    assert body.startswith(b'((("TEXT" "PLAIN" ("CHARSET" "ISO-8859-1") NIL NIL "QUOTED-PRINTABLE" 57 2)')
    assert body.endswith(b' "MIXED") %d) "MIXED")' % FORWARDED.count(b"\n"))
    assert b"ATTACHMENT" not in body and b"BOUNDARY" not in body


def test_nested_envelope_keeps_encoded_words_and_folded_lists() -> None:
    env = envelope(NESTED)
    assert env.subject == "=?UTF-8?Q?Quarterly_report_=E2=80=93_draft?="
    assert env.to == (Address("Bob", None, "bob", "example.org"), Address(None, None, "carol", "example.com"))
    assert env.sender == env.reply_to == env.from_ == (Address("Alice", None, "alice", "example.net"),)
    assert env.in_reply_to is None and env.message_id == "<report@example.net>"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", NESTED),
        ("HEADER", TOP_HEADER),
        ("TEXT", TOP_BODY),
        ("1", ALT_BODY),
        ("1.MIME", ALT_MIME),
        ("1.1", ALT_PLAIN),
        ("1.1.MIME", ALT_PLAIN_MIME),
        ("1.2", ALT_HTML),
        ("1.2.MIME", ALT_HTML_MIME),
        ("2", PDF),
        ("2.MIME", PDF_MIME),
        ("3", FORWARDED),
        ("3.MIME", FORWARD_MIME),
        ("3.HEADER", INNER_HEADER),
        ("3.TEXT", INNER_BODY),
        ("3.1", INNER_TEXT),
        ("3.1.MIME", INNER_TEXT_MIME),
        ("3.2", INNER_CSV),
        ("3.2.MIME", INNER_CSV_MIME),
        # parts that do not exist, and HEADER/TEXT of parts that are not messages
        ("4", b""),
        ("0", b""),
        ("1.3", b""),
        ("2.1", b""),
        ("3.3", b""),
        ("3.1.1", b""),
        ("1.HEADER", b""),
        ("2.TEXT", b""),
    ],
)
def test_nested_sections(spec: str, expected: bytes) -> None:
    assert section(NESTED, sec(spec)) == expected


def test_header_fields() -> None:
    got = section(NESTED, sec("HEADER.FIELDS", "to", "SUBJECT", "X-Absent"))
    assert got == crlf(
        "To: Bob <bob@example.org>,\n  carol@example.com\n"
        "Subject: =?UTF-8?Q?Quarterly_report_=E2=80=93_draft?=\n"
        "\n"
    )


def test_header_fields_keeps_message_order_and_repeats() -> None:
    data = crlf("Received: a\nX-A: 1\nReceived: b\n\tfolded\nx-a : 2\nFrom: f@x\n\nbody\n")
    assert section(data, sec("HEADER.FIELDS", "X-A", "RECEIVED")) == crlf(
        "Received: a\nX-A: 1\nReceived: b\n\tfolded\nx-a : 2\n\n"
    )
    assert section(data, sec("HEADER.FIELDS.NOT", "X-A", "RECEIVED")) == crlf("From: f@x\n\n")


def test_header_fields_none_match_is_the_blank_line() -> None:
    assert section(NESTED, sec("HEADER.FIELDS", "X-None")) == b"\r\n"
    assert section(NESTED, sec("3.HEADER.FIELDS", "Subject")) == crlf("Subject: Numbers\n\n")
    assert section(NESTED, sec("3.HEADER.FIELDS.NOT", "Content-Type", "Message-ID", "Date", "To")) == crlf(
        "From: Carol <carol@example.com>\nSubject: Numbers\n\n"
    )


def test_header_fields_not_without_matches_is_the_header() -> None:
    assert section(NESTED, sec("HEADER.FIELDS.NOT", "X-None")) == TOP_HEADER


def test_header_fields_name_is_not_a_prefix_match() -> None:
    data = crlf("Subject-X: no\nSubjects: no\nSubject: yes\n\n")
    assert section(data, sec("HEADER.FIELDS", "subject")) == crlf("Subject: yes\n\n")


def test_header_only_message_without_final_line_end() -> None:
    data = b"Subject: hi\r\nFrom: a@b"
    assert section(data, sec("HEADER")) == data
    assert section(data, sec("TEXT")) == b""
    assert section(data, sec("HEADER.FIELDS", "from")) == b"From: a@b\r\n\r\n"
    assert section(data, sec("HEADER.FIELDS", "subject")) == b"Subject: hi\r\n\r\n"


def test_message_starting_with_the_blank_line() -> None:
    data = b"\r\nonly a body\r\n"
    assert section(data, sec("HEADER")) == b"\r\n"
    assert section(data, sec("TEXT")) == b"only a body\r\n"
    assert envelope(data).encode() == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_partial() -> None:
    assert partial(b"0123456789", 2, 3) == b"234"
    assert partial(b"0123456789", 8, 100) == b"89"
    assert partial(b"0123456789", 10, 1) == b""
    assert partial(b"0123456789", 50, 1) == b""


# ---------------------------------------------------------------- simple messages

PLAIN = crlf("From: a@example.com\nSubject: hello\n\nline one\nline two\n")


def test_single_part_sections() -> None:
    # RFC 3501 §6.4.5: a message that is not multipart has only a part 1, its body.
    assert section(PLAIN, sec("1")) == b"line one\r\nline two\r\n"
    assert section(PLAIN, sec("1.MIME")) == crlf("From: a@example.com\nSubject: hello\n\n")
    assert section(PLAIN, sec("2")) == b""
    assert section(PLAIN, sec("1.1")) == b""
    assert section(PLAIN, sec("1.HEADER")) == b""


def test_top_level_message_rfc822() -> None:
    data = crlf("From: a@b\nContent-Type: message/rfc822\n\n") + crlf("Subject: inner\n\ninner body")
    assert section(data, sec("1")) == crlf("Subject: inner\n\ninner body")
    assert section(data, sec("1.HEADER")) == crlf("Subject: inner\n\n")
    assert section(data, sec("1.TEXT")) == b"inner body"
    assert section(data, sec("1.1")) == b"inner body"
    body = bodystructure(data)
    assert isinstance(body, SinglePart) and body.envelope is not None and body.envelope.subject == "inner"
    assert body.lines == 2


def test_lf_only_message() -> None:
    data = (
        b"From: a@b\nSubject: lf\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\none\ntwo\n--b\n\nthree\n--b--\n"
    )
    assert bodystructure(data).encode(extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 7 1)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0) "MIXED")'
    )
    assert section(data, sec("1")) == b"one\ntwo"
    assert section(data, sec("2")) == b"three"
    assert section(data, sec("HEADER.FIELDS", "subject")) == b"Subject: lf\n\n"
    assert section(data, sec("HEADER")) + section(data, sec("TEXT")) == data
    assert envelope(data).subject == "lf"


def test_no_content_type_in_a_part_and_default_encoding() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nplain\n--b--\n")
    assert bodystructure(data).encode() == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 0 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "b") NIL NIL NIL)'
    )


def test_text_without_charset_gets_the_default_one() -> None:
    data = crlf("Content-Type: text/html\n\n<p>x</p>\n")
    assert bodystructure(data).encode(extensible=False) == (
        b'("TEXT" "HTML" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1)'
    )


def test_invalid_content_type_and_encoding_mean_the_defaults() -> None:
    data = crlf("Content-Type: text\nContent-Transfer-Encoding: ?invalid\n\nx")
    assert bodystructure(data).encode(extensible=False) == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 0)'


def test_multipart_digest_parts_default_to_message_rfc822() -> None:
    data = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n"
        "--d\n\nSubject: one\n\nfirst\n"
        "--d\nContent-Type: text/plain\n\nnot a message\n"
        "--d--\n"
    )
    body = bodystructure(data)
    assert isinstance(body, MultiPart)
    first, second = body.parts
    assert isinstance(first, SinglePart) and (first.type, first.subtype) == ("MESSAGE", "RFC822")
    assert first.envelope is not None and first.envelope.subject == "one"
    assert isinstance(second, SinglePart) and (second.type, second.subtype) == ("TEXT", "PLAIN")
    assert section(data, sec("1.TEXT")) == b"first"


def test_multipart_without_boundary_or_parts() -> None:
    # What Dovecot sends: a multipart needs a part, so an empty TEXT/PLAIN one.
    for data in (
        crlf("Content-Type: multipart/mixed\n\nno boundary\n"),
        crlf("Content-Type: multipart/mixed; boundary=zz\n\nno delimiter line\n"),
    ):
        assert bodystructure(data).encode(extensible=False) == (
            b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "MIXED")'
        )
        assert section(data, sec("1")) == b""


def test_multipart_without_close_delimiter_runs_to_the_end() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\n\nsecond, truncated")
    assert section(data, sec("1")) == b"first"
    assert section(data, sec("2")) == b"second, truncated"


def test_a_longer_boundary_wins_over_its_prefix() -> None:
    # "b1" starts "--b10" lines; the nested multipart's longer boundary owns them.
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b1\n\n"
        "--b1\nContent-Type: multipart/mixed; boundary=b10\n\n"
        "--b10\n\ninner one\n--b10\n\ninner two\n--b10--\n"
        "--b1  \n\nouter two\n"
        "--b1--\n"
    )
    assert section(data, sec("1.1")) == b"inner one"
    assert section(data, sec("1.2")) == b"inner two"
    assert section(data, sec("2")) == b"outer two"


def test_boundary_needs_line_start_and_matches_as_prefix() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\n\nnot a delimiter: x--b\n"
        "--b  transport padding\n\nsecond\n"
        "--b--\nepilogue --b\n"
    )
    assert section(data, sec("1")) == b"not a delimiter: x--b"
    assert section(data, sec("2")) == b"second"
    assert section(data, sec("3")) == b""


def test_content_fields() -> None:
    data = crlf(
        "Content-Type: text/plain; charset=\"utf-8\" (a comment); format=flowed;\n"
        " name*0=\"long \"; name*1=\"name.txt\"; title*=utf-8''%E2%82%AC\n"
        "Content-ID:  <id@x>  \n"
        "Content-Description: =?utf-8?q?caf=C3=A9?=\n"
        "Content-Transfer-Encoding: Quoted-Printable\n"
        "Content-Disposition: INLINE; filename=\"a;b.txt\"\n"
        "Content-Language: en, fr\n"
        "Content-Location: http://example.com/a.txt\n"
        "\nx"
    )
    assert bodystructure(data).encode() == (
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8" "FORMAT" "flowed" "NAME" "long name.txt" "TITLE*" "utf-8\'\'%E2%82%AC")'
        b' "<id@x>" "=?utf-8?q?caf=C3=A9?=" "QUOTED-PRINTABLE" 1 0 NIL ("INLINE" ("FILENAME" "a;b.txt"))'
        b' ("en" "fr") "http://example.com/a.txt")'
    )


def test_single_content_language_is_a_string() -> None:
    data = crlf("Content-Language: de\n\nx")
    assert bodystructure(data).encode().endswith(b' NIL NIL "de" NIL)')


def test_eight_bit_parameter_values_pass_through() -> None:
    data = crlf('Content-Type: application/octet-stream; name="résumé.pdf"\n\nx')
    body = bodystructure(data)
    assert isinstance(body, SinglePart)
    assert body.params == (("NAME", "résumé.pdf".encode()),)
    assert b'("NAME" {12}\r\nr\xc3\xa9sum\xc3\xa9.pdf)' in body.encode()


def test_nul_in_a_header_is_sent_as_0x80() -> None:
    data = b"Subject: a\x00b\r\nContent-Type: text/plain; name=\"x\x00\"\r\n\r\nbody"
    assert envelope(data).subject == b"a\x80b"
    assert b"\x00" not in bodystructure(data).encode()


# -------------------------------------------------------------------- addresses


def addresses(header: str) -> bytes:
    env = envelope(crlf(f"To: {header}\n\n"))
    return b"".join(a.encode() for a in env.to)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("user@domain", b'(NIL NIL "user" "domain")'),
        ("From Real <fromuser@fromdomain.org>", b'("From Real" NIL "fromuser" "fromdomain.org")'),
        ("user@domain (Real Name)", b'("Real Name" NIL "user" "domain")'),
        ("<@route:user@domain>", b'(NIL "@route" "user" "domain")'),
        ("<@a.example,@b.example:u@[192.0.2.1]>", b'(NIL "@a.example,@b.example" "u" "[192.0.2.1]")'),
        ('"Doe, John" <john@example.com>', b'("Doe, John" NIL "john" "example.com")'),
        ('"Joe \\"Q\\" Public" <jqp@example.com>', b'("Joe \\"Q\\" Public" NIL "jqp" "example.com")'),
        ("John Q. Public <jqp@example.com>", b'("John Q. Public" NIL "jqp" "example.com")'),
        ("John (middle) Doe <jd@example.com>", b'("John Doe" NIL "jd" "example.com")'),
        ('"john doe"@example.com', b'(NIL NIL "john doe" "example.com")'),
        ("  a@b ,, c@d ,", b'(NIL NIL "a" "b")(NIL NIL "c" "d")'),
        ("=?utf-8?Q?J=C3=B6rg?= <j@example.com>", b'("=?utf-8?Q?J=C3=B6rg?=" NIL "j" "example.com")'),
        ("localonly", b'(NIL NIL "localonly" NIL)'),
        ("user@", b'(NIL NIL "user" NIL)'),
        ("<>", b'(NIL NIL "" "")'),
        (
            "group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;",
            b'(NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)'
            b'(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)',
        ),
        ("group:;, group2: (foo) ;", b'(NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)'),
        ("undisclosed-recipients:;", b'(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)'),
        (
            "Team: Ann <ann@x.org>, bob@x.org",
            b'(NIL NIL "Team" NIL)("Ann" NIL "ann" "x.org")(NIL NIL "bob" "x.org")(NIL NIL NIL NIL)',
        ),
        ('"unterminated <x@y>', b'(NIL NIL "unterminated <x@y>" NIL)'),
        ("", b""),
    ],
)
def test_addresses(header: str, expected: bytes) -> None:
    assert addresses(header) == expected


def test_eight_bit_address_text_is_bytes() -> None:
    env = envelope(crlf("From: Jörg Müller <jörg@exämple.de>\nSubject: Grüße\n\n"))
    assert env.subject == "Grüße".encode()
    assert env.from_ == (Address("Jörg Müller".encode(), None, "jörg".encode(), "exämple.de".encode()),)
    assert env.encode().startswith(b'(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe (({13}\r\nJ\xc3\xb6rg M\xc3\xbcller NIL ')


def test_sender_and_reply_to_default_to_from_even_when_empty() -> None:
    data = crlf("From: user@domain (Real Name)\nSender: \nReply-To:\n\nbody\n")
    env = envelope(data)
    assert env.sender == env.reply_to == env.from_ == (Address("Real Name", None, "user", "domain"),)
    data = crlf("From: a@x\nSender: s@x\nReply-To: r@x\n\n")
    env = envelope(data)
    assert env.sender == (Address(None, None, "s", "x"),) and env.reply_to == (Address(None, None, "r", "x"),)


def test_envelope_all_fields_first_occurrence_and_unfolding() -> None:
    data = crlf(
        "Message-ID: <msg@id>\n"
        "In-Reply-To: <reply@to.id>\n"
        "Date: Thu, 15 Feb 2007 01:02:03 +0200\n"
        "Subject: subject\n  header\n"
        "Subject: second subject is ignored\n"
        "From: From Real <fromuser@fromdomain.org>\n"
        "To: To Real <touser@todomain.org>\n"
        "Cc: Cc Real <ccuser@ccdomain.org>\n"
        "Bcc: Bcc Real <bccuser@bccdomain.org>\n"
        "Sender: Sender Real <senderuser@senderdomain.org>\n"
        "Reply-To: ReplyTo Real <replytouser@replytodomain.org>\n"
        "\n"
        "body\n"
    )
    assert envelope(data).encode() == (
        b'("Thu, 15 Feb 2007 01:02:03 +0200" "subject  header" '
        b'(("From Real" NIL "fromuser" "fromdomain.org")) '
        b'(("Sender Real" NIL "senderuser" "senderdomain.org")) '
        b'(("ReplyTo Real" NIL "replytouser" "replytodomain.org")) '
        b'(("To Real" NIL "touser" "todomain.org")) '
        b'(("Cc Real" NIL "ccuser" "ccdomain.org")) '
        b'(("Bcc Real" NIL "bccuser" "bccdomain.org")) '
        b'"<reply@to.id>" "<msg@id>")'
    )


def test_empty_subject_is_an_empty_string_not_nil() -> None:
    assert envelope(crlf("Subject:\n\n")).subject == ""
    assert envelope(crlf("X: y\n\n")).subject is None


# -------------------------------------------------------------------------- limits


def nested_multiparts(depth: int) -> bytes:
    """``depth`` multiparts, one in another, around a text part."""
    out = b"\r\nleaf"
    for level in reversed(range(depth)):
        b = b"b%d" % level
        out = b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n" + out + b"\r\n--" + b + b"--"
    return out


def depth_of(body: object) -> int:
    depth = 0
    while isinstance(body, MultiPart):
        body, depth = body.parts[0], depth + 1
    return depth


def test_nesting_limit_edge() -> None:
    data = nested_multiparts(5)
    assert depth_of(bodystructure(data, max_depth=5)) == 5
    shallow = bodystructure(data, max_depth=4)
    assert depth_of(shallow) == 4
    innermost: object = shallow
    while isinstance(innermost, MultiPart):
        innermost = innermost.parts[0]
    assert isinstance(innermost, SinglePart) and (innermost.type, innermost.subtype) == ("APPLICATION", "OCTET-STREAM")
    # section numbering follows the same tree
    assert section(data, sec("1.1.1.1.1"), max_depth=5) == b"leaf"
    assert section(data, sec("1.1.1.1.1"), max_depth=4) == b""


def test_default_nesting_limit_is_reached_without_raising() -> None:
    data = nested_multiparts(MAX_MIME_DEPTH + 5)
    assert depth_of(bodystructure(data)) == MAX_MIME_DEPTH
    bodystructure(data).encode()


def test_parts_limit_edge() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n" + "".join(f"--b\n\n{i}\n" for i in range(5)) + "--b--\n")
    body = bodystructure(data, max_parts=6)  # the multipart and its five parts
    assert isinstance(body, MultiPart) and len(body.parts) == 5
    body = bodystructure(data, max_parts=5)
    assert isinstance(body, MultiPart) and len(body.parts) == 4
    assert section(data, sec("5"), max_parts=6) == b"4"
    assert section(data, sec("5"), max_parts=5) == b""


# -------------------------------------------------------------------------- search


@dataclass
class Stored:
    """A SearchTarget for the tests, counting how often the content is read."""

    data: bytes
    seq: int = 1
    uid: int = 100
    flags: tuple[str, ...] = ()
    size: int = 0
    internaldate: float = 0.0
    modseq: int = 5
    views: int = 0
    savedate: float | None = None

    def view(self) -> MessageView:
        self.views += 1
        return MessageView(lambda: self.data)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SEARCHED = crlf(
    "From: =?ISO-8859-1?Q?Andr=E9?= Dupont <andre@example.fr>\n"
    "To: Bob <bob@example.org>, carol@example.com\n"
    "Cc: team@example.org\n"
    f"Subject: =?UTF-8?B?{b64('Grüße')}?= =?UTF-8?B?{b64(' aus Köln –')}?= news\n"
    "Date: Tue, 2 Jan 2024 23:30:00 -1200\n"
    "X-Tag: Alpha\n"
    "Content-Type: multipart/mixed; boundary=s\n"
    "\n"
    "--s\n"
    "Content-Type: text/plain; charset=ISO-8859-1\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Caf=E9 cr=E8me, tr=\n"
    "=E8s bon.\n"
    "--s\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    + base64.encodebytes("Grüße aus Köln, Straße 5".encode()).decode()
    + "--s\n"
    "Content-Type: application/octet-stream\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    + base64.encodebytes(b"hidden binary words").decode()
    + "--s\n"
    "Content-Type: application/x-notes\n"
    "\n"
    "raw searchable words\n"
    "--s--\n"
)


def matches(key: SearchKey, msg: Stored | None = None, largest_seq: int = 10, largest_uid: int = 200) -> bool:
    return evaluate(key, msg or Stored(SEARCHED), largest_seq, largest_uid)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (All(), True),
        (EnvelopeField("FROM", "andré"), True),
        (EnvelopeField("FROM", "ANDRE@EXAMPLE.FR"), True),
        (EnvelopeField("FROM", "bob"), False),
        (EnvelopeField("TO", "Carol@Example"), True),
        (EnvelopeField("CC", "team@"), True),
        (EnvelopeField("BCC", "team@"), False),
        (EnvelopeField("SUBJECT", "grüße aus köln – news"), True),
        (EnvelopeField("SUBJECT", "GRÜSSE"), True),
        (EnvelopeField("SUBJECT", "R3LDvMOfZQ"), False),
        (Header("x-tag", "alp"), True),
        (Header("X-TAG", ""), True),
        (Header("X-Missing", ""), False),
        (Header("Subject", "köln"), True),
        (Body("café crème, très bon"), True),
        (Body("STRASSE 5"), True),
        (Body("raw searchable"), True),
        (Body("hidden binary"), False),
        (Body("andré"), False),
        (Text("andré"), True),
        (Text("très bon"), True),
        (Text("x-tag: alpha"), True),
        (Text("nowhere"), False),
        (Body(""), True),
        (DateKey("ON", date(2024, 1, 2), sent=True), True),
        (DateKey("BEFORE", date(2024, 1, 2), sent=True), False),
        (DateKey("BEFORE", date(2024, 1, 3), sent=True), True),
        (DateKey("SINCE", date(2024, 1, 2), sent=True), True),
        (DateKey("SINCE", date(2024, 1, 3), sent=True), False),
    ],
)
def test_content_keys(key: SearchKey, expected: bool) -> None:
    assert matches(key) is expected


LOCAL_NOON = datetime(2024, 3, 10, 12, 0).timestamp()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (HasFlag("\\Seen"), True),
        (HasFlag("\\seen"), True),
        (HasFlag("\\Seen", False), False),
        (HasFlag("\\Deleted"), False),
        (HasFlag("\\Deleted", False), True),
        (HasFlag("$Forwarded"), True),
        (HasFlag("$forwarded"), True),
        (HasFlag("\\Recent"), True),
        (And((HasFlag("\\Recent"), HasFlag("\\Seen", False))), False),  # NEW
        (DateKey("ON", date(2024, 3, 10)), True),
        (DateKey("BEFORE", date(2024, 3, 10)), False),
        (DateKey("BEFORE", date(2024, 3, 11)), True),
        (DateKey("SINCE", date(2024, 3, 10)), True),
        (DateKey("SINCE", date(2024, 3, 11)), False),
        (Larger(1000), True),
        (Larger(1234), False),
        (Smaller(1234), False),
        (Smaller(1235), True),
        (ModSeqKey(7), True),
        (ModSeqKey(8), False),
        (ModSeqKey(0, "/flags/\\Seen", "all"), True),
        (SequenceKey(SequenceSet.parse("3")), True),
        (SequenceKey(SequenceSet.parse("1,2,4:6")), False),
        (SequenceKey(SequenceSet.parse("2:*")), True),
        (SequenceKey(SequenceSet.parse("*")), False),
        (SequenceKey(SequenceSet.parse("*:3")), True),
        (SequenceKey(SequenceSet.parse("11:20")), False),
        (SequenceKey(SequenceSet.parse("150"), uid=True), True),
        (SequenceKey(SequenceSet.parse("100:*"), uid=True), True),
        (SequenceKey(SequenceSet.parse("151:*"), uid=True), False),
        (SequenceKey(SequenceSet.parse("300:400"), uid=True), False),
        (Not(HasFlag("\\Seen")), False),
        (Not(Not(HasFlag("\\Seen"))), True),
        (Or(HasFlag("\\Deleted"), Larger(10)), True),
        (Or(HasFlag("\\Deleted"), Smaller(10)), False),
        (And((HasFlag("\\Seen"), Larger(10), SequenceKey(SequenceSet.parse("3")))), True),
        (And((HasFlag("\\Seen"), Larger(10), SequenceKey(SequenceSet.parse("4")))), False),
    ],
)
def test_keys_on_what_the_server_knows(key: SearchKey, expected: bool) -> None:
    msg = Stored(
        SEARCHED,
        seq=3,
        uid=150,
        flags=("\\Seen", "$Forwarded", "\\Recent"),
        size=1234,
        internaldate=LOCAL_NOON,
        modseq=7,
    )
    assert matches(key, msg) is expected
    assert msg.views == 0  # the message octets were never needed


def test_star_is_the_last_message() -> None:
    last = Stored(b"", seq=10, uid=200)
    assert matches(SequenceKey(SequenceSet.parse("*")), last)
    # UID 559:* in a mailbox whose highest UID is 200 names that last message
    assert matches(SequenceKey(SequenceSet.parse("559:*"), uid=True), last)


def test_content_is_read_once_and_only_when_needed() -> None:
    msg = Stored(SEARCHED, flags=("\\Seen",))
    key = And((Body("café"), Text("köln"), HasFlag("\\Deleted")))
    assert not matches(key, msg)
    assert msg.views == 0  # the flag failed first
    key = And((Body("café"), EnvelopeField("TO", "bob"), HasFlag("\\Seen"), Header("x-tag", "alpha")))
    assert matches(key, msg)
    assert msg.views == 1
    assert matches(Or(Not(Body("nothing like this")), Body("café")), msg)
    assert msg.views == 2


def test_message_view_loads_lazily() -> None:
    calls: list[int] = []

    def load() -> bytes:
        calls.append(1)
        return SEARCHED

    view = MessageView(load)
    assert calls == []
    assert view.header_contains("x-tag", "alpha") and view.body_contains("köln")
    assert view.data == SEARCHED and calls == [1]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Tue, 2 Jan 2024 23:30:00 -1200", date(2024, 1, 2)),
        ("2 Jan 2024 00:10 +1400", date(2024, 1, 2)),
        ("Sat, 31 Dec 99 12:00:00 GMT", date(1999, 12, 31)),
        ("Mon, 1 Feb 04 12:00:00 GMT", date(2004, 2, 1)),
        ("Thu, 01 January 2015 10:00:00 +0000", date(2015, 1, 1)),
        ("Thu Feb 15 01:02:03 2007", date(2007, 2, 15)),
        ("31 Feb 2024 10:00 +0000", None),
        ("yesterday", None),
    ],
)
def test_sent_date(header: str, expected: date | None) -> None:
    assert MessageView(crlf(f"Date: {header}\n\n")).sent_date() == expected


def test_no_date_header_matches_no_sent_key() -> None:
    msg = Stored(crlf("Subject: undated\n\nbody\n"))
    for key in (DateKey("BEFORE", date(2100, 1, 1), sent=True), DateKey("SINCE", date(1900, 1, 1), sent=True)):
        assert not matches(key, msg)
    assert matches(Not(DateKey("BEFORE", date(2024, 1, 1), sent=True)), msg)


def test_body_search_in_the_forwarded_message_and_qp_soft_breaks() -> None:
    view = MessageView(NESTED)
    assert view.body_contains("see the attached report")  # "re=\r\nport" joined
    assert view.body_contains("café crème for everyone")  # ISO-8859-1 quoted-printable
    assert view.body_contains("here are the numbers")  # inside the message/rfc822
    assert view.body_contains("numbers")
    assert view.envelope_contains("SUBJECT", "quarterly report – draft")


def test_eight_bit_header_search() -> None:
    view = MessageView(crlf("Subject: Grüße\nX-Latin: ") + "Grüße".encode("latin-1") + b"\r\n\r\n")
    assert view.envelope_contains("SUBJECT", "GRÜSSE")
    assert view.header_contains("X-Latin", "grüße")


def test_unknown_charset_is_read_as_utf8() -> None:
    data = crlf("Content-Type: text/plain; charset=x-unknown-thing\n\nnaïve text\n")
    assert MessageView(data).body_contains("NAÏVE")


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "data",
    [RFC3501_SAMPLE, NESTED, PLAIN, crlf("From: Jörg <j@x>\nSubject: Grüße\n\nx"), b"", b"\x00\xff garbage"],
)
def test_json_round_trip(data: bytes) -> None:
    env, body = envelope(data), bodystructure(data)
    cached = json.loads(json.dumps(to_json(env, body)))
    assert from_json(cached) == (env, body)
    assert from_json(cached)[1].encode() == body.encode()


def test_json_keeps_eight_bit_strings_as_bytes() -> None:
    env = envelope(crlf("Subject: Grüße\n\n"))
    cached = to_json(env, bodystructure(b"x"))
    assert cached["envelope"][1] == {"b64": base64.b64encode("Grüße".encode()).decode()}
    assert from_json(cached)[0].subject == "Grüße".encode()


@pytest.mark.parametrize(
    "bad", [{}, {"v": 99}, {"v": 1, "envelope": [], "body": []}, {"v": 1, "envelope": None, "body": None}]
)
def test_json_rejects_what_it_did_not_write(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        from_json(bad)


# ---------------------------------------------------------------------- properties

HEADERS = st.sampled_from(
    [
        b"Subject: s",
        b"From: a@b",
        b"Content-Type: multipart/mixed; boundary=q",
        b"Content-Type: message/rfc822",
        b"Content-Type: multipart/digest; boundary=q",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Disposition: attachment; filename*0=a; filename*1=b",
        b" folded",
        b"To: g:;",
        b"garbage line",
    ]
)
LINES = st.one_of(HEADERS, st.sampled_from([b"", b"--q", b"--q--", b"=?utf-8?b?w6k=?=", b"=E9="]), st.binary(max_size=20))


@st.composite
def mime_soup(draw: st.DrawFn) -> bytes:
    """Lines that look like MIME, joined with CRLF or LF: most of the parser's paths."""
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    return eol.join(draw(st.lists(LINES, max_size=30)))


ANY_MESSAGE = st.one_of(st.binary(max_size=600), mime_soup())
PART_NUMBERS = st.lists(st.integers(1, 4), max_size=4).map(tuple)
SECTIONS = st.one_of(
    st.builds(Section, PART_NUMBERS, st.sampled_from([None, "HEADER", "TEXT"])),
    st.builds(Section, PART_NUMBERS.filter(bool), st.just("MIME")),
    st.builds(
        Section,
        PART_NUMBERS,
        st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]),
        st.just(("Subject", "content-type")),
    ),
)


@given(ANY_MESSAGE)
def test_whole_message_section_is_the_message(data: bytes) -> None:
    assert section(data, Section()) == data


@given(ANY_MESSAGE)
def test_header_and_text_make_the_message(data: bytes) -> None:
    assert section(data, sec("HEADER")) + section(data, sec("TEXT")) == data


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(ANY_MESSAGE)
def test_structure_never_raises(data: bytes) -> None:
    # The parser proper (below the safety net of ``bodystructure``) must not raise.
    tree = message._parse(data, MAX_MIME_DEPTH, 10_000)
    body = message._structure(data, tree)
    body.encode()
    body.encode(extensible=False)
    assert bodystructure(data) == body
    envelope(data).encode()


@given(ANY_MESSAGE, SECTIONS)
def test_sections_never_raise(data: bytes, spec: Section) -> None:
    assert isinstance(section(data, spec), bytes)


@given(ANY_MESSAGE)
def test_search_never_raises(data: bytes) -> None:
    view = MessageView(data)
    view.body_contains("é")
    view.text_contains("x")
    view.header_contains("subject", "s")
    view.sent_date()


# A generated MIME tree, rendered, must parse back to the same shape, with each
# leaf's octets at its part number.
LEAF_TEXT = st.lists(st.sampled_from([b"alpha", b"beta gamma", b"", b"x=y"]), max_size=3).map(b"\r\n".join)
Tree = tuple[str, Any]


def leaves() -> st.SearchStrategy[Tree]:
    return st.tuples(st.sampled_from(["text/plain", "application/octet-stream", "image/png"]), LEAF_TEXT)


def trees() -> st.SearchStrategy[Tree]:
    return st.recursive(
        leaves(),
        lambda children: st.one_of(
            st.tuples(st.just("multipart"), st.lists(children, min_size=1, max_size=3)),
            st.tuples(st.just("message"), children),
        ),
        max_leaves=8,
    )


def render(tree: Tree, counter: list[int]) -> tuple[bytes, bytes]:
    """(MIME header, body) of a generated tree."""
    kind, content = tree
    if kind == "multipart":
        counter[0] += 1
        boundary = b"=_b%d" % counter[0]
        parts = b"".join(b"--" + boundary + b"\r\n" + b"".join(render(c, counter)) + b"\r\n" for c in content)
        header = b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
        return header, b"preamble\r\n" + parts + b"--" + boundary + b"--\r\n"
    if kind == "message":
        inner_header, inner_body = render(content, counter)
        return b"Content-Type: message/rfc822\r\n\r\n", b"Subject: inner\r\n" + inner_header + inner_body
    assert isinstance(content, bytes)
    return b"Content-Type: " + kind.encode() + b"\r\n\r\n", content


def expected_leaves(tree: Tree, prefix: tuple[int, ...], message_level: bool) -> list[tuple[tuple[int, ...], bytes]]:
    kind, content = tree
    if kind == "multipart":
        out = []
        for i, child in enumerate(content, 1):
            out += expected_leaves(child, prefix + (i,), False)
        return out
    if kind == "message":
        # the parts of an encapsulated message follow the number of the message part
        return expected_leaves(content, prefix + (1,) if message_level else prefix, True)
    assert isinstance(content, bytes)
    return [(prefix + (1,) if message_level else prefix, content)]


def shape(tree: Tree) -> object:
    kind, content = tree
    if kind == "multipart":
        return [shape(c) for c in content]
    if kind == "message":
        return ("message", shape(content))
    return kind.upper()


def parsed_shape(body: object) -> object:
    if isinstance(body, MultiPart):
        return [parsed_shape(p) for p in body.parts]
    assert isinstance(body, SinglePart)
    if body.body is not None:
        return ("message", parsed_shape(body.body))
    assert isinstance(body.type, str) and isinstance(body.subtype, str)
    return f"{body.type}/{body.subtype}"


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_generated_trees_parse_back(tree: Tree) -> None:
    header, body = render(tree, [0])
    data = b"From: gen@example.com\r\n" + header + body
    assert parsed_shape(bodystructure(data)) == shape(tree)
    for parts, content in expected_leaves(tree, (), True):
        assert section(data, Section(parts)) == content
