"""Hostile bytes: the parser raises only its own exceptions, always makes progress,
and never hangs (hypothesis' deadline fails any slow example)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from imap_samples import SAMPLES

from waypost.imap.proto import (
    Command,
    NeedMore,
    Params,
    Rejected,
    parse_command,
    parse_idle_done,
    parse_sasl_response,
)

SMALL = Params(
    max_line_length=40,
    max_literal_size=20,
    max_command_size=120,
    max_nesting_depth=3,
    max_sequence_items=3,
)
PARAMS = st.sampled_from([Params(), SMALL, Params(utf8=True)])

# Octets that matter to the grammar, so random data gets past the first checks.
IMAP_ALPHABET = st.sampled_from(
    [b" ", b"\r\n", b"\r", b"\n", b"(", b")", b"{", b"}", b"+", b'"', b"\\", b"[", b"]", b"<", b">", b".",
     b":", b",", b"*", b"%", b"0", b"1", b"7", b"42", b"{3}\r\n", b"{2+}\r\n", b"{0}\r\n", b"A1 ", b"UID ",
     b"FETCH ", b"SEARCH ", b"STORE ", b"LIST ", b"APPEND ", b"LOGIN ", b"SELECT ", b"NOT ", b"OR ",
     b"BODY[", b"HEADER.FIELDS ", b"FLAGS", b"\\Seen", b"INBOX", b"\x00", b"\xc3\xa9", b"\xff", b"NIL",
     b"CHARSET ", b"RETURN ", b"STATUS ", b"1-Feb-1994", b'"17-Jul-1996 02:44:25 -0700"', b"x"]
)
imap_like = st.lists(IMAP_ALPHABET, max_size=60).map(b"".join)
mutated = st.tuples(st.sampled_from(SAMPLES), st.integers(0, 400), st.integers(0, 8), st.binary(max_size=8)).map(
    lambda t: t[0][: t[1] % (len(t[0]) + 1)] + t[3] + t[0][t[1] % (len(t[0]) + 1) + t[2] :]
)
hostile = st.one_of(st.binary(max_size=600), imap_like, mutated)


def check_one_call(buf: bytes, params: Params) -> None:
    try:
        command, rest = parse_command(buf, params)
    except NeedMore as more:
        assert more.literal_size is None or more.literal_size >= 0
        return
    except Rejected as refused:
        assert 0 < refused.discard <= len(buf)
        refused.reply().encode()
        return
    assert isinstance(command, Command)
    assert len(rest) < len(buf) and buf.endswith(rest)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(buf=hostile, params=PARAMS)
@example(buf=b"A1 SEARCH " + b"NOT " * 5000 + b"ALL\r\n", params=Params())
@example(buf=b"A1 FETCH 1 " + b"(" * 5000 + b"\r\n", params=Params())
@example(buf=b"A1 LOGIN {" + b"9" * 5000 + b"}\r\n", params=Params())
@example(buf=b"A1 FETCH " + b"1," * 3000 + b"1 FLAGS\r\n", params=Params())
@example(buf=b"A1 SEARCH LARGER " + b"9" * 5000 + b"\r\n", params=Params())
def test_random_octets_only_raise_parser_exceptions(buf: bytes, params: Params) -> None:
    check_one_call(buf, params)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(buf=hostile, params=PARAMS)
def test_an_adapter_loop_over_random_octets_ends(buf: bytes, params: Params) -> None:
    """Whatever arrives, the loop consumes it in at most len(buf) steps."""
    steps = 0
    while buf:
        steps += 1
        assert steps <= 10_000
        try:
            _, rest = parse_command(buf, params)
        except NeedMore:
            return
        except Rejected as refused:
            rest = buf[refused.discard :]
            if refused.skipper is not None:
                rest = rest[refused.skipper.feed(rest) :]
        assert len(rest) < len(buf)
        buf = rest


@settings(max_examples=500)
@given(buf=st.one_of(st.binary(max_size=200), imap_like), params=PARAMS)
def test_idle_and_sasl_lines_only_raise_parser_exceptions(buf: bytes, params: Params) -> None:
    for parse in (parse_idle_done, parse_sasl_response):
        try:
            _, rest = parse(buf, params, tag="A1")
        except NeedMore:
            continue
        except Rejected as refused:
            assert 0 < refused.discard <= len(buf)
            continue
        assert len(rest) < len(buf)
