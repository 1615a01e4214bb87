"""CHUNKING / BDAT (RFC 3030) and the SMTP smuggling variants, over a real socket."""

from __future__ import annotations

import pytest

from support.server import wait_for
from support.transcript import Transcript


def smtp(server) -> Transcript:
    t = Transcript("127.0.0.1", server.smtp_port)
    t.expect(220)
    return t


def envelope(t: Transcript) -> None:
    t.cmd("EHLO c", 250)
    t.cmd("MAIL FROM:<x@outside.example>", 250, "2.1.0")
    t.cmd("RCPT TO:<alice@example.test>", 250, "2.1.5")


def test_bdat_chunks_make_one_message_taken_as_sent(server):
    first = b"Subject: chunked\r\n\r\n.a line with a dot stays as it is\r\n"
    second = b"last line\r\n"
    with smtp(server) as t:
        r = t.cmd("EHLO c", 250)
        assert "CHUNKING" in r.lines
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        # Pipelined (RFC 3030 §4.2): both chunks in one write.
        t.send_raw(b"BDAT %d\r\n" % len(first) + first + b"BDAT %d LAST\r\n" % len(second) + second)
        assert f"{len(first)} octets received" in t.expect(250, "2.0.0").text
        assert "queued as" in t.expect(250, "2.0.0").text
    files = wait_for(lambda: server.messages("alice@example.test"))
    raw = files[0].read_bytes()
    assert raw.endswith(first + second)
    assert b"with ESMTP id" in raw


def test_bdat_with_wrong_sizes(instance):
    instance.configure(smtp={"max_message_size": 1000})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.start()
    with smtp(instance) as t:
        envelope(t)
        for bad in ("BDAT", "BDAT x", "BDAT -5", "BDAT 5 NOTLAST", "BDAT 99999999999999999999"):
            t.cmd(bad, 501, "5.5.4")
        # More than the message size: the chunk is read and dropped (its octets are
        # not commands), the transaction is over; a chunk pipelined behind it too.
        t.send_raw(b"BDAT 1200\r\n" + b"MAIL FROM:<a@b.example>\r\n" * 48 + b"BDAT 4 LAST\r\nQUIT")
        t.expect(552, "5.3.4")
        t.expect(503, "5.5.1")
        # A chunk shorter than announced: the server waits for the rest.
        envelope_again = "MAIL FROM:<x@outside.example>"
        t.cmd(envelope_again, 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.send_raw(b"BDAT 34 LAST\r\nSubject: short\r\n")
        t.send_raw(b"\r\nfifteen octets\r\n")
        t.expect(250, "2.0.0")
        t.cmd("NOOP", 250)
    files = wait_for(lambda: instance.messages("alice@example.test"))
    assert len(files) == 1 and files[0].read_bytes().endswith(b"Subject: short\r\n\r\nfifteen octets\r\n")


def test_bdat_mixed_with_data_and_last_twice(server):
    with smtp(server) as t:
        envelope(t)
        t.send_raw(b"BDAT 10\r\nSubject: x")
        t.expect(250, "2.0.0")
        t.cmd("DATA", 503, "5.5.1")    # RFC 3030 §2: not in a BDAT transaction
        t.send_raw(b"BDAT 3 LAST\r\n\r\nx")
        t.expect(503, "5.5.1")        # the transaction was ended: no sender
        t.cmd("RCPT TO:<alice@example.test>", 503, "5.5.1")
        # Now a good one, then LAST again: the second LAST has no transaction.
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.send_raw(b"BDAT 17 LAST\r\nSubject: once\r\n\r\n")
        t.expect(250, "2.0.0")
        t.send_raw(b"BDAT 5 LAST\r\nagain")
        t.expect(503, "5.5.1")
        t.cmd("RSET", 250)
    files = wait_for(lambda: server.messages("alice@example.test"))
    assert len(files) == 1 and b"Subject: once" in files[0].read_bytes()


def test_commands_pipelined_after_bdat(server):
    with smtp(server) as t:
        envelope(t)
        body = b"Subject: piped\r\n\r\nRSET\r\n"
        t.send_raw(b"BDAT %d LAST\r\n" % len(body) + body +
                   b"MAIL FROM:<y@outside.example>\r\nRCPT TO:<bob@example.test>\r\nBDAT 0 LAST\r\nQUIT\r\n")
        t.expect(250, "2.0.0")  # the message (the RSET inside it is text)
        t.expect(250, "2.1.0")
        t.expect(250, "2.1.5")
        t.expect(250, "2.0.0")  # an empty message for bob
        t.expect(221, "2.0.0")
    alice = wait_for(lambda: server.messages("alice@example.test"))
    assert alice[0].read_bytes().endswith(body)
    wait_for(lambda: server.messages("bob@example.test"))


SMUGGLED = b"MAIL FROM:<evil@outside.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n"


@pytest.mark.parametrize("end", [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n"])
def test_smuggling_variants_neither_end_nor_split_a_message(server, end):
    with smtp(server) as t:
        envelope(t)
        t.cmd("DATA", 354)
        t.send_raw(b"Subject: first\r\n\r\nhello" + end + SMUGGLED + b"\r\n.\r\nNOOP\r\n")
        # One message, refused whole for its bare CR/LF; the smuggled commands were text.
        t.expect(554, "5.6.0")
        t.expect(250, "2.0.0")  # the NOOP
        t.cmd("QUIT", 221)
    server.expect_log(r"event=data-refused .*reply=\"554 5.6.0\"")
    assert server.messages("bob@example.test") == []
    assert server.messages("alice@example.test") == []
    assert server.queue_ids() == []
