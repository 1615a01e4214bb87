"""Malformed commands: the right refusal, the right tag, the right octets dropped.

Each case is (octets, tag or None, reason, discard); the octets after ``discard``
must parse as the next command, so the connection goes on.  Tests assert the
reason and the reply's status/code, never its prose (STYLE point 9).
"""

from __future__ import annotations

import pytest

from waypost.imap.proto import (
    BadCharset,
    BadCommand,
    Codes,
    CommandSkipper,
    LiteralTooLarge,
    NeedMore,
    Noop,
    Params,
    R,
    Reason,
    Rejected,
    parse_command,
    parse_idle_done,
    parse_sasl_response,
)

NEXT = b"Z9 NOOP\r\n"

CASES: list[tuple[bytes, str | None, Reason]] = [
    # empty and unreadable lines
    (b"\r\n", None, Reason.EMPTY_LINE),
    (b"+A1 NOOP\r\n", None, Reason.BAD_TAG),
    (b"(A1 NOOP\r\n", None, Reason.BAD_TAG),
    (b" NOOP\r\n", None, Reason.BAD_TAG),
    (b"A1\tNOOP\r\n", None, Reason.BAD_TAG),
    (b"A1\r\n", "A1", Reason.SYNTAX),
    (b"A1 NOOP\n", "A1", Reason.BARE_LF),
    (b"\n", None, Reason.BARE_LF),
    # unknown commands
    (b"A1 BLURDYBLOOP\r\n", "A1", Reason.UNKNOWN_COMMAND),
    (b"A1 UID NOOP 1\r\n", "A1", Reason.UNKNOWN_COMMAND),
    (b"A1 XPIG-LATIN\r\n", "A1", Reason.UNKNOWN_COMMAND),
    # spacing: exactly one SP (RFC 3501 §9 note 2)
    (b"A1  NOOP\r\n", "A1", Reason.SYNTAX),
    (b"A1 NOOP \r\n", "A1", Reason.SYNTAX),
    (b"A1 SELECT  INBOX\r\n", "A1", Reason.SYNTAX),
    (b"A1 NOOP extra\r\n", "A1", Reason.SYNTAX),
    # unbalanced parentheses
    (b"A1 FETCH 1 (FLAGS UID\r\n", "A1", Reason.UNBALANCED_PARENTHESES),
    (b"A1 FETCH 1 FLAGS)\r\n", "A1", Reason.UNBALANCED_PARENTHESES),
    (b"A1 STORE 1 FLAGS (\\Seen\r\n", "A1", Reason.UNBALANCED_PARENTHESES),
    (b"A1 SEARCH (SEEN (DELETED)\r\n", "A1", Reason.UNBALANCED_PARENTHESES),
    (b"A1 SEARCH SEEN)\r\n", "A1", Reason.UNBALANCED_PARENTHESES),
    (b"A1 STATUS INBOX (MESSAGES\r\n", "A1", Reason.UNBALANCED_PARENTHESES),
    # quoted strings
    (b'A1 LOGIN "fred blurdybloop\r\n', "A1", Reason.UNTERMINATED_QUOTED),
    (b'A1 SELECT "INBOX\r\n', "A1", Reason.UNTERMINATED_QUOTED),
    (b'A1 LOGIN "fr\\ed" x\r\n', "A1", Reason.SYNTAX),
    # bad literal syntax (not at the end of a line, so framing does not see it)
    (b"A1 LOGIN {3 x\r\n", "A1", Reason.BAD_LITERAL),
    (b"A1 LOGIN {abc}\r\n", "A1", Reason.BAD_LITERAL),
    (b"A1 LOGIN {-1}\r\n", "A1", Reason.BAD_LITERAL),
    (b"A1 LOGIN {3}x\r\n", "A1", Reason.BAD_LITERAL),
    (b"A1 LOGIN {}\r\n", "A1", Reason.BAD_LITERAL),
    (b"A1 LOGIN {3+ }\r\n", "A1", Reason.BAD_LITERAL),
    # 8-bit where only 7-bit is allowed
    (b"A1 SELECT caf\xc3\xa9\r\n", "A1", Reason.EIGHT_BIT),
    (b"A1 SELECT \xc3\xa9\r\n", "A1", Reason.EIGHT_BIT),
    (b'A1 SELECT "caf\xc3\xa9"\r\n', "A1", Reason.EIGHT_BIT),
    (b"A1 NO\xffOP\r\n", "A1", Reason.EIGHT_BIT),
    (b"A1 FETCH 1 FLAGS\xc3\xa9\r\n", "A1", Reason.EIGHT_BIT),
    (b"A\xff1 NOOP\r\n", None, Reason.BAD_TAG),
    # NUL
    (b"A1 SELECT IN\x00BOX\r\n", "A1", Reason.NUL),
    (b'A1 SELECT "IN\x00BOX"\r\n', "A1", Reason.NUL),
    (b"A1 SELECT {5}\r\nIN\x00OX\r\n", "A1", Reason.NUL),
    # sequence sets
    (b"A1 FETCH 0 FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH 01 FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH 1: FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH :5 FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH 1,,2 FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH 1, FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH 1:2:3 FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH 4294967296 FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH ** FLAGS\r\n", "A1", Reason.BAD_SEQUENCE),
    (b"A1 FETCH x FLAGS\r\n", "A1", Reason.SYNTAX),
    (b"A1 COPY 1-3 Trash\r\n", "A1", Reason.SYNTAX),
    (b"A1 SEARCH UID 0\r\n", "A1", Reason.BAD_SEQUENCE),
    # numbers, dates, flags, options
    (b"A1 SEARCH LARGER 4294967296\r\n", "A1", Reason.BAD_NUMBER),
    (b"A1 SEARCH LARGER 99999999999999999999999\r\n", "A1", Reason.BAD_NUMBER),
    (b"A1 FETCH 1 BODY[0]\r\n", "A1", Reason.BAD_NUMBER),
    (b"A1 FETCH 1 BODY[]<0.0>\r\n", "A1", Reason.BAD_NUMBER),
    (b"A1 SEARCH SINCE 31-Feb-1994\r\n", "A1", Reason.BAD_DATE),
    (b"A1 SEARCH SINCE 1-Foo-1994\r\n", "A1", Reason.BAD_DATE),
    (b"A1 SEARCH SINCE 1994-02-01\r\n", "A1", Reason.BAD_DATE),
    (b'A1 APPEND INBOX "31-Feb-1994 00:00:00 +0000" {1}\r\nx\r\n', "A1", Reason.BAD_DATE),
    (b"A1 STORE 1 +FLAGS (\\Recent)\r\n", "A1", Reason.BAD_FLAG),
    (b"A1 STORE 1 +FLAGS (\\*)\r\n", "A1", Reason.BAD_FLAG),
    (b"A1 SELECT INBOX (QRESYNCX (1 2))\r\n", "A1", Reason.UNKNOWN_OPTION),
    (b"A1 FETCH 1 FLAGS (VANISHED)\r\n", "A1", Reason.UNKNOWN_OPTION),
    (b'A1 LIST (BOGUS) "" *\r\n', "A1", Reason.UNKNOWN_OPTION),
    (b'A1 LIST "" * RETURN (BOGUS)\r\n', "A1", Reason.UNKNOWN_OPTION),
    (b"A1 AUTHENTICATE PLAIN AGZy=ZWQ\r\n", "A1", Reason.BAD_BASE64),
    (b"A1 AUTHENTICATE PLAIN AGZyZWQ\r\n", "A1", Reason.BAD_BASE64),
    # grammar in general
    (b"A1 FETCH 1 BODY[HEADER.FIELDS]\r\n", "A1", Reason.SYNTAX),
    (b"A1 FETCH 1 BODY[MIME]\r\n", "A1", Reason.SYNTAX),
    (b"A1 FETCH 1 (ALL)\r\n", "A1", Reason.SYNTAX),
    (b"A1 FETCH 1 ()\r\n", "A1", Reason.SYNTAX),
    (b"A1 SEARCH\r\n", "A1", Reason.SYNTAX),
    (b"A1 SEARCH BOGUS\r\n", "A1", Reason.SYNTAX),
    (b"A1 SEARCH OR SEEN\r\n", "A1", Reason.SYNTAX),
    (b"A1 STATUS INBOX ()\r\n", "A1", Reason.SYNTAX),
    (b"A1 STATUS INBOX (SIZES)\r\n", "A1", Reason.SYNTAX),
    (b"A1 APPEND INBOX \"hello\"\r\n", "A1", Reason.BAD_DATE),
    (b"A1 APPEND INBOX hello\r\n", "A1", Reason.SYNTAX),
    (b'A1 LIST (RECURSIVEMATCH) "" *\r\n', "A1", Reason.SYNTAX),
    (b"A1 SETACL INBOX fred lrQswicda\r\n", "A1", Reason.SYNTAX),
    (b"A1 ENABLE\r\n", "A1", Reason.SYNTAX),
    (b"A1 ID (\"name\")\r\n", "A1", Reason.SYNTAX),
    (b"A1 LOGIN fred\r\n", "A1", Reason.SYNTAX),
]


@pytest.mark.parametrize(("data", "tag", "reason"), CASES, ids=[c[0][:40].decode("latin-1") for c in CASES])
def test_malformed_command(data: bytes, tag: str | None, reason: Reason) -> None:
    with pytest.raises(BadCommand) as bad:
        parse_command(data + NEXT)
    assert bad.value.reason is reason
    assert bad.value.tag == tag
    assert bad.value.discard == len(data)
    assert bad.value.skipper is None
    reply = bad.value.reply()
    assert reply.status == "BAD"
    assert reply.encode().startswith((tag or "*").encode() + b" BAD ")
    # the connection goes on: what follows is the next command
    assert parse_command((data + NEXT)[bad.value.discard :]) == (Noop("Z9"), b"")


def test_tag_is_known_even_when_the_command_is_not() -> None:
    with pytest.raises(BadCommand) as bad:
        parse_command(b"a023 logout now\r\n")
    assert bad.value.reply().encode().startswith(b"a023 BAD ")


def test_quoted_utf8_with_utf8_accept() -> None:
    params = Params(utf8=True)
    command, _ = parse_command('A1 SELECT "café"\r\n'.encode(), params)
    assert command.mailbox == "café"  # type: ignore[attr-defined]
    with pytest.raises(BadCommand) as bad:
        parse_command(b'A1 SELECT "caf\xe9"\r\n', params)
    assert bad.value.reason is Reason.EIGHT_BIT
    with pytest.raises(BadCommand) as bad:  # still no 8-bit atoms
        parse_command("A1 SELECT café\r\n".encode(), params)
    assert bad.value.reason is Reason.EIGHT_BIT


def test_literal_may_carry_8_bit() -> None:
    """CHAR8 (RFC 3501 §9): 8-bit is fine in a literal; a name must be UTF-8."""
    name = "café".encode()
    command, _ = parse_command(b"A1 SELECT {%d}\r\n" % len(name) + name + b"\r\n")
    assert command.mailbox == "café"  # type: ignore[attr-defined]
    with pytest.raises(BadCommand) as bad:
        parse_command(b"A1 SELECT {4}\r\ncaf\xe9\r\n")
    assert bad.value.reason is Reason.BAD_STRING


# -- refused before the literal is read -----------------------------------------------


def test_bad_command_refused_before_synchronizing_literal() -> None:
    line = b"A1 FETCH x {5}\r\n"
    with pytest.raises(BadCommand) as bad:
        parse_command(line)
    assert (bad.value.tag, bad.value.discard, bad.value.skipper) == ("A1", len(line), None)


def test_bad_command_refused_before_non_synchronizing_literal() -> None:
    """The data of {n+} is on its way: drop the line, skip the data, go on."""
    line = b"A1 BLURDYBLOOP {5+}\r\n"
    stream = line + b"hello more\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_command(line + b"he")
    assert bad.value.reason is Reason.UNKNOWN_COMMAND
    assert bad.value.discard == len(line)
    assert bad.value.skipper is not None
    assert _skip(stream, bad.value) == NEXT


def test_bad_charset_before_literal() -> None:
    line = b"A1 SEARCH CHARSET KOI8-R TEXT {6}\r\n"
    with pytest.raises(BadCharset) as bad:
        parse_command(line)
    assert bad.value.discard == len(line) and bad.value.skipper is None
    reply = bad.value.reply()
    assert (reply.status, reply.code) == ("NO", bad.value.reply().code)
    assert reply.encode() == b"A1 NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"


def test_bad_charset_after_literals() -> None:
    data = b"A1 SEARCH CHARSET {6}\r\nKOI8-R TEXT x\r\n"
    with pytest.raises(BadCharset) as bad:
        parse_command(data + NEXT)
    assert bad.value.charset == "KOI8-R"
    assert bad.value.discard == len(data)


@pytest.mark.parametrize("charset", [b"utf-8", b"US-ASCII", b'"us-ascii"'])
def test_supported_charsets_any_case(charset: bytes) -> None:
    command, _ = parse_command(b"A1 SEARCH CHARSET " + charset + b" TEXT x\r\n")
    assert command.charset.upper() == charset.strip(b'"').decode().upper()  # type: ignore[attr-defined]


def test_synchronizing_literal_over_the_limit_refused_before_reading() -> None:
    params = Params(max_literal_size=100)
    line = b"A1 APPEND INBOX {101}\r\n"
    with pytest.raises(LiteralTooLarge) as big:
        parse_command(line, params)
    assert big.value.tag == "A1" and big.value.size == 101 and big.value.synchronizing
    assert big.value.discard == len(line) and big.value.skipper is None
    reply = big.value.reply()
    assert (reply.status, reply.code) == ("NO", Codes.TOOBIG)
    # at the limit: continuation
    with pytest.raises(NeedMore) as more:
        parse_command(b"A1 APPEND INBOX {100}\r\n", params)
    assert more.value.continuation_required and more.value.literal_size == 100


def test_non_synchronizing_literal_over_the_limit_is_skipped() -> None:
    """RFC 7888 §4, first choice: reject the command and read past its data."""
    params = Params(max_literal_size=100)
    line = b"A1 APPEND INBOX {150+}\r\n"
    stream = line + b"x" * 150 + b"\r\n" + NEXT
    with pytest.raises(LiteralTooLarge) as big:
        parse_command(stream[: len(line) + 7], params)
    assert not big.value.synchronizing and big.value.size == 150
    assert big.value.discard == len(line)
    reply = big.value.reply()
    assert (reply.status, reply.code, reply.tag) == ("BAD", Codes.TOOBIG, "A1")  # type: ignore[union-attr]
    assert _skip(stream, big.value) == NEXT


def test_skipper_steps_over_further_literals() -> None:
    params = Params(max_literal_size=10)
    line = b"A1 SEARCH TEXT {20+}\r\n"
    rest = b"a" * 20 + b" TEXT {3+}\r\nabc TEXT {2}\r\n"
    with pytest.raises(LiteralTooLarge) as big:
        parse_command(line, params)
    assert big.value.skipper is not None
    # a synchronizing literal ends the skipping: the client waits for a "+"
    assert _skip(line + rest + NEXT, big.value) == NEXT


def test_skipper_fed_one_octet_at_a_time() -> None:
    skipper = CommandSkipper(literal=5)
    data = b"hello TEXT {2+}\r\nab\r\n" + NEXT
    used = 0
    for i in range(len(data)):
        if skipper.done:
            break
        used += skipper.feed(data[i : i + 1])
    assert skipper.done and data[used:] == NEXT


def test_huge_literal_count() -> None:
    with pytest.raises(LiteralTooLarge) as big:
        parse_command(b"A1 LOGIN {99999999999999999999999999999999}\r\n")
    assert big.value.size >= 2**63


def test_line_too_long_is_skipped_to_its_end() -> None:
    params = Params(max_line_length=64)
    head = b"A1 LOGIN " + b"x" * 80
    with pytest.raises(BadCommand) as bad:
        parse_command(head, params)
    assert bad.value.reason is Reason.LINE_TOO_LONG and bad.value.tag == "A1"
    assert bad.value.discard == len(head) and bad.value.skipper is not None
    assert bad.value.reply().encode().startswith(b"A1 BAD ")
    assert _skip(head + b"y" * 200 + b"\r\n" + NEXT, bad.value) == NEXT


def test_line_too_long_ending_in_a_non_synchronizing_literal() -> None:
    params = Params(max_line_length=32)
    head = b"A1 LOGIN " + b"x" * 40
    stream = head + b" {4+}\r\nabcd pass\r\n" + NEXT
    with pytest.raises(BadCommand) as bad:
        parse_command(head, params)
    assert _skip(stream, bad.value) == NEXT


def test_idle_done() -> None:
    done, rest = parse_idle_done(b"DONE\r\n" + NEXT)
    assert rest == NEXT
    done, rest = parse_idle_done(b"done\r\n")
    with pytest.raises(NeedMore):
        parse_idle_done(b"DON")
    with pytest.raises(BadCommand) as bad:
        parse_idle_done(b"A5 NOOP\r\n" + NEXT, tag="A4")
    assert bad.value.reason is Reason.EXPECTED_DONE
    assert bad.value.discard == len(b"A5 NOOP\r\n")
    assert bad.value.reply().encode().startswith(b"A4 BAD ")
    assert R.EXPECTED_DONE.status == "BAD"


def test_sasl_cancel_and_bad_base64() -> None:
    cancel, rest = parse_sasl_response(b"*\r\n" + NEXT)
    assert cancel.cancelled and rest == NEXT
    with pytest.raises(BadCommand) as bad:
        parse_sasl_response(b"not base64!\r\n", tag="A1")
    assert bad.value.reason is Reason.BAD_BASE64 and bad.value.tag == "A1"
    with pytest.raises(BadCommand):
        parse_sasl_response(b"AGZyZWQ\r\n", tag="A1")


# -- the rule every refusal keeps -----------------------------------------------------


def _skip(stream: bytes, refused: Rejected) -> bytes:
    """What an adapter does: drop ``discard`` octets, then feed the skipper."""
    rest = stream[refused.discard :]
    if refused.skipper is not None:
        used = refused.skipper.feed(rest)
        assert refused.skipper.done
        rest = rest[used:]
    return rest
