"""RFC 3516 BINARY: the fetch-att grammar (§6), the response items (literal8 for data
with NUL, §4.2) and content-transfer-decoding of a part, UNKNOWN-CTE included."""

from __future__ import annotations

import pytest

from waypost.imap import message as mime
from waypost.imap.proto import (
    BadCommand,
    BinaryItem,
    BinarySection,
    BinarySizeItem,
    BodySectionItem,
    Codes,
    Fetch,
    SequenceSet,
    Section,
    Tagged,
    parse_command,
)

MESSAGE = (
    b"From: a@example.test\r\nMime-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AAECaGVs\r\nbG8=\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 soft=\r\nbreak\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
    b"--b--\r\n"
)


@pytest.mark.parametrize(
    ("line", "atts"),
    [
        (b"a1 FETCH 1 (BINARY[1])\r\n", (BinarySection((1,)),)),
        (b"a2 FETCH 1 BINARY.PEEK[1.2]<0.7>\r\n", (BinarySection((1, 2), (0, 7), peek=True),)),
        (b"a3 FETCH 1 (BINARY.SIZE[3] binary.peek[])\r\n",
         (BinarySection((3,), size=True), BinarySection((), peek=True))),
    ],
)
def test_binary_fetch_atts_parse(line: bytes, atts: tuple[BinarySection, ...]) -> None:
    cmd, rest = parse_command(line)
    assert rest == b"" and isinstance(cmd, Fetch)
    assert cmd.sequence == SequenceSet.of(1) and cmd.attributes == atts


@pytest.mark.parametrize(
    "line",
    [
        b"a1 FETCH 1 BINARY[HEADER]\r\n",  # section-binary is a section-part only
        b"a1 FETCH 1 BINARY[1.MIME]\r\n",
        b"a1 FETCH 1 BINARY.SIZE[1]<0.5>\r\n",  # no partial with BINARY.SIZE
        b"a1 FETCH 1 BINARY[0]\r\n",
    ],
)
def test_bad_binary_fetch_atts_are_refused(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_command(line)


def test_binary_response_items() -> None:
    assert BinaryItem((1,), b"hello").encode() == b'BINARY[1] "hello"'
    assert BinaryItem((5,), b"ab\x00c", 0).encode() == b"BINARY[5]<0> ~{4}\r\nab\x00c"
    assert BinarySizeItem((1, 2), 7).encode() == b"BINARY.SIZE[1.2] 7"
    # BODY[] of a file with NUL that another program dropped in: a literal8, never a bad literal
    assert BodySectionItem(Section(), b"x\x00").encode() == b"BODY[] ~{2}\r\nx\x00"
    no = Tagged("a1", "NO", "Unknown content-transfer-encoding", Codes.UNKNOWN_CTE)
    assert no.encode() == b"a1 NO [UNKNOWN-CTE] Unknown content-transfer-encoding\r\n"


def test_binary_sections_decode_the_transfer_encoding() -> None:
    assert mime.binary_section(MESSAGE, ()) == MESSAGE
    assert mime.binary_section(MESSAGE, (1,)) == b"plain text"
    assert mime.binary_section(MESSAGE, (2,)) == b"\x00\x01\x02hello"
    assert mime.binary_section(MESSAGE, (3,)) == "café softbreak".encode()
    assert mime.binary_section(MESSAGE, (9,)) == b""
    with pytest.raises(mime.UnknownCte):
        mime.binary_section(MESSAGE, (4,))


# A MESSAGE/RFC822 part holding a multipart whose parts are in base64 and
# quoted-printable (the shape of imaptest's urlauth-binary message).
NESTED = (
    b'From: a@example.test\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="out"\r\n\r\n'
    b"prologue\r\n--out\r\nContent-Type: message/rfc822\r\n\r\n"
    b'From: b@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n'
    b"inner prologue\r\n"
    b"--in\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n\r\n"
    b"--in\r\nContent-Transfer-Encoding:\r\n Quoted-Printable\r\nContent-Type: text/plain\r\n\r\n"
    b"two=\r\n lines=0D=0Aend\r\n"
    b"--in\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-odd\r\n\r\nkept\r\n"
    b"--in--\r\ninner epilogue\r\n"
    b"--out--\r\n"
)
INNER_BINARY = (
    b'From: b@example.test\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n'
    b"inner prologue\r\n"
    b"--in\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nhello world\r\n"
    b"--in\r\nContent-Transfer-Encoding: binary\r\nContent-Type: text/plain\r\n\r\ntwo lines\r\nend\r\n"
    b"--in\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-odd\r\n\r\nkept\r\n"
    b"--in--\r\ninner epilogue"  # the CRLF before "--out--" is the delimiter's
)


def test_binary_of_a_message_part_converts_the_parts_inside() -> None:
    # as Dovecot: each part's encoding undone, its Content-Transfer-Encoding field (a
    # folded one too) saying binary; an encoding that cannot be undone left as stored
    assert mime.binary_section(NESTED, (1,)) == INNER_BINARY
    assert mime.binary_section(NESTED, (1, 1)) == b"hello world"
    assert mime.binary_section(NESTED, (1, 2)) == b"two lines\r\nend"
    with pytest.raises(mime.UnknownCte):
        mime.binary_section(NESTED, (1, 3))
    assert mime.binary_section(NESTED, ()) == NESTED  # the whole message as stored


def test_binary_bodystructure_has_the_decoded_sizes_and_domains() -> None:
    stored = mime.bodystructure(NESTED).encode(True)
    binary = mime.bodystructure(NESTED, binary=True).encode(True)
    # the MESSAGE/RFC822 part: size and lines of its converted body
    size, lines = len(INNER_BINARY), INNER_BINARY.count(b"\n")
    inner = NESTED.split(b"rfc822\r\n\r\n")[1].removesuffix(b"\r\n--out--\r\n")
    assert b'"7BIT" %d (' % len(inner) in stored
    assert b'"7BIT" %d (' % size in binary and b") %d NIL NIL NIL NIL)" % lines in binary
    # the parts: sizes and lines of the decoded text, and where base64 or
    # quoted-printable was undone, the domain of what is sent (RFC 5524 §4's examples)
    assert b'"7BIT" 11 0 ' in binary and b'"BASE64" 24 4 ' in stored
    assert b'"7BIT" 14 1 ' in binary and b'"X-ODD" 4 0 ' in binary
    assert b'"QUOTED-PRINTABLE"' in stored and b'"QUOTED-PRINTABLE"' not in binary


def test_binary_bodystructure_domain_of_the_decoded_data() -> None:
    def part(cte: bytes, body: bytes) -> bytes:
        msg = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body
        return mime.bodystructure(msg, binary=True).encode(True)
    assert b'"8BIT" 2 ' in part(b"base64", b"w6k=")          # "\xc3\xa9": an octet over 127
    assert b'"BINARY" 3 ' in part(b"base64", b"AGFi")        # a NUL
    assert b'"BINARY" 1000 ' in part(b"quoted-printable", b"a" * 1000)  # a line over 998 octets
    assert b'"7BIT" 5 ' in part(b"7bit", b"hello")           # not decoded: as written


def test_quoted_printable_follows_rfc2045() -> None:
    # trailing white space dropped, "=" + white space is a soft break, "=XX" an octet
    body = b"hello  \r\nbar=\r\n\r\nfoo\t \t= \r\n=62\r\nfoo =\t\r\nbar\r\na=3D41 =ZZ\r\n"
    msg = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n" + body
    assert mime.binary_section(msg, (1,)) == b"hello\r\nbar\r\nfoo\t \tb\r\nfoo bar\r\na=41 =ZZ\r\n"


def test_nul_parts_of_a_multipart_message_are_kept_in_base64():
    # only the leaf parts holding NUL change; a folded CTE field is replaced whole,
    # a part without one gets one; a message without NUL is kept as it is
    blob = bytes(range(256))
    msg = (b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n'
           b"hello\r\n--XX\r\nContent-Type: application/x\r\nContent-Transfer-Encoding:\r\n binary\r\n\r\n"
           + blob + b"\r\n--XX\r\n\r\nno\x00header\r\n--XX--\r\n")
    kept = mime.without_nul(msg)
    assert b"\x00" not in kept and b" binary" not in kept
    assert mime.binary_section(kept, (1,)) == b"hello"
    assert mime.binary_section(kept, (2,)) == blob
    assert mime.binary_section(kept, (3,)) == b"no\x00header"
    assert mime.section(kept, Section(parts=(3,), text="MIME")) == b"Content-Transfer-Encoding: base64\r\n\r\n"
    lines = mime.section(kept, Section(parts=(2,))).split(b"\r\n")
    assert [len(x) for x in lines] == [76, 76, 76, 76, 40]  # RFC 2045 §6.8: at most 76
    assert mime.without_nul(MESSAGE) is MESSAGE
