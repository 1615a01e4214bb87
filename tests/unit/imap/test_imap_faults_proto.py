"""Parser faults of issues 13 and 14, bytes in, commands out.

A line over ``Params.max_line_length`` is answered BAD and the parser
resynchronises at its CRLF (issue 13 item 6): the commands after it in the same
buffer are kept, whether the long line arrives whole or in pieces.  LOGIN takes
"%" (and "*") in its atoms, as imaplib sends them (issue 14 item 8).  The default
line limit admits the largest legal ID (issue 14 item 5)."""

from __future__ import annotations

import pytest

from waypost.imap.proto import DEFAULT_PARAMS, BadCommand, Id, Login, Noop, Params, Reason, Rejected, parse_command, parse_idle_done
from waypost.imap.proto import parse_sasl_response

NEXT = b"Z9 NOOP\r\n"
PARAMS = Params(max_line_length=64)


def _after(stream: bytes, refused: Rejected) -> bytes:
    """What the adapter does: drop ``discard`` octets, then feed the skipper."""
    rest = stream[refused.discard:]
    if refused.skipper is not None:
        used = refused.skipper.feed(rest)
        assert refused.skipper.done
        rest = rest[used:]
    return rest


def test_long_line_and_the_next_command_in_one_buffer() -> None:
    stream = b"A1 LOGIN " + b"x" * 200 + b"\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_command(stream, PARAMS)
    assert bad.value.reason is Reason.LINE_TOO_LONG and bad.value.tag == "A1"
    assert bad.value.reply().encode().startswith(b"A1 BAD ")
    rest = _after(stream, bad.value)
    assert rest == NEXT
    command, left = parse_command(rest, PARAMS)
    assert isinstance(command, Noop) and command.tag == "Z9" and left == b""


def test_long_line_ending_in_a_literal_then_the_next_command() -> None:
    stream = b"A1 LOGIN " + b"x" * 200 + b" {4+}\r\nabcd pass\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_command(stream, PARAMS)
    assert _after(stream, bad.value) == NEXT


def test_long_line_after_a_literal_of_the_same_command() -> None:
    stream = b"A1 LOGIN {3+}\r\nabc " + b"p" * 200 + b"\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_command(stream, PARAMS)
    assert bad.value.reason is Reason.LINE_TOO_LONG
    assert _after(stream, bad.value) == NEXT


@pytest.mark.parametrize("cut", [64, 100, 209, 210, 211])
def test_long_line_in_pieces(cut: int) -> None:
    """The refusal comes as soon as 64 octets hold no LF; the rest arrives later."""
    stream = b"A1 LOGIN " + b"x" * 200 + b"\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_command(stream[:cut], PARAMS)
    refused = bad.value
    rest = stream[refused.discard:]
    if refused.skipper is not None:
        rest = rest[refused.skipper.feed(rest):]
        assert refused.skipper.done
    assert rest == NEXT


def test_long_idle_and_sasl_lines_resynchronise() -> None:
    stream = b"D" * 200 + b"\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_idle_done(stream, PARAMS, tag="I1")
    assert _after(stream, bad.value) == NEXT
    with pytest.raises(BadCommand) as bad:
        parse_sasl_response(stream, PARAMS, tag="S1")
    assert _after(stream, bad.value) == NEXT


def test_login_takes_percent_and_star_unquoted() -> None:
    command, rest = parse_command(b"a1 LOGIN info%client2.test se%c*ret\r\n" + NEXT)
    assert command == Login("a1", "info%client2.test", "se%c*ret") and rest == NEXT
    # only in LOGIN: a "%" elsewhere in an atom is still refused
    with pytest.raises(BadCommand):
        parse_command(b"a2 SELECT IN%BOX\r\n")
    with pytest.raises(BadCommand):
        parse_command(b"a3 LOGIN info(x) pw\r\n")


def test_largest_legal_id_fits_the_default_line_limit() -> None:
    pairs = b" ".join(b'"%s" "%s"' % (b"f%029d" % i, b'\\"' * 1024) for i in range(30))
    command, rest = parse_command(b"i1 ID (" + pairs + b")\r\n", DEFAULT_PARAMS)
    assert isinstance(command, Id) and command.parameters is not None
    assert len(command.parameters) == 30 and command.parameters[0][1] == '"' * 1024


# -- issue 14 item 7: SEARCH FROM on the parsed address as well as the raw text ---------------

FROMS = [
    (b"alice(Alice Example)@sender.test", True),
    (b"Alice Example <alice @ sender.test>", True),
    (b'"Alice \\"Al\\" Example" <alice@sender.test>', True),
    (b'"alice"@sender.test (Alice Example)', True),
    (b"Alice <alice@sender.test.example>", True),   # a substring, as RFC 3501 §6.4.4 asks
    (b"=?UTF-8?Q?Alice?= <alice (x) @ (y) sender . test>", True),
    (b"bob@sender.test", False),
    (b"alice@other.test", False),
]


@pytest.mark.parametrize("from_, matches", FROMS)
def test_search_from_address_as_parsed(from_: bytes, matches: bool) -> None:
    from waypost.imap.message import MessageView, plain_header, prefilter, searchable
    from waypost.imap.proto import EnvelopeField

    header = b"From: " + from_ + b"\r\nSubject: x\r\n\r\n"
    key = EnvelopeField("FROM", "alice@sender.test")
    assert MessageView(header + b"body\r\n").envelope_contains("FROM", "alice@sender.test") is matches
    flt = prefilter(key)
    assert flt is not None
    if matches:  # the prefilter is a necessary condition: it never drops a match
        assert flt(searchable(header), plain_header(header))
