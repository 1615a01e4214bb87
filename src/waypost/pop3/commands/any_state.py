"""Commands legal in AUTHORIZATION and TRANSACTION: CAPA (RFC 2449 §5), QUIT
(RFC 1939 §5, §6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..proto import Capa, MultiLine, Quit, R, Response, State

if TYPE_CHECKING:
    from ..server import Session

__all__ = ["HANDLERS"]


async def capa(session: Session, command: Capa) -> Response:
    return MultiLine.of_lines(R.CAPA, session.capabilities())


async def quit_(session: Session, command: Quit) -> Response | None:
    # In TRANSACTION, QUIT leads to UPDATE, whose outcome is the answer (RFC 1939 §6).
    if session.state is State.TRANSACTION:
        return None
    return R.BYE.format(hostname=session.service.hostname)


HANDLERS: dict[str, Callable[[Session, Any], Awaitable[Response | None]]] = {
    "CAPA": capa,
    "QUIT": quit_,
}
