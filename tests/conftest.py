import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.server import WaypostInstance  # noqa: E402


@pytest.fixture
def instance(tmp_path):
    """A data directory with domain example.test and free 127.0.0.1 ports (not started)."""
    with WaypostInstance(tmp_path / "data") as inst:
        yield inst


@pytest.fixture
def server(instance):
    """``instance`` with ``waypost serve`` running; accounts alice and bob exist."""
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.ok("account", "add", "bob@example.test", "--password", "bob-password")
    instance.start()
    yield instance
