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
