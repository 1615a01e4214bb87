"""STATUS SIZE of a Maildir whose files another program dropped in (names without
``S=``) measures every file and writes the sizes to the index: 0.35 s for 10,000
files on SQLite, 2 s on PostgreSQL.  That work runs in a thread: the other sessions of
the worker are answered meanwhile, and the SIZE is the files' size as sent (CRLF).

A real ``IMAPService`` on 127.0.0.1 over a SQLite index, driven by socket clients; the
measuring is held at a gate so that the test sees it in progress, whatever the speed
of the machine."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from support.imap import AsyncClient, listening, one_account
from waypost.imap.server import IMAPService, Limits

ADDRESS = "u@size.test"


async def _scenario(tmp: Path) -> None:
    index = one_account(tmp, ADDRESS)
    db, directory, store = index.db, index.directory, index.store
    cur = store.mailbox_path("size.test", "u") / "cur"
    total = 0
    for i in range(50):  # dropped in by another program: LF line ends, no S= in the name
        body = b"From: a@b.test\nSubject: %d\n\n%s\n" % (i, b"x" * i)
        (cur / f"17000000{i:02d}.M{i}P1.other:2,").write_bytes(body)
        total += len(body) + body.count(b"\n")  # RFC822.SIZE counts CRLF

    gate, inside = threading.Event(), threading.Event()
    measure = store.sized

    def held(box, msgs):  # the server's own measuring, held at the gate
        inside.set()
        assert gate.wait(10)
        return measure(box, msgs)

    store.sized = held  # type: ignore[method-assign]

    async def authenticate(login: str, password: str, ip: str | None, client_ip: str | None = None) -> str | None:
        return ADDRESS

    service = IMAPService(store, authenticate, None, hostname="test", lookup=directory.account_named,
                          limits=Limits(plaintext_without_tls=True))
    try:
        async with listening(service) as port:
            a, b = await AsyncClient.login(port, ADDRESS, "pw"), await AsyncClient.login(port, ADDRESS, "pw")
            status = asyncio.create_task(a.cmd("s STATUS INBOX (MESSAGES SIZE)"))
            assert await asyncio.to_thread(inside.wait, 10)
            # Measuring: the other session is served meanwhile.
            assert (await b.cmd("n NOOP"))[-1].startswith(b"n OK")
            assert (await b.cmd("l LIST \"\" INBOX"))[-1].startswith(b"l OK")
            assert not status.done()
            gate.set()
            reply = await status
            assert reply[-1].startswith(b"s OK"), reply
            assert reply[0] == f"* STATUS INBOX (MESSAGES 50 SIZE {total})\r\n".encode(), reply
            # Known now: the next STATUS takes the count the index keeps, without measuring.
            inside.clear()
            reply = await b.cmd("t STATUS INBOX (SIZE)")
            assert reply[0] == f"* STATUS INBOX (SIZE {total})\r\n".encode() and not inside.is_set()
            a.writer.close()
            b.writer.close()
    finally:
        gate.set()
        db.close()


def test_status_size_measures_dropped_in_files_off_the_event_loop(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
