"""URLAUTH (RFC 4467): URLs authorized with a mailbox access key, and what such a URL
names, for URLFETCH on the IMAP listener and for BURL on submission (RFC 4468).

Theory of operation.  Each user has a random access key per mailbox (RFC 4467 §3),
kept in the index (``Database.urlauth_key``), made at the user's first GENURLAUTH
for the mailbox and dropped by RESETKEY.  The one mechanism, INTERNAL, signs the
URL's "rump" (everything up to and including the access identifier) with
HMAC-SHA1 (RFC 2104) under that key (RFC 4467 §7).  A URL is honoured while the
key it was signed with stands, before its EXPIRE, to the requester its access
identifier admits, and while its user may still read the message (RFC 4467 §4.2:
"the URLAUTH is not a capability": the user's rights at fetch time count).

Synchronous (index and files): callers run it in a thread.  It never raises for a
bad URL: such a URL names nothing (None).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from ..db import NotFound
from ..mailstore.access import Access, MailboxRef
from . import message as mime
from .proto import AuthUrl, ImapUrl, Section, parse_auth_url, utf7_decode
from .proto.structure import BodyStructure, MultiPart, SinglePart

if TYPE_CHECKING:
    from ..db import ObjectRecord
    from ..mailstore import Mailstore

__all__ = ["MECHANISMS", "Fetched", "Requester", "authorize", "fetch", "part_structure", "reset", "url_user"]

#: RFC 4467 §7: "INTERNAL" is the one mechanism every server offers.
MECHANISMS = ("INTERNAL",)

Lookup = Callable[[str, str], "ObjectRecord | None"]


class UrlError(ValueError):
    """Why GENURLAUTH refuses a URL (answered ``NO [BADURL url]``)."""


@dataclass(frozen=True, slots=True)
class Requester:
    """Who fetches: the user of an IMAP session (``user``), or the submission server
    acting for a user who authenticated to it (``submit``; RFC 4468 BURL)."""

    user: tuple[str, str] | None = None
    submit: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A message an authorized URL names, and the part of it the URL asks for."""

    message: bytes
    part: ImapUrl

    def octets(self) -> bytes:
        """The octets the URL names: the message, or its section, then its partial."""
        data = self.message
        if self.part.section != Section():
            data = mime.section(data, self.part.section)
        if self.part.partial is not None:
            origin, count = self.part.partial
            data = data[origin:] if count is None else data[origin:origin + count]
        return data


def verifier(key: bytes, rump: str) -> str:
    """RFC 4467 §7 (INTERNAL): the HMAC-SHA1 of the rump URL under the access key, in
    lower-case hex (enc-urlauth = 32*HEXDIG)."""
    return hmac.new(key, rump.encode("utf-8"), hashlib.sha1).hexdigest()


def url_user(lookup: Lookup, user: str, host: str, domain: str) -> tuple[str, str] | None:
    """(domain, account) a user named in a URL stands for: ``name@domain`` and
    ``name%domain`` as at login; a bare name is looked up in the URL's host when that
    is a domain of ours (``imap://joe@example.com/...``), else in ``domain``.  None
    when it names no account (an alias names its account)."""
    for sep in ("@", "%"):
        if sep in user:
            name, _, dom = user.rpartition(sep)
            candidates = [(name, dom)]
            break
    else:
        candidates = [(user, host.partition(":")[0]), (user, domain)]
    for name, dom in candidates:
        if not name or not dom:
            continue
        obj = lookup(name.lower(), dom.lower())
        if obj is not None and obj.kind == "account":
            return obj.domain, obj.name
    return None


def _mailbox(access: Access, part: ImapUrl) -> MailboxRef | None:
    """The mailbox a URL names, when its user may read it (right ``r``)."""
    try:
        name = "INBOX" if part.mailbox.upper() == "INBOX" else utf7_decode(part.mailbox)
    except ValueError:
        return None
    ref = access.resolve(name)
    if ref is None or not ref.may("r"):
        return None
    if part.uidvalidity is not None and part.uidvalidity != ref.box.uidvalidity:
        return None
    return ref


def authorize(store: Mailstore, access: Access, lookup: Lookup, rump: str, mechanism: str) -> str:
    """GENURLAUTH of one URL (RFC 4467 §7.2): the URL with its verifier appended.
    The URL must be a rump whose user is ``access``'s user and whose mailbox that user
    may read; ``UrlError`` otherwise.  Makes the mailbox's access key if needed."""
    if mechanism.upper() not in MECHANISMS:
        raise UrlError("unknown mechanism")
    try:
        url = parse_auth_url(rump)
    except ValueError as e:
        raise UrlError(str(e)) from None
    if url.mechanism is not None:
        raise UrlError("the URL is authorized already")
    if url_user(lookup, url.user, url.host, access.domain) != (access.domain, access.account):
        raise UrlError("the URL names another user")
    if url.access_user is not None and url_user(lookup, url.access_user, url.host, access.domain) is None:
        raise UrlError("the access identifier names no user")
    ref = _mailbox(access, url.part)
    if ref is None:
        raise UrlError("no such mailbox")
    db = store.db
    assert db is not None
    try:
        key = db.urlauth_key(ref.box.id, access.domain, access.account, create=True)
    except NotFound:
        raise UrlError("no such mailbox") from None
    assert key is not None
    return f"{url.rump}:{mechanism.upper()}:{verifier(key, url.rump)}"


def reset(store: Mailstore, access: Access, mailbox: str | None) -> bool:
    """RESETKEY (RFC 4467 §7.1): new keys for the user's mailbox (all with None);
    False when the mailbox does not exist."""
    db = store.db
    assert db is not None
    if mailbox is None:
        db.urlauth_reset(access.domain, access.account)
        return True
    ref = access.resolve(mailbox)
    if ref is None:
        return False
    db.urlauth_reset(access.domain, access.account, ref.box.id)
    return True


def _admitted(url: AuthUrl, requester: Requester, lookup: Lookup, domain: str) -> bool:
    """RFC 4467 §3: whether the access identifier admits the requester."""
    if url.access == "anonymous":
        return True
    if url.access == "authuser":
        return requester.user is not None or requester.submit is not None
    assert url.access_user is not None
    who = url_user(lookup, url.access_user, url.host, domain)
    if who is None:
        return False
    if url.access == "user":
        return requester.user == who
    return requester.submit == who  # "submit+": only the submission server for that user


def fetch(store: Mailstore, lookup: Lookup, text: str, requester: Requester, domain: str,
          now: datetime | None = None) -> Fetched | None:
    """URLFETCH of one URL (RFC 4467 §7.3): the message it names, or None when it is
    not an authorized URL of ours, has expired, does not admit ``requester``, its key
    was reset, or its user may no longer read the message.  ``domain`` is the
    requester's (for a bare user name in the URL)."""
    try:
        url = parse_auth_url(text)
    except ValueError:
        return None
    if url.mechanism not in MECHANISMS or url.token is None:
        return None
    if url.expire is not None and url.expire <= (now or datetime.now(timezone.utc)):
        return None
    if not _admitted(url, requester, lookup, domain):
        return None
    owner = url_user(lookup, url.user, url.host, domain)
    if owner is None:
        return None
    access = Access(store, owner[0], owner[1], lookup)
    ref = _mailbox(access, url.part)
    if ref is None:
        return None
    db = store.db
    assert db is not None
    key = db.urlauth_key(ref.box.id, owner[0], owner[1])
    if key is None or not hmac.compare_digest(verifier(key, url.rump), url.token):
        return None
    msg = next((m for m in store.messages(ref.box) if m.uid == url.part.uid), None)
    if msg is None:
        return None
    try:
        return Fetched(store.read(ref.box, msg), url.part)
    except FileNotFoundError:
        return None


def part_structure(structure: BodyStructure, parts: tuple[int, ...]) -> BodyStructure | None:
    """The BODYSTRUCTURE of part ``parts`` (RFC 3501 §6.4.5 part numbers) of a
    message whose structure is ``structure``; None when there is no such part."""
    node: BodyStructure = structure
    is_message = True  # ``node`` is a message whose part numbers come next (as mime._resolve)
    for n in parts:
        if not is_message and isinstance(node, SinglePart) and node.body is not None:
            node, is_message = node.body, True  # the message inside a MESSAGE/RFC822 part
        if isinstance(node, MultiPart):
            if not 1 <= n <= len(node.parts):
                return None
            node = node.parts[n - 1]
        elif not (is_message and n == 1):
            return None
        is_message = False
    return node
