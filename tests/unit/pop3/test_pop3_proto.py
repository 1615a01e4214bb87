"""The POP3 protocol core, sans-IO: octets in, lines and commands out; replies in,
octets out.  No sockets here."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waypost.pop3.commands import HANDLERS
from waypost.pop3.proto import (
    CANCEL,
    COMMANDS,
    DEFAULT_PARAMS,
    KEYWORDS,
    LEGAL,
    NEED_DATA,
    Auth,
    AuthList,
    Capa,
    Code,
    Continuation,
    Dele,
    Line,
    LineBuffer,
    LineTooLong,
    List,
    MultiLine,
    Noop,
    Params,
    Pass,
    Quit,
    R,
    Rejected,
    Reply,
    Retr,
    Rset,
    Stat,
    State,
    Stls,
    TRANSITIONS,
    Top,
    Uidl,
    User,
    decode_plain,
    dot_stuff,
    next_state,
    parse_command,
    parse_sasl_response,
    refusal,
    top_of,
)

# -- framing -------------------------------------------------------------------------


def drain(buf: LineBuffer, limit: int = 1000) -> list[object]:
    out: list[object] = []
    while (event := buf.next_event(limit)) is not NEED_DATA:
        out.append(event)
    return out


def test_lines_come_out_one_by_one_in_order():
    buf = LineBuffer()
    buf.feed(b"USER a\r\nPASS b\r\nSTAT\r\nLI")
    assert drain(buf) == [Line(b"USER a"), Line(b"PASS b"), Line(b"STAT")]
    buf.feed(b"ST\r\n")
    assert drain(buf) == [Line(b"LIST")]


def test_a_line_fed_one_octet_at_a_time():
    buf = LineBuffer()
    out: list[object] = []
    for b in b"NOOP\r\n":
        buf.feed(bytes([b]))
        out += drain(buf)
    assert out == [Line(b"NOOP")]


def test_a_bare_lf_ends_a_line_too():
    buf = LineBuffer()
    buf.feed(b"STAT\nNOOP\r\n")
    assert drain(buf) == [Line(b"STAT"), Line(b"NOOP")]


def test_a_line_of_exactly_the_limit_is_accepted_one_more_octet_is_not():
    limit = 300
    exact = b"X" * (limit - 2) + b"\r\n"
    buf = LineBuffer()
    buf.feed(exact)
    assert drain(buf, limit) == [Line(b"X" * (limit - 2))]
    buf.feed(b"X" * (limit - 1) + b"\r\nNOOP\r\n")
    assert drain(buf, limit) == [LineTooLong(limit), Line(b"NOOP")]


def test_an_endless_line_is_reported_once_and_discarded_as_it_arrives():
    buf = LineBuffer()
    events: list[object] = []
    for _ in range(50):
        buf.feed(b"A" * 999)
        events += drain(buf, 1000)
        assert len(buf) < 1000  # never holds more than one line's worth
    buf.feed(b"AAA\r\nQUIT\r\n")
    events += drain(buf, 1000)
    assert events == [LineTooLong(1000), Line(b"QUIT")]


def test_clear_forgets_what_was_pipelined():
    buf = LineBuffer()
    buf.feed(b"STLS\r\nUSER injected\r\n")
    assert drain(buf)[0] == Line(b"STLS")
    buf.clear()
    assert drain(buf) == []


# -- commands --------------------------------------------------------------------------


@pytest.mark.parametrize("line, command", [
    (b"USER alice", User("alice")),
    (b"user alice@example.test", User("alice@example.test")),
    (b"USER alice%example.test", User("alice%example.test")),
    (b"USER \xc3\xa9lise", User("\u00e9lise")),
    (b"PASS secret", Pass("secret")),
    (b"PASS two words ", Pass("two words ")),  # RFC 1939 §7: spaces belong to the password
    (b"AUTH", AuthList()),
    (b"auth  ", AuthList()),
    (b"AUTH plain", Auth("PLAIN")),
    (b"AUTH PLAIN =", Auth("PLAIN", b"")),
    (b"AUTH PLAIN " + base64.b64encode(b"\0alice\0pw"), Auth("PLAIN", b"\0alice\0pw")),
    (b"STLS", Stls()),
    (b"CAPA", Capa()),
    (b"QUIT", Quit()),
    (b"STAT", Stat()),
    (b"LIST", List()),
    (b"LIST 2", List(2)),
    (b"list\t3", List(3)),
    (b"RETR 1", Retr(1)),
    (b"DELE 12", Dele(12)),
    (b"NOOP", Noop()),
    (b"RSET", Rset()),
    (b"TOP 1 0", Top(1, 0)),
    (b"TOP 2 10", Top(2, 10)),
    (b"UIDL", Uidl()),
    (b"UIDL 4", Uidl(4)),
    (b"STAT  ", Stat()),
    (b"RETR 007", Retr(7)),
])
def test_commands(line, command):
    assert parse_command(line) == command


@pytest.mark.parametrize("line, reply", [
    (b"", R.EMPTY_COMMAND),
    (b"   ", R.EMPTY_COMMAND),
    (b"XYZZY", R.UNKNOWN_COMMAND),
    (b"APOP alice 0123456789abcdef", R.UNKNOWN_COMMAND),  # APOP is not offered
    (b"\xff\xfe\xfd", R.UNKNOWN_COMMAND),
    (b"US\xc3\x89R alice", R.UNKNOWN_COMMAND),
    (b"STAT\x00", R.CONTROL),
    (b"USER a\x1bb", R.CONTROL),
    (b"STAT 1", R.SYNTAX),
    (b"RETR", R.SYNTAX),
    (b"RETR 1 2", R.SYNTAX),
    (b"TOP 1", R.SYNTAX),
    (b"USER", R.SYNTAX),
    (b"USER a b", R.SYNTAX),
    (b"PASS", R.SYNTAX),
    (b"AUTH PLAIN a b", R.SYNTAX),
    (b"AUTH PL@IN", R.SYNTAX),
    (b"RETR 0", R.BAD_NUMBER),
    (b"RETR -1", R.BAD_NUMBER),
    (b"RETR one", R.BAD_NUMBER),
    (b"DELE 1.5", R.BAD_NUMBER),
    (b"TOP 1 -1", R.BAD_NUMBER),
    (b"LIST 1234567890", R.BAD_NUMBER),  # max_number_digits is 9
    (b"RETR \xff", R.EIGHT_BIT),
    (b"USER \xff\xfe", R.BAD_UTF8),
    (b"PASS \xc3", R.BAD_UTF8),
    (b"AUTH PLAIN !!!!", R.BAD_BASE64),
    (b"AUTH PLAIN QUJD", Auth("PLAIN", b"ABC")),
])
def test_refused_lines(line, reply):
    if isinstance(reply, Auth):
        assert parse_command(line) == reply
        return
    with pytest.raises(Rejected) as e:
        parse_command(line)
    assert e.value.reply == reply
    assert not e.value.reply.ok


def test_number_digits_at_the_edge():
    assert parse_command(b"LIST 999999999") == List(999_999_999)
    with pytest.raises(Rejected):
        parse_command(b"LIST 1000000000")


def test_argument_length_at_the_edge():
    params = Params(max_argument_length=40)  # RFC 1939 §3's own limit
    assert parse_command(b"USER " + b"a" * 40, params) == User("a" * 40)
    assert parse_command(b"PASS " + b"p" * 40, params) == Pass("p" * 40)
    for line in (b"USER " + b"a" * 41, b"PASS " + b"p" * 41):
        with pytest.raises(Rejected) as e:
            parse_command(line, params)
        assert e.value.reply == R.ARGUMENT_TOO_LONG


def test_a_password_never_shows_in_a_repr():
    assert "hunter2" not in repr(Pass("hunter2"))
    assert "aHVudGVyMg" not in repr(parse_command(b"AUTH PLAIN AGFsaWNlAGh1bnRlcjI="))


def test_params_are_checked():
    with pytest.raises(ValueError):
        Params(max_line_length=254)  # RFC 2449 §4: at least 255
    with pytest.raises(ValueError):
        Params(max_number_digits=0)
    with pytest.raises(ValueError):
        Params(max_line_length=2000, max_sasl_line_length=1000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_any_octets_give_a_command_or_a_refusal(line):
    line = line.replace(b"\n", b"")
    try:
        command = parse_command(line)
    except Rejected as e:
        assert not e.reply.ok and e.reply.encode().startswith(b"-ERR ")
    else:
        assert command.name in COMMANDS


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(KEYWORDS)), st.binary(max_size=40))
def test_any_arguments_give_a_command_or_a_refusal(keyword, rest):
    try:
        parse_command(keyword.encode() + b" " + rest.replace(b"\n", b""))
    except Rejected:
        pass


# -- SASL (RFC 5034 §4, RFC 4616) -----------------------------------------------------


def test_sasl_responses():
    assert parse_sasl_response(b"*") is CANCEL
    assert parse_sasl_response(base64.b64encode(b"\0alice\0pw")) == b"\0alice\0pw"
    assert parse_sasl_response(b"=") == b""
    for bad in (b"not base64!", b"\xff\xff", b"QUJ"):
        with pytest.raises(Rejected) as e:
            parse_sasl_response(bad)
        assert e.value.reply == R.BAD_BASE64


def test_plain_messages():
    assert decode_plain(b"\0alice\0pw") == ("", "alice", "pw")
    assert decode_plain(b"alice@example.test\0alice\0p w") == ("alice@example.test", "alice", "p w")
    assert decode_plain("\0\u00e9lise\0p\u00e4ss".encode()) == ("", "\u00e9lise", "p\u00e4ss")
    for bad in (b"", b"alice", b"\0alice", b"\0\0pw", b"\0alice\0", b"a\0b\0c\0d", b"\0\xff\0pw"):
        with pytest.raises(Rejected) as e:
            decode_plain(bad)
        assert e.value.reply == R.BAD_PLAIN


# -- replies ---------------------------------------------------------------------------


def test_single_line_replies():
    assert R.NOOP.encode() == b"+OK\r\n"
    assert R.STAT.format(count=2, size=320).encode() == b"+OK 2 320\r\n"
    assert R.IN_USE.encode().startswith(b"-ERR [IN-USE] ")
    assert R.LOGIN_FAILED.encode().startswith(b"-ERR [AUTH] ")
    assert R.SHUTTING_DOWN.encode().startswith(b"-ERR [SYS/TEMP] ")
    assert Reply(False, None, "a\r\nb").encode() == b"-ERR a b\r\n"
    assert len(Reply(True, None, "x" * 2000).encode()) == 512  # RFC 2449 §4


def test_the_catalogue_uses_only_registered_codes():
    codes = {v for k, v in vars(Code).items() if not k.startswith("_")}
    for name, reply in vars(R).items():
        if isinstance(reply, Reply):
            assert reply.code is None or reply.code in codes, name


@pytest.mark.parametrize("body, wire", [
    (b"", b""),
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\r\nb", b"a\r\nb\r\n"),  # always ends with CRLF before the "."
    (b".\r\n", b"..\r\n"),
    (b"a\r\n.\r\n..b\r\n", b"a\r\n..\r\n...b\r\n"),
    (b".start\r\nend.\r\n", b"..start\r\nend.\r\n"),
    (b"lf\n.dot\n", b"lf\r\n..dot\r\n"),  # a file with bare LFs goes out with CRLF
])
def test_dot_stuffing(body, wire):
    assert dot_stuff(body) == wire


def test_multi_line_responses():
    assert MultiLine.of_lines(R.UIDL_ALL, ["1 a", "2 b"]).encode() == \
        b"+OK Unique-id listing follows\r\n1 a\r\n2 b\r\n.\r\n"
    assert MultiLine(R.TOP, b".x\r\n").encode() == b"+OK Top of message follows\r\n..x\r\n.\r\n"
    assert MultiLine(R.TOP, b"..x\r\n", stuffed=True).encode() == b"+OK Top of message follows\r\n..x\r\n.\r\n"
    assert MultiLine.of_lines(R.CAPA, []).encode() == b"+OK Capability list follows\r\n.\r\n"
    assert Continuation().encode() == b"+ \r\n"
    assert Continuation(b"hi").encode() == b"+ aGk=\r\n"


def test_top_of_a_message():
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\n\r\nl3\r\n"
    assert top_of(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_of(msg, 1) == b"A: 1\r\nB: 2\r\n\r\nl1\r\n"
    assert top_of(msg, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\n\r\n"
    assert top_of(msg, 99) == msg
    assert top_of(b"A: 1\r\nB: 2\r\n", 5) == b"A: 1\r\nB: 2\r\n"  # no body at all
    assert top_of(b"A: 1\n\nx\ny\n", 1) == b"A: 1\n\nx\n"


# -- the state table ---------------------------------------------------------------------


def test_the_tables_agree():
    assert set(LEGAL) == set(COMMANDS) == set(HANDLERS)
    assert KEYWORDS < COMMANDS
    for (state, command, _ok), _next in TRANSITIONS.items():
        assert command in LEGAL
        assert state is State.UPDATE or state in LEGAL[command]


def test_wrong_state_gets_one_fixed_reply():
    for command in ("STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"):
        assert refusal(command, State.AUTHORIZATION) == R.NOT_LOGGED_IN
        assert refusal(command, State.USER_GIVEN) == R.NOT_LOGGED_IN
        assert refusal(command, State.TRANSACTION) is None
    for command in ("USER", "PASS", "AUTH", "AUTH-LIST", "STLS"):
        assert refusal(command, State.TRANSACTION) == R.ALREADY_LOGGED_IN
    assert refusal("PASS", State.AUTHORIZATION) == R.USER_FIRST
    assert refusal("PASS", State.USER_GIVEN) is None
    for command in ("CAPA", "QUIT"):
        for state in (State.AUTHORIZATION, State.USER_GIVEN, State.TRANSACTION):
            assert refusal(command, state) is None
    for command in LEGAL:
        assert refusal(command, State.UPDATE) is not None
        assert refusal(command, State.CLOSED) is not None


def test_transitions():
    A, U, T, UP, C = State.AUTHORIZATION, State.USER_GIVEN, State.TRANSACTION, State.UPDATE, State.CLOSED
    assert next_state(A, "USER", True) is U
    assert next_state(A, "USER", False) is A
    assert next_state(U, "PASS", True) is T
    assert next_state(U, "PASS", False) is A  # a failed PASS needs a new USER
    assert next_state(A, "AUTH", True) is T
    assert next_state(A, "AUTH-LIST", True) is A  # a list of mechanisms logs nobody in
    assert next_state(U, "AUTH", False) is A
    assert next_state(U, "STLS", True) is A
    assert next_state(U, "CAPA", True) is U
    assert next_state(A, "QUIT", True) is C
    assert next_state(T, "QUIT", True) is UP
    assert next_state(UP, "QUIT", False) is C
    assert next_state(T, "RETR", False) is T
    assert next_state(T, "DELE", True) is T


def test_default_params_follow_the_brief():
    assert DEFAULT_PARAMS.max_line_length == 1000
