"""A scrape while workers come and go: /metrics reads files that workers create and the
leader removes (prometheus_client's multiprocess mode). Found by test_metrics under load:
the scrape after a killed worker closed the connection without an answer."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from prometheus_client import multiprocess

from waypost.metrics import render

_WORKER = """
import sys
from pathlib import Path
from waypost import metrics
metrics.start_worker(Path(sys.argv[1]))
metrics.update_memory()
metrics.received("smtp")
"""


def test_render_while_workers_start_and_die(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    deadline = time.monotonic() + 8.0
    workers = 0

    def churn() -> None:
        nonlocal workers
        while time.monotonic() < deadline:
            # A real worker process writes its files; the leader then marks it dead.
            subprocess.run([sys.executable, "-c", _WORKER, str(directory)], check=True)
            workers += 1
            for f in directory.glob("gauge_live*.db"):
                multiprocess.mark_process_dead(int(f.stem.rsplit("_", 1)[1]), str(directory))

    thread = threading.Thread(target=churn)
    thread.start()
    renders, failures = 0, []
    try:
        while time.monotonic() < deadline:
            try:
                text = render(directory, None)
            except Exception as e:  # what the listener would have turned into a closed connection
                failures.append(repr(e))
            else:
                renders += 1
                assert b"waypost_" in text or workers == 0
    finally:
        thread.join()
    assert workers >= 3 and renders >= 100
    assert failures == [], f"{len(failures)} of {renders + len(failures)} scrapes failed: {failures[:3]}"
