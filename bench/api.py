"""The JSON API against the CLI, operation by operation, in the same run (issue 18):

    .venv/bin/python bench/api.py [--accounts 100] [--cli-accounts 20] [--queued 10000]
        [--pages 100] [--page-queue 100000] [--workers 1]

A fresh data directory (SQLite) and one ``waypost serve`` on 127.0.0.1 free ports, then:

1. account creation: ``POST /api/v1/accounts`` one after another on one keep-alive
   connection, beside ``waypost account add`` (a process per account, as a script
   would run it): requests/s, p50 and p99 of each, and the ratio;
2. queue listing with ``--queued`` messages in the queue: ``GET /api/v1/queue`` a page of
   100 at a time (pages spread over the whole queue), beside ``waypost queue list --json
   --limit 100 --offset N``; then the whole queue: every page over the API beside one
   ``waypost queue list --json``;
3. the admin queue page (``/admin/queue``, 50 messages a page) with ``--page-queue``
   messages queued: the first page, a filtered page and a page deep in the queue,
   p50/p99 of 20 requests each (goal: under 200 ms).

Every loop is bounded in count; nothing leaves 127.0.0.0/8.  Argon2id makes account
creation CPU-bound on both sides (one hash per account).  Figures depend on the load of
the machine: the run prints the load average before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from waypost.db import QueuedMessage, QueuedRecipient, open_database  # noqa: E402

WAYPOST = [sys.executable, "-m", "waypost"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data: Path, *args: str, input: str | None = None) -> str:
    out = subprocess.run([*WAYPOST, "--data", str(data), *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=300, input=input)
    if out.returncode != 0:
        raise SystemExit(f"waypost {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def line(name: str, times: list[float]) -> dict[str, float]:
    total = sum(times)
    fig = {"n": len(times), "per_s": len(times) / total if total else 0.0, "p50_ms": pct(times, 50) * 1000,
           "p99_ms": pct(times, 99) * 1000}
    print(f"  {name:<44} {fig['n']:>6}  {fig['per_s']:>9.1f}/s  p50 {fig['p50_ms']:>8.1f} ms  p99 {fig['p99_ms']:>8.1f} ms")
    return fig


class Client:
    """One keep-alive HTTP/1.1 connection to the listener."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = headers

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, float]:
        h = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        for attempt in (1, 2):  # an idle keep-alive connection may have been closed (uvicorn: 15 s)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt == 2:
                    raise
                continue
            payload = r.read()
            return r.status, payload, time.perf_counter() - started
        raise AssertionError("unreachable")


def fill_queue(data: Path, count: int, start: int) -> None:
    """``count`` queued messages (index rows, as a busy server would hold them), for
    remote domains and for the local domain bench.test."""
    settings_db = open_database(str(data / "waypost.db"), data)
    now = time.time()
    try:
        batch: list[QueuedMessage] = []
        for n in range(start, start + count):
            created = now - (start + count - n)
            msg_id = f"{int(created * 1000):011X}{n:010X}"
            domain = ("far.example", "near.example", "bench.test")[n % 3]
            m = QueuedMessage(msg_id, f"s{n % 7}@senders.example", created, 1000 + n, {})
            m.recipients.append(QueuedRecipient(msg_id, 0, f"r{n}@{domain}", f"mx:{domain}", {"kind": "remote"},
                                                "queued", n % 2, now + 3600, "451 4.4.1 later" if n % 2 else ""))
            batch.append(m)
            if len(batch) >= 5000:
                settings_db.queue_insert(batch, lease_owner="", lease_until=0.0)
                batch.clear()
        if batch:
            settings_db.queue_insert(batch, lease_owner="", lease_until=0.0)
    finally:
        settings_db.close()


def login_cookie(port: int, login: str, password: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/login")
    r = c.getresponse()
    page = r.read().decode()
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form_cookie = re.search(r"wp_login=([^;]+)", r.getheader("set-cookie") or "").group(1)  # type: ignore[union-attr]
    body = urllib.parse.urlencode({"csrf": token, "login": login, "password": password})
    c.request("POST", "/login", body=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                    "Cookie": f"wp_login={form_cookie}"})
    r = c.getresponse()
    r.read()
    cookies = ", ".join(v for k, v in r.getheaders() if k.lower() == "set-cookie")
    return re.search(r"wp_session=([^;]+)", cookies).group(1)  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--cli-accounts", type=int, default=20)
    ap.add_argument("--queued", type=int, default=10_000)
    ap.add_argument("--pages", type=int, default=100, help="queue pages of 100 asked each way")
    ap.add_argument("--page-queue", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="waypost-bench-api-") as tmp:
        data = Path(tmp) / "data"
        subprocess.run([*WAYPOST, "init", str(data), "--domain", "bench.test", "--hostname", "mail.bench.test"],
                       check=True, capture_output=True, cwd=ROOT)
        http_port = free_port()
        listen = {k: f"127.0.0.1:{free_port()}" for k in ("smtp", "submission", "odmr", "imap", "pop3", "ftp")}
        toml = (data / "waypost.toml").read_text()
        for key, value in {**listen, "http": f"127.0.0.1:{http_port}", "https": ""}.items():
            toml = re.sub(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', toml)
        toml = re.sub(r"(?m)^workers = .*$", f"workers = {args.workers}", toml)
        (data / "waypost.toml").write_text(toml)
        cli(data, "account", "add", "root@bench.test", "--password", "bench-root-pw")
        cli(data, "account", "set", "root@bench.test", "--right", "AllUsers")
        token = cli(data, "token", "add", "bench").splitlines()[0]
        server = subprocess.Popen([*WAYPOST, "--data", str(data), "serve"], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            assert server.stdout is not None
            while time.monotonic() < deadline:
                out = server.stdout.readline()
                if "listening http" in out or "proto=http" in out:
                    break
                if server.poll() is not None:
                    raise SystemExit("waypost serve stopped")
            threading_drain(server)
            run(args, data, http_port, token)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"load average after: {os.getloadavg()}")


def threading_drain(proc: subprocess.Popen[str]) -> None:
    import threading

    def drain() -> None:
        assert proc.stdout is not None
        for _ in proc.stdout:
            pass
    threading.Thread(target=drain, daemon=True).start()


def run(args: argparse.Namespace, data: Path, port: int, token: str) -> None:
    api = Client(port, {"Authorization": f"Bearer {token}"})
    # Wait for the listener to answer.
    deadline = time.monotonic() + 30
    while True:
        try:
            if api.request("GET", "/api/v1/whoami")[0] == 200:
                break
        except OSError:
            api = Client(port, {"Authorization": f"Bearer {token}"})
        if time.monotonic() > deadline:
            raise SystemExit("the API did not answer")
        time.sleep(0.1)

    print("\n1. account creation (argon2id hash each)")
    times = []
    for n in range(args.accounts):
        status, body, took = api.request("POST", "/api/v1/accounts", {"address": f"api{n}@bench.test",
                                                                      "password": f"pw-api-{n}-bench"})
        assert status == 201, body
        times.append(took)
    a = line("API POST /api/v1/accounts", times)
    times = []
    for n in range(args.cli_accounts):
        started = time.perf_counter()
        cli(data, "account", "add", f"cli{n}@bench.test", "--password", f"pw-cli-{n}-bench")
        times.append(time.perf_counter() - started)
    c = line("CLI waypost account add (a process each)", times)
    print(f"  ratio API/CLI requests per second: {a['per_s'] / c['per_s']:.1f}x")

    print(f"\n2. queue listing, {args.queued:,} queued")
    fill_queue(data, args.queued, 0)
    pages = min(args.pages, max(1, args.queued // 100))
    offsets = [(i * (args.queued // pages)) // 100 * 100 for i in range(pages)]
    times = []
    for off in offsets:
        status, body, took = api.request("GET", f"/api/v1/queue?limit=100&offset={off}")
        assert status == 200 and len(json.loads(body)["items"]) == min(100, args.queued - off), body[:200]
        times.append(took)
    a = line("API GET /api/v1/queue (page of 100)", times)
    times = []
    for off in offsets[: max(1, min(len(offsets), 20))]:
        started = time.perf_counter()
        rows = json.loads(cli(data, "queue", "list", "--json", "--limit", "100", "--offset", str(off)))
        assert len(rows) == min(100, args.queued - off)
        times.append(time.perf_counter() - started)
    c = line("CLI waypost queue list --json --limit 100", times)
    print(f"  ratio API/CLI requests per second: {a['per_s'] / c['per_s']:.1f}x")
    started = time.perf_counter()
    seen = 0
    for off in range(0, args.queued, 1000):
        status, body, _ = api.request("GET", f"/api/v1/queue?limit=1000&offset={off}")
        seen += len(json.loads(body)["items"])
    api_all = time.perf_counter() - started
    assert seen == args.queued
    started = time.perf_counter()
    assert len(json.loads(cli(data, "queue", "list", "--json"))) == args.queued
    cli_all = time.perf_counter() - started
    print(f"  the whole queue: API (pages of 1000) {api_all:.2f} s, CLI queue list --json {cli_all:.2f} s,"
          f" ratio {cli_all / api_all:.2f}x")

    print(f"\n3. the admin queue page, {args.page_queue:,} queued")
    if args.page_queue > args.queued:
        fill_queue(data, args.page_queue - args.queued, args.queued)
    db = open_database(str(data / "waypost.db"), data)
    try:  # the cursor of the page half-way down, as following "Next page" there would give
        from waypost.db import QueueFilter

        mid = next(iter(db.queue_entries(QueueFilter(), limit=1, offset=args.page_queue // 2)))
    finally:
        db.close()
    deep = urllib.parse.urlencode({"after": f"{mid.created!r},{mid.msg_id}"})
    cookie = login_cookie(port, "root@bench.test", "bench-root-pw")
    page = Client(port, {"Cookie": f"wp_session={cookie}"})
    # Domain administrators: of bench.test (a third of the queue is its mail), and of
    # quiet.test (nothing of it queued: a filter that matches nothing).
    cli(data, "domain", "add", "quiet.test")
    for who in ("boss@bench.test", "boss@quiet.test"):
        cli(data, "account", "add", who, "--password", "bench-boss-pw")
        cli(data, "account", "set", who, "--admin-domain", who.split("@")[1])
    bench_boss = Client(port, {"Cookie": f"wp_session={login_cookie(port, 'boss@bench.test', 'bench-boss-pw')}"})
    quiet_boss = Client(port, {"Cookie": f"wp_session={login_cookie(port, 'boss@quiet.test', 'bench-boss-pw')}"})
    for name, client, path in (
            ("first page", page, "/admin/queue"),
            ("filtered (target mx:near.example)", page, "/admin/queue?target=mx%3Anear.example"),
            ("held state filter", page, "/admin/queue?state=held"),
            ("recipient *@nothing.example", page, "/admin/queue?recipient=%2A%40nothing.example"),
            (f"deep page (after message {args.page_queue // 2:,})", page, f"/admin/queue?{deep}"),
            ("domain administrator of bench.test", bench_boss, "/admin/queue"),
            ("domain administrator of quiet.test (none queued)", quiet_boss, "/admin/queue")):
        times = []
        for _ in range(20):
            status, body, took = client.request("GET", path)
            assert status == 200, body[:300]
            times.append(took)
        fig = line(f"/admin/queue {name}", times)
        print(f"    {'under' if fig['p99_ms'] < 200 else 'OVER'} 200 ms at p99")
    for name, path in (("held, page and count", "/api/v1/queue?state=held&limit=50"),
                       ("domain quiet.test, page and count", "/api/v1/queue?domain=quiet.test&limit=50")):
        times = []
        for _ in range(20):
            status, body, took = api.request("GET", path)
            assert status == 200, body[:300]
            times.append(took)
        line(f"API GET /api/v1/queue {name}", times)


if __name__ == "__main__":
    main()
