"""The POP3 access protocol (RFC 1939, with CAPA, STLS and AUTH PLAIN).

Owns the POP3 listener: ``proto/`` (sans-IO grammar, state table, replies),
``server.py`` (the asyncio adapter), ``commands/`` (one handler per command) and the
maildrop with its cross-process lock.  The maildrop is the account's INBOX.  This
package never writes a Maildir file itself (the Mailstore does), never decides who
may log in (the ``authenticate`` callback does), and never reads settings: whoever
starts the service passes them in.
"""

from .proto import Params
from .server import Authenticate, POP3Service

__all__ = ["Authenticate", "POP3Service", "Params"]
