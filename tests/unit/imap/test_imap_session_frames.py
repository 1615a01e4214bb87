"""A session waiting for its next command, or in IDLE, raises nothing in its command
loop or its IDLE: an exception caught in a coroutine turns the coroutine's frame into
an object kept as long as the session (270-350 octets for each of the two, for each of
10,000 phones in IDLE).  (Such a frame object is not tracked by the collector while its
coroutine lives, so the test watches the exceptions themselves, with a trace function.)
And the wait does what the parser's ``NeedMore`` did: half a line waits for the rest;
a line longer than the limit is refused at once, without its end.

A real ``IMAPService`` on 127.0.0.1 over a SQLite index, driven by socket clients."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from support.imap import AsyncClient, listening, one_account
from waypost.imap.proto import Params
from waypost.imap.server import Connection, IMAPService, Limits

ADDRESS = "u@frames.test"


class Raised:
    """A trace function counting the exceptions that reach the frames of ``functions``."""

    def __init__(self, *functions: Any) -> None:
        self.codes = {f.__code__ for f in functions}
        self.seen: list[str] = []

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code in self.codes:
            return self.local
        return None

    def local(self, frame: Any, event: str, arg: Any) -> Any:
        # (StopIteration: an awaited future's result, as the tracer sees it; made
        # without an exception object when nothing traces)
        if event == "exception" and arg[0] is not StopIteration:
            self.seen.append(f"{frame.f_code.co_name}: {arg[0].__name__}")
        return self.local


async def _scenario(tmp: Path) -> None:
    index = one_account(tmp, ADDRESS)

    async def authenticate(login: str, password: str, ip: str | None, client_ip: str | None = None) -> str | None:
        return ADDRESS

    service = IMAPService(index.store, authenticate, None, hostname="test", lookup=index.directory.account_named,
                          limits=Limits(plaintext_without_tls=True), params=Params(max_line_length=200))
    clients: list[AsyncClient] = []
    raised = Raised(Connection._loop, Connection.idle)
    before = sys.gettrace()  # (a coverage tool's or a debugger's, put back after)
    sys.settrace(raised)
    try:
        async with listening(service) as port:
            for _ in range(5):
                c = await AsyncClient.login(port, ADDRESS, "pw")
                assert (await c.cmd("s SELECT INBOX"))[-1].startswith(b"s OK")
                c.writer.write(b"i IDLE\r\n")
                assert (await asyncio.wait_for(c.reader.readline(), 10)).startswith(b"+ ")
                clients.append(c)
            waiting = await AsyncClient.login(port, ADDRESS, "pw")  # between two commands
            await asyncio.sleep(0.05)
            sys.settrace(before)
            assert raised.seen == []

            # Half a command, then the rest: one command.
            waiting.writer.write(b"n NO")
            await asyncio.sleep(0.05)
            waiting.writer.write(b"OP\r\n")
            assert (await asyncio.wait_for(waiting.reader.readline(), 10)).startswith(b"n OK")
            # Half of DONE in IDLE, then the rest: IDLE ends.
            c = clients[0]
            c.writer.write(b"DO")
            await asyncio.sleep(0.05)
            c.writer.write(b"NE\r\n")
            assert (await asyncio.wait_for(c.reader.readline(), 10)).startswith(b"i OK")
            # A line longer than the limit, with no end yet, is refused at once.
            waiting.writer.write(b"x " + b"A" * 300)
            reply = await asyncio.wait_for(waiting.reader.readline(), 10)
            assert b"BAD" in reply, reply
            for c in clients + [waiting]:
                c.writer.close()
    finally:
        sys.settrace(before)
        index.db.close()


def test_waiting_sessions_raise_nothing_and_still_wait_for_whole_lines(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
