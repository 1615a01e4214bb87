"""CAPABILITY, NOOP, LOGOUT (RFC 3501 §6.1) and ID (RFC 2971)."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

from ...log import event
from ..proto import Capability, CapabilityData, Id, IdData, Logout, Noop, Tagged, Untagged
from ..proto.state import State

if TYPE_CHECKING:
    from ..server import Connection

import logging

log = logging.getLogger("waypost.imap")


async def capability(conn: Connection, cmd: Capability) -> Tagged:
    conn.send(CapabilityData(conn.service.capabilities(conn)))
    return Tagged(cmd.tag, "OK", "CAPABILITY completed")


async def noop(conn: Connection, cmd: Noop) -> Tagged:
    # The updates of the selected mailbox follow every command; NOOP is the
    # client's way of asking for them (RFC 3501 §6.1.2).
    return Tagged(cmd.tag, "OK", "NOOP completed")


async def logout(conn: Connection, cmd: Logout) -> None:
    conn.send(Untagged("BYE", "Logging out"), Tagged(cmd.tag, "OK", "LOGOUT completed"))
    conn.state = State.LOGOUT
    conn.close()
    return None


async def id_(conn: Connection, cmd: Id) -> Tagged:
    # RFC 2971 §3.3: the server's own identification; the client's is logged.
    if cmd.parameters:
        event(log, "imap-client-id", peer=conn.peer,
              client=";".join(f"{k}={v}" for k, v in cmd.parameters[:8]))
    conn.send(IdData((("name", "Waypost"), ("vendor", "Waypost"))))
    return Tagged(cmd.tag, "OK", "ID completed")


HANDLERS: dict[str, Any] = {"CAPABILITY": capability, "NOOP": noop, "LOGOUT": logout, "ID": id_}
