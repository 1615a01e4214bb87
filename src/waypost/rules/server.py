"""Server-wide rules (seed 004 "Rules"): an ordered list, each with conditions and actions.

One rule a line, ``#`` comments::

    NAME: CONDITION [and CONDITION ...] => ACTION [; ACTION ...]

Conditions, ``FIELD OP VALUE``:

* fields: ``sender``, ``sender-domain``, ``recipient``, ``recipient-domain``,
  ``header:NAME``, ``size`` (bytes), and the flags ``authenticated``, ``local-sender``
  (the sender's domain is one of ours), ``trusted`` (a client of relay.trusted_networks);
* operators: ``is``, ``is-not``, ``in (a, b, ...)``, ``not-in (a, b, ...)``, ``matches``
  (``*`` is any text), ``over`` (size); a flag stands alone or as ``not FLAG``.

A recipient condition holds for the recipient being decided (at RCPT time) or, after the
message has arrived, for any of its recipients.

Actions: ``store ~account[@domain]/mailbox`` (a copy in that mailbox), ``mirror ADDRESS``
(a copy to that address as well, with the original envelope sender), ``forward ADDRESS``
(a copy re-sent by us: an SRS envelope sender, like account forwarding), ``redirect
ADDRESS`` (to that address instead),
``add-header "Name: value"``, ``reject "text"`` (550 5.7.1 with the text), ``discard``
(accepted and dropped), ``stop`` (no further rule).

When rules apply.  Rules whose conditions use only the envelope (sender, recipient, the
flags) and that reject are applied to each recipient at RCPT time, so the sender is told
at once (seed 004: users of dept1 may send only to their own domain).  Every rule is
applied once more after DATA, before the message is queued, with all its recipients.
A rule that fails while being applied is logged and skipped: the message is then queued
as if it had not matched.  Pure: the caller brings the envelope and the header block.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..address import AddressError, normalize_domain
from ..db import VersionedText

__all__ = ["Action", "Condition", "Envelope", "Outcome", "Rule", "RuleError", "ServerRules", "parse_rules",
           "RULES_KEY"]

RULES_KEY = "rules.server"

FIELDS = ("sender", "sender-domain", "recipient", "recipient-domain", "size")
FLAGS = ("authenticated", "local-sender", "trusted")
OPS = ("is", "is-not", "in", "not-in", "matches", "over")
ACTIONS = ("store", "mirror", "forward", "redirect", "add-header", "reject", "discard", "stop")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class RuleError:
    line_no: int
    line: str
    reason: str


@dataclass(frozen=True, slots=True)
class Condition:
    field: str                    # a field, "header:Name", or a flag
    op: str                       # an operator, or "flag" / "not-flag"
    values: tuple[str, ...] = ()

    @property
    def envelope_only(self) -> bool:
        return not (self.field.startswith("header:") or self.field == "size")


@dataclass(frozen=True, slots=True)
class Action:
    verb: str
    arg: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    line_no: int
    name: str
    conditions: tuple[Condition, ...]
    actions: tuple[Action, ...]

    @property
    def at_rcpt(self) -> bool:
        """Decided per recipient at RCPT time: envelope conditions and a reject."""
        return all(c.envelope_only for c in self.conditions) and any(a.verb == "reject" for a in self.actions)


@dataclass(slots=True)
class Envelope:
    sender: str
    recipients: Sequence[str]
    authenticated: bool = False
    trusted: bool = False
    local_sender: bool = False
    headers: dict[str, list[str]] = field(default_factory=dict)  # lower-case name -> values
    size: int = 0


@dataclass(slots=True)
class Outcome:
    """What the rules did to one message (after DATA)."""

    rejected: str = ""                       # the reply text when a rule rejects
    discard: bool = False
    redirect: list[str] = field(default_factory=list)
    mirror: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    store: list[str] = field(default_factory=list)          # "~account[@domain]/mailbox"
    add_headers: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)         # rule names, for the log


def _domain(address: str) -> str:
    return _norm_domain(address.rpartition("@")[2])


def _norm_domain(domain: str) -> str:
    """A domain as the router compares it (IDNA 2008 + UTS #46: ``faß.de`` is
    ``xn--fa-hia.de``); a pattern or a malformed name stays in lower case."""
    try:
        return normalize_domain(domain) if domain and "*" not in domain and "?" not in domain else domain.lower()
    except AddressError:
        return domain.lower()


def _norm_address(address: str) -> str:
    local, at, domain = address.rpartition("@")
    return f"{local.lower()}@{_norm_domain(domain)}" if at else address.lower()


def _parse_values(text: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        return tuple(v.strip().lower() for v in text[1:-1].split(",") if v.strip())
    return (text.strip().strip('"').lower(),)


def _condition(text: str) -> Condition:
    words = text.split(None, 2)
    if not words:
        raise ValueError("empty condition")
    if words[0] == "not" and len(words) == 2 and words[1] in FLAGS:
        return Condition(words[1], "not-flag")
    if len(words) == 1:
        if words[0] not in FLAGS:
            raise ValueError(f"unknown flag {words[0]!r} (known: {', '.join(FLAGS)})")
        return Condition(words[0], "flag")
    if len(words) < 3:
        raise ValueError(f"condition {text!r}: expected FIELD OP VALUE")
    fld, op, value = words
    if fld not in FIELDS and not (fld.startswith("header:") and len(fld) > 7):
        raise ValueError(f"unknown field {fld!r}")
    if op not in OPS:
        raise ValueError(f"unknown operator {op!r} (known: {', '.join(OPS)})")
    if (op == "over") != (fld == "size"):
        raise ValueError("size goes with 'over', and 'over' with size")
    values = _parse_values(value)
    if fld in ("sender-domain", "recipient-domain"):
        values = tuple(_norm_domain(v) for v in values)
    elif fld in ("sender", "recipient"):
        values = tuple(_norm_address(v) for v in values)
    if op == "over" and not values[0].isdigit():
        raise ValueError("size over N: N must be a number of bytes")
    if op in ("is", "is-not", "matches", "over") and len(values) != 1:
        raise ValueError(f"{op} takes one value")
    return Condition(fld.lower(), op, values)


def _action(text: str) -> Action:
    parts = text.strip().split(None, 1)
    if not parts:
        raise ValueError("empty action")
    verb = parts[0].lower()
    if verb not in ACTIONS:
        raise ValueError(f"unknown action {verb!r} (known: {', '.join(ACTIONS)})")
    arg = parts[1].strip() if len(parts) > 1 else ""
    if arg.startswith('"'):
        try:
            arg = shlex.split(arg)[0]
        except ValueError as e:
            raise ValueError(f"{verb}: {e}") from None
    if verb in ("discard", "stop") and arg:
        raise ValueError(f"{verb} takes no argument")
    if verb in ("store", "mirror", "forward", "redirect", "add-header", "reject") and not arg:
        raise ValueError(f"{verb} needs an argument")
    if verb == "store" and not re.match(r"^~[^/\s]+/\S+$", arg):
        raise ValueError("store needs ~account/mailbox (or ~account@domain/mailbox)")
    if verb in ("mirror", "forward", "redirect") and "@" not in arg:
        raise ValueError(f"{verb} needs an address")
    if verb == "add-header" and not re.match(r"^[!-9;-~]+:\s?[^\r\n]*$", arg):
        raise ValueError('add-header needs "Name: value"')
    if verb == "reject" and any(c in arg for c in "\r\n"):
        raise ValueError("reject text must be one line")
    return Action(verb, arg)


def parse_rule(line_no: int, text: str) -> Rule:
    name, colon, rest = text.partition(":")
    if not colon or not _NAME.match(name.strip()):
        raise ValueError("expected NAME: CONDITIONS => ACTIONS")
    cond_text, arrow, act_text = rest.partition("=>")
    if not arrow:
        raise ValueError("missing '=>' between conditions and actions")
    conditions = tuple(_condition(c) for c in re.split(r"\s+and\s+", cond_text.strip()) if c.strip())
    actions = tuple(_action(a) for a in _split_actions(act_text))
    if not actions:
        raise ValueError("no action")
    return Rule(line_no, name.strip(), conditions, actions)


def _split_actions(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [a for a in out if a.strip()]


def parse_rules(text: str) -> tuple[list[Rule], list[RuleError]]:
    rules: list[Rule] = []
    errors: list[RuleError] = []
    names: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rule = parse_rule(n, line)
        except ValueError as e:
            errors.append(RuleError(n, raw, str(e)))
            continue
        if rule.name in names:
            errors.append(RuleError(n, raw, f"a rule named {rule.name} comes earlier"))
            continue
        names.add(rule.name)
        rules.append(rule)
    return rules, errors


def format_rule(rule: Rule) -> str:
    def cond(c: Condition) -> str:
        if c.op == "flag":
            return c.field
        if c.op == "not-flag":
            return f"not {c.field}"
        value = c.values[0] if c.op in ("is", "is-not", "matches", "over") else "(" + ", ".join(c.values) + ")"
        return f"{c.field} {c.op} {value}"

    def act(a: Action) -> str:
        if not a.arg:
            return a.verb
        arg = f'"{a.arg}"' if a.verb in ("add-header", "reject") else a.arg
        return f"{a.verb} {arg}"

    return f"{rule.name}: {' and '.join(cond(c) for c in rule.conditions)} => {'; '.join(act(a) for a in rule.actions)}"


class ServerRules:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def from_text(cls, text: str) -> "ServerRules":
        return cls(parse_rules(text)[0])

    @staticmethod
    def _holds(c: Condition, env: Envelope, recipients: Sequence[str]) -> bool:
        if c.op in ("flag", "not-flag"):
            value = {"authenticated": env.authenticated, "trusted": env.trusted, "local-sender": env.local_sender}[c.field]
            return value if c.op == "flag" else not value
        if c.field == "size":
            return env.size > int(c.values[0])
        if c.field == "sender":
            candidates: list[str] = [_norm_address(env.sender)]
        elif c.field == "sender-domain":
            candidates = [_domain(env.sender)]
        elif c.field == "recipient":
            candidates = [_norm_address(r) for r in recipients]
        elif c.field == "recipient-domain":
            candidates = [_domain(r) for r in recipients]
        else:
            candidates = [v.strip().lower() for v in env.headers.get(c.field[7:].lower(), [])]
        negative = c.op in ("is-not", "not-in")
        if c.op in ("is", "is-not"):
            hits = [x == c.values[0] for x in candidates]
        elif c.op in ("in", "not-in"):
            hits = [x in c.values for x in candidates]
        else:  # matches
            hits = [fnmatch.fnmatchcase(x, c.values[0]) for x in candidates]
        if negative:  # "any recipient is not X": holds if one of them is not X
            return any(not h for h in hits)
        return any(hits)

    def check_recipient(self, env: Envelope, recipient: str) -> tuple[str, str] | None:
        """At RCPT time: (rule name, reject text) if a rule rejects this recipient."""
        for rule in self.rules:
            if rule.at_rcpt and all(self._holds(c, env, [recipient]) for c in rule.conditions):
                return rule.name, next(a.arg for a in rule.actions if a.verb == "reject")
        return None

    def apply(self, env: Envelope) -> Outcome:
        """After DATA: every rule in order, over the whole message."""
        out = Outcome()
        for rule in self.rules:
            if rule.at_rcpt:  # already decided recipient by recipient
                continue
            if not all(self._holds(c, env, env.recipients) for c in rule.conditions):
                continue
            out.matched.append(rule.name)
            stop = False
            for a in rule.actions:
                if a.verb == "reject":
                    out.rejected = a.arg
                    return out
                if a.verb == "discard":
                    out.discard = True
                elif a.verb == "redirect":
                    out.redirect.append(a.arg)
                elif a.verb == "mirror":
                    out.mirror.append(a.arg)
                elif a.verb == "forward":
                    out.forward.append(a.arg)
                elif a.verb == "store":
                    out.store.append(a.arg)
                elif a.verb == "add-header":
                    out.add_headers.append(a.arg)
                elif a.verb == "stop":
                    stop = True
            if stop:
                break
        return out


def rules_store(db: Any) -> VersionedText[ServerRules]:
    """The rules as stored; a running server uses changed rules at once."""
    return VersionedText(db, RULES_KEY, ServerRules.from_text)


def store_rules(db: Any, text: str, check: Callable[[Rule], str | None] | None = None) -> tuple[int, list[RuleError]]:
    """Validate the whole text (``check`` may refuse a rule, e.g. a store into a mailbox
    of an account that does not exist); only if every line is good, make it the list."""
    rules, errors = parse_rules(text)
    if check is not None:
        for rule in rules:
            reason = check(rule)
            if reason:
                errors.append(RuleError(rule.line_no, format_rule(rule), reason))
    if errors:
        return 0, sorted(errors, key=lambda e: e.line_no)
    rules_store(db).put(text)
    return len(rules), []


def header_fields(data: bytes) -> dict[str, list[str]]:
    """The header block's fields (unfolded), by lower-case name."""
    end = data.find(b"\r\n\r\n")
    block = (data if end < 0 else data[:end]).decode("utf-8", "replace")
    out: dict[str, list[str]] = {}
    name = ""
    for line in block.split("\r\n"):
        if line[:1] in (" ", "\t") and name:
            out[name][-1] += " " + line.strip()
            continue
        n, colon, value = line.partition(":")
        if colon:
            name = n.strip().lower()
            out.setdefault(name, []).append(value.strip())
    return out

