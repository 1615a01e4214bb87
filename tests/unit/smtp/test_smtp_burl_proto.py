"""BURL (RFC 4468) in the sans-IO SMTP core: the command's grammar, where the state
table admits it, and the EHLO keyword of each listener."""

from __future__ import annotations

from waypost.smtp.proto import Burl, Mode, Params, State, parse_burl, refusal
from waypost.smtp.replies import R


def test_burl_grammar() -> None:
    url = "imap://joe@example.com/INBOX/;uid=20;urlauth=submit+joe:INTERNAL:" + "ab" * 20
    assert parse_burl(url) == Burl(url, False)
    assert parse_burl(url + " LAST") == Burl(url, True)
    assert parse_burl(url + " last") == Burl(url, True)
    for bad in (None, "", "LAST", "no-scheme", url + " FIRST", "imap://a b"):
        reply = parse_burl(bad)
        assert not isinstance(reply, Burl) and (reply.code, reply.status) == (501, "5.5.4"), bad


def test_burl_is_a_submission_command_inside_a_transaction() -> None:
    sub = Mode.SUBMISSION
    assert refusal("BURL", State.RCPT, sub, True) is None
    assert refusal("BURL", State.BDAT, sub, True) is None  # mixes with BDAT (RFC 4468 §3)
    assert refusal("BURL", State.RCPT, sub, False) == R.AUTH_REQUIRED
    assert refusal("BURL", State.GREETED, sub, True) == R.NEED_MAIL
    assert refusal("BURL", State.MAIL, sub, True) == R.NEED_RCPT
    assert refusal("BURL", State.CONNECTED, sub, True) == R.NEED_HELO
    for mode in (Mode.SMTP, Mode.LMTP, Mode.ODMR):
        reply = refusal("BURL", State.RCPT, mode, True)
        assert reply is not None and reply.code == 502


def test_ehlo_keyword() -> None:
    sub = Params(mode=Mode.SUBMISSION, burl=True)
    assert "BURL" in sub.extensions(tls_offered=False, auth=["PLAIN"])
    assert "BURL imap" in sub.extensions(tls_offered=False, auth=["PLAIN"], authenticated=True)
    assert "BURL" in sub.verbs(tls_offered=False)
    for p in (Params(mode=Mode.SMTP, burl=True), Params(mode=Mode.SUBMISSION)):
        assert not any(k.startswith("BURL") for k in p.extensions(tls_offered=False, auth=[], authenticated=True))
