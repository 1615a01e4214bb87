"""The router table (waypost.router.table, .special): parsing, precedence, rewriting.

Every router record and address of the seeds 004 (English How-To), 000 (the same in
Japanese, 5.1 wording) and 001 (Japanese, logins ``name%domain``) that concerns the
table is here, with ROUTER.md's expected results.  What the resolver decides after the
table (local account, Mail to Unknown, relaying, hold queues) is tested with resolve.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waypost.router.special import (
    Via,
    is_final_domain,
    normalize_via,
    parse_via,
    unpercent,
)
from waypost.router.table import (
    MAX_HOPS,
    MAX_LINE_LENGTH,
    Match,
    Prefix,
    RecordError,
    RoutingLoop,
    RoutingTable,
    format_table,
    parse_record,
    parse_table,
)


def table(text: str) -> RoutingTable:
    records, errors = parse_table(text)
    assert errors == [], errors
    return RoutingTable.compile(records)


def steps(text: str, address: str, kind: str = "mail", **kw: object) -> list[str]:
    """Each address the table rewrites ``address`` to, until no record applies."""
    local, _, domain = address.rpartition("@")
    return [m.address for m in table(text).chain(local, domain, kind, **kw)]  # type: ignore[arg-type]


def one(text: str, address: str, kind: str = "mail", **kw: object) -> Match | None:
    local, _, domain = address.rpartition("@")
    return table(text).lookup(local, domain, kind, **kw)  # type: ignore[arg-type]


# -- seed 004 / 000: Mail to Unknown (the resolver applies the pattern; the table's helpers
# -- read the result) -------------------------------------------------------------------


def test_mail_to_unknown_via_pattern():
    # seed 004: Mail to Unknown "*%domain.dom@otherserver.dom.via"; aname@domain.dom is
    # "Rerouted ... to aname%domain.dom@otherserver.dom.via"; the envelope becomes
    # aname@domain.dom and the server otherserver.dom is found by MX.
    rerouted = "*%domain.dom@otherserver.dom.via".replace("*", "aname")
    local, _, domain = rerouted.rpartition("@")
    assert (local, domain) == ("aname%domain.dom", "otherserver.dom.via")
    assert parse_via(domain) == Via("otherserver.dom", None, False)
    assert parse_via(domain).mx  # type: ignore[union-attr]
    assert unpercent(local) == ("aname", "domain.dom")
    assert is_final_domain(domain)


def test_mail_to_unknown_ip_literal():
    # seed 004: "*%domain.dom@[11.22.33.44]" -> 11.22.33.44, port 25 (the standard port),
    # "the Router module always cuts off the IP-address domain parts".
    local, _, domain = "*%domain.dom@[11.22.33.44]".replace("*", "aname").rpartition("@")
    via = parse_via(domain)
    assert via == Via("11.22.33.44", None, True) and not via.mx
    assert unpercent(local) == ("aname", "domain.dom")


def test_older_via_spellings():
    # seed 000 (5.1): "aname%domain.dom@otherserver.dom.smtp"; the 6.x manual: "._via".
    assert normalize_via("otherserver.dom.smtp") == "otherserver.dom.via"
    assert normalize_via("otherserver.dom._via") == "otherserver.dom.via"
    assert normalize_via("OtherServer.dom.SMTP") == "OtherServer.dom.via"
    assert normalize_via("smtp") == "smtp" and normalize_via("mail.smtp.example") == "mail.smtp.example"
    assert parse_via("otherserver.dom.smtp") == Via("otherserver.dom")
    rec = parse_record("domain.dom = domain.dom@otherserver.dom.smtp")
    assert rec is not None and rec.right == "domain.dom@otherserver.dom.via"
    rec = parse_record("old = otherserver.dom._via")
    assert rec is not None and rec.right == "otherserver.dom.via"


# -- seed 004: relaying for certain domains ---------------------------------------------


def test_relay_friend_com_by_mx():
    text = "Relay: friend.com = friend.com@friend.com.via"
    m = one(text, "joe@friend.com")
    assert m is not None
    assert m.address == "joe%friend.com@friend.com.via"
    assert m.relay is Prefix.RELAY and m.scope is None and m.record.line_no == 1
    assert parse_via(m.domain) == Via("friend.com")  # MX of friend.com
    assert unpercent(m.local) == ("joe", "friend.com")  # envelope joe@friend.com
    assert steps(text, "joe@friend.com") == ["joe%friend.com@friend.com.via"]  # final
    for kind in ("signal", "access", "http"):  # "relay all E-Mail and Signals"; no prefix of kind
        assert one(text, "joe@friend.com", kind) is not None


def test_relay_friend_com_via_firewall():
    text = "Relay: friend.com = friend.com@firewall.friend.com.via"
    assert steps(text, "joe@friend.com") == ["joe%friend.com@firewall.friend.com.via"]
    assert parse_via("firewall.friend.com.via") == Via("firewall.friend.com")


def test_relayall_and_norelay_prefixes_parse():
    # seed 004: "you can omit it, or you may want to use the RelayAll: prefix instead".
    assert one("RelayAll: friend.com = friend.com@friend.com.via", "joe@friend.com").relay is Prefix.RELAYALL  # type: ignore[union-attr]
    assert one("friend.com = friend.com@friend.com.via", "joe@friend.com").relay is None  # type: ignore[union-attr]


# -- seed 004: bypassing MX/SRV -----------------------------------------------------------


def test_bypass_mx_ip_literal():
    text = "target.domain = target.domain@[11.22.33.44]"
    assert steps(text, "joe@target.domain") == ["joe%target.domain@[11.22.33.44]"]
    assert parse_via("[11.22.33.44]") == Via("11.22.33.44", None, True)
    assert unpercent("joe%target.domain") == ("joe", "target.domain")


BYPASS = """\
Mail:target.domain = target.domain@relay.domain.25.via
Signal:target.domain = target.domain@relay.domain.5060.via
"""


def test_bypass_mx_by_a_record_mail_and_signal():
    # seed 004: the Mail: record for E-mail (A record, port 25, no MX), the Signal:
    # record for SIP (port 5060, no SRV); same left side, chosen by the kind of name.
    m = one(BYPASS, "joe@target.domain", "mail")
    assert m is not None and m.record.line_no == 1 and m.scope is Prefix.MAIL
    assert m.address == "joe%target.domain@relay.domain.25.via"
    via = parse_via(m.domain)
    assert via == Via("relay.domain", 25, False) and not via.mx
    s = one(BYPASS, "joe@target.domain", "signal")
    assert s is not None and s.record.line_no == 2
    assert s.address == "joe%target.domain@relay.domain.5060.via"
    assert parse_via(s.domain) == Via("relay.domain", 5060, False)
    assert one(BYPASS, "joe@target.domain", "access") is None
    assert one(BYPASS, "joe@target.domain", "http") is None


def test_relay_prefix_added_to_a_kind_prefix():
    # seed 004: "You may want to add a Relay:, NoRelay: or RelayAll: prefix to these
    # Router records" -- records that already have Mail:/Signal:.
    rec = parse_record("Relay: Mail:target.domain = target.domain@relay.domain.25.via")
    assert rec is not None and (rec.relay, rec.scope) == (Prefix.RELAY, Prefix.MAIL)
    assert str(rec) == "Relay: Mail: target.domain = target.domain@relay.domain.25.via"
    rec2 = parse_record("mail: relayall: target.domain = target.domain@relay.domain.25.via")
    assert rec2 is not None and (rec2.relay, rec2.scope) == (Prefix.RELAYALL, Prefix.MAIL)


# -- seed 004: a sibling SMTP server on another port or address ----------------------------


SIBLING = """\
other-port = 127.0.0.1.26.via
other-ip = 11.22.33.44.25.via
Relay: client57.com = client57.com@other-port
"""


def test_sibling_mta_other_port():
    assert steps(SIBLING, "joe@client57.com") == [
        "joe%client57.com@other-port",
        "joe%client57.com@127.0.0.1.26.via",
    ]
    assert parse_via("127.0.0.1.26.via") == Via("127.0.0.1", 26, True)
    assert unpercent("joe%client57.com") == ("joe", "client57.com")
    first = table(SIBLING).lookup("joe", "client57.com")
    assert first is not None and first.relay is Prefix.RELAY


def test_sibling_mta_other_ip():
    assert steps(SIBLING, "joe@other-ip") == ["joe@11.22.33.44.25.via"]
    assert parse_via("11.22.33.44.25.via") == Via("11.22.33.44", 25, True)


def test_sibling_mta_in_one_record():
    text = "Relay: client57.com = client57.com@127.0.0.1.26.via"
    assert steps(text, "joe@client57.com") == ["joe%client57.com@127.0.0.1.26.via"]


# -- seed 004: one ETRN for many domains ----------------------------------------------------


def test_etrn_many_domains_one_queue():
    text = "domain2.dom = domain2.dom@domain1.dom.via\ndomain3.dom = domain3.dom@domain1.dom.via\n"
    assert steps(text, "joe@domain2.dom") == ["joe%domain2.dom@domain1.dom.via"]
    assert steps(text, "ann@domain3.dom") == ["ann%domain3.dom@domain1.dom.via"]
    # The resolver holds it in the domain1.dom queue when that domain is held; the
    # envelope released by "ETRN domain1.dom" is joe@domain2.dom.
    assert parse_via("domain1.dom.via") == Via("domain1.dom")
    assert unpercent("joe%domain2.dom") == ("joe", "domain2.dom")
    assert steps(text, "joe@domain1.dom") == []


# -- seed 004 / 000: username.domain.dom personal web sites --------------------------------


WEB_SECONDARY = """\
*.domain.dom = *@domain.dom
<LoginPage%*@domain.dom> = *@domain.dom
"""
WEB_MAIN = """\
*.domain.dom = *@fict
<LoginPage%*@fict> = *
"""


def test_personal_web_site_secondary_domain():
    # seed 004: "These records route the LoginPage@username.domain.dom addresses to
    # username@domain.dom addresses".
    assert steps(WEB_SECONDARY, "LoginPage@alice.domain.dom", "http") == [
        "LoginPage%alice@domain.dom",
        "alice@domain.dom",
    ]
    m = one(WEB_SECONDARY, "LoginPage@alice.domain.dom", "http")
    assert m is not None and m.capture == "alice" and m.record.line_no == 1


def test_personal_web_site_main_domain():
    # seed 004: "(or username addresses if domain.dom is the Main Domain)": an address
    # with no domain, i.e. in the main domain.
    chain = table(WEB_MAIN).chain("LoginPage", "alice.domain.dom", "http")
    assert [m.address for m in chain] == ["LoginPage%alice@fict", "alice"]
    assert (chain[-1].local, chain[-1].domain) == ("alice", "")
    # With the main domain given the chain goes on, and nothing matches domain.dom itself.
    assert steps(WEB_MAIN, "LoginPage@alice.domain.dom", "http", main_domain="domain.dom") == [
        "LoginPage%alice@fict",
        "alice",
    ]


def test_personal_web_site_keeps_case_and_deeper_names():
    # Domains compare in lower case (and captures from a domain are lower case).
    assert steps(WEB_SECONDARY, "LoginPage@Alice.Domain.DOM", "http") == [
        "LoginPage%alice@domain.dom",
        "alice@domain.dom",
    ]
    # '*' stands for one or more labels.
    assert steps(WEB_SECONDARY, "LoginPage@a.b.domain.dom", "http") == [
        "LoginPage%a.b@domain.dom",
        "a.b@domain.dom",
    ]
    # '*' matches at least one character: domain.dom itself is not matched.
    assert steps(WEB_SECONDARY, "LoginPage@domain.dom", "http") == []


def test_seed_000_records_pasted_on_one_line_are_an_error():
    # seed 000 prints both records on one line ("*.domain.dom = *@domain.dom
    # <LoginPage%*@domain.dom> = *@domain.dom"): one record per line, so this is refused.
    records, errors = parse_table("*.domain.dom = *@domain.dom <LoginPage%*@domain.dom> = *@domain.dom\n")
    assert records == [] and len(errors) == 1 and errors[0].line_no == 1


# -- seed 001: logins name%domain ------------------------------------------------------------


def test_login_percent_form():
    # seed 001: the third user logs in as "info%client2.com" instead of "info": the
    # account info in client2.com (the last '%' turns into '@').
    assert unpercent("info%client2.com") == ("info", "client2.com")
    assert unpercent("info") is None
    assert unpercent("a%b%c.com") == ("a%b", "c.com")
    assert unpercent("%c.com") is None and unpercent("info%") is None


def test_access_records_apply_to_logins_and_host_names_only():
    # ROUTER.md: "Access: (login and HTTP names only)"; seed 001: login names are routed
    # like addresses.
    text = "Access: <info@company.com> = info@client2.com\n"
    assert one(text, "info@company.com", "access").address == "info@client2.com"  # type: ignore[union-attr]
    assert one(text, "info@company.com", "http") is not None
    assert one(text, "info@company.com", "mail") is None
    assert one(text, "info@company.com", "signal") is None


# -- precedence ------------------------------------------------------------------------------


def test_address_level_before_domain_level():
    text = "x.com = x.com@a.via\n<joe@x.com> = joe@b.com\n"
    assert one(text, "joe@x.com").address == "joe@b.com"  # type: ignore[union-attr]
    assert one(text, "ann@x.com").address == "ann%x.com@a.via"  # type: ignore[union-attr]


def test_exact_before_wildcard():
    text = "<*@x.com> = any@w.com\n<joe@x.com> = joe@e.com\n*.x.com = w.com\nmail.x.com = e.com\n"
    assert one(text, "joe@x.com").address == "joe@e.com"  # type: ignore[union-attr]
    assert one(text, "ann@x.com").address == "any@w.com"  # type: ignore[union-attr]
    assert one(text, "joe@mail.x.com").address == "joe@e.com"  # type: ignore[union-attr]
    assert one(text, "joe@www.x.com").address == "joe@w.com"  # type: ignore[union-attr]


def test_longest_literal_wins_then_table_order():
    text = (
        "<j*@x.com> = short@r.com\n"
        "<jo*@x.com> = long@r.com\n"
        "<*e@x.com> = same-as-short@r.com\n"
        "<*@x.com> = star@r.com\n"
    )
    assert one(text, "joe@x.com").address == "long@r.com"  # type: ignore[union-attr]
    assert one(text, "jane@x.com").address == "short@r.com"  # j* (line 1) before *e (line 3)
    assert one(text, "mike@x.com").address == "same-as-short@r.com"  # type: ignore[union-attr]
    assert one(text, "bob@x.com").address == "star@r.com"  # type: ignore[union-attr]
    # "<*e@...>" before "<j*@...>" in the table: table order decides between equals.
    swapped = "<*e@x.com> = e@r.com\n<j*@x.com> = j@r.com\n"
    assert one(swapped, "jane@x.com").address == "e@r.com"  # type: ignore[union-attr]


def test_star_in_the_domain_of_an_address_pattern():
    text = "<postmaster@*.x.com> = pm@x.com\n<post*@a.x.com> = other@x.com\n"
    # "postmaster@.x.com" (10 + 6 literal) beats "post@a.x.com" (4 + 8).
    assert one(text, "postmaster@a.x.com").address == "pm@x.com"  # type: ignore[union-attr]
    assert one(text, "postbox@a.x.com").address == "other@x.com"  # type: ignore[union-attr]
    m = one(text, "Postmaster@b.c.x.com")
    assert m is not None and m.capture == "b.c"
    assert one(text, "postmaster@x.com") is None


def test_domain_wildcards_longest_suffix_first():
    text = "*.com = com.via\n*.b.com = b.via\n*.a.b.com = ab.via\n"
    assert one(text, "u@x.a.b.com").domain == "ab.via"  # type: ignore[union-attr]
    assert one(text, "u@a.b.com").domain == "b.via"  # type: ignore[union-attr]
    assert one(text, "u@b.com").domain == "com.via"  # type: ignore[union-attr]
    assert one(text, "u@com") is None


def test_general_domain_patterns_and_catch_all():
    text = "* = all.via\nmail*.x.com = mail.via\n*.x.com = x.via\n"
    assert one(text, "u@mail1.x.com").domain == "mail.via"  # "mail.x.com" (10) beats ".x.com" (6)
    assert one(text, "u@web.x.com").domain == "x.via"  # type: ignore[union-attr]
    assert one(text, "u@other.org").domain == "all.via"  # type: ignore[union-attr]
    m = one("mail*.x.com = *.via\n", "u@mail-7.x.com")
    assert m is not None and m.capture == "-7" and m.domain == "-7.via"


def test_kind_filter_falls_through_to_the_next_record():
    text = "Signal: <joe@x.com> = sip@y.com\nx.com = x.com@mx.via\n"
    assert one(text, "joe@x.com", "signal").address == "sip@y.com"  # type: ignore[union-attr]
    assert one(text, "joe@x.com", "mail").address == "joe%x.com@mx.via"  # type: ignore[union-attr]


def test_norelay_records_exist_only_for_trusted_clients():
    # ROUTER.md: "NoRelay: -- the record applies only for trusted clients; for anyone
    # else it does not exist".
    text = "NoRelay: partner.com = partner.com@10.0.0.5.25.via\n*.com = com@gw.via\n"
    m = one(text, "joe@partner.com", trusted=True)
    assert m is not None and m.relay is Prefix.NORELAY
    assert m.address == "joe%partner.com@10.0.0.5.25.via"
    assert one(text, "joe@partner.com", trusted=False).address == "joe%com@gw.via"  # type: ignore[union-attr]
    assert one("NoRelay: partner.com = x.via\n", "joe@partner.com") is None


def test_case_insensitive_matching_keeps_the_spelling():
    text = "<Sales-*@Example.COM> = *@Crm.Example.com\n"
    m = one(text, "SALES-Europe@example.com")
    assert m is not None and m.capture == "Europe" and m.address == "Europe@crm.example.com"


def test_star_matches_one_or_more_characters():
    text = "<list-*@x.com> = *%lists@x.com\n"
    assert one(text, "list-@x.com") is None
    assert one(text, "list-a@x.com").local == "a%lists"  # type: ignore[union-attr]
    assert one("<*-owner@x.com> = o@x.com\n", "-owner@x.com") is None


def test_domain_rewrite_without_and_with_at():
    # ROUTER.md: "If the right side has no @, the domain part is replaced: L@D -> L@right.
    # If the right side is X@Y, the result is L%X@Y".
    assert one("a.com = b.com", "joe@a.com").address == "joe@b.com"  # type: ignore[union-attr]
    assert one("a.com = x@b.com", "joe@a.com").address == "joe%x@b.com"  # type: ignore[union-attr]
    assert one("a.com = x@b.com", "j%k@a.com").address == "j%k%x@b.com"  # type: ignore[union-attr]
    assert one("*.a.com = *.b.com", "joe@q.a.com").address == "joe@q.b.com"  # type: ignore[union-attr]


def test_ip_literal_on_the_left():
    m = one("[192.0.2.1] = example.com", "joe@[192.0.2.1]")
    assert m is not None and m.address == "joe@example.com"


def test_lookup_rejects_an_unknown_kind():
    with pytest.raises(ValueError):
        table("a.com = b.com").lookup("joe", "a.com", "smtp")


def test_match_description_for_traces():
    m = one("# comment\nRelay: friend.com = friend.com@friend.com.via", "joe@friend.com")
    assert m is not None
    assert m.description == (
        "router line 2 (Relay: friend.com = friend.com@friend.com.via): "
        "joe@friend.com -> joe%friend.com@friend.com.via"
    )


# -- hops ---------------------------------------------------------------------------------


def test_routing_loop_is_reported():
    text = "a.com = b.com\nb.com = a.com\n"
    with pytest.raises(RoutingLoop) as exc:
        table(text).chain("joe", "a.com")
    assert len(exc.value.matches) == MAX_HOPS + 1
    assert "more than 16" in str(exc.value)


def test_hop_limit_edge():
    # A chain of exactly max_hops records is fine; one more is a loop.
    text = "".join(f"d{i}.com = d{i + 1}.com\n" for i in range(5))
    assert len(table(text).chain("u", "d0.com", max_hops=5)) == 5
    with pytest.raises(RoutingLoop):
        table(text).chain("u", "d0.com", max_hops=4)


# -- parsing and errors --------------------------------------------------------------------


def test_comments_and_blank_lines():
    text = (
        "# a whole-line comment\n"
        "\n"
        "   \t\n"
        "a.com = b.com   # a trailing comment\n"
        "<a#b@c.com> = d#not-a-comment@e.com\n"
        "  # indented comment\n"
    )
    records, errors = parse_table(text)
    assert errors == []
    assert [(r.line_no, r.left, r.right) for r in records] == [
        (4, "a.com", "b.com"),
        (5, "<a#b@c.com>", "d#not-a-comment@e.com"),
    ]


def test_line_endings_and_line_numbers():
    records, errors = parse_table("a.com = b.com\r\nbad\rc.com = d.com\n\nbad again")
    assert [(r.line_no, r.left) for r in records] == [(1, "a.com"), (3, "c.com")]
    assert [e.line_no for e in errors] == [2, 5]


def test_lookup_does_not_scan_the_records(monkeypatch):
    # 15,000 records; one look-up inspects a handful of index slots, whatever matches.
    from waypost.router import table as table_module

    lines = [f"<p{i}x*@big.com> = *@r.com" for i in range(5000)]
    lines += [f"d{i}.com = r.com" for i in range(5000)]
    lines += [f"*.w{i}.com = r.com" for i in range(5000)]
    t = table("\n".join(lines))
    calls = []
    real_first = table_module._first

    def counting_first(entries, kind_bit, visible):
        calls.append(len(entries))
        return real_first(entries, kind_bit, visible)

    monkeypatch.setattr(table_module, "_first", counting_first)
    # (address, the record expected, the index slots inspected).  Every record found is
    # picked by _first from its slot, so a hit that did not go through it (an inlined or
    # linear scan the counter cannot see) fails here instead of counting nothing.
    cases = [("p4999xy", "big.com", "<p4999x*@big.com>", [1]), ("nobody", "big.com", None, []),
             ("u", "d77.com", "d77.com", [1]), ("u", "a.b.w4321.com", "*.w4321.com", [1]),
             ("u", "miss.org", None, [])]
    for local, domain, left, slots in cases:
        calls.clear()
        m = t.lookup(local, domain)
        assert (m and m.record.left) == left
        assert calls == slots, (local, domain, calls)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("Foo: a.com = b.com", "unknown prefix"),
        ("Mail: Signal: a.com = b.com", "two of Mail:/Signal:/Access:"),
        ("Relay: NoRelay: a.com = b.com", "two of Relay:/NoRelay:/RelayAll:"),
        ("a.com b.com", "missing '='"),
        ("<joe@a.com> b.com", "missing '='"),
        ("<joe@a.com> x = b.com", "unexpected text"),
        (" = b.com", "empty left side"),
        ("a.com = ", "empty right side"),
        ("a.com = <>", "empty right side"),
        ("<*@*.com> = b.com", "more than one '*' on the left side"),
        ("*.a.com = *@*.b.com", "more than one '*' on the right side"),
        ("a.com = *@b.com", "'*' on the right side but none on the left"),
        ("<joe@a.com = b.com", "unbalanced '<' on the left side"),
        ("joe@a.com> = b.com", "unbalanced '>'"),
        ("<joe@a.com> = <x@b.com", "unbalanced '<' on the right side"),
        ("<joe@a.com> = x@b.com>", "unbalanced"),
        ("a_b.com = b.com", "bad domain on the left side"),
        ("a.com = b..com", "bad domain on the right side"),
        ("-a.com = b.com", "bad domain on the left side"),
        ("a.com = x@[1.2.3]", "bad domain on the right side"),
        ("<joe> = b.com", "needs local@domain"),
        ("<@a.com> = b.com", "empty local part on the left side"),
        ("<joe@> = b.com", "empty domain on the left side"),
        ("<> = b.com", "empty address"),
        ("<jo e@a.com> = b.com", "white space"),
        ("joe@a.com = b.com", "has no '@'"),
        ("a.com = @b.com", "empty local part on the right side"),
        ("a.com = x@", "empty domain on the right side"),
        ("a.com = x y", "white space in the right side"),
        ("a.com = jo(e@b.com", "bad local part"),
        ("*.[1.2.3.4] = b.com", "IP literal"),
        ("a.*-.com = b.com", "bad domain on the left side"),
    ],
)
def test_each_kind_of_error(line: str, reason: str):
    text = f"# line 1\nok.com = fine.com\n{line}\nok2.com = fine.com\n"
    records, errors = parse_table(text)
    assert [r.left for r in records] == ["ok.com", "ok2.com"]
    assert len(errors) == 1, errors
    err = errors[0]
    assert err.line_no == 3 and err.line == line
    assert reason in err.reason, err.reason
    with pytest.raises(RecordError):
        parse_record(line)


def test_line_length_limit():
    long_local = "a" * (MAX_LINE_LENGTH - len("<@a.com> = b.com"))
    assert parse_record(f"<{long_local}@a.com> = b.com") is not None
    records, errors = parse_table(f"<{long_local}x@a.com> = b.com")
    assert records == [] and "longer than" in errors[0].reason


def test_normalisation():
    rec = parse_record("  mail:  Friend.COM. = <Joe.Smith@Friend.COM._VIA>  ")
    assert rec is not None
    assert (rec.scope, rec.left, rec.right) == (Prefix.MAIL, "friend.com", "Joe.Smith@friend.com.via")
    rec = parse_record("*.Bücher.example = *@bücher.example")
    assert rec is not None
    assert (rec.left, rec.right) == ("*.xn--bcher-kva.example", "*@xn--bcher-kva.example")
    rec = parse_record("<LoginPage%*@Domain.Dom> = *")
    assert rec is not None and (rec.left, rec.right) == ("<LoginPage%*@domain.dom>", "*")


def test_export_import_round_trip():
    text = (
        "# seed 004 and more\n"
        "Relay: friend.com = friend.com@friend.com.via\n"
        "Mail:target.domain = target.domain@relay.domain.25.via\n"
        "Signal:target.domain = target.domain@relay.domain.5060.via\n"
        "target2.domain = target2.domain@[11.22.33.44]\n"
        "other-port = 127.0.0.1.26.via\n"
        "RelayAll: client57.com = client57.com@other-port\n"
        "NoRelay: Access: <a@b.com> = c\n"
        "*.domain.dom = *@domain.dom\n"
        "<LoginPage%*@domain.dom> = *@domain.dom\n"
        "<LoginPage%*@fict> = *\n"
        "old.dom = old.dom@otherserver.dom.smtp\n"
    )
    records, errors = parse_table(text)
    assert errors == []
    exported = format_table(records)
    again, errors2 = parse_table(exported)
    assert errors2 == [] and again == records
    assert format_table(again) == exported
    assert "old.dom = old.dom@otherserver.dom.via\n" in exported


# -- special domains -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "via"),
    [
        ("host.via", Via("host")),
        ("relay.domain.25.via", Via("relay.domain", 25)),
        ("127.0.0.1.26.via", Via("127.0.0.1", 26, True)),
        ("11.22.33.44.25.via", Via("11.22.33.44", 25, True)),
        ("1.2.3.4.via", Via("1.2.3.4", None, True)),
        ("[11.22.33.44]", Via("11.22.33.44", None, True)),
        ("[IPv6:2001:db8::1]", Via("2001:db8::1", None, True)),
        ("Friend.COM._via", Via("friend.com")),
        ("friend.com.smtp", Via("friend.com")),
        ("friend.com", None),
        (".via", None),
        ("25.via", None),
        ("host.0.via", None),
        ("host.65536.via", None),
        ("1.2.3.via", None),
        ("1.2.3.4.5.6.via", None),
        ("bad_host.via", None),
        ("[1.2.3]", None),
    ],
)
def test_parse_via(domain: str, via: Via | None):
    assert parse_via(domain) == via


def test_via_properties():
    assert Via("friend.com").mx and str(Via("friend.com")) == "friend.com"
    assert not Via("relay.domain", 25).mx and str(Via("relay.domain", 25)) == "relay.domain:25"
    assert not Via("127.0.0.1", None, True).mx
    assert str(Via("::1", 26, True)) == "[::1]:26"
    assert is_final_domain("[1.2.3.4]") and is_final_domain("x.via") and not is_final_domain("x.com")


# -- properties ----------------------------------------------------------------------------

_TOKENS = st.sampled_from([
    "a.com", "b.com", "x.y.z", "*", "*.", ".", "@", "<", ">", "=", " = ", "%", "#", " ",
    "Mail:", "Relay:", "NoRelay:", "Access:", "Signal:", "RelayAll:", "Bogus:",
    "[1.2.3.4]", ".via", "._via", ".smtp", ".25", "joe", "LoginPage", "fict", "-", "é",
])
_LINE = st.one_of(
    st.lists(_TOKENS, max_size=10).map("".join),
    st.text(st.characters(blacklist_characters="\r\n"), max_size=40),
)
_NAME = st.sampled_from(["a.com", "b.com", "x.y.z", "fict", "q.a.com", "[1.2.3.4]", "main.dom", "Ü.com", ""])
_LOCAL = st.sampled_from(["joe", "LoginPage", "LoginPage%alice", "a%b", "", "x*y", "İ"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINE, max_size=12), addresses=st.lists(st.tuples(_LOCAL, _NAME), max_size=8),
       kind=st.sampled_from(["mail", "signal", "access", "http"]), trusted=st.booleans())
def test_random_tables_never_crash_and_chains_terminate(lines, addresses, kind, trusted):
    records, errors = parse_table("\n".join(lines))
    assert len(records) + len(errors) <= len(lines)
    t = RoutingTable.compile(records)
    for local, domain in addresses:
        m = t.lookup(local, domain.lower(), kind, trusted=trusted)
        assert m is None or isinstance(m, Match)
        try:
            chain = t.chain(local, domain.lower(), kind, trusted=trusted, main_domain="main.dom", max_hops=8)
        except RoutingLoop as loop:
            assert len(loop.matches) == 9
        else:
            assert len(chain) <= 8
    # What was accepted exports and reads back the same.
    again, errors2 = parse_table(format_table(records))
    assert errors2 == [] and again == records


_DOMAINS = st.sampled_from(["a.com", "b.com", "c.a.com", "*.a.com", "*.com", "*", "fict", "*.b.com"])
_ADDR_LEFT = st.sampled_from(["<joe@a.com>", "<j*@a.com>", "<*@b.com>", "<joe@*.com>", "<LoginPage%*@fict>"])
_RIGHT = st.sampled_from(["a.com", "b.com", "x@c.a.com", "*@fict", "*", "*.b.com", "joe@a.com", "h.via", "x@[1.2.3.4]"])


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["", "Mail: ", "Relay: ", "NoRelay: "]),
                               st.one_of(_DOMAINS, _ADDR_LEFT), _RIGHT), max_size=10),
       local=st.sampled_from(["joe", "jim", "LoginPage", "LoginPage%bob"]),
       domain=st.sampled_from(["a.com", "b.com", "c.a.com", "d.c.a.com", "fict", "x.org"]))
def test_valid_tables_rewrite_consistently(rows, local, domain):
    text = "\n".join(f"{p}{left} = {right}" for p, left, right in rows)
    records, _ = parse_table(text)
    t = RoutingTable.compile(records)
    try:
        chain = t.chain(local, domain, trusted=True, max_hops=MAX_HOPS)
    except RoutingLoop as loop:
        chain = loop.matches
        assert len(chain) == MAX_HOPS + 1
    for prev, nxt in zip(chain, chain[1:]):
        # each step starts from the previous result
        assert (nxt.from_local, nxt.from_domain) == (prev.local, prev.domain)
    for m in chain:
        assert "*" not in m.address or "*" in m.from_local  # every '*' on the right was filled


def _reference_lookup(records, local, domain, kind, trusted):
    """The precedence rules of ROUTER.md by brute force: every record, one by one."""
    import re

    kinds = {"mail": Prefix.MAIL, "signal": Prefix.SIGNAL, "access": Prefix.ACCESS, "http": Prefix.ACCESS}
    best = None
    for order, rec in enumerate(records):
        if rec.scope is not None and rec.scope is not kinds[kind]:
            continue
        if rec.relay is Prefix.NORELAY and not trusted:
            continue
        if rec.is_address:
            pattern, subject = f"{rec.left_local}@{rec.left_domain}", f"{local.lower()}@{domain}"
        else:
            pattern, subject = rec.left_domain, domain
        m = re.fullmatch(re.escape(pattern).replace(r"\*", "(.+)"), subject)
        if m is None:
            continue
        wild = "*" in pattern
        key = (0 if rec.is_address else 2) + wild, -(len(pattern) - wild), order
        if best is None or key < best[0]:
            best = (key, rec, m.group(1) if wild else None)
    return best


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from(["", "Mail: ", "Access: ", "NoRelay: ", "Signal: "]),
                               st.one_of(_DOMAINS, _ADDR_LEFT,
                                         st.sampled_from(["<jo*@a.com>", "<*e@a.com>", "<joe@*>", "<joe@c.*.com>",
                                                          "<*@c.a.com>", "a*.com", "*a.com", "c.a.*"])),
                               st.just("r.com")), max_size=12),
       local=st.sampled_from(["joe", "Jim", "je", "LoginPage", "LoginPage%bob"]),
       domain=st.sampled_from(["a.com", "b.com", "c.a.com", "d.c.a.com", "fict", "x.org", "c.b.a.com"]),
       kind=st.sampled_from(["mail", "signal", "access", "http"]), trusted=st.booleans())
def test_indexes_agree_with_a_linear_scan(rows, local, domain, kind, trusted):
    records, errors = parse_table("\n".join(f"{p}{left} = {right}" for p, left, right in rows))
    assert errors == []
    m = RoutingTable.compile(records).lookup(local, domain, kind, trusted=trusted)
    ref = _reference_lookup(records, local, domain, kind, trusted)
    if ref is None:
        assert m is None
    else:
        assert m is not None and m.record is ref[1]
        assert m.capture is None if ref[2] is None else m.capture.lower() == ref[2]
