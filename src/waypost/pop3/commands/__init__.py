"""The POP3 command handlers, one function per command, grouped by the state in which
the command is legal (STYLE point 4), and the table the session dispatches by.

A handler gets the session and the parsed command, acts on ``session.maildrop``, and
returns the response to send, or None when it has answered already (STLS) or when
the next state answers for it (QUIT in TRANSACTION: UPDATE does).  Its state has been
checked against ``proto.state.LEGAL`` before it runs; ``next_state`` is applied
after.  A handler never touches a Maildir file: the maildrop calls the Mailstore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from . import any_state, authorization, transaction

if TYPE_CHECKING:
    from ..proto import Response
    from ..server import Session

__all__ = ["HANDLERS", "Handler"]

Handler = Callable[["Session", Any], Awaitable["Response | None"]]

HANDLERS: dict[str, Handler] = {
    **authorization.HANDLERS,
    **any_state.HANDLERS,
    **transaction.HANDLERS,
}
