"""`make test`'s two passes, at the same time: the whole suite on SQLite (the storage unit
tests run on both engines there), and the end-to-end tests given as arguments again with
every test server on PostgreSQL (WAYPOST_TEST_DATABASE=postgresql).  The SQLite pass
prints as it goes; the PostgreSQL pass's output is kept in a file and printed after it.
Exit status 0 only if both passed.

Why a script, not two commands joined by ``&`` in the Makefile: a command sent to the
background by a non-interactive shell starts with SIGINT ignored, so Ctrl-C would stop
the SQLite pass and leave the other running, its servers with it.  Here both passes get
Ctrl-C (one process group) and end their own way: servers stopped, databases dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _wait(proc: subprocess.Popen[bytes]) -> int:
    """The exit status of ``proc``; Ctrl-C reaches it too (one process group) and it ends
    its own way, so the wait goes on."""
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def main(postgresql_args: list[str]) -> int:
    pytest = str(Path(sys.executable).parent / "pytest")
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryFile("w+") as log:
        pg = subprocess.Popen([pytest, "-q", "-p", "no:cacheprovider", *postgresql_args], cwd=root,
                              env=dict(os.environ, WAYPOST_TEST_DATABASE="postgresql"),
                              stdout=log, stderr=subprocess.STDOUT)
        sqlite = _wait(subprocess.Popen([pytest, "-q"], cwd=root))
        postgresql = _wait(pg)
        log.seek(0)
        print("== the end-to-end tests again on PostgreSQL (WAYPOST_TEST_DATABASE=postgresql) ==", flush=True)
        sys.stdout.write(log.read())
    return 0 if sqlite == 0 and postgresql == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
