"""How often an IMAP session looks its account up again (RFC 3501 §7.1.5: a login to an
account that was removed or made again is void).  LOGIN finds the account; the next
command asks again only when a settings write (any process) replaced the change token
since LOGIN read it.  A session's first command used to look the account up once more
in a thread: a quarter of a millisecond on every "log in, SELECT" of a phone.

A real ``IMAPService`` on 127.0.0.1 over a SQLite index, driven by a socket client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.imap import AsyncClient, listening, one_account
from waypost.imap.server import IMAPService, Limits

ADDRESS = "u@look.test"


async def _scenario(tmp: Path) -> None:
    index = one_account(tmp, ADDRESS)
    db, directory = index.db, index.directory
    looked: list[tuple[str, str]] = []

    def lookup(name: str, domain: str):  # the server's own look-up, counted
        looked.append((name, domain))
        return directory.account_named(name, domain)

    async def authenticate(login: str, password: str, ip: str | None, client_ip: str | None = None) -> str | None:
        return ADDRESS if password == "pw" else None

    service = IMAPService(index.store, authenticate, None, hostname="test", lookup=lookup,
                          limits=Limits(plaintext_without_tls=True))
    try:
        async with listening(service) as port:
            c = AsyncClient(*await asyncio.open_connection("127.0.0.1", port))
            await c.reader.readline()  # greeting
            assert (await c.cmd(f"a LOGIN {ADDRESS} pw"))[-1].startswith(b"a OK")
            at_login = len(looked)  # LOGIN's own
            assert at_login == 1
            assert (await c.cmd("b NOOP"))[-1].startswith(b"b OK")
            assert (await c.cmd("c SELECT INBOX"))[-1].startswith(b"c OK")
            assert len(looked) == at_login, looked  # nothing changed since LOGIN: no look-up again

            directory.add_account("other@look.test")  # any settings write replaces the token
            assert (await c.cmd("d NOOP"))[-1].startswith(b"d OK")
            assert len(looked) == at_login + 1  # asked again, found the same account
            assert (await c.cmd("e NOOP"))[-1].startswith(b"e OK")
            assert len(looked) == at_login + 1

            # A second session: the account removed between its LOGIN and its first
            # command: that command ends the session (the login is void).
            c2 = AsyncClient(*await asyncio.open_connection("127.0.0.1", port))
            await c2.reader.readline()
            assert (await c2.cmd(f"a LOGIN {ADDRESS} pw"))[-1].startswith(b"a OK")
            directory.remove(ADDRESS, "account")
            c2.writer.write(b"b NOOP\r\n")
            first = await asyncio.wait_for(c2.reader.readline(), 10)
            assert first.startswith(b"* BYE"), first
            assert await asyncio.wait_for(c2.reader.read(), 10) == b""  # closed
            c.writer.close()
            c2.writer.close()
    finally:
        db.close()


def test_the_first_command_after_login_does_not_look_the_account_up_again(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
