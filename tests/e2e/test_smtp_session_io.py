"""The SMTP adapter's handling of the connection itself (waypost.smtp.server): what a
client pipelines before it half-closes is answered; nothing after QUIT is read."""

from __future__ import annotations

import socket

from support.transcript import Transcript


def test_commands_sent_before_a_half_close_are_answered(server):
    with Transcript("127.0.0.1", server.smtp_port) as t:
        t.expect(220)
        t.send_raw(b"EHLO c\r\nMAIL FROM:<x@outside.example>\r\nRCPT TO:<alice@example.test>\r\nRSET\r\nQUIT\r\n")
        t.sock.shutdown(socket.SHUT_WR)
        t.expect(250)
        t.expect(250, "2.1.0")
        t.expect(250, "2.1.5")
        t.expect(250, "2.0.0")
        t.expect(221, "2.0.0")
        assert t.closed()


def test_nothing_after_quit_is_read(server):
    with Transcript("127.0.0.1", server.smtp_port) as t:
        t.expect(220)
        t.send_raw(b"EHLO c\r\nQUIT\r\nNOOP\r\nNOOP\r\n")
        t.expect(250)
        t.expect(221, "2.0.0")
        assert t.closed()
        assert t.buf == b""  # no reply to the NOOPs
