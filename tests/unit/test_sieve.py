"""The Sieve interpreter (RFC 5228 and extensions), sans-IO: scripts from the RFCs'
examples run against messages, errors with line and column."""

from __future__ import annotations

import pytest

from waypost.sieve import Message, SieveError, compile_script, run
from waypost.sieve.grammar import MAX_NESTING

MSG = (b"Return-Path: <x@y>\r\n"
       b"From: Coyote <coyote@desert.example.org>\r\n"
       b"To: roadrunner@acme.example.com, Bob <bob+lists@example.test>\r\n"
       b"Cc: carl@example.test\r\n"
       b"Subject: =?utf-8?q?caf=C3=A9?= I have a present for you\r\n"
       b"X-Caffeine: C8H10N4O2\r\n"
       b"List-Id: <coyotes.lists.example.org>\r\n"
       b"\r\n"
       b"Look, I'm sorry about the whole anvil thing.\r\n")


def go(text: str, data: bytes = MSG, sender: str = "coyote@desert.example.org",
       rcpt: str = "bob+lists@example.test", boxes: tuple[str, ...] = ()):
    return run(compile_script(text), Message(data, sender, rcpt, mailbox_exists=lambda m: m in boxes))


def test_no_actions_is_implicit_keep():
    r = go("# nothing\r\n")
    assert r.deliveries() == [("INBOX", ())] and r.actions == []


def test_rfc5228_section_9_example_fileinto_and_discard():
    script = '''
    # RFC 5228 §9 (cut down): the first test that matches decides.
    require ["fileinto"];
    if header :is "Sender" "owner-ietf-mta-filters@imc.org"
            {
                fileinto "filter";  # move to "filter" mailbox
            }
    elsif address :DOMAIN :is ["From", "To"] "example.com"
            {
                keep;               # keep in "In" mailbox
            }
    elsif anyof (NOT address :all :contains
                   ["To", "Cc", "Bcc"] "me@example.com",
                 header :matches "subject"
                   ["*make*money*fast*", "*university*dipl*mas*"])
            {
                fileinto "spam";   # move to "spam" mailbox
            }
    else
            {
                fileinto "personal";
            }
    '''
    r = go(script)
    assert r.deliveries() == [("spam", ())]
    assert not r.implicit_keep


def test_header_decoded_and_contains_casemap():
    assert go('require "fileinto"; if header :contains "subject" "CAFÉ" { fileinto "x"; }').deliveries() == \
        [("INBOX", ())]  # i;ascii-casemap folds ASCII only: É is not é
    assert go('require "fileinto"; if header :contains "subject" "café i HAVE" { fileinto "x"; }').deliveries() \
        == [("x", ())]
    assert go('require "fileinto"; if header :is :comparator "i;octet" "x-caffeine" "c8h10n4o2"'
              ' { fileinto "x"; }').deliveries() == [("INBOX", ())]


def test_address_parts_and_subaddress():
    s = 'require ["fileinto", "subaddress"]; if address :detail "to" "lists" { fileinto "Lists"; }'
    assert go(s).deliveries() == [("Lists", ())]
    s = 'require ["fileinto", "subaddress"]; if address :user :is "to" "bob" { fileinto "Bob"; }'
    assert go(s).deliveries() == [("Bob", ())]
    s = 'require "fileinto"; if address :localpart :is "from" "coyote" { fileinto "C"; }'
    assert go(s).deliveries() == [("C", ())]


def test_envelope_exists_size_not_allof():
    s = ('require ["envelope", "fileinto"];\n'
         'if allof (envelope :domain :is "from" "desert.example.org", exists ["List-Id", "x-caffeine"],\n'
         '          size :under 1K, not size :over 2K) { fileinto "ok"; stop; }\nfileinto "not";')
    assert go(s).deliveries() == [("ok", ())]
    assert go('require "envelope"; if envelope :is "from" "" { discard; }', sender="").deliveries() == []


def test_reject_redirect_copy_and_duplicates():
    r = go('require "reject"; reject "go away";')
    assert [a.kind for a in r.actions] == ["reject"] and r.deliveries() == []
    r = go('require "copy"; redirect :copy "a@b.example"; redirect "c@d.example";')
    assert [a.target for a in r.actions] == ["a@b.example", "c@d.example"] and r.deliveries() == []
    r = go('require "fileinto"; fileinto "A"; fileinto "A"; keep; keep;')
    assert r.deliveries() == [("A", ()), ("INBOX", ())]


def test_reject_with_keep_is_a_runtime_error_that_keeps():
    r = go('require "reject"; keep; reject "no";')
    assert r.error is not None and r.deliveries() == [("INBOX", ())]


def test_imap4flags_rfc5232_examples():
    s = ('require ["imap4flags", "fileinto"];\n'
         'if header :contains "from" "coyote" { setflag "\\\\seen \\\\Flagged"; addflag ["$Work", "\\\\Seen"];'
         ' removeflag "\\\\flagged"; fileinto "Coyote"; }\n'
         'if hasflag :contains "$work" { fileinto :flags "\\\\Deleted" "Trash"; }')
    r = go(s)
    assert r.deliveries() == [("Coyote", ("\\Seen", "$Work")), ("Trash", ("\\Deleted",))]


def test_variables_and_matches():
    s = ('require ["variables", "fileinto"];\n'
         'if header :matches "List-Id" "<*.lists.*>" { set :lower "list" "${1}"; fileinto "Lists/${list}"; }')
    assert go(s).deliveries() == [("Lists/coyotes", ())]
    s = 'require "variables"; set :length "n" "abcd"; if string :is "${n}" "4" { discard; }'
    assert go(s).deliveries() == []


def test_relational_count_and_numeric():
    s = ('require ["relational", "comparator-i;ascii-numeric", "fileinto"];\n'
         'if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" { fileinto "many"; }')
    assert go(s).deliveries() == [("many", ())]


def test_vacation_action_fields():
    s = ('require "vacation";\nvacation :days 3 :subject "Away" :addresses ["bob@example.test"]\n'
         '  text:\nI am away.\n..\n.\n;')
    [a] = go(s).actions
    assert (a.kind, a.days, a.subject, a.addresses, a.reason) == ("vacation", 3, "Away", ("bob@example.test",),
                                                                  "I am away.\r\n.\r\n")
    assert a.handle  # made of the arguments
    [b] = go(s.replace("Away", "Gone")).actions
    assert b.handle != a.handle


@pytest.mark.parametrize("text,line,column,words", [
    ('fileinto "x";', 1, 1, 'require "fileinto"'),
    ('keep;\nrequire "fileinto";', 2, 1, "before any other command"),
    ('require "nosuch";', 1, 9, "unsupported extension"),
    ('if true {\n  keep;\n', 3, 1, "'}'"),
    ('if header :is :contains "a" "b" { stop; }', 1, 15, "only one of"),
    ('else { keep; }', 1, 1, "without an if"),
    ('keep', 1, 5, "expected ';'"),
    ('if header "a" { stop; }', 1, 4, "header takes"),
    ('require "vacation"; vacation :days 0 "x";', 1, 36, ":days must be 1"),
    ('"str";', 1, 1, "expected a command"),
    ('/* open', 1, 1, "unterminated"),
    ('require "relational"; if header :value "xx" "a" "b" { stop; }', 1, 40, "unknown relation"),
    ('redirect :copy "a@b";', 1, 10, 'require "copy"'),
])
def test_errors_name_line_and_column(text, line, column, words):
    with pytest.raises(SieveError) as e:
        compile_script(text)
    assert (e.value.line, e.value.column) == (line, column), str(e.value)
    assert words in str(e.value)


def test_nesting_is_bounded():
    deep = "if true { " * (MAX_NESTING + 1) + "keep;" + " }" * (MAX_NESTING + 1)
    with pytest.raises(SieveError, match="nested deeper"):
        compile_script(deep)
    compile_script("if true { " * 10 + "keep;" + " }" * 10)


def test_redirect_to_a_non_address_is_a_runtime_error():
    r = go('require "variables"; set "t" ""; redirect "${t}";')
    assert r.error is not None and r.deliveries() == [("INBOX", ())]


def test_vacation_reply_rules_and_from():
    from waypost.sieve import build_reply, refusal

    def action(extra: str = "") -> object:
        return go(f'require "vacation"; vacation {extra} "away";', MSG.replace(b"List-Id", b"X-Id")).actions[0]

    plain = Message(MSG.replace(b"List-Id", b"X-Id"), "coyote@desert.example.org", "bob+lists@example.test")
    own = ["bob@example.test", "bob+lists@example.test"]
    assert refusal(plain, action(), own) is None
    assert refusal(Message(MSG, "coyote@desert.example.org", "x"), action(), own) == "mailing list"
    assert refusal(Message(plain.data, "", "x"), action(), own) == "null sender"
    assert refusal(Message(plain.data, "MAILER-DAEMON@x.example", "x"), action(), own) == "sender is a program"
    assert refusal(Message(plain.data, "owner-list@x.example", "x"), action(), own) == "sender is a program"
    assert refusal(Message(b"Auto-Submitted: auto-replied\r\n" + plain.data, "a@b.example", "x"), action(),
                   own) == "auto-submitted"
    assert refusal(Message(b"Precedence: bulk\r\n" + plain.data, "a@b.example", "x"), action(), own) == "bulk"
    assert refusal(plain, action(), ["someone@else.example"]) == "not addressed to the user"
    assert refusal(plain, action(':addresses "carl@example.test"'), ["someone@else.example"]) is None
    # :from only as one of the user's addresses.
    forged = build_reply(plain, action(':from "boss@elsewhere.example"'), "bob@example.test", "h.example")
    assert b"From: bob@example.test\r\n" in forged
    own_from = build_reply(plain, action(':from "Bob <bob+lists@example.test>"'), "bob@example.test", "h.example")
    assert b"From: Bob <bob+lists@example.test>\r\n" in own_from
    assert b"Subject: Auto: caf\xc3\xa9 I have a present for you" not in own_from  # encoded, not raw UTF-8
    assert b"Auto-Submitted: auto-replied" in own_from


MIME = (b"From: a@b.example\r\nTo: bob@example.test\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Caf=C3=A9 MAKE MONEY fast\r\n"
        b"--XX\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"PGI+aHRtbCBvbmx5PC9iPg==\r\n"
        b"--XX--\r\n")


def test_body_rfc5173():
    def filed(test: str) -> list:
        return go(f'require ["body", "fileinto"]; if {test} {{ fileinto "hit"; }}', MIME).deliveries()

    assert filed('body :contains "café make money"') == [("hit", ())]  # :text decodes QP
    assert filed('body :content "text/html" :contains "html only"') == [("hit", ())]  # and base64
    assert filed('body :text :contains "html only"') == [("hit", ())]
    assert filed('body :content "image" :contains "html"') == [("INBOX", ())]
    assert filed('body :raw :contains "Caf=C3=A9"') == [("hit", ())]
    assert filed('body :raw :contains "html only"') == [("INBOX", ())]
    with pytest.raises(SieveError, match='require "body"'):
        compile_script('if body :contains "x" { stop; }')


def test_date_and_currentdate_rfc5260():
    import calendar

    data = b"Date: Tue, 01 Dec 2026 23:30:00 -0500\r\nFrom: a@b.example\r\nTo: bob@example.test\r\n\r\nx\r\n"
    now = calendar.timegm((2026, 12, 5, 8, 0, 0))

    def filed(test: str, req: str = '"date", "fileinto", "relational"') -> list:
        script = compile_script(f'require [{req}]; if {test} {{ fileinto "hit"; }}')
        return run(script, Message(data, "a@b.example", "bob@example.test", now=now)).deliveries()

    assert filed('date :originalzone :is "date" "date" "2026-12-01"') == [("hit", ())]
    assert filed('date :zone "+0000" :is "date" "date" "2026-12-02"') == [("hit", ())]
    assert filed('date :zone "+0000" :is "date" "hour" "04"') == [("hit", ())]
    assert filed('date :originalzone :is "date" "zone" "-0500"') == [("hit", ())]
    assert filed('date :originalzone :is "date" "weekday" "2"') == [("hit", ())]  # a Tuesday
    assert filed('date :is "x-missing" "date" "2026-12-01"') == [("INBOX", ())]
    # The vacation range Roundcube writes (RFC 5260 §5 with relational).
    rng = ('allof (currentdate :zone "+0000" :value "ge" "iso8601" "2026-12-04T00:00:00+00:00", '
           'currentdate :zone "+0000" :value "le" "iso8601" "2026-12-06T00:00:00+00:00")')
    assert filed(rng) == [("hit", ())]
    assert filed(rng.replace("2026-12-06T00:00:00", "2026-12-05T07:59:59")) == [("INBOX", ())]
    with pytest.raises(SieveError, match="date-part"):
        compile_script('require "date"; if currentdate :is "fortnight" "1" { stop; }')
    with pytest.raises(SieveError, match="zone"):
        compile_script('require "date"; if currentdate :zone "CET" :is "year" "2026" { stop; }')


def test_editheader_rfc5293():
    r = go('require ["editheader", "fileinto"];\n'
           'addheader "X-Filtered" "yes";\n'
           'addheader :last "X-Last" "at the end";\n'
           'deleteheader "x-caffeine";\n'
           'deleteheader :matches "to" "*roadrunner*";\n'
           'deleteheader "Received";\n'  # protected: ignored
           'if header :is "x-filtered" "yes" { fileinto "seen-it"; }\n'
           'if exists "x-caffeine" { fileinto "wrong"; }\n',
           b"Received: from x\r\n" + MSG)
    assert r.deliveries() == [("seen-it", ())]
    head = r.data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"X-Filtered: yes" and head[-1] == b"X-Last: at the end"
    assert b"Received: from x" in head and not any(h.lower().startswith(b"x-caffeine") for h in head)
    assert not any(h.startswith(b"To:") for h in head)
    assert r.data.endswith(b"anvil thing.\r\n")
    two = b"X-A: 1\r\nX-A: 2\r\nX-A: 3\r\n\r\nb\r\n"
    r = go('require "editheader"; deleteheader :index 1 :last "x-a";', two)
    assert r.data == b"X-A: 1\r\nX-A: 2\r\n\r\nb\r\n"
    r = go('require "editheader"; deleteheader :index 1 "x-a";', two)
    assert r.data == b"X-A: 2\r\nX-A: 3\r\n\r\nb\r\n"
    assert go("keep;").data is None
    with pytest.raises(SieveError, match="not a header field name"):
        compile_script('require "editheader"; addheader "bad name" "x";')
    with pytest.raises(SieveError, match=":last needs :index"):
        compile_script('require "editheader"; deleteheader :last "x";')
