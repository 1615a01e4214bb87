"""The maildrop lock of RFC 1939 §4: "the POP3 server then acquires an
exclusive-access lock on the maildrop, as necessary to prevent messages from being
modified or removed before the session enters the UPDATE state".

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``.pop3.lock`` in the account's Maildir
directory.  It is held by an open file description, so it works between sessions of
one worker and between worker processes alike, and the kernel lets it go when the
descriptor is closed or the process dies: a crashed worker never leaves a maildrop
locked.  It keeps POP3 sessions apart only; IMAP sessions, delivery and the web
interface go on, and the maildrop copes (a message removed meanwhile is answered
``-ERR``, never served from a stale file).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["LOCK_NAME", "MaildropLock"]

LOCK_NAME = ".pop3.lock"


class MaildropLock:
    __slots__ = ("path", "_fd")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, account_dir: Path) -> MaildropLock | None:
        """The lock, or None when another session holds it.  Never waits."""
        path = account_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        """Let the lock go (closing the descriptor does it); safe to call twice."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
