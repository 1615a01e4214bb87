"""The SMTP (and LMTP) protocol core, sans-IO: octets in, command lines, typed
commands and message text out; replies in, octets out.

Owns the grammar of client commands (RFC 5321 with the extensions we offer: SIZE
RFC 1870, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461, AUTH RFC 4954, ETRN
RFC 1985, ATRN RFC 2645, CHUNKING RFC 3030, LMTP RFC 2033), the framing of lines and
message text (dot-unstuffing, bare CR/LF refused, bounded pieces), the session state
table and the reply wire form; the catalogue is ``waypost.smtp.replies``.  It never
touches a socket, a file, a clock or the event loop, and never decides what a command
*does*: the asyncio adapter (``waypost.smtp.server``) reads and writes, the handlers
(``waypost.smtp.commands``) decide.

The adapter's loop, in short::

    conn.feed(await read())
    while not isinstance(event := conn.next_command(), NeedData):
        if isinstance(event, Reply):                       # a line refused as it stands
            write(wire(event)); continue
        if (reply := refusal(event.verb, state, mode, authenticated)) is not None:
            write(wire(reply)); continue
        await HANDLERS[event.verb](session, event.arg)     # replies through wire()

Message text comes out in pieces of at most ``Params.max_chunk_piece`` octets and is
never needed whole here: the handlers keep a small message in memory and stream a big
one to the spool as it arrives (``smtp/commands/text.py``, spool format 2).

The SMTP *client* that delivers to other servers (``delivery/remote.py``) keeps
aiosmtplib (issue 15 point 6), and does not share this core.  What the two sides could
share is small: ``wire`` and the shape of a reply line.  A client is a different
machine: it parses multi-line replies and EHLO keywords, pipelines MAIL and RCPT and
pairs each reply with its recipient, dot-stuffs on the way out, runs the client side of
STARTTLS and of AUTH, and has its own time-outs per command (RFC 5321 §4.5.3.2).
aiosmtplib does all of that through a public API that ``remote.py`` uses as published
(the end-of-data tap swaps the transport's protocol with the transport's own public
``set_protocol``, and touches nothing private), is tested against real servers (our
own listener and aiosmtpd, ``tests/e2e/test_delivery.py``, ``test_gateway.py``), and
an upgrade of it cannot break intake, which is the risk this core removed on the server
side.  Writing a client
core would be new code to get right for no gain in speed: delivery spends its time
waiting for the next hop, not in parsing.
"""

from .commands import Auth, Bdat, Burl, Line, Mail, MailOptions, Rcpt
from .connection import Connection, multiline, wire
from .framing import NEED_DATA, BodyCheck, ChunkReader, DotReader, InputBuffer, NeedData, TextEnd
from .params import DEFAULT_PARAMS, Mode, Params
from .parser import (
    parse_auth,
    parse_bdat,
    parse_burl,
    parse_line,
    parse_mail,
    parse_mail_params,
    parse_rcpt,
    parse_rcpt_params,
    split_path,
)
from .state import TRANSACTION, State, refusal, state_of

__all__ = [
    "DEFAULT_PARAMS", "NEED_DATA", "TRANSACTION",
    "Auth", "Bdat", "BodyCheck", "Burl", "ChunkReader", "Connection", "DotReader", "InputBuffer", "Line", "Mail",
    "MailOptions", "Mode", "NeedData", "Params", "Rcpt", "State", "TextEnd",
    "multiline", "parse_auth", "parse_bdat", "parse_burl", "parse_line", "parse_mail", "parse_mail_params", "parse_rcpt",
    "parse_rcpt_params", "refusal", "split_path", "state_of", "wire",
]
