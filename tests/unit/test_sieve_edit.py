"""Editing a script through its grammar (``waypost.sieve.edit``): the tree written back
parses to the same tree and runs the same way; WebUser's vacation rule is found, set
on and off, and replaced without touching the user's other rules."""

from __future__ import annotations

import pytest

from waypost.sieve import Message, compile_script, run
from waypost.sieve.edit import Foreign, Vacation, unparse, vacation_of, with_vacation
from waypost.sieve.grammar import parse

RFC5228_9 = '''
require ["fileinto"];
if header :is "Sender" "owner-ietf-mta-filters@imc.org" { fileinto "filter"; }
elsif address :DOMAIN :is ["From", "To"] "example.com" { keep; }
elsif anyof (NOT address :all :contains ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject" ["*make*money*fast*", "*university*dipl*mas*"]) { fileinto "spam"; }
else { fileinto "personal"; }
'''

ODD = '''require ["variables", "imap4flags", "relational", "comparator-i;ascii-numeric", "vacation"];
# a comment that goes
set "quote" "say \\"hi\\" \\\\ there";
if allof (header :value "ge" :comparator "i;ascii-numeric" "X-Priority" "3", size :over 10K) {
    addflag "$Low";
}
if header :contains "subject" "text" { vacation :days 3 :addresses ["me@example.test"] :mime text:
Content-Type: text/plain

two lines,
..dot-stuffed
.
; }
'''


def _shape(commands):
    def arg(a):
        return (type(a).__name__, getattr(a, "name", None), getattr(a, "value", None), getattr(a, "values", None))

    def test(t):
        return (t.name, [arg(a) for a in t.arguments], [test(x) for x in t.tests])

    return [(c.name, [arg(a) for a in c.arguments], [test(t) for t in c.tests],
             None if c.block is None else _shape(c.block)) for c in commands]


@pytest.mark.parametrize("text", [RFC5228_9, ODD, "", "keep;", 'if true { if false { stop; } }'])
def test_unparse_gives_the_same_tree(text):
    again = unparse(parse(text))
    assert _shape(parse(again)) == _shape(parse(text))
    if text.strip():
        compile_script(again)


MSG = (b"From: Coyote <coyote@desert.example.org>\r\nTo: bob@example.test\r\n"
       b"Subject: make money fast\r\n\r\nbody\r\n")


def _run(text):
    return run(compile_script(text), Message(MSG, "coyote@desert.example.org", "bob@example.test",
                                             mailbox_exists=lambda m: True))


def test_vacation_added_first_kept_off_and_replaced():
    on = with_vacation(RFC5228_9, Vacation(True, "Away until Monday.\r\nBob", "Out of office", 5))
    assert on.splitlines()[0] == 'require "vacation";'
    assert vacation_of(on) == Vacation(True, "Away until Monday.\r\nBob", "Out of office", 5)
    r = _run(on)
    assert r.deliveries() == [("spam", ())]  # the user's rules run as before
    assert [a.kind for a in r.actions if a.kind == "vacation"] == ["vacation"]
    off = with_vacation(on, Vacation(False, "Away until Monday.\r\nBob", "Out of office", 5))
    assert vacation_of(off) == Vacation(False, "Away until Monday.\r\nBob", "Out of office", 5)
    assert "if false {" in off
    assert [a.kind for a in _run(off).actions if a.kind == "vacation"] == []
    assert _run(off).deliveries() == [("spam", ())]
    again = with_vacation(off, Vacation(True, "Back soon", "", 7))
    assert vacation_of(again) == Vacation(True, "Back soon", "", 7)
    assert again.count("vacation :days") == 1


def test_other_tags_of_the_rule_are_kept_and_an_empty_script_gets_one():
    text = 'require ["vacation"];\nvacation :addresses ["b@example.test"] :days 2 :handle "h" "old";\nkeep;\n'
    new = with_vacation(text, Vacation(True, 'new "reason"', "S", 9))
    cmd = [c for c in compile_script(new).commands if c.name == "vacation"][0]
    assert cmd.tags["addresses"].values == ("b@example.test",) and cmd.tags["handle"].values == ("h",)
    assert cmd.tags["days"].value == 9 and cmd.positional[0].values == ('new "reason"',)
    assert vacation_of(with_vacation("", Vacation(True, "hi"))) == Vacation(True, "hi", "", 7)
    assert vacation_of("keep;") is None


def test_a_script_with_vacation_in_its_own_rules_is_not_rewritten():
    with pytest.raises(Foreign):
        vacation_of(ODD)
    with pytest.raises(Foreign):
        with_vacation(ODD, Vacation(True, "x"))
    with pytest.raises(ValueError):
        with_vacation("", Vacation(True, "x", days=0))


def test_filing_rules_added_listed_and_removed_around_the_users_own():
    from waypost.sieve.edit import Filter, filters_of, with_filter, without_filter

    text = with_vacation(RFC5228_9, Vacation(True, "away"))
    assert filters_of(text) == ([], 4)  # if/elsif/elsif/else of the user's
    text = with_filter(text, Filter("from", 'news@lists "x"', "Lists"))
    text = with_filter(text, Filter("subject", "[ci]", "Builds"))
    found, other = filters_of(text)
    assert [(f.field, f.value, f.mailbox) for f in found] == [("from", 'news@lists "x"', "Lists"),
                                                              ("subject", "[ci]", "Builds")] and other == 4
    assert 'require "fileinto"' not in text  # RFC5228_9 requires it already
    msg = (b'From: news@lists "x" <n@example.org>\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nx\r\n')
    r = run(compile_script(text), Message(msg, "n@example.org", "bob@example.test", mailbox_exists=lambda m: True))
    assert r.deliveries() == [("spam", ()), ("Lists", ())]  # the user's rules first, then the new one
    gone = without_filter(text, found[0].index, found[0].text)
    assert [(f.field, f.mailbox) for f in filters_of(gone)[0]] == [("subject", "Builds")]
    assert vacation_of(gone) == Vacation(True, "away")
    with pytest.raises(ValueError, match="changed"):
        without_filter(gone, found[0].index, found[0].text)  # the same rule again: gone
    with pytest.raises(ValueError):
        with_filter("", Filter("x-unknown", "v", "Box"))
    only = with_filter("", Filter("list-id", "dev.example.org", "Dev"))
    assert only.startswith('require "fileinto";') and filters_of(only)[1] == 0


def test_vacation_between_two_days_on_and_off():
    on = with_vacation("keep;", Vacation(True, "away", "", 7, "2026-12-20", "2027-01-03"))
    assert vacation_of(on) == Vacation(True, "away", "", 7, "2026-12-20", "2027-01-03")
    assert 'currentdate :value "ge" "date" "2026-12-20"' in on
    script = compile_script(on)
    assert {"vacation", "date", "relational"} <= script.extensions

    def actions(now):
        return [a.kind for a in run(script, Message(MSG, "coyote@desert.example.org", "bob@example.test",
                                                    mailbox_exists=lambda m: True, now=now)).actions]

    import datetime
    day = lambda y, m, d: datetime.datetime(y, m, d, 12).timestamp()  # noqa: E731
    assert "vacation" in actions(day(2026, 12, 25)) and "vacation" in actions(day(2027, 1, 3))
    assert "vacation" not in actions(day(2026, 12, 19)) and "vacation" not in actions(day(2027, 1, 4))
    off = with_vacation(on, Vacation(False, "away", "", 7, "2026-12-20", "2027-01-03"))
    assert vacation_of(off) == Vacation(False, "away", "", 7, "2026-12-20", "2027-01-03")
    assert "vacation" not in [a.kind for a in run(compile_script(off), Message(
        MSG, "coyote@desert.example.org", "bob@example.test", now=day(2026, 12, 25))).actions]
    only_end = with_vacation(off, Vacation(True, "away", "", 7, "", "2027-01-03"))
    assert vacation_of(only_end) == Vacation(True, "away", "", 7, "", "2027-01-03")
    back = with_vacation(only_end, Vacation(True, "away"))
    assert vacation_of(back) == Vacation(True, "away") and "currentdate" not in back
    for bad in (("2027-01-03", "2026-12-20"), ("2026-13-01", ""), ("soon", "")):
        with pytest.raises(ValueError):
            with_vacation("", Vacation(True, "x", "", 7, *bad))
