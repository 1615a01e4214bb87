"""The test support's PostgreSQL databases: what a killed run left is dropped by the next
run, and nothing else: not a database in use, not a young one, not another name."""

from __future__ import annotations

import secrets

import psycopg
from support import pg


def _exists(conn: psycopg.Connection, name: str) -> bool:  # type: ignore[type-arg]
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_only_old_unused_run_databases_of_the_prefix_are_dropped():
    prefix = f"{pg.PREFIX}lo{secrets.token_hex(3)}_"  # this test's own: other runs' databases are never at stake
    left, busy, other = f"{prefix}1", f"{prefix}2", f"{prefix[:-1]}x3"  # `_` is a LIKE wildcard: escaped
    with psycopg.connect(pg.ADMIN_URL, autocommit=True) as conn:
        try:
            for name in (left, busy, other):
                conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
            assert pg.drop_leftovers(conn, prefix, age=3600) == []  # made just now
            with psycopg.connect(pg._admin_to(busy)):  # a run still using it
                assert pg.drop_leftovers(conn, prefix, age=0) == [left]
                assert _exists(conn, busy) and _exists(conn, other) and not _exists(conn, left)
        finally:
            for name in (left, busy, other):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
