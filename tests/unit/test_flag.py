"""``waypost.flag.Flag``: the listeners' events behave as ``asyncio.Event`` does, and a
flag nothing waits on holds no list of waiters."""

from __future__ import annotations

import asyncio
import sys

import pytest

from waypost.flag import Flag


async def test_set_wakes_every_waiter_and_stays_set() -> None:
    flag = Flag()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        assert await flag.wait() is True
        woken.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0)
    assert woken == [] and not flag.is_set()
    flag.set()
    await asyncio.gather(*tasks)
    assert sorted(woken) == [0, 1, 2]
    assert flag.is_set()
    assert await asyncio.wait_for(flag.wait(), 1) is True  # a set flag does not block
    assert flag._waiters is None


async def test_clear_makes_the_next_wait_block() -> None:
    flag = Flag()
    flag.set()
    flag.clear()
    assert not flag.is_set()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(flag.wait(), 0.05)


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    flag = Flag()
    for _ in range(100):  # wait_for's time-out cancels the wait each time
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(flag.wait(), 0.001)
    assert flag._waiters is None
    other = asyncio.create_task(flag.wait())
    cancelled = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert flag._waiters is not None and len(flag._waiters) == 1
    flag.set()
    assert await other is True
    assert flag._waiters is None


async def test_set_then_clear_before_the_waiter_runs_still_wakes_it() -> None:
    """As asyncio.Event: a waiter woken by set returns even if the flag is cleared
    before it gets to run (the IMAP IDLE loop clears its wake-up after each wake)."""
    flag = Flag()
    task = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    flag.set()
    flag.clear()
    assert await asyncio.wait_for(task, 1) is True


def test_smaller_than_asyncio_event() -> None:
    flag, ev = Flag(), asyncio.Event()
    size = sys.getsizeof(flag)
    assert size < sys.getsizeof(ev) + sys.getsizeof(ev.__dict__) + sys.getsizeof(ev._waiters)
    assert not hasattr(flag, "__dict__")
