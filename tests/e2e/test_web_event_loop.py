"""Issue 17: a WebUser page reads the database (the Host's domain, the session) in a
thread, never on the worker's event loop.  Shown on PostgreSQL, where a read can wait:
while a transaction of the test holds the ``domains`` table locked, a login page (whose
Host, an IP address, is looked up among the domains) waits in the database, and the
same single worker still answers another request (the API's OpenAPI document, which
reads no table) at once.  With the look-up on the event loop the whole worker stopped
until the lock went."""

from __future__ import annotations

import concurrent.futures
import http.client
import urllib.parse

import psycopg

from support import pg
from support.server import WaypostInstance, free_port, wait_for


def _get(port: int, path: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def _waiting(url: str) -> bool:
    """Whether a session of the server waits for a lock on ``domains``."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = 'domains' AND NOT l.granted").fetchone()
        return bool(row and row[0])


def test_a_page_waiting_for_the_database_does_not_stop_the_worker(tmp_path):
    url = pg.new_url()  # PostgreSQL whatever the run's engine: the case needs a read that waits
    port = free_port()
    inst = WaypostInstance(tmp_path / "data", database=url, server={"workers": 1},
                           listen={"http": f"127.0.0.1:{port}"})
    inst.ok("account", "add", "alice@example.test", "--password", "alice-loop-pw-1")
    # Changes made with the CLI bump the change token, so the worker's first look-up
    # of the domains reads the table.
    with inst.start(), concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert _get(port, "/login") == 200
        inst.ok("domain", "set", "example.test", "--ip", "127.0.0.9")  # (a change: the cache is stale)
        schema = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["options"][0].split("=", 1)[1]
        with psycopg.connect(url) as locker:
            locker.execute(f'LOCK TABLE "{schema}".domains IN ACCESS EXCLUSIVE MODE')  # type: ignore[arg-type]
            login = pool.submit(_get, port, "/login")
            wait_for(lambda: _waiting(url), 20, what="the login page's look-up waiting for the lock")
            other = pool.submit(_get, port, "/api/v1/openapi.json")
            # Answered while the login page still waits: the event loop was free.
            assert other.result(timeout=20) == 200
            assert not login.done() and _waiting(url)
            locker.rollback()
        assert login.result(timeout=30) == 200
