"""Fixtures of the unit tests (the engines' ``make_db`` is in tests/conftest.py)."""

from __future__ import annotations

import time

import pytest
from waypost.directory import Directory


@pytest.fixture
def two(make_db):
    """Two directories on one database, each engine in turn: this worker's and another
    process's (another worker, the CLI); domains main.dom and dom.dom."""
    here = Directory(make_db("w.db"), "main.dom")
    there = Directory(make_db("w.db"), "main.dom")
    here.add_domain("main.dom")
    here.add_domain("dom.dom")
    # PostgreSQL: a process caches only once it hears other machines' changes (LISTEN),
    # which starts at the first question.
    deadline = time.monotonic() + 10
    while here.db.settings_token() is None:
        assert time.monotonic() < deadline, "no settings token"
        time.sleep(0.02)
    return here, there
