#!/usr/bin/env python3
"""connections: bursts of connections opened at once on SMTP, IMAP and POP3 — Waypost
against Postfix (SMTP) and Dovecot (IMAP, POP3) with their defaults, same run, same client.

For each server and protocol, --connections (2,000) TCP connections to 127.0.0.1 are
opened at once (non-blocking connects in one loop), and the client waits for every
greeting (``220``, ``* OK``, ``+OK``); each connection says QUIT/LOGOUT and closes as soon
as it is greeted, as a burst of real clients would.  Printed per line: how many were
greeted, refused or reset, and not greeted by --timeout; the wait of the median, the
99th percentile and the last greeted connection (from the start of the burst); and the
ratio Waypost/peer of the last one's wait.  --rounds bursts each, the median shown.

The private Postfix (bench/smtp_accept's) and Dovecot (bench/imap/run.py's, with POP3
added) have their own configuration and directories under the work directory and listen
only on 127.0.0.1; they are stopped at the end, also on an error or Ctrl-C.  Waypost
runs with its defaults too (``server.workers`` = the usable CPUs, ``listen_backlog``).
Run as root.  Standard library only.
"""

from __future__ import annotations

import argparse
import errno
import importlib.machinery
import importlib.util
import os
import pwd
import resource
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

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
HOST = "127.0.0.1"


def _load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    loader.exec_module(mod)
    return mod


imapbench = _load("bench_imap_run", BENCH / "imap" / "run.py")
smtpbench = _load("bench_smtp_accept", BENCH / "smtp_accept")
BenchError = imapbench.BenchError
log = imapbench.log
run = imapbench.run
free_port = imapbench.free_port

#: What each protocol's greeting starts with, and what the client says before closing.
GREETING = {"smtp": (b"220", b"QUIT\r\n"), "imap": (b"* OK", b"a LOGOUT\r\n"), "pop3": (b"+OK", b"QUIT\r\n")}


class Interrupted(BaseException):
    pass


@dataclass
class Burst:
    greeted: int = 0
    refused: int = 0       # connect refused or reset before the greeting
    timed_out: int = 0     # not greeted by the deadline
    other: int = 0         # a first line that is not the greeting
    waits: list[float] = field(default_factory=list)  # seconds from the burst's start, greeted ones
    open_seconds: float = 0.0  # how long opening them all took

    def pct(self, p: float) -> float | None:
        if not self.waits:
            return None
        w = sorted(self.waits)
        return w[min(len(w) - 1, int(round(p / 100 * (len(w) - 1))))]


def burst(port: int, proto: str, n: int, timeout: float) -> Burst:
    """Open ``n`` connections at once and wait for each one's greeting (bounded)."""
    want, bye = GREETING[proto]
    b = Burst()
    sel = selectors.DefaultSelector()
    bufs: dict[socket.socket, bytes] = {}
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            b.refused += 1
            s.close()
            continue
        bufs[s] = b""
        sel.register(s, selectors.EVENT_READ)
    b.open_seconds = time.perf_counter() - t0
    try:
        while bufs and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                s = key.fileobj  # type: ignore[assignment]
                try:
                    chunk = s.recv(4096)
                except (ConnectionRefusedError, ConnectionResetError, OSError):
                    chunk = None
                if not chunk:
                    b.refused += 1
                    sel.unregister(s)
                    del bufs[s]
                    s.close()
                    continue
                data = bufs[s] + chunk
                if b"\n" not in data and len(data) < 4096:
                    bufs[s] = data
                    continue
                if data.startswith(want):
                    b.greeted += 1
                    b.waits.append(time.perf_counter() - t0)
                else:
                    b.other += 1
                try:
                    s.send(bye)
                except OSError:
                    pass
                sel.unregister(s)
                del bufs[s]
                s.close()
    finally:
        b.timed_out = len(bufs)
        for s in list(bufs):
            sel.unregister(s)
            s.close()
        sel.close()
    return b


# -- servers -----------------------------------------------------------------------------


class Waypost:
    name = "waypost"

    def __init__(self, work: Path, exe: str, workers: int | None) -> None:
        self.dir = work / "waypost"
        self.exe = exe
        self.workers = workers
        self.ports = {"smtp": free_port(), "imap": free_port(), "pop3": free_port()}
        self.proc: subprocess.Popen | None = None
        self.log_path = work / "waypost.log"

    def start(self) -> None:
        import tomllib

        run([self.exe, "init", str(self.dir), "--domain", "bench.test", "--hostname", "mail.bench.test"])
        toml = self.dir / "waypost.toml"
        text = toml.read_text()
        for key in tomllib.loads(text).get("listen", {}):
            value = f'"{HOST}:{self.ports[key]}"' if key in self.ports else '""'
            text = imapbench._set_key(text, "listen", key, value)
        if self.workers is not None:
            text = imapbench._set_key(text, "server", "workers", str(self.workers))
        toml.write_text(text)
        run([self.exe, "--data", str(self.dir), "config", "check"])
        err = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.exe, "--data", str(self.dir), "serve"], stdout=subprocess.PIPE,
                                     stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        err.close()
        assert self.proc.stdout is not None
        wanted = {f"listening {p} {HOST}:{port}".encode() for p, port in self.ports.items()}
        buf = b""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        try:
            while not all(w in buf for w in wanted):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise BenchError(f"waypost did not start:\n{buf.decode(errors='replace')}")
                if sel.select(timeout=1):
                    buf += os.read(self.proc.stdout.fileno(), 4096)
        finally:
            sel.close()
        want_workers = self.workers or len(os.sched_getaffinity(0))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.log_path.read_text(errors="replace").count("worker-ready") >= want_workers:
                break
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            proc, self.proc = self.proc, None
            imapbench.stop_process(proc, self.name)
            if proc.stdout is not None:
                proc.stdout.close()


class Dovecot(imapbench.PrivateDovecot):
    """bench/imap's private Dovecot with POP3 beside IMAP, every default kept."""

    name = "dovecot"

    def __init__(self, work: Path) -> None:
        try:
            pw = pwd.getpwnam("nobody")
            owner = (pw.pw_uid, pw.pw_gid)
        except KeyError:
            owner = (65534, 65534)
        super().__init__(work, free_port(), owner, "nobody")
        self.maildir.mkdir(parents=True, exist_ok=True)
        os.chown(self.maildir, *owner)
        self.pop3_port = free_port()
        self.ports = {"imap": self.port, "pop3": self.pop3_port}

    def setup(self) -> None:
        super().setup()
        text = self.conf.read_text().replace("protocols = imap\n", "protocols = imap pop3\n")
        text += (f"service pop3-login {{\n  inet_listener pop3 {{\n    address = {HOST}\n"
                 f"    port = {self.pop3_port}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n")
        self.conf.write_text(text)
        run(["doveconf", "-c", str(self.conf), "-n"])

    def start(self) -> None:
        self.setup()
        err = open(self.dir / "stderr.log", "wb")
        self.proc = subprocess.Popen(["dovecot", "-c", str(self.conf), "-F"], stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=subprocess.STDOUT, start_new_session=True)
        err.close()
        imapbench.wait_imap(self.port, 60, self.proc)


class Postfix(smtpbench.PrivatePostfix):
    name = "postfix"

    def __init__(self, work: Path) -> None:
        try:
            pw = pwd.getpwnam("nobody")
            ids = (pw.pw_uid, pw.pw_gid)
        except KeyError:
            ids = (65534, 65534)
        super().__init__(work, free_port(), *ids)
        self.ports = {"smtp": self.port}


def ensure_peers() -> None:
    missing = [pkg for tool, pkg in (("postfix", "postfix"), ("dovecot", "dovecot-imapd"))
               if not shutil.which(tool)]
    if not Path("/usr/lib/dovecot/pop3").exists():
        missing.append("dovecot-pop3d")
    if not missing:
        return
    if not Path("/usr/sbin/policy-rc.d").exists():
        raise BenchError(f"missing {missing}: install them with a /usr/sbin/policy-rc.d that says 'exit 101' "
                         "(no service may start)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=900, env=env)


# -- running -----------------------------------------------------------------------------


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", "-n", type=int, default=2000, help="connections per burst (default 2000)")
    ap.add_argument("--rounds", type=int, default=3, help="bursts per server and protocol; the median is shown")
    ap.add_argument("--timeout", type=float, default=60, help="seconds a burst may wait for its greetings")
    ap.add_argument("--workers", type=int, default=None, help="waypost server.workers (default: its own default)")
    ap.add_argument("--only", choices=("waypost", "peers"), help="measure Waypost only, or the peers only")
    ap.add_argument("--waypost", help="the waypost command (default: REPO/.venv/bin/waypost)")
    ap.add_argument("--workdir", help="parent of the temporary directory")
    args = ap.parse_args()
    if not 1 <= args.connections <= 10_000 or not 1 <= args.rounds <= 20 or not 1 <= args.timeout <= 600:
        ap.error("--connections 1-10000, --rounds 1-20, --timeout 1-600")
    if os.geteuid() != 0:
        print("connections: run as root (the private Postfix and Dovecot need it)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 100
    if soft < need:
        if hard < need:
            raise BenchError(f"{args.connections} connections need {need} file descriptors; the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.only != "waypost":
        ensure_peers()
    exe = imapbench.find_waypost(args.waypost) if args.only != "peers" else ""
    work = Path(tempfile.mkdtemp(prefix="waypost-bench-connections-", dir=args.workdir))
    os.chmod(work, 0o711)
    servers: list = []
    if args.only != "peers":
        servers.append(Waypost(work, exe, args.workers))
    if args.only != "waypost":
        servers += [Postfix(work), Dovecot(work)]
    results: dict[tuple[str, str], list[Burst]] = {}
    current = None
    try:
        print(f"connections: bursts of {args.connections} at once, {args.rounds} per line; machine: "
              f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), load average "
              f"{os.getloadavg()[0]:.2f}; net.core.somaxconn "
              f"{Path('/proc/sys/net/core/somaxconn').read_text().strip()}")
        for server in servers:
            current = server
            log(f"{server.name}: starting")
            server.start()
            for proto, port in server.ports.items():
                for i in range(args.rounds):
                    b = burst(port, proto, args.connections, args.timeout)
                    results.setdefault((server.name, proto), []).append(b)
                    log(f"{server.name} {proto} #{i + 1}: greeted {b.greeted}, refused/reset {b.refused}, "
                        f"not greeted {b.timed_out}, other {b.other}; p50 {fmt(b.pct(50), '.3f')} s, "
                        f"p99 {fmt(b.pct(99), '.3f')} s, last {fmt(b.pct(100), '.3f')} s "
                        f"(opened in {b.open_seconds:.3f} s)")
                    time.sleep(1)  # let the server close the last ones
            server.stop()
            current = None
    except Interrupted as e:
        log(f"interrupted ({e})")
        return 130
    finally:
        if current is not None:
            current.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    head = f"{'server':<9}{'proto':<6}{'greeted':>9}{'refused':>9}{'waiting':>9}{'p50 s':>9}{'p99 s':>9}{'last s':>9}"
    print(head + f"{'last: waypost/peer':>20}")
    peer_of = {"smtp": "postfix", "imap": "dovecot", "pop3": "dovecot"}

    def med(bursts: list[Burst], what: str) -> float | None:
        vals = [v for v in (getattr(b, what) if what in ("greeted", "refused", "timed_out") else b.pct(float(what))
                            for b in bursts) if v is not None]
        return statistics.median(vals) if vals else None

    for (name, proto), bursts in results.items():
        last = med(bursts, "100")
        ratio = ""
        if name == "waypost" and ("peer", proto) != ("", "") and (peer_of[proto], proto) in results:
            peer_last = med(results[(peer_of[proto], proto)], "100")
            ratio = fmt(last / peer_last if last and peer_last else None, ".2f")
        print(f"{name:<9}{proto:<6}{fmt(med(bursts, 'greeted'), '.0f'):>9}{fmt(med(bursts, 'refused'), '.0f'):>9}"
              f"{fmt(med(bursts, 'timed_out'), '.0f'):>9}{fmt(med(bursts, '50'), '.3f'):>9}"
              f"{fmt(med(bursts, '99'), '.3f'):>9}{fmt(last, '.3f'):>9}{ratio:>20}")
    print(f"median of {args.rounds} bursts; waits from the start of the burst until the greeting was read; "
          f"'waiting' = not greeted within {args.timeout:.0f} s; ratio < 1: Waypost greeted its last one sooner")
    failed = any(b.greeted < args.connections for (n, _), bs in results.items() if n == "waypost" for b in bs)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"connections: {e}", file=sys.stderr)
        sys.exit(1)
