"""PostgreSQL for the tests: one database per test run, one schema per engine asked for.

The run's database (``waypost_test_<pid>_<random>``) is made on the server named by
``WAYPOST_TEST_PG`` (default: 127.0.0.1:5432 as user postgres, the machine's and CI's)
the first time a test needs it, and dropped when the run ends (``drop_run_database``,
called by tests/conftest.py; ``WITH (FORCE)`` ends what a killed server left connected).
A run that was killed cannot drop its own: the next run drops such leftovers
(``drop_leftovers``: by name, by the age the server gives the database, and only if
nobody is connected to it, so a run in progress is never touched).
Each ``new_url()`` is a fresh empty schema of it, named in the URL's search_path, so
that tests never see each other's rows and nothing needs cleaning between them.
``WAYPOST_TEST_DATABASE=postgresql`` makes the e2e server fixture use it too.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
from typing import Any
from urllib.parse import quote

import psycopg

ADMIN_URL = os.environ.get("WAYPOST_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

#: The prefix of every run's database name (``drop_leftovers`` touches no other).
PREFIX = "waypost_test_"
#: A run's database this old (seconds) with nobody connected is a killed run's leftover:
#: a whole `make test` takes under half an hour.
LEFTOVER_AGE = 6 * 3600.0

_lock = threading.Lock()
_run_db: str | None = None
_serial = 0


def engine_for_e2e() -> str:
    """"postgresql" when the e2e servers should run on PostgreSQL, else "sqlite"."""
    value = os.environ.get("WAYPOST_TEST_DATABASE", "sqlite").strip().lower()
    if value not in ("sqlite", "postgresql"):
        raise RuntimeError(f"WAYPOST_TEST_DATABASE={value!r}: expected sqlite or postgresql")
    return value


def _admin_to(dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})


def _url(dbname: str, schema: str | None = None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    host, port, user = info.get("host", "127.0.0.1"), info.get("port", "5432"), info.get("user", "postgres")
    url = f"postgresql://{quote(str(user))}@{host}:{port}/{dbname}"
    if schema is not None:
        url += "?options=" + quote(f"-csearch_path={schema}", safe="")
    return url


def run_database() -> str:
    """The name of this run's database, made the first time."""
    global _run_db
    with _lock:
        if _run_db is None:
            name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(3)}"
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                drop_leftovers(conn)
                conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
            _run_db = name
        return _run_db


def drop_leftovers(conn: psycopg.Connection[Any], prefix: str = PREFIX,
                   age: float = LEFTOVER_AGE) -> list[str]:
    """Drop the databases named ``prefix``... that the server made more than ``age``
    seconds ago (the time of its ``PG_VERSION`` file, written when the database is
    created) and that nobody is connected to: what killed runs left.  Without FORCE,
    DROP DATABASE refuses a database in use, so one that a run (or a stopped debugger)
    still holds stays.  Reading the file's time needs a superuser (or
    pg_read_server_files); without it nothing is dropped.  The names dropped."""
    pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    try:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND NOT datistemplate"
            " AND (pg_stat_file('base/' || oid || '/PG_VERSION', true)).modification"
            " < now() - make_interval(secs => %s)", (pattern, age)).fetchall()
    except psycopg.Error:
        return []
    dropped = []
    for (name,) in rows:
        try:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')  # type: ignore[arg-type]
        except psycopg.Error:  # in use now: not a leftover
            continue
        dropped.append(str(name))
    return dropped


def new_url() -> str:
    """A postgresql:// URL of a new empty schema in this run's database."""
    global _serial
    dbname = run_database()
    with _lock:
        _serial += 1
        schema = f"t{_serial}_{secrets.token_hex(3)}"
    with psycopg.connect(_admin_to(dbname), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
    return _url(dbname, schema)


def at_port(url: str, port: int) -> str:
    """The same database and schema as ``url``, reached through 127.0.0.1:``port``."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    out = f"postgresql://{quote(str(info.get('user', 'postgres')))}@127.0.0.1:{port}/{info['dbname']}"
    if "options" in info:
        out += "?options=" + quote(str(info["options"]), safe="")
    return out


def closed_port_url(port: int) -> str:
    """A URL of a new schema of this run's database through ``port`` (where nothing
    listens, yet)."""
    return at_port(new_url(), port)


def dump(url: str) -> str:
    """``pg_dump`` (plain SQL, rows as COPY data) of the schema that ``url`` names in its
    search_path, or of its whole database."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    match = re.search(r"search_path=([^\s,]+)", str(info.pop("options", "")))
    conninfo = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items()})
    args = ["pg_dump", "--no-owner", f"--dbname={conninfo}"] + ([f"--schema={match.group(1)}"] if match else [])
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def drop_run_database() -> None:
    global _run_db
    with _lock:
        if _run_db is None:
            return
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_run_db}" WITH (FORCE)')  # type: ignore[arg-type]
        _run_db = None
