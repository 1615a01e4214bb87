"""``Flag``: ``asyncio.Event`` for the many, lean.

A connection of our listeners waits on a few events (input arrived, the transport may
be written again, an IDLE's wake-up).  ``asyncio.Event`` makes a ``collections.deque``
for its waiters when it is made, a block of 64 slots: 760 octets an event, 2.3 KiB of
the 11.7 KiB an IMAP session in IDLE held in objects (three events), for waiters that
are one task at most.  A ``Flag`` keeps its waiters' futures in a list made at the
first wait and dropped when it is set: about 60 octets while nothing waits.

Same behaviour as ``asyncio.Event`` for what the listeners use: ``set`` wakes every
waiter and the flag stays set until ``clear``; ``wait`` returns at once on a set flag;
a waiter cancelled (``wait_for``'s time-out) leaves no future behind."""

from __future__ import annotations

import asyncio

__all__ = ["Flag"]


class Flag:
    """See the module docstring.  Used from one event loop's thread, as asyncio.Event."""

    __slots__ = ("_value", "_waiters")

    def __init__(self) -> None:
        self._value = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if self._value:
            return
        self._value = True
        waiters, self._waiters = self._waiters, None
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [fut]
        else:
            self._waiters.append(fut)
        try:
            await fut
            return True
        finally:
            # Cancelled (set drops the list it woke): the future leaves the list.
            waiters = self._waiters
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    self._waiters = None

    def __repr__(self) -> str:
        waiting = len(self._waiters) if self._waiters else 0
        return f"<Flag {'set' if self._value else 'unset'} waiters={waiting}>"
