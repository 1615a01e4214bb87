"""The SMTP command handlers, grouped by concern (STYLE point 4), and the table the
session dispatches by.

A handler gets the session (``waypost.smtp.server.WaypostSMTP``) and the command's
raw argument (or None), decides, and answers through ``session.send``.  Its state has
been checked against ``proto.state`` before it runs, except for the verbs in
``OWN_STATE_CHECK`` (BDAT must read its chunk whatever the state, RFC 3030 §2).

=========== ==========================================================
session     EHLO, HELO, LHLO, STARTTLS, RSET, NOOP, HELP, VRFY, EXPN, QUIT
auth        AUTH (PLAIN, LOGIN, CRAM-MD5)
envelope    MAIL, RCPT: sender checks and routing per recipient
data        DATA, BDAT: the message, the rules, and the hand-off to the queue
etrn        ETRN (RFC 1985)
odmr        ATRN, TURN (RFC 2645): the connection turned around
=========== ==========================================================

A handler never writes a Maildir or spool file itself: messages go to the queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from . import auth, data, envelope, etrn, odmr, session

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS", "Handler", "OWN_STATE_CHECK"]

Handler = Callable[["WaypostSMTP", "str | None"], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    **session.HANDLERS,
    **auth.HANDLERS,
    **envelope.HANDLERS,
    **data.HANDLERS,
    **etrn.HANDLERS,
    **odmr.HANDLERS,
}

OWN_STATE_CHECK = frozenset({"BDAT"})
