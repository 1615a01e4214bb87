"""The POP3 protocol core, sans-IO: octets in, lines and typed commands out; typed
responses in, octets out.

Owns the grammar of client commands (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS,
RFC 5034 AUTH with PLAIN), the wire form of responses with their RFC 2449/3206
response codes, the session state table and the reply catalogue.  It never touches a
socket, a file, a clock or the event loop, and never decides what a command *does*:
the asyncio adapter (``waypost.pop3.server``) reads and writes, the handlers
(``waypost.pop3.commands``) act on the maildrop.

The adapter's loop, in short::

    lines.feed(await read())
    while not isinstance(event := lines.next_event(params.max_line_length), NeedData):
        if isinstance(event, LineTooLong):
            write(R.LINE_TOO_LONG.encode()); continue
        try:
            command = parse_command(event.data, params)
        except Rejected as refused:
            write(refused.reply.encode()); continue
        if (reply := refusal(command.name, state)) is not None:
            write(reply.encode()); continue
        response = run(command)                # the handler table
        write(response.encode())
        state = next_state(state, command.name, response.ok)
"""

from .commands import (
    Auth,
    AuthList,
    Capa,
    Command,
    Dele,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from .framing import NEED_DATA, Line, LineBuffer, LineTooLong, NeedData
from .message import top_of
from .params import DEFAULT_PARAMS, Params
from .parser import CANCEL, COMMANDS, KEYWORDS, Cancel, Rejected, decode_plain, parse_command, parse_sasl_response
from .replies import Code, Continuation, MultiLine, R, Reply, Response, dot_stuff
from .state import LEGAL, TRANSITIONS, State, is_legal, next_state, refusal

__all__ = [
    "CANCEL",
    "COMMANDS",
    "DEFAULT_PARAMS",
    "KEYWORDS",
    "LEGAL",
    "NEED_DATA",
    "TRANSITIONS",
    "Auth",
    "AuthList",
    "Cancel",
    "Capa",
    "Code",
    "Command",
    "Continuation",
    "Dele",
    "Line",
    "LineBuffer",
    "LineTooLong",
    "List",
    "MultiLine",
    "NeedData",
    "Noop",
    "Params",
    "Pass",
    "Quit",
    "R",
    "Rejected",
    "Reply",
    "Response",
    "Retr",
    "Rset",
    "Stat",
    "State",
    "Stls",
    "Top",
    "Uidl",
    "User",
    "decode_plain",
    "dot_stuff",
    "is_legal",
    "next_state",
    "parse_command",
    "parse_sasl_response",
    "refusal",
    "top_of",
]
