"""Bus.heard_serial: which dispatch of a topic this process heard last. IDLE sessions
woken by one dispatch share one look at their mailbox, keyed by this serial, so a value
must never be given twice, also after a topic loses its last subscriber and gains one
again (a stale shared look would be taken for a fresh one)."""

from __future__ import annotations

import asyncio

from waypost.bus import Bus


def test_serials_grow_and_are_never_given_twice(tmp_path):
    async def go() -> None:
        bus = Bus(tmp_path)
        await bus.start()
        heard: list[int | None] = []
        woke = asyncio.Event()

        def on_topic() -> None:
            heard.append(bus.heard_serial("mailbox 7"))
            woke.set()

        async def publish_and_wait() -> None:
            woke.clear()
            bus.publish("mailbox 7")
            await asyncio.wait_for(woke.wait(), 10)

        try:
            assert bus.heard_serial("mailbox 7") is None
            bus.subscribe("mailbox 7", on_topic)
            await publish_and_wait()
            await publish_and_wait()
            bus.unsubscribe("mailbox 7", on_topic)
            assert bus.heard_serial("mailbox 7") is None  # forgotten with its last subscriber
            bus.publish("mailbox 8")  # nobody listens: no serial is spent on it
            bus.subscribe("mailbox 7", on_topic)
            await publish_and_wait()
            assert len(heard) == 3 and None not in heard
            assert heard == sorted(set(heard)), heard  # strictly growing, none repeated
            assert bus.heard_serial("mailbox 8") is None
        finally:
            bus.close()
    asyncio.run(go())
