"""The grammar of SMTP commands, quoting RFC 5321 and the extensions' RFCs.

Pure functions: a command line or an argument in, a typed command or the ``Reply``
that refuses it out.  No I/O, no settings: limits come in ``Params``.
"""

from __future__ import annotations

import re

from ..replies import R, Reply
from .commands import Auth, Bdat, Burl, Line, Mail, MailOptions, Rcpt
from .params import Params

__all__ = [
    "parse_auth", "parse_bdat", "parse_line", "parse_mail", "parse_mail_params", "parse_rcpt",
    "parse_rcpt_params", "split_path",
]

# RFC 3461 §4.1: notify-esmtp-value = "NEVER" / 1#notify-list-element
_NOTIFY = re.compile(r"^(NEVER|(SUCCESS|FAILURE|DELAY)(,(SUCCESS|FAILURE|DELAY))*)$")
# RFC 3461 §4: xtext = *( xchar / hexchar ); ENVID at most 100 characters (§4.4)
_XTEXT = re.compile(r"^([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+$")
# RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF
#              chunk-size = 1*DIGIT;  end-marker = "LAST"
_BDAT = re.compile(r"^([0-9]{1,18})(?: +(LAST))? *$", re.I)
# RFC 4468 §7: burl-cmd = "BURL" SP absolute-URI [SP end-marker] CRLF
#              end-marker = "LAST"
_BURL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:[\x21-\x7e]+)(?: +(LAST))? *$", re.I)


def parse_line(line: bytes, params: Params) -> Line | Reply:
    """One command line (without CRLF) → its verb and argument, or the refusal.

    RFC 5321 §4.1.1: ``verb [SP argument] CRLF``; a NUL, a non-UTF-8 octet, or UTF-8
    without SMTPUTF8 (RFC 6531 §3.3) is refused here, before any state is looked at."""
    if b"\x00" in line:
        return R.NUL_IN_COMMAND
    if not line:
        return R.BAD_SYNTAX
    verb_b, _, arg_b = line.partition(b" ")
    try:
        verb = verb_b.upper().decode("ascii")
        stripped = arg_b.strip()
        arg = stripped.decode("utf-8") if stripped else None
    except UnicodeDecodeError:
        return R.NOT_8BIT
    if arg is not None and not params.smtputf8 and not arg.isascii():
        return R.NOT_8BIT
    return Line(verb, arg)


def split_path(arg: str | None, keyword: str) -> tuple[str, list[tuple[str, str | None]]] | None:
    """``FROM:<path> params`` → (address, [(KEY, value)]), or None when malformed.

    RFC 5321 §4.1.2: Reverse-path / Forward-path = Path;  Path = "<" [ A-d-l ":" ] Mailbox ">"
    A source route (A-d-l) is accepted and ignored (§4.1.1.3, §C).
    Mail-parameters = esmtp-param *(SP esmtp-param);  esmtp-param = esmtp-keyword ["=" esmtp-value]"""
    if arg is None or not arg[: len(keyword)].upper() == keyword:
        return None
    rest = arg[len(keyword):].lstrip()
    if not rest.startswith("<"):
        return None
    # Find the closing ">" outside a quoted local part.
    in_quote = escaped = False
    close = -1
    for i, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif ch == "\\" and in_quote:
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == ">" and not in_quote:
            close = i
            break
    if close < 0:
        return None
    path = rest[1:close]
    if path.startswith("@"):
        _route, colon, mailbox = path.partition(":")
        if not colon:
            return None
        path = mailbox
    params: list[tuple[str, str | None]] = []
    for word in rest[close + 1:].split():
        key, eq, value = word.partition("=")
        if not key or not _KEYWORD.match(key) or (eq and not value):
            return None
        params.append((key.upper(), value if eq else None))
    return path, params


def parse_mail(arg: str | None) -> Mail | Reply:
    parsed = split_path(arg, "FROM:")
    if parsed is None:
        return R.PARAM_SYNTAX.with_text("Syntax: MAIL FROM:<address> [parameters]")
    return Mail(parsed[0], parsed[1])


def parse_rcpt(arg: str | None) -> Rcpt | Reply:
    parsed = split_path(arg, "TO:")
    if parsed is None or not parsed[0]:
        return R.PARAM_SYNTAX.with_text("Syntax: RCPT TO:<address> [parameters]")
    return Rcpt(parsed[0], parsed[1])


def parse_mail_params(items: list[tuple[str, str | None]], params: Params) -> MailOptions | Reply:
    """The MAIL parameters we know, checked in the order given."""
    opts = MailOptions()
    for key, value in items:
        if key == "SIZE":  # RFC 1870 §6: size-value = 1*20DIGIT
            if not value or not (value.isascii() and value.isdigit()):
                return R.PARAM_SYNTAX.with_text("SIZE needs a number")
            if int(value) > params.max_message_size:
                return R.TOO_BIG
            opts.size = int(value)
        elif key == "BODY":  # RFC 6152 §2: BODY=7BIT / BODY=8BITMIME
            if (value or "").upper() not in ("7BIT", "8BITMIME"):
                return R.PARAM_SYNTAX.with_text("BODY must be 7BIT or 8BITMIME")
            opts.body = (value or "").upper()
        elif key == "SMTPUTF8":  # RFC 6531 §3.4: a parameter without a value
            if value is not None or not params.smtputf8:
                return R.UNKNOWN_PARAM.with_text("SMTPUTF8 takes no value" if value else "SMTPUTF8 not offered")
            opts.smtputf8 = True
        elif key == "RET":  # RFC 3461 §4.3: ret-value = "FULL" / "HDRS"
            if (value or "").upper() not in ("FULL", "HDRS"):
                return R.PARAM_SYNTAX.with_text("RET must be FULL or HDRS")
            opts.ret = (value or "").upper()
        elif key == "ENVID":  # RFC 3461 §4.4
            if not value or len(value) > 100 or not _XTEXT.match(value):
                return R.PARAM_SYNTAX.with_text("ENVID must be xtext of at most 100 characters")
            opts.envid = value
        elif key == "AUTH":  # RFC 4954 §5: accepted; we do not trust it from outside
            continue
        else:
            return R.UNKNOWN_PARAM.with_text(f"MAIL parameter {key} not recognized")
    return opts


def parse_rcpt_params(items: list[tuple[str, str | None]]) -> tuple[str, str] | Reply:
    """RCPT parameters → (NOTIFY, ORCPT), "" for each one not given."""
    notify = orcpt = ""
    for key, value in items:
        if key == "NOTIFY":  # RFC 3461 §4.1
            v = (value or "").upper()
            if not _NOTIFY.match(v):
                return R.PARAM_SYNTAX.with_text("NOTIFY must be NEVER or SUCCESS, FAILURE, DELAY")
            notify = v
        elif key == "ORCPT":  # RFC 3461 §4.2: orcpt-parameter = "ORCPT=" addr-type ";" xtext
            atype, sep, xt = (value or "").partition(";")
            if not sep or not atype or not xt or not _XTEXT.match(xt):
                return R.PARAM_SYNTAX.with_text("ORCPT must be addr-type;xtext")
            orcpt = value or ""
        else:
            return R.UNKNOWN_PARAM.with_text(f"RCPT parameter {key} not recognized")
    return notify, orcpt


def parse_bdat(arg: str | None) -> Bdat | Reply:
    """RFC 3030 §2: ``BDAT chunk-size [LAST]``."""
    m = _BDAT.match(arg or "")
    if m is None:
        return R.PARAM_SYNTAX.with_text("Syntax: BDAT size [LAST]")
    return Bdat(int(m.group(1)), m.group(2) is not None)


def parse_burl(arg: str | None) -> Burl | Reply:
    """RFC 4468 §3: ``BURL absolute-URI [LAST]``."""
    m = _BURL.match(arg or "")
    if m is None:
        return R.PARAM_SYNTAX.with_text("Syntax: BURL absolute-URI [LAST]")
    return Burl(m.group(1), m.group(2) is not None)


def parse_auth(arg: str | None) -> Auth | Reply:
    """RFC 4954 §4: ``AUTH mechanism [initial-response]``."""
    if not arg:
        return Reply(501, "5.5.4", "Not enough value")
    words = arg.split()
    if len(words) > 2:
        return Reply(501, "5.5.4", "Too many values")
    return Auth(words[0].upper(), words[1] if len(words) == 2 else None)
