"""Dates the SMTP server writes (Received, Date): local time with the right offset."""

from __future__ import annotations

import time

import pytest

from waypost.smtp.commands import data as server


@pytest.mark.parametrize("epoch, expected", [
    (1698539400, "Sun, 29 Oct 2023 02:30:00 +0200"),  # Berlin, before the clocks go back
    (1698543000, "Sun, 29 Oct 2023 02:30:00 +0100"),  # the same wall time an hour later
    (1700000000, "Tue, 14 Nov 2023 23:13:20 +0100"),
])
def test_date_in_local_time_across_the_autumn_change(monkeypatch, epoch, expected):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        monkeypatch.setattr(server.time, "time", lambda: float(epoch))
        monkeypatch.setattr(server, "_date_cache", (0, ""))
        assert server._date_now() == expected
    finally:
        monkeypatch.undo()
        time.tzset()
