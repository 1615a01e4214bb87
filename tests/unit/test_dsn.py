"""Delivery status notifications (RFC 3464 / RFC 6522 / RFC 3461 / RFC 6533), read back
with Python's ``email`` package and, where it is lenient, with a strict splitter of our own."""

from __future__ import annotations

import base64
import email
import email.message
import email.utils
import re
from datetime import datetime, timezone
from email import policy
from itertools import chain, repeat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waypost.queue.dsn import (
    MAX_RETURNED,
    RecipientStatus,
    _pick_boundary,
    build_dsn,
    should_notify,
    utf8_addr_xtext,
    xtext_decode,
    xtext_encode,
)

MTA = "mail.example.org"
SENDER = "alice@example.org"
ARRIVAL = 1_700_000_000.0
ATTEMPT = 1_700_003_600.0
RETRY_UNTIL = 1_700_432_000.0
NOW = 1_700_003_700.0

HEADERS = (
    b"Return-Path: <alice@example.org>\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: lunch\r\n"
    b"Message-ID: <lunch-1@example.org>\r\n"
)
ORIGINAL = HEADERS + b"\r\nShall we have lunch on Friday?\r\n\r\n-- \r\nAlice\r\n"

FAILED = RecipientStatus(
    address="bob@example.net", action="failed", status="5.1.1",
    diagnostic="550 5.1.1 <bob@example.net>: no such user", remote_mta="mx.example.net",
    orcpt="rfc822;bob@example.net", last_attempt=ATTEMPT,
)
DELAYED = RecipientStatus(
    address="carol@example.com", action="delayed", status="4.4.1",
    diagnostic="451 4.4.1 try again later", remote_mta="mx.example.com",
    last_attempt=ATTEMPT, will_retry_until=RETRY_UNTIL,
)
DELIVERED = RecipientStatus(
    address="dave@example.org", action="delivered", status="2.0.0", last_attempt=ATTEMPT,
)


def make(recipients=(FAILED,), *, original=ORIGINAL, ret=None, envid=None, **kw) -> bytes:
    kw.setdefault("reporting_mta", MTA)
    kw.setdefault("sender", SENDER)
    kw.setdefault("arrival", ARRIVAL)
    kw.setdefault("now", NOW)
    return build_dsn(recipients=list(recipients), original=original, ret=ret, envid=envid, **kw)


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    assert not msg.defects
    return msg


def split(raw: bytes) -> list[tuple[bytes, bytes]]:
    """The parts of a multipart/report as (header block, body), read strictly: the
    delimiter is CRLF "--" boundary CRLF, the CRLF before it belongs to it (RFC 2046 §5.1.1),
    and the close delimiter ends the message."""
    boundary = parse(raw).get_boundary()
    assert boundary is not None
    delim = b"\r\n--" + boundary.encode() + b"\r\n"
    close = b"\r\n--" + boundary.encode() + b"--\r\n"
    assert raw.endswith(close) and raw.count(close) == 1
    head_and_parts = raw[: -len(close)].split(delim)
    assert b"--" + boundary.encode() not in head_and_parts[0]  # the preamble
    parts = []
    for chunk in head_and_parts[1:]:
        headers, sep, body = chunk.partition(b"\r\n\r\n")
        assert sep
        parts.append((headers + b"\r\n", body))
    return parts


def status_blocks(msg: email.message.EmailMessage) -> list[email.message.Message]:
    part = msg.get_payload()[1]
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return blocks


def date(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


# -- the message as a whole ---------------------------------------------------------------


def test_crlf_everywhere_and_7bit():
    raw = make([FAILED, DELAYED], ret="FULL", envid="E1")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78


def test_top_level_header():
    msg = parse(make())
    assert msg["From"] == f"Mail Delivery System <MAILER-DAEMON@{MTA}>"
    assert msg["To"].addresses[0].addr_spec == SENDER
    assert f"\r\nTo: <{SENDER}>\r\n".encode() in make()
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Date"].datetime == date(NOW)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert re.fullmatch(rf"<[0-9a-f]+\.[0-9a-f]+@{re.escape(MTA)}>", msg["Message-ID"])


def test_message_id_and_boundary_are_unique():
    a, b = parse(make()), parse(make())
    assert a["Message-ID"] != b["Message-ID"]
    assert a.get_boundary() != b.get_boundary()


def test_three_parts_in_order():
    msg = parse(make(ret="FULL"))
    types = [p.get_content_type() for p in msg.get_payload()]
    assert types == ["text/plain", "message/delivery-status", "message/rfc822"]
    assert len(split(make(ret="FULL"))) == 3


def test_boundary_never_occurs_in_a_part():
    tokens = chain(["taken"], repeat("free"))
    assert _pick_boundary([b"x\r\n--taken\r\ny"], lambda: next(tokens)) == "free"
    # An original quoting a boundary of our form is returned unchanged and parsed right.
    original = HEADERS + b"\r\n--=_waypost_000000000000000000000000\r\nnot a part\r\n"
    raw = make(original=original, ret="FULL")
    assert split(raw)[2][1] == original
    assert parse(raw).get_payload()[2].get_payload()[0].get_content() == (
        "--=_waypost_000000000000000000000000\r\nnot a part\r\n")


# -- subject by the worst action ----------------------------------------------------------


@pytest.mark.parametrize(
    ("recipients", "subject"),
    [
        ([DELIVERED, DELAYED, FAILED], "Undelivered Mail Returned to Sender"),
        ([DELIVERED, DELAYED], "Delayed Mail (still being retried)"),
        ([DELIVERED], "Successful Mail Delivery Report"),
        ([RecipientStatus("l@example.org", "expanded", "2.0.0"),
          RecipientStatus("r@example.org", "relayed", "2.0.0")], "Successful Mail Delivery Report"),
    ],
)
def test_subject_follows_worst_action(recipients, subject):
    assert parse(make(recipients))["Subject"] == subject


# -- message/delivery-status --------------------------------------------------------------


def test_per_message_fields():
    raw = make(envid="QQ+2B314159", received_from_mta="client.example.org")
    per_message = status_blocks(parse(raw))[0]
    assert per_message.keys() == ["Original-Envelope-Id", "Reporting-MTA", "Received-From-MTA", "Arrival-Date"]
    # RFC 3461 §6.3 (a): the ENVID value, decoded from xtext.
    assert per_message["Original-Envelope-Id"] == "QQ+314159"
    assert per_message["Reporting-MTA"] == f"dns; {MTA}"
    assert per_message["Received-From-MTA"] == "dns; client.example.org"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]) == date(ARRIVAL)


def test_optional_per_message_fields_absent():
    per_message = status_blocks(parse(make()))[0]
    assert per_message.keys() == ["Reporting-MTA", "Arrival-Date"]


def test_envid_not_printable_when_decoded_stays_xtext():
    # "+0D+0A" would decode to CRLF: never let it into the field.
    raw = make(envid="a+0D+0AX-Injected:+20yes")
    per_message = status_blocks(parse(raw))[0]
    assert per_message["Original-Envelope-Id"] == "a+0D+0AX-Injected:+20yes"
    assert "X-Injected" not in per_message.keys()
    # RFC 3461 §4.4: an ENVID is graphic ASCII; a decoded space keeps the xtext form too.
    assert status_blocks(parse(make(envid="a+20b")))[0]["Original-Envelope-Id"] == "a+20b"


def test_per_recipient_fields_every_one():
    blocks = status_blocks(parse(make([FAILED, DELAYED, DELIVERED])))
    assert len(blocks) == 4
    failed, delayed, delivered = blocks[1:]
    assert failed.keys() == ["Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
                             "Diagnostic-Code", "Last-Attempt-Date"]
    assert failed["Original-Recipient"] == "rfc822; bob@example.net"
    assert failed["Final-Recipient"] == "rfc822; bob@example.net"
    assert failed["Action"] == "failed"
    assert failed["Status"] == "5.1.1"
    assert failed["Remote-MTA"] == "dns; mx.example.net"
    assert failed["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@example.net>: no such user"
    assert email.utils.parsedate_to_datetime(failed["Last-Attempt-Date"]) == date(ATTEMPT)

    assert delayed.keys() == ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code",
                              "Last-Attempt-Date", "Will-Retry-Until"]
    assert delayed["Action"] == "delayed"
    assert delayed["Status"] == "4.4.1"
    assert email.utils.parsedate_to_datetime(delayed["Will-Retry-Until"]) == date(RETRY_UNTIL)

    assert delivered.keys() == ["Final-Recipient", "Action", "Status", "Last-Attempt-Date"]
    assert delivered["Final-Recipient"] == "rfc822; dave@example.org"
    assert delivered["Action"] == "delivered"
    assert delivered["Status"] == "2.0.0"


def test_will_retry_until_only_when_delayed():
    odd = RecipientStatus("x@example.net", "failed", "5.0.0", will_retry_until=RETRY_UNTIL)
    assert "Will-Retry-Until" not in status_blocks(parse(make([odd])))[1]


def test_blocks_separated_by_one_empty_line():
    body = split(make([FAILED, DELAYED]))[1][1]
    assert body.count(b"\r\n\r\n") == 2
    assert body.endswith(b"\r\n") and not body.endswith(b"\r\n\r\n")
    assert body.startswith(b"Reporting-MTA: ")


@pytest.mark.parametrize(
    ("orcpt", "shown"),
    [
        ("rfc822;bob@example.net", "rfc822; bob@example.net"),
        ("rfc822;b+2Bx+3Dy@example.net", "rfc822; b+x=y@example.net"),  # RFC 3461 §4 decoded
        ("RFC822;Bob@Example.NET", "RFC822; Bob@Example.NET"),  # spelling kept
        # decoded to non-ASCII: shown in its xtext form
        ("rfc822;j+C3+B6rg@example.net", "rfc822; j+C3+B6rg@example.net"),
        # RFC 6533 §3: utf-8 type, as utf-8-addr-xtext or (with SMTPUTF8) utf-8-addr-unitext
        ("utf-8;j\\x{F6}rg@example.net", "utf-8; j\\x{F6}rg@example.net"),
        ("utf-8;jörg@example.net", "utf-8; j\\x{F6}rg@example.net"),
        ("utf-8;j\\x{f6}rg+x@example.net", "utf-8; j\\x{F6}rg\\x{2B}x@example.net"),
        ("no-semicolon", "unknown; no-semicolon"),  # RFC 3464 §2.3.1 "unknown"
        ("rfc822;+22a+20+20b+22@example.net", "rfc822; \"a+20+20b\"@example.net"),  # canonical xtext
    ],
)
def test_original_recipient_from_orcpt(orcpt, shown):
    r = RecipientStatus("bob@example.net", "failed", "5.1.1", orcpt=orcpt)
    assert status_blocks(parse(make([r])))[1]["Original-Recipient"] == shown


def test_quoted_ascii_final_recipient_stays_rfc822():
    r = RecipientStatus('"john doe"@example.net', "failed", "5.1.1")
    assert status_blocks(parse(make([r])))[1]["Final-Recipient"] == 'rfc822; "john doe"@example.net'


def test_non_ascii_final_recipient_uses_utf8_type():
    r = RecipientStatus("jörg+tag@exämple.net", "failed", "5.1.1")
    raw = make([r])
    assert raw.isascii()
    msg = parse(raw)
    # RFC 6533 §3: utf-8-addr-xtext, '+' is not a QCHAR either
    assert status_blocks(msg)[1]["Final-Recipient"] == "utf-8; j\\x{F6}rg\\x{2B}tag@ex\\x{E4}mple.net"
    text = msg.get_payload()[0]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "<jörg+tag@exämple.net>" in text.get_content()


def test_multiline_diagnostic_is_one_field_and_folded():
    reply = "550-5.7.1 first line\r\n550-5.7.1 " + "word " * 60 + "\r\n550 5.7.1 last line"
    r = RecipientStatus("bob@example.net", "failed", "5.7.1", diagnostic=reply)
    raw = make([r])
    block = status_blocks(parse(raw))[1]
    expected = "smtp; " + " ".join(reply.split())
    assert block["Diagnostic-Code"] == expected
    assert all(len(line) <= 78 for line in split(raw)[1][1].split(b"\r\n"))


def test_diagnostic_cannot_inject_fields():
    r = RecipientStatus("bob@example.net", "failed", "5.0.0", diagnostic="550 no\r\n\r\nAction: delivered",
                        remote_mta="mx\r\nStatus: 2.0.0")
    blocks = status_blocks(parse(make([r])))
    assert len(blocks) == 2
    assert blocks[1].get_all("Action") == ["failed"]
    assert blocks[1].get_all("Status") == ["5.0.0"]
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 no Action: delivered"


def test_non_ascii_diagnostic_is_escaped_in_status_and_plain_in_text():
    r = RecipientStatus("bob@example.net", "failed", "5.1.1", diagnostic="550 5.1.1 Benutzer unbekannt: bö")
    msg = parse(make([r]))
    assert status_blocks(msg)[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 Benutzer unbekannt: b\\x{F6}"
    assert "Benutzer unbekannt: bö" in msg.get_payload()[0].get_content()


def test_very_long_diagnostic_is_cut_and_lines_stay_short():
    r = RecipientStatus("bob@example.net", "failed", "5.0.0", diagnostic="550 " + "x" * 5000)
    raw = make([r])
    value = status_blocks(parse(raw))[1]["Diagnostic-Code"]
    assert value.endswith("...") and len(value) < 2100
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


# -- the human-readable part --------------------------------------------------------------


def test_text_part_lists_each_recipient_and_reason():
    msg = parse(make([FAILED, DELAYED, DELIVERED]))
    text = msg.get_payload()[0]
    assert text.get_content_type() == "text/plain"
    assert text.get_content_charset() == "us-ascii"
    content = text.get_content()
    assert MTA in content
    for r in (FAILED, DELAYED, DELIVERED):
        assert f"<{r.address}>" in content
        assert f"(status {r.status})" in content
    assert "no such user" in content and "try again later" in content
    assert "mx.example.net" in content
    assert "Header of the original message is attached".lower() in content.lower()


def test_text_part_is_wrapped():
    r = RecipientStatus("bob@example.net", "failed", "5.0.0", diagnostic="550 " + "lorem ipsum " * 40)
    body = split(make([r]))[0][1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


# -- returned content (RFC 3461 §4.3, RFC 6522 §3) ----------------------------------------


def test_ret_full_returns_whole_message_as_message_rfc822():
    raw = make(ret="FULL")
    part = parse(raw).get_payload()[2]
    assert part.get_content_type() == "message/rfc822"
    inner = part.get_payload()[0]
    assert inner["Message-ID"] == "<lunch-1@example.org>"
    assert inner.get_content() == "Shall we have lunch on Friday?\r\n\r\n-- \r\nAlice\r\n"
    assert split(raw)[2][1] == ORIGINAL
    assert "original message is attached" in parse(raw).get_payload()[0].get_content()


def test_ret_is_case_insensitive():
    assert parse(make(ret="full")).get_payload()[2].get_content_type() == "message/rfc822"


@pytest.mark.parametrize("ret", ["HDRS", None])
def test_hdrs_and_default_return_header_only(ret):
    raw = make(ret=ret)
    part = parse(raw).get_payload()[2]
    assert part.get_content_type() == "text/rfc822-headers"
    assert split(raw)[2][1] == HEADERS
    assert "Shall we" not in raw.decode()


def test_full_without_a_failure_returns_header_only():
    raw = make([DELAYED, DELIVERED], ret="FULL")
    assert parse(raw).get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert split(raw)[2][1] == HEADERS


def test_bare_lf_original_is_returned_with_crlf():
    original = ORIGINAL.replace(b"\r\n", b"\n")
    assert split(make(original=original, ret="FULL"))[2][1] == ORIGINAL
    assert split(make(original=original))[2][1] == HEADERS


def test_header_only_original_without_body():
    assert split(make(original=HEADERS.rstrip(b"\r\n"), ret="HDRS"))[2][1] == HEADERS


def test_empty_original_is_not_returned():
    raw = make(original=b"", ret="FULL")
    assert [p.get_content_type() for p in parse(raw).get_payload()] == ["text/plain", "message/delivery-status"]
    assert "not attached" in parse(raw).get_payload()[0].get_content()


def test_size_cap_at_its_edge():
    at_cap = make(ret="FULL", max_returned=len(ORIGINAL))
    assert parse(at_cap).get_payload()[2].get_content_type() == "message/rfc822"
    over = make(ret="FULL", max_returned=len(ORIGINAL) - 1)
    assert parse(over).get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert split(over)[2][1] == HEADERS
    assert "too large" in parse(over).get_payload()[0].get_content()


def test_default_size_cap_is_one_mebibyte():
    assert MAX_RETURNED == 1024 * 1024
    big = HEADERS + b"\r\n" + (b"y" * 998 + b"\r\n") * (MAX_RETURNED // 1000 + 1)
    assert len(big) > MAX_RETURNED
    assert parse(make(original=big, ret="FULL")).get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_header_block_over_cap_is_not_returned():
    raw = make(ret="HDRS", max_returned=len(HEADERS) - 1)
    assert len(parse(raw).get_payload()) == 2
    assert len(parse(make(ret="HDRS", max_returned=len(HEADERS))).get_payload()) == 3


# -- originals that are not 7-bit (RFC 6532 §3.7, RFC 6533 §6.3) --------------------------

UTF8_HEADERS = "From: Jörg <jörg@example.org>\r\nSubject: Grüße\r\n".encode()
UTF8_ORIGINAL = UTF8_HEADERS + "\r\nSchöne Grüße aus Köln\r\n".encode()


def test_utf8_original_in_full_is_base64_message_global():
    raw = make(original=UTF8_ORIGINAL, ret="FULL")
    assert raw.isascii()
    headers, body = split(raw)[2]
    assert b"Content-Type: message/global\r\n" in headers
    assert b"Content-Transfer-Encoding: base64\r\n" in headers
    assert base64.b64decode(body) == UTF8_ORIGINAL
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert parse(raw).get_payload()[2].get_content_type() == "message/global"


def test_utf8_original_headers_only_is_base64_message_global_headers():
    raw = make(original=UTF8_ORIGINAL)
    assert raw.isascii()
    headers, body = split(raw)[2]
    assert b"Content-Type: message/global-headers\r\n" in headers
    assert base64.b64decode(body) == UTF8_HEADERS


def test_8bit_body_ascii_header_full_and_headers_only():
    original = HEADERS + b"\r\n\xe9t\xe9 (latin-1 body)\r\n"
    full = split(make(original=original, ret="FULL"))[2]
    assert b"message/global" in full[0] and base64.b64decode(full[1]) == original
    hdrs = split(make(original=original))[2]
    assert b"text/rfc822-headers" in hdrs[0] and hdrs[1] == HEADERS


def test_long_line_or_nul_original_is_base64():
    for body in (b"z" * 999 + b"\r\n", b"a\0b\r\n"):
        original = HEADERS + b"\r\n" + body
        raw = make(original=original, ret="FULL")
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        headers, encoded = split(raw)[2]
        assert b"message/global" in headers and base64.b64decode(encoded) == original


def test_binary_original_octets_come_back_exactly():
    original = HEADERS + b"\r\n\xff\x00bare\nlf and bare\rcr\r\n"
    assert base64.b64decode(split(make(original=original, ret="FULL"))[2][1]) == original


def test_non_ascii_sender_is_the_only_8bit_line():
    raw = make(sender="jörg@example.org")
    # RFC 6532 §3.2: raw UTF-8 (Python's bytes parser cannot read it; its str parser can).
    as_text = email.message_from_string(raw.decode("utf-8"), policy=policy.default)
    assert as_text["To"].addresses[0].addr_spec == "jörg@example.org"
    non_ascii = [line for line in raw.split(b"\r\n") if not line.isascii()]
    assert non_ascii == ["To: <jörg@example.org>".encode()]


# -- contract ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(recipients=[]),
        dict(sender=""),
        dict(sender="a@b\r\nBcc: x@y"),
        dict(reporting_mta="mail example"),
        dict(reporting_mta=""),
        dict(recipients=[RecipientStatus("b@x", "bounced", "5.0.0")]),
        dict(recipients=[RecipientStatus("b@x", "failed", "550")]),
        dict(recipients=[RecipientStatus("b@x", "failed", "3.0.0")]),
        dict(recipients=[RecipientStatus("b@x\r\n", "failed", "5.0.0")]),
    ],
)
def test_invalid_input_raises(kw):
    kw.setdefault("recipients", [FAILED])
    recipients = kw.pop("recipients")
    with pytest.raises(ValueError):
        make(recipients, **kw)


def test_action_case_is_normalised():
    r = RecipientStatus("b@example.net", "FAILED", "5.0.0")
    assert status_blocks(parse(make([r])))[1]["Action"] == "failed"


# -- RFC 3461 §4.1: NOTIFY ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("notify", "failed", "delayed", "delivered"),
    [
        ("", True, True, False),
        ("NEVER", False, False, False),
        ("SUCCESS", False, False, True),
        ("FAILURE", True, False, False),
        ("DELAY", False, True, False),
        ("SUCCESS,FAILURE", True, False, True),
        ("FAILURE,DELAY", True, True, False),
        ("SUCCESS,FAILURE,DELAY", True, True, True),
        ("success,delay", False, True, True),
        ("DELAY, SUCCESS", False, True, True),
    ],
)
def test_notify_table(notify, failed, delayed, delivered):
    assert should_notify(notify, "failed") is failed
    assert should_notify(notify, "delayed") is delayed
    assert should_notify(notify, "delivered") is delivered
    # RFC 3461 §6.2: "relayed" and "expanded" reports answer SUCCESS.
    assert should_notify(notify, "relayed") is delivered
    assert should_notify(notify, "expanded") is delivered


@pytest.mark.parametrize("notify", ["NEVER,SUCCESS", "ALWAYS", "SUCCESS,,FAILURE", ","])
def test_notify_malformed(notify):
    with pytest.raises(ValueError):
        should_notify(notify, "failed")


def test_notify_unknown_action():
    with pytest.raises(ValueError):
        should_notify("", "bounced")


# -- RFC 3461 §4: xtext; RFC 6533 §3 ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "xtext"),
    [
        ("", ""),
        ("abc@example.org", "abc@example.org"),
        ("a+b", "a+2Bb"),
        ("a=b", "a+3Db"),
        ("a b", "a+20b"),
        ("\x7f\r\n", "+7F+0D+0A"),
        ("é", "+C3+A9"),
    ],
)
def test_xtext_vectors(text, xtext):
    assert xtext_encode(text) == xtext
    assert xtext_decode(xtext) == text


def test_xtext_decode_accepts_lower_case_hex():
    assert xtext_decode("a+2bb") == "a+b"


@pytest.mark.parametrize("bad", ["a b", "a=b", "+", "+2", "+GG", "é", "a\r\n"])
def test_xtext_decode_rejects_malformed(bad):
    with pytest.raises(ValueError):
        xtext_decode(bad)


@given(st.text())
def test_xtext_round_trip_text(text):
    encoded = xtext_encode(text)
    assert re.fullmatch(r"([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*", encoded)
    assert xtext_decode(encoded) == text


@given(st.binary())
def test_xtext_round_trip_octets(octets):
    # Octets that are not UTF-8 survive decoding (as lone surrogates) and encoding.
    canonical = "".join(chr(b) if 0x21 <= b <= 0x7E and b not in b"+=" else f"+{b:02X}" for b in octets)
    assert xtext_decode(canonical).encode("utf-8", "surrogateescape") == octets
    assert xtext_encode(xtext_decode(canonical)) == canonical


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E)))
def test_xtext_encode_of_canonical_decode_is_identity(text):
    encoded = xtext_encode(text)
    assert xtext_encode(xtext_decode(encoded)) == encoded


def test_utf8_addr_xtext():
    assert utf8_addr_xtext("jörg@example.org") == "j\\x{F6}rg@example.org"
    assert utf8_addr_xtext("a+b=c\\d@x") == "a\\x{2B}b\\x{3D}c\\x{5C}d@x"
    assert utf8_addr_xtext("用户@例子.广告") == "\\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{5E7F}\\x{544A}"
