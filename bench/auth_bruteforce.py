#!/usr/bin/env python3
"""Password guessing against one account: how many passwords does Waypost check?

    PYTHONPATH=src .venv/bin/python bench/auth_bruteforce.py [--connections 50] [--seconds 30]

Starts ``waypost serve`` (one worker, loopback only, a temporary data directory with one
account, IMAP LOGIN allowed without TLS so that no TLS cost is measured), then runs
``--connections`` clients at once, each logging in with wrong passwords as fast as the
server answers, reconnecting whenever the server closes the connection, for
``--seconds``.  Prints the attempts answered, the passwords actually checked (the
server's ``reason=credentials`` log lines; ``reason=blocked`` attempts are refused
unchecked) and the rate of checked passwords per second and per day.  Everything is
bounded: the duration, the connections, 127.0.0.1.

Extra ``--set SECTION.KEY=VALUE`` options change settings (e.g. ``--set auth.block_time=60``).
The server is the one on PYTHONPATH: run it against another checkout to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if not 1 <= args.connections <= 500 or not 0 < args.seconds <= 600:
        ap.error("--connections 1..500 and --seconds up to 600")

    with tempfile.TemporaryDirectory(prefix="waypost-bench-auth-") as tmp:
        data = Path(tmp) / "data"
        py = [sys.executable, "-m", "waypost"]
        subprocess.run([*py, "init", str(data), "--domain", "bench.test", "--hostname", "mail.bench.test"],
                       check=True, capture_output=True)
        port = free_port()
        toml = (data / "waypost.toml").read_text()
        overrides = {"listen.imap": json.dumps(f"127.0.0.1:{port}"), "imap.plaintext_without_tls": "true",
                     "server.workers": "1"}
        for name in ("smtp", "submission", "odmr", "pop3"):
            overrides[f"listen.{name}"] = '""'
        for item in args.settings:
            key, _, value = item.partition("=")
            overrides[key] = value
        for key, value in overrides.items():
            section, name = key.split(".")
            block = re.search(rf"(?ms)^\[{section}\]\n.*?(?=^\[|\Z)", toml)
            assert block, section
            body, n = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", block.group(0))
            if not n:
                body = body.rstrip("\n") + f"\n{name} = {value}\n\n"
            toml = toml[: block.start()] + body + toml[block.end():]
        (data / "waypost.toml").write_text(toml)
        subprocess.run([*py, "--data", str(data), "account", "add", "victim@bench.test", "--password",
                        "correct horse battery staple"], check=True, capture_output=True)
        proc = subprocess.Popen([*py, "--data", str(data), "serve"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if "worker-ready" in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            if not ready.wait(30):
                raise SystemExit("the server did not start:\n" + "".join(lines))
            answered = asyncio.run(attack(port, args.connections, args.seconds))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        checked = sum("event=auth-failed" in l and "reason=credentials" in l for l in lines)
        # (the server before the throttle logged its own format; count those too)
        checked += sum("event=imap-auth-failed" in l for l in lines)
        blocked = sum("event=auth-failed" in l and "reason=blocked" in l for l in lines)
    figures = {"connections": args.connections, "seconds": args.seconds, "attempts_answered": answered,
               "passwords_checked": checked, "refused_unchecked": blocked,
               "checked_per_second": round(checked / args.seconds, 2),
               "checked_per_day_at_this_rate": int(checked / args.seconds * 86400)}
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:32} {v}")
    return 0


async def attack(port: int, connections: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    answered = 0

    async def one(i: int) -> None:
        nonlocal answered
        n = 0
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
                continue
            try:
                await asyncio.wait_for(reader.readline(), 5)
                while time.monotonic() < deadline:
                    n += 1
                    writer.write(f'a{n} LOGIN victim@bench.test "guess-{i}-{n}"\r\n'.encode())
                    await writer.drain()
                    while True:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        line = await asyncio.wait_for(reader.readline(), left)
                        if not line:
                            raise ConnectionError
                        if line.startswith(f"a{n} ".encode()):
                            answered += 1
                            break
            except (OSError, ConnectionError, asyncio.TimeoutError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one(i) for i in range(connections)))
    return answered


if __name__ == "__main__":
    sys.exit(main())
