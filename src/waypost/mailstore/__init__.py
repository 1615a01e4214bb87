"""Mailboxes: Maildir directories (``cur/ new/ tmp/``) under ``storage.mail``.

Layout: ``MAIL/<domain>/<account>/`` is the account's INBOX Maildir; other mailboxes
are Maildir++ folders beside it (``.Sent``, ``.Archive.2026``), so that standard tools
(Dovecot, mutt, mbsync) read the same files.  Delivery writes ``tmp/``, makes the batch
durable (one flush), renames into ``new/`` and syncs the directories: a message is
either whole in ``new/`` or absent.  The mailbox index (UIDs, flags, mod-sequences,
subscriptions) lives in ``waypost.db``; ``maildir.py`` says how files and index stay
in step.  Beside each Maildir, ``waypost.uids`` (``uidfile.py``) keeps the mailbox's UIDs
packed for SELECT: a cache checked against the index at every read, never the truth.  This package never decides where mail goes.
"""

from .maildir import (
    SEPARATOR,
    SPECIAL_USE,
    AccountGone,
    Delivery,
    MailboxNameError,
    MailboxNameTooLong,
    Mailstore,
    Selection,
    flags_from_info,
    folder_of,
    normalize_name,
    topic,
)
from .quota import MESSAGES_KEY, STORAGE_KEY, UNLIMITED, OverQuota, Quota, limits_of, quota_of

__all__ = [
    "SEPARATOR",
    "SPECIAL_USE",
    "AccountGone",
    "Delivery",
    "MailboxNameError",
    "MailboxNameTooLong",
    "Mailstore",
    "Selection",
    "flags_from_info",
    "folder_of",
    "normalize_name",
    "topic",
    "MESSAGES_KEY",
    "STORAGE_KEY",
    "UNLIMITED",
    "OverQuota",
    "Quota",
    "limits_of",
    "quota_of",
]
