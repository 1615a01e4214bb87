"""SMTP receiving through the real listener: transcripts (RFC 5321) and smtplib."""

from __future__ import annotations

import email
import email.policy
import smtplib

import pytest

from support.server import wait_for
from support.tls import client_context
from support.transcript import Transcript


def smtp(server) -> Transcript:
    t = Transcript("127.0.0.1", server.smtp_port)
    t.expect(220)
    return t


def test_ehlo_advertises_the_extensions(server):
    with smtp(server) as t:
        r = t.cmd("EHLO client.example", 250)
        caps = {line.split(" ")[0] for line in r.lines[1:]}
        assert {"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "STARTTLS", "DSN"} <= caps
        size = next(line for line in r.lines if line.startswith("SIZE "))
        assert int(size.split()[1]) == server.settings.smtp.max_message_size


def test_local_delivery_with_received_and_return_path(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as c:
        c.ehlo("client.example")
        code, msg = c.mail("sender@outside.example")
        assert code == 250
        code, msg = c.rcpt("Alice@EXAMPLE.TEST")
        assert code == 250 and msg.startswith(b"2.1.5")
        code, msg = c.data(b"Subject: hello\r\nFrom: sender@outside.example\r\n\r\nbody line\r\n.dot line\r\n")  # smtplib stuffs it
        assert code == 250 and msg.startswith(b"2.0.0") and b"queued as" in msg
    files = wait_for(lambda: server.messages("alice@example.test"), what="delivery to alice")
    raw = files[0].read_bytes()
    # Return-Path (RFC 5321 §4.4), then X-Original-To and Delivered-To (as Postfix adds them).
    assert raw.startswith(b"Return-Path: <sender@outside.example>\r\nX-Original-To: Alice@EXAMPLE.TEST\r\n"
                          b"Delivered-To: alice@example.test\r\nReceived: from client.example ([127.0.0.1])")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "hello"
    assert b"\r\n.dot line\r\n" in raw  # dot-unstuffed (RFC 5321 §4.5.2)
    assert "for <Alice@EXAMPLE.TEST>" in msg["Received"]
    wait_for(lambda: server.queue_ids() == [], what="the queue to empty")
    server.expect_log(r"event=received .*rcpt=<Alice@EXAMPLE.TEST>")
    server.expect_log(r"event=delivered .*rcpt=<Alice@EXAMPLE.TEST>")


def test_unknown_local_user_is_refused_at_rcpt(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250, "2.1.0")
        t.cmd("RCPT TO:<nobody@example.test>", 550, "5.1.1")
        t.cmd("RCPT TO:<alice@example.test>", 250, "2.1.5")
        t.cmd("DATA", 354)
        t.send("Subject: x\r\n\r\nhi\r\n.")
        t.expect(250, "2.0.0")
    wait_for(lambda: server.messages("alice@example.test"))


def test_relaying_denied_for_untrusted_clients(instance):
    instance.configure(relay={"trusted_networks": []})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.start()
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<victim@elsewhere.example>", 554, "5.7.1")
        t.cmd("RCPT TO:<alice@example.test>", 250)
    instance.expect_log(r"event=rcpt-refused .*rcpt=<victim@elsewhere.example>")


def test_sequence_errors(server):
    with smtp(server) as t:
        t.cmd("MAIL FROM:<a@b.example>", 503, "5.5.1")  # before EHLO
        t.cmd("EHLO c", 250)
        t.cmd("RCPT TO:<alice@example.test>", 503, "5.5.1")  # before MAIL
        t.cmd("DATA", 503, "5.5.1")
        t.cmd("MAIL FROM:<a@b.example>", 250)
        t.cmd("MAIL FROM:<a@b.example>", 503, "5.5.1")  # nested
        t.cmd("DATA", 503, "5.5.1")  # no recipient
        t.cmd("RSET", 250, "2.0.0")
        t.cmd("RCPT TO:<alice@example.test>", 503, "5.5.1")  # RSET cleared MAIL
        t.cmd("NOOP", 250, "2.0.0")
        t.cmd("VRFY alice", 252)
        t.cmd("FOOBAR", 500, "5.5.1")
        t.cmd("QUIT", 221, "2.0.0")


def test_malformed_addresses_and_parameters(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:a@b.example", 501, "5.5.4")  # no angle brackets
        t.cmd("MAIL FROM:<a@@b>", 501, "5.1.7")
        t.cmd("MAIL FROM:<a@b.example> FOO=BAR", 555, "5.5.4")
        t.cmd("MAIL FROM:<a@b.example> BODY=BINARYMIME", 501, "5.5.4")
        t.cmd("MAIL FROM:<a@b.example> RET=MAYBE", 501, "5.5.4")
        t.cmd("MAIL FROM:<a@b.example> SIZE=abc", 501, "5.5.4")
        t.cmd("MAIL FROM:<a@b.example> ENVID=" + "x" * 101, 501, "5.5.4")
        t.cmd("MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159 BODY=8BITMIME", 250)
        t.cmd("RCPT TO:<alice@example.test> NOTIFY=SOMETIMES", 501, "5.5.4")
        t.cmd("RCPT TO:<alice@example.test> NOTIFY=NEVER,SUCCESS", 501, "5.5.4")
        t.cmd("RCPT TO:<alice@example.test> ORCPT=nonsense", 501, "5.5.4")
        t.cmd("RCPT TO:<alice@example.test> XYZ=1", 555, "5.5.4")
        t.cmd("RCPT TO:<alice@@example.test>", 501, "5.1.3")
        t.cmd("RCPT TO:<>", 501, "5.5.4")
        t.cmd("RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice+40example.test", 250, "2.1.5")
        t.cmd("RCPT TO:<@relay.example:bob@example.test>", 250, "2.1.5")  # source route ignored (RFC 5321 §C)
        t.cmd("QUIT", 221)


def test_null_sender_is_accepted(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<>", 250)
        t.cmd("RCPT TO:<bob@example.test>", 250)
        t.cmd("DATA", 354)
        t.send("Subject: bounce\r\n\r\nreport\r\n.")
        t.expect(250)
    files = wait_for(lambda: server.messages("bob@example.test"))
    assert files[0].read_bytes().startswith(b"Return-Path: <>\r\n")


def test_pipelining(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.send_raw(b"MAIL FROM:<p@outside.example>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\n"
                   b"RCPT TO:<bob@example.test>\r\nDATA\r\n")
        t.expect(250)
        t.expect(250)
        t.expect(550, "5.1.1")
        t.expect(250)
        t.expect(354)
        t.send_raw(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nMAIL FROM:<p2@outside.example>\r\nRCPT TO:<bob@example.test>\r\n"
                   b"DATA\r\n")
        t.expect(250, "2.0.0")
        t.expect(250)
        t.expect(250)
        t.expect(354)
        t.send_raw(b"Subject: second\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        t.expect(250)
        t.expect(221)
    wait_for(lambda: len(server.messages("bob@example.test")) == 2)
    assert len(server.messages("alice@example.test")) == 1


def test_recipient_limit(instance):
    instance.configure(smtp={"max_recipients": 3})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.start()
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        for _ in range(3):
            t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 452, "4.5.3")


def test_message_size_limits(instance):
    instance.configure(smtp={"max_message_size": 10000})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.start()
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example> SIZE=10001", 552, "5.3.4")
        t.cmd("MAIL FROM:<x@outside.example> SIZE=500", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        for _ in range(200):
            t.send_raw(b"x" * 98 + b"\r\n")
        t.send(".")
        t.expect(552, "5.3.4")
        # The session goes on: a small message is still accepted.
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send("Subject: small\r\n\r\nok\r\n.")
        t.expect(250)
    files = wait_for(lambda: instance.messages("alice@example.test"))
    assert len(files) == 1 and b"Subject: small" in files[0].read_bytes()


def test_overlong_command_line(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("NOOP " + "a" * 5000, 500, "5.5.2")
        t.cmd("MAIL FROM:<" + "a" * 2000 + "@b.example>", 500, "5.5.2")
        t.cmd("NOOP", 250)


def test_bare_lf_cr_and_nul_in_commands(server):
    with smtp(server) as t:
        t.send_raw(b"EHLO c\n")
        t.expect(500, "5.5.2")
        t.send_raw(b"NOOP\rX\r\n")
        t.expect(500, "5.5.2")
        t.send_raw(b"NO\x00OP\r\n")
        t.expect(500, "5.5.2")
        t.send_raw("NOOP é\r\n".encode("latin-1"))
        t.expect(500, "5.5.2")
        t.cmd("EHLO c", 250)


@pytest.mark.parametrize("body, code, enhanced", [
    (b"Subject: x\r\n\r\nbare\nLF\r\n", 554, "5.6.0"),
    (b"Subject: x\r\n\r\nbare\rCR\r\n", 554, "5.6.0"),
    (b"Subject: x\r\n\r\nNUL\x00byte\r\n", 554, "5.6.0"),
    ("Subject: x\r\n\r\n8-bit é without 8BITMIME\r\n".encode("utf-8"), 554, "5.6.1"),
    (b"Subject: x\r\n\r\n" + b"y" * 1200 + b"\r\n", 554, "5.6.0"),
])
def test_bad_message_data_is_refused_and_session_goes_on(server, body, code, enhanced):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send_raw(body + b".\r\n")
        t.expect(code, enhanced)
        t.cmd("MAIL FROM:<x@outside.example> BODY=8BITMIME", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send_raw("Subject: ok\r\n\r\n8-bit é declared\r\n.\r\n".encode("utf-8"))
        t.expect(250)
    files = wait_for(lambda: server.messages("alice@example.test"))
    assert len(files) == 1 and "8-bit é declared".encode() in files[0].read_bytes()


def test_pipelined_garbage_then_too_many_errors(instance):
    instance.configure(smtp={"max_errors": 5})
    instance.start()
    with smtp(instance) as t:
        t.send_raw(b"".join(b"GARBAGE %d\r\n" % i for i in range(10)))
        for _ in range(5):
            t.expect(500, "5.5.1")
        t.expect(421, "4.7.0")
        assert t.closed()
    # The server still serves others.
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)


def test_client_vanishing_mid_data_leaves_nothing(server):
    t = smtp(server)
    t.cmd("EHLO c", 250)
    t.cmd("MAIL FROM:<x@outside.example>", 250)
    t.cmd("RCPT TO:<alice@example.test>", 250)
    t.cmd("DATA", 354)
    t.send_raw(b"Subject: cut\r\n\r\nhalf a message")
    t.close()
    wait_for(lambda: server.log_lines(r"event=data-aborted"), what="the aborted DATA to be noticed")
    # A complete message afterwards is the only one delivered.
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send("Subject: whole\r\n\r\nok\r\n.")
        t.expect(250)
    files = wait_for(lambda: server.messages("alice@example.test"))
    assert len(files) == 1 and b"Subject: whole" in files[0].read_bytes()
    wait_for(lambda: server.queue_ids() == [], what="the delivery to be recorded")  # the file comes first
    from waypost.queue.manager import cluster_node
    from waypost.queue.spool import node_dir

    assert list((node_dir(server.data / "spool", cluster_node(server.settings)) / "tmp").iterdir()) == []


def test_command_timeout_closes_with_421(instance):
    instance.configure(smtp={"command_timeout": 0.5})
    instance.start()
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)
        t.expect(421, "4.4.2")
        assert t.closed()


def test_data_timeout(instance):
    instance.configure(smtp={"data_timeout": 0.5})
    instance.ok("account", "add", "alice@example.test", "--no-password")
    instance.start()
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send_raw(b"Subject: slow\r\n")
        t.expect(421, "4.4.2")
        assert t.closed()
    assert instance.queue_ids() == []
    assert instance.messages("alice@example.test") == []


def test_starttls_then_mail(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as c:
        c.ehlo("c")
        code, _ = c.starttls(context=client_context())  # checks the certificate for 127.0.0.1
        assert code == 220
        c.ehlo("c")
        assert not c.has_extn("starttls")
        c.sendmail("x@outside.example", ["bob@example.test"], b"Subject: tls\r\n\r\nsecret\r\n")
    files = wait_for(lambda: server.messages("bob@example.test"))
    received = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)["Received"]
    assert " with ESMTPS " in received and "using TLS" in received


def test_plaintext_pipelined_after_starttls_is_discarded(server):
    # RFC 3207 §4.2 / CVE-2011-0411: commands injected before the TLS handshake are dropped.
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.send_raw(b"STARTTLS\r\nRSET\r\n")
        t.expect(220)
        t.sock = client_context().wrap_socket(t.sock, server_hostname=server.hostname)
        t.cmd("EHLO c", 250)  # the first reply over TLS answers EHLO, not the injected RSET


def test_utf8_addresses_need_smtputf8(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<jörg@outside.example>", 553, "5.6.7")
        t.cmd("MAIL FROM:<jörg@outside.example> SMTPUTF8", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send("Subject: ünïcode\r\n\r\nhallo\r\n.")
        t.expect(250)
    files = wait_for(lambda: server.messages("alice@example.test"))
    assert " with UTF8SMTP " in files[0].read_text("utf-8")


def test_dot_unstuffing_removes_the_first_dot_of_every_line(server):
    # RFC 5321 §4.5.2: the receiver deletes the first character of a line that is a period.
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd("RCPT TO:<alice@example.test>", 250)
        t.cmd("DATA", 354)
        t.send_raw(b"..first\r\nSubject: dots\r\n\r\n..stuffed\r\n.unstuffed by a sloppy client\r\nplain\r\n.\r\n")
        t.expect(250)
    raw = wait_for(lambda: server.messages("alice@example.test"))[0].read_bytes()
    assert b"\r\n.first\r\n" in raw
    assert raw.endswith(b"\r\n.stuffed\r\nunstuffed by a sloppy client\r\nplain\r\n")


def test_size_parameter_needs_ascii_digits(server):
    with smtp(server) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example> SIZE=\u00b2", 501, "5.5.4")
        t.cmd("MAIL FROM:<x@outside.example> SIZE=\u0661\u0662", 501, "5.5.4")


def test_guessing_unknown_users_counts_as_errors(instance):
    instance.configure(smtp={"max_errors": 3})
    instance.start()
    with smtp(instance) as t:
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        for name in ("a", "b", "c"):
            t.cmd(f"RCPT TO:<{name}@example.test>", 550, "5.1.1")
        t.cmd("RCPT TO:<d@example.test>", 421, "4.7.0")
        assert t.closed()
