"""Run ``waypost`` with one fault: kill -9 the process the moment the next hop's 2xx
reply to the end of data has been read and parsed by aiosmtplib, before any coroutine
resumes (so before the code that awaited ``SMTP.data()`` runs again).

That is the worst place for a kill in remote delivery: the next hop has the message,
Waypost has read that it does, and nothing after aiosmtplib's ``data_received`` has run.
Used by tests only, as the ``python`` of ``WaypostInstance.start`` (through a small
wrapper script, see ``wrapper``): the server itself is not changed, the library's
protocol class is wrapped in this process alone.

    python tests/support/kill_at_reply.py -m waypost --data DIR serve
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path
from typing import Any


def install() -> None:
    from aiosmtplib.protocol import SMTPProtocol

    original = SMTPProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        original(self, data)
        waiter = self._response_waiter
        if waiter is None or not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
            return
        code = waiter.result().code
        if code == 354:  # the reply to DATA: the next complete reply is the end of data's
            self._kill_at_next_reply = True
        elif getattr(self, "_kill_at_next_reply", False):
            if 200 <= code < 300:
                os.kill(os.getpid(), signal.SIGKILL)
            self._kill_at_next_reply = False

    SMTPProtocol.data_received = data_received  # type: ignore[method-assign]


def wrapper(directory: Path) -> str:
    """An executable that ``WaypostInstance.start(python=...)`` can run instead of Python."""
    path = directory / "python-kill-at-reply"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    path.chmod(0o755)
    return str(path)


if __name__ == "__main__":
    # This file's directory (tests/support: server.py, tls.py, ...) must not shadow
    # anything the server imports.
    del sys.path[0]
    args = sys.argv[1:]
    if args[:2] != ["-m", "waypost"]:
        raise SystemExit("usage: kill_at_reply.py -m waypost ARGS...")
    install()
    sys.argv = ["waypost", *args[2:]]
    runpy.run_module("waypost", run_name="__main__", alter_sys=True)
