"""The full resolver: the Router table, local objects, Mail to Unknown, relay permission.

Every example of ROUTER.md's table and of seeds 004/000/001 that concerns resolution is
a test here, against a real SQLite database.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waypost.directory import Directory
from waypost.router import Context, Router
from waypost.router.resolve import MAX_HOPS, store_table

OUTSIDE = Context(kind="mail", client_ip="203.0.113.9")
TRUSTED = Context(kind="mail", client_ip="127.0.0.1")


@pytest.fixture
def env(tmp_path, make_db):
    db = make_db("w.db")
    d = Directory(db, "main.dom")
    d.add_domain("main.dom")
    d.add_domain("domain.dom")
    r = Router(d, ["127.0.0.0/8"], own_addresses=["127.0.0.1"])
    yield d, r
    db.close()


def table(d, text):
    count, errors = store_table(d.db, text)
    assert not errors, errors
    return count


def route(r, address, ctx=OUTSIDE):
    return r.resolve(address, ctx).route


# -- ROUTER.md's table, row by row -------------------------------------------------

def test_mail_to_unknown_reroute_for_gradual_migration(env):
    d, r = env
    d.set_domain("domain.dom", mail_to_unknown="*%domain.dom@otherserver.dom.via")
    res = r.resolve("aname@domain.dom", OUTSIDE)
    assert (res.route.kind, res.route.target, res.route.address) == ("remote", "mx:otherserver.dom", "aname@domain.dom")
    assert any("Mail to Unknown of domain.dom: rerouted" in s for s in res.trace)
    d.add_account("aname@domain.dom", None)
    assert route(r, "aname@domain.dom").kind == "local"


def test_mail_to_unknown_ip_literal_and_old_spelling(env):
    d, r = env
    d.set_domain("domain.dom", mail_to_unknown="*%domain.dom@[11.22.33.44]")
    rt = route(r, "aname@domain.dom")
    assert (rt.kind, rt.host, rt.port, rt.address) == ("remote", "11.22.33.44", None, "aname@domain.dom")
    assert rt.target == "11.22.33.44"  # the standard port: delivery.smtp_port
    d.set_domain("domain.dom", mail_to_unknown="*%domain.dom@otherserver.dom.smtp")  # seed 000 (5.1 wording)
    assert route(r, "aname@domain.dom").target == "mx:otherserver.dom"


@pytest.mark.parametrize("setting, kind", [("rejected", "refuse"), ("discarded", "discard"), ("bounced", "bounce")])
def test_mail_to_unknown_words(env, setting, kind):
    d, r = env
    d.set_domain("domain.dom", mail_to_unknown=setting)
    rt = route(r, "nobody@domain.dom")
    assert rt.kind == kind
    if kind != "discard":
        assert (rt.code, rt.status) == (550, "5.1.1")


def test_relay_record_for_a_friend_domain(env):
    d, r = env
    table(d, "Relay: friend.com = friend.com@friend.com.via\n")
    res = r.resolve("joe@friend.com", OUTSIDE)
    assert (res.route.kind, res.route.target, res.route.address) == ("remote", "mx:friend.com", "joe@friend.com")
    assert any("relay: allowed (a Relay:" in s for s in res.trace)


def test_relay_via_firewall(env):
    d, r = env
    table(d, "Relay: friend.com = friend.com@firewall.friend.com.via\n")
    rt = route(r, "joe@friend.com")
    assert (rt.target, rt.address) == ("mx:firewall.friend.com", "joe@friend.com")


def test_ip_literal_bypasses_mx_for_trusted_clients_only(env):
    d, r = env
    table(d, "target.domain = target.domain@[11.22.33.44]\n")
    rt = route(r, "joe@target.domain", TRUSTED)
    assert (rt.kind, rt.host, rt.address) == ("remote", "11.22.33.44", "joe@target.domain")
    refused = route(r, "joe@target.domain", OUTSIDE)  # no Relay: prefix
    assert (refused.kind, refused.code, refused.status) == ("refuse", 554, "5.7.1")


def test_explicit_port_means_a_records_only(env):
    d, r = env
    table(d, "Mail:target.domain = target.domain@relay.domain.25.via\n"
             "Signal:target.domain = target.domain@relay.domain.5060.via\n")
    rt = route(r, "joe@target.domain", TRUSTED)
    assert (rt.host, rt.port, rt.target, rt.address) == ("relay.domain", 25, "relay.domain:25", "joe@target.domain")


def test_sibling_mta_on_another_port(env):
    d, r = env
    table(d, "other-port = 127.0.0.1.26.via\nRelay: client57.com = client57.com@other-port\n")
    rt = route(r, "joe@client57.com")
    assert (rt.kind, rt.host, rt.port, rt.address) == ("remote", "127.0.0.1", 26, "joe@client57.com")
    table(d, "Relay: client57.com = client57.com@127.0.0.1.26.via\n")  # "or simply"
    assert route(r, "joe@client57.com").target == "127.0.0.1:26"


def test_other_ip_sibling(env):
    d, r = env
    table(d, "other-ip = 11.22.33.44.25.via\n")
    rt = route(r, "x@other-ip", TRUSTED)
    assert (rt.host, rt.port) == ("11.22.33.44", 25)


def test_one_queue_for_several_domains(env):
    d, r = env
    table(d, "domain2.dom = domain2.dom@domain1.dom.via\ndomain3.dom = domain3.dom@domain1.dom.via\n")
    for dom in ("domain2.dom", "domain3.dom"):
        rt = route(r, f"joe@{dom}", TRUSTED)
        assert (rt.target, rt.address) == ("mx:domain1.dom", f"joe@{dom}")


def test_personal_web_site_host_names(env):
    d, r = env
    d.add_account("alice@domain.dom", None)
    table(d, "*.domain.dom = *@domain.dom\n<LoginPage%*@domain.dom> = *@domain.dom\n")
    res = r.resolve("LoginPage@alice.domain.dom", Context(kind="http"))
    assert (res.route.kind, res.route.address) == ("local", "alice@domain.dom")


def test_personal_web_site_via_fictitious_domain_to_main_domain(env):
    d, r = env
    d.add_account("alice@main.dom", None)
    table(d, "*.domain.dom = *@fict\n<LoginPage%*@fict> = *\n")
    res = r.resolve("LoginPage@alice.domain.dom", Context(kind="http"))
    assert (res.route.kind, res.route.address) == ("local", "alice@main.dom")


def test_login_names_percent_at_and_multihoming(env):
    d, r = env
    d.add_domain("client2.com")
    d.add_account("info@client2.com", None)
    d.add_account("info@main.dom", None)
    assert r.resolve_login("info%client2.com", Context(kind="access")).address == "info@client2.com"
    assert r.resolve_login("info@client2.com", Context(kind="access")).address == "info@client2.com"
    assert r.resolve_login("info", Context(kind="access", server_ip="127.0.0.2")).address == "info@main.dom"
    d.set_domain("client2.com", ips=["127.0.0.2"])
    assert r.resolve_login("info", Context(kind="access", server_ip="127.0.0.2")).address == "info@client2.com"
    assert r.resolve_login("info", Context(kind="access", server_ip="127.0.0.1")).address == "info@main.dom"


def test_access_records_apply_to_logins_only(env):
    d, r = env
    d.add_account("helpdesk@main.dom", None)
    table(d, "Access: <support@main.dom> = helpdesk@main.dom\n")
    assert r.resolve_login("support", Context(kind="access")).address == "helpdesk@main.dom"
    assert route(r, "support@main.dom").kind == "refuse"  # not for mail


# -- relay permission and the open-relay battery -------------------------------------

BATTERY = [
    "victim@elsewhere.test",
    "user%victim.test@main.dom",
    '"user@victim.test"@main.dom',
    "victim.test!user@main.dom",
    "user%victim.test@[127.0.0.1]",
    "USER%VICTIM.TEST@MAIN.DOM",
    "user%victim.test@main.dom.",
    "victim@ELSEWHERE.TEST.",
]


@pytest.mark.parametrize("address", BATTERY)
def test_open_relay_battery_refused_from_outside(env, address):
    d, r = env
    rt = route(r, address, OUTSIDE)
    assert rt.kind == "refuse" and rt.status == "5.7.1", (address, rt)


@pytest.mark.parametrize("address", BATTERY)
def test_open_relay_battery_relayed_for_authenticated(env, address):
    d, r = env
    rt = route(r, address, Context(kind="mail", client_ip="203.0.113.9", authenticated="x@main.dom"))
    assert rt.kind == "remote", (address, rt)
    assert rt.address.lower().split("@")[1].rstrip(".") in ("victim.test", "elsewhere.test")


def test_percent_form_to_a_local_user_is_fine(env):
    d, r = env
    d.add_account("bob@domain.dom", None)
    rt = route(r, "bob%domain.dom@main.dom", OUTSIDE)
    assert (rt.kind, rt.address) == ("local", "bob@domain.dom")


def test_relay_prefix_does_not_open_percent_forms_but_relayall_does(env):
    d, r = env
    table(d, "Relay: friend.com = friend.com@friend.com.via\n")
    assert route(r, "joe@friend.com").kind == "remote"
    assert route(r, "joe%friend.com@main.dom").status == "5.7.1"
    table(d, "RelayAll: friend.com = friend.com@friend.com.via\n")
    rt = route(r, "joe%friend.com@main.dom")
    assert (rt.kind, rt.address) == ("remote", "joe@friend.com")


def test_norelay_records_exist_only_for_trusted_clients(env):
    d, r = env
    d.add_account("postmaster@main.dom", None)
    table(d, "NoRelay: <special@main.dom> = postmaster@main.dom\n")
    assert route(r, "special@main.dom", TRUSTED).address == "postmaster@main.dom"
    assert route(r, "special@main.dom", OUTSIDE).code == 550  # the ordinary answer


def test_routing_loop_is_a_clear_refusal(env):
    d, r = env
    table(d, "a.dom = b.dom\nb.dom = a.dom\n")
    res = r.resolve("x@a.dom", TRUSTED)
    assert (res.route.kind, res.route.status) == ("refuse", "5.4.6")
    assert "routing loop" in res.route.reason


def test_new_table_is_used_at_once(env):
    d, r = env
    assert route(r, "joe@friend.com").kind == "refuse"
    table(d, "Relay: friend.com = friend.com@friend.com.via\n")
    assert route(r, "joe@friend.com").kind == "remote"


def test_bad_import_changes_nothing(env):
    d, r = env
    table(d, "Relay: friend.com = friend.com@friend.com.via\n")
    count, errors = store_table(d.db, "ok.com = ok.com@x.via\nBogus: a = b\nno equals sign\n")
    assert count == 0 and [e.line_no for e in errors] == [2, 3]
    assert route(r, "joe@friend.com").kind == "remote"  # the old table is still in force


# -- properties ----------------------------------------------------------------------

_label = st.sampled_from(["a", "b", "c", "dom", "main", "x"])
_domain = st.builds(lambda *ls: ".".join(ls), _label, st.sampled_from(["dom", "test", "main"]))
_left = st.one_of(_domain, st.builds(lambda d: "*." + d, _domain),
                  st.builds(lambda l, d: f"<{l}@{d}>", st.sampled_from(["u", "*", "p*"]), _domain))
_right = st.one_of(_domain, st.builds(lambda l, d: f"{l}@{d}", st.sampled_from(["u", "*", "v%w"]), _domain),
                   st.just("x@host.via"), st.just("[127.0.0.1]"), st.just("h.26.via"))
_prefix = st.sampled_from(["", "Relay: ", "NoRelay: ", "RelayAll: ", "Mail: ", "Access: "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(_prefix, _left, _right), max_size=12),
       address=st.builds(lambda l, d: f"{l}@{d}", st.sampled_from(["u", "p1", "v%w.dom", "a!b", "q"]), _domain),
       trusted=st.booleans())
def test_random_tables_never_crash_or_loop(env, records, address, trusted):
    d, r = env
    text = "".join(f"{p}{left} = {right}\n" for p, left, right in records)
    store_table(d.db, text)  # invalid random lines simply leave the old table
    res = r.resolve(address, TRUSTED if trusted else OUTSIDE)
    assert res.route.kind in ("local", "remote", "refuse", "discard", "bounce")
    assert len(res.trace) <= 4 * (MAX_HOPS + 2) + 4


# -- regressions from review -----------------------------------------------------------

def test_a_relayall_grant_does_not_cover_a_later_percent_route(env):
    d, r = env
    d.add_domain("cust.local")
    table(d, "RelayAll: cust.com = cust.local\n")
    rt = route(r, "x%evil.org@cust.com", OUTSIDE)
    assert (rt.kind, rt.status) == ("refuse", "5.7.1")


def test_percent_to_an_ip_literal_is_not_made_relayable_by_backup_mx(env):
    d, r = env
    ctx = Context(kind="mail", client_ip="203.0.113.9", backup_mx=True)
    rt = route(r, "victim%attacker.org@[127.0.0.2]", ctx)
    assert (rt.kind, rt.status) == ("refuse", "5.7.1")


def test_the_seventeenth_rewrite_is_a_loop_whatever_it_ends_in(env):
    d, r = env
    lines = [f"h{i}.fict = h{i + 1}.fict" for i in range(16)] + ["h16.fict = h16.fict@[127.0.0.2]"]
    table(d, "\n".join(lines) + "\n")
    assert route(r, "x@h0.fict", TRUSTED).status == "5.4.6"
    table(d, "\n".join(lines[1:]) + "\n")  # 16 rewrites: fine
    assert route(r, "x@h1.fict", TRUSTED).kind == "remote"


# -- issue 13 item 2: nothing waits in the queue for nobody ----------------------------

def test_an_expansion_to_nobody_is_a_refusal_to_bounce(env):
    from waypost.sharing.peers import PEERS_KEY

    d, r = env
    d.add_forwarder("ring@main.dom", "round@main.dom")
    table(d, "<round@main.dom> = ring@main.dom")
    [loop] = r.expand(route(r, "ring@main.dom"))
    assert (loop.kind, loop.code, loop.status) == ("refuse", 554, "5.4.6")
    d.add_group("empty@main.dom")
    [nobody] = r.expand(route(r, "empty@main.dom"))
    assert (nobody.kind, nobody.code, nobody.status) == ("refuse", 550, "5.2.4")
    # A peer's copy of a shared group with no member here: the peers deliver it.
    d.update("empty@main.dom", "group", {"shared": True})
    d.db.set_value(PEERS_KEY, [{"host": "127.0.0.2", "smtp_port": 25, "minger_port": 4069, "addresses": ["127.0.0.2"]}])
    [copy] = r.expand(route(r, "empty@main.dom", TRUSTED), ctx=Context(kind="mail", client_ip="127.0.0.2"))
    assert copy.kind == "discard"


def test_loop_back_names_the_chain(env):
    d, r = env
    d.add_account("info@main.dom", None)
    d.add_forwarder("f1@main.dom", "g@main.dom")
    assert r.loop_back("f1@main.dom", ["F1@MAIN.dom"]) == ["f1@main.dom", "F1@MAIN.dom"]
    assert r.loop_back("g@main.dom", ["info", "f1"]) == ["g@main.dom", "f1@main.dom", "g@main.dom"]
    assert r.loop_back("g@main.dom", ["info", "someone@elsewhere.example"]) is None
    d.add_group("g@main.dom", ["info"])
    assert r.loop_back("info@main.dom", ["f1@main.dom"]) == ["info@main.dom", "f1@main.dom", "g@main.dom",
                                                             "info@main.dom"]


# -- issue 13 item 19: Query Domain Sharing hosts for message senders --------------------

def test_check_sender_in_a_shared_domain(env):
    import dataclasses

    from waypost.sharing.peers import PEERS_KEY

    d, r = env
    d.add_account("ann@domain.dom", None)
    assert r.check_sender("ghost@domain.dom", OUTSIDE).route.kind == "accept"  # not shared yet
    d.db.set_value(PEERS_KEY, [{"host": "127.0.0.2", "smtp_port": 25, "minger_port": 4069,
                                "addresses": ["127.0.0.2"], "domains": ["domain.dom"]}])
    assert r.check_sender("ghost@main.dom", OUTSIDE).route.kind == "accept"  # main.dom is not shared
    assert r.check_sender("Ann@DOMAIN.dom", OUTSIDE).route.kind == "accept"
    assert r.check_sender("postmaster@domain.dom", OUTSIDE).route.kind == "accept"
    assert r.check_sender("ghost@domain.dom", Context(kind="mail", client_ip="127.0.0.2")).route.kind == "accept"
    ask = r.check_sender("Ghost@domain.dom", OUTSIDE).route
    assert (ask.kind, ask.address) == ("ask-peers", "ghost@domain.dom")

    def answered(answers):
        return r.check_sender("ghost@domain.dom", dataclasses.replace(OUTSIDE, peer_answers=answers)).route

    assert answered({"127.0.0.2": 5}).kind == "accept"
    assert answered({"127.0.0.2": 4}).kind == "accept"
    no = answered({"127.0.0.2": 3})
    assert (no.kind, no.code, no.status) == ("refuse", 550, "5.1.0")
    down = answered({"127.0.0.2": "error: timed out"})
    assert (down.kind, down.code, down.status) == ("refuse", 451, "4.4.3")


_V4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
_V6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
_MAPPED = st.integers(0, 2**32 - 1).map(lambda n: f"::ffff:{ipaddress.IPv4Address(n)}")
_NETS = st.one_of(
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(lambda t: str(ipaddress.IPv4Network(t, strict=False))),
    st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(lambda t: str(ipaddress.IPv6Network(t, strict=False))),
)


@pytest.fixture(scope="module")
def one_directory(tmp_path_factory):
    from waypost.db import SQLiteDatabase

    db = SQLiteDatabase(tmp_path_factory.mktemp("trust") / "w.db")
    yield Directory(db, "main.dom")
    db.close()


@settings(max_examples=300, deadline=None)
@given(nets=st.lists(_NETS, max_size=4),
       client=st.one_of(_V4, _V6, _MAPPED, _V4.map(lambda a: a[:-1]), st.sampled_from(["", "x", "fe80::1%eth0", "1.2.3.04", "1.2.3.4\x00", "::1\ud800", "127.0.0.1 "])))
def test_the_trust_check_answers_as_ipaddress_does(one_directory, nets, client):
    """``relay.trusted_networks``: the numbers is_trusted compares give the answer that
    ``ipaddress`` membership gives, IPv4-mapped IPv6 clients and zones included."""
    from waypost.router.resolve import _client_address

    r = Router(one_directory, nets)
    ip = _client_address(client)
    expected = ip is not None and any(ip in ipaddress.ip_network(n) for n in nets)
    assert r.is_trusted(client) is expected
    assert r.is_trusted(client) is expected  # the second time from its memory
