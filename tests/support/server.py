"""Real Waypost servers for tests: a data directory made by ``waypost init``, settings on
free 127.0.0.1 ports, and ``waypost serve`` in a subprocess, ready when it has printed
its ``listening`` lines.  Nothing here reaches any address outside 127.0.0.0/8.
"""

from __future__ import annotations

import collections
import fcntl
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import weakref
from pathlib import Path
from typing import Any, Iterator

from click.testing import CliRunner

from waypost.cli import cli
from waypost.config import load_settings, render_toml, settings_from_dict

from . import pg, tls

__all__ = ["WaypostInstance", "free_port", "wait_for", "maildir_messages", "stop_all", "leftover_servers",
           "kill_leftover_servers", "instances_made", "running_since"]

ROOT = Path(__file__).resolve().parents[2]

# Every ``waypost serve`` this test session started: its process (the leader of a process
# group of its own, which its forked workers share) and its data directory.
_STARTED: list[tuple[subprocess.Popen[str], Path]] = []
# Every WaypostInstance made, in order (weakly: the list keeps none alive).
_INSTANCES: list[weakref.ref[WaypostInstance]] = []


def instances_made() -> int:
    """A mark: how many instances have been made so far."""
    return len(_INSTANCES)


def running_since(mark: int) -> list[WaypostInstance]:
    """Instances made after ``mark`` whose server is still running."""
    return [inst for ref in _INSTANCES[mark:] if (inst := ref()) is not None and inst.proc is not None]


def _group_alive(proc: subprocess.Popen[str]) -> bool:
    proc.poll()  # reap the leader if it has exited, so that only live processes count
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_servers() -> list[tuple[int, Path]]:
    """(process group, data directory) of each server started here that has a process alive."""
    return [(proc.pid, data) for proc, data in _STARTED if _group_alive(proc)]


def kill_leftover_servers() -> list[tuple[int, Path]]:
    """kill -9 every server started here that is still alive; what was killed."""
    left = leftover_servers()
    for proc, _data in _STARTED:
        if _group_alive(proc):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return left


def stop_all(*things: Any) -> None:
    """Stop each of ``things`` (anything with ``stop()``), even when an earlier one fails;
    then raise the first failure.  For fixtures and ``finally:`` blocks that own several."""
    first: BaseException | None = None
    for thing in things:
        try:
            thing.stop()
        except BaseException as e:  # noqa: BLE001 - stop the rest, then report
            first = first or e
    if first is not None:
        raise first


# Ports for test listeners come from below the kernel's ephemeral range (32768-60999 on
# Linux), which every outgoing connection on the machine draws from: a port the kernel
# handed out as free could be taken by some client's connection before the server bound
# it ("Address already in use" under load). Below that range only listeners compete.
_PORT_RANGE = (20000, 32000)
_GIVEN: set[int] = set()
_RANDOM = random.Random(os.getpid() ^ time.monotonic_ns())

# Between free_port() and the server's bind the port is free, and another test process
# (a pytest-xdist worker, the other engine's pass of `make test`, another checkout's run
# on the same machine) could draw it too.  Each port handed out is therefore claimed by a
# POSIX record lock on byte ``port`` of one file shared by every test process of the
# machine; a locked port is skipped.  The kernel drops a process's locks when it exits
# (kill -9 included), so nothing is left to clean.  A process keeps its last _HELD ports
# locked (a port handed out that long ago is bound by its server or no longer used; a
# server restarted on its old ports within a test keeps them: far fewer than _HELD later).
_LOCK_PATH = Path(tempfile.gettempdir()) / "waypost-test-ports.lock"
_HELD = 512
_locked: collections.deque[int] = collections.deque()
_lock_fd: int | None = None


def _claim(port: int) -> bool:
    """Lock byte ``port`` of the shared file for this process; False if another holds it."""
    global _lock_fd
    if _lock_fd is None:
        _lock_fd = os.open(_LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.lockf(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:  # EAGAIN/EACCES: held by another process
        return False
    _locked.append(port)
    if len(_locked) > _HELD:
        fcntl.lockf(_lock_fd, fcntl.LOCK_UN, 1, _locked.popleft())
    return True


def free_port(host: str = "127.0.0.1", port_range: tuple[int, int] = _PORT_RANGE) -> int:
    """A TCP port of ``port_range`` (first, last + 1) free on ``host`` now, not handed out
    before by this process nor (while it runs) by any other test process on this machine."""
    for _ in range(1000):
        port = _RANDOM.randrange(*port_range)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        if not _claim(port):
            continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in {port_range} on {host}")


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def maildir_messages(root: Path) -> list[Path]:
    """Every message file in a Maildir's new/ and cur/."""
    out: list[Path] = []
    for sub in ("new", "cur"):
        d = root / sub
        if d.is_dir():
            out.extend(sorted(p for p in d.iterdir() if p.is_file()))
    return out


class WaypostInstance:
    """One data directory and, while started, one ``waypost serve`` process."""

    def __init__(self, base: Path, domain: str = "example.test", hostname: str | None = None,
                 host: str = "127.0.0.1", database: str | None = None, **overrides: dict[str, Any]) -> None:
        """``database``: storage.database; by default a new PostgreSQL schema when
        WAYPOST_TEST_DATABASE=postgresql (support/pg.py), else the SQLite file."""
        _INSTANCES.append(weakref.ref(self))
        self.data = base
        self.domain = domain
        self.host = host
        self.hostname = hostname or f"mail.{domain}"
        if database is None and pg.engine_for_e2e() == "postgresql":
            database = pg.new_url()
        self.database = database
        more = ("--database", database) if database is not None else ()
        result = self.cli("init", str(base), "--domain", domain, "--hostname", self.hostname, *more, use_data=False)
        assert result.exit_code == 0, result.output
        # A certificate from the test CA instead of the self-signed one: clients check it
        # (support.tls.client_context) for the host name and for the address they dial.
        initial = load_settings(base)
        tls.install_certificate(initial.path(initial.tls.certificate), initial.path(initial.tls.key),
                                self.hostname, host)
        self.smtp_port = free_port(host)
        self.submission_port = free_port(host)
        self.odmr_port = free_port(host)
        self.imap_port = free_port(host)
        self.pop3_port = free_port(host)
        self.ftp_port = free_port(host)
        listen = {"smtp": f"{host}:{self.smtp_port}", "submission": f"{host}:{self.submission_port}",
                  "odmr": f"{host}:{self.odmr_port}", "imap": f"{host}:{self.imap_port}",
                  "pop3": f"{host}:{self.pop3_port}", "ftp": f"{host}:{self.ftp_port}",
                  "http": "", "https": ""}  # (a test that wants the web sets its own ports)
        # Passwords are hashed with argon2id as always, at a small cost: at the default (64 MiB,
        # 3 passes) each hash and each first login takes ~0.2 s of CPU, and the suite makes
        # thousands.  A test about the cost itself sets auth.argon2_* back.
        sections: dict[str, dict[str, Any]] = {"listen": listen, "queue": {"poll_interval": 0.2},
                                               "server": {"workers": 1},
                                               "auth": {"argon2_memory": 1024, "argon2_passes": 1}}
        for name, values in overrides.items():
            sections.setdefault(name, {}).update(values)
        self.configure(**sections)
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    # -- settings -------------------------------------------------------------------

    @property
    def settings_path(self) -> Path:
        return self.data / "waypost.toml"

    def configure(self, **sections: dict[str, Any]) -> None:
        """Merge keys into waypost.toml (validated as the server will read it)."""
        raw = tomllib.loads(self.settings_path.read_text())
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        settings = settings_from_dict(raw, self.data.resolve())
        self.settings_path.write_text(render_toml(settings))

    @property
    def settings(self) -> Any:
        return load_settings(self.data)

    def db(self) -> Any:
        """The instance's database, on its engine (close it when done)."""
        from waypost.db import open_database

        settings = self.settings
        return open_database(settings.storage.database, settings.data_dir)

    def own_spool(self) -> Path:
        """Where this node keeps the spool files only it writes (tmp/, free/, journal/):
        the spool itself on SQLite, spool/nodes/<server.hostname> on PostgreSQL."""
        from waypost.queue.manager import cluster_node
        from waypost.queue.spool import node_dir

        settings = self.settings
        return node_dir(settings.path(settings.storage.spool), cluster_node(settings))

    def stored_text(self) -> str:
        """Everything the instance's database holds, as text, for checking that a secret
        is stored sealed: on SQLite the bytes of its file and write-ahead log (a value
        written lately may be only in the log), on PostgreSQL a ``pg_dump`` of its schema."""
        database = self.settings.storage.database
        if "://" not in database:
            path = self.settings.path(database)
            return "".join(p.read_bytes().decode("latin-1") for p in (path, Path(f"{path}-wal")) if p.exists())
        return pg.dump(database)

    def cli(self, *args: str, input: str | None = None, use_data: bool = True) -> Any:
        """Run a ``waypost`` command in-process through click (the real CLI code)."""
        argv = (["--data", str(self.data)] if use_data else []) + list(args)
        return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, f"waypost {' '.join(args)} failed: {result.output}"
        return str(result.output)

    def mailbox(self, address: str) -> Path:
        name, domain = address.split("@")
        return self.data / "mail" / domain / name

    def messages(self, address: str) -> list[Path]:
        return maildir_messages(self.mailbox(address))

    def drop_in(self, address: str, data: bytes, name: str = "1700000000.dropped.host") -> None:
        """A message a program writes into the account's INBOX Maildir itself (in tmp/,
        then renamed into new/): nothing announces it to the server."""
        box = self.mailbox(address)
        (box / "tmp" / name).write_bytes(data)
        os.rename(box / "tmp" / name, box / "new" / name)

    # -- process ------------------------------------------------------------------------

    def start(self, *extra: str, timeout: float = 20.0, python: str = sys.executable) -> "WaypostInstance":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.output = []
        self.proc = subprocess.Popen(
            [python, "-m", "waypost", "--data", str(self.data), "serve", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
            start_new_session=True,
        )
        _STARTED.append((self.proc, self.data))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            wait_for(lambda: any("worker-ready" in line for line in self.output)
                     or self._died(),
                     timeout, what="the server's listening lines")
        except BaseException:
            # Not ready in time (or interrupted): no half-started server outlives the test.
            self.kill9()
            raise
        if self._died():
            self.kill9()  # a worker the leader left behind, if any
            raise AssertionError("waypost serve exited:\n" + "\n".join(self.output))
        # Workers take over the sockets right away; a connection made now queues in the backlog.
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    def log_lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in list(self.output) if rx.search(line)]

    def expect_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Wait until at least `count` log lines match: the server's output reaches
        the test through a reader thread, a moment after the reply that caused it."""
        return wait_for(lambda: len(lines := self.log_lines(pattern)) >= count and lines,
                        timeout=timeout, what=f"a log line matching {pattern!r}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except BaseException as e:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
                self.proc = None
                if isinstance(e, subprocess.TimeoutExpired):
                    raise AssertionError("waypost serve did not stop on SIGTERM:\n"
                                         + "\n".join(self.output[-30:])) from None
                raise
        # The leader has exited; a worker it left behind would still hold the ports.
        proc = self.proc
        try:
            wait_for(lambda: not _group_alive(proc), timeout=5.0, what="the workers to exit")
        except AssertionError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc = None
            raise AssertionError("waypost serve exited, leaving a worker running:\n"
                                 + "\n".join(self.output[-30:])) from None
        code = self.proc.returncode
        if self._reader is not None:
            self._reader.join(2)
        self.proc = None
        return code

    def kill9(self) -> None:
        """kill -9 the whole server (every worker)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc = self.proc
        proc.wait()
        # The workers die a moment after the leader (init reaps them): a test that starts
        # the server again, or ends, must not find the old ones still there.
        wait_for(lambda: not _group_alive(proc), timeout=10.0, what="the killed workers to be gone")
        if self._reader is not None:
            self._reader.join(2)
        self.proc = None

    def queue_ids(self) -> list[str]:
        import json

        return [m["id"] for m in json.loads(self.ok("queue", "list", "--json"))]

    def __enter__(self) -> "WaypostInstance":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.proc is not None:
            try:
                self.stop()
            except AssertionError:
                if exc_type is None:  # a server that will not stop is a failure of its own
                    raise


def iter_lines(text: str) -> Iterator[str]:
    yield from text.splitlines()
