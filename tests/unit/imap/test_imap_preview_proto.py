"""PREVIEW (RFC 8970): the FETCH item parses (with LAZY, and beside fetch modifiers),
the response serialises (a literal for UTF-8), and the preview text is the message's
own text: plain before HTML, no markup, quotes, signature or attachment, at most 256
characters."""

from __future__ import annotations

import base64

import pytest

from waypost.imap.preview import MAX_PREVIEW, preview
from waypost.imap.proto import Att, BadCommand, Fetch, Params, PreviewItem, Rejected, SequenceSet, parse_command


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


@pytest.mark.parametrize("line,expected", [
    # RFC 8970 §4.2's examples
    (b"2 FETCH 1 (PREVIEW)\r\n", Fetch("2", SequenceSet.of(1), (Att.PREVIEW,))),
    (b"3 FETCH 1:4 (PREVIEW (LAZY))\r\n", Fetch("3", SequenceSet.of((1, 4)), (Att.PREVIEW,))),
    (b"4 FETCH 1 (UID PREVIEW (LAZY) FLAGS)\r\n", Fetch("4", SequenceSet.of(1), (Att.UID, Att.PREVIEW, Att.FLAGS))),
    (b"5 FETCH 1 PREVIEW (CHANGEDSINCE 5)\r\n", Fetch("5", SequenceSet.of(1), (Att.PREVIEW,), changed_since=5)),
    (b"6 FETCH 1 PREVIEW (LAZY) (CHANGEDSINCE 5)\r\n", Fetch("6", SequenceSet.of(1), (Att.PREVIEW,), changed_since=5)),
])
def test_rfc8970_commands_parse(line: bytes, expected: Fetch) -> None:
    assert parse_command(line, Params())[0] == expected


@pytest.mark.parametrize("line", [b"a FETCH 1 (PREVIEW (LAZY FOO))\r\n", b"a FETCH 1 (PREVIEW ())\r\n",
                                  b"a FETCH 1 (PREVIEW (LAZY)\r\n", b"a FETCH 1 PREVIEW.PEEK\r\n"])
def test_malformed_is_bad(line: bytes) -> None:
    with pytest.raises((BadCommand, Rejected)):
        parse_command(line, Params())


def test_responses_serialise() -> None:
    assert PreviewItem("Hello Bob, see you at noon.").encode() == b'PREVIEW "Hello Bob, see you at noon."'
    assert PreviewItem("").encode() == b'PREVIEW ""'
    assert PreviewItem(None).encode() == b"PREVIEW NIL"
    assert PreviewItem("Grüße").encode() == b"PREVIEW {7}\r\n" + "Grüße".encode()


def test_plain_text_with_quotes_and_signature() -> None:
    msg = crlf("From: a@b\nSubject: Re: lunch\n\nYes,   noon works.\n\n> Shall we meet at noon?\n"
               "> Bob\nSee you there.\n-- \nAlice, phone 555\n")
    assert preview(msg) == "Yes, noon works. See you there."


def test_html_alternative_and_attachments() -> None:
    msg = crlf('From: a@b\nContent-Type: multipart/mixed; boundary="m"\n\n--m\n'
               'Content-Type: multipart/alternative; boundary="a"\n\n--a\n'
               "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
               "<html><head><style>p{color:red}</style></head><body><p>Caf=C3=A9 &amp; <b>cr=C3=A8me</b></p>"
               "</body></html>\n--a--\n--m\n"
               "Content-Type: text/plain\nContent-Disposition: attachment; filename=x.txt\n\nattached words\n--m--\n")
    assert preview(msg) == "Café & crème"
    plain_first = crlf('From: a@b\nContent-Type: multipart/alternative; boundary="a"\n\n--a\n'
                       "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\n"
                       + base64.b64encode("Déjà vu".encode("latin-1")).decode() + "\n--a\n"
                       "Content-Type: text/html\n\n<p>html</p>\n--a--\n")
    assert preview(plain_first) == "Déjà vu"


def test_no_text_and_the_length_limit() -> None:
    assert preview(crlf("From: a@b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0K\n")) == ""
    assert preview(b"") == ""
    long = crlf("Subject: x\n\n" + "word " * 200 + "\n")
    got = preview(long)
    assert len(got) <= MAX_PREVIEW and got.startswith("word word") and "  " not in got
    wide = crlf("Subject: x\n\n" + "あ" * 400 + "\n")
    assert preview(wide) == "あ" * MAX_PREVIEW  # characters, not octets


def test_no_control_characters_c0_or_c1() -> None:
    # An unknown charset is read as Latin-1: its octets 0x80-0x9F are C1 controls,
    # which no client's message list should show.
    msg = (b"Subject: c\r\nContent-Type: text/plain; charset=bogus-9\r\n\r\n"
           b"a\x9e\x8bb\x01c\x85d \xe9t\xe9\r\n")
    assert preview(msg) == "abc d \u00e9t\u00e9"  # (U+0085 NEL ends a line)
