"""RFC 3501 §6, §7 and §8 examples, literally.

Every client line of the command examples parses to the expected typed command;
every server line serialises byte for byte.  Where the RFC breaks a long line
"for editorial clarity" the expected bytes join it as the ABNF requires (one SP
between items, none between the addresses of an address list).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from waypost.imap.proto import (
    Address,
    All,
    And,
    Append,
    Att,
    BadCommand,
    Authenticate,
    BodySection,
    BodySectionItem,
    BodyStructureItem,
    Capability,
    CapabilityData,
    Check,
    Close,
    Code,
    Codes,
    Command,
    ContinueRequest,
    Copy,
    Create,
    DateKey,
    Delete,
    Envelope,
    EnvelopeField,
    EnvelopeItem,
    Examine,
    ExistsData,
    Expunge,
    ExpungeData,
    Fetch,
    FetchData,
    FlagsData,
    FlagsItem,
    HasFlag,
    InternalDateItem,
    List,
    ListData,
    Login,
    Logout,
    Lsub,
    LsubData,
    MultiPart,
    NeedMore,
    Noop,
    Not,
    PermanentFlags,
    Reason,
    RecentData,
    Rename,
    Search,
    SearchData,
    Select,
    Section,
    SequenceSet,
    SinglePart,
    SizeItem,
    StartTls,
    Status,
    StatusData,
    Store,
    Subscribe,
    Tagged,
    Text,
    UidItem,
    UidNext,
    UidValidity,
    Unseen,
    Unsubscribe,
    Untagged,
    parse_command,
    parse_sasl_response,
)

APPEND_MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.COM>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.COM>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)

S = SequenceSet.of

# (client octets, the command they must parse to).  RFC 3501 section in the comment.
CLIENT_EXAMPLES: list[tuple[bytes, Command]] = [
    # §6.1.1 CAPABILITY, §6.2.1 STARTTLS
    (b"abcd CAPABILITY\r\n", Capability("abcd")),
    (b"efgh STARTTLS\r\n", StartTls("efgh")),
    (b"ijkl CAPABILITY\r\n", Capability("ijkl")),
    # §6.1.2 NOOP
    (b"a002 NOOP\r\n", Noop("a002")),
    (b"a047 NOOP\r\n", Noop("a047")),
    # §6.1.3 LOGOUT
    (b"A023 LOGOUT\r\n", Logout("A023")),
    # §6.2.1
    (b"a001 CAPABILITY\r\n", Capability("a001")),
    (b"a002 STARTTLS\r\n", StartTls("a002")),
    (b"a003 CAPABILITY\r\n", Capability("a003")),
    (b"a004 LOGIN joe password\r\n", Login("a004", "joe", "password")),
    # §6.2.2 AUTHENTICATE
    (b"A001 AUTHENTICATE GSSAPI\r\n", Authenticate("A001", "GSSAPI")),
    # §6.2.3 LOGIN
    (b"a001 LOGIN SMITH SESAME\r\n", Login("a001", "SMITH", "SESAME")),
    # §6.3.1 SELECT, §6.3.2 EXAMINE
    (b"A142 SELECT INBOX\r\n", Select("A142", "INBOX")),
    (b"A932 EXAMINE blurdybloop\r\n", Examine("A932", "blurdybloop")),
    # §6.3.3 CREATE
    (b"A003 CREATE owatagusiam/\r\n", Create("A003", "owatagusiam/")),
    (b"A004 CREATE owatagusiam/blurdybloop\r\n", Create("A004", "owatagusiam/blurdybloop")),
    # §6.3.4 DELETE
    (b'A682 LIST "" *\r\n', List("A682", "", ("*",))),
    (b"A683 DELETE blurdybloop\r\n", Delete("A683", "blurdybloop")),
    (b"A684 DELETE foo\r\n", Delete("A684", "foo")),
    (b"A685 DELETE foo/bar\r\n", Delete("A685", "foo/bar")),
    (b'A686 LIST "" *\r\n', List("A686", "", ("*",))),
    (b"A687 DELETE foo\r\n", Delete("A687", "foo")),
    (b'A82 LIST "" *\r\n', List("A82", "", ("*",))),
    (b'A86 LIST "" %\r\n', List("A86", "", ("%",))),
    # §6.3.5 RENAME
    (b"A683 RENAME blurdybloop sarasoop\r\n", Rename("A683", "blurdybloop", "sarasoop")),
    (b"A684 RENAME foo zowie\r\n", Rename("A684", "foo", "zowie")),
    (b'Z432 LIST "" *\r\n', List("Z432", "", ("*",))),
    (b"Z433 RENAME INBOX old-mail\r\n", Rename("Z433", "INBOX", "old-mail")),
    # §6.3.6 SUBSCRIBE, §6.3.7 UNSUBSCRIBE
    (b"A002 SUBSCRIBE #news.comp.mail.mime\r\n", Subscribe("A002", "#news.comp.mail.mime")),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n", Unsubscribe("A002", "#news.comp.mail.mime")),
    # §6.3.8 LIST
    (b'A101 LIST "" ""\r\n', List("A101", "", ("",))),
    (b'A102 LIST #news.comp.mail.misc ""\r\n', List("A102", "#news.comp.mail.misc", ("",))),
    (b'A103 LIST /usr/staff/jones ""\r\n', List("A103", "/usr/staff/jones", ("",))),
    (b"A202 LIST ~/Mail/ %\r\n", List("A202", "~/Mail/", ("%",))),
    # §6.3.9 LSUB
    (b'A002 LSUB "#news." "comp.mail.*"\r\n', Lsub("A002", "#news.", "comp.mail.*")),
    (b'A003 LSUB "#news." "comp.%"\r\n', Lsub("A003", "#news.", "comp.%")),
    # §6.3.10 STATUS
    (b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n", Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES"))),
    # §6.3.11 APPEND
    (
        b"A003 APPEND saved-messages (\\Seen) {310}\r\n" + APPEND_MESSAGE + b"\r\n",
        Append("A003", "saved-messages", APPEND_MESSAGE, ("\\Seen",)),
    ),
    # §6.4.1 CHECK, §6.4.2 CLOSE, §6.4.3 EXPUNGE
    (b"FXXZ CHECK\r\n", Check("FXXZ")),
    (b"A341 CLOSE\r\n", Close("A341")),
    (b"A202 EXPUNGE\r\n", Expunge("A202")),
    # §6.4.4 SEARCH
    (
        b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
        Search(
            "A282",
            And((HasFlag("\\Flagged"), DateKey("SINCE", date(1994, 2, 1)), Not(EnvelopeField("FROM", "Smith")))),
        ),
    ),
    (b'A283 SEARCH TEXT "string not in mailbox"\r\n', Search("A283", Text("string not in mailbox"))),
    (b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX\r\n", Search("A284", Text("XXXXXX"), "UTF-8")),
    # §6.4.5 FETCH
    (
        b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
        Fetch("A654", S((2, 4)), (Att.FLAGS, BodySection(Section((), "HEADER.FIELDS", ("DATE", "FROM"))))),
    ),
    # §6.4.6 STORE
    (b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n", Store("A003", S((2, 4)), ("\\Deleted",), "+")),
    # §6.4.7 COPY
    (b"A003 COPY 2:4 MEETING\r\n", Copy("A003", S((2, 4)), "MEETING")),
    # §6.4.8 UID
    (
        b"A999 UID FETCH 4827313:4828442 FLAGS\r\n",
        Fetch("A999", S((4827313, 4828442)), (Att.FLAGS,), uid=True),
    ),
    # §6.5.1 X<atom>: a441 CAPABILITY (A442 XPIG-LATIN is in test_unknown_x_command)
    (b"a441 CAPABILITY\r\n", Capability("a441")),
    # §7.1.1 OK, §7.1.2 NO, §7.1.3 BAD
    (b"A001 LOGIN fred blurdybloop\r\n", Login("A001", "fred", "blurdybloop")),
    (b"A222 COPY 1:2 owatagusiam\r\n", Copy("A222", S((1, 2)), "owatagusiam")),
    (b"A223 COPY 3:200 blurdybloop\r\n", Copy("A223", S((3, 200)), "blurdybloop")),
    (b"A443 EXPUNGE\r\n", Expunge("A443")),
    # §7.5 literals in LOGIN
    (b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n", Login("A001", "FRED FOOBAR", "fat man")),
    # §8 sample connection
    (b"a001 login mrc secret\r\n", Login("a001", "mrc", "secret")),
    (b"a002 select inbox\r\n", Select("a002", "INBOX")),
    (
        b"a003 fetch 12 full\r\n",
        Fetch(
            "a003",
            S(12),
            (Att.FLAGS, Att.INTERNALDATE, Att.RFC822_SIZE, Att.ENVELOPE, Att.BODY),
            macro="FULL",
        ),
    ),
    (b"a004 fetch 12 body[header]\r\n", Fetch("a004", S(12), (BodySection(Section((), "HEADER")),))),
    (b"a005 store 12 +flags \\deleted\r\n", Store("a005", S(12), ("\\Deleted",), "+")),
    (b"a006 logout\r\n", Logout("a006")),
]


@pytest.mark.parametrize(("line", "expected"), CLIENT_EXAMPLES, ids=[c[0][:40].decode("latin-1") for c in CLIENT_EXAMPLES])
def test_client_example_parses(line: bytes, expected: Command) -> None:
    command, rest = parse_command(line)
    assert command == expected
    assert rest == b""


def test_client_example_leaves_the_next_command() -> None:
    command, rest = parse_command(b"a001 login mrc secret\r\na002 select inbox\r\n")
    assert command == Login("a001", "mrc", "secret")
    assert parse_command(rest) == (Select("a002", "INBOX"), b"")


def test_append_literal_asks_for_continuation_first() -> None:
    """§6.3.11: the client sends {310}, then waits for "+ Ready for literal data"."""
    head = b"A003 APPEND saved-messages (\\Seen) {310}\r\n"
    with pytest.raises(NeedMore) as more:
        parse_command(head)
    assert more.value.continuation_required
    assert more.value.literal_size == 310
    assert more.value.literal_offset == len(head)
    assert more.value.tag == "A003"


def test_login_literals_ask_for_two_continuations() -> None:
    """§7.5: "C: A001 LOGIN {11}" / "S: + Ready..." / "C: FRED FOOBAR {7}" / "S: + ..."."""
    first = b"A001 LOGIN {11}\r\n"
    second = first + b"FRED FOOBAR {7}\r\n"
    for buf in (first, second):
        with pytest.raises(NeedMore) as more:
            parse_command(buf)
        assert more.value.continuation_required
        assert more.value.literal_offset == len(buf)


def test_authenticate_gssapi_exchange() -> None:
    """§6.2.2: the client's base64 lines (editorial breaks removed) and its empty line."""
    first = (
        b"YIIB+wYJKoZIhvcSAQICAQBuggHqMIIB5qADAgEFoQMCAQ6iBwMFACAAAACjggEmYYIBIjCCAR6gAwIBBaESGxB1Lndhc2hpbmd0"
        b"b24uZWR1oi0wK6ADAgEDoSQwIhsEaW1hcBsac2hpdmFtcy5jYWMud2FzaGluZ3Rvbi5lZHWjgdMwgdCgAwIBAaEDAgEDooHDBIHA"
        b"cS1GSa5b+fXnPZNmXB9SjL8Ollj2SKyb+3S0iXMljen/jNkpJXAleKTz6BQPzj8duz8EtoOuNfKgweViyn/9B9bccy1uuAE2HI0y"
        b"C/PHXNNU9ZrBziJ8Lm0tTNc98kUpjXnHZhsMcz5Mx2GR6dGknbI0iaGcRerMUsWOuBmKKKRmVMMdR9T3EZdpqsBd7jZCNMWotjhi"
        b"vd5zovQlFqQ2Wjc2+y46vKP/iXxWIuQJuDiisyXF0Y8+5GTpALpHDc1/pIGmMIGjoAMCAQGigZsEgZg2on5mSuxoDHEA1w9bcW9n"
        b"FdFxDKpdrQhVGVRDIzcCMCTzvUboqb5KjY1NJKJsfjRQiBYBdENKfzK+g5DlV8nrw81uOcP8NOQCLR5XkoMHC0Dr/80ziQzbNqhx"
        b"O6652Npft0LQwJvenwDI13YxpwOdMXzkWZN/XrEqOWp6GCgXTBvCyLWLlWnbaUkZdEYbKHBPjd8t/1x5Yg=="
    )
    response, rest = parse_sasl_response(first + b"\r\n")
    # a GSSAPI token: DER tag 0x60, length 0x01fb after a 4-octet header
    assert response.data is not None and response.data[:4] == b"\x60\x82\x01\xfb"
    assert len(response.data) == 4 + 0x1FB
    assert rest == b""
    empty, _ = parse_sasl_response(b"\r\n")
    assert empty.data == b""
    last, _ = parse_sasl_response(b"YDMGCSqGSIb3EgECAgIBAAD/////3LQBHXTpFfZgrejpLlLImPwkhbfa2QteAQAgAG1yYwE=\r\n")
    assert last.data is not None and last.data[0] == 0x60 and len(last.data) == 2 + last.data[1]


def test_unknown_x_command() -> None:
    """§6.5.1: we implement no X commands, so A442 XPIG-LATIN is A442 BAD."""
    with pytest.raises(BadCommand) as bad:
        parse_command(b"A442 XPIG-LATIN\r\n")
    assert bad.value.tag == "A442" and bad.value.reason is Reason.UNKNOWN_COMMAND
    assert bad.value.reply().encode().startswith(b"A442 BAD ")


def test_blurdybloop_is_refused_before_the_literal() -> None:
    """§7.5: "C: A044 BLURDYBLOOP {102856}" / "S: A044 BAD No such command": no "+"."""
    line = b"A044 BLURDYBLOOP {102856}\r\n"
    with pytest.raises(BadCommand) as bad:
        parse_command(line)
    assert bad.value.tag == "A044"
    assert bad.value.reason is Reason.UNKNOWN_COMMAND
    assert bad.value.discard == len(line)
    assert bad.value.skipper is None


# -- server responses -----------------------------------------------------------------

MINUS_0700 = timezone(-timedelta(hours=7))

SERVER_EXAMPLES = [
    # §6.1.1
    (CapabilityData(("IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "LOGINDISABLED")), b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI LOGINDISABLED\r\n"),
    (Tagged("abcd", "OK", "CAPABILITY completed"), b"abcd OK CAPABILITY completed\r\n"),
    (Tagged("efgh", "OK", "STARTLS completed"), b"efgh OK STARTLS completed\r\n"),
    (CapabilityData(("IMAP4rev1", "AUTH=GSSAPI", "AUTH=PLAIN")), b"* CAPABILITY IMAP4rev1 AUTH=GSSAPI AUTH=PLAIN\r\n"),
    # §6.1.2
    (Tagged("a002", "OK", "NOOP completed"), b"a002 OK NOOP completed\r\n"),
    (ExpungeData(22), b"* 22 EXPUNGE\r\n"),
    (ExistsData(23), b"* 23 EXISTS\r\n"),
    (RecentData(3), b"* 3 RECENT\r\n"),
    (FetchData(14, (FlagsItem(("\\Seen", "\\Deleted")),)), b"* 14 FETCH (FLAGS (\\Seen \\Deleted))\r\n"),
    (Tagged("a047", "OK", "NOOP completed"), b"a047 OK NOOP completed\r\n"),
    # §6.1.3
    (Untagged("BYE", "IMAP4rev1 Server logging out"), b"* BYE IMAP4rev1 Server logging out\r\n"),
    (Tagged("A023", "OK", "LOGOUT completed"), b"A023 OK LOGOUT completed\r\n"),
    # §6.2.1
    (CapabilityData(("IMAP4rev1", "STARTTLS", "LOGINDISABLED")), b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"),
    (Tagged("a002", "OK", "Begin TLS negotiation now"), b"a002 OK Begin TLS negotiation now\r\n"),
    (Tagged("a004", "OK", "LOGIN completed"), b"a004 OK LOGIN completed\r\n"),
    # §6.2.2: "S: +" is "+" SP and an empty base64 (continue-req = "+" SP (resp-text / base64) CRLF)
    (ContinueRequest(), b"+ \r\n"),
    (
        ContinueRequest(
            data=__import__("base64").b64decode(
                "YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRAtHTEuOP2BXb9sBYFR4SJlDZxmg39IxmRBOhXRKdDA0"
                "uHTCOT9Bq3OsUTXUlk0CsFLoa8j+gvGDlgHuqzWHPSQg=="
            )
        ),
        b"+ YGgGCSqGSIb3EgECAgIAb1kwV6ADAgEFoQMCAQ+iSzBJoAMCAQGiQgRAtHTEuOP2BXb9sBYFR4SJlDZxmg39IxmRBOhXRKdDA0"
        b"uHTCOT9Bq3OsUTXUlk0CsFLoa8j+gvGDlgHuqzWHPSQg==\r\n",
    ),
    (Tagged("A001", "OK", "GSSAPI authentication successful"), b"A001 OK GSSAPI authentication successful\r\n"),
    # §6.3.1 SELECT
    (ExistsData(172), b"* 172 EXISTS\r\n"),
    (RecentData(1), b"* 1 RECENT\r\n"),
    (Untagged("OK", "Message 12 is first unseen", Unseen(12)), b"* OK [UNSEEN 12] Message 12 is first unseen\r\n"),
    (Untagged("OK", "UIDs valid", UidValidity(3857529045)), b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"),
    (Untagged("OK", "Predicted next UID", UidNext(4392)), b"* OK [UIDNEXT 4392] Predicted next UID\r\n"),
    (
        FlagsData(("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")),
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
    ),
    (
        Untagged("OK", "Limited", PermanentFlags(("\\Deleted", "\\Seen", "\\*"))),
        b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
    ),
    (Tagged("A142", "OK", "SELECT completed", Codes.READ_WRITE), b"A142 OK [READ-WRITE] SELECT completed\r\n"),
    # §6.3.2 EXAMINE
    (ExistsData(17), b"* 17 EXISTS\r\n"),
    (RecentData(2), b"* 2 RECENT\r\n"),
    (Untagged("OK", "Message 8 is first unseen", Unseen(8)), b"* OK [UNSEEN 8] Message 8 is first unseen\r\n"),
    (
        Untagged("OK", "No permanent flags permitted", PermanentFlags(())),
        b"* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n",
    ),
    (Tagged("A932", "OK", "EXAMINE completed", Codes.READ_ONLY), b"A932 OK [READ-ONLY] EXAMINE completed\r\n"),
    # §6.3.3 CREATE
    (Tagged("A003", "OK", "CREATE completed"), b"A003 OK CREATE completed\r\n"),
    # §6.3.4 DELETE
    (ListData((), "/", "blurdybloop"), b'* LIST () "/" blurdybloop\r\n'),
    (ListData(("\\Noselect",), "/", "foo"), b'* LIST (\\Noselect) "/" foo\r\n'),
    (ListData((), "/", "foo/bar"), b'* LIST () "/" foo/bar\r\n'),
    (Tagged("A682", "OK", "LIST completed"), b"A682 OK LIST completed\r\n"),
    (Tagged("A684", "NO", 'Name "foo" has inferior hierarchical names'), b'A684 NO Name "foo" has inferior hierarchical names\r\n'),
    (Tagged("A685", "OK", "DELETE Completed"), b"A685 OK DELETE Completed\r\n"),
    (ListData((), ".", "foo.bar"), b'* LIST () "." foo.bar\r\n'),
    (ListData(("\\Noselect",), ".", "foo"), b'* LIST (\\Noselect) "." foo\r\n'),
    # §6.3.5 RENAME
    (ListData((), "/", "sarasoop"), b'* LIST () "/" sarasoop\r\n'),
    (ListData(("\\Noselect",), "/", "zowie"), b'* LIST (\\Noselect) "/" zowie\r\n'),
    (ListData((), ".", "INBOX"), b'* LIST () "." INBOX\r\n'),
    (ListData((), ".", "INBOX.bar"), b'* LIST () "." INBOX.bar\r\n'),
    (ListData((), ".", "old-mail"), b'* LIST () "." old-mail\r\n'),
    (Tagged("Z433", "OK", "RENAME completed"), b"Z433 OK RENAME completed\r\n"),
    # §6.3.6, §6.3.7
    (Tagged("A002", "OK", "SUBSCRIBE completed"), b"A002 OK SUBSCRIBE completed\r\n"),
    # §6.3.8 LIST
    (ListData(("\\Noselect",), "/", ""), b'* LIST (\\Noselect) "/" ""\r\n'),
    (Tagged("A101", "OK", "LIST Completed"), b"A101 OK LIST Completed\r\n"),
    (ListData(("\\Noselect",), ".", "#news."), b'* LIST (\\Noselect) "." #news.\r\n'),
    (ListData(("\\Noselect",), "/", "/"), b'* LIST (\\Noselect) "/" /\r\n'),
    (ListData(("\\Noselect",), "/", "~/Mail/foo"), b'* LIST (\\Noselect) "/" ~/Mail/foo\r\n'),
    (ListData((), "/", "~/Mail/meetings"), b'* LIST () "/" ~/Mail/meetings\r\n'),
    # §6.3.9 LSUB
    (LsubData((), ".", "#news.comp.mail.mime"), b'* LSUB () "." #news.comp.mail.mime\r\n'),
    (LsubData((), ".", "#news.comp.mail.misc"), b'* LSUB () "." #news.comp.mail.misc\r\n'),
    (LsubData(("\\NoSelect",), ".", "#news.comp.mail"), b'* LSUB (\\NoSelect) "." #news.comp.mail\r\n'),
    # §6.3.10 STATUS
    (
        StatusData("blurdybloop", (("MESSAGES", 231), ("UIDNEXT", 44292))),
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
    ),
    # §6.3.11 APPEND
    (ContinueRequest("Ready for literal data"), b"+ Ready for literal data\r\n"),
    (Tagged("A003", "OK", "APPEND completed"), b"A003 OK APPEND completed\r\n"),
    # §6.4.1 - §6.4.3
    (Tagged("FXXZ", "OK", "CHECK Completed"), b"FXXZ OK CHECK Completed\r\n"),
    (Tagged("A341", "OK", "CLOSE completed"), b"A341 OK CLOSE completed\r\n"),
    (ExpungeData(3), b"* 3 EXPUNGE\r\n"),
    (ExpungeData(5), b"* 5 EXPUNGE\r\n"),
    (ExpungeData(8), b"* 8 EXPUNGE\r\n"),
    # §6.4.4 SEARCH
    (SearchData((2, 84, 882)), b"* SEARCH 2 84 882\r\n"),
    (SearchData(()), b"* SEARCH\r\n"),
    (SearchData((43,)), b"* SEARCH 43\r\n"),
    (Tagged("A282", "OK", "SEARCH completed"), b"A282 OK SEARCH completed\r\n"),
    # §6.4.6 STORE
    (FetchData(2, (FlagsItem(("\\Deleted", "\\Seen")),)), b"* 2 FETCH (FLAGS (\\Deleted \\Seen))\r\n"),
    (FetchData(3, (FlagsItem(("\\Deleted",)),)), b"* 3 FETCH (FLAGS (\\Deleted))\r\n"),
    (
        FetchData(4, (FlagsItem(("\\Deleted", "\\Flagged", "\\Seen")),)),
        b"* 4 FETCH (FLAGS (\\Deleted \\Flagged \\Seen))\r\n",
    ),
    # §6.4.8 UID
    (FetchData(23, (FlagsItem(("\\Seen",)), UidItem(4827313))), b"* 23 FETCH (FLAGS (\\Seen) UID 4827313)\r\n"),
    (FetchData(24, (FlagsItem(("\\Seen",)), UidItem(4827943))), b"* 24 FETCH (FLAGS (\\Seen) UID 4827943)\r\n"),
    (FetchData(25, (FlagsItem(("\\Seen",)), UidItem(4828442))), b"* 25 FETCH (FLAGS (\\Seen) UID 4828442)\r\n"),
    (Tagged("A999", "OK", "UID FETCH completed"), b"A999 OK UID FETCH completed\r\n"),
    # §6.5.1
    (CapabilityData(("IMAP4rev1", "XPIG-LATIN")), b"* CAPABILITY IMAP4rev1 XPIG-LATIN\r\n"),
    # §7.1.1 OK
    (Untagged("OK", "IMAP4rev1 server ready"), b"* OK IMAP4rev1 server ready\r\n"),
    (Untagged("OK", "System shutdown in 10 minutes", Codes.ALERT), b"* OK [ALERT] System shutdown in 10 minutes\r\n"),
    (Tagged("A001", "OK", "LOGIN Completed"), b"A001 OK LOGIN Completed\r\n"),
    # §7.1.2 NO
    (
        Untagged("NO", "Disk is 98% full, please delete unnecessary data"),
        b"* NO Disk is 98% full, please delete unnecessary data\r\n",
    ),
    (Tagged("A222", "OK", "COPY completed"), b"A222 OK COPY completed\r\n"),
    (Tagged("A223", "NO", "COPY failed: disk is full"), b"A223 NO COPY failed: disk is full\r\n"),
    # §7.1.3 BAD
    (Untagged("BAD", "Command line too long"), b"* BAD Command line too long\r\n"),
    (Untagged("BAD", "Empty command line"), b"* BAD Empty command line\r\n"),
    (Untagged("BAD", "Disk crash, attempting salvage to a new disk!"), b"* BAD Disk crash, attempting salvage to a new disk!\r\n"),
    (Untagged("OK", "Salvage successful, no data lost"), b"* OK Salvage successful, no data lost\r\n"),
    # §7.1.4 PREAUTH, §7.1.5 BYE
    (Untagged("PREAUTH", "IMAP4rev1 server logged in as Smith"), b"* PREAUTH IMAP4rev1 server logged in as Smith\r\n"),
    (Untagged("BYE", "Autologout; idle for too long"), b"* BYE Autologout; idle for too long\r\n"),
    # §7.2
    (CapabilityData(("IMAP4rev1", "STARTTLS", "AUTH=GSSAPI", "XPIG-LATIN")), b"* CAPABILITY IMAP4rev1 STARTTLS AUTH=GSSAPI XPIG-LATIN\r\n"),
    (SearchData((2, 3, 6)), b"* SEARCH 2 3 6\r\n"),
    # §7.3, §7.4
    (ExistsData(23), b"* 23 EXISTS\r\n"),
    (RecentData(5), b"* 5 RECENT\r\n"),
    (ExpungeData(44), b"* 44 EXPUNGE\r\n"),
    (FetchData(23, (FlagsItem(("\\Seen",)), SizeItem(44827))), b"* 23 FETCH (FLAGS (\\Seen) RFC822.SIZE 44827)\r\n"),
    # §7.5
    (ContinueRequest("Ready for additional command text"), b"+ Ready for additional command text\r\n"),
    (Tagged("A001", "OK", "LOGIN completed"), b"A001 OK LOGIN completed\r\n"),
    (Tagged("A044", "BAD", 'No such command as "BLURDYBLOOP"'), b'A044 BAD No such command as "BLURDYBLOOP"\r\n'),
    # §8
    (Untagged("OK", "IMAP4rev1 Service Ready"), b"* OK IMAP4rev1 Service Ready\r\n"),
    (ExistsData(18), b"* 18 EXISTS\r\n"),
    (Untagged("OK", "Message 17 is the first unseen message", Unseen(17)), b"* OK [UNSEEN 17] Message 17 is the first unseen message\r\n"),
    (Tagged("a002", "OK", "SELECT completed", Codes.READ_WRITE), b"a002 OK [READ-WRITE] SELECT completed\r\n"),
    (Tagged("a003", "OK", "FETCH completed"), b"a003 OK FETCH completed\r\n"),
    (FetchData(12, (FlagsItem(("\\Seen", "\\Deleted")),)), b"* 12 FETCH (FLAGS (\\Seen \\Deleted))\r\n"),
    (Tagged("a005", "OK", "+FLAGS completed"), b"a005 OK +FLAGS completed\r\n"),
    (Untagged("BYE", "IMAP4rev1 server terminating connection"), b"* BYE IMAP4rev1 server terminating connection\r\n"),
    (Tagged("a006", "OK", "LOGOUT completed"), b"a006 OK LOGOUT completed\r\n"),
]


@pytest.mark.parametrize(("response", "wire"), SERVER_EXAMPLES, ids=[w[:40].decode() for _, w in SERVER_EXAMPLES])
def test_server_example_serialises(response: object, wire: bytes) -> None:
    assert response.encode() == wire  # type: ignore[attr-defined]


def test_sample_connection_fetch_full() -> None:
    """§8: "a003 fetch 12 full" answered with FLAGS, INTERNALDATE, RFC822.SIZE,
    ENVELOPE and BODY (the RFC's line breaks are editorial)."""
    gray = Address("Terry Gray", None, "gray", "cac.washington.edu")
    envelope = Envelope(
        date="Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
        subject="IMAP4rev1 WG mtg summary and minutes",
        from_=(gray,),
        sender=(gray,),
        reply_to=(gray,),
        to=(Address(None, None, "imap", "cac.washington.edu"),),
        cc=(Address(None, None, "minutes", "CNRI.Reston.VA.US"), Address("John Klensin", None, "KLENSIN", "MIT.EDU")),
        message_id="<B27397-0100000@cac.washington.edu>",
    )
    body = SinglePart("TEXT", "PLAIN", (("CHARSET", "US-ASCII"),), encoding="7BIT", size=3028, lines=92)
    data = FetchData(
        12,
        (
            FlagsItem(("\\Seen",)),
            InternalDateItem(datetime(1996, 7, 17, 2, 44, 25, tzinfo=MINUS_0700)),
            SizeItem(4286),
            EnvelopeItem(envelope),
            BodyStructureItem(body, extensible=False),
        ),
    )
    assert data.encode() == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" '
        b'RFC822.SIZE 4286 ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" '
        b'"IMAP4rev1 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")'
        b'("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL '
        b'"<B27397-0100000@cac.washington.edu>") '
        b'BODY ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92))\r\n'
    )


def test_sample_connection_fetch_body_header_literal() -> None:
    """§8: "* 12 FETCH (BODY[HEADER] {342}" with the header as a literal."""
    header = (
        b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        b"To: imap@cac.washington.edu\r\n"
        b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        b"\r\n"
    )
    data = FetchData(12, (BodySectionItem(Section((), "HEADER"), header),))
    assert data.encode() == b"* 12 FETCH (BODY[HEADER] {342}\r\n" + header + b")\r\n"


def test_body_structure_examples() -> None:
    """§7.4.2: a simple text message and a two-part message, BODY (non-extensible)."""
    simple = SinglePart("TEXT", "PLAIN", (("CHARSET", "US-ASCII"),), encoding="7BIT", size=2279, lines=48)
    assert simple.encode(extensible=False) == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 2279 48)'
    two = MultiPart(
        (
            SinglePart("TEXT", "PLAIN", (("CHARSET", "US-ASCII"),), encoding="7BIT", size=1152, lines=23),
            SinglePart(
                "TEXT",
                "PLAIN",
                (("CHARSET", "US-ASCII"), ("NAME", "cc.diff")),
                id="<960723163407.20117h@cac.washington.edu>",
                description="Compiler diff",
                encoding="BASE64",
                size=4554,
                lines=73,
            ),
        ),
        "MIXED",
    )
    assert two.encode(extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )


def test_response_code_without_arguments_is_an_atom() -> None:
    assert Tagged("A1", "NO", "no such mailbox", Codes.TRYCREATE).encode() == b"A1 NO [TRYCREATE] no such mailbox\r\n"
    assert Untagged("OK", "x", Code("X-FOO", "bar] baz")).encode() == b"* OK [X-FOO bar  baz] x\r\n"


def test_search_all_is_the_default_key() -> None:
    command, _ = parse_command(b"A1 SEARCH ALL\r\n")
    assert command == Search("A1", All())
