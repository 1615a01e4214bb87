"""The SMTP listeners (relay, submission, ODMR, LMTP): ``proto/`` (the sans-IO core),
``server.py`` (the asyncio adapter) and ``commands/`` (the handlers by concern).  A
listener asks the router for every recipient and hands accepted messages to the queue;
it never writes a Maildir or spool file itself."""

from .replies import R, Reply
from .server import SMTPService, WaypostSMTP

__all__ = ["R", "Reply", "SMTPService", "WaypostSMTP"]
