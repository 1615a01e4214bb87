"""``strip_forged``: the Authentication-Results fields claiming our host name go, the
others (and the body) stay as they were."""

from waypost.smtp.commands.inbound import strip_forged

HOST = "mail.example.test"


def test_only_our_authserv_id_in_the_header_section_is_removed():
    msg = (b"Received: from a by b; Fri, 04 Dec 2026 20:00:00 +0000\r\n"
           b"Authentication-Results: MAIL.example.test.;\r\n\tdkim=pass\r\n"
           b"authentication-results : (c (nested)) mail.example.test; spf=pass\r\n"
           b"Authentication-Results: mail.example.test.evil; spf=pass\r\n"
           b"Authentication-Results: mx.other.test; dmarc=pass\r\n"
           b"Subject: hi\r\n\r\n"
           b"Authentication-Results: mail.example.test; in the body\r\n")
    out, removed = strip_forged(msg, HOST)
    assert removed == 2
    assert out == (b"Received: from a by b; Fri, 04 Dec 2026 20:00:00 +0000\r\n"
                   b"Authentication-Results: mail.example.test.evil; spf=pass\r\n"
                   b"Authentication-Results: mx.other.test; dmarc=pass\r\n"
                   b"Subject: hi\r\n\r\n"
                   b"Authentication-Results: mail.example.test; in the body\r\n")


def test_a_message_without_such_fields_is_the_same_object():
    msg = b"Subject: hi\r\n\r\nbody\r\n"
    out, removed = strip_forged(msg, HOST)
    assert out is msg and removed == 0


def test_a_message_without_a_body_and_a_broken_field():
    msg = b"Authentication-Results:\r\nAuthentication-Results: mail.example.test\r\nX: y\r\n"
    out, removed = strip_forged(msg, HOST)
    assert removed == 1 and out == b"Authentication-Results:\r\nX: y\r\n"
