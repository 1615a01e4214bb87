"""Many IDLE sessions on one server with two workers (issue 20 point 4, bounded here; the
10,000-session figures are bench/imap_idle's): a delivery to a mailbox shared with many
accounts wakes every session watching it, in both workers, through the change channel
(not the IDLE re-check); a delivery to one INBOX wakes only its own watchers while the
others stay silent; every session then ends its IDLE with DONE and gets its tagged OK."""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import time

import pytest

from support.server import WaypostInstance

ACCOUNTS = 20
SESSIONS_PER_ACCOUNT = 8  # 160 sessions in all
TIMEOUT = 60.0  # bound of each wait below (a loaded machine), not a timed assertion


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("idle-many") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    for i in range(ACCOUNTS):
        inst.ok("account", "add", f"u{i}@example.test", "--password", f"pw-{i}")
    inst.ok("account", "add", "news@example.test", "--password", "pw-news")
    inst.start()
    send(inst, "news@example.test", "first")  # the shared INBOX exists with one message
    inst.ok("acl", "set", "news@example.test/INBOX", "anyone", "lr")
    yield inst
    inst.stop()


def send(inst: WaypostInstance, to: str, subject: str) -> None:
    msg = f"From: s@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as s:
        s.sendmail("s@example.test", [to], msg.encode())


class Idler:
    """One IMAP session: LOGIN, SELECT, IDLE; then reads what the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.exists = 0

    @classmethod
    async def start(cls, port: int, user: str, password: str, mailbox: str) -> "Idler":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self = cls(reader, writer)
        await self._line()  # greeting
        await self.cmd(f'a1 LOGIN "{user}" "{password}"')
        for line in await self.cmd(f'a2 SELECT "{mailbox}"'):
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                self.exists = int(m.group(1))
        writer.write(b"a3 IDLE\r\n")
        await writer.drain()
        line = await self._line()
        assert line.startswith(b"+ "), line
        return self

    async def _line(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        if not line:
            raise EOFError("connection closed")
        return line.rstrip(b"\r\n")

    async def cmd(self, text: str) -> list[bytes]:
        tag = text.split(" ", 1)[0].encode()
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        out = []
        while True:
            line = await self._line()
            out.append(line)
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), line
                return out

    async def woken(self) -> int:
        """The new EXISTS count, when the server sends it."""
        while True:
            m = re.match(rb"\* (\d+) EXISTS", await self._line())
            if m:
                return int(m.group(1))

    async def done(self) -> list[bytes]:
        """DONE, and every line up to IDLE's tagged OK (what the server sent meanwhile)."""
        self.writer.write(b"DONE\r\n")
        await self.writer.drain()
        out = []
        while True:
            line = await self._line()
            if line.startswith(b"a3 "):
                assert line.startswith(b"a3 OK"), line
                return out
            out.append(line)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


async def _open(inst: WaypostInstance, mailbox_of) -> list[tuple[int, Idler]]:
    async def one(i: int, k: int) -> tuple[int, Idler]:
        return i, await Idler.start(inst.imap_port, f"u{i}@example.test", f"pw-{i}", mailbox_of(i))
    # In groups, so that the logins do not all wait on one another at once.
    out: list[tuple[int, Idler]] = []
    pairs = [(i, k) for i in range(ACCOUNTS) for k in range(SESSIONS_PER_ACCOUNT)]
    for g in range(0, len(pairs), 40):
        out += await asyncio.gather(*(one(i, k) for i, k in pairs[g:g + 40]))
    return out


def _workers_serving(inst: WaypostInstance) -> int:
    """How many worker processes hold established IMAP connections now (from /proc, as
    support/workers.py reads it)."""
    port = f"{inst.imap_port:04X}"
    inodes = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + port) and fields[3] == "01":  # established, server end
            inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    group = inst.proc.pid
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != group:
                continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    pids.add(int(entry))
                    break
        except OSError:
            continue
    return len(pids)


def test_a_delivery_to_a_shared_mailbox_wakes_every_watcher_in_both_workers(many):
    async def go() -> None:
        idlers = await _open(many, lambda i: "~news/INBOX")
        try:
            assert _workers_serving(many) == 2  # the sessions are spread over both workers
            before = {idler.exists for _, idler in idlers}
            assert len(before) == 1
            started = time.monotonic()
            await asyncio.to_thread(send, many, "news@example.test", "to all watchers")
            counts = await asyncio.gather(*(idler.woken() for _, idler in idlers))
            waited = time.monotonic() - started
            assert counts == [before.pop() + 1] * len(idlers)
            # The change channel woke them, not IDLE's periodic re-check (30 s).
            assert waited < 4.5, waited
            for _, idler in idlers:
                await idler.done()
        finally:
            await asyncio.gather(*(idler.close() for _, idler in idlers))
    asyncio.run(go())


def test_a_delivery_to_one_inbox_wakes_only_its_watchers(many):
    async def go() -> None:
        idlers = await _open(many, lambda i: "INBOX")
        try:
            await asyncio.to_thread(send, many, "u7@example.test", "only for u7")
            mine = [idler for i, idler in idlers if i == 7]
            counts = await asyncio.gather(*(idler.woken() for idler in mine))
            assert counts == [mine[0].exists + 1] * SESSIONS_PER_ACCOUNT
            # A second delivery to u7 is a marker: once its watchers have it, the others
            # (asked to stop) must have been sent nothing at all.
            await asyncio.to_thread(send, many, "u7@example.test", "marker")
            await asyncio.gather(*(idler.woken() for idler in mine))
            for i, idler in idlers:
                said = await idler.done()
                if i != 7:
                    assert said == [], (i, said)
        finally:
            await asyncio.gather(*(idler.close() for _, idler in idlers))
    asyncio.run(go())


def test_deliveries_in_a_row_reach_every_watcher_through_the_change_channel(many):
    """The sessions of a worker woken by one notification share one look at the mailbox
    (Mailstore.woken_state): a look shared from an earlier notification must never hide
    a later delivery until the re-check. Five messages in a row, each its own
    notification: every watcher reaches the fifth through the change channel."""
    async def go() -> None:
        idlers = await _open(many, lambda i: "~news/INBOX")
        try:
            before = {idler.exists for _, idler in idlers}
            assert len(before) == 1
            target = before.pop() + 5

            def send_five() -> None:
                with smtplib.SMTP("127.0.0.1", many.smtp_port, timeout=30) as s:
                    for n in range(5):
                        s.sendmail("s@example.test", ["news@example.test"],
                                   f"From: s@example.test\r\nSubject: row {n}\r\n\r\nhello\r\n".encode())

            async def reach(idler: Idler) -> float:
                while await idler.woken() < target:
                    pass
                return time.monotonic()

            started = time.monotonic()
            await asyncio.to_thread(send_five)
            reached = await asyncio.gather(*(reach(idler) for _, idler in idlers))
            # Through the change channel, not IDLE's periodic re-check (30 s).
            assert max(reached) - started < 4.5, max(reached) - started
            for _, idler in idlers:
                await idler.done()
        finally:
            await asyncio.gather(*(idler.close() for _, idler in idlers))
    asyncio.run(go())
