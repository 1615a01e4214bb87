"""Delivery Status Notifications: the message the queue sends back to a sender.

Pure functions, no I/O: the queue decides *whether* a recipient gets reported
(``should_notify``, RFC 3461 §4.1) and hands the outcomes to ``build_dsn``, which returns
the complete report (RFC 3464 inside an RFC 6522 ``multipart/report``) as bytes ready to be
spooled.  This module never decides what happened to a recipient, and never sends.

Decisions, each with its reason:

* **The report is 7-bit.**  Every byte of it is ASCII with CRLF line ends and lines of at
  most 998 octets (RFC 5322 §2.1.1), so it can be relayed to any server, with or without
  8BITMIME or SMTPUTF8.  The one exception is a sender address that is itself non-ASCII:
  its ``To:`` field carries it as UTF-8 (RFC 6532 §3.2), and such a report can only be
  delivered with SMTPUTF8 anyway (RFC 6531).  Non-ASCII text goes in
  quoted-printable (the human part), in base64 (returned content), or in the
  ``\\x{HEX}`` form of RFC 6533 §3 (the machine-readable part).
* **Returned content** (RFC 3461 §4.3, RFC 6522 §3).  The whole original is returned only
  when RET=FULL was given, the report contains a ``failed`` recipient (RET applies to
  failure reports), and the original is no larger than ``max_returned``.  Otherwise only
  its header block is returned.  Without RET the MTA may choose (RFC 3461 §4.3); we
  return the headers: they identify the message, and a bounce that repeats the whole
  message doubles the cost of backscatter and resends content the sender already has.
  A header block larger than ``max_returned`` (or an empty original) is not returned at
  all: the third part of a multipart/report is optional (RFC 6522 §3).
* **Originals that are not 7-bit** (8-bit or UTF-8 text, NUL, bare CR, lines over 998
  octets) cannot be carried as ``message/rfc822``, which allows no transfer encoding but
  7bit/8bit/binary (RFC 2046 §5.2.1).  They are returned as ``message/global`` (whole
  message) or ``message/global-headers`` (header block), base64-encoded, which RFC 6532
  §3.7 and RFC 6533 §6.3 allow.  The octets come back exactly; a reader that does not
  know these types still offers them as an attachment (RFC 2046 §5.2.4).
* **ENVID and ORCPT** arrive xtext-encoded (RFC 3461 §4).  RFC 3461 §6.3 (a) and (d) put
  their values in Original-Envelope-Id and Original-Recipient, so they are shown decoded.
  A decoded value that is not graphic ASCII (which RFC 3461 §4.4 forbids for ENVID, and
  which could not be written in a field unchanged) is shown in its xtext form instead.
"""

from __future__ import annotations

import base64
import email.utils
import quopri
import re
import secrets
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence

__all__ = [
    "ACTIONS",
    "MAX_RETURNED",
    "RecipientStatus",
    "build_dsn",
    "should_notify",
    "utf8_addr_xtext",
    "xtext_decode",
    "xtext_encode",
]

#: Largest original (octets) returned whole; a larger one is returned as headers only.
MAX_RETURNED = 1024 * 1024
#: Longest Diagnostic-Code text kept (characters); the rest is cut with "...".
MAX_DIAGNOSTIC = 2048
#: RFC 5322 §2.1.1: a line SHOULD be at most 78 characters; we fold there.
FOLD_AT = 78
#: A run of non-space characters longer than this is split so that no line can reach the
#: 998-octet limit of RFC 5322 §2.1.1 (a field name and ": " must fit too).
MAX_WORD = 900
#: Width of the human-readable explanation.
TEXT_WIDTH = 76

# RFC 3464 §2.3.3: action-value = "failed" / "delayed" / "delivered" / "relayed" / "expanded"
ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
# RFC 3461 §4.1: which NOTIFY keyword asks for a report with this action.  RFC 3461 §6.2
# reports "relayed" (to a non-DSN system) and "expanded" (by a list or alias) for SUCCESS.
_NOTIFY_KEYWORD = {
    "failed": "FAILURE",
    "delayed": "DELAY",
    "delivered": "SUCCESS",
    "relayed": "SUCCESS",
    "expanded": "SUCCESS",
}
# The worst action decides the subject: a failure outranks a delay outranks a success.
_RANK = {"failed": 2, "delayed": 1, "delivered": 0, "relayed": 0, "expanded": 0}
_SUBJECT = {
    2: "Undelivered Mail Returned to Sender",
    1: "Delayed Mail (still being retried)",
    0: "Successful Mail Delivery Report",
}

# RFC 3463 §2: status-code = class "." subject "." detail
#   class = "2"/"4"/"5";  subject = 1*3digit;  detail = 1*3digit
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# RFC 3461 §4:  xtext   = *( xchar / hexchar )
#               xchar   = any ASCII CHAR between "!" (33) and "~" (126) inclusive,
#                         except for "+" and "=".
#               hexchar = ASCII "+" immediately followed by two upper case
#                         hexadecimal digits
# Decoding also accepts lower-case digits (be liberal in what you accept).
_XTEXT_TOKEN = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x7e]+|\+[0-9A-Fa-f]{2}")
_XCHAR = frozenset(range(0x21, 0x7F)) - {ord("+"), ord("=")}
# RFC 3464 §2.1: address-type = atom (RFC 822 atom: no specials, space or CTL).
_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$")
_CRLF_ANY = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What became of one recipient, as one per-recipient block reports it (RFC 3464 §2.3)."""

    address: str  # final recipient, as delivered to (RFC 3464 §2.3.2)
    action: str  # one of ACTIONS (RFC 3464 §2.3.3)
    status: str  # enhanced status code, "5.1.1" (RFC 3463, RFC 3464 §2.3.4)
    diagnostic: str = ""  # the remote reply, "550 5.1.1 no such user" (RFC 3464 §2.3.6)
    remote_mta: str = ""  # host name of the remote MTA (RFC 3464 §2.3.5)
    orcpt: str = ""  # the RFC 3461 ORCPT parameter as received: "rfc822;a+2Bb@c"
    last_attempt: float | None = None  # epoch seconds (RFC 3464 §2.3.7)
    will_retry_until: float | None = None  # epoch seconds; "delayed" only (RFC 3464 §2.3.9)


# -- RFC 3461 §4.1: NOTIFY ----------------------------------------------------------------


def should_notify(notify: str, action: str) -> bool:
    """Whether a recipient's NOTIFY parameter asks for a report of this action.

    ``notify`` is the parameter as received: ``""`` when absent, ``"NEVER"``, or a comma
    list of ``SUCCESS``, ``FAILURE``, ``DELAY`` (any case).  Without NOTIFY we report
    failures and delays but not successes, as if NOTIFY=FAILURE,DELAY (RFC 3461 §4.1).
    Raises ``ValueError`` for an unknown action or a NOTIFY value RFC 3461 §4.1 does not
    allow (an unknown keyword, or NEVER combined with another).
    """
    keyword = _NOTIFY_KEYWORD.get(action)
    if keyword is None:
        raise ValueError(f"unknown DSN action {action!r}")
    # RFC 3461 §4.1: notify-esmtp-value = "NEVER" / 1#notify-list-element
    #                notify-list-element = "SUCCESS" / "FAILURE" / "DELAY"
    value = notify.strip().upper()
    if not value:
        return keyword in ("FAILURE", "DELAY")
    words = [w.strip() for w in value.split(",")]
    if words == ["NEVER"]:
        return False
    if not all(w in ("SUCCESS", "FAILURE", "DELAY") for w in words):
        raise ValueError(f"invalid NOTIFY value {notify!r}")
    return keyword in words


# -- RFC 3461 §4: xtext -------------------------------------------------------------------


def xtext_encode(text: str) -> str:
    """Encode ``text`` (its UTF-8 octets) as xtext: ``"a+b c"`` → ``"a+2Bb+20c"``.

    Lone surrogates (from ``xtext_decode`` of octets that are not UTF-8) turn back into
    the octets they stand for, so ``xtext_encode(xtext_decode(x)) == x`` for canonical
    xtext ``x``.
    """
    out: list[str] = []
    for octet in text.encode("utf-8", "surrogateescape"):
        out.append(chr(octet) if octet in _XCHAR else f"+{octet:02X}")
    return "".join(out)


def xtext_decode(value: str) -> str:
    """Decode xtext into text: ``"a+2Bb"`` → ``"a+b"``; raises ``ValueError`` if malformed.

    The decoded octets are read as UTF-8; octets that are not UTF-8 become lone
    surrogates (``surrogateescape``) so that nothing is lost.
    """
    octets = bytearray()
    pos = 0
    while pos < len(value):
        m = _XTEXT_TOKEN.match(value, pos)
        if m is None:
            raise ValueError(f"invalid xtext at offset {pos}: {value!r}")
        token = m.group()
        if token[0] == "+":
            octets.append(int(token[1:], 16))
        else:
            octets += token.encode("ascii")
        pos = m.end()
    return octets.decode("utf-8", "surrogateescape")


# -- RFC 6533 §3: the 7-bit form of a UTF-8 address ---------------------------------------

# RFC 6533 §3:
#   utf-8-addr-xtext    = 1*(QCHAR / EmbeddedUnicodeChar)
#   QCHAR               = %x21-2a / %x2c-3c / %x3e-5b / %x5d-7e
#                         ; ASCII printable characters except CTLs, SP, '\', '+', '='
#   EmbeddedUnicodeChar = %x5C.78 "{" HEXPOINT "}"   ; "\x{" hex "}"
_QCHAR = frozenset(range(0x21, 0x7F)) - {ord("+"), ord("="), ord("\\")}
# An EmbeddedUnicodeChar as it may already stand in a utf-8 ORCPT value.
_EMBEDDED = re.compile(r"(\\x\{[0-9A-Fa-f]{2,6}\})")


def _embedded(ch: str) -> str:
    return f"\\x{{{ord(ch):02X}}}"


def utf8_addr_xtext(address: str) -> str:
    """The utf-8-addr-xtext form of an address (RFC 6533 §3): ``jörg@x`` → ``j\\x{F6}rg@x``."""
    return "".join(ch if ord(ch) in _QCHAR else _embedded(ch) for ch in address)


# -- field values -------------------------------------------------------------------------


def _printable_ascii(text: str) -> bool:
    return all(0x20 <= ord(ch) <= 0x7E for ch in text)


def _graphic_ascii(text: str) -> bool:
    return bool(text) and all(0x21 <= ord(ch) <= 0x7E for ch in text)


def _seven_bit(text: str, limit: int | None = None) -> str:
    """``text`` as one line of printable ASCII for a field of message/delivery-status.

    Line breaks and other white space become single spaces (multi-line SMTP replies read
    as one line); other characters outside printable ASCII take the ``\\x{HEX}`` form of
    RFC 6533 §3, which keeps them readable and loses nothing.
    """
    chars = []
    for ch in text:
        if ch.isspace() and ord(ch) < 0x80:
            chars.append(" ")
        elif 0x21 <= ord(ch) <= 0x7E:
            chars.append(ch)
        else:
            chars.append(_embedded(ch))
    line = " ".join("".join(chars).split())
    if limit is not None and len(line) > limit:
        line = line[: limit - 3].rstrip() + "..."
    return line


def _shown_xtext(raw: str) -> str:
    """An xtext value (ENVID, ORCPT address) as a DSN field shows it: decoded when the
    result is graphic ASCII (RFC 3461 §6.3, §4.4), else in its canonical xtext form, so
    that no octet is lost or changed (a space would be folded away, a CRLF would end the
    field)."""
    try:
        decoded = xtext_decode(raw)
    except ValueError:
        # Not xtext at all (the listener checks, so only from a damaged queue entry).
        return xtext_encode(raw)
    return decoded if _graphic_ascii(decoded) else xtext_encode(decoded)


def _original_recipient(orcpt: str) -> str:
    """The Original-Recipient value for an ORCPT parameter (RFC 3461 §6.3 (d)).

    RFC 3464 §2.3.1: original-recipient-field = "Original-Recipient" ":"
                                                address-type ";" generic-address
    """
    atype, sep, value = orcpt.partition(";")
    atype = atype.strip()
    if not sep or not _ATOM.match(atype):
        # RFC 3464 §2.3.1: "unknown" when the type cannot be determined.
        return f"unknown; {xtext_encode(orcpt)}"
    if atype.lower() == "utf-8":
        # RFC 6533 §3: a utf-8 address arrives as utf-8-addr-xtext or, with SMTPUTF8, as
        # utf-8-addr-unitext (raw UTF-8); message/delivery-status takes the xtext form.
        # Neither is RFC 3461 xtext-encoded, so it is not xtext-decoded here.
        # Its "\\x{HEX}" sequences are kept; anything else not a QCHAR is escaped.
        pieces = _EMBEDDED.split(value)
        shown = "".join(f"\\x{{{p[3:-1].upper()}}}" if i % 2 else utf8_addr_xtext(p)
                        for i, p in enumerate(pieces))
        return f"{atype}; {shown}"
    return f"{atype}; {_shown_xtext(value)}"


def _final_recipient(address: str) -> str:
    # RFC 3464 §2.3.2: final-recipient-field = "Final-Recipient" ":"
    #                                          address-type ";" generic-address
    # RFC 6533 §3: a non-ASCII address has type "utf-8", here in utf-8-addr-xtext form.
    if _printable_ascii(address):
        return f"rfc822; {address}"
    return f"utf-8; {utf8_addr_xtext(address)}"


def _split_long_words(value: str) -> list[str]:
    words: list[str] = []
    for word in value.split(" "):
        while len(word) > MAX_WORD:
            words.append(word[:MAX_WORD])
            word = word[MAX_WORD:]
        if word:
            words.append(word)
    return words


def _field(name: str, value: str) -> bytes:
    """One header field, folded (RFC 5322 §2.2.3) before spaces that are already there, so
    that unfolding gives ``value`` back.  ``value`` is printable ASCII with single spaces."""
    words = _split_long_words(value)
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _date(epoch: float) -> str:
    # RFC 5322 §3.3 date-time, in UTC; RFC 3464 §2.1.1 uses it for every date field.
    return email.utils.format_datetime(datetime.fromtimestamp(epoch, timezone.utc))


def _mta_name(name: str) -> str:
    return _seven_bit(name, 255)


def _check(recipient: RecipientStatus) -> str:
    action = recipient.action.lower()
    if action not in ACTIONS:
        raise ValueError(f"unknown DSN action {recipient.action!r} for <{recipient.address}>")
    if not _STATUS.match(recipient.status):
        raise ValueError(f"invalid enhanced status {recipient.status!r} for <{recipient.address}>")
    if not recipient.address or any(ch in recipient.address for ch in "\r\n"):
        raise ValueError(f"invalid final recipient {recipient.address!r}")
    return action


# -- the three parts ----------------------------------------------------------------------


def _delivery_status(
    reporting_mta: str,
    recipients: Sequence[tuple[str, RecipientStatus]],
    envid: str | None,
    arrival: float,
    received_from_mta: str,
) -> bytes:
    """The message/delivery-status body (RFC 3464 §2.1):

    delivery-status-content = per-message-fields 1*( CRLF per-recipient-fields )
    """
    # RFC 3464 §2.2: per-message-fields = [ original-envelope-id-field CRLF ]
    #     reporting-mta-field CRLF [ dsn-gateway-field CRLF ]
    #     [ received-from-mta-field CRLF ] [ arrival-date-field CRLF ] *( extension-field CRLF )
    block = bytearray()
    if envid:  # RFC 3461 §6.3 (a): present exactly when ENVID was given
        block += _field("Original-Envelope-Id", _seven_bit(_shown_xtext(envid)))
    block += _field("Reporting-MTA", f"dns; {_mta_name(reporting_mta)}")  # §2.2.2
    if received_from_mta:
        block += _field("Received-From-MTA", f"dns; {_mta_name(received_from_mta)}")  # §2.2.4
    block += _field("Arrival-Date", _date(arrival))  # §2.2.5
    out = bytes(block)
    for action, r in recipients:
        # RFC 3464 §2.3: per-recipient-fields = [ original-recipient-field CRLF ]
        #     final-recipient-field CRLF action-field CRLF status-field CRLF
        #     [ remote-mta-field CRLF ] [ diagnostic-code-field CRLF ]
        #     [ last-attempt-date-field CRLF ] [ final-log-id-field CRLF ]
        #     [ will-retry-until-field CRLF ] *( extension-field CRLF )
        block = bytearray(b"\r\n")
        if r.orcpt:  # RFC 3461 §6.3 (d): present exactly when ORCPT was given
            block += _field("Original-Recipient", _seven_bit(_original_recipient(r.orcpt)))
        block += _field("Final-Recipient", _final_recipient(r.address))
        block += _field("Action", action)
        block += _field("Status", r.status)
        if r.remote_mta:
            block += _field("Remote-MTA", f"dns; {_mta_name(r.remote_mta)}")
        if r.diagnostic.strip():
            # RFC 3464 §2.3.6: diagnostic-code-field = "Diagnostic-Code" ":"
            #                                          diagnostic-type ";" *text
            block += _field("Diagnostic-Code", f"smtp; {_seven_bit(r.diagnostic, MAX_DIAGNOSTIC)}")
        if r.last_attempt is not None:
            block += _field("Last-Attempt-Date", _date(r.last_attempt))
        if r.will_retry_until is not None and action == "delayed":
            # RFC 3464 §2.3.9: only in a "delayed" report.
            block += _field("Will-Retry-Until", _date(r.will_retry_until))
        out += bytes(block)
    return out


def _human_line(text: str) -> str:
    """``text`` on one line for the explanation: white space collapsed, controls escaped."""
    return " ".join("".join(ch if ch.isprintable() or ch.isspace() else _embedded(ch) for ch in text).split())


_WHAT = {
    "failed": "delivery failed permanently",
    "delayed": "delivery is delayed; the mail system is still trying",
    "delivered": "delivered",
    "relayed": "passed on to a system that sends no further reports",
    "expanded": "delivered to a list or alias, which passed it on",
}
_INTRO = {
    2: (
        "Your message could not be delivered to one or more of its recipients. "
        "This is a permanent error; the mail system will not try again."
    ),
    1: (
        "Your message has not been delivered yet to one or more of its recipients. "
        "The mail system will keep trying; you do not need to send it again."
    ),
    0: "This is the delivery report you asked for.",
}
_RETURNED_NOTE = {
    "full": "The original message is attached.",
    "headers": "The header of the original message is attached.",
    "headers-large": "The original message is too large to return; its header is attached.",
    "none": "The original message is not attached.",
}


def _explanation(reporting_mta: str, worst: int, recipients: Sequence[tuple[str, RecipientStatus]],
                 returned: str) -> str:
    """The first part (RFC 6522 §3): a human-readable account, as lines without ends."""
    wrap = textwrap.TextWrapper(width=TEXT_WIDTH, break_long_words=True, break_on_hyphens=False)
    indent = textwrap.TextWrapper(width=TEXT_WIDTH, initial_indent="    ", subsequent_indent="      ",
                                  break_long_words=True, break_on_hyphens=False)
    lines = wrap.wrap(f"This is the mail system at {_human_line(reporting_mta)}.") + [""]
    lines += wrap.wrap(_INTRO[worst]) + [""]
    for action, r in recipients:
        lines += wrap.wrap(f"<{_human_line(r.address)}>: {_WHAT[action]} (status {r.status}).")
        if r.remote_mta:
            lines += indent.wrap(f"Remote server: {_human_line(r.remote_mta)}")
        if r.diagnostic.strip():
            lines += indent.wrap(f"It said: {_human_line(r.diagnostic)}")
        if action == "delayed" and r.will_retry_until is not None:
            lines += indent.wrap(f"The mail system will keep trying until {_date(r.will_retry_until)}.")
        lines.append("")
    lines += wrap.wrap(_RETURNED_NOTE[returned])
    return "\r\n".join(lines) + "\r\n"


def _text_part(text: str) -> tuple[list[str], bytes]:
    data = text.encode("utf-8")
    if data.isascii():
        return ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"], data
    # RFC 2045 §6.7; quopri breaks lines at 76 characters with soft line breaks.
    encoded = quopri.encodestring(data.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"], encoded


def _is_7bit(data: bytes) -> bool:
    """RFC 2045 §2.7 7bit data: ASCII, no NUL, lines of at most 998 octets.  ``data`` has
    CRLF line ends already."""
    if not data.isascii() or b"\0" in data:
        return False
    return all(len(line) <= 998 for line in data.split(b"\r\n"))


def _base64(data: bytes) -> bytes:
    # RFC 2045 §6.8: lines of at most 76 characters.
    encoded = base64.b64encode(data)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def _header_block(normalized: bytes) -> bytes:
    """The header of a message (RFC 5322 §2.1): everything before the first empty line,
    ending with CRLF; the whole text when there is no body."""
    if normalized.startswith(b"\r\n"):
        return b""
    end = normalized.find(b"\r\n\r\n")
    if end < 0:
        return normalized if normalized.endswith(b"\r\n") else normalized + b"\r\n"
    return normalized[: end + 2]


def _returned_part(original: bytes, want_full: bool, max_returned: int) -> tuple[str, list[str], bytes] | None:
    """The third part (RFC 6522 §3) as (note key, part header lines, body), or None."""
    if not original:
        return None
    normalized = _CRLF_ANY.sub(b"\r\n", original)
    too_large = len(original) > max_returned
    if want_full and not too_large:
        if _is_7bit(normalized):
            return "full", ["Content-Type: message/rfc822", "Content-Description: Original Message"], normalized
        # RFC 6532 §3.7: message/global may use any transfer encoding; base64 carries the
        # original octets exactly, bare CR or LF included.
        return "full", ["Content-Type: message/global", "Content-Description: Original Message",
                        "Content-Transfer-Encoding: base64"], _base64(original)
    headers = _header_block(normalized)
    if not headers or len(headers) > max_returned:
        return None
    note = "headers-large" if want_full else "headers"
    if _is_7bit(headers):
        # RFC 6522 §4: text/rfc822-headers.
        return note, ["Content-Type: text/rfc822-headers", "Content-Description: Original Message Headers"], headers
    # RFC 6533 §6.3: message/global-headers for a header block with UTF-8 in it.
    return note, ["Content-Type: message/global-headers", "Content-Description: Original Message Headers",
                  "Content-Transfer-Encoding: base64"], _base64(headers)


def _random_boundary() -> str:
    # "=_" cannot occur in quoted-printable or base64 text (RFC 2045 §6.7, §6.8).
    return f"=_waypost_{secrets.token_hex(12)}"


def _pick_boundary(bodies: Iterable[bytes], make: Callable[[], str] = _random_boundary) -> str:
    """A boundary that occurs in none of the bodies (RFC 2046 §5.1.1: the delimiter "MUST
    NOT appear inside any of the encapsulated parts")."""
    contents = list(bodies)
    while True:
        boundary = make()
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in body for body in contents):
            return boundary


def _message_id(reporting_mta: str) -> str:
    return f"<{time.time_ns():x}.{secrets.token_hex(8)}@{reporting_mta}>"


# -- the report ---------------------------------------------------------------------------


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    recipients: Sequence[RecipientStatus],
    original: bytes,
    ret: str | None,
    envid: str | None,
    arrival: float,
    received_from_mta: str = "",
    now: float | None = None,
    max_returned: int = MAX_RETURNED,
) -> bytes:
    """A complete delivery status notification to ``sender``, as message bytes with CRLF.

    ``reporting_mta`` is our host name (Reporting-MTA, Message-ID, From);
    ``sender`` is the envelope sender of ``original`` and must not be empty (RFC 5321
    §4.5.5: a message with a null reverse-path is never answered with a DSN); ``ret``
    and ``envid`` are the RFC 3461 RET and ENVID parameters as received (ENVID still
    xtext-encoded), None when absent; ``arrival`` and ``now`` are epoch seconds.  The
    caller has already applied ``should_notify`` to each recipient.  Which part of the
    original comes back, and how, is described in the module docstring.

    Raises ``ValueError`` for no recipients, an unknown action, a malformed status, or
    a sender, recipient or host name containing a line break.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    if not sender:
        raise ValueError("no DSN is sent for a null reverse-path (RFC 5321 §4.5.5)")
    if any(ch in sender for ch in "\r\n<>"):
        raise ValueError(f"invalid sender {sender!r}")
    if not reporting_mta or not _printable_ascii(reporting_mta) or " " in reporting_mta:
        raise ValueError(f"invalid reporting MTA name {reporting_mta!r}")
    checked = [(_check(r), r) for r in recipients]
    worst = max(_RANK[action] for action, _ in checked)

    # RFC 3461 §4.3: FULL "requests that the entire message be returned in any 'failed'
    # DSN"; without RET, or for a report with no failure, we return the header only.
    want_full = (ret or "").strip().upper() == "FULL" and any(a == "failed" for a, _ in checked)
    returned = _returned_part(original, want_full, max_returned)

    text_headers, text_body = _text_part(
        _explanation(reporting_mta, worst, checked, returned[0] if returned else "none"))
    status_body = _delivery_status(reporting_mta, checked, envid, arrival, received_from_mta)
    parts: list[tuple[list[str], bytes]] = [
        (text_headers + ["Content-Description: Notification"], text_body),
        (["Content-Type: message/delivery-status", "Content-Description: Delivery report"], status_body),
    ]
    if returned is not None:
        parts.append((returned[1], returned[2]))
    boundary = _pick_boundary(body for _, body in parts)

    date = now if now is not None else time.time()
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        f"Subject: {_SUBJECT[worst]}",
        f"Date: {_date(date)}",
        f"Message-ID: {_message_id(reporting_mta)}",
        "Auto-Submitted: auto-replied",  # RFC 3834 §5
        "MIME-Version: 1.0",
        # RFC 6522 §3: multipart/report; report-type=delivery-status (RFC 3464 §2)
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 7bit",
    ]
    out = bytearray("\r\n".join(head).encode("utf-8") + b"\r\n\r\n")
    out += b"This is a MIME-encapsulated message.\r\n"
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    for headers, body in parts:
        # RFC 2046 §5.1.1: the CRLF before "--boundary" belongs to the delimiter.
        out += delimiter + "\r\n".join(headers).encode("ascii") + b"\r\n\r\n" + body
    out += f"\r\n--{boundary}--\r\n".encode("ascii")
    return bytes(out)
