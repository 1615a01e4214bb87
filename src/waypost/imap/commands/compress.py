"""COMPRESS (RFC 4978): the handler answers, then the adapter switches both
directions of the connection to deflate (``Connection.start_compression``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ...log import event
from ..proto import Compress, R, Tagged

if TYPE_CHECKING:
    from ..server import Connection

log = logging.getLogger("waypost.imap")


async def compress(conn: Connection, cmd: Compress) -> Tagged | None:
    if conn.deflate is not None:
        # RFC 4978 §3: a NO because the mechanism is already active carries the
        # response code COMPRESSIONACTIVE.
        return R.COMPRESSION_ACTIVE.tagged(cmd.tag)
    # RFC 4978 §3: compression starts right after the tagged OK, in both
    # directions; the OK itself goes out uncompressed.
    conn.send(R.COMPRESS_ACTIVE.tagged(cmd.tag))
    conn.start_compression()
    event(log, "imap-compress", peer=conn.peer, algorithm=cmd.algorithm)
    return None


HANDLERS: dict[str, Any] = {"COMPRESS": compress}
