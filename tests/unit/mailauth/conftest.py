"""Fixtures of the mail authentication tests: a DNS server, settings using it, a
database, the data directory's secrets."""

from __future__ import annotations

import dataclasses

import pytest

from support.dnsserver import TestDNSServer
from waypost.config import Settings
from waypost.mailauth import Lookup
from waypost.secrets import Secrets


@pytest.fixture
def dns():
    with TestDNSServer({"example.test": {"A": ["192.0.2.10"]}}) as server:
        yield server


@pytest.fixture
def settings(dns, tmp_path):
    s = Settings().replace("dns", nameservers=[dns.nameserver], timeout=0.5)
    s = s.replace("server", hostname="mx.receiver.test")
    return dataclasses.replace(s, data_dir=tmp_path)


@pytest.fixture
def lookup(settings):
    return Lookup(settings)


@pytest.fixture
def db(tmp_path, make_db):
    database = make_db("waypost.db")
    yield database
    database.close()


@pytest.fixture
def secrets(tmp_path):
    return Secrets(tmp_path)
