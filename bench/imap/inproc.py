#!/usr/bin/env python3
"""inproc: Waypost's IMAP server and a client in one process, under cProfile.

For finding where a command's time goes without the rest of ``waypost serve``: an
``IMAPService`` on a copy of run.py's Maildir (its own SQLite index, directory and Mailstore, a
LOGIN that accepts any password, no argon2), served on 127.0.0.1 by ``loop.create_server``
(so TCP_NODELAY is on, as asyncio sets it for sockets it makes), driven by run.py's
client in the same event loop.  For each command: ``--repeat`` timed runs (min /
median), then ``--profile`` more under cProfile, the top functions printed.
``--cold`` empties the header cache (index table and memory) before each SEARCH run.

    bench/imap/inproc.py -c 'SEARCH HEADER X-Bench-Tag needle-7f3a' --cold --profile 5
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "src"))
import run  # noqa: E402

from waypost.db.sqlite import SQLiteDatabase  # noqa: E402
from waypost.directory import Directory  # noqa: E402
from waypost.imap.commands import search as search_command  # noqa: E402
from waypost.imap.server import IMAPService, Limits  # noqa: E402
from waypost.mailstore import Mailstore  # noqa: E402

DEFAULT = [
    "FETCH 1:* (UID FLAGS RFC822.SIZE)",
    "UID FETCH {mid}:{mid_end} BODY.PEEK[]",
    f"SEARCH HEADER {run.TAG_HEADER} {run.NEEDLE}",
]


def _cold(db: SQLiteDatabase) -> None:
    with db._write() as c:
        c.execute("DELETE FROM message_headers")
    search_command._MEMORY.boxes.clear()


async def main_async(args: argparse.Namespace, work: Path, src: Path, n: int) -> None:
    db = SQLiteDatabase(work / "index.sqlite")
    db.add_domain(run.DOMAIN)
    directory = Directory(db, run.DOMAIN)
    directory.add_account(run.ADDRESS)  # sessions check before each command that it is still there
    store = Mailstore(work / "mail", hostname="inproc", db=db)
    run.copy_maildir(src, store.mailbox_path(run.DOMAIN, run.LOCAL))
    store.ensure_account(run.DOMAIN, run.LOCAL)

    async def authenticate(login: str, password: str, ip: str | None, client_ip: str | None = None) -> str | None:
        return run.ADDRESS

    service = IMAPService(store, authenticate, None, hostname="inproc", lookup=directory.account_named,
                          limits=Limits(plaintext_without_tls=True))
    server = await asyncio.get_running_loop().create_server(service.protocol_factory(), run.HOST, 0)
    port = server.sockets[0].getsockname()[1]
    s = await run.Session.open(port, time.monotonic() + 3600)
    t = time.perf_counter()
    await s.login_select()
    print(f"first LOGIN+SELECT: {(time.perf_counter() - t) * 1e3:.1f} ms")
    mid = n // 2
    for raw in args.command or DEFAULT:
        cmd = raw.format(mid=mid, mid_end=mid + 999)
        cold = args.cold and "SEARCH" in cmd.upper()
        times = []
        for _ in range(args.repeat):
            if cold:
                _cold(db)
            t = time.perf_counter()
            await s.command(cmd)
            times.append((time.perf_counter() - t) * 1e3)
        print(f"{cmd[:60]:60s} min {min(times):8.1f} ms  median {statistics.median(times):8.1f} ms")
        if args.profile:
            prof = cProfile.Profile()
            for _ in range(args.profile):
                if cold:
                    _cold(db)
                prof.enable()
                await s.command(cmd)
                prof.disable()
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
    await s.close()
    server.close()
    db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", "-m", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--maildir", help="reuse this generated Maildir (made there when missing)")
    ap.add_argument("--command", "-c", action="append", help="an IMAP command without tag (repeatable)")
    ap.add_argument("--repeat", "-r", type=int, default=10)
    ap.add_argument("--cold", action="store_true", help="empty the header cache before each SEARCH")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="profile N more runs of each command")
    ap.add_argument("--sort", default="tottime", help="pstats sort key (default tottime)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="waypost-inproc-"))
    try:
        src = Path(args.maildir) if args.maildir else work / "source"
        if not (src / "cur").is_dir():
            run.generate_maildir(src, args.messages, args.seed)
        n = len(os.listdir(src / "cur")) + len(os.listdir(src / "new"))
        asyncio.run(main_async(args, work, src, n))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
