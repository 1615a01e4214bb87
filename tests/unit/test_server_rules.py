"""Server-wide rules: parsing, line-numbered errors, and the seed's two examples."""

from __future__ import annotations

import pytest

from waypost.rules import Envelope, ServerRules, format_rule, parse_rules

SEED = """
# seed 004: a copy of everything users of these domains send, for the security officer
copy-outgoing: sender-domain in (dept1.company.dom, dept2.company.dom) => store ~security/outgoing
# seed 004: dept1 users (not the boss) may send only inside dept1 and to the supervisor
dept1-limit: sender-domain is dept1.company.dom and sender is-not boss@dept1.company.dom and recipient-domain is-not dept1.company.dom and recipient is-not supervisor@hq.company.dom => reject "dept1 may send only inside dept1 and to the supervisor"
"""


def env(sender, *rcpts, **kw):
    return Envelope(sender=sender, recipients=list(rcpts), **kw)


def test_seed_examples():
    rules, errors = parse_rules(SEED)
    assert not errors and [r.name for r in rules] == ["copy-outgoing", "dept1-limit"]
    sr = ServerRules(rules)
    assert [r.at_rcpt for r in rules] == [False, True]
    e = env("ann@dept1.company.dom")
    assert sr.check_recipient(e, "x@outside.test")[0] == "dept1-limit"
    assert sr.check_recipient(e, "bob@dept1.company.dom") is None
    assert sr.check_recipient(e, "supervisor@hq.company.dom") is None
    assert sr.check_recipient(env("boss@dept1.company.dom"), "x@outside.test") is None
    assert sr.check_recipient(env("eve@dept2.company.dom"), "x@outside.test") is None
    out = sr.apply(env("eve@dept2.company.dom", "x@outside.test"))
    assert out.store == ["~security/outgoing"] and not out.rejected
    assert sr.apply(env("joe@elsewhere.test", "x@outside.test")).matched == []


def test_header_size_flags_and_actions():
    sr = ServerRules.from_text(
        'spam: header:X-Spam-Flag is yes => add-header "X-Quarantined: yes"; mirror quarantine@company.dom; stop\n'
        'big: size over 1000 and not authenticated => reject "too big"\n'
        "drop: sender matches *@junk.test => discard\n"
        "move: recipient is old@company.dom => redirect new@company.dom\n")
    out = sr.apply(Envelope("a@b.test", ["x@company.dom"], headers={"x-spam-flag": ["YES"]}, size=5000))
    assert out.add_headers == ["X-Quarantined: yes"] and out.mirror == ["quarantine@company.dom"]
    assert not out.rejected  # stop: the size rule was not reached
    assert sr.apply(Envelope("a@b.test", ["x@company.dom"], size=5000)).rejected == "too big"
    assert sr.apply(Envelope("a@b.test", ["x@company.dom"], size=5000, authenticated=True)).rejected == ""
    assert sr.apply(Envelope("x@junk.test", ["y@company.dom"])).discard
    assert sr.apply(Envelope("a@b.test", ["old@company.dom"])).redirect == ["new@company.dom"]


@pytest.mark.parametrize("line, reason", [
    ("no colon here", "expected NAME"),
    ("r1: sender is a@b.test", "missing '=>'"),
    ("r1: sender is a@b.test =>", "no action"),
    ("r1: colour is red => discard", "unknown field"),
    ("r1: sender resembles a => discard", "unknown operator"),
    ("r1: size over lots => discard", "number of bytes"),
    ("r1: sender is a@b.test => explode", "unknown action"),
    ("r1: sender is a@b.test => store security", "~account/mailbox"),
    ('r1: sender is a@b.test => add-header "no colon"', "Name: value"),
    ("r1: sender is a@b.test => discard now", "takes no argument"),
    ("r1: wizard => discard", "unknown flag"),
])
def test_bad_rules_report_line_numbers(line, reason):
    rules, errors = parse_rules(f"ok: sender is a@b.test => discard\n# c\n{line}\n")
    assert [r.name for r in rules] == ["ok"]
    [e] = errors
    assert e.line_no == 3 and reason in e.reason, e


def test_duplicate_names_and_round_trip():
    rules, errors = parse_rules("a: authenticated => stop\na: trusted => stop\n")
    assert errors[0].line_no == 2
    text = "\n".join(format_rule(r) for r in parse_rules(SEED)[0])
    assert [format_rule(r) for r in parse_rules(text)[0]] == text.splitlines()
