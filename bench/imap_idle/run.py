#!/usr/bin/env python3
"""imap_idle: many authenticated IMAP sessions in IDLE — Waypost against Dovecot, same
client, same run: the server's memory for them, and how fast a new message wakes them.

Three accounts: ``bench`` (--watchers sessions IDLE on its INBOX), ``solo`` (one session
IDLE on its INBOX) and ``sit`` (the rest of --sessions, IDLE on their INBOX, never woken).
All sessions log in (plain LOGIN; in clear, or with ``--tls`` over implicit TLS, imaps,
on both servers: Waypost's certificate from ``waypost init``, Dovecot's a P-256 one made
with openssl), SELECT INBOX and IDLE;
then the script reports:

- **memory**: the PSS of every process of the server (Waypost's workers; Dovecot's
  master, auth, login and imap processes) before the sessions and with all of them in
  IDLE, and the difference per session;
- **shared wake-up**: another session APPENDs a message to ``bench``'s INBOX; the time
  from sending the APPEND (its storing included) until each of the --watchers sessions has read its
  ``* n EXISTS`` (p50, p99, max over --rounds appends; the client's garbage collector is
  frozen over the sessions first, so that its own full collections are not counted);
- **one INBOX**: the same for ``solo``'s one watcher, while every other session sits;
- **idle CPU**: the server's CPU seconds per second over --quiet seconds (default 30)
  while every session sits in IDLE and nothing happens.  What a sitting session costs is
  its look at the mailbox every 30 s (Waypost's ``imap.idle_check_interval``, Dovecot's
  ``mailbox_idle_check_interval``): the window starts once every session has made its
  first look (--idle-check seconds after the last one entered IDLE; a first look can
  cost more than the next ones) and lasts one whole interval by default, so that it
  holds one look of each.  (A window shorter than the interval can miss them all.)

Dovecot keeps one imap process per session and its default ``process_limit`` for imap
is 1024, so it is measured with --peer-sessions (default 1000) sessions unless told
otherwise; it runs with ``auth_cache_size = 10M`` (Waypost has its verified-logins cache)
so that a thousand logins do not each pay a full argon2id verification (each account logs
in once, one at a time, before the sessions, on both servers), and with
``mail_max_userip_connections`` raised to the session count.  Everything is bounded:
sessions, rounds, and every wait by --timeout.  Run as root.  Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.machinery
import importlib.util
import os
import pwd
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)
    return mod


ib = _load("bench_imap_run", BENCH / "imap" / "run.py")
BenchError = ib.BenchError
log = ib.log
HOST = ib.HOST
DOMAIN = ib.DOMAIN
PASSWORD = ib.PASSWORD
USERS = ("bench", "solo", "sit")
MiB = 1024 * 1024


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss(root: int | None) -> tuple[int, int]:
    """(PSS in KiB of every process of the tree, number of processes)."""
    if root is None:
        return 0, 0
    pids = list(ib.process_tree(root))
    return sum(pss_kib(p) for p in pids), len(pids)


class Waypost(ib.Waypost):
    tls_port: int | None = None

    def init(self, tls: bool = False) -> None:
        super().init()
        for user in USERS[1:]:
            ib.run([self.exe, "--data", str(self.dir), "account", "add", f"{user}@{DOMAIN}", "--password-stdin"],
                   input=PASSWORD + "\n")
        if tls:  # implicit TLS (RFC 8314) with the certificate waypost init made
            self.tls_port = ib.free_port()
            toml = self.dir / "waypost.toml"
            toml.write_text(ib._set_key(toml.read_text(), "listen", "imaps", f'"{HOST}:{self.tls_port}"', add=True))


class Dovecot(ib.PrivateDovecot):
    tls_port: int | None = None

    def __init__(self, work: Path, port: int, sessions: int, tls: bool = False) -> None:
        try:
            pw = pwd.getpwnam("nobody")
            owner = (pw.pw_uid, pw.pw_gid)
        except KeyError:
            owner = (65534, 65534)
        super().__init__(work, port, owner, "nobody")
        self.sessions = sessions
        if tls:
            self.tls_port = ib.free_port()
        self.maildir.mkdir(parents=True, exist_ok=True)
        os.chown(self.maildir, *owner)

    def setup(self) -> None:
        super().setup()
        passwd = self.dir / "passwd"
        line = passwd.read_text().strip()
        rest = line.split(":", 1)[1]
        passwd.write_text("".join(f"{u}@{DOMAIN}:{rest}\n" for u in USERS))
        text = self.conf.read_text()
        text = re.sub(r"^mail_location = .*$", f"mail_location = maildir:{self.maildir}/%n", text, flags=re.M)
        text = text.replace("mail_max_userip_connections = 1000",
                            f"mail_max_userip_connections = {self.sessions + 10}")
        text = text.replace("service imap-login {\n", f"service imap-login {{\n  process_limit = {self.sessions + 10}\n")
        text += (f"auth_cache_size = 10M\nservice imap {{\n  process_limit = {self.sessions + 10}\n}}\n"
                 f"service anvil {{\n  client_limit = {2 * self.sessions + 200}\n}}\n"
                 f"default_client_limit = {self.sessions + 100}\n")
        if self.tls_port is not None:
            # A key and certificate of its own (P-256, as waypost init makes), and imaps.
            cert, key = self.dir / "cert.pem", self.dir / "key.pem"
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-subj", "/CN=localhost", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                           check=True, capture_output=True)
            text = text.replace("ssl = no\n", f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n")
            text = text.replace("  inet_listener imaps {\n    port = 0\n",
                                f"  inet_listener imaps {{\n    address = {HOST}\n    port = {self.tls_port}\n")
        self.conf.write_text(text)
        ib.run(["doveconf", "-c", str(self.conf), "-n"])


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.n = 0

    #: --tls: the client context (the servers' certificates are the bench's own: not checked)
    tls: ssl.SSLContext | None = None

    @classmethod
    async def open(cls, port: int, user: str, timeout: float) -> "Session":
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port, limit=1 << 20, ssl=cls.tls), timeout)
        s = cls(reader, writer, timeout)
        await s.line()
        await s.cmd(f'LOGIN "{user}@{DOMAIN}" "{PASSWORD}"')
        return s

    async def line(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readline(), self.timeout)
        if not data:
            raise BenchError("connection closed by the server")
        return data

    async def cmd(self, text: str, literal: bytes | None = None) -> list[bytes]:
        self.n += 1
        tag = f"t{self.n}".encode()
        if literal is None:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.writer.write(tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        out = []
        while True:
            line = await self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise BenchError(f"{text.split()[0]}: {line[:200]!r}")
                return out

    async def idle(self) -> int:
        exists = 0
        for line in await self.cmd("SELECT INBOX"):
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                exists = int(m.group(1))
        self.writer.write(b"i IDLE\r\n")
        line = await self.line()
        if not line.startswith(b"+"):
            raise BenchError(f"IDLE: {line[:200]!r}")
        return exists

    async def woken(self, above: int) -> float:
        """When this session read a ``* n EXISTS`` above ``above``.  No time-out per line
        (the round's wait for all the sessions has one): ``wait_for`` made a task for
        each line read, the client's own work, on the same CPUs, counted in the figure."""
        while True:
            data = await self.reader.readline()
            if not data:
                raise BenchError("connection closed by the server")
            m = re.match(rb"\* (\d+) EXISTS", data)
            if m and int(m.group(1)) > above:
                return time.perf_counter()

    def close(self) -> None:
        self.writer.close()


MESSAGE = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: wake up\r\n"
           b"Message-ID: <%d@bench.test>\r\n\r\nhello\r\n")


async def measure(server, args, sessions: int) -> dict:
    out: dict = {}
    port = server.tls_port if args.tls else server.port
    # One login per account first, one at a time: the password is verified in full
    # once (argon2id) and then both servers answer from their caches (Waypost's
    # verified logins, Dovecot's auth cache); a thousand first logins at once would
    # only measure the hash (Dovecot's login processes give up after 30 s).
    for _ in range(2):  # Waypost: once per worker, whichever takes the connection
        for user in USERS:
            s = await Session.open(port, user, args.timeout)
            s.close()
    base_kib, base_procs = tree_pss(server.root_pid())
    out["base_mib"] = base_kib / 1024
    held: list[Session] = []
    watchers: list[tuple[Session, int]] = []
    solo: tuple[Session, int] | None = None
    plan = ["bench"] * min(args.watchers, sessions - 1) + ["solo"]
    plan += ["sit"] * (sessions - len(plan))
    t0 = time.monotonic()
    try:
        for g in range(0, len(plan), args.batch):
            async def one(user: str) -> tuple[str, Session, int]:
                s = await Session.open(port, user, args.timeout)
                return user, s, await s.idle()
            got = await asyncio.gather(*(one(u) for u in plan[g:g + args.batch]), return_exceptions=True)
            errors = [x for x in got if isinstance(x, BaseException)]
            for x in got:
                if not isinstance(x, BaseException):
                    user, s, exists = x
                    held.append(s)
                    if user == "bench":
                        watchers.append((s, exists))
                    elif user == "solo":
                        solo = (s, exists)
            if errors:
                raise BenchError(f"{len(errors)} sessions of a batch failed after {len(held)} were up: {errors[0]!r}")
            if time.monotonic() - t0 > args.timeout * 10:
                raise BenchError("opening the sessions took too long")
        out["open_seconds"] = time.monotonic() - t0
        t_idle = time.monotonic()  # the last session is in IDLE
        await asyncio.sleep(2)  # let the server settle (allocations of the last logins)
        kib, procs = tree_pss(server.root_pid())
        out.update(sessions=len(held), mib=kib / 1024, procs=procs, per_session_kib=(kib - base_kib) / len(held))
        log(f"{server.name}: {len(held)} sessions in IDLE, server PSS {kib / 1024:.1f} MiB in {procs} processes "
            f"(before: {base_kib / 1024:.1f} MiB), {(kib - base_kib) / len(held):.1f} KiB per session")
        # What the sessions cost while nothing happens (IDLE's periodic re-check): from
        # when every session has made its first look.
        await asyncio.sleep(max(0.0, t_idle + args.idle_check + 1 - time.monotonic()))
        c0 = ib.tree_cpu(server.root_pid())
        await asyncio.sleep(args.quiet)
        out["idle_cpu"] = (ib.tree_cpu(server.root_pid()) - c0) / args.quiet
        log(f"{server.name}: while the sessions sit idle: {out['idle_cpu']:.3f} CPU seconds per second")
        # Wake-ups.  The client's own objects (10,000 sessions: streams, transports,
        # TLS) are frozen out of its garbage collector first: a full collection over
        # them took 170-220 ms, and when it fell in a round every watcher of that round
        # waited for it, the client's pause counted as the server's.
        gc.collect()
        gc.freeze()
        for user, group, key in (("bench", watchers, "shared"), ("solo", [solo] if solo else [], "one")):
            lat: list[float] = []
            appender = await Session.open(port, user, args.timeout)
            try:
                current = [e for _, e in group]
                for r in range(args.rounds):
                    waits = [asyncio.ensure_future(s.woken(current[i])) for i, (s, _) in enumerate(group)]
                    sent = time.perf_counter()
                    await appender.cmd("APPEND INBOX", MESSAGE % (r + 1000 * len(key)))
                    done = await asyncio.wait_for(asyncio.gather(*waits), args.timeout)
                    lat += [max(0.0, t - sent) for t in done]
                    current = [c + 1 for c in current]
            finally:
                appender.close()
            lat.sort()
            out[key] = {"n": len(lat), "p50": lat[len(lat) // 2], "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
                        "max": lat[-1]}
            log(f"{server.name}: {key} wake-up over {args.rounds} appends, {len(group)} watcher(s): "
                f"p50 {out[key]['p50'] * 1000:.1f} ms, p99 {out[key]['p99'] * 1000:.1f} ms, "
                f"max {out[key]['max'] * 1000:.1f} ms")
        gc.unfreeze()
        # What the sessions hold after they were woken (and told of the new messages).
        await asyncio.sleep(2)
        kib, _ = tree_pss(server.root_pid())
        out["after_mib"] = kib / 1024
        log(f"{server.name}: after the wake-ups, server PSS {kib / 1024:.1f} MiB")
    finally:
        for s in held:
            s.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10000, help="IDLE sessions on Waypost (default 10000)")
    ap.add_argument("--peer-sessions", type=int, default=1000, help="IDLE sessions on Dovecot (default 1000)")
    ap.add_argument("--watchers", type=int, default=1000, help="sessions watching the shared INBOX (default 1000)")
    ap.add_argument("--messages", type=int, default=0,
                    help="messages in the shared INBOX before the sessions open (default 0; bench/imap's generator)")
    ap.add_argument("--rounds", type=int, default=5, help="APPENDs for each wake-up figure")
    ap.add_argument("--batch", type=int, default=200, help="sessions opened at once")
    ap.add_argument("--quiet", type=float, default=30.0,
                    help="seconds the idle server's CPU is measured over (default 30: one look of each session)")
    ap.add_argument("--idle-check", type=float, default=30.0,
                    help="the servers' look interval in IDLE (both default to 30 s): the idle CPU is measured "
                         "from this long after the last session entered IDLE")
    ap.add_argument("--timeout", type=float, default=120, help="bound of every wait, in seconds")
    ap.add_argument("--workers", type=int, default=0, help="waypost serve --workers (0: its default)")
    ap.add_argument("--only", choices=("waypost", "dovecot"))
    ap.add_argument("--waypost", help="the waypost command (default: REPO/.venv/bin/waypost)")
    ap.add_argument("--workdir", help="parent of the temporary directory")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (the servers' logs)")
    ap.add_argument("--tls", action="store_true", help="every session over implicit TLS (imaps, RFC 8314)")
    args = ap.parse_args()
    if args.tls:
        Session.tls = ssl.create_default_context()
        Session.tls.check_hostname = False
        Session.tls.verify_mode = ssl.CERT_NONE
    if not (2 <= args.sessions <= 20000 and 2 <= args.peer_sessions <= 20000 and 1 <= args.watchers
            and 1 <= args.rounds <= 100 and 1 <= args.batch <= 2000 and 0 <= args.messages <= 200000
            and 1 <= args.quiet <= 600 and 0 <= args.idle_check <= 600):
        ap.error("--sessions/--peer-sessions 2-20000, --rounds 1-100, --batch 1-2000, --messages 0-200000, "
                 "--quiet 1-600, --idle-check 0-600")
    if os.geteuid() != 0:
        print("imap_idle: run as root (the private Dovecot runs its mail processes as another user)", file=sys.stderr)
        return 2
    need = max(args.sessions, args.peer_sessions) + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard < need:
            raise BenchError(f"{need} file descriptors needed; the limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    servers = ["dovecot", "waypost"] if not args.only else [args.only]
    if "dovecot" in servers:
        ib.ensure_dovecot()
    exe = ib.find_waypost(args.waypost) if "waypost" in servers else ""

    def on_signal(signum, frame):
        raise ib.Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    work = Path(tempfile.mkdtemp(prefix="waypost-bench-imap-idle-", dir=args.workdir))
    os.chmod(work, 0o711)
    results: dict[str, dict] = {}
    current = None
    try:
        print(f"imap_idle: {args.sessions} sessions{' over TLS' if args.tls else ''} on Waypost, "
              f"{args.peer_sessions} on Dovecot, "
              f"{args.watchers} watching one INBOX, {args.rounds} appends per wake-up figure; machine: "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        for name in servers:
            if name == "waypost":
                current = Waypost(work, ib.free_port(), args.workers, exe)
                current.init(tls=args.tls)
                n = args.sessions
            else:
                current = Dovecot(work, ib.free_port(), args.peer_sessions, tls=args.tls)
                n = args.peer_sessions
            if args.messages:
                source = work / "source"
                if not source.exists():
                    log(f"generating {args.messages} messages for the shared INBOX")
                    ib.generate_maildir(source, args.messages, 1, 4)
                if name == "waypost":
                    ib.copy_maildir(source, current.maildir)
                else:
                    ib.copy_maildir(source, current.maildir / USERS[0], owner=current.owner)
            current.start()
            log(f"{name}: listening on {HOST}:{current.port}")
            try:
                results[name] = asyncio.run(measure(current, args, n))
            except (BenchError, OSError, asyncio.TimeoutError) as e:
                results[name] = {"error": repr(e)}
                tail = current.log_tail()
                log(f"{name}: FAILED: {e!r}" + (f"\n--- last log lines ---\n{tail}" if tail else ""))
            current.stop()
            current = None
    except ib.Interrupted as e:
        log(f"interrupted ({e})")
        return 130
    finally:
        if current is not None:
            current.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'':34}" + "".join(f"{n:>16}" for n in results) + ("   waypost/dovecot" if len(results) == 2 else ""))

    def row(label: str, get, spec: str, ratio: bool = True) -> None:
        vals = {}
        for n, r in results.items():
            try:
                vals[n] = get(r)
            except (KeyError, TypeError):
                vals[n] = None
        line = f"{label:34}" + "".join(f"{('-' if v is None else format(v, spec)):>16}" for v in vals.values())
        if ratio and len(vals) == 2 and vals.get("waypost") and vals.get("dovecot"):
            line += f"{vals['waypost'] / vals['dovecot']:>18.2f}"
        print(line)

    row("sessions in IDLE", lambda r: r["sessions"], "d", ratio=False)
    row("server PSS with them (MiB)", lambda r: r["mib"], ".1f", ratio=False)
    row("server PSS before them (MiB)", lambda r: r["base_mib"], ".1f", ratio=False)
    row("per session (KiB)", lambda r: r["per_session_kib"], ".1f")
    row("server PSS after the wake-ups (MiB)", lambda r: r["after_mib"], ".1f", ratio=False)
    row("server processes", lambda r: r["procs"], "d", ratio=False)
    row("CPU s/s while they sit idle", lambda r: r["idle_cpu"], ".3f", ratio=False)
    row("shared INBOX wake-up p50 (ms)", lambda r: r["shared"]["p50"] * 1000, ".1f")
    row("shared INBOX wake-up p99 (ms)", lambda r: r["shared"]["p99"] * 1000, ".1f")
    row("shared INBOX wake-up max (ms)", lambda r: r["shared"]["max"] * 1000, ".1f")
    row("one INBOX wake-up p50 (ms)", lambda r: r["one"]["p50"] * 1000, ".1f")
    row("one INBOX wake-up max (ms)", lambda r: r["one"]["max"] * 1000, ".1f")
    for n, r in results.items():
        if "error" in r:
            print(f"  {n}: FAILED: {r['error']}")
    print("wake-up: from sending the APPEND (another session; storing included) until each watcher read * n EXISTS; "
          "the client runs on the same machine")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"imap_idle: {e}", file=sys.stderr)
        sys.exit(1)
