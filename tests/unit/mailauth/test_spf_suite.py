"""The RFC 7208 test suite (openspf.org, release 2014.04; tests/data/rfc7208) against
waypost.mailauth.spf, each scenario's zone served by a real DNS server on 127.0.0.1.

Zone conventions of the suite, as its reference driver (pyspf's testspf.py) reads them:
an ``SPF`` (type 99) record is also published as TXT unless the name has TXT records of
its own (RFC 7208 removed type SPF; receivers ask TXT only); ``TIMEOUT`` for a name
makes every query for it time out, ``{TXT: TIMEOUT}`` only its TXT queries; ``NONE``
publishes nothing.  Every case applies to a receiver (the suite tests check_host()), so
every case runs.  ``result`` may list several acceptable results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.dnsserver import TestDNSServer
from waypost.config import Settings
from waypost.mailauth.lookup import Lookup
from waypost.mailauth.spf import check_spf

SUITE = json.loads((Path(__file__).resolve().parents[2] / "data" / "rfc7208" / "rfc7208-tests.json").read_text())
#: Seconds a look-up of a TIMEOUT name waits: short, the answer never comes.
TIMEOUT = 0.3
#: Seconds a look-up may take in a scenario where no name times out.  The resolver's
#: lifetime bounds every query, so with TIMEOUT everywhere a test process that the
#: host did not schedule for 0.3 s (2 CPUs shared by many test runs) saw an answer
#: from its own DNS server as a time-out: temperror, and a "pass" case such as
#: macro-mania-in-domain failed now and then.
PATIENT = 10.0


def _strings(value) -> list[str]:
    """A TXT value as its character-strings; a record of no string at all (illegal on
    the wire) is served as one empty string."""
    if isinstance(value, str):
        return _chunks(value)
    return sum((_chunks(v) for v in value), []) or [""]


def _chunks(text: str) -> list[str]:
    data = text.encode("utf-8")
    return [data[i:i + 255].decode("utf-8", "replace") for i in range(0, len(data), 255)] or [""]


def _load(dns: TestDNSServer, zonedata: dict) -> None:
    for name, records in zonedata.items():
        by_type: dict[str, list] = {}
        spf: list = []
        has_txt = False
        timeout = False
        for r in records:
            if r == "TIMEOUT":  # the driver's reading: queries of the types the name lacks time out
                timeout = True
                continue
            ((rtype, value),) = r.items()
            if value == "TIMEOUT":
                dns.drop(name, rtype)
                continue
            if value == "NONE" or value == ["NONE"]:
                has_txt = has_txt or rtype == "TXT"
                continue
            if rtype == "SPF":
                spf.append(value)
                continue
            if rtype == "TXT":
                has_txt = True
            if rtype == "MX":
                value = (value[0], value[1] or ".")
            if rtype == "TXT":
                value = _strings(value)
            by_type.setdefault(rtype, []).append(value)
        if spf and not has_txt:
            by_type.setdefault("TXT", []).extend(_strings(v) for v in spf)
        dns.set(name, "A", [])  # the name exists (NODATA for what it lacks)
        for rtype, values in by_type.items():
            dns.set(name, rtype, values)
        if timeout:
            for rtype in ("A", "AAAA", "MX", "TXT", "PTR", "CNAME"):
                if rtype not in by_type:
                    dns.drop(name, rtype)


def _drops_queries(zonedata: dict) -> bool:
    """Whether the scenario has names whose queries time out (``TIMEOUT``)."""
    return any(r == "TIMEOUT" or (isinstance(r, dict) and "TIMEOUT" in r.values())
               for records in zonedata.values() for r in records)


CASES = [(i, name, case) for i, scenario in enumerate(SUITE) for name, case in sorted(scenario["tests"].items())]


@pytest.fixture(scope="module")
def servers():
    made: dict[int, TestDNSServer] = {}
    yield made
    for s in made.values():
        s.stop()


@pytest.mark.parametrize("index,name,case", CASES, ids=[f"{SUITE[i]['description'][:24]}/{n}" for i, n, _c in CASES])
async def test_rfc7208_case(servers, index, name, case):
    if index not in servers:
        dns = TestDNSServer().start()
        _load(dns, SUITE[index]["zonedata"])
        servers[index] = dns
    dns = servers[index]
    timeout = TIMEOUT if _drops_queries(SUITE[index]["zonedata"]) else PATIENT
    settings = Settings().replace("dns", nameservers=[dns.nameserver], timeout=timeout)
    result = await check_spf(Lookup(settings), case["host"], case["mailfrom"], case["helo"],
                             receiver="receiver.test", default_explanation="DEFAULT")
    wanted = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert result.result in wanted, f"{case.get('description', '')} spec {case['spec']}: {result.trace}"
    if "explanation" in case and result.result == "fail":
        # Case aside: the suite's %{i} of "CAFE:BABE::1" keeps the capitals its input
        # had; RFC 7208 §7.3's own example writes IPv6 nibbles in lower case, as we do.
        assert result.explanation.lower() == case["explanation"].lower(), result.trace
