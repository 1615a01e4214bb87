"""WebUser (seed 001, 004): web mail for every account and the public view of the
account file areas, served by Starlette on uvicorn's HTTP protocol inside each worker's
event loop (``listen.http``, ``listen.https``).

This package owns HTTP: pages, sessions, CSRF, the mapping of a request to an account
and a mailbox.  It decides nothing about mail itself: logins go through the server's
throttled ``authenticate`` (the Router's ``resolve_login``, as IMAP and POP3), mailbox
work through ``Mailstore`` and ``Access`` (the IMAP server's index, so IMAP sessions see
every change and IDLE wakes), sending through the router and ``QueueManager.submit``,
files through ``waypost.files``.  It never writes a Maildir file or SQL itself.
"""

from .service import WebService

__all__ = ["WebService"]
