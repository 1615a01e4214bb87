"""IMAP command handlers, one module per group of states (STYLE point 4), dispatched
by the table ``HANDLERS`` (command name -> coroutine).

A handler receives the ``Connection`` and the typed command; it sends untagged data
with ``conn.send`` and returns the tagged completion, or None when it answered
itself (LOGOUT, STARTTLS).  After a handler, the connection adds the updates of the
selected mailbox (RFC 3501 §7.4.1 — without EXPUNGE for the commands in
``UPDATES_WITHOUT_EXPUNGE`` unless they are UID commands).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from . import acl, any_state, authenticated, compress, context, fetch, mailboxes, not_authenticated, search, selected, sort
from . import notify, quota, urlauth

Handler = Callable[[Any, Any], Awaitable[Any]]

HANDLERS: dict[str, Handler] = {
    **any_state.HANDLERS,
    **not_authenticated.HANDLERS,
    **authenticated.HANDLERS,
    **mailboxes.HANDLERS,
    **selected.HANDLERS,
    **fetch.HANDLERS,
    **acl.HANDLERS,
    **search.HANDLERS,
    **sort.HANDLERS,
    **compress.HANDLERS,
    **context.HANDLERS,
    **quota.HANDLERS,
    **urlauth.HANDLERS,
    **notify.HANDLERS,
}

#: RFC 3501 §7.4.1: "An EXPUNGE response MUST NOT be sent when no command is in
#: progress, nor while responding to a FETCH, STORE, or SEARCH command."
#: SORT and THREAD answer with message numbers as SEARCH does (RFC 5256 §3).
UPDATES_WITHOUT_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})

__all__ = ["HANDLERS", "UPDATES_WITHOUT_EXPUNGE"]
