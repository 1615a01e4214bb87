"""Text settings that running servers follow at once: the Router table, the gateway rules,
the server-wide rules.

The text is stored under ``key`` and a version number under ``key + ".version"``;
``get`` reads only the version (one primary-key read) and parses the text again only
when the version changed, so every worker uses a new table on its next look-up.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

from .base import Database

__all__ = ["VersionedText"]

T = TypeVar("T")


class VersionedText(Generic[T]):
    def __init__(self, db: Database, key: str, parse: Callable[[str], T]) -> None:
        self.db = db
        self.key = key
        self._parse = parse
        self._version = -1
        self._seen: tuple[bytes | None, T] | None = None
        self._value: T | None = None
        self._lock = threading.Lock()

    def text(self) -> str:
        return str(self.db.get_value(self.key) or "")

    def get(self) -> T:
        # Under the settings token the version was read with, nothing changed: not even
        # the version is read again (one look-up less per resolution).
        token = self.db.settings_token()
        seen = self._seen
        if token is not None and seen is not None and seen[0] == token:
            return seen[1]
        version = int(self.db.get_value(self.key + ".version") or 0)
        value = self._value
        if version != self._version or value is None:
            with self._lock:
                value = self._parse(self.text())
                self._value, self._version = value, version
        # One pair, set at once (threads): the value with the token read before its
        # version, which any change since has replaced.
        self._seen = (token, value)
        return value

    def put(self, text: str) -> None:
        """Store new text (already validated by the caller) and bump the version."""
        self.db.set_value(self.key, text)
        self.db.set_value(self.key + ".version", int(self.db.get_value(self.key + ".version") or 0) + 1)
