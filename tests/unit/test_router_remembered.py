"""The answers a Router remembers (``Router.resolve``): the same question under the same
settings token is answered from memory; any settings change, made by another process
on the same database (another worker, the CLI), is seen by the next question at once;
the memory is bounded; answers that depend on the time or on a peer are never kept.
On both engines (``two``: tests/unit/conftest.py)."""

from __future__ import annotations

from waypost.router import Context, Router
from waypost.router.resolve import store_table
from waypost.rules.srs import SRS
from waypost.sharing.peers import PEERS_KEY

OUTSIDE = Context(kind="mail", client_ip="203.0.113.9")


def test_the_same_question_is_answered_from_memory(two):
    here, _ = two
    r = Router(here, ["127.0.0.0/8"])
    first = r.resolve("nobody@dom.dom", OUTSIDE)
    again = r.resolve("nobody@dom.dom", OUTSIDE)
    assert first.route.kind == "refuse" and again.route is first.route  # the remembered answer
    assert again.trace == first.trace and again.trace is not first.trace  # a copy the caller may extend
    assert r.resolve("nobody@dom.dom", Context(kind="mail", client_ip="127.0.0.1")).route is not first.route
    assert r.remembered == 2


def test_a_change_by_another_process_is_seen_at_once(two):
    here, there = two
    r = Router(here, ["127.0.0.0/8"])
    assert r.resolve("ann@dom.dom", OUTSIDE).route.kind == "refuse"
    there.add_account("ann@dom.dom", None)  # another worker or the CLI
    assert r.resolve("ann@dom.dom", OUTSIDE).route.kind == "local"
    # Deleted and made again as something else under the same name.
    there.remove("ann@dom.dom", "account")
    assert r.resolve("ann@dom.dom", OUTSIDE).route.kind == "refuse"
    there.add_forwarder("ann@dom.dom", "ann@elsewhere.example")
    rt = r.resolve("ann@dom.dom", OUTSIDE).route
    assert (rt.kind, rt.object_kind) == ("local", "forwarder")
    # The table and a domain's Mail to Unknown, changed elsewhere.
    assert r.resolve("x@dom.dom", OUTSIDE).route.kind == "refuse"
    there.set_domain("dom.dom", mail_to_unknown="*@main.dom")
    store_table(there.db, "Relay: dom.dom = other.example.via\n")
    rt = r.resolve("x@dom.dom", OUTSIDE).route
    assert (rt.kind, rt.domain) == ("remote", "other.example")
    store_table(there.db, "")
    assert r.resolve("x@dom.dom", OUTSIDE).route.kind == "refuse"  # x@main.dom: unknown


def test_memory_is_bounded(two):
    here, _ = two
    r = Router(here, ["127.0.0.0/8"], remember=4)
    for i in range(10):
        assert r.resolve(f"u{i}@dom.dom", OUTSIDE).route.kind == "refuse"
        assert r.remembered <= 4
    assert r.remembered >= 1


def test_answers_of_a_peer_or_of_the_time_are_not_kept(two):
    here, there = two
    srs = SRS(b"k" * 32, "main.dom")
    r = Router(here, ["127.0.0.0/8"], srs=srs)
    bounce = srs.forward("someone@far.example")
    assert r.resolve(bounce, OUTSIDE).route.kind == "remote"
    assert r.remembered == 0  # an SRS address is good for so many days only
    there.db.set_value(PEERS_KEY, [{"host": "127.0.0.1", "smtp_port": 2525, "minger_port": 4069, "domains": []}])
    asked = r.resolve("bob@dom.dom", OUTSIDE)
    assert asked.route.kind == "ask-peers" and r.remembered == 0
    answered = r.resolve("bob@dom.dom", Context(kind="mail", client_ip="203.0.113.9", peer_answers={"127.0.0.1": 5}))
    assert answered.route.kind == "remote" and r.remembered == 0
