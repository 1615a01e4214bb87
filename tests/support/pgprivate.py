"""A PostgreSQL server of the test's own, to stop and start at will.

The machine's PostgreSQL (127.0.0.1:5432) is shared by every test and every engineer
and is never stopped.  A test that needs the database to go down (a restart under load)
runs its own: Debian's binaries (``/usr/lib/postgresql/<version>/bin``), ``initdb`` into
a temporary directory, ``pg_ctl`` on a free port of 127.0.0.1 with ``listen_addresses``
127.0.0.1 only and its socket in that directory.  Trust authentication for user
``postgres`` on 127.0.0.1, as on the machine's.  Running as root (initdb refuses to),
the server runs as the ``postgres`` account, which owns the directory.

``PrivatePostgres`` is a context manager; leaving it stops the server (``immediate``)
and removes its directory.  Standard library only (SQL through the same version's
``psql``), so that bench/smtp_accept can use it too (``--database private``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["PrivatePostgres", "binaries", "available"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""
    found = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            try:
                found.append((int(Path(d).parent.name.split(".")[0]), Path(d)))
            except ValueError:
                continue
    return max(found)[1] if found else None


def available() -> str | None:
    """Why a private server cannot be made here, or None."""
    if binaries() is None:
        return "no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres account for initdb"
    return None


class PrivatePostgres:
    """initdb + pg_ctl on 127.0.0.1:``port`` (a free one by default)."""

    def __init__(self, port: int | None = None, settings: str = "") -> None:
        """``settings``: more lines for postgresql.conf (e.g. shared_preload_libraries)."""
        bindir = binaries()
        if bindir is None:
            raise RuntimeError(available() or "no PostgreSQL binaries")
        self.bin = bindir
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="waypost-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:  # initdb and postgres refuse root: run them as postgres
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\nmax_connections = 100\n"
                    f"shared_buffers = 32MB\n{settings}\n")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.dir, **self._as)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
                               f"\n{self.log.read_text() if self.log.exists() else ''}")
        return proc

    def start(self, timeout: float = 30.0) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout)), "start",
                  timeout=timeout + 5)

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends the sessions and shuts down cleanly; ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True, **self._as).returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql as user postgres; its unaligned output."""
        proc = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                               "-c", sql], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"psql: {proc.stderr.strip()}")
        return proc.stdout

    def new_database(self, name: str = "test") -> str:
        """CREATE DATABASE ``name``; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PrivatePostgres":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
