"""``mailauth.AnswerCache`` in front of dnspython (the SMTP listener's inbound checks):
an answer is asked once per TTL, a void answer (NXDOMAIN, NODATA) once per negative
TTL, a temporary failure never kept; names compare without regard to case; the cache
stays within its size.  Against the test DNS server on 127.0.0.1 (TTL 60 s, no SOA: a
negative TTL of 300 s, as dnspython reckons it), with the cache's clock moved by the test."""

from __future__ import annotations

import pytest

from waypost.mailauth import AnswerCache, DNSTempError, Lookup


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def asked(dns, name: str, rtype: str) -> int:
    return sum(1 for q in dns.queries if q[0] == name and q[1] == rtype)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cached(settings, clock):
    return Lookup(settings, cache=AnswerCache(clock=clock))


async def test_an_answer_is_kept_for_its_ttl(dns, cached, clock):
    dns.set("spf.example.test", "TXT", ["v=spf1 -all"])
    first = await cached.query("spf.example.test", "TXT")
    assert first == ["v=spf1 -all"] and not first.nxdomain and first.ttl == 60
    first.append("changed by the caller")  # a caller's list is its own
    clock.now += 59
    again = await cached.query("SPF.Example.TEST.", "TXT")  # case and the final dot do not matter
    assert again == ["v=spf1 -all"]
    assert asked(dns, "spf.example.test", "TXT") == 1
    assert cached.queries == 2  # answers from the cache are counted as queries all the same
    clock.now += 2  # 61 s: expired
    dns.set("spf.example.test", "TXT", ["v=spf1 ip4:192.0.2.1 -all"])
    assert await cached.query("spf.example.test", "TXT") == ["v=spf1 ip4:192.0.2.1 -all"]
    assert asked(dns, "spf.example.test", "TXT") == 2


async def test_void_answers_are_kept_for_the_negative_ttl(dns, cached, clock):
    dns.set("nodata.example.test", "A", ["192.0.2.1"])
    missing = await cached.query("missing.example.test", "TXT")
    nodata = await cached.query("nodata.example.test", "TXT")
    assert missing == [] and missing.nxdomain and not nodata.nxdomain and nodata == []
    clock.now += 299
    assert (await cached.query("missing.example.test", "TXT")).nxdomain
    assert not (await cached.query("nodata.example.test", "TXT")).nxdomain
    assert asked(dns, "missing.example.test", "TXT") == 1 and asked(dns, "nodata.example.test", "TXT") == 1
    clock.now += 2
    await cached.query("missing.example.test", "TXT")
    assert asked(dns, "missing.example.test", "TXT") == 2


async def test_a_temporary_failure_is_not_kept(dns, cached):
    dns.fail("broken.example.test")
    for _ in range(2):
        with pytest.raises(DNSTempError):
            await cached.query("broken.example.test", "TXT")
    assert asked(dns, "broken.example.test", "TXT") >= 2
    dns.heal("broken.example.test")
    dns.set("broken.example.test", "TXT", ["healed"])
    assert await cached.query("broken.example.test", "TXT") == ["healed"]


async def test_the_cache_keeps_at_most_its_size(dns, settings, clock):
    cache = AnswerCache(size=3, clock=clock)
    lookup = Lookup(settings, cache=cache)
    for i in range(5):
        dns.set(f"n{i}.example.test", "TXT", [f"record {i}"])
        assert await lookup.query(f"n{i}.example.test", "TXT") == [f"record {i}"]
        assert len(cache) <= 3
    assert len(cache) == 3
    await lookup.query("n4.example.test", "TXT")  # the newest stayed
    assert asked(dns, "n4.example.test", "TXT") == 1
    await lookup.query("n0.example.test", "TXT")  # the oldest went
    assert asked(dns, "n0.example.test", "TXT") == 2


async def test_sessions_asking_at_once_share_one_query(dns, cached):
    """A burst (twenty sessions of one sender, a cold cache): one query on the wire,
    every session its own copy of the answer; a temporary failure reaches them all."""
    import asyncio

    dns.set("burst.example.test", "TXT", ["v=spf1 -all"])
    answers = await asyncio.gather(*(cached.query("burst.example.test", "TXT") for _ in range(20)))
    assert all(a == ["v=spf1 -all"] for a in answers)
    answers[0].append("mine")
    assert answers[1] == ["v=spf1 -all"]
    assert asked(dns, "burst.example.test", "TXT") == 1
    dns.fail("down.example.test")
    failures = await asyncio.gather(*(cached.query("down.example.test", "TXT") for _ in range(5)),
                                    return_exceptions=True)
    assert all(isinstance(f, DNSTempError) for f in failures)
    assert asked(dns, "down.example.test", "TXT") >= 1 and not cached.cache.pending
