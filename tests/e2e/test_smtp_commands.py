"""HELP (RFC 5321 §4.1.1.8) and VRFY without an argument (§4.1.1.6), over a real socket."""

from __future__ import annotations

from support.transcript import Transcript


def test_help_lists_our_commands(server):
    for port in (server.smtp_port, server.submission_port):
        with Transcript("127.0.0.1", port) as t:
            t.expect(220)
            r = t.cmd("HELP", 214, "2.0.0")
            text = " ".join(r.lines)
            for verb in ("EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY", "STARTTLS", "AUTH"):
                assert verb in text, (verb, r.lines)
            assert "ETRN" in text if port == server.smtp_port else "ETRN" not in text
            r = t.cmd("HELP MAIL", 214, "2.0.0")
            assert "MAIL FROM:<" in r.text
            t.cmd("HELP rcpt", 214, "2.0.0")
            t.cmd("HELP FROBNICATE", 504, "5.5.4")
            # The session goes on.
            t.cmd("EHLO c", 250)


def test_vrfy_without_argument_is_a_syntax_error(server):
    with Transcript("127.0.0.1", server.smtp_port) as t:
        t.expect(220)
        t.cmd("EHLO c", 250)
        t.cmd("VRFY", 501, "5.5.4")
        t.cmd("VRFY alice", 252, "2.5.2")
        t.cmd("NOOP", 250)
