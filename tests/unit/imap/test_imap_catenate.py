"""RFC 4469 CATENATE: the §4 example parses, server-relative IMAP URLs (RFC 5092)
are read, and BADURL serialises."""

from __future__ import annotations

import pytest

from waypost.imap.proto import (
    Append,
    BadCommand,
    BadUrl,
    CatUrl,
    ImapUrl,
    NeedMore,
    Section,
    Tagged,
    parse_command,
    parse_imap_url,
)

SEP = b"\r\n--------------030308070208000400050907\r\n"  # the 42-octet TEXT of the example
END = b"\r\n--------------030308070208000400050907--\r\n"  # 44 octets


def test_rfc4469_example_parses() -> None:
    line = (
        b'A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"'
        b" TEXT {42}\r\n" + SEP
        + b' URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"'
        b' URL "/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1" TEXT {42}\r\n' + SEP
        + b' URL "/Drafts;UIDVALIDITY=385759045/;UID=30" TEXT {44}\r\n' + END + b")\r\n"
    )
    assert len(SEP) == 42 and len(END) == 44
    cmd, rest = parse_command(line)
    assert rest == b"" and isinstance(cmd, Append)
    assert cmd.flags == ("\\Seen", "\\Draft", "$MDNSent")
    assert cmd.catenate == (
        CatUrl("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER"), SEP,
        CatUrl("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.MIME"),
        CatUrl("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1"), SEP,
        CatUrl("/Drafts;UIDVALIDITY=385759045/;UID=30"), END,
    )
    # the client waits for "+" after each TEXT header; a bad part is refused before it
    with pytest.raises(NeedMore):
        parse_command(b'A003 APPEND Drafts CATENATE (URL "/Drafts/;UID=1" TEXT {42}\r\n')
    with pytest.raises(BadCommand):
        parse_command(b'A003 APPEND Drafts CATENATE (BOGUS "x" TEXT {42}\r\n')


def test_server_relative_urls() -> None:
    assert parse_imap_url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER") == ImapUrl(
        "Drafts", 20, 385759045, Section(text="HEADER"))
    assert parse_imap_url("/inbox/;UID=3/;SECTION=1.2.MIME/;PARTIAL=10.5") == ImapUrl(
        "INBOX", 3, None, Section((1, 2), "MIME"), (10, 5))
    assert parse_imap_url("/Archive/2026/;UID=7") == ImapUrl("Archive/2026", 7)
    assert parse_imap_url("/Caf%C3%A9/;UID=1").mailbox == "Caf&AOk-"  # UTF-8 in the URL, UTF-7 on the wire
    for bad in ("imap://joe@example.com/INBOX/;UID=1", "/INBOX/;UID=0", "/INBOX", "/INBOX/;UID=1/;SECTION=BOGUS",
                "/INBOX/;UID=1/;SECTION=1.HEADER.FIELDS"):
        with pytest.raises(ValueError):
            parse_imap_url(bad)


def test_badurl_code() -> None:
    # RFC 4469 §5 (the A004 example)
    no = Tagged("A004", "NO", "CATENATE append has failed, one message expunged",
                BadUrl("/INBOX;UIDVALIDITY=785799047/;UID=9999"))
    assert no.encode() == (b"A004 NO [BADURL /INBOX;UIDVALIDITY=785799047/;UID=9999] "
                           b"CATENATE append has failed, one message expunged\r\n")
