"""The extensions: each RFC's command examples parse, its response examples
serialise byte for byte (editorial line breaks joined as the ABNF says)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from waypost.imap.proto import (
    AclData,
    Append,
    AppendUid,
    Att,
    Authenticate,
    BodySection,
    Codes,
    Command,
    ContinueRequest,
    CopyUid,
    Create,
    DeleteAcl,
    EnabledData,
    Enable,
    Examine,
    Fetch,
    FetchData,
    FlagsItem,
    GetAcl,
    HighestModSeq,
    Id,
    IdData,
    Idle,
    List,
    ListData,
    ListRights,
    ListRightsData,
    Modified,
    ModSeqItem,
    Move,
    MyRights,
    MyRightsData,
    Namespace,
    NamespaceData,
    NeedMore,
    SearchData,
    Section,
    Select,
    SequenceSet,
    SetAcl,
    StatusData,
    Store,
    Tagged,
    UidExpunge,
    UidItem,
    Unselect,
    Untagged,
    parse_command,
    parse_idle_done,
)

S = SequenceSet.of

COMMANDS: list[tuple[bytes, Command]] = [
    # RFC 2177 IDLE
    (b"A002 IDLE\r\n", Idle("A002")),
    # RFC 2342 NAMESPACE
    (b"A001 NAMESPACE\r\n", Namespace("A001")),
    (b'A002 CREATE "INBOX.Sent Mail"\r\n', Create("A002", "INBOX.Sent Mail")),
    # RFC 2971 ID
    (
        b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")\r\n',
        Id("a023", (("name", "sodr"), ("version", "19.34"), ("vendor", "Pink Floyd Music Limited"))),
    ),
    (b"a042 ID NIL\r\n", Id("a042", None)),
    (b'a043 ID ("name" NIL)\r\n', Id("a043", (("name", None),))),
    (b"a044 ID ()\r\n", Id("a044", ())),
    # RFC 3691 UNSELECT
    (b"A341 UNSELECT\r\n", Unselect("A341")),
    # RFC 4314 ACL
    (b"A001 GETACL INBOX/Drafts\r\n", GetAcl("A001", "INBOX/Drafts")),
    (b"A002 SETACL INBOX/Drafts Chris +cda\r\n", SetAcl("A002", "INBOX/Drafts", "Chris", "cda", "+")),
    (b"A002 SETACL INBOX/Drafts Chris -cda\r\n", SetAcl("A002", "INBOX/Drafts", "Chris", "cda", "-")),
    (b'A002 SETACL INBOX anyone ""\r\n', SetAcl("A002", "INBOX", "anyone", "")),
    (b"B002 DeleteAcl INBOX Fred\r\n", DeleteAcl("B002", "INBOX", "Fred")),
    (b"B001 getacl INBOX\r\n", GetAcl("B001", "INBOX")),
    (b"a001 LISTRIGHTS ~/Mail/saved smith\r\n", ListRights("a001", "~/Mail/saved", "smith")),
    (b"a005 listrights archive/imap anyone\r\n", ListRights("a005", "archive/imap", "anyone")),
    (b"A003 MYRIGHTS INBOX\r\n", MyRights("A003", "INBOX")),
    # RFC 4315 UIDPLUS
    (
        b"A003 APPEND saved-messages (\\Seen) {5}\r\nhello\r\n",
        Append("A003", "saved-messages", b"hello", ("\\Seen",)),
    ),
    (b"A006 UID EXPUNGE 3000:3002\r\n", UidExpunge("A006", S((3000, 3002)))),
    # RFC 4959 SASL-IR
    (b"a002 AUTHENTICATE PLAIN AHRlc3QAMTIzNA==\r\n", Authenticate("a002", "PLAIN", b"\x00test\x001234")),
    (b"a003 AUTHENTICATE EXTERNAL =\r\n", Authenticate("a003", "EXTERNAL", b"")),
    # RFC 5161 ENABLE
    (b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n", Enable("t2", ("CONDSTORE", "X-GOOD-IDEA"))),
    (b"t3 enable condstore\r\n", Enable("t3", ("CONDSTORE",))),
    # RFC 5258 LIST-EXTENDED
    (b'A01 LIST "" %\r\n', List("A01", "", ("%",))),
    (b'A02 LIST (SUBSCRIBED) "" *\r\n', List("A02", "", ("*",), ("SUBSCRIBED",), extended=True)),
    (b'A03 LIST () "" % RETURN (CHILDREN)\r\n', List("A03", "", ("%",), (), ("CHILDREN",), extended=True)),
    (b'A04 LIST (REMOTE) "" % RETURN (CHILDREN)\r\n', List("A04", "", ("%",), ("REMOTE",), ("CHILDREN",), extended=True)),
    (
        b'A05 LIST (SUBSCRIBED REMOTE) "" % RETURN (CHILDREN)\r\n',
        List("A05", "", ("%",), ("SUBSCRIBED", "REMOTE"), ("CHILDREN",), extended=True),
    ),
    (
        b'A06 LIST (SUBSCRIBED RECURSIVEMATCH) "" %\r\n',
        List("A06", "", ("%",), ("SUBSCRIBED", "RECURSIVEMATCH"), extended=True),
    ),
    (
        b'A07 LIST "" ("INBOX" Drafts "Sent/%")\r\n',
        List("A07", "", ("INBOX", "Drafts", "Sent/%"), extended=True),
    ),
    (b'A08 LIST "" % RETURN ()\r\n', List("A08", "", ("%",), extended=True)),
    # RFC 5819 LIST-STATUS
    (
        b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))\r\n',
        List("A01", "", ("%",), (), ("STATUS",), ("MESSAGES", "UNSEEN"), extended=True),
    ),
    # RFC 6154 SPECIAL-USE
    (
        b't1 CREATE "Important Messages" (USE (\\Important))\r\n',
        Create("t1", "Important Messages", ("\\Important",)),
    ),
    (b"t2 CREATE MySpecialJunk (USE (\\junk))\r\n", Create("t2", "MySpecialJunk", ("\\Junk",))),
    (
        b't3 LIST (SPECIAL-USE) "" *\r\n',
        List("t3", "", ("*",), ("SPECIAL-USE",), extended=True),
    ),
    (
        b't4 LIST "" % RETURN (SPECIAL-USE)\r\n',
        List("t4", "", ("%",), (), ("SPECIAL-USE",), extended=True),
    ),
    # RFC 6851 MOVE
    (b"a UID MOVE 42:69 foo\r\n", Move("a", S((42, 69)), "foo", uid=True)),
    (b"a MOVE 1:* Trash\r\n", Move("a", S((1, None)), "Trash")),
    # RFC 7162 CONDSTORE
    (b"a SELECT INBOX (CONDSTORE)\r\n", Select("a", "INBOX", condstore=True)),
    (b"a EXAMINE INBOX (condstore)\r\n", Examine("a", "INBOX", condstore=True)),
    (
        b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
        Fetch("s100", S((1, None)), (Att.FLAGS,), uid=True, changed_since=12345),
    ),
    (b"a FETCH 1:* (UID MODSEQ)\r\n", Fetch("a", S((1, None)), (Att.UID, Att.MODSEQ))),
    (
        b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n",
        Store("a103", S(6, 4, 8), ("\\Deleted",), "+", silent=True, uid=True, unchanged_since=12121230045),
    ),
    (
        b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
        Store("d105", S(7, 5, 9), ("\\Deleted",), "+", silent=True, unchanged_since=320162338),
    ),
    (b"a STORE 1 (UNCHANGEDSINCE 0) FLAGS.SILENT ()\r\n", Store("a", S(1), (), "", silent=True, unchanged_since=0)),
    (b"a STORE 1 -FLAGS \\Seen \\Flagged\r\n", Store("a", S(1), ("\\Seen", "\\Flagged"), "-")),
    # APPEND with a date-time
    (
        b'A4 APPEND INBOX " 7-Feb-1994 21:52:25 -0800" {2}\r\nhi\r\n',
        Append("A4", "INBOX", b"hi", (), datetime(1994, 2, 7, 21, 52, 25, tzinfo=timezone(-timedelta(hours=8)))),
    ),
    # BODY.PEEK partial, from a client's sync
    (
        b"a1 UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From Subject)]<0.512>)\r\n",
        Fetch(
            "a1",
            S((1, None)),
            (BodySection(Section((), "HEADER.FIELDS", ("From", "Subject")), (0, 512), peek=True),),
            uid=True,
        ),
    ),
]


@pytest.mark.parametrize(("line", "expected"), COMMANDS, ids=[c[0][:45].decode() for c in COMMANDS])
def test_extension_command_parses(line: bytes, expected: Command) -> None:
    assert parse_command(line) == (expected, b"")


def test_idle_then_done() -> None:
    """RFC 2177 §3: "C: A002 IDLE" / "S: + idling" / ... / "C: DONE"."""
    command, rest = parse_command(b"A002 IDLE\r\nDONE\r\n")
    assert command == Idle("A002")
    _, rest = parse_idle_done(rest)
    assert rest == b""
    with pytest.raises(NeedMore):
        parse_idle_done(b"DO")


def test_literal_plus_needs_no_continuation() -> None:
    """RFC 7888: a {n+} literal is sent at once; the parser waits for its data
    without asking for "+"."""
    with pytest.raises(NeedMore) as more:
        parse_command(b"A1 LOGIN {3+}\r\nab")
    assert not more.value.continuation_required and more.value.literal_size == 3
    with pytest.raises(NeedMore) as more:
        parse_command(b"A1 LOGIN {3+}\r\n")
    assert not more.value.continuation_required


MINUS_0800 = timezone(-timedelta(hours=8))

RESPONSES = [
    # RFC 2177
    (ContinueRequest("idling"), b"+ idling\r\n"),
    (Tagged("A002", "OK", "IDLE terminated"), b"A002 OK IDLE terminated\r\n"),
    # RFC 2342 §5
    (NamespaceData((("", "/"),)), b'* NAMESPACE (("" "/")) NIL NIL\r\n'),
    (NamespaceData(shared=(("", "."),)), b'* NAMESPACE NIL NIL (("" "."))\r\n'),
    (
        NamespaceData((("", "/"),), (), (("Public Folders/", "/"),)),
        b'* NAMESPACE (("" "/")) NIL (("Public Folders/" "/"))\r\n',
    ),
    (
        NamespaceData(
            (("", "/"),),
            (("~", "/"),),
            (("#shared/", "/"), ("#public/", "/"), ("#ftp/", "/"), ("#news.", ".")),
        ),
        b'* NAMESPACE (("" "/")) (("~" "/")) (("#shared/" "/")("#public/" "/")("#ftp/" "/")("#news." "."))\r\n',
    ),
    (NamespaceData((("INBOX.", "."),)), b'* NAMESPACE (("INBOX." ".")) NIL NIL\r\n'),
    # RFC 2971 §3
    (IdData(None), b"* ID NIL\r\n"),
    (
        IdData(
            (
                ("name", "Cyrus"),
                ("version", "1.5"),
                ("os", "sunos"),
                ("os-version", "5.5"),
                ("support-url", "mailto:cyrus-bugs+@andrew.cmu.edu"),
            )
        ),
        b'* ID ("name" "Cyrus" "version" "1.5" "os" "sunos" "os-version" "5.5" '
        b'"support-url" "mailto:cyrus-bugs+@andrew.cmu.edu")\r\n',
    ),
    # RFC 3691
    (Tagged("A341", "OK", "Unselect completed"), b"A341 OK Unselect completed\r\n"),
    # RFC 4314 §3
    (
        AclData("INBOX/Drafts", (("Fred", "rwipslxetad"), ("Chris", "lrswi"))),
        b"* ACL INBOX/Drafts Fred rwipslxetad Chris lrswi\r\n",
    ),
    (AclData("INBOX", (("Fred", "rwipslxetad"), ("-Fred", "wetd"), ("$team", "w"))), b"* ACL INBOX Fred rwipslxetad -Fred wetd $team w\r\n"),
    (AclData("INBOX", (("Fred", "rwipsldexta"),)), b"* ACL INBOX Fred rwipsldexta\r\n"),
    (ListRightsData("~/Mail/saved", "smith", "la", ("r", "swicdkxte")), b"* LISTRIGHTS ~/Mail/saved smith la r swicdkxte\r\n"),
    (
        ListRightsData("archive.imap", "anyone", "", tuple("lrswipkxtecda0123456789")),
        b'* LISTRIGHTS archive.imap anyone "" l r s w i p k x t e c d a 0 1 2 3 4 5 6 7 8 9\r\n',
    ),
    (MyRightsData("INBOX", "rwiptsldaex"), b"* MYRIGHTS INBOX rwiptsldaex\r\n"),
    (Tagged("A035", "BAD", "Uppercase rights are not allowed"), b"A035 BAD Uppercase rights are not allowed\r\n"),
    # RFC 4315 §3
    (Tagged("A003", "OK", "APPEND completed", AppendUid(38505, 3955)), b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"),
    (
        Tagged("A004", "OK", "Done", CopyUid(38505, SequenceSet.parse("304,319:320"), SequenceSet.parse("3956:3958"))),
        b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
    ),
    (Tagged("A005", "OK", "No matching messages, so nothing copied"), b"A005 OK No matching messages, so nothing copied\r\n"),
    (Untagged("NO", "Non-persistent UIDs", Codes.UIDNOTSTICKY), b"* NO [UIDNOTSTICKY] Non-persistent UIDs\r\n"),
    # RFC 5161 §3.1
    (EnabledData(("X-GOOD-IDEA",)), b"* ENABLED X-GOOD-IDEA\r\n"),
    (EnabledData(()), b"* ENABLED\r\n"),
    # RFC 5258 §6 (CHILDINFO) and RFC 6154 special-use attributes
    (ListData((), "/", "Foo", ("SUBSCRIBED",)), b'* LIST () "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'),
    (ListData(("\\HasNoChildren", "\\Sent"), "/", "Sent Mail"), b'* LIST (\\HasNoChildren \\Sent) "/" "Sent Mail"\r\n'),
    (ListData(("\\Noselect",), None, ""), b'* LIST (\\Noselect) NIL ""\r\n'),
    # RFC 5819 §3 (we write INBOX as an atom where the example quotes it)
    (StatusData("foo", (("MESSAGES", 30), ("UNSEEN", 29))), b"* STATUS foo (MESSAGES 30 UNSEEN 29)\r\n"),
    # RFC 6851: MOVE reports COPYUID in an untagged OK (the RFC example has no text;
    # RFC 3501 resp-text needs some)
    (
        Untagged("OK", "Moved UIDs.", CopyUid(432432, SequenceSet.parse("42:69"), SequenceSet.parse("1202:1229"))),
        b"* OK [COPYUID 432432 42:69 1202:1229] Moved UIDs.\r\n",
    ),
    # RFC 7162
    (Untagged("OK", "Highest", HighestModSeq(715194045007)), b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"),
    (Untagged("OK", "Sorry, this mailbox format doesn't support modsequences", Codes.NOMODSEQ), b"* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n"),
    (FetchData(1, (UidItem(4), ModSeqItem(65402), FlagsItem(("\\Seen",)))), b"* 1 FETCH (UID 4 MODSEQ (65402) FLAGS (\\Seen))\r\n"),
    (
        SearchData((2, 5, 6, 7, 11, 12, 18, 19, 20, 23), modseq=917162500),
        b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n",
    ),
    (Tagged("d105", "OK", "Conditional STORE failed", Modified(SequenceSet.parse("7,9"))), b"d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n"),
    (StatusData("blurdybloop", (("MESSAGES", 231), ("UIDNEXT", 44292), ("HIGHESTMODSEQ", 7011231777))), b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ 7011231777)\r\n"),
]


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=[w[:45].decode() for _, w in RESPONSES])
def test_extension_response_serialises(response: object, wire: bytes) -> None:
    assert response.encode() == wire  # type: ignore[attr-defined]
