"""The meaning of a parsed script checked before it is stored or run: every command
and test known, its extension required (RFC 5228 §3.2), its arguments of the right
kinds (§2.6, §2.7), at most one of each group of tags, ``require`` first, ``elsif`` and
``else`` after an ``if``.  Errors are ``SieveError`` with the line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .grammar import Argument, Command, Number, SieveError, StringList, Tag, Test, parse

__all__ = ["EXTENSIONS", "Script", "compile_script"]

#: What ``require`` may name (the SIEVE capability line of ManageSieve, RFC 5804 §1.7).
EXTENSIONS = ("fileinto", "reject", "ereject", "envelope", "imap4flags", "vacation", "copy", "variables",
              "relational", "subaddress", "comparator-i;ascii-numeric", "mailbox", "body", "date", "editheader")

Kind = Literal["string", "strings", "number"]

#: Tag groups: at most one tag of each (RFC 5228 §2.7.1-§2.7.4).
_MATCH: dict[str, str | None] = {"is": None, "contains": None, "matches": None, "value": "string", "count": "string"}
_ADDRESS: dict[str, str | None] = {"all": None, "localpart": None, "domain": None, "user": None, "detail": None}
_COMPARATOR: dict[str, str | None] = {"comparator": "string"}
_TAG_EXT = {"value": "relational", "count": "relational", "user": "subaddress", "detail": "subaddress",
            "copy": "copy", "flags": "imap4flags", "create": "mailbox"}
_COMPARATORS = {"i;ascii-casemap": None, "i;octet": None, "i;ascii-numeric": "comparator-i;ascii-numeric"}
_RELATIONS = ("gt", "ge", "lt", "le", "eq", "ne")
#: RFC 5260 §4.2
DATE_PARTS = ("year", "month", "day", "date", "julian", "hour", "minute", "second", "time", "iso8601", "std11",
              "zone", "weekday")


@dataclass(frozen=True, slots=True)
class _Spec:
    ext: str | None = None
    positional: tuple[tuple[Kind, ...], ...] = ((),)   # the accepted forms
    tags: dict[str, str | None] = field(default_factory=dict)
    groups: tuple[dict[str, str | None], ...] = ()
    tests: Literal["none", "one", "many"] = "none"


_MATCHING = (_COMPARATOR, _MATCH)
_COMMANDS: dict[str, _Spec] = {
    "require": _Spec(positional=(("strings",),)),
    "if": _Spec(tests="one"), "elsif": _Spec(tests="one"), "else": _Spec(),
    "stop": _Spec(), "discard": _Spec(),
    "keep": _Spec(tags={"flags": "strings"}),
    "fileinto": _Spec("fileinto", (("string",),), {"copy": None, "flags": "strings", "create": None}),
    "redirect": _Spec(None, (("string",),), {"copy": None}),
    "reject": _Spec("reject", (("string",),)),
    "ereject": _Spec("ereject", (("string",),)),
    "vacation": _Spec("vacation", (("string",),), {"days": "number", "subject": "string", "from": "string",
                                                   "addresses": "strings", "mime": None, "handle": "string"}),
    "setflag": _Spec("imap4flags", (("strings",), ("string", "strings"))),
    "addflag": _Spec("imap4flags", (("strings",), ("string", "strings"))),
    "removeflag": _Spec("imap4flags", (("strings",), ("string", "strings"))),
    # RFC 5293 §4: addheader [":last"] <field-name: string> <value: string>
    "addheader": _Spec("editheader", (("string", "string"),), {"last": None}),
    # RFC 5293 §5: deleteheader [":index" <fieldno: number> [":last"]] [COMPARATOR] [MATCH-TYPE]
    #              <field-name: string> [<value-patterns: string-list>]
    "deleteheader": _Spec("editheader", (("string",), ("string", "strings")), {"index": "number", "last": None},
                          groups=_MATCHING),
    "set": _Spec("variables", (("string", "string"),), {"lower": None, "upper": None, "lowerfirst": None,
                                                         "upperfirst": None, "quotewildcard": None, "length": None}),
}
_TESTS: dict[str, _Spec] = {
    "address": _Spec(None, (("strings", "strings"),), groups=(_COMPARATOR, _MATCH, _ADDRESS)),
    "header": _Spec(None, (("strings", "strings"),), groups=_MATCHING),
    "envelope": _Spec("envelope", (("strings", "strings"),), groups=(_COMPARATOR, _MATCH, _ADDRESS)),
    "exists": _Spec(None, (("strings",),)),
    "size": _Spec(None, ((),), groups=({"over": "number", "under": "number"},)),
    "allof": _Spec(tests="many"), "anyof": _Spec(tests="many"), "not": _Spec(tests="one"),
    "true": _Spec(), "false": _Spec(),
    "hasflag": _Spec("imap4flags", (("strings",), ("strings", "strings")), groups=_MATCHING),
    "string": _Spec("variables", (("strings", "strings"),), groups=_MATCHING),
    "mailboxexists": _Spec("mailbox", (("strings",),)),
    # RFC 5260 §4: date [<":zone" string> / ":originalzone"] [COMPARATOR] [MATCH-TYPE]
    #              <header-name: string> <date-part: string> <key-list: string-list>
    "date": _Spec("date", (("string", "string", "strings"),), {"zone": "string", "originalzone": None},
                  groups=_MATCHING),
    # RFC 5260 §5: currentdate [":zone" <time-zone: string>] [COMPARATOR] [MATCH-TYPE]
    #              <date-part: string> <key-list: string-list>
    "currentdate": _Spec("date", (("string", "strings"),), {"zone": "string"}, groups=_MATCHING),
    # RFC 5173 §4: body [COMPARATOR] [MATCH-TYPE] [BODY-TRANSFORM] <key-list: string-list>
    "body": _Spec("body", (("strings",),), groups=(_COMPARATOR, _MATCH, {"raw": None, "content": "strings",
                                                                           "text": None})),
}


@dataclass(slots=True)
class Script:
    """A checked script: its commands and the extensions it requires."""

    commands: list[Command]
    extensions: frozenset[str]


def compile_script(text: str) -> Script:
    """Parse and check; SieveError (with line and column) when the script is wrong."""
    commands = parse(text)
    required: set[str] = set()
    seen_other = False
    for cmd in commands:
        if cmd.name == "require":
            if seen_other:
                raise SieveError("require must come before any other command (RFC 5228 §3.2)", cmd.line, cmd.column)
            _fill(cmd, _COMMANDS["require"], required, "command")
            assert isinstance(cmd.positional[0], StringList)
            for name in cmd.positional[0].values:
                if name.lower() not in EXTENSIONS:
                    raise SieveError(f"unsupported extension {name!r}", cmd.positional[0].line,
                                     cmd.positional[0].column)
                required.add(name.lower())
        else:
            seen_other = True
    _check_block(commands, required, top=True)
    return Script(commands, frozenset(required))


def _check_block(commands: list[Command], required: set[str], top: bool = False) -> None:
    previous = ""
    for cmd in commands:
        if cmd.name == "require":
            if not top:
                raise SieveError("require must come before any other command (RFC 5228 §3.2)", cmd.line, cmd.column)
            previous = "require"
            continue
        spec = _COMMANDS.get(cmd.name)
        if spec is None:
            raise SieveError(f"unknown command {cmd.name!r}", cmd.line, cmd.column)
        if cmd.name in ("elsif", "else") and previous not in ("if", "elsif"):
            raise SieveError(f"{cmd.name} without an if before it", cmd.line, cmd.column)
        _fill(cmd, spec, required, "command")
        if cmd.name in ("if", "elsif", "else"):
            if cmd.block is None:
                raise SieveError(f"{cmd.name} needs a block {{ ... }}", cmd.line, cmd.column)
            _check_block(cmd.block, required)
        elif cmd.block is not None:
            raise SieveError(f"{cmd.name} takes no block", cmd.line, cmd.column)
        for t in cmd.tests:
            _check_test(t, required)
        previous = cmd.name


def _check_test(test: Test, required: set[str]) -> None:
    spec = _TESTS.get(test.name)
    if spec is None:
        raise SieveError(f"unknown test {test.name!r}", test.line, test.column)
    _fill(test, spec, required, "test")
    if test.name == "size" and not test.tags:
        raise SieveError("size needs :over or :under", test.line, test.column)
    for t in test.tests:
        _check_test(t, required)


def _fill(node: Command | Test, spec: _Spec, required: set[str], what: str) -> None:
    if spec.ext is not None and spec.ext not in required:
        raise SieveError(f"{node.name} needs require \"{spec.ext}\"", node.line, node.column)
    args = list(node.arguments)
    tags: dict[str, Argument | None] = {}
    positional: list[Argument] = []
    i = 0
    while i < len(args):
        a = args[i]
        if isinstance(a, Tag):
            kind: str | None
            group = next((g for g in spec.groups if a.name in g), None)
            if group is not None:
                kind = group[a.name]
                if any(t in group for t in tags):
                    raise SieveError(f"only one of :{' :'.join(group)} may be given", a.line, a.column)
            elif a.name in spec.tags:
                kind = spec.tags[a.name]
            else:
                raise SieveError(f"{node.name} takes no :{a.name}", a.line, a.column)
            if a.name in tags:
                raise SieveError(f":{a.name} given twice", a.line, a.column)
            ext = _TAG_EXT.get(a.name)
            if ext is not None and ext not in required:
                raise SieveError(f":{a.name} needs require \"{ext}\"", a.line, a.column)
            value: Argument | None = None
            if kind is not None:
                if i + 1 >= len(args) or not _is_kind(args[i + 1], kind):
                    raise SieveError(f":{a.name} needs a {kind.rstrip('s') if kind != 'strings' else 'string list'}",
                                     a.line, a.column)
                value = args[i + 1]
                i += 1
            tags[a.name] = value
            i += 1
            continue
        positional.append(a)
        i += 1
    if not any(len(form) == len(positional) and all(_is_kind(p, k) for p, k in zip(positional, form))
               for form in spec.positional):
        wanted = " or ".join(", ".join(f) or "nothing" for f in spec.positional)
        raise SieveError(f"{node.name} takes {wanted}", node.line, node.column)
    if spec.tests == "none" and node.tests:
        raise SieveError(f"{node.name} takes no test", node.tests[0].line, node.tests[0].column)
    if spec.tests == "one" and len(node.tests) != 1:
        raise SieveError(f"{node.name} takes one test", node.line, node.column)
    if spec.tests == "many" and not node.tests:
        raise SieveError(f"{node.name} takes a list of tests", node.line, node.column)
    comparator = tags.get("comparator")
    if isinstance(comparator, StringList):
        name = comparator.values[0].lower()
        if name not in _COMPARATORS:
            raise SieveError(f"unknown comparator {comparator.values[0]!r}", comparator.line, comparator.column)
        ext = _COMPARATORS[name]
        if ext is not None and ext not in required:
            raise SieveError(f"comparator {name} needs require \"{ext}\"", comparator.line, comparator.column)
    for rel in ("value", "count"):
        v = tags.get(rel)
        if isinstance(v, StringList) and v.values[0].lower() not in _RELATIONS:
            raise SieveError(f"unknown relation {v.values[0]!r} (RFC 5231: gt ge lt le eq ne)", v.line, v.column)
    if node.name in ("date", "currentdate"):
        part = positional[-2]
        assert isinstance(part, StringList)
        if part.values[0].lower() not in DATE_PARTS:
            raise SieveError(f"unknown date-part {part.values[0]!r}", part.line, part.column)
        zone = tags.get("zone")
        if isinstance(zone, StringList) and not re.fullmatch(r"[+-]\d{4}", zone.values[0]):
            raise SieveError("a :zone is +hhmm or -hhmm", zone.line, zone.column)
    if node.name == "deleteheader" and "last" in tags and "index" not in tags:
        raise SieveError(":last needs :index (RFC 5293 §5)", node.line, node.column)
    if node.name in ("addheader", "deleteheader"):
        field_name = positional[0]
        assert isinstance(field_name, StringList)
        if not re.fullmatch(r"[!-9;-~]{1,76}", field_name.values[0]):
            raise SieveError(f"{field_name.values[0]!r} is not a header field name", field_name.line,
                             field_name.column)
    if node.name == "vacation":
        days = tags.get("days")
        if isinstance(days, Number) and days.value < 1:
            raise SieveError(":days must be 1 or more", days.line, days.column)
    node.tags = tags
    node.positional = positional
    if isinstance(node, Test) and isinstance(comparator, StringList):
        node.comparator = comparator.values[0].lower()


def _is_kind(a: Argument, kind: str) -> bool:
    if kind == "number":
        return isinstance(a, Number)
    if kind == "string":
        return isinstance(a, StringList) and len(a.values) == 1
    return isinstance(a, StringList)
