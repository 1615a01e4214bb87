"""Whatever a user uploads, the checker answers with a SieveError (line and column) or
a script, never another exception; whatever a script does with a message, ``run``
returns a result; whatever a ManageSieve client sends, the parser answers with a
command, a refusal, or a request for more."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from waypost.sieve import Message, SieveError, compile_script, run
from waypost.sieve.proto import BadCommand, Command, NeedData, parse_command

_TOKENS = st.sampled_from([
    "require", '"fileinto"', '["fileinto", "vacation", "variables", "imap4flags", "body", "date", "relational"]',
    "if", "elsif", "else", "{", "}", "(", ")", "[", "]", ",", ";", "header", "address", "envelope", "exists",
    "size", ":over", ":under", "1K", "99999999999999999999", "allof", "anyof", "not", "true", "false", ":is",
    ":contains", ":matches", ":value", ":count", '"ge"', ":comparator", '"i;ascii-numeric"', "fileinto",
    "keep", "discard", "stop", "redirect", "reject", "vacation", ":days", "0", "7", "setflag", "hasflag",
    "set", '"${1}"', '"${x}"', '"*"', '"a\\\\"', '"subject"', "text:\n.\n", "text:\nx\n..\n.\n", "# c\n",
    "/* c */", "body", ":raw", ":content", '"text"', "date", "currentdate", '"date"', '"year"', ":zone",
    '"+0100"', "\n", " ", "\u00e9", "\x00",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=40))
def test_compile_never_raises_anything_else(tokens):
    text = " ".join(tokens)
    try:
        script = compile_script(text)
    except SieveError as e:
        assert e.line >= 1 and e.column >= 1
        return
    msg = Message(b"Subject: a\r\nFrom: x@y.example\r\nDate: nonsense\r\n\r\nbody\r\n", "x@y.example", "b@c.example")
    result = run(script, msg)
    assert result.deliveries() is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_compile_arbitrary_text(text):
    try:
        compile_script(text)
    except SieveError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_run_on_arbitrary_messages(data):
    script = compile_script('require ["body", "date", "relational", "variables", "fileinto"];\n'
                            'if anyof (header :matches "subject" "*a*", address :domain "from" "x",\n'
                            '          body :contains "z", date :value "ge" "date" "year" "2000",\n'
                            '          exists "to") { set "s" "${1}"; fileinto "A${s}"; }')
    result = run(script, Message(data, "s@x.example", "r@y.example"))
    assert result.error is None or isinstance(result.error, SieveError)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_managesieve_parser_total(data):
    got, used = parse_command(data)
    assert isinstance(got, (Command, NeedData, BadCommand))
    assert 0 <= used <= len(data)
    if isinstance(got, NeedData):
        assert used == 0
