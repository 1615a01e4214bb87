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
        self._value: T | None = None
        self._lock = threading.Lock()

    def text(self) -> str:
        return str(self.db.get_value(self.key) or "")

    def get(self) -> T:
        version = int(self.db.get_value(self.key + ".version") or 0)
        value = self._value
        if version != self._version or value is None:
            with self._lock:
                value = self._parse(self.text())
                self._value, self._version = value, version
        return value

    def put(self, text: str) -> None:
        """Store new text (already validated by the caller) and bump the version."""
        self.db.set_value(self.key, text)
        self.db.set_value(self.key + ".version", int(self.db.get_value(self.key + ".version") or 0) + 1)
