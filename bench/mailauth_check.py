#!/usr/bin/env python3
"""In-process cost of the inbound check (``mailauth.check_message``) on the message of
``bench/smtp_accept --signed``: DKIM-signed by bench.test and ARC-sealed by a forwarder
that recorded a pass (one DKIM signature, one ARC set), as the ``+auth --signed`` runs
send it.

    nice -n 19 .venv/bin/python bench/mailauth_check.py [--calls 300] [--rounds 5] [--profile]
    nice -n 19 .venv/bin/python bench/mailauth_check.py --src /path/to/older/src   # another tree's code
    .venv/bin/python bench/mailauth_check.py --between 1,3   # also with other work between checks

The message, its keys and the zone are smtp_accept's (``signed_message``, ``AUTH_ZONE``),
served by its own DNS server (``BenchDNS``, UDP on 127.0.0.1); the check uses a
``Lookup`` with an ``AnswerCache``, as the SMTP worker's does, so after the first call
the answers come from the cache, as in a run of the bench.  Prints the CPU time per call
(``time.thread_time``) of each round and their minimum, and the verdict (every result
must be ``pass``).  ``--between``: the check's CPU again with other Python work run
before each check, as the worker's event loop runs other sessions between two checks
(the processor's caches then hold that work's code and data: 1.5 to 2.3 times the
check's CPU alone in the same runs on 8 December, 0.43-0.68 ms against 0.27-0.41).  ``--profile``: one more round under cProfile, the top functions by
own time.  The code measured is this tree's ``src``, or the ``--src`` given.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _smtp_accept():
    """bench/smtp_accept (a script without .py) as a module, for its message and DNS server."""
    loader = importlib.machinery.SourceFileLoader("smtp_accept", str(REPO / "bench" / "smtp_accept"))
    spec = importlib.util.spec_from_loader("smtp_accept", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["smtp_accept"] = module
    loader.exec_module(module)
    return module


#: A document of the size a worker serializes now and then (a queue entry, a log line's fields).
_DOCUMENT = [{"key%d" % i: list(range(50)), "text": "x" * 200} for i in range(300)]


def _other_work(message: bytes, n: int) -> None:
    """Python work unrelated to the check: the message parsed by the email package and a
    JSON document written and read, ``n`` times."""
    import email
    import json

    for _ in range(n):
        email.message_from_bytes(message)
        json.loads(json.dumps(_DOCUMENT))


async def _rounds(settings, message: bytes, sender: str, calls: int, rounds: int, profile: bool,
                  between: list[int]) -> None:
    from waypost.mailauth import AnswerCache, Lookup, check_message

    import waypost

    print("code:", Path(waypost.__file__).parent)
    lookup = Lookup(settings, cache=AnswerCache())
    first = await check_message(settings, message, "127.0.0.1", "client.bench.test", sender, lookup)
    results = {"spf": first.spf.result, "dkim": ",".join(d.result for d in first.dkim), "arc": first.arc.result,
               "dmarc": first.dmarc.result}
    print("verdict:", " ".join(f"{k}={v}" for k, v in results.items()))
    if set(results.values()) != {"pass"}:
        print(first.header, "\n".join(first.trace), sep="\n")
        raise SystemExit("mailauth_check: the bench's message does not pass every check")
    for _ in range(20):  # warm: caches filled, code paths taken once
        await check_message(settings, message, "127.0.0.1", "client.bench.test", sender, lookup)
    per_call = []
    for r in range(rounds):
        t0 = time.thread_time()
        for _ in range(calls):
            await check_message(settings, message, "127.0.0.1", "client.bench.test", sender, lookup)
        per_call.append((time.thread_time() - t0) / calls * 1000)
        print(f"round {r + 1}: {per_call[-1]:.3f} ms CPU per call ({calls} calls)")
    print(f"min {min(per_call):.3f} ms, median {sorted(per_call)[len(per_call) // 2]:.3f} ms per call")
    # The DKIM and ARC part alone (what check_message does for them), the same way.
    from waypost.mailauth.arc import verify_arc
    from waypost.mailauth.canon import Canon
    from waypost.mailauth.verify import verify_all

    part = []
    for r in range(rounds):
        t0 = time.thread_time()
        for _ in range(calls):
            canon = Canon(message)
            await verify_all(lookup, message, [], canon)
            await verify_arc(lookup, message, [], canon)
        part.append((time.thread_time() - t0) / calls * 1000)
    print(f"DKIM+ARC part (Canon, verify_all, verify_arc): min {min(part):.3f} ms, "
          f"median {sorted(part)[len(part) // 2]:.3f} ms per call")
    for n in between:
        # Other Python work between two checks, as the worker's event loop runs them
        # between sessions: only the check's own CPU is counted.
        spent = 0.0
        for _ in range(calls):
            _other_work(message, n)
            t0 = time.thread_time()
            await check_message(settings, message, "127.0.0.1", "client.bench.test", sender, lookup)
            spent += time.thread_time() - t0
        print(f"with other work between checks (x{n}): {spent / calls * 1000:.3f} ms CPU per check")
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile(time.thread_time)
        prof.enable()
        for _ in range(calls):
            await check_message(settings, message, "127.0.0.1", "client.bench.test", sender, lookup)
        prof.disable()
        stats = pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime"))
        stats.print_stats(int(os.environ.get("TOP", "30")))
        if os.environ.get("CALLERS"):
            stats.print_callers(os.environ["CALLERS"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300, help="calls per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=4096, help="message size, as smtp_accept's --size")
    ap.add_argument("--profile", action="store_true", help="one more round under cProfile")
    ap.add_argument("--between", default="1,3", help="comma list: also measure each check with this much other "
                    "Python work before it (the email package's parse of the message and a JSON round trip, N "
                    "times), as in a busy worker; 0 or empty: not")
    ap.add_argument("--src", type=Path, default=REPO / "src", help="the waypost sources to measure")
    ap.add_argument("--dns-port", type=int, default=None, help="the UDP port of the DNS server on 127.0.0.1 "
                    "(default: any free one)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.src.resolve()))

    sa = _smtp_accept()
    from waypost.config import Settings
    from waypost.mailauth import load_psl

    load_psl()  # as `waypost serve` does before the workers fork
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "signed.eml"
        sa.signed_message(path, args.size)
        message = path.read_bytes()
    dns = sa.BenchDNS(args.dns_port)
    try:
        settings = Settings().replace("dns", nameservers=[f"{sa.HOST}:{dns.port}"], timeout=2.0)
        settings = settings.replace("server", hostname=f"mail.{sa.DOMAIN}")
        between = [int(x) for x in args.between.split(",") if x.strip() and int(x) > 0]
        asyncio.run(_rounds(settings, message, sa.SENDER, args.calls, args.rounds, args.profile, between))
    finally:
        dns.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
