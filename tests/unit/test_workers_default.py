"""``server.workers = 0`` (the default): one worker per CPU the process may run on (its
affinity mask), not per core of the machine.  Checked in child processes whose affinity
is really narrowed (``os.sched_setaffinity``), on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from waypost.config import settings_from_dict
from waypost.server import default_workers

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")

_CHILD = """
import os, sys
os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(",")})
from waypost.server import default_workers
print(default_workers())
"""


def _in_child(cpus: set[int]) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, ",".join(map(str, sorted(cpus)))],
                         capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout.strip())


def test_default_is_the_usable_cpus():
    usable = os.sched_getaffinity(0)
    assert default_workers() == len(usable) >= 1
    assert default_workers() <= (os.cpu_count() or 1)


def test_a_narrowed_affinity_gives_fewer_workers():
    usable = sorted(os.sched_getaffinity(0))
    assert _in_child({usable[0]}) == 1
    if len(usable) >= 2:
        assert _in_child(set(usable[:2])) == 2


def test_the_setting_defaults_to_zero_meaning_the_usable_cpus(tmp_path: Path):
    assert settings_from_dict({}, tmp_path).server.workers == 0
