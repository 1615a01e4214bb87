"""The login throttle's counts in the database, and its verdicts (edges of every setting).

Two ``Database`` objects on one database (each engine) stand for two workers: what one counts, the
other sees at its next look (nothing is cached in a process)."""

from __future__ import annotations
from waypost.directory.throttle import LoginThrottle, ThrottlePolicy, client_key, peer_ip

POLICY = ThrottlePolicy(free_failures=2, delay=1.0, max_delay=4.0, block_after=5, block_time=100.0, window=500.0,
                        known_client_days=1.0)


def test_counts_are_shared_grow_block_and_run_out(tmp_path, make_db):
    w1 = LoginThrottle(make_db("w.db"), POLICY)
    w2 = LoginThrottle(make_db("w.db"), POLICY)
    now = 1000.0
    delays = []
    for i in range(5):
        worker = (w1, w2)[i % 2]
        v = worker.assess("192.0.2.7", "alice@example.test", now + i)
        assert not v.blocked
        delays.append(v.delay)
        worker.failed(v, now + i)
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0]  # free_failures, then doubling, capped at max_delay
    v = w1.assess("192.0.2.7", None, now + 5)  # the client is blocked, whatever the name
    assert v.blocked and v.delay == 4.0
    v = w2.assess("198.51.100.1", "alice@example.test", now + 5)  # ... and so is the account
    assert v.blocked
    assert not w1.assess("198.51.100.1", "bob@example.test", now + 5).blocked
    # The block is over after block_time; the count, still in its window, slows at the
    # maximum, and the next failure blocks again at once.
    later = now + 4 + 101
    v = w1.assess("192.0.2.7", None, later)
    assert not v.blocked and v.delay == 4.0
    w1.failed(v, later)
    assert w2.assess("192.0.2.7", None, later + 1).blocked
    # A count runs out `window` seconds after its last failure (and its row is forgotten
    # at the next failure anyone counts).
    gone = later + 100 + 501
    v = w1.assess("192.0.2.7", "alice@example.test", gone)
    assert not v.blocked and v.delay == 0.0
    w2.failed(w2.assess("203.0.113.9", None, gone), gone)
    keys = [row[0] for row in w1.db.login_failures_list(gone - 500)]
    assert keys == ["client:203.0.113.9"]
    assert w1.db.login_failures_clear(["client:203.0.113.9"]) == 1
    assert not w1.db.login_failures_list(0)


def test_a_known_client_is_exempt_from_its_accounts_count_only(tmp_path, make_db):
    t = LoginThrottle(make_db("k.db"), POLICY)
    now = 1000.0
    t.succeeded(t.assess("192.0.2.7", "alice@example.test", now), "alice@example.test", now)
    for i in range(5):  # the account is attacked from elsewhere
        t.failed(t.assess("198.51.100.1", "alice@example.test", now + i), now + i)
    assert t.assess("203.0.113.9", "alice@example.test", now + 5).blocked
    v = t.assess("192.0.2.7", "alice@example.test", now + 5)
    assert not v.blocked and v.delay == 0.0
    # Known for known_client_days only.
    day = now + 86400 + 10
    for i in range(5):
        t.failed(t.assess("198.51.100.1", "alice@example.test", day + i), day + i)
    assert t.assess("192.0.2.7", "alice@example.test", day + 5).blocked


def test_keys():
    assert client_key("192.0.2.7") == "client:192.0.2.7"
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "client:2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "client:192.0.2.7"
    assert client_key(None) is None and client_key("not-an-ip") is None
    assert peer_ip("192.0.2.7:1234") == "192.0.2.7" and peer_ip("::1:1234") == "::1" and peer_ip("?") is None
