"""The sans-IO SMTP core (waypost.smtp.proto): transcripts from the RFCs, framing at its
edges, the smuggling variants, BDAT, and random chunkings of one session (hypothesis).

No socket here: ``drive`` below is a minimal session built from the core alone (the
framing, the parser, the state table and the reply wire form) with a policy that
accepts every well-formed sender and recipient; the real handlers are tested over
sockets in tests/e2e.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waypost.smtp.proto import (
    NEED_DATA,
    BodyCheck,
    Connection,
    InputBuffer,
    Line,
    Mode,
    Params,
    State,
    TextEnd,
    parse_bdat,
    parse_line,
    parse_mail,
    parse_mail_params,
    parse_rcpt,
    parse_rcpt_params,
    refusal,
    state_of,
    wire,
)
from waypost.smtp.replies import R, Reply

P = Params(max_line_length=1000, max_message_size=10_000, max_chunk_piece=64)


class Session:
    """Just enough of a server to run transcripts through the core."""

    def __init__(self, params: Params = P) -> None:
        self.p = params
        self.conn = Connection(params)
        self.out = bytearray()
        self.messages: list[bytes] = []
        self.greeted = False
        self.sender: str | None = None
        self.rcpts = 0
        self.chunks: list[bytes] | None = None
        self.check: BodyCheck | None = None
        self.pieces: list[bytes] = []
        self.text: tuple[str, bool, Reply | None] | None = None  # ("DATA"|"BDAT", last, refusal)
        self.closed = False
        self.out += b"220 mx.example ESMTP\r\n"

    def reset(self) -> None:
        self.sender, self.rcpts, self.chunks, self.check = None, 0, None, None

    @property
    def state(self) -> State:
        return state_of(self.greeted, self.sender is not None, self.rcpts, self.chunks is not None)

    def feed(self, data: bytes) -> None:
        self.conn.feed(data)
        while not self.closed:
            if self.text is not None:
                got = self.conn.next_text()
                if got is NEED_DATA:
                    return
                if isinstance(got, bytes):
                    self.pieces.append(got)
                    continue
                assert isinstance(got, TextEnd)
                self.pieces.append(got.tail)
                self._end_text(got)
                continue
            ev = self.conn.next_command()
            if ev is NEED_DATA:
                return
            if isinstance(ev, Reply):
                self.send(ev)
                continue
            assert isinstance(ev, Line)
            self.command(ev)

    def send(self, reply: Reply | str, raw: bool = False) -> None:
        self.out += wire(reply, raw)

    def end_reply(self, reply: Reply) -> None:
        n = self.rcpts if self.p.mode is Mode.LMTP else 1
        self.reset()
        self.out += wire(reply) * max(n, 1)

    def command(self, ev: Line) -> None:
        verb, arg = ev.verb, ev.arg
        if verb == "BDAT":
            cmd = parse_bdat(arg)
            if isinstance(cmd, Reply):
                self.send(cmd)
                return
            self.conn.start_chunk(cmd.size)
            self.pieces = []
            self.text = ("BDAT", cmd.last, refusal("BDAT", self.state, self.p.mode, True))
            return
        refused = refusal(verb, self.state, self.p.mode, True)
        if refused is not None:
            if verb == "DATA" and self.state is State.BDAT:
                self.reset()
            self.send(refused)
            return
        if verb in ("EHLO", "HELO", "LHLO"):
            self.greeted = True
            self.reset()
            self.send("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING", raw=True)
        elif verb == "MAIL":
            m = parse_mail(arg)
            if isinstance(m, Reply):
                self.send(m)
                return
            opts = parse_mail_params(m.params, self.p)
            if isinstance(opts, Reply):
                self.send(opts)
                return
            self.sender = m.path
            self.send(R.SENDER_OK)
        elif verb == "RCPT":
            r = parse_rcpt(arg)
            if isinstance(r, Reply):
                self.send(r)
                return
            dsn = parse_rcpt_params(r.params)
            if isinstance(dsn, Reply):
                self.send(dsn)
                return
            self.rcpts += 1
            self.send(R.RCPT_OK)
        elif verb == "DATA":
            self.send("354 go ahead", raw=True)
            self.conn.start_data()
            self.pieces = []
            self.text = ("DATA", True, None)
        elif verb == "RSET":
            self.reset()
            self.send(R.OK)
        elif verb == "NOOP":
            self.send(R.OK)
        elif verb == "QUIT":
            self.send(R.BYE)
            self.closed = True
        else:
            self.send(R.UNKNOWN_COMMAND)

    def _end_text(self, end: TextEnd) -> None:
        kind, last, refused = self.text or ("", False, None)
        self.text = None
        if kind == "DATA":
            if end.too_big:
                self.reset()
                self.send(R.TOO_BIG)
                return
            check = BodyCheck(self.p.max_line_length)
            for piece in self.pieces:
                check.feed(piece)
            self._finish(b"".join(self.pieces), check)
            return
        if refused is not None:
            self.send(refused)
            return
        if self.chunks is None:
            self.chunks, self.check = [], BodyCheck(self.p.max_line_length)
        assert self.check is not None
        for piece in self.pieces:
            self.check.feed(piece)
            self.chunks.append(piece)
        if not last:
            self.send(Reply(250, "2.0.0", f"{sum(map(len, self.pieces))} octets received"))
            return
        body = b"".join(self.chunks)
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
            self.check.feed(b"\r\n")
        self._finish(body, self.check)

    def _finish(self, body: bytes, check: BodyCheck) -> None:
        problem = check.verdict(eight_bit_ok=True)
        if problem is not None:
            self.end_reply(problem)
            return
        self.messages.append(body)
        self.end_reply(Reply(250, "2.0.0", f"OK: queued as {len(self.messages)}"))


def replies(out: bytes) -> list[tuple[int, str]]:
    """(code, enhanced status) of every reply line that ends a reply."""
    got = []
    for line in out.decode().split("\r\n"):
        m = re.match(r"^(\d{3}) (([245]\.\d+\.\d+) )?", line)
        if m:
            got.append((int(m.group(1)), m.group(3) or ""))
    return got


def run(data: bytes, params: Params = P) -> Session:
    s = Session(params)
    s.feed(data)
    return s


# -- transcripts from the RFCs ----------------------------------------------------------


def test_rfc5321_appendix_d1_a_typical_transaction():
    s = run(b"EHLO bar.com\r\n"
            b"MAIL FROM:<Smith@bar.com>\r\n"
            b"RCPT TO:<Jones@foo.com>\r\n"
            b"RCPT TO:<Green@foo.com>\r\n"
            b"RCPT TO:<Brown@foo.com>\r\n"
            b"DATA\r\n"
            b"Blah blah blah...\r\n...etc. etc. etc.\r\n.\r\n"
            b"QUIT\r\n")
    assert [c for c, _ in replies(bytes(s.out))] == [220, 250, 250, 250, 250, 250, 354, 250, 221]
    assert s.messages == [b"Blah blah blah...\r\n..etc. etc. etc.\r\n"]  # RFC 5321 §4.5.2
    assert s.closed


def test_rfc2920_pipelining_example_gets_its_replies_in_order():
    # RFC 2920 §3.1: the client sends MAIL, RCPT, RCPT, DATA in one go.
    s = run(b"EHLO dbc.mtview.ca.us\r\n")
    s.feed(b"MAIL FROM:<mrose@dbc.mtview.ca.us>\r\nRCPT TO:<ned@innosoft.com>\r\n"
           b"RCPT TO:<dan@innosoft.com>\r\nRCPT TO:<kvc@innosoft.com>\r\nDATA\r\n")
    s.feed(b"...\r\n.\r\nQUIT\r\n")
    assert [c for c, _ in replies(bytes(s.out))] == [220, 250, 250, 250, 250, 250, 354, 250, 221]
    assert s.messages == [b"..\r\n"]


def test_rfc3030_section_4_2_pipelined_bdat():
    # RFC 3030 §4.2 (the example, with its chunk sizes adjusted to its text).
    first = b"Date: Sat, 5 Dec 2026\r\nSubject: BDAT\r\n\r\n"
    second = b"Hi Bob,\r\nThe message may contain internal newlines.\r\n"
    s = run(b"EHLO alpha.gamma.net\r\n")
    s.feed(b"MAIL FROM:<Sam@Random.com>\r\nRCPT TO:<Susan@Random.com>\r\nRCPT TO:<Mark@Random.com>\r\n"
           + f"BDAT {len(first)}\r\n".encode() + first + f"BDAT {len(second)} LAST\r\n".encode() + second
           + b"QUIT\r\n")
    assert replies(bytes(s.out))[-3:] == [(250, "2.0.0"), (250, "2.0.0"), (221, "2.0.0")]
    assert f"{len(first)} octets received".encode() in s.out
    assert s.messages == [first + second]


def test_rfc3030_bdat_zero_last_ends_the_message():
    s = run(b"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 4\r\nab\r\nBDAT 0 LAST\r\n")
    assert s.messages == [b"ab\r\n"]


def test_rfc2033_lmtp_one_reply_per_recipient():
    lmtp = Params(mode=Mode.LMTP, max_message_size=10_000)
    s = run(b"LHLO foo.edu\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\n"
            b"RCPT TO:<jones@foo.edu>\r\nRCPT TO:<green@foo.edu>\r\nDATA\r\nBlah blah blah...\r\n.\r\nQUIT\r\n",
            lmtp)
    codes = [c for c, _ in replies(bytes(s.out))]
    assert codes == [220, 250, 250, 250, 250, 250, 354, 250, 250, 250, 221]


def test_lmtp_refuses_helo_and_ehlo():
    lmtp = Params(mode=Mode.LMTP)
    assert refusal("EHLO", State.CONNECTED, Mode.LMTP, False) is not None
    assert refusal("HELO", State.CONNECTED, lmtp.mode, False) is not None
    assert refusal("LHLO", State.CONNECTED, lmtp.mode, False) is None


# -- the smuggling variants ---------------------------------------------------------------

SMUGGLED = b"MAIL FROM:<evil@a.example>\r\nRCPT TO:<victim@b.example>\r\nDATA\r\nSmuggled\r\n"


@pytest.mark.parametrize("end", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"])
def test_a_false_end_of_data_neither_ends_the_message_nor_splits_it(end):
    data = (b"EHLO a\r\nMAIL FROM:<a@a.example>\r\nRCPT TO:<b@b.example>\r\nDATA\r\n"
            b"Subject: one\r\n\r\nfirst" + end + SMUGGLED + b".\r\nQUIT\r\n")
    s = run(data)
    got = replies(bytes(s.out))
    # One message, refused as a whole for its bare CR or LF; nothing was taken for commands.
    assert got == [(220, ""), (250, ""), (250, "2.1.0"), (250, "2.1.5"), (354, ""), (554, "5.6.0"), (221, "2.0.0")]
    assert s.messages == []


@pytest.mark.parametrize("end", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n"])
def test_smuggling_inside_bdat_is_text(end):
    body = b"Subject: one\r\n\r\nfirst" + end + SMUGGLED + b".\r\n"
    s = run(b"EHLO a\r\nMAIL FROM:<a@a.example>\r\nRCPT TO:<b@b.example>\r\n"
            + f"BDAT {len(body)} LAST\r\n".encode() + body + b"QUIT\r\n")
    assert replies(bytes(s.out))[-2:] == [(554, "5.6.0"), (221, "2.0.0")]
    assert s.messages == []


# -- BDAT bad input -----------------------------------------------------------------------

ENVELOPE = b"EHLO a\r\nMAIL FROM:<a@a.example>\r\nRCPT TO:<b@b.example>\r\n"


def test_bdat_chunk_octets_are_never_commands():
    # The chunk says "QUIT": it is text, and the session goes on.
    s = run(ENVELOPE + b"BDAT 6\r\nQUIT\r\nBDAT 0 LAST\r\nNOOP\r\n")
    assert s.messages == [b"QUIT\r\n"]
    assert not s.closed
    assert replies(bytes(s.out))[-1] == (250, "2.0.0")


def test_bdat_with_a_bad_size_is_a_syntax_error():
    for arg in (b"BDAT\r\n", b"BDAT -1\r\n", b"BDAT 12x\r\n", b"BDAT 5 FIRST\r\n", b"BDAT 1234567890123456789\r\n"):
        s = run(ENVELOPE + arg)
        assert replies(bytes(s.out))[-1] == (501, "5.5.4"), arg


def test_bdat_shorter_than_announced_waits_for_the_rest():
    s = run(ENVELOPE + b"BDAT 10 LAST\r\nabc\r\n")
    assert s.messages == [] and replies(bytes(s.out))[-1] == (250, "2.1.5")
    s.feed(b"defgh")  # 10 octets now: the message is complete
    assert s.messages == [b"abc\r\ndefgh\r\n"]


def test_bdat_longer_than_announced_leaves_the_rest_for_commands():
    s = run(ENVELOPE + b"BDAT 3 LAST\r\nabcNOOP\r\n")
    assert s.messages == [b"abc\r\n"]
    assert replies(bytes(s.out))[-1] == (250, "2.0.0")


def test_data_after_bdat_is_refused_and_ends_the_transaction():
    s = run(ENVELOPE + b"BDAT 3\r\nabcDATA\r\nBDAT 1 LAST\r\nx")
    got = replies(bytes(s.out))
    assert got[-2] == (503, "5.5.1")       # DATA after BDAT (RFC 3030 §2)
    assert got[-1] == (503, "5.1.1") or got[-1][0] == 503  # no transaction left for BDAT
    assert s.messages == []


def test_bdat_last_twice_the_second_has_no_transaction():
    s = run(ENVELOPE + b"BDAT 3 LAST\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n")
    got = replies(bytes(s.out))
    assert got[-3:] == [(250, "2.0.0"), (503, "5.5.1"), (250, "2.0.0")]
    assert s.messages == [b"abc\r\n"]


def test_bdat_before_rcpt_reads_the_chunk_then_refuses():
    s = run(b"EHLO a\r\nMAIL FROM:<a@a.example>\r\nBDAT 6 LAST\r\nRSET\r\nNOOP\r\n")
    got = replies(bytes(s.out))
    assert got[-2:] == [(503, "5.5.1"), (250, "2.0.0")]  # the RSET inside the chunk was not run
    assert s.sender is not None


def test_pipelined_commands_after_bdat_run_after_it():
    s = run(ENVELOPE + b"BDAT 4 LAST\r\nabcdRSET\r\nMAIL FROM:<x@y.example>\r\nQUIT\r\n")
    assert [c for c, _ in replies(bytes(s.out))][-4:] == [250, 250, 250, 221]
    assert s.messages == [b"abcd\r\n"]


# -- framing and grammar at their edges -------------------------------------------------------


def test_command_line_limit_counts_the_crlf():
    buf = InputBuffer()
    buf.feed(b"N" * 510 + b"\r\n")
    assert buf.next_line(512) == b"N" * 510
    buf.feed(b"N" * 511 + b"\r\n")
    assert buf.next_line(512) == R.LINE_TOO_LONG


def test_an_overlong_line_is_answered_once_when_it_ends():
    buf = InputBuffer()
    buf.feed(b"X" * 600)
    assert buf.next_line(512) is NEED_DATA
    buf.feed(b"X" * 5000)
    assert buf.next_line(512) is NEED_DATA
    assert len(buf) == 0  # never buffered
    buf.feed(b"XX\r\nNOOP\r\n")
    assert buf.next_line(512) == R.LINE_TOO_LONG
    assert buf.next_line(512) == b"NOOP"


@pytest.mark.parametrize("line", [b"NOOP\n", b"NO\rOP\r\n", b"NOOP\r\r\n"])
def test_bare_cr_or_lf_in_a_command(line):
    buf = InputBuffer()
    buf.feed(line)
    assert buf.next_line(512) == R.BARE_LF


def test_parse_line_refusals():
    assert parse_line(b"", P) == R.BAD_SYNTAX
    assert parse_line(b"NO\x00OP", P) == R.NUL_IN_COMMAND
    assert parse_line(b"MAIL FROM:<\xff@x>", P) == R.NOT_8BIT
    assert parse_line("MAIL FROM:<ü@x>".encode(), Params(smtputf8=False)) == R.NOT_8BIT
    assert parse_line(b"mail  FROM:<a@b> ", P) == Line("MAIL", "FROM:<a@b>")


def test_mail_and_rcpt_grammar():
    assert parse_mail("FROM:<>").path == ""  # type: ignore[union-attr]
    assert parse_mail("FROM:<@relay.example:a@b.example>").path == "a@b.example"  # type: ignore[union-attr]
    assert parse_mail('FROM:<"a>b"@c.example> SIZE=10').params == [("SIZE", "10")]  # type: ignore[union-attr]
    assert isinstance(parse_mail("FROM:a@b.example"), Reply)
    assert isinstance(parse_mail("FROM:<a@b.example> SIZE="), Reply)
    assert isinstance(parse_rcpt("TO:<>"), Reply)
    opts = parse_mail_params([("BODY", "8bitmime"), ("SMTPUTF8", None), ("RET", "hdrs"), ("ENVID", "x+2Bz")], P)
    assert not isinstance(opts, Reply)
    assert opts.as_params() == {"body": "8BITMIME", "smtputf8": True, "ret": "HDRS", "envid": "x+2Bz"}
    assert parse_mail_params([("SIZE", "10001")], P) == R.TOO_BIG
    assert parse_mail_params([("SIZE", "10000")], P) != R.TOO_BIG
    assert parse_mail_params([("FOO", None)], P).code == 555  # type: ignore[union-attr]
    assert parse_rcpt_params([("NOTIFY", "success,delay"), ("ORCPT", "rfc822;a@b")]) == ("SUCCESS,DELAY", "rfc822;a@b")
    assert isinstance(parse_rcpt_params([("NOTIFY", "NEVER,SUCCESS")]), Reply)


def test_message_size_limit_at_its_edge():
    body = b"x" * 98 + b"\r\n"
    limit = Params(max_message_size=len(body) * 10)
    ok = run(ENVELOPE + b"DATA\r\n" + body * 10 + b".\r\n", limit)
    assert ok.messages == [body * 10]
    big = run(ENVELOPE + b"DATA\r\n" + body * 10 + b"y\r\n.\r\nNOOP\r\n", limit)
    assert big.messages == [] and replies(bytes(big.out))[-2:] == [(552, "5.3.4"), (250, "2.0.0")]


def test_text_line_limit_at_its_edge():
    ok = run(ENVELOPE + b"DATA\r\n" + b"x" * 998 + b"\r\n.\r\n")
    assert len(ok.messages) == 1
    long = run(ENVELOPE + b"DATA\r\n" + b"x" * 999 + b"\r\n.\r\n")
    assert replies(bytes(long.out))[-1] == (554, "5.6.0") and long.messages == []


def test_wire_adds_enhanced_codes_except_where_raw():
    assert wire(Reply(250, "", "OK")) == b"250 2.0.0 OK\r\n"
    assert wire(R.SENDER_OK) == b"250 2.1.0 Sender OK\r\n"
    assert wire("503 Error: send EHLO first") == b"503 5.5.1 Error: send EHLO first\r\n"
    assert wire("250 mx.example", raw=True) == b"250 mx.example\r\n"
    assert wire("354 go") == b"354 go\r\n"


# -- any chunking gives the same session (hypothesis) -------------------------------------------

SESSION = (
    b"EHLO client.example\r\n"
    b"MAIL FROM:<a@a.example> BODY=8BITMIME\r\nRCPT TO:<b@b.example>\r\nDATA\r\n"
    b".leading dot\r\nline\r\n..\r\n\r\n.\r\n"
    b"MAIL FROM:<a@a.example>\r\nRCPT TO:<b@b.example>\r\nBDAT 12\r\nchunk\r\n.\r\n\r\nBDAT 7 LAST\r\n\r\n.\r\nok"
    b"NOOP\r\n" + b"Z" * 1200 + b"\r\nMAIL FROM:<c@c.example>\r\nRCPT TO:<d@d.example>\r\nDATA\r\n"
    b"bare\nlf\r\n.\r\n"
    b"RSET\r\nQUIT\r\n"
)


def _reference() -> Session:
    return run(SESSION)


def test_the_reference_session():
    s = _reference()
    assert s.messages == [b"leading dot\r\nline\r\n.\r\n\r\n", b"chunk\r\n.\r\n\r\n\r\n.\r\nok\r\n"]
    assert [c for c, _ in replies(bytes(s.out))] == [220, 250, 250, 250, 354, 250, 250, 250, 250, 250, 250, 500,
                                                      250, 250, 354, 554, 250, 221]
    assert s.closed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SESSION)), max_size=40))
def test_random_chunkings_give_the_same_replies(cuts):
    expected = _reference()
    s = Session()
    edges = [0, *sorted(cuts), len(SESSION)]
    for a, b in zip(edges, edges[1:]):
        s.feed(SESSION[a:b])
    assert bytes(s.out) == bytes(expected.out)
    assert s.messages == expected.messages


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_any_text_is_one_message_or_none(text, cuts):
    """Whatever the client sends after DATA, up to the first CRLF.CRLF is one message
    (or one refusal): never two, never an early end."""
    # Dot-stuffed as a client must (RFC 5321 §4.5.2): every line that starts with a
    # dot, the first one included, so that no CRLF.CRLF is left inside the text.
    stuffed = (b"\r\n" + text).replace(b"\r\n.", b"\r\n..")[2:]
    data = ENVELOPE + b"DATA\r\n" + stuffed + b"\r\n.\r\nNOOP\r\n"
    s = Session()
    edges = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    for a, b in zip(edges, edges[1:]):
        s.feed(data[a:b])
    got = replies(bytes(s.out))
    assert got[-1] == (250, "2.0.0")  # the NOOP after the message
    ends = [r for r in got[4:-1]]
    assert len(ends) == 2 and ends[0] == (354, "")  # one 354, one end-of-message reply
    assert len(s.messages) <= 1


def _reference_verdict(body: bytes, max_line: int) -> Reply | None:
    """What the server checked before the core streamed (the whole message at once)."""
    crlf = body.count(b"\r\n")
    if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
        return R.BODY_BARE_LF
    if b"\x00" in body:
        return R.BODY_NUL
    if len(body) > max_line - 2 and max(map(len, body.split(b"\r\n"))) > max_line - 2:
        return R.BODY_LONG_LINE
    return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"\r\n", b"\r", b"\n", b"x", b"xxxxxxx", b"\x00", b"y" * 20]), max_size=40),
       st.lists(st.integers(min_value=0, max_value=400), max_size=8),
       st.sampled_from([12, 13, 20, 512]))
def test_body_check_piece_by_piece_is_the_check_of_the_whole(parts, cuts, max_line):
    body = b"".join(parts)
    check = BodyCheck(max_line)
    edges = [0, *sorted(c for c in cuts if c <= len(body)), len(body)]
    for a, b in zip(edges, edges[1:]):
        check.feed(body[a:b])
    assert check.verdict(eight_bit_ok=True) == _reference_verdict(body, max_line)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"", b"a", b"x" * 9, b"y" * 10, b"z" * 11, b".", b"..", b".a", b"a.b"]),
                min_size=1, max_size=40),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_text_unstuffed_and_long_lines_found_whatever_the_chunking(lines, sizes):
    """The framing's shortcuts (the end marker looked for only where a dot is and only
    once per octet, no unstuffing pass over a piece without a dot, the long-line check
    by backward searches) give what the rules say for any text and any chunking:
    unstuffed text as RFC 5321 §4.5.2 defines it, and a line of more than the limit
    (here 10 octets) found wherever it is."""
    params = Params(max_message_size=100_000, max_chunk_piece=16)
    stuffed = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)
    wire_text = stuffed + b".\r\nNOOP\r\n"
    conn = Connection(params)
    conn.start_data()
    check = BodyCheck(12)  # lines of at most 10 octets and their CRLF
    got, pos, end = [], 0, None
    for size in sizes * (len(wire_text) // sum(sizes) + 1):
        conn.feed(wire_text[pos:pos + size])
        pos += size
        while end is None:
            piece = conn.next_text()
            if piece is NEED_DATA:
                break
            if isinstance(piece, TextEnd):
                end = piece
                piece = piece.tail
            check.feed(piece)
            got.append(piece)
        if end is not None:
            break
    assert end is not None and end.size == len(stuffed)
    assert b"".join(got) == b"".join(line + b"\r\n" for line in lines)
    long_line = any(len(line) > 10 for line in lines)
    assert check.verdict(True) == (R.BODY_LONG_LINE if long_line else None)
    conn.feed(wire_text[pos:])
    assert bytes(conn.input.buf) == b"NOOP\r\n"  # what follows the end marker stays for commands


def test_the_handler_table_is_loaded_before_the_workers_fork():
    """``waypost.server`` (imported by ``serve`` before it forks) loads the SMTP handler
    modules, so that no worker's first session waits for their import."""
    import subprocess
    import sys

    code = "import sys, waypost.server; print('waypost.smtp.commands.data' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
