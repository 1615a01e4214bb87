#!/usr/bin/env python3
"""imap: Waypost against Debian's Dovecot, same Maildir, same client, same run.

One Maildir of MESSAGES realistic messages (seeded, so the same every time) is generated
once; each server gets its own copy of it, is started on a free port of 127.0.0.1 and
measured with the same small IMAP client: first LOGIN + SELECT (the index build), then
LOGIN + SELECT again, FETCH 1:* (UID FLAGS RFC822.SIZE), UID FETCH of 1,000 whole
bodies, SEARCH HEADER (first and warm), and SESSIONS concurrent sessions of a mixed
workload.  Each figure is the median of --repeat runs; the table gives the wall time
and the server's CPU seconds for each line, then the ratio Waypost/Dovecot.  See
bench/README.md.

Nothing listens anywhere but 127.0.0.1.  The private Dovecot instance has its own
configuration, base_dir and log in the work directory and is stopped at the end, also on
an error or Ctrl-C; a system Dovecot is never touched.  Run as root (Dovecot runs its
mail processes as another user).  Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import email.utils
import json
import os
import pwd
import re
import random
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
HOST = "127.0.0.1"
DOMAIN = "bench.test"
LOCAL = "bench"
ADDRESS = f"{LOCAL}@{DOMAIN}"
PASSWORD = "bench-Pa55word"
TAG_HEADER = "X-Bench-Tag"
NEEDLE = "needle-7f3a"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MiB = 1024 * 1024
CHUNK = 1 << 18  # the client reads up to 256 KiB at a time
MEMORY_SESSIONS = 10  # sessions of the memory line (select_memory)


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    p = subprocess.run(cmd, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout or ''}{p.stderr or ''}")
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_imap(port: int, limit: float, proc: subprocess.Popen | None = None) -> None:
    """Wait (at most ``limit`` s) until HOST:port answers with an IMAP greeting."""
    deadline = time.monotonic() + limit
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"the server exited ({proc.returncode}) before listening on {HOST}:{port}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.settimeout(5)
                greeting = s.recv(512)
                if greeting.startswith(b"* OK"):
                    s.sendall(b"z LOGOUT\r\n")
                    return
                last = greeting.decode(errors="replace").strip()
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise BenchError(f"no IMAP greeting on {HOST}:{port} within {limit:.0f} s ({last})")


def fs_type(path: Path) -> str:
    best, kind = "", "?"
    p = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return f"{kind} ({best})"


# -- processes --------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, own + reaped children's CPU ticks, rss pages) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    # after the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    return int(rest[1]), sum(int(x) for x in rest[11:15]), int(rest[21])


def process_tree(root: int) -> dict[int, tuple[int, int, int]]:
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                stats[int(name)] = st
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(st[0], []).append(pid)
    out = {}
    todo = [root] if root in stats else []
    while todo:
        pid = todo.pop()
        if pid not in out:
            out[pid] = stats[pid]
            todo.extend(children.get(pid, ()))
    return out


def tree_cpu(root: int | None) -> float:
    """CPU seconds used so far by a process tree: each live process's own time plus what it
    reaped.  The difference of two readings is the tree's CPU time in between, as long as
    every process that exits meanwhile is reaped inside the tree (Dovecot's master reaps
    its imap processes, `waypost serve` its workers)."""
    if root is None:
        return 0.0
    return sum(st[1] for st in process_tree(root).values()) / TICKS


def tree_memory(root: int | None) -> int:
    """Memory of a process tree (every process of the server), in bytes: the sum of each
    process's proportional set size (``Pss`` of ``/proc/PID/smaps_rollup``: a page shared
    by n processes counts 1/n in each, so Dovecot's processes mapping one index are not
    counted n times), or its RSS where that cannot be read."""
    if root is None:
        return 0
    total = 0
    for pid, st in process_tree(root).items():
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            pss = st[2] * PAGE
        total += pss
    return total


def listener_pids(port: int) -> set[int]:
    want = f"{socket.htonl(0x7F000001):08X}:{port:04X}"
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                inodes.add(parts[9])
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{name}/fd"):
                try:
                    target = os.readlink(f"/proc/{name}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(name))
                    break
        except OSError:
            continue
    return pids


def tree_listeners(root: int) -> list[str]:
    """Every listening TCP address held by a process tree (to check nothing but ours)."""
    pids = set(process_tree(root))
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and parts[9] in inodes:
                        addr, port = parts[1].split(":")
                        if v6:
                            found.append(f"[{addr}]:{int(port, 16)}")
                        else:
                            found.append(f"{socket.inet_ntoa(bytes.fromhex(addr)[::-1])}:{int(port, 16)}")
        except OSError:
            continue
    return found


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stop_process(proc: subprocess.Popen, name: str, grace: float = 20) -> int | None:
    """SIGTERM, then SIGKILL to the whole tree after ``grace`` seconds."""
    tree = {pid: _start_time(pid) for pid in process_tree(proc.pid)}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"{name}: still running {grace:.0f} s after SIGTERM, sending SIGKILL")
            for pid in tree:
                _kill(pid, signal.SIGKILL)
            proc.wait(timeout=10)
    # Children left behind (one that did not follow its parent): ours (same pid, same
    # start time), so kill them.
    for pid, started in tree.items():
        if pid != proc.pid and started is not None and _start_time(pid) == started:
            _kill(pid, signal.SIGKILL)
    return proc.returncode


def host_cpu() -> tuple[int, int]:
    """(total, idle + iowait) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4]


def wait_for_idle_host(limit: float, threshold: float = 0.15) -> float:
    """Wait (at most ``limit`` s) for a 1-second window with less than ``threshold`` of
    the CPUs busy; returns the busy share of the last window."""
    deadline = time.monotonic() + limit
    while True:
        a = host_cpu()
        time.sleep(1)
        b = host_cpu()
        busy = 1 - (b[1] - a[1]) / max(1, b[0] - a[0])
        if busy < threshold or time.monotonic() >= deadline:
            return busy


# -- the Maildir ------------------------------------------------------------------------


@dataclass
class Corpus:
    count: int = 0
    total_bytes: int = 0
    needles: int = 0
    tagged: int = 0
    multipart: int = 0
    seen: int = 0
    sizes: list[int] = field(default_factory=list)  # in generation (= file name) order


def _pool(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Pools that message bodies are cut from: text lines, base64 lines, and words."""
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 4, 4, 3, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    words = ["".join(rng.choices(letters, weights, k=rng.choice((2, 3, 4, 4, 5, 5, 6, 7, 8, 9, 11))))
             for _ in range(3000)]
    text = []
    for _ in range(20000):
        line: list[str] = []
        want = rng.randint(40, 76)
        while len(line) + sum(len(w) for w in line) < want:
            line.append(rng.choice(words))
        s = " ".join(line)
        text.append(s[0].upper() + s[1:] + ("." if rng.random() < 0.3 else ""))
    raw = base64.b64encode(rng.randbytes(76 * 3 // 4 * 12000)).decode()
    b64 = [raw[i:i + 76] for i in range(0, len(raw), 76)]
    return text, b64, words


def _cut(pool: list[str], rng: random.Random, nbytes: int) -> list[str]:
    out, size, i = [], 0, rng.randrange(len(pool))
    while size < nbytes:
        out.append(pool[i])
        size += len(pool[i]) + 2
        i = (i + 1) % len(pool)
    return out


def generate_maildir(dest: Path, n: int, seed: int, max_kib: int = 50) -> Corpus:
    """``n`` messages in ``dest/cur`` (``:2,`` info, some ``S``), CRLF, 1-``max_kib`` KiB, about a
    fifth multipart with an attachment, ``X-Bench-Tag`` on a tenth of them (the NEEDLE
    value on ~1 %).  The same ``seed`` gives the same bytes and names."""
    rng = random.Random(seed)
    text, b64, words = _pool(rng)
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    first_names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
                   "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Yolanda"]
    senders = [(f"{rng.choice(first_names)} {rng.choice(words).capitalize()}",
                f"{rng.choice(words)}.{rng.choice(words)}@{rng.choice(words)}.example")
               for _ in range(300)]
    c = Corpus()
    t0 = 1_700_000_000
    for i in range(n):
        ts = t0 + i * 97 + rng.randrange(90)
        target = int(1024 * max_kib ** rng.random())  # log-uniform 1 KiB .. max_kib KiB
        name, addr = rng.choice(senders)
        subject = " ".join(rng.choice(words) for _ in range(rng.randint(2, 9))).capitalize()
        date = email.utils.formatdate(ts, localtime=False)
        mid = f"<{ts}.{i}.{rng.getrandbits(48):012x}@{addr.split('@')[1]}>"
        hdr = [
            f"Return-Path: <{addr}>",
            f"Received: from mx.{addr.split('@')[1]} (mx.{addr.split('@')[1]} [192.0.2.{1 + i % 250}])",
            f"\tby mail.{DOMAIN} (Waypost bench) with ESMTPS id {rng.getrandbits(40):010x}",
            f"\tfor <{ADDRESS}>; {date}",
            f"From: \"{name}\" <{addr}>",
            f"To: <{ADDRESS}>",
            f"Subject: {subject}",
            f"Date: {date}",
            f"Message-ID: {mid}",
            "MIME-Version: 1.0",
        ]
        r = rng.random()
        if r < 0.01:
            hdr.append(f"{TAG_HEADER}: {NEEDLE}")
            c.needles += 1
        elif r < 0.10:
            hdr.append(f"{TAG_HEADER}: hay-{rng.getrandbits(16):04x}")
        if r < 0.10:
            c.tagged += 1
        head_len = sum(len(h) + 2 for h in hdr)
        if rng.random() < 0.2 and target > 4096:
            c.multipart += 1
            boundary = f"=_bench_{rng.getrandbits(64):016x}"
            hdr.append(f"Content-Type: multipart/mixed; boundary=\"{boundary}\"")
            intro = _cut(text, rng, rng.randint(300, 3000))
            fname = f"{rng.choice(words)}-{i}.{rng.choice(('pdf', 'png', 'zip', 'docx'))}"
            ctype = {"pdf": "application/pdf", "png": "image/png", "zip": "application/zip",
                     "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}[
                fname.rsplit(".", 1)[1]]
            att_len = max(200, target - head_len - sum(len(x) + 2 for x in intro) - 400)
            body = ["This is a multi-part message in MIME format.", "", f"--{boundary}",
                    "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit", "",
                    *intro, "", f"--{boundary}", f"Content-Type: {ctype}; name=\"{fname}\"",
                    "Content-Transfer-Encoding: base64", f"Content-Disposition: attachment; filename=\"{fname}\"",
                    "", *_cut(b64, rng, att_len), "", f"--{boundary}--", ""]
        else:
            hdr.append("Content-Type: text/plain; charset=utf-8")
            hdr.append("Content-Transfer-Encoding: 7bit")
            body = _cut(text, rng, max(64, target - head_len - 100))
            body.append("")
        data = ("\r\n".join(hdr) + "\r\n\r\n" + "\r\n".join(body)).encode()
        f = rng.random()
        flags = "S" if f < 0.70 else "FS" if f < 0.75 else "RS" if f < 0.78 else ""
        c.seen += "S" in flags
        path = dest / "cur" / f"{ts}.M{i:06d}P4242.bench:2,{flags}"
        path.write_bytes(data)
        os.utime(path, (ts, ts))
        c.count += 1
        c.total_bytes += len(data)
        c.sizes.append(len(data))
    if c.needles == 0:
        raise BenchError("no message got the needle header: use more messages")
    return c


def copy_maildir(src: Path, dst: Path, owner: tuple[int, int] | None = None) -> None:
    """Copy the Maildir (files and their times); ``owner`` = (uid, gid) for everything."""
    dst.mkdir(parents=True, exist_ok=True)
    for sub in ("cur", "new", "tmp"):
        (dst / sub).mkdir(exist_ok=True)
        with os.scandir(src / sub) as it:
            for e in it:
                shutil.copy2(e.path, dst / sub / e.name)
    if owner is not None:
        for dirpath, dirnames, filenames in os.walk(dst):
            os.chown(dirpath, *owner)
            for fn in filenames:
                os.chown(os.path.join(dirpath, fn), *owner)


# -- the IMAP client ---------------------------------------------------------------------


class ImapError(BenchError):
    pass


class Session:
    """A minimal IMAP client: one command at a time, responses read in large chunks and
    only scanned for their tagged completion line (the last line of the buffer), so
    that its cost is small and the same for every server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> None:
        self.reader, self.writer, self.deadline = reader, writer, deadline
        self.n = 0
        self.received = 0

    @classmethod
    async def open(cls, port: int, deadline: float) -> "Session":
        left = deadline - time.monotonic()
        if left <= 0:
            raise ImapError("timeout before connecting")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port, limit=CHUNK), left)
        s = cls(reader, writer, deadline)
        buf = bytearray()
        while b"\r\n" not in buf:
            buf += await s._read()
        if not buf.startswith(b"* OK"):
            raise ImapError(f"greeting: {bytes(buf[:200])!r}")
        return s

    async def _read(self) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ImapError("timeout")
        try:
            chunk = await asyncio.wait_for(self.reader.read(CHUNK), left)
        except asyncio.TimeoutError:
            raise ImapError("timeout") from None
        if not chunk:
            raise ImapError("connection closed by the server")
        self.received += len(chunk)
        return chunk

    async def command(self, line: str) -> bytes:
        self.n += 1
        tag = f"wpb{self.n}".encode()
        self.writer.write(tag + b" " + line.encode() + b"\r\n")
        buf = bytearray()
        while True:
            buf += await self._read()
            if buf.endswith(b"\r\n"):
                start = buf.rfind(b"\n", 0, len(buf) - 1) + 1
                if buf.startswith(tag + b" ", start):
                    status = bytes(buf[start + len(tag) + 1:-2])
                    if not status.startswith(b"OK"):
                        raise ImapError(f"{line.split()[0]}: {status[:300].decode(errors='replace')}")
                    return bytes(buf)

    async def login_select(self) -> bytes:
        await self.command(f'LOGIN "{ADDRESS}" "{PASSWORD}"')
        return await self.command("SELECT INBOX")

    async def close(self) -> None:
        try:
            if time.monotonic() < self.deadline:
                await self.command("LOGOUT")
        except (ImapError, OSError):
            pass
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError):
            pass


# -- workloads ---------------------------------------------------------------------------

FETCH_LINE = re.compile(rb"^\* (\d+) FETCH \((.*)\)\r$", re.M)


@dataclass
class Mailbox:
    """What the client learnt of the mailbox (from an untimed part of the run)."""
    exists: int = 0
    uids: list[int] = field(default_factory=list)
    size_of: dict[int, int] = field(default_factory=dict)


def parse_fetch_all(resp: bytes) -> Mailbox:
    mb = Mailbox()
    for m in FETCH_LINE.finditer(resp):
        items = m.group(2)
        uid = re.search(rb"UID (\d+)", items)
        size = re.search(rb"RFC822\.SIZE (\d+)", items)
        if uid and size:
            mb.uids.append(int(uid.group(1)))
            mb.size_of[int(uid.group(1))] = int(size.group(1))
    mb.uids.sort()
    mb.exists = len(mb.uids)
    return mb


def uid_set(uids: list[int]) -> str:
    """A compact UID set (a:b runs)."""
    out, i = [], 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        out.append(str(uids[i]) if i == j else f"{uids[i]}:{uids[j]}")
        i = j + 1
    return ",".join(out)


def search_count(resp: bytes) -> int:
    m = re.search(rb"^\* SEARCH([ 0-9]*)\r$", resp, re.M)
    if not m:
        raise ImapError("no * SEARCH line in the answer")
    return len(m.group(1).split())


@dataclass
class Figure:
    seconds: float
    cpu: float
    note: str = ""
    client_cpu: float = 0.0  # this script's own CPU seconds for the whole run (log only)


class Workloads:
    def __init__(self, port: int, root_pid, timeout: float, corpus: Corpus, bodies: int, sessions: int,
                 seed: int) -> None:
        self.port = port
        self.root_pid = root_pid
        self.timeout = timeout
        self.corpus = corpus
        self.bodies = bodies
        self.sessions = sessions
        self.seed = seed
        self.mailbox: Mailbox | None = None

    def _run(self, coro_fn) -> Figure:
        async def main():
            return await coro_fn(time.monotonic() + self.timeout)
        t0 = time.process_time()
        fig = asyncio.run(main())
        fig.client_cpu = time.process_time() - t0
        return fig

    def _cpu(self) -> float:
        return tree_cpu(self.root_pid())

    # a. LOGIN + SELECT
    def login_select(self) -> Figure:
        async def go(deadline):
            c0 = self._cpu()
            t0 = time.perf_counter()
            s = await Session.open(self.port, deadline)
            resp = await s.login_select()
            t = time.perf_counter() - t0
            c = self._cpu() - c0
            await s.close()
            m = re.search(rb"^\* (\d+) EXISTS", resp, re.M)
            exists = int(m.group(1)) if m else -1
            if exists != self.corpus.count:
                raise ImapError(f"SELECT says {exists} EXISTS, the Maildir has {self.corpus.count}")
            return Figure(t, c)
        return self._run(go)

    async def _one(self, deadline, line: str) -> tuple[Figure, bytes]:
        s = await Session.open(self.port, deadline)
        try:
            await s.login_select()
            c0 = self._cpu()
            t0 = time.perf_counter()
            resp = await s.command(line)
            t = time.perf_counter() - t0
            c = self._cpu() - c0
        finally:
            await s.close()
        return Figure(t, c), resp

    async def _after_login(self, deadline, line: str) -> tuple[Figure, bytes]:
        s = await Session.open(self.port, deadline)
        try:
            await s.command(f'LOGIN "{ADDRESS}" "{PASSWORD}"')
            c0 = self._cpu()
            t0 = time.perf_counter()
            resp = await s.command(line)
            t = time.perf_counter() - t0
            c = self._cpu() - c0
        finally:
            await s.close()
        return Figure(t, c), resp

    # a2. SELECT alone (after an untimed LOGIN): what a big mailbox costs to open
    def select_only(self) -> Figure:
        async def go(deadline):
            fig, resp = await self._after_login(deadline, "SELECT INBOX")
            m = re.search(rb"^\* (\d+) EXISTS", resp, re.M)
            if not m or int(m.group(1)) != self.corpus.count:
                raise ImapError(f"SELECT says {m and m.group(1)!r} EXISTS, the Maildir has {self.corpus.count}")
            return fig
        return self._run(go)

    # a2b. Memory: MEMORY_SESSIONS sessions hold the big INBOX selected; the server's
    # memory (``tree_memory``, all processes) grows by this much per session, from
    # before the SELECTs to after them (the logins are made before the first reading).
    # Then a NOOP in each, so that whatever a server reads after SELECT is read: the
    # note gives what that added (Waypost: the message records, shared by the sessions
    # of a worker; Dovecot: nothing more).
    def select_memory(self) -> Figure:
        async def go(deadline):
            sessions = []
            try:
                for _ in range(MEMORY_SESSIONS):
                    s = await Session.open(self.port, deadline)
                    sessions.append(s)
                    await s.command(f'LOGIN "{ADDRESS}" "{PASSWORD}"')
                await asyncio.sleep(0.5)  # login work (warm-ups) settles
                before = tree_memory(self.root_pid())
                c0 = self._cpu()
                for s in sessions:
                    await s.command("SELECT INBOX")
                await asyncio.sleep(0.5)
                selected = tree_memory(self.root_pid())
                c = self._cpu() - c0
                for s in sessions:
                    await s.command("NOOP")
                await asyncio.sleep(0.5)
                after = tree_memory(self.root_pid())
            finally:
                for s in sessions:
                    await s.close()
            return Figure((selected - before) / MEMORY_SESSIONS / 1024, c,
                          note=f"server PSS {before / MiB:.1f} MiB before, +{(selected - before) / MiB:.1f} MiB "
                               f"for {MEMORY_SESSIONS} SELECTs, +{(after - selected) / MiB:.1f} MiB more after "
                               "a NOOP in each")
        return self._run(go)

    # a3. STATUS (MESSAGES UNSEEN SIZE) of the big INBOX, not selected
    def status(self) -> Figure:
        async def go(deadline):
            fig, resp = await self._after_login(deadline, "STATUS INBOX (MESSAGES UNSEEN SIZE)")
            m = re.search(rb"^\* STATUS \S+ \((.*)\)\r$", resp, re.M)
            got = dict(re.findall(rb"(MESSAGES|UNSEEN|SIZE) (\d+)", m.group(1))) if m else {}
            want = {b"MESSAGES": self.corpus.count, b"UNSEEN": self.corpus.count - self.corpus.seen,
                    b"SIZE": self.corpus.total_bytes}
            if {k: int(v) for k, v in got.items()} != want:
                raise ImapError(f"STATUS gave {got}, expected {want}")
            return fig
        return self._run(go)

    # b. FETCH 1:* (UID FLAGS RFC822.SIZE)
    def fetch_all(self) -> Figure:
        async def go(deadline):
            fig, resp = await self._one(deadline, "FETCH 1:* (UID FLAGS RFC822.SIZE)")
            mb = parse_fetch_all(resp)
            if mb.exists != self.corpus.count:
                raise ImapError(f"FETCH 1:* gave {mb.exists} messages, expected {self.corpus.count}")
            total = sum(mb.size_of.values())
            if total != self.corpus.total_bytes:
                raise ImapError(f"RFC822.SIZE adds up to {total}, the files to {self.corpus.total_bytes}")
            self.mailbox = mb
            return fig
        return self._run(go)

    def body_range(self) -> list[int]:
        assert self.mailbox is not None
        uids = self.mailbox.uids
        n = min(self.bodies, len(uids))
        start = (len(uids) - n) // 2
        return uids[start:start + n]

    # c. UID FETCH a:b BODY.PEEK[]
    def fetch_bodies(self) -> Figure:
        rng = self.body_range()
        assert self.mailbox is not None
        want = sum([self.mailbox.size_of[u] for u in rng])

        async def go(deadline):
            fig, resp = await self._one(deadline, f"UID FETCH {rng[0]}:{rng[-1]} BODY.PEEK[]")
            got = resp.count(b"BODY[] {")
            if got != len(rng):
                raise ImapError(f"UID FETCH gave {got} bodies, expected {len(rng)}")
            if len(resp) < want:
                raise ImapError(f"UID FETCH gave {len(resp)} bytes, the bodies have {want}")
            fig.note = f"{want / MiB:.1f} MiB"
            return fig
        return self._run(go)

    # d. SEARCH HEADER
    def search(self) -> Figure:
        async def go(deadline):
            fig, resp = await self._one(deadline, f"SEARCH HEADER {TAG_HEADER} {NEEDLE}")
            n = search_count(resp)
            if n != self.corpus.needles:
                raise ImapError(f"SEARCH found {n}, expected {self.corpus.needles}")
            return fig
        return self._run(go)

    # e. concurrent mixed sessions
    def mixed(self) -> Figure:
        assert self.mailbox is not None
        uids = self.mailbox.uids

        async def one(i: int, deadline: float) -> int:
            r = random.Random(self.seed * 1000 + i)
            s = await Session.open(self.port, deadline)
            try:
                await s.login_select()
                resp = await s.command("FETCH 1:* (FLAGS)")
                # >=: other sessions' STOREs come as extra untagged FETCH (FLAGS ...) lines
                if resp.count(b" FETCH (") < len(uids):
                    raise ImapError("FETCH 1:* (FLAGS) did not list every message")
                pick = sorted(r.sample(uids, min(20, len(uids))))
                resp = await s.command(f"UID FETCH {uid_set(pick)} BODY.PEEK[]")
                if resp.count(b"BODY[] {") != len(pick):
                    raise ImapError("UID FETCH of 20 bodies did not give 20 bodies")
                flag = sorted(r.sample(uids, min(3, len(uids))))
                await s.command(f"UID STORE {uid_set(flag)} +FLAGS.SILENT (\\Flagged)")
                if search_count(await s.command(f"SEARCH HEADER {TAG_HEADER} {NEEDLE}")) != self.corpus.needles:
                    raise ImapError("SEARCH found a wrong number of messages")
            finally:
                await s.close()
            return s.received

        async def go(deadline):
            c0 = self._cpu()
            t0 = time.perf_counter()
            res = await asyncio.gather(*(one(i, deadline) for i in range(self.sessions)), return_exceptions=True)
            t = time.perf_counter() - t0
            c = self._cpu() - c0
            errors = [r for r in res if isinstance(r, BaseException)]
            if errors:
                raise ImapError(f"{len(errors)}/{self.sessions} sessions failed, first: {errors[0]!r}")
            received = sum([r for r in res if isinstance(r, int)])
            return Figure(t, c, f"{received / MiB:.1f} MiB received")
        return self._run(go)


# -- servers -----------------------------------------------------------------------------


class Server:
    name = "?"
    port = 0
    maildir: Path

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def root_pid(self) -> int | None: ...
    def log_tail(self, n: int = 20) -> str: return ""
    def version(self) -> str: return "?"
    def notes_after(self) -> list[str]: return []


class PrivateDovecot(Server):
    name = "dovecot"

    def __init__(self, work: Path, port: int, owner: tuple[int, int], owner_name: str) -> None:
        self.dir = work / "dovecot"
        self.maildir = work / "dovecot-mail"
        self.port = port
        self.owner = owner
        self.owner_name = owner_name
        self.conf = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.scheme = "?"

    def version(self) -> str:
        return run(["dovecot", "--version"], check=False).stdout.strip() or "?"

    def password_hash(self) -> str:
        """An argon2id hash of PASSWORD with Waypost's own parameters (argon2-cffi's
        PasswordHasher defaults, from the repository's venv), so that both servers verify
        the same kind of hash at LOGIN; doveadm's ARGON2ID when that venv is missing."""
        py = REPO / ".venv" / "bin" / "python"
        if py.exists():
            p = run([str(py), "-c", "import sys, argon2; print(argon2.PasswordHasher().hash(sys.stdin.read()))"],
                    input=PASSWORD, check=False)
            if p.returncode == 0 and p.stdout.startswith("$argon2id$"):
                self.scheme = p.stdout.split("$")[3]
                return p.stdout.strip()
        out = run(["doveadm", "pw", "-s", "ARGON2ID", "-p", PASSWORD]).stdout.strip()
        self.scheme = out.split("$")[3]
        return out.removeprefix("{ARGON2ID}")

    def setup(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        os.chown(home, *self.owner)
        uid, gid = self.owner
        passwd = self.dir / "passwd"
        passwd.write_text(f"{ADDRESS}:{{ARGON2ID}}{self.password_hash()}:{uid}:{gid}::{home}::\n")
        os.chmod(passwd, 0o644)
        # Dovecot's defaults everywhere else: fsync (mail_fsync = optimized), index files
        # in the Maildir, one imap-login process per connection (service_count = 1).
        self.conf.write_text(f"""\
# private benchmark instance (bench/imap/run.py); nothing but {HOST}:{self.port}
base_dir = {self.dir}/run
state_dir = {self.dir}/state
instance_name = waypost-bench-{self.port}
log_path = {self.log_path}
info_log_path = {self.log_path}
protocols = imap
listen = {HOST}
ssl = no
auth_mechanisms = plain
disable_plaintext_auth = no
mail_location = maildir:{self.maildir}
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
protocol imap {{
  # the default (10) would turn away the concurrent sessions of the same user
  mail_max_userip_connections = 1000
}}
""")
        run(["doveconf", "-c", str(self.conf), "-n"])

    def start(self) -> None:
        self.setup()
        err = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen(["dovecot", "-c", str(self.conf), "-F"], stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
        err.close()
        wait_imap(self.port, 60, self.proc)
        holders = listener_pids(self.port)
        if not holders or not holders <= set(process_tree(self.proc.pid)):
            raise BenchError(f"{HOST}:{self.port} is held by {holders}, not by our dovecot {self.proc.pid}")
        allowed = {f"{HOST}:{p}" for p in (self.port, getattr(self, "tls_port", None)) if p}
        others = [a for a in tree_listeners(self.proc.pid) if a not in allowed]
        if others:
            raise BenchError(f"the private dovecot listens on more than {HOST}:{self.port}: {others}")

    def stop(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            self.returncode = stop_process(proc, self.name)

    def root_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, n: int = 20) -> str:
        out = []
        for p in (self.dir / "stderr.log", self.log_path):
            try:
                out += p.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(out)

    def notes_after(self) -> list[str]:
        notes = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        # our own SIGTERM at the end is logged as a warning: not counted
        text = "\n".join(x for x in text.splitlines() if "Killed with signal 15" not in x)
        for word in ("Error:", "Panic:", "Fatal:", "Warning:"):
            n = text.count(word)
            if n:
                notes.append(f"dovecot log: {n} line(s) with '{word}'")
        return notes


class Waypost(Server):
    def __init__(self, work: Path, port: int, workers: int, exe: str, database: str | None = None) -> None:
        """``database``: a postgresql:// URL (the PostgreSQL engine, "waypost-pg") or None."""
        self.database = database
        self.name = "waypost-pg" if database else "waypost"
        self.dir = work / self.name
        self.maildir = self.dir / "mail" / DOMAIN / LOCAL
        self.port = port
        self.workers = workers
        self.exe = exe
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.stderr_path = work / "waypost.log"

    def version(self) -> str:
        rev = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"
        dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], check=False).stdout
        return f"{self.exe} (tree {rev}" + (f" + {len(dirty.splitlines())} modified file(s))" if dirty.strip()
                                            else ")")

    def init(self) -> None:
        """The data directory and the account (before the Maildir is copied in)."""
        more = ["--database", self.database] if self.database else []
        run([self.exe, "init", str(self.dir), "--domain", DOMAIN, *more])
        run([self.exe, "--data", str(self.dir), "account", "add", ADDRESS, "--password-stdin"],
            input=PASSWORD + "\n")
        import tomllib
        toml = self.dir / "waypost.toml"
        text = toml.read_text()
        cfg = tomllib.loads(text)
        mail = Path(cfg.get("storage", {}).get("mail", "mail"))
        self.maildir = (mail if mail.is_absolute() else self.dir / mail) / DOMAIN / LOCAL
        ports = {"imap": self.port, "smtp": free_port(), "submission": free_port(), "odmr": free_port()}
        for key in cfg.get("listen", {}):
            text = _set_key(text, "listen", key, f'"{HOST}:{ports[key]}"' if key in ports else '""')
        if "imap" not in cfg.get("listen", {}):
            raise BenchError("waypost.toml has no listen.imap: this Waypost has no IMAP server")
        # Plain LOGIN without TLS, as the private Dovecot (ssl = no) takes it.
        text = _set_key(text, "imap", "plaintext_without_tls", "true", add=True)
        toml.write_text(text)
        cfg = tomllib.loads(text)
        assert cfg["listen"]["imap"] == f"{HOST}:{self.port}"
        bad = {k: v for k, v in cfg["listen"].items() if v and not v.startswith(f"{HOST}:")}
        if bad:
            raise BenchError(f"Waypost listeners not on {HOST}: {bad}")
        p = run([self.exe, "--data", str(self.dir), "config", "check"], check=False)
        if p.returncode != 0:
            if "[imap]" in p.stdout + p.stderr:
                raise BenchError("this Waypost has no IMAP server yet (waypost config check does not know the "
                                 f"[imap] section: {(p.stdout + p.stderr).strip()}); run with --only dovecot")
            raise BenchError(f"waypost config check refused the benchmark settings:\n{p.stdout}{p.stderr}")

    def start(self) -> None:
        err = open(self.stderr_path, "wb")
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen([self.exe, "--data", str(self.dir), "serve", "--workers", str(self.workers)],
                                     stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        err.close()
        want = f"listening imap {HOST}:{self.port}".encode()
        sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        buf = b""
        try:
            while want not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    text = (buf.decode(errors="replace") + "\n" + self.log_tail()).strip()
                    if "not available in this version" in text:
                        raise BenchError("this Waypost has no IMAP listener yet (waypost serve refuses listen.imap: "
                                         "'this listener is not available in this version'); run with "
                                         "--only dovecot until it has one")
                    raise BenchError(f"waypost did not print '{want.decode()}' (exit {self.proc.poll()}):\n{text}")
                if sel.select(timeout=min(left, 1)):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                    buf += chunk
        finally:
            sel.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.stderr_path.read_text(errors="replace").count("worker-ready") >= self.workers:
                break
            time.sleep(0.05)
        else:
            log("waypost: not every worker logged worker-ready within 30 s; going on")
        wait_imap(self.port, 30, self.proc)
        holders = listener_pids(self.port)
        if not holders or not holders <= set(process_tree(self.proc.pid)):
            raise BenchError(f"{HOST}:{self.port} is held by {holders}, not by waypost {self.proc.pid}")
        others = [a for a in tree_listeners(self.proc.pid) if not a.startswith(f"{HOST}:")]
        if others:
            raise BenchError(f"waypost listens outside {HOST}: {others}")

    def stop(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            self.returncode = stop_process(proc, self.name)
            if proc.stdout is not None:
                proc.stdout.close()

    def root_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def notes_after(self) -> list[str]:
        notes = []
        if self.returncode not in (0, None):
            notes.append(f"waypost serve exit status {self.returncode} after SIGTERM")
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        for word in (" error ", " warning ", "Traceback", "Fatal Python error", "event=worker-died"):
            n = text.count(word)
            if n:
                notes.append(f"waypost log: {n} line(s) with '{word.strip()}'")
        return notes


def _set_key(text: str, section: str, key: str, value: str, add: bool = False) -> str:
    """Set ``key = value`` in ``[section]`` of a TOML text; with ``add``, add the key (or the
    section) when it is not there."""
    out, current, done = [], None, False
    for line in text.splitlines():
        m = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if m:
            if current == section and not done and add:
                out.append(f"{key} = {value}")
                done = True
            current = m.group(1).strip()
        elif current == section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
            line = f"{key} = {value}"
            done = True
        out.append(line)
    if not done and add:
        if current != section:
            out += ["", f"[{section}]"]
        out.append(f"{key} = {value}")
        done = True
    if not done:
        raise BenchError(f"waypost.toml has no {section}.{key}")
    return "\n".join(out) + "\n"


# -- running -----------------------------------------------------------------------------

LINES = [
    # key, label, unit ("s" or "ms")
    ("select_first", "first LOGIN+SELECT (index build)", "s"),
    ("select", "LOGIN+SELECT", "ms"),
    ("select_only", "SELECT alone (after LOGIN)", "ms"),
    ("status", "STATUS (MESSAGES UNSEEN SIZE) alone", "ms"),
    ("select_memory", "memory per session with it selected", "KiB"),
    ("select_restart", "SELECT alone, first after a restart", "ms"),
    ("status_restart", "STATUS alone, first after a restart", "ms"),
    ("fetch_all_first", "FETCH 1:* (UID FLAGS RFC822.SIZE), first", "ms"),
    ("fetch_all", "FETCH 1:* (UID FLAGS RFC822.SIZE)", "ms"),
    ("bodies", "UID FETCH a:b BODY.PEEK[] ({bodies} bodies)", "ms"),
    ("search_first", f"SEARCH HEADER {TAG_HEADER}, first", "ms"),
    ("search", f"SEARCH HEADER {TAG_HEADER}, warm", "ms"),
    ("mixed", "{sessions} concurrent mixed sessions", "s"),
]


@dataclass
class Result:
    name: str
    version: str = ""
    figures: dict[str, list[Figure]] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def median(self, key: str) -> tuple[float, float] | None:
        figs = self.figures.get(key)
        if not figs:
            return None
        return statistics.median(f.seconds for f in figs), statistics.median(f.cpu for f in figs)


def measure(server: Server, args, corpus: Corpus, source: Path) -> Result:
    res = Result(server.name)
    try:
        res.version = server.version()
        if isinstance(server, Waypost):
            server.init()
            copy_maildir(source, server.maildir)
        else:
            copy_maildir(source, server.maildir, owner=server.owner)  # type: ignore[attr-defined]
        os.sync()
        log(f"{server.name}: Maildir copied to {server.maildir}; starting")
        server.start()
        log(f"{server.name}: listening on {HOST}:{server.port}")
        if args.idle_wait > 0:
            busy = wait_for_idle_host(args.idle_wait)
            if busy >= 0.15:
                res.notes.append(f"host still {100 * busy:.0f}% busy after waiting {args.idle_wait:.0f} s for it "
                                 "to be idle: other work may have disturbed the figures")
        w = Workloads(server.port, server.root_pid, args.timeout, corpus, args.bodies, args.sessions, args.seed)

        def step(key: str, fn, times: int) -> None:
            for i in range(times):
                try:
                    fig = fn()
                except (ImapError, OSError, asyncio.TimeoutError) as e:
                    raise BenchError(f"{key}: {e!r}" if not isinstance(e, ImapError) else f"{key}: {e}") from None
                res.figures.setdefault(key, []).append(fig)
                value = f"{fig.seconds:.0f} KiB" if key == "select_memory" else f"{fig.seconds * 1000:.1f} ms"
                log(f"{server.name}: {key} #{i + 1}: {value}, server CPU {fig.cpu:.2f} s, "
                    f"client CPU {fig.client_cpu:.2f} s"
                    + (f" ({fig.note})" if fig.note else ""))

        def want(key: str) -> bool:
            return not args.lines or key in args.lines

        step("select_first", w.login_select, 1)  # always: it builds the index
        for key, fn, times in (("select", w.login_select, args.repeat), ("select_only", w.select_only, args.repeat),
                               ("status", w.status, args.repeat), ("select_memory", w.select_memory, 1),
                               ("fetch_all_first", w.fetch_all, 1),
                               ("fetch_all", w.fetch_all, args.repeat), ("bodies", w.fetch_bodies, args.repeat),
                               ("search_first", w.search, 1), ("search", w.search, args.repeat),
                               ("mixed", w.mixed, args.repeat)):
            if want(key) and (key not in ("bodies", "mixed") or w.mailbox is not None):
                step(key, fn, times)
        if want("select_restart") or want("status_restart"):
            # The index as the server left it on disk, read by a fresh process: a
            # restart must not rebuild or re-read it whole.  STATUS first (it does not
            # load the listing), then SELECT, each the first of its kind.
            server.stop()
            server.start()
            log(f"{server.name}: restarted")
            if want("status_restart"):
                step("status_restart", w.status, 1)
            if want("select_restart"):
                step("select_restart", w.select_only, 1)
    except BenchError as e:
        res.error = str(e)
        tail = server.log_tail()
        log(f"{server.name}: FAILED: {e}" + (f"\n--- last log lines ---\n{tail}" if tail else ""))
    finally:
        server.stop()
    res.notes += server.notes_after()
    return res


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[Result], args) -> str:
    by = {r.name: r for r in results}
    ours = [n for n in ("waypost", "waypost-pg") if n in by]
    names = ours + (["dovecot"] if "dovecot" in by else [])
    both = bool(ours) and "dovecot" in by
    labels = {k: lab.format(bodies=args.bodies, sessions=args.sessions) + f" ({u})" for k, lab, u in LINES}
    labels["rate"] = f"{args.sessions} concurrent mixed sessions (sessions/s)"
    W = max(len(x) for x in labels.values()) + 2
    head1 = f"{'':{W}}" + "".join(f"{n:^22}" for n in names)
    head2 = f"{'':{W}}" + "".join(f"{'time':>11}{'CPU (s)':>11}" for _ in names)
    if both:
        for n in ours:
            head1 += f"{n + '/dovecot':^22}"
            head2 += f"{'time':>11}{'CPU':>11}"
    out = [head1, head2]
    for key, _, unit in LINES:
        scale = 1000 if unit == "ms" else 1
        row = f"{labels[key]:{W}}"
        meds = {}
        for n in names:
            m = by[n].median(key)
            meds[n] = m
            spec = {"ms": ".1f", "KiB": ".0f"}.get(unit, ".3f")
            row += f"{fmt(m and m[0] * scale, spec):>11}{fmt(m and m[1], '.2f'):>11}"
        if both:
            for n in ours:
                a, b = meds[n], meds["dovecot"]
                row += f"{fmt(a and b and a[0] / b[0], '.2f'):>11}"
                row += f"{fmt(a and b and b[1] > 0.005 and a[1] / b[1] or None, '.2f'):>11}"
        out.append(row)
    row = f"{labels['rate']:{W}}"
    rates = {}
    for n in names:
        m = by[n].median("mixed")
        rates[n] = m and args.sessions / m[0]
        row += f"{fmt(rates[n], '.1f'):>11}{'':>11}"
    if both:
        for n in ours:
            row += f"{fmt(rates[n] and rates['dovecot'] and rates[n] / rates['dovecot'], '.2f'):>11}{'':>11}"
    out.append(row)
    if both:
        out.append("ratio = waypost / dovecot: for times and CPU seconds < 1 means Waypost is faster or cheaper; "
                   "for sessions/s > 1 means Waypost is faster")
    out.append(f"time: median of {args.repeat} runs (the 'first' lines: one run); CPU: the server's CPU seconds "
               "(every process of it) during the same runs, median")
    for r in results:
        if r.error:
            out.append(f"  {r.name}: FAILED: {r.error}")
        for note in r.notes:
            out.append(f"  {r.name}: {note}")
    return "\n".join(out)


def ensure_dovecot() -> None:
    if shutil.which("dovecot") and shutil.which("doveconf") and Path("/usr/lib/dovecot/imap").exists():
        return
    log("Dovecot is missing: apt-get update && apt-get install -y dovecot-imapd (services kept from starting)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # policy-rc.d exit 101 = "action forbidden": the package's postinst does not start the
    # system dovecot (which would listen on 143/993).  Ours only if there was none.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# bench/imap/run.py: no service starts while it installs dovecot\nexit 101\n")
        policy.chmod(0o755)
    try:
        run(["apt-get", "update"], timeout=600, env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", "dovecot-imapd"], timeout=900, env=env)
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    if Path("/run/systemd/system").exists() and shutil.which("systemctl"):
        # never started (policy-rc.d), and it must not start at the next boot either
        run(["systemctl", "disable", "--now", "dovecot.service", "dovecot.socket"], check=False)
    for tool in ("dovecot", "doveconf"):
        if not shutil.which(tool):
            raise BenchError(f"{tool} still missing after installing dovecot-imapd")


def find_waypost(given: str | None) -> str:
    for cand in (given, str(REPO / ".venv" / "bin" / "waypost"), shutil.which("waypost")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BenchError("waypost not found: pass --waypost PATH")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", "-m", type=int, default=10000, help="messages in the Maildir (default 10000)")
    ap.add_argument("--repeat", "-r", type=int, default=3, help="runs of each workload; the median is shown")
    ap.add_argument("--bodies", type=int, default=1000, help="whole bodies fetched by the UID FETCH line")
    ap.add_argument("--sessions", type=int, default=50, help="concurrent sessions of the mixed workload")
    ap.add_argument("--only", choices=("waypost", "dovecot"), help="measure one server only (with --database: "
                    "waypost means both engines)")
    ap.add_argument("--database", metavar="URL", help="also measure Waypost on the PostgreSQL engine (waypost-pg, "
                    "after waypost): a postgresql://... URL (a new schema of it, dropped at the end), 'postgresql' "
                    "for the machine's server (postgresql://postgres@127.0.0.1:5432/test), or 'private' for a server "
                    "of the bench's own (tests/support/pgprivate.py, fsync on), stopped at the end")
    ap.add_argument("--order", default="dovecot,waypost", help="which server runs first (default dovecot,waypost)")
    ap.add_argument("--workers", type=int, default=2, help="waypost serve --workers (default 2)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds any one workload run may take (every "
                    "command and the mixed sessions as a whole); past it the server's line fails")
    ap.add_argument("--idle-wait", type=float, default=30, help="before each server's runs, wait up to this "
                    "many seconds for the host to be idle (< 15%% of the CPUs busy over 1 s); 0 = do not wait")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated Maildir and of the random picks")
    ap.add_argument("--nice", type=int, default=0, help="run everything at this nice value (e.g. -10)")
    ap.add_argument("--workdir", help="parent of the temporary directory (default: $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--waypost", help="the waypost command (default: REPO/.venv/bin/waypost)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--max-kib", type=int, default=50, help="largest generated message in KiB (default 50; "
                    "smaller keeps a 100,000-message Maildir small)")
    ap.add_argument("--lines", type=lambda v: [x.strip() for x in v.split(",") if x.strip()], default=[],
                    help="only these lines (comma-separated keys: " + ",".join(k for k, _, _ in LINES)
                    + "); the first LOGIN+SELECT always runs")
    args = ap.parse_args()
    unknown = [k for k in args.lines if k not in {k for k, _, _ in LINES}]
    if unknown:
        ap.error(f"--lines: unknown {unknown}")
    if args.messages < 100 or args.repeat < 1 or args.sessions < 1 or args.bodies < 1:
        ap.error("--messages must be at least 100, --repeat, --sessions and --bodies at least 1")

    if os.geteuid() != 0:
        print("imap: run as root (the private Dovecot runs its mail processes as another user)", file=sys.stderr)
        return 2
    servers = [s.strip() for s in args.order.split(",") if s.strip()]
    if sorted(servers) != ["dovecot", "waypost"]:
        ap.error("--order: dovecot,waypost or waypost,dovecot")
    if args.only:
        servers = [args.only]
    if args.database:
        if args.database not in ("postgresql", "private") and "://" not in args.database:
            ap.error(f"--database {args.database!r}: a postgresql:// URL, postgresql or private")
        if "waypost" in servers:
            servers.insert(servers.index("waypost") + 1, "waypost-pg")

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if "dovecot" in servers:
        ensure_dovecot()
    exe = find_waypost(args.waypost) if "waypost" in servers else ""
    if args.nice:
        os.nice(args.nice - os.nice(0))
    try:
        pw = pwd.getpwnam("nobody")
        owner, owner_name = (pw.pw_uid, pw.pw_gid), "nobody"
    except KeyError:
        owner, owner_name = (65534, 65534), "65534"

    work = Path(tempfile.mkdtemp(prefix="waypost-bench-imap-", dir=args.workdir))
    os.chmod(work, 0o711)  # Dovecot's imap processes (as nobody) go through it
    fs = fs_type(work)
    results: list[Result] = []
    current: Server | None = None
    private_pg = None
    schema = pg_url = ""
    try:
        if args.database == "postgresql":
            args.database = "postgresql://postgres@127.0.0.1:5432/test"
        elif args.database == "private":
            sys.path.insert(0, str(REPO / "tests"))
            from support.pgprivate import PrivatePostgres, available  # standard library only

            if available() is not None:
                raise BenchError(f"--database private: {available()}")
            private_pg = PrivatePostgres(settings="fsync = on\n")
            private_pg.start()
            args.database = private_pg.new_database("bench")
        if args.database:
            from urllib.parse import quote

            schema = f"waypost_bench_imap_{os.getpid()}"
            run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", args.database, "-c", f'CREATE SCHEMA "{schema}"'])
            pg_url = args.database + ("&" if "?" in args.database else "?") + "options=" + quote(
                f"-csearch_path={schema}", safe="")
        log(f"generating {args.messages} messages (seed {args.seed})")
        t0 = time.monotonic()
        source = work / "source"
        corpus = generate_maildir(source, args.messages, args.seed, args.max_kib)
        log(f"generated {corpus.total_bytes / MiB:.1f} MiB in {time.monotonic() - t0:.1f} s")
        print(f"imap: {corpus.count} messages, {corpus.total_bytes / MiB:.1f} MiB ({corpus.multipart} multipart, "
              f"{corpus.seen} \\Seen, {corpus.needles} with {TAG_HEADER}: {NEEDLE}); {args.repeat} runs of each "
              f"workload; {args.sessions} concurrent mixed sessions")
        print(f"  machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; work dir {work} on {fs}")
        if fs.startswith("tmpfs"):
            print("  WARNING: the work directory is on tmpfs: fsync is free there")
        sys.stdout.flush()
        for name in servers:
            port = free_port()
            if name == "dovecot":
                current = PrivateDovecot(work, port, owner, owner_name)
            else:
                current = Waypost(work, port, args.workers, exe, database=pg_url if name == "waypost-pg" else None)
            r = measure(current, args, corpus, source)
            results.append(r)
            if isinstance(current, PrivateDovecot):
                print(f"  dovecot {r.version}, private instance, mail processes as {owner_name}, password "
                      f"argon2id {current.scheme}")
            else:
                print(f"  {name} {r.version}, {args.workers} workers"
                      + (f", PostgreSQL engine on {args.database}" if name == "waypost-pg" else ""))
            current = None
        print()
        print(table(results, args))
        sys.stdout.flush()
    except Interrupted as e:
        log(f"interrupted ({e}); stopping")
        return 130
    finally:
        if current is not None:
            current.stop()
        if schema:
            run(["psql", "-q", "-d", args.database, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], check=False)
        if private_pg is not None:
            private_pg.close()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"name": r.name, "version": r.version, "error": r.error, "notes": r.notes,
              "figures": {k: [f.__dict__ for f in v] for k, v in r.figures.items()}} for r in results], indent=2))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"imap: {e}", file=sys.stderr)
        sys.exit(1)
