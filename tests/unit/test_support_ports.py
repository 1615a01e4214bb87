"""The test support's free_port() across processes: pytest-xdist workers, the two engine
passes of `make test` run at once, and other checkouts' runs on the same machine draw
listener ports from one range; a port one process handed out (and holds) is never handed
out by another before its server has bound it."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path


def _draw(count: int, out: "multiprocessing.Queue[list[int]]", done: "multiprocessing.Event") -> None:  # type: ignore[type-arg]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.server import free_port

    out.put([free_port() for _ in range(count)])
    done.wait(30)  # keep the ports held until every process has drawn its own


def test_processes_drawing_at_once_never_get_the_same_port():
    # 4 x 400 of 12000 ports: without the shared lock, random draws collide (about 80
    # pairs on average), since nothing is bound between the draw and the server's bind.
    ctx = multiprocessing.get_context("spawn")
    out, done = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_draw, args=(400, out, done)) for _ in range(4)]
    for p in procs:
        p.start()
    try:
        drawn = [out.get(timeout=60) for _ in procs]
    finally:
        done.set()
        for p in procs:
            p.join(30)
    ports = [port for one in drawn for port in one]
    assert len(ports) == 1600 and len(set(ports)) == 1600
