"""The POP3 server over real sockets on 127.0.0.1: literal transcripts, the standard
library's poplib (with STLS, trusting a trustme CA) and Debian's fetchmail.

Each test starts its own ``POP3Service`` in a thread with its own event loop, on a
free port, over a temporary Maildir root and a real SQLite index.  The authenticate
callback is a dict of passwords: it is the callback's contract (login name, password,
server address in; "name@domain" or None out) that the server relies on.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import poplib
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from support.server import maildir_messages, wait_for
from waypost.db import SQLiteDatabase
from waypost.mailstore import Delivery, Mailstore
from waypost.pop3 import POP3Service
from waypost.pop3 import Params
from waypost.pop3.lock import LOCK_NAME, MaildropLock

DOMAIN = "example.test"
PASSWORDS = {"alice@example.test": "alice-pw", "bob@example.test": "bob-pw"}


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return f"From: sender@example.net\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n{body}".encode()


class POP3Server:
    """A POP3Service on 127.0.0.1 in a thread of its own."""

    def __init__(self, root: Path, tls_context: ssl.SSLContext | None = None, **options: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = SQLiteDatabase(root / "index.sqlite")
        self.store = Mailstore(root / "mail", "mail.example.test", db=self.db)
        self.logins: list[tuple[str, str | None]] = []
        self.clients: list[Raw] = []
        options.setdefault("failure_delay", 0.01)
        self.service = POP3Service(self.store, self.authenticate, tls_context, hostname="mail.example.test",
                                   **options)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pop3-test", daemon=True)
        self.thread.start()
        self.server = self.call(self.loop.create_server(self.service.protocol_factory(), "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def authenticate(self, login: str, password: str, server_ip: str | None,
                           client_ip: str | None = None) -> str | None:
        self.logins.append((login, server_ip))
        address = login if "@" in login else f"{login.replace('%', '@')}" if "%" in login else f"{login}@{DOMAIN}"
        return address if PASSWORDS.get(address) == password else None

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        if self.loop.is_closed():
            return

        async def down() -> None:
            await self.service.shutdown(1.0)
            self.server.close()
            await self.server.wait_closed()
        self.call(down())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    # -- the store, as the tests see it --

    def deliver(self, *messages: bytes, account: str = "alice") -> None:
        results = self.store.deliver_batch([Delivery(DOMAIN, account, m) for m in messages])
        assert all(isinstance(r, str) for r in results)

    def files(self, account: str = "alice") -> list[Path]:
        return maildir_messages(self.store.account_path(DOMAIN, account))

    def indexed(self, account: str = "alice") -> list[Any]:
        box = self.store.get(DOMAIN, account, "INBOX")
        assert box is not None
        return self.store.messages(box)

    def raw(self) -> Raw:
        client = Raw(self.port)
        self.clients.append(client)
        return client

    def idle(self) -> bool:
        """No session is open (so no maildrop is locked)."""
        return not self.service.sessions


@pytest.fixture
def pop3(tmp_path):
    servers: list[POP3Server] = []

    def start(tls_context: ssl.SSLContext | None = None, root: Path | None = None, **options: Any) -> POP3Server:
        options.setdefault("plaintext_without_tls", tls_context is None)
        s = POP3Server(root or tmp_path / f"s{len(servers)}", tls_context, **options)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.example.test", "127.0.0.1", common_name="mail.example.test").configure_cert(ctx)
    return ctx


def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class Raw:
    """A literal transcript: exact lines out, replies parsed into (ok, code, text)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.greeting = self.reply()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() + b"\r\n" if isinstance(data, str) else data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server; unread: {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[bool, str | None, str]:
        line = self.line().decode("utf-8", "replace")
        assert line.startswith(("+OK", "-ERR", "+ ")), line
        if line.startswith("+ "):
            return True, "+", line[2:]
        ok = line.startswith("+OK")
        rest = line[3:] if ok else line[4:]
        rest = rest.lstrip(" ")
        code = None
        if rest.startswith("["):
            code, _, rest = rest[1:].partition("]")
            rest = rest.lstrip(" ")
        return ok, code, rest

    def expect(self, line: str, ok: bool = True, code: str | None = None) -> str:
        self.send(line)
        got_ok, got_code, text = self.reply()
        assert (got_ok, got_code) == (ok, code), f"{line!r} -> {got_ok} [{got_code}] {text}"
        return text

    def lines(self) -> list[bytes]:
        """The rest of a multi-line response, dot-unstuffed."""
        out = []
        while (line := self.line()) != b".":
            out.append(line[1:] if line.startswith(b".") else line)
        return out

    def closed(self, timeout: float = 5.0) -> bool:
        """The server closed the connection (without saying more)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def login(self, user: str = "alice", password: str = "alice-pw") -> str:
        self.expect(f"USER {user}")
        return self.expect(f"PASS {password}")


# -- poplib: a whole session --------------------------------------------------------------


def test_a_session_with_poplib(pop3):
    s = pop3()
    s.deliver(message("one", "line 1\r\n.starts with a dot\r\n..two dots\r\n"), message("two", "a\r\nb\r\nc\r\n"),
              message("three"))
    c = poplib.POP3("127.0.0.1", s.port, timeout=5)
    assert c.getwelcome().startswith(b"+OK")
    caps = c.capa()
    assert {"TOP", "UIDL", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} <= set(caps)
    assert caps["SASL"] == ["PLAIN"] and "STLS" not in caps  # no TLS context
    c.user("alice")
    c.pass_("alice-pw")
    sizes = [m.size for m in s.indexed()]
    assert c.stat() == (3, sum(sizes))
    resp, listing, _ = c.list()
    assert listing == [f"{i} {n}".encode() for i, n in enumerate(sizes, 1)]
    assert c.list(2) == f"+OK 2 {sizes[1]}".encode()
    _, lines, octets = c.retr(1)
    assert b"Subject: one" in lines and b".starts with a dot" in lines and b"..two dots" in lines
    raw = s.store.read(s.store.get(DOMAIN, "alice", "INBOX"), s.indexed()[0])  # type: ignore[arg-type]
    assert b"\r\n".join(lines) + b"\r\n" == raw
    _, top, _ = c.top(2, 2)
    assert top[-3:] == [b"", b"a", b"b"]
    assert c.top(2, 0)[1][-1] == b""
    _, uidls, _ = c.uidl()
    assert len(uidls) == 3 and all(len(u.split()[1]) == 16 for u in uidls)
    assert c.dele(2).startswith(b"+OK")
    assert c.stat() == (2, sizes[0] + sizes[2])
    with pytest.raises(poplib.error_proto, match="already deleted"):
        c.retr(2)
    assert c.quit().startswith(b"+OK")
    # UPDATE removed message 2: its file and its index row.
    assert len(s.files()) == 2 and [m.size for m in s.indexed()] == [sizes[0], sizes[2]]
    assert all(b"Subject: two" not in p.read_bytes() for p in s.files())
    # RETR set \Seen on message 1 (an IMAP client sees it as read).
    assert "\\Seen" in s.indexed()[0].flags and "\\Seen" not in s.indexed()[1].flags


def test_rset_unmarks_everything(pop3):
    s = pop3()
    s.deliver(message("one"), message("two"))
    c = poplib.POP3("127.0.0.1", s.port, timeout=5)
    c.user("alice")
    c.pass_("alice-pw")
    c.dele(1)
    c.dele(2)
    assert c.stat()[0] == 0
    assert c.rset().startswith(b"+OK")
    assert c.stat()[0] == 2
    c.dele(1)
    c.rset()
    c.quit()
    assert len(s.files()) == 2 and len(s.indexed()) == 2


def test_unique_ids_stay_the_same_across_sessions_and_restarts(pop3, tmp_path):
    s = pop3()
    s.deliver(message("one"), message("two"))

    def uidls(port: int) -> list[bytes]:
        c = poplib.POP3("127.0.0.1", port, timeout=5)
        c.user("alice@example.test")
        c.pass_("alice-pw")
        out = c.uidl()[1]
        c.quit()
        return out

    first = uidls(s.port)
    assert uidls(s.port) == first
    # A new process over the same data: new Mailstore, new database connection.
    s.stop()
    again = pop3(root=s.root)
    assert uidls(again.port) == first


def test_mail_delivered_during_a_session_appears_in_the_next(pop3):
    s = pop3()
    s.deliver(message("one"))
    c = poplib.POP3("127.0.0.1", s.port, timeout=5)
    c.user("alice")
    c.pass_("alice-pw")
    assert c.stat()[0] == 1
    s.deliver(message("two"))
    assert c.stat()[0] == 1  # RFC 1939: the maildrop is what it was at login
    with pytest.raises(poplib.error_proto):
        c.retr(2)
    c.quit()
    c = poplib.POP3("127.0.0.1", s.port, timeout=5)
    c.user("alice")
    c.pass_("alice-pw")
    assert c.stat()[0] == 2
    assert b"Subject: two" in c.retr(2)[1]
    c.quit()


def test_a_message_dropped_into_the_maildir_by_another_program(pop3):
    s = pop3()
    s.deliver(message("one"))
    new = s.store.account_path(DOMAIN, "alice") / "new"
    (new / "1700000000.external.host").write_bytes(b"Subject: dropped\n\n.dot\nbody\n")  # bare LFs
    c = poplib.POP3("127.0.0.1", s.port, timeout=5)
    c.user("alice")
    c.pass_("alice-pw")
    assert c.stat()[0] == 2
    assert c.retr(2)[1] == [b"Subject: dropped", b"", b".dot", b"body"]
    c.quit()


# -- locking (RFC 1939 §4, RFC 2449 §8.1.1 IN-USE) ----------------------------------------


def test_a_second_session_on_a_locked_maildrop_gets_in_use(pop3):
    s = pop3()
    s.deliver(message("one"))
    first = poplib.POP3("127.0.0.1", s.port, timeout=5)
    first.user("alice")
    first.pass_("alice-pw")
    second = poplib.POP3("127.0.0.1", s.port, timeout=5)
    second.user("alice")
    with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[IN-USE\]"):
        second.pass_("alice-pw")
    # Another account is not locked out.
    bob = poplib.POP3("127.0.0.1", s.port, timeout=5)
    bob.user("bob")
    bob.pass_("bob-pw")
    bob.quit()
    first.dele(1)
    first.quit()
    second.user("alice")  # the same connection may try again
    second.pass_("alice-pw")
    assert second.stat()[0] == 0
    second.quit()


def test_the_lock_works_across_processes(pop3):
    s = pop3()
    s.deliver(message("one"))
    s.store.get(DOMAIN, "alice", "INBOX")
    lock = s.store.account_path(DOMAIN, "alice") / LOCK_NAME
    c = s.raw()
    with subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as holder:  # another worker process, as far as the lock can tell
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        c.expect("USER alice")
        c.expect("PASS alice-pw", ok=False, code="IN-USE")
        holder.stdin.close()  # the process ends, and the kernel lets the lock go
    c.login()
    c.expect("QUIT")


def test_a_client_that_vanishes_deletes_nothing_and_unlocks(pop3):
    s = pop3()
    s.deliver(message("one"), message("two"))
    c = s.raw()
    c.login()
    c.expect("DELE 1")
    c.expect("DELE 2")
    c.close()  # no QUIT: no UPDATE
    wait_for(s.idle, what="the session to end")
    assert len(s.files()) == 2 and len(s.indexed()) == 2
    c = s.raw()
    assert c.login().startswith("Logged in, 2 messages")
    c.expect("QUIT")


def test_quit_sent_just_before_the_client_closes_still_updates(pop3):
    s = pop3()
    s.deliver(message("one"), message("two"))
    c = s.raw()
    c.login()
    c.send(b"DELE 1\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.reply()[0] and c.reply()[0]
    wait_for(s.idle, what="the session to end")
    assert len(s.indexed()) == 1


def test_idle_timeout_closes_without_a_word_and_deletes_nothing(pop3):
    s = pop3(idle_timeout=0.3)
    s.deliver(message("one"))
    c = s.raw()
    c.login()
    c.expect("DELE 1")
    assert c.closed()  # RFC 1939 §3: no response, no UPDATE
    wait_for(s.idle, what="the session to end")
    assert len(s.files()) == 1
    c = s.raw()
    c.login()
    c.expect("QUIT")


def test_shutdown_tells_the_client_and_deletes_nothing(pop3):
    s = pop3()
    s.deliver(message("one"))
    c = s.raw()
    c.login()
    c.expect("DELE 1")
    s.call(s.service.shutdown(1.0))
    assert c.reply() == (False, "SYS/TEMP", "Server shutting down")
    assert c.closed()
    assert s.idle() and len(s.files()) == 1
    assert lock_is_free(s)


def lock_is_free(s: POP3Server) -> bool:
    lock = MaildropLock.acquire(s.store.account_path(DOMAIN, "alice"))
    if lock is None:
        return False
    lock.release()
    return True


def test_trouble_on_the_server_is_sys_temp_and_removes_nothing_unmarked(pop3, caplog):
    s = pop3()
    s.deliver(message("one"), message("two"))
    c = s.raw()
    c.login()

    def broken(*args: Any) -> Any:
        raise OSError("disk on fire")

    read, expunge = s.store.read, s.store.expunge
    s.store.read = broken  # type: ignore[method-assign]
    c.expect("RETR 1", ok=False, code="SYS/TEMP")  # logged with its traceback, session goes on
    s.store.read = read  # type: ignore[method-assign]
    c.send("RETR 1")
    assert c.reply()[0] and b"Subject: one" in c.lines()
    c.expect("DELE 2")
    s.store.expunge = broken  # type: ignore[method-assign]
    c.expect("QUIT", ok=False, code="SYS/TEMP")  # RFC 1939 §6: -ERR, and the session ends
    assert c.closed()
    s.store.expunge = expunge  # type: ignore[method-assign]
    wait_for(s.idle, what="the session to end")
    assert len(s.indexed()) == 2 and lock_is_free(s)


# -- bad input: one -ERR each, logged, and the session goes on -----------------------------


def test_bad_commands_get_err_and_the_session_goes_on(pop3, caplog):
    caplog.set_level(logging.INFO, logger="waypost.pop3")
    s = pop3(max_bad_commands=50)
    s.deliver(message("one"), message("two"))
    c = s.raw()
    assert c.greeting[0]
    c.expect("XYZZY", ok=False)                       # unknown command
    c.expect("STAT", ok=False)                        # wrong state
    c.expect("PASS alice-pw", ok=False)               # PASS without USER
    c.expect("", ok=False)                            # empty line
    c.send(b"\xff\xfe\x80garbage\r\n")                # 8-bit garbage
    assert c.reply()[0] is False
    c.send(b"USER al\x00ice\r\n")                     # NUL
    assert c.reply()[0] is False
    c.expect("APOP alice 00112233445566778899aabbccddeeff", ok=False)
    c.login()
    c.expect("USER alice", ok=False)                  # wrong state after login
    c.expect("RETR", ok=False)                        # bad arguments
    c.expect("RETR one", ok=False)
    c.expect("TOP 1", ok=False)
    c.expect("LIST 1 2", ok=False)
    c.expect("RETR 0", ok=False)
    c.expect("RETR 3", ok=False)                      # out of range
    c.expect("LIST 99", ok=False)
    c.expect("DELE 1")
    c.expect("DELE 1", ok=False)                      # deleted already
    c.expect("RETR 1", ok=False)
    c.expect("TOP 1 0", ok=False)
    c.expect("UIDL 1", ok=False)
    c.send(b"RETR \xe2\x82\xac\r\n")
    assert c.reply()[0] is False
    assert c.expect("STAT").startswith("1 ")         # the session is still fine
    c.expect("QUIT")
    assert c.closed()
    assert len(s.indexed()) == 1
    bad = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "pop3-bad-command"]
    assert len(bad) >= 10
    assert not [r for r in caplog.records if r.exc_info]  # never a traceback


def test_line_length_limit_at_its_edge(pop3):
    s = pop3()
    c = s.raw()
    c.login()
    limit = s.service.params.max_line_length
    c.send(b"NOOP" + b" " * (limit - 6) + b"\r\n")    # exactly the limit, CRLF included
    assert c.reply()[0] is True
    c.send(b"NOOP" + b" " * (limit - 5) + b"\r\n")    # one octet more
    assert c.reply()[0] is False
    c.send(b"X" * 100_000 + b"\r\nNOOP\r\n")           # far too long, then a good line
    assert c.reply()[0] is False
    assert c.reply()[0] is True
    c.expect("QUIT")


def test_sasl_line_length_limit_at_its_edge(pop3):
    s = pop3(params=Params(max_line_length=1000, max_sasl_line_length=1002))
    exact = base64.b64encode(b"\0alice\0" + b"p" * 743)  # 1000 octets + CRLF: the limit
    assert len(exact) == 1000
    c = s.raw()
    c.expect("AUTH PLAIN", code="+")
    c.expect(exact.decode(), ok=False, code="AUTH")  # read whole: a wrong password
    c.expect("AUTH PLAIN", code="+")
    c.expect(exact.decode() + "A", ok=False)  # one octet more: refused unread
    c.login()
    c.expect("QUIT")


def test_too_many_bad_commands_close_the_connection(pop3):
    s = pop3(max_bad_commands=3)
    c = s.raw()
    c.expect("NOPE", ok=False)
    c.expect("NOPE", ok=False)
    c.expect("NOOP", ok=False)                      # wrong state counts as bad too
    assert c.reply()[0] is False                    # "too many bad commands"
    assert c.closed()


def test_pipelined_commands_are_answered_in_order(pop3):
    s = pop3()
    s.deliver(message("one"), message("two"))
    c = s.raw()
    c.send(b"USER alice\r\nPASS alice-pw\r\nSTAT\r\nLIST\r\nUIDL 2\r\nTOP 1 0\r\nDELE 1\r\nNOOP\r\nQUIT\r\n")
    assert c.reply()[0] and c.reply()[0]
    assert c.reply()[2].startswith("2 ")
    assert c.reply()[0] and len(c.lines()) == 2
    assert c.reply()[0]
    assert c.reply()[0] and c.lines()[-1] == b""
    for _ in range(3):
        assert c.reply()[0]
    assert c.closed()
    assert len(s.indexed()) == 1


# -- logging in -----------------------------------------------------------------------------


def test_plain_text_login_needs_tls_unless_allowed(pop3, ca):
    s = pop3(server_tls(ca))
    c = s.raw()
    c.send("CAPA")
    assert c.reply()[0]
    caps = c.lines()
    assert b"STLS" in caps and b"USER" not in caps and not any(x.startswith(b"SASL") for x in caps)
    c.expect("USER alice", ok=False, code="AUTH")
    c.expect("AUTH PLAIN " + base64.b64encode(b"\0alice\0alice-pw").decode(), ok=False, code="AUTH")
    c.expect("AUTH CRAM-MD5", ok=False)
    c.expect("QUIT")
    assert s.logins == []  # the password was never even checked


def test_stls_with_poplib(pop3, ca):
    s = pop3(server_tls(ca))
    s.deliver(message("secret"))
    c = poplib.POP3("127.0.0.1", s.port, timeout=5)
    assert "STLS" in c.capa()
    c.stls(client_tls(ca))
    caps = c.capa()
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
    with pytest.raises(poplib.error_proto):
        c._shortcmd("STLS")  # already active
    c.user("alice")
    c.pass_("alice-pw")
    assert b"Subject: secret" in c.retr(1)[1]
    c.quit()
    assert s.logins == [("alice", "127.0.0.1")]


def test_stls_drops_clear_text_sent_behind_it(pop3, ca):
    s = pop3(server_tls(ca))
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    sock.sendall(b"STLS\r\nUSER injected\r\n")  # RFC 2595 §8: must not be read after TLS
    assert f.readline().startswith(b"+OK")
    tls = client_tls(ca).wrap_socket(sock, server_hostname="127.0.0.1")
    tf = tls.makefile("rwb")
    tf.write(b"PASS alice-pw\r\n")
    tf.flush()
    assert tf.readline().startswith(b"-ERR")  # no USER was given over TLS
    tf.write(b"QUIT\r\n")
    tf.flush()
    assert tf.readline().startswith(b"+OK")
    tls.close()


def test_a_failed_tls_handshake_ends_the_session(pop3, ca):
    s = pop3(server_tls(ca))
    c = s.raw()
    c.expect("STLS")
    c.send(b"this is not a TLS client hello\r\n" * 10)
    assert c.closed()
    wait_for(s.idle, what="the session to end")


def test_stls_unavailable_without_a_certificate(pop3):
    s = pop3()
    c = s.raw()
    c.expect("STLS", ok=False)
    c.login()
    c.expect("STLS", ok=False)  # wrong state
    c.expect("QUIT")


def test_auth_plain(pop3):
    s = pop3()
    s.deliver(message("one"))
    token = base64.b64encode(b"\0alice@example.test\0alice-pw").decode()
    c = s.raw()
    c.send("AUTH")
    assert c.reply()[0] and c.lines() == [b"PLAIN"]
    c.expect(f"AUTH PLAIN {token}")                                # initial response
    c.expect("QUIT")
    c = s.raw()
    c.expect("AUTH PLAIN", code="+")                               # the continuation form
    c.expect(token)
    c.expect("STAT")
    c.expect("QUIT")
    c = s.raw()
    c.expect("AUTH PLAIN", code="+")
    c.expect("*", ok=False)                                        # cancelled
    c.expect("AUTH PLAIN", code="+")
    c.expect("not base64!", ok=False)
    c.expect("AUTH PLAIN =", ok=False)                             # empty: malformed PLAIN
    authz = base64.b64encode(b"bob@example.test\0alice\0alice-pw").decode()
    c.expect(f"AUTH PLAIN {authz}", ok=False, code="AUTH")         # no logging in as another user
    same = base64.b64encode(b"alice@example.test\0alice\0alice-pw").decode()
    c.expect(f"AUTH PLAIN {same}")
    c.expect("QUIT")


def test_login_names_reach_the_callback_untouched(pop3):
    s = pop3()
    for name in ("alice", "alice@example.test", "alice%example.test"):
        c = s.raw()
        c.login(name)
        c.expect("QUIT")
    assert [n for n, _ in s.logins] == ["alice", "alice@example.test", "alice%example.test"]
    assert {ip for _, ip in s.logins} == {"127.0.0.1"}


def test_failed_logins_are_delayed_more_each_time_then_closed(pop3, caplog):
    caplog.set_level(logging.INFO, logger="waypost.pop3")
    s = pop3(failure_delay=0.05, max_failure_delay=0.1, max_failures=5)
    c = s.raw()
    took = []
    for _ in range(5):
        c.expect("USER alice")
        t = time.monotonic()
        c.expect("PASS wrong", ok=False, code="AUTH")
        took.append(time.monotonic() - t)
    assert c.closed()  # after the fifth
    assert took[0] >= 0.05 and all(t >= 0.1 for t in took[1:])
    assert took[4] < 0.6  # capped at 0.1 s; doubling on would make it 0.8 s
    # The authenticate callback logs wrong passwords (event=auth-failed, the server's
    # throttle); the listener logs only the failures it decides itself.
    failed = [r for r in caplog.records if getattr(r, "fields", {}).get("event") in ("auth-failed", "pop3-login-failed")]
    assert failed == []
    assert all("wrong" not in r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records)


def test_right_credentials_end_a_run_of_failures(pop3):
    # "Failures in a row": right credentials end the run even when the maildrop is
    # locked (IN-USE), so the next failure counts from one again: the connection is not
    # closed at max_failures.  After a good login (TRANSACTION) no login can fail any
    # more, so IN-USE is where the end of the run shows.
    s = pop3(max_failures=2)
    holder = s.raw()
    holder.login()
    c = s.raw()
    c.expect("USER alice")
    c.expect("PASS wrong", ok=False, code="AUTH")
    c.expect("USER alice")
    c.expect("PASS alice-pw", ok=False, code="IN-USE")
    c.expect("USER alice")
    c.expect("PASS wrong", ok=False, code="AUTH")  # one failure in a row, not two: no close
    holder.expect("QUIT")
    c.expect("USER alice")
    c.expect("PASS alice-pw")
    c.expect("QUIT")


# -- fetchmail -------------------------------------------------------------------------------


def run_fetchmail(tmp_path: Path, rc_text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    fetchmail = shutil.which("fetchmail")
    assert fetchmail, "fetchmail is installed by 'make test' (Debian package fetchmail)"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(rc_text)
    rc.chmod(0o600)
    return subprocess.run([fetchmail, "-f", str(rc), "-v", "--nosyslog", "--idfile", str(tmp_path / "ids"),
                           "--pidfile", str(tmp_path / "pid"), *extra],
                          capture_output=True, text=True, timeout=30,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_fetchmail_over_stls_fetches_and_deletes(pop3, ca, tmp_path):
    s = pop3(server_tls(ca))
    s.deliver(message("first", "one\r\n.dot\r\n"), message("second"))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    out_file = tmp_path / "out.bsmtp"
    out = run_fetchmail(tmp_path, (
        f'poll 127.0.0.1 service {s.port} protocol POP3 auth password\n'
        f'  user "alice@example.test" there with password "alice-pw" is "alice" here\n'
        f'  sslproto "TLS1.2+" sslcertck sslcertfile "{ca_file}" sslcommonname "mail.example.test"\n'
    ), "--bsmtp", str(out_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "STLS" in out.stderr or "STLS" in out.stdout
    got = out_file.read_bytes()
    assert b"Subject: first" in got and b"Subject: second" in got
    assert s.files() == [] and s.indexed() == []  # fetchmail deleted what it fetched


def test_fetchmail_keep_with_uidl_fetches_only_new_mail(pop3, tmp_path):
    s = pop3()  # plain text allowed: no TLS context at all
    s.deliver(message("first"))
    out_file = tmp_path / "out.bsmtp"
    rc = (f'poll 127.0.0.1 service {s.port} protocol POP3 uidl\n'
          f'  user "alice" there with password "alice-pw" is "alice" here keep sslproto ""\n')
    out = run_fetchmail(tmp_path, rc, "--bsmtp", str(out_file))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out_file.read_bytes().count(b"Subject: first") == 1
    s.deliver(message("second"))
    out = run_fetchmail(tmp_path, rc, "--bsmtp", str(out_file))
    assert out.returncode == 0, out.stdout + out.stderr
    got = out_file.read_bytes()
    assert got.count(b"Subject: first") == 1 and got.count(b"Subject: second") == 1
    assert len(s.files()) == 2  # kept


# -- through ``waypost serve``: the Router resolves the login, SMTP delivers -------------


def test_pop3_through_waypost_serve(tmp_path):
    import smtplib

    from support.server import WaypostInstance

    with WaypostInstance(tmp_path / "data", pop3={"plaintext_without_tls": True}) as inst:
        inst.ok("domain", "add", "other.test")
        inst.ok("account", "add", "info@other.test", "--password", "info-password")
        inst.start()
        with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
            s.sendmail("x@example.test", ["info@other.test"], b"Subject: via serve\r\n\r\n.dot line\r\n")
        wait_for(lambda: inst.messages("info@other.test"))
        p = poplib.POP3("127.0.0.1", inst.pop3_port, timeout=10)
        p.user("info%other.test")  # seed 001: name%domain
        p.pass_("info-password")
        count, _size = p.stat()
        assert count == 1
        _resp, lines, _octets = p.retr(1)
        assert b"Subject: via serve" in lines and b".dot line" in lines
        p.dele(1)
        p.quit()
        assert wait_for(lambda: not inst.messages("info@other.test"), what="the message to go on QUIT")
        inst.expect_log(r"pop3.*login|event=pop3")
