"""The cache of verified logins (``auth.verified_cache_*``): a hit, a miss after a password
change (the stored hash is part of the key), a miss after the TTL (an injected clock), the
bound on entries, and what is never remembered.  Real ``Directory`` records on SQLite:
the hashes are the real argon2id ones."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from waypost.directory import Directory
from waypost.directory.verified import VerifiedLogins

# Small argon2 parameters: these tests are about the cache, not the hash.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def directory(tmp_path, make_db):
    d = Directory(make_db("w.db"), "example.test", hasher=FAST)
    d.add_domain("example.test")
    d.add_account("alice@example.test", "alice-password")
    d.add_account("bob@example.test", "bob-password")
    return d


def test_hit_then_miss_after_a_password_change(directory):
    cache = VerifiedLogins(size=10, ttl=300.0, clock=Clock())
    alice = directory.get("alice@example.test")
    assert not cache.known(alice, "alice-password")
    assert directory.verify_password(alice, "alice-password")
    cache.remember(alice, "alice-password")
    assert cache.known(alice, "alice-password")
    assert not cache.known(alice, "alice-passwore")  # a wrong password is never a hit
    assert not cache.known(directory.get("bob@example.test"), "alice-password")  # another account
    # The password changes (in any process: all a worker sees is the record it reads).
    directory.update("alice@example.test", "account", {"password": "new-password"})
    fresh = directory.get("alice@example.test")
    assert not cache.known(fresh, "alice-password")
    assert not cache.known(fresh, "new-password")  # not verified yet under the new hash
    # Even the same password set again is a new (salted) hash: a miss.
    directory.update("alice@example.test", "account", {"password": "alice-password"})
    assert not cache.known(directory.get("alice@example.test"), "alice-password")


def test_a_change_made_by_another_process_misses_at_its_next_look_up(tmp_path, directory, make_db):
    """A worker reads the record through its own ``Database`` (which keeps rows under the
    shared change token); the CLI changes the password through another one."""
    worker = Directory(make_db("w.db"), "example.test", hasher=FAST)
    cache = VerifiedLogins(size=10, ttl=300.0, clock=Clock())
    alice = worker.get("alice@example.test")
    assert worker.verify_password(alice, "alice-password")
    cache.remember(alice, "alice-password")
    assert cache.known(worker.get("alice@example.test"), "alice-password")  # (read from the worker's cache)
    directory.update("alice@example.test", "account", {"password": "new-password"})  # the CLI
    assert not cache.known(worker.get("alice@example.test"), "alice-password")


def test_a_disabled_account_is_never_a_hit(directory):
    cache = VerifiedLogins(size=10, ttl=300.0, clock=Clock())
    cache.remember(directory.get("alice@example.test"), "alice-password")
    directory.update("alice@example.test", "account", {"enabled": False})
    assert not cache.known(directory.get("alice@example.test"), "alice-password")


def test_miss_after_the_ttl(directory):
    clock = Clock()
    cache = VerifiedLogins(size=10, ttl=300.0, clock=clock)
    alice = directory.get("alice@example.test")
    cache.remember(alice, "alice-password")
    clock.now += 299.9
    assert cache.known(alice, "alice-password")  # a hit does not extend the entry
    clock.now += 0.1
    assert not cache.known(alice, "alice-password")
    assert len(cache) == 0  # an expired entry found is dropped


def test_bounded_least_recently_used_goes_first(directory):
    cache = VerifiedLogins(size=2, ttl=300.0, clock=Clock())
    alice = directory.get("alice@example.test")
    bob = directory.get("bob@example.test")
    cache.remember(alice, "p1")  # (the cache trusts its caller to have checked)
    cache.remember(alice, "p2")
    assert cache.known(alice, "p1")  # p1 is now the most recently used
    cache.remember(bob, "p3")
    assert len(cache) == 2
    assert cache.known(alice, "p1") and cache.known(bob, "p3")
    assert not cache.known(alice, "p2")


@pytest.mark.parametrize("size, ttl", [(0, 300.0), (10, 0.0)])
def test_zero_turns_it_off(directory, size, ttl):
    cache = VerifiedLogins(size=size, ttl=ttl, clock=Clock())
    alice = directory.get("alice@example.test")
    cache.remember(alice, "alice-password")
    assert not cache.known(alice, "alice-password") and len(cache) == 0


def test_two_workers_do_not_share_keys(directory):
    """Each worker's digests are under its own random key: what one holds says nothing
    that another could check."""
    alice = directory.get("alice@example.test")
    w1, w2 = VerifiedLogins(10, 300.0), VerifiedLogins(10, 300.0)
    w1.remember(alice, "alice-password")
    assert w1.known(alice, "alice-password") and not w2.known(alice, "alice-password")
