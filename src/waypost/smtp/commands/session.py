"""Session commands: the greeting (EHLO, HELO, LHLO), STARTTLS, RSET, NOOP, HELP,
VRFY, EXPN, QUIT (RFC 5321 §4.1.1, RFC 3207, RFC 2033 §4.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..proto import Mode
from ..replies import R, Reply

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS"]

#: HELP <command>: the syntax of each command (RFC 5321 §4.1.1, RFC 4954, RFC 3207,
#: RFC 1985, RFC 2645, RFC 3030, RFC 2033).
HELP_SYNTAX = {
    "EHLO": "EHLO domain",
    "HELO": "HELO domain",
    "LHLO": "LHLO domain",
    "STARTTLS": "STARTTLS",
    "AUTH": "AUTH mechanism [initial-response]",
    "MAIL": "MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8] [RET=FULL|HDRS] [ENVID=id]",
    "RCPT": "RCPT TO:<address> [NOTIFY=NEVER|SUCCESS,FAILURE,DELAY] [ORCPT=type;address]",
    "DATA": "DATA (then the message, ended by a line holding only a dot)",
    "BDAT": "BDAT size [LAST] (then exactly size octets of the message)",
    "BURL": "BURL imap-url [LAST] (the message part a URLAUTH URL names)",
    "RSET": "RSET",
    "NOOP": "NOOP",
    "VRFY": "VRFY address",
    "HELP": "HELP [command]",
    "QUIT": "QUIT",
    "ETRN": "ETRN [@|#]domain",
    "ATRN": "ATRN [domain[,domain...]]",
    "TURN": "TURN",
}


def _greet(s: WaypostSMTP, verb: str, hostname: str | None, extended: bool) -> bool:
    if not hostname:
        s.send(R.PARAM_SYNTAX.with_text(f"Syntax: {verb} hostname"))
        return False
    s.reset_transaction()
    s.extended = extended
    s.host_name = hostname
    return True


async def helo(s: WaypostSMTP, arg: str | None) -> None:
    if _greet(s, "HELO", arg, False):
        s.send(f"250 {s.settings.server.hostname}", raw=True)


async def ehlo(s: WaypostSMTP, arg: str | None) -> None:
    """RFC 5321 §4.1.1.1 (and LHLO, RFC 2033 §4.1): the extensions of this listener,
    in one write."""
    if not _greet(s, "LHLO" if s.mode is Mode.LMTP else "EHLO", arg, True):
        return
    auth: list[str] = []
    if s.mode is not Mode.LMTP:
        if not s.settings.smtp.auth_requires_tls or s.tls:
            auth = s.auth_methods
        elif "CRAM-MD5" in s.auth_methods:
            # A challenge-response mechanism shows no password: offered before TLS too
            # (RFC 2645 ODMR clients such as fetchmail use it).
            auth = ["CRAM-MD5"]
    lines = [s.settings.server.hostname] + s.params.extensions(tls_offered=s.tls_offered(), auth=auth,
                                                                    authenticated=s.authenticated)
    s.send_lines(250, lines)


async def starttls(s: WaypostSMTP, arg: str | None) -> None:
    if arg:
        s.send(R.PARAM_SYNTAX.with_text("Syntax: STARTTLS"))
        return
    if not s.tls_offered():
        s.send(R.TLS_UNAVAILABLE)
        return
    s.send(Reply(220, "2.0.0", "Ready to start TLS"))
    await s.start_tls()


async def noop(s: WaypostSMTP, arg: str | None) -> None:
    s.send(R.OK)


async def rset(s: WaypostSMTP, arg: str | None) -> None:
    if arg:
        s.send(R.PARAM_SYNTAX.with_text("Syntax: RSET"))
        return
    s.reset_transaction()
    s.send(R.OK)


async def help_(s: WaypostSMTP, arg: str | None) -> None:
    """RFC 5321 §4.1.1.8: 211 or 214 with help; the commands of this listener, or
    the syntax of one of them; 504 for a topic we have no help for."""
    commands = s.params.verbs(tls_offered=s.tls_offered())
    if not arg:
        s.send(R.HELP.with_text("Commands: " + " ".join(commands)))
        return
    topic = arg.split()[0].upper()
    if topic not in commands:
        s.send(R.HELP_UNKNOWN.with_text(f"HELP topic {topic[:20]} unknown"))
        return
    s.send(R.HELP.with_text(f"Syntax: {HELP_SYNTAX[topic]}"))


async def vrfy(s: WaypostSMTP, arg: str | None) -> None:
    if not arg:  # RFC 5321 §4.1.1.6: VRFY takes a string naming a user or mailbox
        s.send(R.VRFY_SYNTAX)
        return
    # RFC 5321 §3.5.3: 252 when we will not verify (it would leak accounts).
    s.send(Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"))


async def expn(s: WaypostSMTP, arg: str | None) -> None:
    s.send(Reply(502, "5.5.1", "EXPN not available"))


async def quit_(s: WaypostSMTP, arg: str | None) -> None:
    if arg:
        s.send(R.PARAM_SYNTAX.with_text("Syntax: QUIT"))
        return
    s.send(R.BYE)
    s.finish()


HANDLERS = {
    "HELO": helo,
    "EHLO": ehlo,
    "LHLO": ehlo,
    "STARTTLS": starttls,
    "NOOP": noop,
    "RSET": rset,
    "HELP": help_,
    "VRFY": vrfy,
    "EXPN": expn,
    "QUIT": quit_,
}
