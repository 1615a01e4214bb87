"""The account a session logged in to, as it was at the login: a session of POP3 or
submission (IMAP and ManageSieve keep their own) asks before each command whether it is
still the same enabled account.  Removed, disabled, or removed and made again under its
name (another customer's account now, with another creation stamp), the login is void
and the session ends.

Asking costs nothing while no directory write happened anywhere (the database's change
token is the one seen at the last look), else one look-up, which the caller runs off the
event loop (``check``)."""

from __future__ import annotations

from ..db import Database

__all__ = ["SessionAccount"]


class SessionAccount:
    __slots__ = ("db", "domain", "name", "created", "_token")

    def __init__(self, db: Database, domain: str, name: str, created: float) -> None:
        self.db = db
        self.domain = domain
        self.name = name
        self.created = created
        self._token: bytes | None = None

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    @classmethod
    def load(cls, db: Database, address: str) -> "SessionAccount | None":
        """The account ``address`` (name@domain, as an authenticator returns it) now;
        None when it is no account (blocking: call it off the event loop)."""
        name, _, domain = address.rpartition("@")
        obj = db.get_object(domain, name)
        if obj is None or obj.kind != "account":
            return None
        me = cls(db, obj.domain, obj.name, obj.created)
        me._token = db.settings_token()
        return me

    def unchanged(self) -> bool:
        """True when no directory write happened since the last look found the account
        as it was (no look-up: safe on the event loop)."""
        token = self.db.settings_token()
        return token is not None and token == self._token

    def check(self) -> bool:
        """Whether it is still the same enabled account (blocking: a look-up when
        something changed).  ``StorageUnavailable`` when the database cannot say."""
        token = self.db.settings_token()  # read before the look-up: a later write renews it
        obj = self.db.get_object(self.domain, self.name)
        same = (obj is not None and obj.kind == "account" and obj.created == self.created
                and bool(obj.data.get("enabled", True)))
        if same:
            self._token = token
        return same
