import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import pg  # noqa: E402
from support.server import (  # noqa: E402
    WaypostInstance,
    instances_made,
    kill_leftover_servers,
    running_since,
    stop_all,
)

_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


@pytest.fixture(autouse=True)
def _servers_stopped_after_each_test(request):
    """A server made during a test (by it or its function-scoped fixtures) is stopped when
    the test ends, on every path.  A test that passed yet left one running fails: its
    own code or fixture should have stopped it."""
    mark = instances_made()
    yield
    left = running_since(mark)
    if left:
        names = ", ".join(str(inst.data) for inst in left)
        stop_all(*left)
        if not request.node.stash.get(_CALL_FAILED, True):
            pytest.fail(f"the test left waypost serve running: {names}")


@pytest.fixture(scope="module", autouse=True)
def _servers_stopped_after_each_module(request):
    """The same for module-scoped fixtures: what they started is stopped when the module
    ends, also when their setup failed half-way (after ``start()``, before ``yield``)."""
    mark, failed_before = instances_made(), request.session.testsfailed
    yield
    left = running_since(mark)
    if left:
        names = ", ".join(str(inst.data) for inst in left)
        stop_all(*left)
        if request.session.testsfailed == failed_before:
            pytest.fail(f"a fixture of {request.node.name} left waypost serve running: {names}")


@pytest.fixture(params=["sqlite", "postgresql"])
def make_db(request, tmp_path):
    """``make_db(name="w.db")``: a ``Database`` on each engine in turn.  The same name
    twice gives two engines on one database (two processes), sharing its change token."""
    from waypost.db import SQLiteDatabase
    from waypost.db.postgres import PostgresDatabase

    made, urls = [], {}

    def make(name: str = "w.db"):
        if request.param == "sqlite":
            db = SQLiteDatabase(tmp_path / name)
        else:
            if name not in urls:
                urls[name] = pg.new_url()
            db = PostgresDatabase(urls[name], tmp_path / f"{name}-changes", pool_size=4)
        made.append(db)
        return db

    make.engine = request.param
    yield make
    for db in made:
        db.close()


def pytest_collection_modifyitems(config, items):
    """On PostgreSQL (WAYPOST_TEST_DATABASE=postgresql), tests about SQLite files are skipped."""
    if pg.engine_for_e2e() != "postgresql":
        return
    skip = pytest.mark.skip(reason="about the SQLite engine (WAYPOST_TEST_DATABASE=postgresql)")
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            item.add_marker(skip)


@pytest.fixture
def instance(tmp_path):
    """A data directory with domain example.test and free 127.0.0.1 ports (not started)."""
    with WaypostInstance(tmp_path / "data") as inst:
        yield inst


@pytest.fixture
def server(instance):
    """``instance`` with ``waypost serve`` running; accounts alice and bob exist."""
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.ok("account", "add", "bob@example.test", "--password", "bob-password")
    instance.start()
    yield instance


def _serve_processes_under(base: Path) -> list[tuple[int, str]]:
    """``waypost ... serve`` processes whose command line names a path under ``base``
    (this session's temporary directory), however they were started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "serve" in args and any("waypost" in a for a in args) and any(a.startswith(str(base)) for a in args):
            found.append((int(entry.name), " ".join(args).strip()))
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Every server a test started must have been stopped by that test or its fixture.
    One still running at the end is killed, named, and fails the session."""
    left = [f"process group {pgid}: waypost serve --data {data}" for pgid, data in kill_leftover_servers()]
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None and Path("/proc").is_dir():
        try:
            base = factory.getbasetemp()
        except Exception:  # no test asked for a temporary directory
            base = None
        if base is not None:
            for pid, cmdline in _serve_processes_under(base):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    continue
                left.append(f"pid {pid}: {cmdline}")
    pg.drop_run_database()
    if left:
        sys.stderr.write("\nERROR: waypost serve processes were still running when the tests ended "
                         "(killed now):\n" + "".join(f"  {line}\n" for line in left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
