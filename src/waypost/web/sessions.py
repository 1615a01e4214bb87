"""Server-side WebUser sessions.

The browser holds a random session id in an HttpOnly, SameSite=Lax cookie (Secure
over HTTPS); the database holds only its SHA-256 (``web_sessions``, migration 4) with
the account and the session's CSRF token, so neither a copy of the database nor a log
opens a session.  A login always makes a new id (no fixation) and drops the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..db import Database

__all__ = ["COOKIE", "LOGIN_COOKIE", "Session", "Sessions", "same_token"]

#: The session cookie, and the cookie of the login form's CSRF token (double submit:
#: there is no session yet to keep it in).
COOKIE = "wp_session"
LOGIN_COOKIE = "wp_login"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison of a submitted CSRF token with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class Session:
    account: str    # name@domain
    csrf: str
    id_hash: str

    @property
    def domain(self) -> str:
        return self.account.rpartition("@")[2]

    @property
    def name(self) -> str:
        return self.account.rpartition("@")[0]


class Sessions:
    """Blocking calls (one indexed row each): the web handlers run them in a thread."""

    def __init__(self, db: Database, lifetime: float) -> None:
        self.db = db
        self.lifetime = lifetime

    def create(self, account: str) -> tuple[str, Session]:
        """A new session: (the id for the cookie, the session)."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = time.time()
        self.db.web_session_add(_hash(session_id), account, csrf, now, now + self.lifetime)
        return session_id, Session(account, csrf, _hash(session_id))

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie: None for an unknown or expired id, and for an
        account that was removed, disabled or made again under its name since the login
        (its session ends)."""
        if not session_id or len(session_id) > 100:
            return None
        h = _hash(session_id)
        row = self.db.web_session_get(h, time.time())
        if not row:
            return None
        name, _, domain = row[0].rpartition("@")
        account = self.db.get_object(domain, name)
        # An account made after the login is another account under a reused name.
        if (account is None or account.kind != "account" or not account.data.get("enabled", True)
                or account.created > row[2]):
            self.db.web_session_delete(h)
            return None
        return Session(row[0], row[1], h)

    def end(self, session: Session | str) -> None:
        self.db.web_session_delete(session.id_hash if isinstance(session, Session) else _hash(session))
