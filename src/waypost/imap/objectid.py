"""OBJECTID (RFC 8474): the ids of mailboxes and messages, made from what the index
already keeps, so no column is added.

RFC 8474 §3:  objectid = 1*255(ALPHA / DIGIT / "_" / "-")

- MAILBOXID is ``F`` and the mailbox's row id in the index.  That id is never given
  to another mailbox (the index's counter only goes up, even over deleted rows), and
  RENAME keeps the row, so a renamed mailbox keeps its MAILBOXID and one created anew
  under an old name gets a new one (RFC 8474 §4.1).
- EMAILID is ``M`` and 24 hex digits of BLAKE2b over the message file's unique
  Maildir base name, which the file keeps for its life (flags live in the index, not
  in the name) and which no other file is given.  A COPY or MOVE makes a new file
  (a hard link under a new name), so the copy has an EMAILID of its own: RFC 8474
  §5.1 asks that copies keep it only as a SHOULD.
- THREADID is NIL: Waypost keeps no threads (RFC 8474 §5.2 allows NIL), and
  ``SEARCH THREADID x`` finds nothing.
"""

from __future__ import annotations

import hashlib
import re

from ..db import MailboxRecord, MessageRecord

__all__ = ["OBJECTID", "email_id", "mailbox_id"]

#: RFC 8474 §3: the grammar of an object id.
OBJECTID = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")


def mailbox_id(box: MailboxRecord) -> str:
    return f"F{box.id}"


def email_id(m: MessageRecord) -> str:
    return "M" + hashlib.blake2b(m.name.encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()
