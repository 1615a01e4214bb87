"""Editing a script through its grammar (for WebUser's vacation page): the syntax tree
of ``grammar.parse`` written back as Sieve text (``unparse``), and the one vacation
rule a form manages found and replaced in that tree (``vacation_of``,
``with_vacation``).  Pure: text in, text out.

The rule the form manages is a ``vacation`` command at the top level of the script
(on), or alone in the block of a top-level ``if`` whose test is ``false`` (off: its
text is kept for the next time), a ``currentdate :value "ge"|"le" "date"`` bound (on
between two days), or ``allof`` of these.  A script that answers in other places (a ``vacation`` inside the user's own
tests) is not ours to rewrite: ``Foreign`` says so, and the user edits it with a
Sieve client.  Writing the tree back keeps every command and argument; comments and
the layout of the text are not kept (the result is checked by ``compile_script``
before it is stored).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from .check import compile_script
from .grammar import Argument, Command, Number, SieveError, StringList, Tag, Test, parse

__all__ = ["FIELDS", "Filter", "Foreign", "Vacation", "filters_of", "unparse", "vacation_of", "with_filter",
           "with_vacation", "without_filter"]

#: RFC 5230 §4.1: the default and the bounds a user may choose here.
DEFAULT_DAYS = 7
MAX_DAYS = 365


class Foreign(ValueError):
    """The script has vacation rules this page does not manage."""


@dataclass(frozen=True, slots=True)
class Vacation:
    enabled: bool
    reason: str
    subject: str = ""
    days: int = DEFAULT_DAYS
    start: str = ""     # YYYY-MM-DD: answer from this day on (the server's time zone)
    end: str = ""       # YYYY-MM-DD: up to and with this day


# -- writing the tree back ------------------------------------------------------------------


def _string(value: str) -> str:
    # RFC 5228 §2.4.2: in a quoted string only "\" and '"' need a "\"; line breaks may
    # stand as they are (the lexer reads CRLF).
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _argument(a: Argument) -> str:
    if isinstance(a, Tag):
        return ":" + a.name
    if isinstance(a, Number):
        return str(a.value)
    if a.single and len(a.values) == 1:
        return _string(a.values[0])
    return "[" + ", ".join(_string(v) for v in a.values) + "]"


def _test(t: Test) -> str:
    out = t.name
    if t.arguments:
        out += " " + " ".join(_argument(a) for a in t.arguments)
    if t.tests:
        if len(t.tests) == 1 and t.name not in ("anyof", "allof"):
            out += " " + _test(t.tests[0])
        else:
            out += " (" + ", ".join(_test(x) for x in t.tests) + ")"
    return out


def _command(c: Command, indent: str) -> str:
    out = indent + c.name
    if c.arguments:
        out += " " + " ".join(_argument(a) for a in c.arguments)
    if c.tests:
        if len(c.tests) == 1:
            out += " " + _test(c.tests[0])
        else:
            out += " (" + ", ".join(_test(x) for x in c.tests) + ")"
    if c.block is None:
        return out + ";\n"
    inner = "".join(_command(x, indent + "    ") for x in c.block)
    return out + " {\n" + inner + indent + "}\n"


def unparse(commands: list[Command]) -> str:
    """Sieve text that parses to ``commands`` again."""
    return "".join(_command(c, "") for c in commands)


# -- the managed vacation rule ----------------------------------------------------------------


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _bound(t: Test) -> tuple[str, str] | None:
    """("ge"|"le", "YYYY-MM-DD") of ``currentdate :value "ge"|"le" "date" "<date>"``."""
    a = t.arguments
    if (t.name != "currentdate" or t.tests or len(a) != 4 or not isinstance(a[0], Tag) or a[0].name != "value"
            or not all(isinstance(x, StringList) and len(x.values) == 1 for x in a[1:])):
        return None
    rel, part, date = (x.values[0] for x in a[1:] if isinstance(x, StringList))
    if rel.lower() not in ("ge", "le") or part.lower() != "date" or not _DATE.fullmatch(date):
        return None
    return rel.lower(), date


def _condition(c: Command) -> tuple[bool, str, str] | None:
    """(on, start, end) of a top-level ``if`` that holds the managed rule: its test is
    ``false`` (off), a date bound, or ``allof`` of these; its block the vacation alone."""
    if c.name != "if" or len(c.tests) != 1 or c.block is None or len(c.block) != 1 \
            or c.block[0].name != "vacation":
        return None
    t = c.tests[0]
    parts = t.tests if t.name == "allof" and not t.arguments else [t]
    on, start, end = True, "", ""
    for x in parts:
        if x.name == "false" and not x.arguments and not x.tests:
            on = False
            continue
        b = _bound(x)
        if b is None:
            return None
        if b[0] == "ge":
            start = b[1]
        else:
            end = b[1]
    return on, start, end


def _is_off(c: Command) -> bool:
    return _condition(c) is not None


def _walk(commands: list[Command]) -> list[Command]:
    out = []
    for c in commands:
        out.append(c)
        if c.block:
            out += _walk(c.block)
    return out


def _managed(commands: list[Command]) -> tuple[int, Command, tuple[bool, str, str]] | None:
    """(index at the top level, the vacation command, (on, start, end)) of the managed
    rule; Foreign when vacation is used anywhere else."""
    found: list[tuple[int, Command, tuple[bool, str, str]]] = []
    for i, c in enumerate(commands):
        if c.name == "vacation":
            found.append((i, c, (True, "", "")))
        else:
            cond = _condition(c)
            if cond is not None:
                assert c.block is not None
                found.append((i, c.block[0], cond))
    ours = {id(v) for _i, v, _on in found}
    if len(found) > 1 or any(c.name == "vacation" and id(c) not in ours for c in _walk(commands)):
        raise Foreign("the script sends vacation replies from rules of its own")
    return found[0] if found else None


def vacation_of(text: str) -> Vacation | None:
    """The managed vacation rule of a script (None: there is none); SieveError for a
    script that does not parse, Foreign (see above)."""
    script = compile_script(text)  # tags filled in by the checker
    got = _managed(script.commands)
    if got is None:
        return None
    _i, cmd, (on, start, end) = got
    reason = cmd.positional[0]
    subject = cmd.tags.get("subject")
    days = cmd.tags.get("days")
    return Vacation(on, reason.values[0] if isinstance(reason, StringList) else "",
                    subject.values[0] if isinstance(subject, StringList) else "",
                    days.value if isinstance(days, Number) else DEFAULT_DAYS, start, end)


def _vacation_command(v: Vacation, old: Command | None) -> Command:
    """The vacation command for ``v``: the old one's other tags (``:addresses``,
    ``:from``, ``:handle``, ``:mime``) kept, ``:days``, ``:subject`` and the reason set."""
    args: list[Argument] = []
    if old is not None:
        skip = False
        for a in old.arguments[:-1]:  # the last argument is the reason (RFC 5230 §4)
            if skip:
                skip = False
                continue
            if isinstance(a, Tag) and a.name in ("days", "subject"):
                skip = True
                continue
            args.append(a)
    args.append(Tag("days", 0, 0))
    args.append(Number(v.days, 0, 0))
    if v.subject:
        args.append(Tag("subject", 0, 0))
        args.append(StringList((v.subject,), 0, 0, True))
    args.append(StringList((v.reason,), 0, 0, True))
    return Command("vacation", args, [], None, 0, 0)


def with_vacation(text: str, v: Vacation) -> str:
    """``text`` (may be empty) with its managed vacation rule set to ``v``: replaced in
    place, or put first after ``require`` (so that no ``stop`` comes before it);
    ``require`` gets "vacation".  The result is checked (SieveError if it is not a
    script: a bug, never stored)."""
    if not 1 <= v.days <= MAX_DAYS:
        raise ValueError(f"days: 1 to {MAX_DAYS}")
    for date in (v.start, v.end):
        if date:
            try:
                datetime.date.fromisoformat(date)
            except ValueError:
                raise ValueError(f"{date!r} is not a date (YYYY-MM-DD)") from None
    if v.start and v.end and v.start > v.end:
        raise ValueError("the first day is after the last")
    commands = parse(text) if text.strip() else []
    compile_script(text) if text.strip() else None  # the old text must be a script
    got = _managed(commands)
    old = got[1] if got is not None else None
    vac = _vacation_command(v, old)
    tests: list[Test] = [] if v.enabled else [Test("false", [], [], 0, 0)]
    for rel, date in (("ge", v.start), ("le", v.end)):
        if date:
            # RFC 5260 §5 with RFC 5231: currentdate :value "ge" "date" "2026-12-24"
            tests.append(Test("currentdate", [Tag("value", 0, 0), StringList((rel,), 0, 0, True),
                                              StringList(("date",), 0, 0, True), StringList((date,), 0, 0, True)],
                              [], 0, 0))
    if not tests:
        rule = vac
    else:
        test = tests[0] if len(tests) == 1 else Test("allof", [], tests, 0, 0)
        rule = Command("if", [], [test], [vac], 0, 0)
    if got is not None:
        commands[got[0]] = rule
    else:
        at = 0
        while at < len(commands) and commands[at].name == "require":
            at += 1
        commands.insert(at, rule)
    for ext in (("vacation", "date", "relational") if v.start or v.end else ("vacation",)):
        _require(commands, ext)
    out = unparse(commands)
    compile_script(out)
    return out



# -- simple filing rules ---------------------------------------------------------------------

#: The header fields a filing rule may test (shown as From, To, Cc, Subject, List-Id).
FIELDS = ("from", "to", "cc", "subject", "list-id")


@dataclass(frozen=True, slots=True)
class Filter:
    """``if header :contains "<field>" "<value>" { fileinto "<mailbox>"; stop; }``: a
    top-level rule the filters page shows and removes; ``index`` is its place among
    the script's top-level commands, ``text`` its Sieve text (to check, at removal,
    that the script did not change meanwhile)."""

    field: str
    value: str
    mailbox: str
    index: int = -1
    text: str = ""


def _filter_of(c: Command, index: int) -> Filter | None:
    if c.name != "if" or len(c.tests) != 1 or c.block is None:
        return None
    t = c.tests[0]
    args = t.arguments
    if (t.name != "header" or t.tests or len(args) != 3 or not isinstance(args[0], Tag)
            or args[0].name != "contains"):
        return None
    field, value = args[1], args[2]
    if not (isinstance(field, StringList) and isinstance(value, StringList) and len(field.values) == 1
            and len(value.values) == 1 and field.values[0].lower() in FIELDS):
        return None
    block = c.block
    if not 1 <= len(block) <= 2 or block[0].name != "fileinto" or len(block[0].arguments) != 1:
        return None
    box = block[0].arguments[0]
    if not isinstance(box, StringList) or len(box.values) != 1 or block[0].tests or block[0].block is not None:
        return None
    if len(block) == 2 and (block[1].name != "stop" or block[1].arguments or block[1].tests):
        return None
    return Filter(field.values[0].lower(), value.values[0], box.values[0], index, _command(c, ""))


def filters_of(text: str) -> tuple[list[Filter], int]:
    """The script's filing rules, and how many of its other top-level commands (besides
    ``require`` and the managed vacation rule) the page does not show."""
    if not text.strip():
        return [], 0
    compile_script(text)
    commands = parse(text)
    out: list[Filter] = []
    other = 0
    for i, c in enumerate(commands):
        f = _filter_of(c, i)
        if f is not None:
            out.append(f)
        elif c.name != "require" and c.name != "vacation" and not _is_off(c):
            other += 1
    return out, other


def _require(commands: list[Command], extension: str) -> None:
    named = {v.lower() for c in commands if c.name == "require" for a in c.arguments if isinstance(a, StringList)
             for v in a.values}
    if extension not in named:
        commands.insert(0, Command("require", [StringList((extension,), 0, 0, True)], [], None, 0, 0))


def with_filter(text: str, f: Filter) -> str:
    """``text`` with the filing rule ``f`` added at the end (after the user's rules)."""
    if f.field not in FIELDS:
        raise ValueError(f"field: one of {', '.join(FIELDS)}")
    if not f.value or not f.mailbox:
        raise ValueError("a value and a mailbox are needed")
    commands = parse(text) if text.strip() else []
    if text.strip():
        compile_script(text)
    test = Test("header", [Tag("contains", 0, 0), StringList((f.field,), 0, 0, True),
                           StringList((f.value,), 0, 0, True)], [], 0, 0)
    block = [Command("fileinto", [StringList((f.mailbox,), 0, 0, True)], [], None, 0, 0),
             Command("stop", [], [], None, 0, 0)]
    commands.append(Command("if", [], [test], block, 0, 0))
    _require(commands, "fileinto")
    out = unparse(commands)
    compile_script(out)
    return out


def without_filter(text: str, index: int, expected: str) -> str:
    """``text`` without the filing rule at top-level ``index``; ValueError when that
    command is not the rule ``expected`` (its text) any more: the script changed."""
    commands = parse(text)
    if not 0 <= index < len(commands) or _command(commands[index], "") != expected \
            or _filter_of(commands[index], index) is None:
        raise ValueError("the script changed meanwhile: reload the page")
    del commands[index]
    out = unparse(commands)
    compile_script(out)
    return out


__all__ += ["SieveError"]
