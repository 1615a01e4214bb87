#!/usr/bin/env python3
"""probe: time single IMAP commands against one Waypost, many times, for profiling.

Uses run.py's Maildir generator, server control and client.  One Waypost (``--workers``,
default 1, so that every command lands on the same process) on a copy of the Maildir;
then, for each command given (default: the commands of run.py's lines), ``--repeat``
timed runs in one session after LOGIN + SELECT, printing min / median wall time and the
server's CPU.  ``--profile`` runs py-spy (``.venv/bin/py-spy``) on the worker during the
runs of each command and writes its ``--format speedscope`` / ``raw`` output beside.

    sudo bench/imap/probe.py --messages 10000 --repeat 20
    sudo bench/imap/probe.py -c 'SEARCH HEADER X-Bench-Tag needle-7f3a' --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

DEFAULT = [
    "FETCH 1:* (UID FLAGS RFC822.SIZE)",
    "FETCH 1:* (FLAGS)",
    "UID FETCH {mid}:{mid_end} BODY.PEEK[]",
    f"SEARCH HEADER {run.TAG_HEADER} {run.NEEDLE}",
    "NOOP",
]


async def probe(port: int, server: run.Waypost, commands: list[str], repeat: int, fresh: bool,
                profile: str | None, n: int) -> None:
    deadline = time.monotonic() + 3600
    s = await run.Session.open(port, deadline)
    t = time.perf_counter()
    await s.login_select()
    print(f"first LOGIN+SELECT: {(time.perf_counter() - t) * 1e3:.1f} ms")
    mid = n // 2
    for raw in commands:
        cmd = raw.format(mid=mid, mid_end=mid + 999)
        if fresh:
            await s.close()
            s = await run.Session.open(port, deadline)
            await s.login_select()
        spy = None
        if profile:
            workers = [p for p in run.process_tree(server.root_pid() or 0) if p != server.root_pid()]
            out = f"{profile}-{cmd.split()[0].lower()}-{len(os.listdir(os.path.dirname(profile) or '.'))}.txt"
            spy = subprocess.Popen([str(run.REPO / ".venv/bin/py-spy"), "record", "-r", "500", "-f", "raw", "-o", out,
                                    "-p", str(max(workers, default=server.root_pid()))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.0)
        times, cpus = [], []
        for _ in range(repeat):
            c0 = run.tree_cpu(server.root_pid())
            t = time.perf_counter()
            await s.command(cmd)
            times.append((time.perf_counter() - t) * 1e3)
            cpus.append((run.tree_cpu(server.root_pid()) - c0) * 1e3)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        print(f"{cmd[:60]:60s} min {min(times):8.1f} ms  median {statistics.median(times):8.1f} ms"
              f"  server CPU median {statistics.median(cpus):7.1f} ms")
    await s.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", "-m", type=int, default=10000)
    ap.add_argument("--repeat", "-r", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--command", "-c", action="append", help="an IMAP command without tag (repeatable)")
    ap.add_argument("--fresh", action="store_true", help="a new session (LOGIN+SELECT, untimed) per command")
    ap.add_argument("--maildir", help="reuse this generated Maildir (made there when missing)")
    ap.add_argument("--profile", metavar="PREFIX", help="py-spy raw profiles to PREFIX-<command>-<n>.txt")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waypost-probe-"))
    server = None
    try:
        src = Path(args.maildir) if args.maildir else work / "source"
        if not (src / "cur").is_dir():
            run.generate_maildir(src, args.messages, args.seed)
        n = len(os.listdir(src / "cur")) + len(os.listdir(src / "new"))
        port = run.free_port()
        server = run.Waypost(work, port, args.workers, run.find_waypost(None))
        server.init()
        run.copy_maildir(src, server.maildir)
        server.start()
        asyncio.run(probe(port, server, args.command or DEFAULT, args.repeat, args.fresh, args.profile, n))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
