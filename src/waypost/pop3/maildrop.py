"""One POP3 session's maildrop: the account's INBOX as it was when the session
locked it.

RFC 1939 §5: messages are numbered from 1 for the life of the session, and a
message marked deleted keeps its number but is no longer listed or served.  Mail
that arrives meanwhile appears in the next session.  Nothing is removed until
``update`` (QUIT in TRANSACTION, RFC 1939 §6), and only the messages marked.

Unique ids (UIDL, RFC 1939 §7) are the mailbox's UIDVALIDITY and the message's
UID, eight hex digits each: 16 characters in the range RFC 1939 allows (0x21-0x7E,
at most 70), whatever the Maildir file is called, and the same in every session for
as long as the index keeps the message.  Maildir file names were the other choice;
they can be longer than 70 octets or hold any octet when another program drops
files in.

Reading the mailstore is synchronous: the index calls are fast, and the handlers
read large files in a thread.
"""

from __future__ import annotations

from pathlib import Path

from ..db import MailboxRecord, MessageRecord
from ..mailstore import Mailstore
from .lock import MaildropLock
from .proto import R, Reply

__all__ = ["Maildrop", "NoSuchMessage"]


class NoSuchMessage(Exception):
    """The number names no message the client may use; answer ``reply``."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class Maildrop:
    __slots__ = ("store", "box", "messages", "deleted", "lock")

    def __init__(self, store: Mailstore, box: MailboxRecord, messages: list[MessageRecord],
                 lock: MaildropLock) -> None:
        self.store = store
        self.box = box
        self.messages = messages
        self.deleted: set[int] = set()  # message numbers marked by DELE
        self.lock = lock

    @classmethod
    def open(cls, store: Mailstore, domain: str, account: str) -> Maildrop | None:
        """Lock and list the account's INBOX; None when another session holds it."""
        lock = MaildropLock.acquire(_ensured(store, domain, account))
        if lock is None:
            return None
        try:
            box = store.get(domain, account, "INBOX")
            assert box is not None  # INBOX is made on first use
            store.sync(box)  # files dropped into the Maildir by other programs
            msgs = store.messages(box)
            checked = store.sized(box, msgs)  # sizes as sent, for STAT and LIST
            return cls(store, box, [checked.get(m.uid, m) for m in msgs], lock)
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        self.lock.release()

    # -- what the client sees -----------------------------------------------------------

    def get(self, number: int) -> MessageRecord:
        """The message numbered ``number``; raises NoSuchMessage."""
        if not 1 <= number <= len(self.messages):
            raise NoSuchMessage(R.NO_SUCH_MESSAGE)
        if number in self.deleted:
            raise NoSuchMessage(R.MESSAGE_DELETED.format(number=number))
        return self.messages[number - 1]

    def live(self) -> list[tuple[int, MessageRecord]]:
        """(number, message) of every message not marked deleted."""
        return [(i, m) for i, m in enumerate(self.messages, 1) if i not in self.deleted]

    def stat(self) -> tuple[int, int]:
        """(count, octets) of the messages not marked deleted (RFC 1939 §5 STAT)."""
        live = self.live()
        return len(live), sum(m.size for _, m in live)

    def unique_id(self, msg: MessageRecord) -> str:
        return f"{self.box.uidvalidity:08x}{msg.uid:08x}"

    def read(self, msg: MessageRecord) -> bytes:
        """The message as stored; FileNotFoundError when another session removed it."""
        return self.store.read(self.box, msg)

    def mark_seen(self, msg: MessageRecord) -> None:
        """RETR counts as reading the message, as IMAP shows it (Dovecot does the same)."""
        if "\\Seen" not in msg.flags:
            self.store.store(self.box, [msg.uid], ["\\Seen"], "+")

    # -- changes ------------------------------------------------------------------------

    def delete(self, number: int) -> None:
        self.get(number)
        self.deleted.add(number)

    def reset(self) -> None:
        self.deleted.clear()

    def update(self) -> None:
        """RFC 1939 §6: remove the messages marked deleted, files first, then their index
        rows (``Mailstore.expunge``).  Raises OSError when some could not be removed."""
        doomed = [self.messages[n - 1] for n in sorted(self.deleted)]
        if doomed:
            self.store.expunge(self.box, doomed)
        self.deleted.clear()


def _ensured(store: Mailstore, domain: str, account: str) -> Path:
    path = store.account_path(domain, account)
    store.ensure(path)
    return path
