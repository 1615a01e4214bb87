"""``waypost queue`` on a big queue: paging, filters, whole ids, streaming, bulk actions
(issue 13 item 21).  The entries are written through the storage interface; the
commands run as the administrator runs them (a ``waypost`` process)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from support.server import ROOT, WaypostInstance

from waypost.db import QueuedMessage, QueuedRecipient

TARGETS = ("mx:a.test", "mx:b.test", "local")


def fill(inst: WaypostInstance, count: int, now: float, step: float = 1.0) -> list[str]:
    """``count`` queued messages, one every ``step`` seconds up to ``now``; ids oldest first."""
    db = inst.db()
    msgs = []
    for n in range(count):
        created = now - (count - n) * step
        msg_id = f"{int(created * 1000):011X}{n:010X}"
        target = TARGETS[n % 3]
        m = QueuedMessage(msg_id, f"s{n % 7}@senders.test", created, 1000 + n, {})
        m.recipients.append(QueuedRecipient(msg_id, 0, f"r{n}@{target.split(':')[-1]}", target,
                                            {"kind": "remote"}, "queued", n % 2, now + 3600, "451 4.4.1 later" if n % 2 else ""))
        msgs.append(m)
    db.queue_insert(msgs, lease_owner="", lease_until=0.0)
    db.close()
    return [m.msg_id for m in msgs]


def waypost(inst: WaypostInstance, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "waypost", "--data", str(inst.data), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, input=input)


def test_listing_100000_entries_gives_every_whole_id_in_order(tmp_path):
    """Every entry, whole ids, oldest first, as text and as JSON.  How fast is measured
    by bench/api.py (``waypost queue list --json`` beside the API), not here: a bound in
    seconds failed on a machine three times slower than the one it was set on (2.01 s of
    CPU against 2.0 on 7 December)."""
    inst = WaypostInstance(tmp_path / "data")
    ids = fill(inst, 100_000, time.time())
    out, took, cpu = timed(inst, "queue", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 100_002 and lines[-1] == "(100000 message(s))"
    assert lines[1].split()[0] == ids[0] and lines[-2].split()[0] == ids[-1]  # whole ids, oldest first
    assert [line.split()[0] for line in lines[1:-1]] == ids
    print(f"queue list of 100,000: {cpu:.2f}s CPU, {took:.2f}s wall")
    out, took, cpu = timed(inst, "queue", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["id"] for r in rows] == ids
    print(f"queue list --json of 100,000: {cpu:.2f}s CPU, {took:.2f}s wall")


def timed(inst: WaypostInstance, *args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = waypost(inst, *args)
    took = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return out, took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_paging_and_filters(tmp_path):
    inst = WaypostInstance(tmp_path / "data")
    now = time.time()
    ids = fill(inst, 300, now, step=600)  # ten minutes apart: the boundaries below are 5 minutes from any entry,
    # so minutes of a loaded machine between the fill and a command change nothing

    def listed(*args: str) -> list[str]:
        out = waypost(inst, "queue", "list", "--json", *args)
        assert out.returncode == 0, out.stderr
        return [r["id"] for r in json.loads(out.stdout)]

    assert listed("--limit", "10") == ids[:10]
    assert listed("--limit", "10", "--offset", "295") == ids[295:]
    assert listed("--target", "mx:b.test") == ids[1::3]
    assert listed("--sender", "S3@senders.test") == ids[3::7]
    assert listed("--sender", "*@senders.test", "--limit", "3") == ids[:3]
    assert listed("--recipient", "r42@*") == [ids[42]]
    assert listed("--older-than", "2505m") == ids[:50]
    assert listed("--newer-than", "105m") == ids[-10:]
    assert listed("--state", "deferred", "--limit", "2") == ids[1:4:2]
    assert listed("--target", "local", "--older-than", "2905m") == [i for i in ids[:10] if ids.index(i) % 3 == 2]
    bad = waypost(inst, "queue", "list", "--older-than", "yesterday")
    assert bad.returncode != 0 and "--older-than" in bad.stderr and "Traceback" not in bad.stderr


def test_bulk_delete_hold_and_flush_count_and_ask_first(tmp_path):
    inst = WaypostInstance(tmp_path / "data")
    ids = fill(inst, 90, time.time(), step=60)
    spool = inst.data / "spool" / "queue"
    spool.mkdir(parents=True, exist_ok=True)
    for msg_id in ids[:6]:
        (spool / msg_id).write_bytes(b"x")

    refused = waypost(inst, "queue", "delete")
    assert refused.returncode != 0 and "--all" in refused.stderr
    declined = waypost(inst, "queue", "delete", "--target", "mx:a.test", input="n\n")
    assert "Delete 30 queued message(s)?" in declined.stderr and declined.returncode != 0
    assert len(json.loads(waypost(inst, "queue", "list", "--json").stdout)) == 90
    done = waypost(inst, "queue", "delete", "--target", "mx:a.test", input="y\n")
    assert done.returncode == 0 and "deleted 30 message(s)" in done.stdout
    assert not (spool / ids[0]).exists() and (spool / ids[1]).exists()

    held = waypost(inst, "queue", "hold", "--older-than", "60.5m", "--yes")
    assert held.returncode == 0 and "now held" in held.stdout
    rows = json.loads(waypost(inst, "queue", "list", "--json", "--state", "held").stdout)
    assert len(rows) == len([i for n, i in enumerate(ids[:30]) if n % 3]) and all(r["held"] for r in rows)
    released = waypost(inst, "queue", "release", "--all", "--yes")
    assert released.returncode == 0 and f"{len(rows)} recipient(s) released" in released.stdout
    assert json.loads(waypost(inst, "queue", "list", "--json", "--state", "held").stdout) == []

    flushed = waypost(inst, "queue", "flush", "--target", "mx:b.test", "--older-than", "60.5m", "--yes")
    assert flushed.returncode == 0 and "10 recipient(s) due now" in flushed.stdout
    gone = waypost(inst, "queue", "delete", "--all", "--yes")
    assert "deleted 60 message(s)" in gone.stdout
    assert waypost(inst, "queue", "list").stdout.splitlines()[-1] == "(0 message(s))"
