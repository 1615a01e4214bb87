#!/usr/bin/env python3
"""imap_fuzz_memory: a worker's memory under many fuzzed IMAP sessions.

Starts ``waypost serve`` with one worker (in its own process, on a free port of
127.0.0.1, in a temporary data directory), then runs SESSIONS short IMAP sessions,
CONCURRENCY at a time, each a random mix (seeded) of valid and broken commands:
LOGIN (right and wrong), CREATE / DELETE / RENAME of random names (long, deep,
non-ASCII, dots), SELECT / EXAMINE, APPEND, FETCH, SEARCH (random header strings),
STORE of random keywords, LIST patterns, STATUS, ID with random fields, IDLE, UID
commands, random bytes and cut literals; each session ends with LOGOUT or a dropped
connection.  It prints the worker's resident set size (VmRSS) before the first
session and after every --every sessions, then the growth.

``--tracemalloc N`` starts the worker under tracemalloc (N frames) and, at each
checkpoint, has it write a snapshot (SIGUSR2); the biggest growths between the first
and the last checkpoint are printed by file and line, which tells a leak (growth
that goes on) from a cache (growth that stops at its bound).  Slower; for finding,
not for the figure.

    PYTHONPATH=src .venv/bin/python bench/imap_fuzz_memory.py --sessions 20000
    PYTHONPATH=src .venv/bin/python bench/imap_fuzz_memory.py --sessions 4000 --tracemalloc 8

Nothing listens anywhere but 127.0.0.1; the data directory is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HOST = "127.0.0.1"
DOMAIN = "fuzz.test"
ACCOUNTS = [f"user{i}" for i in range(8)]
PASSWORD = "fuzz-Pa55word"
REPLY_TIMEOUT = 5.0

# The worker side of --tracemalloc: a snapshot on SIGUSR2, then waypost serve as usual.
# Tracing starts at the first signal (tracing the start-up itself takes minutes).
_WORKER = """
import signal, sys, tracemalloc
frames = int(sys.argv[1])
out = sys.argv[2]
n = [0]
def dump(signum, frame):
    import gc
    if not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    gc.collect()
    tracemalloc.take_snapshot().dump(f"{out}.{n[0]}")
    n[0] += 1
signal.signal(signal.SIGUSR2, dump)
from waypost.cli import cli
cli(sys.argv[3:])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# -- random input ------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_%*&~"
_WORDS = ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "a", "b", "c", "Work", "x.y", "%", "*"]


def rand_name(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        levels = [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))]
    elif kind < 0.8:
        levels = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 12)))
                  for _ in range(rng.randint(1, 4))]
    elif kind < 0.9:
        levels = ["x" * rng.randint(100, 400)]
    else:
        levels = ["&" + "".join(rng.choice("ABCDEFGHIJ+,") for _ in range(rng.randint(0, 8))) + "-"]
    name = "/".join(levels)
    return '"' + name.replace("\\", "").replace('"', "") + '"' if rng.random() < 0.5 else name.replace(" ", "")


def rand_word(rng: random.Random, n: int = 10) -> str:
    return "".join(rng.choice(_ALPHABET[:62]) for _ in range(rng.randint(1, n)))


def rand_set(rng: random.Random) -> str:
    return rng.choice(["1", "1:*", "*", "2:4", f"{rng.randint(1, 50)}", f"1:{rng.randint(1, 9)},7", "0", "4294967296"])


def rand_message(rng: random.Random) -> bytes:
    head = (f"From: {rand_word(rng)}@{rand_word(rng)}.test\r\nTo: {rand_word(rng)}@fuzz.test\r\n"
            f"Subject: {rand_word(rng, 40)}\r\nMessage-ID: <{rand_word(rng, 20)}@x>\r\n")
    if rng.random() < 0.3:
        head += 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
        body = "--b\r\nContent-Type: text/plain\r\n\r\n" + rand_word(rng, 200) + "\r\n--b--\r\n"
    else:
        body = rand_word(rng, 300) + "\r\n"
    return (head + "\r\n" + body).encode()


def commands(rng: random.Random) -> list[bytes | tuple[bytes, bytes]]:
    """One session's commands after LOGIN: a line, or (line ending in a literal, literal)."""
    out: list[bytes | tuple[bytes, bytes]] = []
    for _ in range(rng.randint(3, 15)):
        r = rng.random()
        name = rand_name(rng)
        if r < 0.10:
            out.append(f"CREATE {name}".encode())
        elif r < 0.15:
            out.append(f"DELETE {name}".encode())
        elif r < 0.19:
            out.append(f"RENAME {name} {rand_name(rng)}".encode())
        elif r < 0.30:
            out.append(f"{rng.choice(['SELECT', 'EXAMINE'])} {rng.choice([name, 'INBOX', 'Sent'])}".encode())
        elif r < 0.38:
            msg = rand_message(rng)
            box = rng.choice([name, "INBOX", "Sent"])
            out.append((f"APPEND {box} (\\Seen ${rand_word(rng)}) {{{len(msg)}+}}".encode(), msg))
        elif r < 0.48:
            items = rng.choice(["(UID FLAGS)", "(ENVELOPE BODYSTRUCTURE)", "BODY.PEEK[HEADER]", "FAST", "FULL",
                                f"BODY.PEEK[HEADER.FIELDS ({rand_word(rng)} SUBJECT)]", "BODY[1.2.3]<0.10>",
                                "(MODSEQ)", "RFC822.SIZE"])
            out.append(f"{rng.choice(['', 'UID '])}FETCH {rand_set(rng)} {items}".encode())
        elif r < 0.56:
            key = rng.choice([f"HEADER {rand_word(rng)} {rand_word(rng)}", f"SUBJECT {rand_word(rng)}",
                              f"TEXT {rand_word(rng)}", f"FROM {rand_word(rng)}", "UNSEEN", f"KEYWORD ${rand_word(rng)}",
                              f"OR BODY {rand_word(rng)} NOT SEEN", f"LARGER {rng.randint(0, 9999)}"])
            out.append(f"{rng.choice(['', 'UID '])}SEARCH {key}".encode())
        elif r < 0.63:
            flags = " ".join(rng.choice(["\\Seen", "\\Deleted", "\\Flagged", f"${rand_word(rng)}",
                                         rand_word(rng)]) for _ in range(rng.randint(1, 4)))
            out.append(f"STORE {rand_set(rng)} {rng.choice(['+', '-', ''])}FLAGS ({flags})".encode())
        elif r < 0.68:
            out.append(f'LIST "" {rng.choice(["*", "%", name, "~user1/*"])}'.encode())
        elif r < 0.72:
            out.append(f"STATUS {name} (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)".encode())
        elif r < 0.75:
            fields = " ".join(f'"{rand_word(rng)}" "{rand_word(rng, 30)}"' for _ in range(rng.randint(1, 5)))
            out.append(f"ID ({fields})".encode())
        elif r < 0.78:
            out.append(b"IDLE")
        elif r < 0.81:
            out.append(rng.choice([b"EXPUNGE", b"CLOSE", b"UNSELECT", b"NOOP", b"CHECK", b"NAMESPACE",
                                   b"ENABLE CONDSTORE", b"CAPABILITY"]))
        elif r < 0.84:
            out.append(f"{rng.choice(['COPY', 'MOVE', 'UID MOVE'])} {rand_set(rng)} {name}".encode())
        elif r < 0.87:
            out.append(f"{rng.choice(['SUBSCRIBE', 'UNSUBSCRIBE', 'GETACL', 'MYRIGHTS'])} {name}".encode())
        elif r < 0.90:
            out.append(f"SETACL {name} {rand_word(rng)}@fuzz.test {rng.choice(['lr', '+w', '-x', 'lrswipkxtea'])}".encode())
        else:  # garbage: random bytes, bad syntax, a literal that is cut
            out.append(rng.choice([
                bytes(rng.randrange(32, 127) for _ in range(rng.randint(0, 200))),
                f"FETCH ({rand_word(rng)}".encode(),
                b"SEARCH " + b"(" * rng.randint(1, 40),
                f"APPEND INBOX {{{rng.randint(10**9, 10**12)}}}".encode(),  # larger than allowed
                bytes(rng.randrange(0, 256) for _ in range(rng.randint(1, 50))).replace(b"\r", b"").replace(b"\n", b""),
            ]))
    return out


# -- the client ------------------------------------------------------------------------


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w, self.n = reader, writer, 0

    async def reply(self, tag: bytes) -> bytes:
        """Read up to the tagged reply (or a BYE); literals are read through."""
        while True:
            line = await asyncio.wait_for(self.r.readline(), REPLY_TIMEOUT)
            if not line:
                raise EOFError
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                await asyncio.wait_for(self.r.readexactly(int(m.group(1))), REPLY_TIMEOUT)
                continue
            if line.startswith(tag + b" ") or line.startswith(b"* BYE"):
                return line
            if line.startswith(b"+"):
                if tag == b"+":
                    return line
                self.w.write(b"*\r\n")  # AUTHENTICATE asks for more: cancel (RFC 3501 §6.2.2)

    async def command(self, cmd: bytes | tuple[bytes, bytes]) -> bytes:
        self.n += 1
        tag = b"T%d" % self.n
        if isinstance(cmd, tuple):
            line, literal = cmd
            self.w.write(tag + b" " + line + b"\r\n" + literal + b"\r\n")
        elif cmd == b"IDLE":
            self.w.write(tag + b" IDLE\r\n")
            first = await self.reply(b"+")
            if first.startswith(b"+"):
                self.w.write(b"DONE\r\n")
            else:
                return first
        else:
            self.w.write(tag + b" " + cmd + b"\r\n")
        await self.w.drain()
        return await self.reply(tag)


async def one_session(port: int, rng: random.Random) -> str:
    reader, writer = await asyncio.open_connection(HOST, port)
    s = Session(reader, writer)
    try:
        await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT)
        r = rng.random()
        user = rng.choice(ACCOUNTS)
        if r < 0.1:  # never logs in: garbage, or a wrong password
            await s.command(rng.choice([f"LOGIN {user}@{DOMAIN} wrong".encode(), b"AUTHENTICATE PLAIN",
                                        b"SELECT INBOX", bytes(rng.randrange(32, 127) for _ in range(80))]))
            return "unauthenticated"
        reply = await s.command(f"LOGIN {user}@{DOMAIN} {PASSWORD}".encode())
        if b" OK" not in reply:
            return "login-failed"
        for cmd in commands(rng):
            reply = await s.command(cmd)
            if reply.startswith(b"* BYE"):
                return "bye"
        if rng.random() < 0.8:
            await s.command(b"LOGOUT")
            return "logout"
        return "dropped"
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def fuzz(port: int, sessions: int, concurrency: int, seed: int, every: int,
               checkpoint) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    queue = iter(range(sessions))
    done = 0

    async def runner() -> None:
        nonlocal done
        for i in queue:
            rng = random.Random(seed * 1_000_003 + i)
            try:
                what = await one_session(port, rng)
            except (EOFError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                what = type(e).__name__
            outcomes[what] = outcomes.get(what, 0) + 1
            done += 1
            if done % every == 0:
                checkpoint(done)

    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return outcomes


# -- the server ------------------------------------------------------------------------


def start_server(data: Path, tracemalloc_frames: int, snapshots: str) -> tuple[subprocess.Popen[str], int]:
    py = sys.executable
    env = dict(os.environ)
    run = lambda *a: subprocess.run([py, "-m", "waypost", *a], check=True, env=env,  # noqa: E731
                                    capture_output=True, text=True)
    run("init", str(data), "--domain", DOMAIN, "--hostname", f"mail.{DOMAIN}")
    from argon2 import PasswordHasher
    from waypost.config import load_settings, render_toml, settings_from_dict
    from waypost.db import open_database
    from waypost.directory import Directory
    import tomllib

    # Cheap argon2 parameters (they travel in each hash): the figure is about the
    # sessions, not about 20,000 password checks of 0.1 s of CPU each.
    settings = load_settings(data)
    db = open_database(settings.storage.database, settings.data_dir)
    directory = Directory(db, DOMAIN, PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    for a in ACCOUNTS:
        directory.add_account(f"{a}@{DOMAIN}", PASSWORD)
    db.close()

    raw = tomllib.loads((data / "waypost.toml").read_text())
    port = free_port()
    raw["listen"] = {k: "" for k in raw.get("listen", {})}
    raw["listen"]["imap"] = f"{HOST}:{port}"
    raw.setdefault("server", {})["workers"] = 1
    raw.setdefault("imap", {}).update({"plaintext_without_tls": True, "failure_delay": 0.0})
    (data / "waypost.toml").write_text(render_toml(settings_from_dict(raw, data.resolve())))
    args = ["--data", str(data), "serve"]
    if tracemalloc_frames:
        cmd = [py, "-c", _WORKER, str(tracemalloc_frames), snapshots, *args]
    else:
        cmd = [py, "-m", "waypost", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "worker-ready" in line:
            break
    else:
        proc.wait()
        raise SystemExit("the server exited")
    # Keep reading its log so that it never blocks on a full pipe.
    import threading

    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return proc, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--every", type=int, default=2000, help="sessions between two RSS readings")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    ap.add_argument("--top", type=int, default=15)
    opts = ap.parse_args()
    # A SIGTERM (timeout(1), Ctrl-C) still stops the server and removes the directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="waypost-fuzz-"))
    snapshots = str(work / "snapshot")
    proc = None
    try:
        proc, port = start_server(work / "data", opts.tracemalloc, snapshots)
        pid = proc.pid
        taken: list[int] = []

        def checkpoint(done: int) -> None:
            if opts.tracemalloc:
                os.kill(pid, signal.SIGUSR2)
                taken.append(done)
            print(f"{done:>7} sessions  worker RSS {rss_kib(pid) / 1024:7.1f} MiB", flush=True)

        before = rss_kib(pid)
        print(f"{0:>7} sessions  worker RSS {before / 1024:7.1f} MiB", flush=True)
        checkpoint_0 = 0
        if opts.tracemalloc:
            os.kill(pid, signal.SIGUSR2)
            taken.append(checkpoint_0)
        t0 = time.monotonic()
        outcomes = asyncio.run(fuzz(port, opts.sessions, opts.concurrency, opts.seed, opts.every, checkpoint))
        took = time.monotonic() - t0
        after = rss_kib(pid)
        print(f"sessions: {opts.sessions} in {took:.0f} s ({opts.sessions / took:.0f}/s); outcomes: "
              + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
        print(f"worker RSS: before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB, "
              f"growth {(after - before) / 1024:+.1f} MiB")
        if proc.poll() is not None:
            print("the server died")
            return 1
        if opts.tracemalloc and len(taken) >= 2:
            last = len(taken) - 1
            for _ in range(200):  # the worker writes its snapshots when its loop gets to it
                if os.path.exists(f"{snapshots}.{last}"):
                    break
                time.sleep(0.1)
            time.sleep(1)
            first = tracemalloc.Snapshot.load(f"{snapshots}.1" if last > 1 else f"{snapshots}.0")
            final = tracemalloc.Snapshot.load(f"{snapshots}.{last}")
            print(f"\nbiggest growth from checkpoint {taken[1 if last > 1 else 0]} to {taken[last]} sessions:")
            for stat in final.compare_to(first, "traceback")[:opts.top]:
                print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
                for line in stat.traceback.format()[-8:]:
                    print("     " + line)
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
