"""Mailboxes: Maildir directories (``cur/ new/ tmp/``) under ``storage.mail``.

Layout: ``MAIL/<domain>/<account>/`` is the account's INBOX Maildir; other mailboxes
are Maildir++ folders beside it (``.Sent``, ``.Archive.2026``), so that standard tools
(Dovecot, mutt, mbsync) read the same files.  Delivery writes ``tmp/``, makes the batch
durable (one flush), renames into ``new/`` and syncs the directories: a message is
either whole in ``new/`` or absent.  This package never decides where mail goes.
"""

from .maildir import Delivery, Mailstore

__all__ = ["Delivery", "Mailstore"]
