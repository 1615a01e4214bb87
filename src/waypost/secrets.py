"""Secrets at rest: values Waypost must be able to read back (a CRAM-MD5 shared secret,
later the passwords for next-hop SMTP AUTH) are stored encrypted with a key kept in the
data directory (``secret.key``, mode 0600), never in clear and never logged.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) does the work.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["Secrets", "SecretError", "KEY_FILE"]

KEY_FILE = "secret.key"


class SecretError(ValueError):
    """A stored secret that cannot be read with this data directory's key."""


class Secrets:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / KEY_FILE
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            if not self.path.exists():
                key = Fernet.generate_key()
                try:
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass  # another process made it first: read theirs
                else:
                    with os.fdopen(fd, "wb") as f:
                        f.write(key)
                        f.flush()
                        os.fsync(f.fileno())
            self._fernet = Fernet(self.path.read_bytes().strip())
        return self._fernet

    def derive(self, label: str) -> bytes:
        """A key for another purpose (e.g. SRS hashes), derived from this one."""
        self._key()
        return hashlib.sha256(label.encode("utf-8") + b"\0" + self.path.read_bytes().strip()).digest()

    def seal(self, text: str) -> str:
        return self._key().encrypt(text.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._key().decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            raise SecretError(f"a stored secret cannot be read with {self.path}") from None
