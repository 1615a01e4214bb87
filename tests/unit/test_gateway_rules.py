"""Gateway forwarding rules: seed 003's settings A to D, each with its expected results."""

from __future__ import annotations

import pytest

from waypost.rules import GatewayTable, parse_gateway


def dest(table: GatewayTable, address: str) -> str:
    rule = table.first(address)
    if rule is None:
        return "normal"
    return "MTA" if rule.mta else rule.host


def test_setting_a():
    t = GatewayTable.from_text("@example.jp akisoftware.jp\n")
    assert dest(t, "anyone@example.jp") == "akisoftware.jp"
    assert dest(t, "someone@other.jp") == "normal"  # "not matching: delivered normally (MTA)"


def test_setting_b_and_its_warning():
    t = GatewayTable.from_text("@example.jp mail1.akisoftware.jp\n* mail2.akisoftware.jp\n")
    assert dest(t, "a@example.jp") == "mail1.akisoftware.jp"
    assert dest(t, "a@other.jp") == "mail2.akisoftware.jp"
    reversed_ = GatewayTable.from_text("* mail2.akisoftware.jp\n@example.jp mail1.akisoftware.jp\n")
    assert dest(reversed_, "a@example.jp") == "mail2.akisoftware.jp"  # "*" first shadows everything


def test_setting_c():
    t = GatewayTable.from_text("user1@example.jp mail1.akisoftware.jp\nuser2@example.jp mail2.akisoftware.jp\n"
                               "@example.jp mail3.akisoftware.jp\n* mail4.akisoftware.jp\n")
    assert dest(t, "user1@example.jp") == "mail1.akisoftware.jp"
    assert dest(t, "USER2@Example.JP") == "mail2.akisoftware.jp"
    assert dest(t, "user3@example.jp") == "mail3.akisoftware.jp"
    assert dest(t, "x@elsewhere.jp") == "mail4.akisoftware.jp"


def test_setting_d_with_an_address_and_mta():
    # The seed's 192.168.11.10 becomes a loopback address here.
    t = GatewayTable.from_text("user1@example.jp 127.0.0.10\n@example.jp mail1.akisoftware.jp\n"
                               "@example.com MTA\n* mail2.akisoftware.jp\n")
    assert dest(t, "user1@example.jp") == "127.0.0.10"
    assert dest(t, "user2@example.jp") == "mail1.akisoftware.jp"
    assert dest(t, "x@example.com") == "MTA"
    assert dest(t, "x@example.net") == "mail2.akisoftware.jp"


def test_ports_and_rewrite():
    # Seed 003 example 1: mail2.example.jp goes to server B (192.168.1.100 port 11000) as example.jp.
    [rule], errors = parse_gateway("@mail2.example.jp 127.0.0.100:11000 rewrite=example.jp  # server B\n")
    assert not errors
    assert (rule.host, rule.port) == ("127.0.0.100", 11000)
    assert rule.envelope("user@mail2.example.jp") == "user@example.jp"


@pytest.mark.parametrize("line, reason", [
    ("@example.jp", "expected: MATCH DESTINATION"),
    ("bad@@x.jp host.jp", "match"),
    ("@bad_domain! host.jp", "match"),
    ("@example.jp host.jp:99999", "destination"),
    ("@example.jp host.jp frobnicate=1", "unknown option"),
    ("@example.jp MTA rewrite=example.jp", "rewrite= needs"),
    ("@example.jp a b c d", "expected"),
])
def test_bad_lines_are_reported_with_their_line_number(line, reason):
    rules, errors = parse_gateway(f"# comment\n* MTA\n{line}\n")
    assert len(rules) == 1
    [e] = errors
    assert e.line_no == 3 and reason in e.reason
