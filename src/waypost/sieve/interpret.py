"""Running a checked script against one message: tests evaluated, actions collected
(RFC 5228 §2.10), no I/O.  The caller (local delivery) carries the actions out.

What the result means (RFC 5228 §2.10.2): the implicit keep stores the message in
INBOX unless a ``discard``, a ``fileinto`` or ``redirect`` without ``:copy``, or a
``reject`` cancelled it.  A ``fileinto`` of one mailbox twice stores once (§2.10.3).
A run-time error (RFC 5228 §2.10.6) drops every action and keeps the message; the
caller logs the error.  ``reject``/``ereject`` with ``keep``, ``fileinto``,
``redirect`` or ``vacation`` is such an error (RFC 5429 §2.2).
"""

from __future__ import annotations

import datetime
import email
import email.policy
import email.utils
import time
import functools
import hashlib
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.utils import getaddresses
from typing import Callable, Iterable, Sequence

from .check import Script
from .grammar import Argument, Command, Number, SieveError, StringList, Test

__all__ = ["Action", "Message", "Result", "run"]

#: Most actions one run may take (redirects included): a bound on what a script does.
MAX_ACTIONS = 64
#: Most redirects one run may send (RFC 5228 §4.2: limit them).
MAX_REDIRECTS = 4
#: editheader (RFC 5293 §7): fields a script may neither add nor delete.
PROTECTED_FIELDS = ("received", "auto-submitted", "return-path", "delivered-to")
#: The longest value addheader writes.
MAX_FIELD = 998 - 80
#: Octets of a message the body test looks at (RFC 5173 §6: a site may limit it).
MAX_BODY = 1024 * 1024
#: vacation :days bounds (RFC 5230 §4.1: the site may narrow the range).
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 90, 7

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Message:
    """What a script sees of one delivery.  The header is split once, and each
    field's decoded values and addresses are kept for the tests that ask again."""

    __slots__ = ("data", "sender", "recipient", "mailbox_exists", "now", "_fields", "_values", "_addresses",
                 "_parts")

    def __init__(self, data: bytes, sender: str, recipient: str,
                 mailbox_exists: Callable[[str], bool] = lambda name: False, now: float | None = None) -> None:
        self.now = time.time() if now is None else now  # currentdate (RFC 5260 §5)
        self.data = data                    # the message as stored (header and body)
        self.sender = sender                # envelope MAIL FROM ("" for the null sender)
        self.recipient = recipient          # envelope RCPT TO as the client gave it
        self.mailbox_exists = mailbox_exists
        self._fields: dict[str, list[str]] | None = None
        self._values: dict[str, list[str]] = {}
        self._addresses: dict[str, list[str]] = {}
        self._parts: list[tuple[str, str]] | None = None

    def body(self, transform: str, types: Sequence[str] = ()) -> list[str]:
        """The body as the ``body`` test sees it (RFC 5173 §5): ``raw`` the octets after
        the header; ``text`` the decoded text/* parts; ``content`` the decoded parts
        of the given types ("" any, "text" any text/*, "text/html" exactly).  At most
        ``MAX_BODY`` octets are looked at."""
        if transform == "raw":
            end = self.data.find(b"\r\n\r\n")
            raw = b"" if end < 0 else self.data[end + 4:end + 4 + MAX_BODY]
            return [raw.decode("utf-8", "replace")]
        if self._parts is None:
            self._parts = _parts(self.data[:MAX_BODY])
        if transform == "text":
            types = ("text",)
        out = []
        for ctype, text in self._parts:
            major = ctype.partition("/")[0]
            if any(t == "" or t.lower() == ctype or ("/" not in t and t.lower() == major) for t in types):
                out.append(text)
        return out

    def fields(self) -> dict[str, list[str]]:
        """Field name (lower case) -> raw values, unfolded, in order (RFC 5322 §2.2)."""
        if self._fields is None:
            end = self.data.find(b"\r\n\r\n")
            block = (self.data if end < 0 else self.data[:end]).decode("utf-8", "replace")
            out: dict[str, list[str]] = {}
            last: list[str] | None = None
            for line in block.split("\r\n"):
                if line[:1] in (" ", "\t"):
                    if last is not None:
                        last[-1] += " " + line.strip()
                    continue
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.rstrip():
                    last = None
                    continue
                last = out.setdefault(name.lower(), [])
                last.append(value.strip())
            self._fields = out
        return self._fields

    def header_values(self, name: str) -> list[str]:
        key = name.lower()
        got = self._values.get(key)
        if got is None:
            got = self._values[key] = [_decode(v) for v in self.fields().get(key, ())]
        return got

    def addresses(self, name: str) -> list[str]:
        key = name.lower()
        got = self._addresses.get(key)
        if got is None:
            raw = self.fields().get(key, ())
            got = self._addresses[key] = [a for _n, a in getaddresses(list(raw)) if a] if raw else []
        return got

    def replace(self, data: bytes) -> None:
        """The message after an edit (editheader): what later tests see."""
        self.data = data
        self._fields = None
        self._values.clear()
        self._addresses.clear()
        self._parts = None

    def first(self, name: str) -> str:
        """The first raw value of a field, "" when there is none."""
        values = self.fields().get(name.lower())
        return values[0] if values else ""


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do.  ``kind``: keep, fileinto, redirect, discard, reject, ereject,
    vacation.  ``flags`` for keep/fileinto (imap4flags); ``create`` for fileinto
    (RFC 5490 :create); the vacation fields as RFC 5230 names them."""

    kind: str
    target: str = ""                 # mailbox (fileinto), address (redirect)
    flags: tuple[str, ...] = ()
    copy: bool = False
    create: bool = False
    days: int = DEFAULT_DAYS
    subject: str = ""
    from_: str = ""
    addresses: tuple[str, ...] = ()
    mime: bool = False
    handle: str = ""
    reason: str = ""                 # reject, ereject, vacation: the text


@dataclass(slots=True)
class Result:
    actions: list[Action] = field(default_factory=list)
    implicit_keep: bool = True
    flags: tuple[str, ...] = ()      # the imap4flags internal variable at the end (implicit keep)
    error: SieveError | None = None  # a run-time error: the caller keeps the message
    data: bytes | None = None        # the message as editheader left it (None: unchanged)

    def deliveries(self) -> list[tuple[str, tuple[str, ...]]]:
        """(mailbox, flags) to store into, keep first, each mailbox once."""
        out: dict[str, tuple[str, ...]] = {}
        if self.implicit_keep:
            out["INBOX"] = self.flags
        for a in self.actions:
            if a.kind == "keep":
                out.setdefault("INBOX", a.flags)
            elif a.kind == "fileinto":
                out.setdefault(a.target, a.flags)
        return list(out.items())


class _Stop(Exception):
    pass


class _Run:
    def __init__(self, script: Script, msg: Message) -> None:
        self.script = script
        self.msg = msg
        self.result = Result()
        self.variables: dict[str, str] = {}
        self.matched: list[str] = []      # ${0}..${9} of the last :matches that matched
        self.flags: dict[str, list[str]] = {"": []}  # imap4flags: "" is the internal variable
        self.has_variables = "variables" in script.extensions
        self.edited = False

    # -- strings ---------------------------------------------------------------------

    def expand(self, s: str) -> str:
        if not self.has_variables or "${" not in s:
            return s
        return _VAR.sub(self._variable, s)

    def _variable(self, m: re.Match[str]) -> str:
        name = m.group(1)
        if name.isdigit():
            n = int(name)
            return self.matched[n] if n < len(self.matched) else ""
        return self.variables.get(name.lower(), "")

    def strings(self, a: Argument | None) -> list[str]:
        if not isinstance(a, StringList):
            return []
        if not self.has_variables:
            return list(a.values)
        return [self.expand(v) for v in a.values]

    def string(self, a: Argument | None) -> str:
        values = self.strings(a)
        return values[0] if values else ""

    # -- commands --------------------------------------------------------------------

    def block(self, commands: list[Command]) -> None:
        branch_taken = False
        for cmd in commands:
            name = cmd.name
            if name == "require":
                continue
            if name == "if":
                branch_taken = self.test(cmd.tests[0])
                if branch_taken:
                    self.block(cmd.block or [])
                continue
            if name == "elsif":
                if not branch_taken:
                    branch_taken = self.test(cmd.tests[0])
                    if branch_taken:
                        self.block(cmd.block or [])
                continue
            if name == "else":
                if not branch_taken:
                    self.block(cmd.block or [])
                continue
            self.command(cmd)

    def add(self, action: Action, cmd: Command) -> None:
        if len(self.result.actions) >= MAX_ACTIONS:
            raise SieveError(f"more than {MAX_ACTIONS} actions", cmd.line, cmd.column)
        self.result.actions.append(action)

    def command(self, cmd: Command) -> None:
        name, tags, pos = cmd.name, cmd.tags, cmd.positional
        if name == "stop":
            raise _Stop
        if name == "keep":
            self.add(Action("keep", flags=self.flags_for(tags)), cmd)
        elif name == "discard":
            self.result.implicit_keep = False
            self.add(Action("discard"), cmd)
        elif name == "fileinto":
            copy = "copy" in tags
            if not copy:
                self.result.implicit_keep = False
            self.add(Action("fileinto", self.string(pos[0]), self.flags_for(tags), copy, "create" in tags), cmd)
        elif name == "redirect":
            if sum(1 for a in self.result.actions if a.kind == "redirect") >= MAX_REDIRECTS:
                raise SieveError(f"more than {MAX_REDIRECTS} redirects", cmd.line, cmd.column)
            target = self.string(pos[0])
            if "@" not in target:
                raise SieveError(f"redirect to {target!r}: not an address", cmd.line, cmd.column)
            copy = "copy" in tags
            if not copy:
                self.result.implicit_keep = False
            self.add(Action("redirect", target, copy=copy), cmd)
        elif name in ("reject", "ereject"):
            self.result.implicit_keep = False
            self.add(Action(name, reason=self.string(pos[0])), cmd)
        elif name == "vacation":
            self.vacation(cmd)
        elif name in ("setflag", "addflag", "removeflag"):
            var = self.string(pos[0]).lower() if len(pos) == 2 else ""
            given = _flag_list(self.strings(pos[-1]))
            current = self.flags.setdefault(var, [])
            if name == "setflag":
                current[:] = given
            elif name == "addflag":
                current.extend(f for f in given if f.lower() not in {c.lower() for c in current})
            else:
                drop = {f.lower() for f in given}
                current[:] = [c for c in current if c.lower() not in drop]
        elif name == "addheader":
            self.add_header(cmd)
        elif name == "deleteheader":
            self.delete_header(cmd)
        elif name == "set":
            value = self.string(pos[1])
            # RFC 5229 §4.1: modifiers apply from the highest precedence down.
            if "lower" in tags:
                value = value.lower()
            if "upper" in tags:
                value = value.upper()
            if "lowerfirst" in tags:
                value = value[:1].lower() + value[1:]
            if "upperfirst" in tags:
                value = value[:1].upper() + value[1:]
            if "quotewildcard" in tags:
                value = re.sub(r"([*?\\])", r"\\\1", value)
            if "length" in tags:
                value = str(len(value))
            self.variables[self.string(pos[0]).lower()] = value
        else:  # pragma: no cover - the checker knows every command
            raise SieveError(f"unknown command {name!r}", cmd.line, cmd.column)

    # -- editheader (RFC 5293) -----------------------------------------------------------

    def add_header(self, cmd: Command) -> None:
        name = self.string(cmd.positional[0])
        if name.lower() in PROTECTED_FIELDS:
            return  # RFC 5293 §7: never added by a script; ignored
        value = " ".join(self.string(cmd.positional[1]).split())[:MAX_FIELD]
        if not value.isascii():
            value = Header(value, "utf-8").encode()
        line = f"{name}: {value}\r\n".encode()
        data = self.msg.data
        if "last" in cmd.tags:
            end = data.find(b"\r\n\r\n")
            cut = len(data) if end < 0 else end + 2
            self.msg.replace(data[:cut] + line + data[cut:])
        else:
            self.msg.replace(line + data)
        self.edited = True

    def delete_header(self, cmd: Command) -> None:
        name = self.string(cmd.positional[0]).lower()
        if name in PROTECTED_FIELDS:
            return  # RFC 5293 §7
        patterns = self.strings(cmd.positional[1]) if len(cmd.positional) == 2 else None
        data = self.msg.data
        end = data.find(b"\r\n\r\n")
        head, rest = (data, b"") if end < 0 else (data[:end + 2], data[end + 2:])
        fields = _split_fields(head)
        named = [i for i, (n, _raw) in enumerate(fields) if n == name]
        index = cmd.tags.get("index")
        if isinstance(index, Number):
            k = index.value
            pick = named[-k] if "last" in cmd.tags and 0 < k <= len(named) else \
                named[k - 1] if "last" not in cmd.tags and 0 < k <= len(named) else None
            named = [] if pick is None else [pick]
        drop = set()
        for i in named:
            if patterns is None:
                drop.add(i)
                continue
            value = _decode(fields[i][1].decode("utf-8", "replace").partition(":")[2].replace("\r\n", "").strip())
            probe = Test("header", [], [], cmd.line, cmd.column, dict(cmd.tags), [], _comparator_of(cmd))
            if self.match(probe, [value], patterns):
                drop.add(i)
        if drop:
            self.msg.replace(b"".join(raw for i, (_n, raw) in enumerate(fields) if i not in drop) + rest)
            self.edited = True

    def flags_for(self, tags: dict[str, Argument | None]) -> tuple[str, ...]:
        if "flags" in tags:
            return tuple(_flag_list(self.strings(tags["flags"])))
        return tuple(self.flags[""])

    def vacation(self, cmd: Command) -> None:
        tags = cmd.tags
        days = tags.get("days")
        n = days.value if isinstance(days, Number) else DEFAULT_DAYS
        reason = self.string(cmd.positional[0])
        subject = self.string(tags.get("subject"))
        from_ = self.string(tags.get("from"))
        mime = "mime" in tags
        # RFC 5230 §4.2: without :handle, the handle is made of the arguments, so that a
        # changed reply goes out again to those who had the old one.
        handle = self.string(tags.get("handle")) or hashlib.sha256(
            "\0".join((reason, subject, from_, str(mime))).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        if any(a.kind == "vacation" for a in self.result.actions):
            raise SieveError("vacation given twice", cmd.line, cmd.column)
        self.add(Action("vacation", days=max(MIN_DAYS, min(MAX_DAYS, n)), subject=subject, from_=from_,
                        addresses=tuple(self.strings(tags.get("addresses"))), mime=mime, handle=handle,
                        reason=reason), cmd)

    # -- tests -----------------------------------------------------------------------

    def test(self, t: Test) -> bool:
        name = t.name
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(t.tests[0])
        if name == "allof":
            return all(self.test(x) for x in t.tests)
        if name == "anyof":
            return any(self.test(x) for x in t.tests)
        if name == "size":
            size = len(self.msg.data)
            over, under = t.tags.get("over"), t.tags.get("under")
            if isinstance(over, Number):
                return size > over.value
            return isinstance(under, Number) and size < under.value
        if name == "exists":
            return all(self.msg.header_values(h) for h in self.strings(t.positional[0]))
        if name == "mailboxexists":
            return all(self.msg.mailbox_exists(m) for m in self.strings(t.positional[0]))
        keys = self.strings(t.positional[-1])
        values: list[str | None]
        if name == "header":
            values = [v for h in self.strings(t.positional[0]) for v in self.msg.header_values(h)]
        elif name == "address":
            values = [_part(a, t) for h in self.strings(t.positional[0]) for a in self.msg.addresses(h)]
        elif name == "envelope":
            values = []
            for part in self.strings(t.positional[0]):
                p = part.lower()
                if p == "from":
                    values.append(_part(self.msg.sender, t))
                elif p == "to":
                    values.append(_part(self.msg.recipient, t))
        elif name == "string":
            values = list[str | None](self.strings(t.positional[0]))
        elif name in ("date", "currentdate"):
            values = list[str | None](self.date_values(t))
        elif name == "body":
            transform = "raw" if "raw" in t.tags else "content" if "content" in t.tags else "text"
            values = list[str | None](self.msg.body(transform, self.strings(t.tags.get("content"))))
        elif name == "hasflag":
            if len(t.positional) == 2:
                names = [v.lower() for v in self.strings(t.positional[0])]
                values = [f for n in names for f in self.flags.get(n, [])]
            else:
                values = list(self.flags[""])
            keys = _flag_list(keys)
        else:  # pragma: no cover - the checker knows every test
            raise SieveError(f"unknown test {name!r}", t.line, t.column)
        return self.match(t, [v for v in values if v is not None], keys)

    def date_values(self, t: Test) -> list[str]:
        """RFC 5260: the date-part of a header's date (``date``) or of now
        (``currentdate``), in ``:zone``, the header's own zone (``:originalzone``), or
        the server's local zone."""
        part = self.string(t.positional[-2]).lower()
        if t.name == "currentdate":
            when = datetime.datetime.fromtimestamp(self.msg.now).astimezone()
        else:
            raw = self.msg.header_values(self.string(t.positional[0]))
            if not raw:
                return []
            try:
                when = email.utils.parsedate_to_datetime(raw[0])
            except (TypeError, ValueError, IndexError):
                return []
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            if "originalzone" not in t.tags and "zone" not in t.tags:
                when = when.astimezone()
        zone = t.tags.get("zone")
        if isinstance(zone, StringList):
            z = zone.values[0]
            offset = (int(z[1:3]) * 60 + int(z[3:5])) * (-1 if z[0] == "-" else 1)
            when = when.astimezone(datetime.timezone(datetime.timedelta(minutes=offset)))
        return [_date_part(when, part)]

    def match(self, t: Test, values: list[str], keys: list[str]) -> bool:
        if not values:
            return False if "count" not in t.tags else self._count(t, values, keys)
        comparator = t.comparator
        count = t.tags.get("count")
        if isinstance(count, StringList):  # RFC 5231 §4.2: the number of values
            n = str(len(values))
            return any(_relation(count.values[0], _compare_numeric(n, k)) for k in keys)
        value_rel = t.tags.get("value")
        if isinstance(value_rel, StringList):
            return any(_relation(value_rel.values[0], _compare(comparator, v, k)) for v in values for k in keys)
        if "contains" in t.tags:
            fold = _fold(comparator)
            folded = [fold(k) for k in keys]
            return any(k in fold(v) for v in values for k in folded)
        if "matches" in t.tags:
            for k in keys:
                rx = _glob(k, comparator)
                for v in values:
                    m = rx.fullmatch(v)
                    if m is not None:
                        if self.has_variables:
                            self.matched = [v, *[g or "" for g in m.groups()]][:10]
                        return True
            return False
        if comparator == "i;ascii-numeric":
            return any(_compare_numeric(v, k) == 0 for v in values for k in keys)
        fold = _fold(comparator)
        wanted = {fold(k) for k in keys}
        return any(fold(v) in wanted for v in values)

    def _count(self, t: Test, values: list[str], keys: list[str]) -> bool:
        count = t.tags["count"]
        assert isinstance(count, StringList)
        n = str(len(values))
        return any(_relation(count.values[0], _compare_numeric(n, k)) for k in keys)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*|[0-9]+)\}")


def _decode(value: str) -> str:
    """A header field value unfolded, with RFC 2047 encoded words decoded (RFC 5228
    §2.7.2: comparisons are on the decoded text)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def _part(address: str, t: Test) -> str | None:
    """The address part a test compares (RFC 5228 §2.7.4, RFC 5233 :user/:detail)."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if "localpart" in t.tags:
        return local
    if "domain" in t.tags:
        return domain
    if "user" in t.tags:
        return local.partition("+")[0]
    if "detail" in t.tags:
        user, plus, detail = local.partition("+")
        return detail if plus else None  # no detail: nothing to match (RFC 5233 §4)
    return address


def _flag_list(values: Iterable[str]) -> list[str]:
    """RFC 5232 §3: each string is a space-separated list of flags; one of each."""
    out: list[str] = []
    seen: set[str] = set()
    for v in values:
        for f in v.split():
            if f.lower() not in seen:
                seen.add(f.lower())
                out.append(_SYSTEM.get(f.lower(), f))
    return out


_SYSTEM = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}


def _parts(data: bytes) -> list[tuple[str, str]]:
    """(content type, decoded text) of each leaf part; a part that cannot be decoded
    gives its text as it stands (never an error: the test then just does not match)."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out: list[tuple[str, str]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        try:
            content = part.get_content()
        except (LookupError, ValueError, AssertionError, KeyError):
            payload = part.get_payload(decode=True)
            content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace") if ctype.startswith("text/") else ""
        elif not isinstance(content, str):
            content = ""
        out.append((ctype, content))
    return out


def _split_fields(head: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, raw lines with CRLF) of each field of a header block."""
    out: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line + b"\r\n")
        else:
            out.append((line.partition(b":")[0].decode("ascii", "replace").strip().lower(), line + b"\r\n"))
    return out


def _comparator_of(cmd: Command) -> str:
    c = cmd.tags.get("comparator")
    return c.values[0].lower() if isinstance(c, StringList) else "i;ascii-casemap"


def _date_part(when: datetime.datetime, part: str) -> str:
    """RFC 5260 §4.2."""
    off = when.utcoffset() or datetime.timedelta(0)
    minutes = int(off.total_seconds() // 60)
    zone = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    if part == "year":
        return f"{when.year:04d}"
    if part == "month":
        return f"{when.month:02d}"
    if part == "day":
        return f"{when.day:02d}"
    if part == "date":
        return when.strftime("%Y-%m-%d")
    if part == "julian":  # Modified Julian Day
        return str((when.date() - datetime.date(1858, 11, 17)).days)
    if part == "hour":
        return f"{when.hour:02d}"
    if part == "minute":
        return f"{when.minute:02d}"
    if part == "second":
        return f"{when.second:02d}"
    if part == "time":
        return when.strftime("%H:%M:%S")
    if part == "iso8601":
        return when.strftime("%Y-%m-%dT%H:%M:%S") + f"{zone[:3]}:{zone[3:]}"
    if part == "std11":
        return email.utils.format_datetime(when)
    if part == "zone":
        return zone
    return str((when.weekday() + 1) % 7)  # weekday: 0 is Sunday


def _same(s: str) -> str:
    return s


def _casemap(s: str) -> str:
    return s.translate(_ASCII_LOWER) if not s.islower() else s


def _fold(comparator: str) -> Callable[[str], str]:
    return _same if comparator == "i;octet" else _casemap


def _compare_numeric(a: str, b: str) -> int:
    """i;ascii-numeric (RFC 4790 §9.1): the leading digits as a number; none is +inf."""
    def num(s: str) -> float:
        m = re.match(r"[0-9]+", s)
        return float("inf") if m is None else int(m.group())
    x, y = num(a), num(b)
    return (x > y) - (x < y)


def _compare(comparator: str, a: str, b: str) -> int:
    if comparator == "i;ascii-numeric":
        return _compare_numeric(a, b)
    fold = _fold(comparator)
    x, y = fold(a), fold(b)
    return (x > y) - (x < y)


def _relation(rel: str, cmp: int) -> bool:
    return {"gt": cmp > 0, "ge": cmp >= 0, "lt": cmp < 0, "le": cmp <= 0, "eq": cmp == 0, "ne": cmp != 0}[rel.lower()]


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str, comparator: str) -> re.Pattern[str]:
    """:matches (RFC 5228 §2.7.1): "*" any run, "?" one character, "\\" quotes."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append("(.*?)" if ch == "*" else "(.)" if ch == "?" else re.escape(ch))
        i += 1
    flags = re.DOTALL | (0 if comparator == "i;octet" else re.IGNORECASE | re.ASCII)
    return re.compile("".join(out), flags)


def run(script: Script, msg: Message) -> Result:
    """Run the script.  Never raises for what a message contains: a run-time error is
    returned in ``Result.error`` with the implicit keep restored and no actions."""
    r = _Run(script, msg)
    try:
        r.block(script.commands)
    except _Stop:
        pass
    except SieveError as e:
        return Result(error=e)
    result = r.result
    result.flags = tuple(r.flags[""])
    if r.edited:
        result.data = msg.data
    kinds = {a.kind for a in result.actions}
    if kinds & {"reject", "ereject"} and kinds & {"keep", "fileinto", "redirect", "vacation"}:
        first = next(a for a in result.actions if a.kind in ("reject", "ereject"))
        return Result(error=SieveError(f"{first.kind} cannot be combined with keep, fileinto, redirect or vacation"
                                       " (RFC 5429 §2.2)", 1))
    return result
