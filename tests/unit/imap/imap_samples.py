"""Valid client commands, complete with their literal data: the RFC 3501 examples and
the examples of the extensions we implement.  Shared by the incremental and the
hypothesis tests (imported by name: tests have no packages)."""

from __future__ import annotations

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

SAMPLES: list[bytes] = [
    # RFC 3501
    b"abcd CAPABILITY\r\n",
    b"a002 NOOP\r\n",
    b"A023 LOGOUT\r\n",
    b"a002 STARTTLS\r\n",
    b"A001 AUTHENTICATE GSSAPI\r\n",
    b"a001 LOGIN SMITH SESAME\r\n",
    b"A142 SELECT INBOX\r\n",
    b"A932 EXAMINE blurdybloop\r\n",
    b"A003 CREATE owatagusiam/\r\n",
    b"A683 DELETE blurdybloop\r\n",
    b"Z433 RENAME INBOX old-mail\r\n",
    b"A002 SUBSCRIBE #news.comp.mail.mime\r\n",
    b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n",
    b'A101 LIST "" ""\r\n',
    b"A202 LIST ~/Mail/ %\r\n",
    b'A002 LSUB "#news." "comp.mail.*"\r\n',
    b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
    b"A003 APPEND saved-messages (\\Seen) {310}\r\n" + APPEND_MESSAGE + b"\r\n",
    b"FXXZ CHECK\r\n",
    b"A341 CLOSE\r\n",
    b"A202 EXPUNGE\r\n",
    b'A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n',
    b'A283 SEARCH TEXT "string not in mailbox"\r\n',
    b"A284 SEARCH CHARSET UTF-8 TEXT {6}\r\nXXXXXX\r\n",
    b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
    b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n",
    b"A003 COPY 2:4 MEETING\r\n",
    b"A999 UID FETCH 4827313:4828442 FLAGS\r\n",
    b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n",
    b"a003 fetch 12 full\r\n",
    b"a004 fetch 12 body[header]\r\n",
    b"a005 store 12 +flags \\deleted\r\n",
    # a literal whose data looks like a literal header and a line end
    b"A2 SEARCH TEXT {5}\r\n{3}\r\n TEXT {6+}\r\n{3+}\r\n\r\n",
    b"A3 LOGIN {0}\r\n {0+}\r\n\r\n",
    # RFC 2177, 2342, 2971, 3691, 4314, 4315, 4959, 5161, 5258, 5819, 6154, 6851, 7162
    b"A002 IDLE\r\n",
    b"A001 NAMESPACE\r\n",
    b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")\r\n',
    b"a042 ID NIL\r\n",
    b"A341 UNSELECT\r\n",
    b"A001 GETACL INBOX/Drafts\r\n",
    b"A002 SETACL INBOX/Drafts Chris +cda\r\n",
    b"B002 DeleteAcl INBOX Fred\r\n",
    b"a001 LISTRIGHTS ~/Mail/saved smith\r\n",
    b"A003 MYRIGHTS INBOX\r\n",
    b"A006 UID EXPUNGE 3000:3002\r\n",
    b"a UID MOVE 42:69 foo\r\n",
    b"a MOVE 1:* Trash\r\n",
    b"a002 AUTHENTICATE PLAIN AHRlc3QAMTIzNA==\r\n",
    b"a003 AUTHENTICATE PLAIN =\r\n",
    b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n",
    b'A02 LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (STATUS (MESSAGES))\r\n',
    b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))\r\n',
    b'A03 LIST () "" ("INBOX" Drafts "Sent/%") RETURN (CHILDREN SPECIAL-USE)\r\n',
    b't1 CREATE "Important Messages" (USE (\\Important))\r\n',
    b"a SELECT INBOX (CONDSTORE)\r\n",
    b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
    b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)\r\n",
    b"a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n",
    b"a FETCH 1 (UID MODSEQ)\r\n",
    b"a1 UID FETCH 1:* (BODY.PEEK[1.2.HEADER.FIELDS.NOT (X-Foo \"Bar Baz\")]<0.2048> BODYSTRUCTURE)\r\n",
    b"a2 SEARCH OR (FROM alice TO bob) NOT (1:5,7 UID 100:*) HEADER X-Spam \"\" LARGER 100\r\n",
    # RFC 7162 §3.2 (QRESYNC)
    b"A01 ENABLE QRESYNC\r\n",
    b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
    b"B04 EXAMINE INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999"
    b" 15000,22500,27000,29970,29973)))\r\n",
    b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
    # RFC 8514, RFC 5032, RFC 8970, RFC 7889, UIDBATCHES, THREAD=REFS
    b"a FETCH 1:* (SAVEDATE INTERNALDATE)\r\n",
    b"b UID SEARCH SAVEDBEFORE 1-Jan-2021 SAVEDATESUPPORTED YOUNGER 3600 NOT OLDER 60\r\n",
    b"c FETCH 1:4 (UID PREVIEW (LAZY) FLAGS)\r\n",
    b"d STATUS INBOX (APPENDLIMIT MESSAGES)\r\n",
    b"e UIDBATCHES 1000 10:20\r\n",
    b"f UID THREAD REFS UTF-8 ALL\r\n",
]
