"""An account removed and made again under the same name inherits nothing of the old
owner: not its mail (on two workers that had it cached), not its folders, subscriptions,
Sieve scripts, nor the rights other accounts had granted it (issue 13: one customer must
never act as another). The old owner's files stay on disk, moved aside.

Nor after a removal cut short by kill -9: the removal is killed for real where it waits
for the account's Maildir lock, and the states an older version left when killed after
its first steps (the account gone, its mailbox rows and Maildir still there) are made
through the storage layer as that crash left them; then ``account add`` and IMAP on two
workers.  Nor the old owner's \\Seen marks on a shared mailbox, its vacation memory or
the login throttle's trust in its clients."""

from __future__ import annotations

import fcntl
import http.client as http_client
import json
import os
import poplib
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support.imap import Raw
from support.logins import imap_login
from support.server import WaypostInstance, free_port, wait_for
from support.tls import client_context
from support.workers import on_two_workers


@pytest.fixture
def srv(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "failure_delay": 0.05},
                           server={"workers": 2})
    inst.ok("account", "add", "z@example.test", "--password", "old-pw")
    inst.ok("account", "add", "boss@example.test", "--password", "boss-pw")
    inst.start()
    yield inst
    inst.stop()


def login(srv: WaypostInstance, pw: str, who: str = "z") -> Raw:
    r = Raw(srv.imap_port)
    assert r.cmd(f"L LOGIN {who}@example.test {pw}")[-1].startswith(b"L OK")
    return r


def ok(reply: list[bytes]) -> list[bytes]:
    assert b" OK" in reply[-1], reply
    return reply


def append(r: Raw, box: str, text: str) -> None:
    msg = text.encode()
    r.send(f"AP APPEND {box} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    while not (line := r.line()).startswith(b"AP "):
        pass
    assert line.startswith(b"AP OK"), line


def exists(r: Raw, box: str) -> int:
    reply = ok(r.cmd(f"S SELECT {box}"))
    return next(int(m.group(1)) for x in reply if (m := re.match(rb"\* (\d+) EXISTS", x)))


def names(reply: list[bytes]) -> set[str]:
    return {m.group(1).decode() for x in reply if (m := re.match(rb'\* LSUB \(.*?\) "[^"]*" "?([^"\r\n]*)"?', x))
            or (m := re.match(rb'\* LIST \(.*?\) "[^"]*" "?([^"\r\n]*)"?', x))}


def test_a_name_made_again_starts_empty(srv: WaypostInstance) -> None:
    assert srv.proc is not None
    # The old owner, on both workers: mail in INBOX and in a folder of its own, a
    # subscription, a Sieve script, and read access to the boss's mailbox.
    a, b = on_two_workers(lambda: login(srv, "old-pw"), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)
    boss = login(srv, "boss-pw", "boss")
    ok(boss.cmd("C CREATE Board"))
    append(boss, "Board", "Subject: minutes\r\n\r\nconfidential\r\n")
    srv.ok("acl", "set", "boss@example.test/Board", "z@example.test", "lr")
    append(a, "INBOX", "Subject: old-1\r\n\r\nold owner's\r\n")
    ok(a.cmd("C CREATE Private"))
    ok(a.cmd("U SUBSCRIBE Private"))
    append(a, "Private", "Subject: old-2\r\n\r\nold owner's\r\n")
    assert exists(a, "INBOX") == 1 and exists(b, "INBOX") == 1 and exists(b, "Private") == 1
    sieve = srv.data / "old.sieve"
    sieve.write_text('require "fileinto"; fileinto "Private";\n')
    srv.ok("sieve", "put", "z@example.test", "main", str(sieve), "--activate")

    srv.ok("account", "remove", "z@example.test")
    srv.ok("account", "add", "z@example.test", "--password", "new-pw")

    # The new owner, on both workers (which had the old owner's mailboxes cached).
    c, d = on_two_workers(lambda: login(srv, "new-pw"), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)
    for r in (c, d):
        assert exists(r, "INBOX") == 0
        listed = names(ok(r.cmd('L LIST "" "*"')))
        assert "Private" not in listed and not any("Board" in n for n in listed), listed
        assert "Private" not in names(ok(r.cmd('S LSUB "" "*"')))
        assert b"NO" in r.cmd("X SELECT Private")[-1]
    assert "main" not in srv.ok("sieve", "list", "z@example.test")
    assert "z@example.test" not in srv.ok("acl", "get", "boss@example.test/Board")
    # Mail to the new owner is filed by no inherited script.
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
        s.sendmail("x@example.net", ["z@example.test"], b"Subject: new-1\r\n\r\nfor the new owner\r\n")
    wait_for(lambda: exists(c, "INBOX") == 1, timeout=20, what="the new owner's first message in INBOX")
    # The old owner's sessions, still open on both workers, reach nothing of the new
    # owner's: their next command ends them.
    for r in (a, b):
        r.send(b"S SELECT INBOX\r\n")
        assert r.line().startswith(b"* BYE "), "the old owner's session went on"
        with pytest.raises((EOFError, ConnectionError)):
            r.line()
    srv.expect_log(r"event=imap-account-gone .*account=z@example.test", count=2)
    # The old owner's files are kept, moved aside where no account can reach them.
    [kept] = [p for p in srv.mailbox("z@example.test").parent.iterdir() if p.name.startswith(".removed.z.")]
    assert any("old owner's" in p.read_text() for p in kept.rglob("*") if p.is_file() and "/cur/" in str(p)
               or p.is_file() and "/new/" in str(p))
    for r in (a, b, c, d, boss):
        r.close()


# -- removals cut short by kill -9 ------------------------------------------------------------

def give_the_old_owner_mail(srv: WaypostInstance) -> None:
    """The old owner: mail in INBOX and in a folder of its own, a subscription, a Sieve
    script, and read access to the boss's mailbox."""
    a = login(srv, "old-pw")
    boss = login(srv, "boss-pw", "boss")
    ok(boss.cmd("C CREATE Board"))
    append(boss, "Board", "Subject: minutes\r\n\r\nconfidential\r\n")
    srv.ok("acl", "set", "boss@example.test/Board", "z@example.test", "lrs")
    append(a, "INBOX", "Subject: old-1\r\n\r\nold owner's\r\n")
    ok(a.cmd("C CREATE Private"))
    ok(a.cmd("U SUBSCRIBE Private"))
    append(a, "Private", "Subject: old-2\r\n\r\nold owner's\r\n")
    assert exists(a, "INBOX") == 1 and exists(a, "Private") == 1
    sieve = srv.data / "old.sieve"
    sieve.write_text('require "fileinto"; fileinto "Private";\n')
    srv.ok("sieve", "put", "z@example.test", "main", str(sieve), "--activate")
    a.close()
    boss.close()


def the_new_owner_sees_nothing_old(srv: WaypostInstance) -> None:
    """The new owner, on both workers: an empty INBOX, none of the old folders,
    subscriptions or rights, no inherited script; its first message lands in INBOX."""
    assert srv.proc is not None
    c, d = on_two_workers(lambda: login(srv, "new-pw"), lambda r: r.sock, lambda r: r.close(), srv.proc.pid)
    for r in (c, d):
        assert exists(r, "INBOX") == 0
        listed = names(ok(r.cmd('L LIST "" "*"')))
        assert "Private" not in listed and not any("Board" in n for n in listed), listed
        assert "Private" not in names(ok(r.cmd('S LSUB "" "*"')))
        assert b"NO" in r.cmd("X SELECT Private")[-1]
        assert b"NO" in r.cmd("X SELECT ~boss/Board")[-1]
    assert "main" not in srv.ok("sieve", "list", "z@example.test")
    assert "z@example.test" not in srv.ok("acl", "get", "boss@example.test/Board")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
        s.sendmail("x@example.net", ["z@example.test"], b"Subject: new-1\r\n\r\nfor the new owner\r\n")
    wait_for(lambda: exists(c, "INBOX") == 1, timeout=20, what="the new owner's first message in INBOX")
    assert exists(d, "INBOX") == 1 and b"NO" in d.cmd("X SELECT Private")[-1]
    c.close()
    d.close()


def waypost(srv: WaypostInstance, *args: str) -> subprocess.Popen[str]:
    """The ``waypost`` command as a process of its own (so that it can be killed)."""
    return subprocess.Popen([sys.executable, "-m", "waypost", "--data", str(srv.data), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def waits_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked on a file lock (``/proc/locks`` lists a
    waiter as ``N: -> FLOCK ADVISORY WRITE PID ...``)."""
    return any(f[1:3] == ["->", "FLOCK"] and f[5] == str(pid)
               for f in (line.split() for line in Path("/proc/locks").read_text().splitlines()) if len(f) > 5)


def test_a_removal_killed_midway_is_finished_by_running_it_again(srv: WaypostInstance) -> None:
    give_the_old_owner_mail(srv)
    # The removal retires the Maildir under the account's lock: hold it, so that the
    # command stops there (after its first steps), and kill it.
    fd = os.open(srv.mailbox("z@example.test"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = waypost(srv, "account", "remove", "z@example.test")
        try:
            wait_for(lambda: waits_for_a_lock(proc.pid) or proc.poll() is not None, timeout=30,
                     what="account remove waiting for the account's lock")
            assert proc.poll() is None, proc.communicate()[0]
        finally:
            proc.kill()  # SIGKILL
            proc.communicate()
    finally:
        os.close(fd)
    # Cut short, the account is still there (with less): nobody else can take the name
    # meanwhile, and the same command again finishes the job.
    assert "z@example.test" in srv.ok("account", "list")
    assert srv.cli("account", "add", "z@example.test", "--password", "new-pw").exit_code != 0
    srv.ok("account", "remove", "z@example.test")
    srv.ok("account", "add", "z@example.test", "--password", "new-pw")
    the_new_owner_sees_nothing_old(srv)


@pytest.mark.parametrize("rows_gone", [False, True], ids=["rows-and-maildir-left", "maildir-left"])
def test_what_a_killed_removal_left_is_retired_by_account_add(srv: WaypostInstance, rows_gone: bool,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """An older version removed the account first, then the mailbox rows, then moved the
    Maildir: killed after the first step it left the rows and the Maildir of a name with
    no account, after the second the Maildir.  The same state, made through the storage
    layer as the crash left it."""
    give_the_old_owner_mail(srv)
    db = srv.db()
    try:
        db.remove_object("example.test", "z")
        if rows_gone:
            for box in db.mailbox_list("example.test", "z"):
                db.mailbox_delete(box.id)
        # A delivery in flight at the removal sends its vacation reply after it.
        now = time.time()
        assert db.vacation_claim("example.test", "z", "away", "boss@example.test", now, now + 7 * 86400)
    finally:
        db.close()
    assert srv.messages("z@example.test")  # the old owner's files, where the account's go
    with caplog.at_level("INFO", logger="waypost.admin"):
        caplog.clear()
        srv.ok("account", "add", "z@example.test", "--password", "new-pw")
    [retired] = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == "account-mail-retired"]
    assert retired["account"] == "z@example.test" and retired["reason"] == "leftover"
    assert retired["kept"].startswith(str(srv.mailbox("z@example.test").parent / ".removed.z."))
    db = srv.db()
    try:  # the new owner's vacation replies are its own
        now = time.time()
        assert db.vacation_claim("example.test", "z", "away", "boss@example.test", now, now + 7 * 86400)
    finally:
        db.close()
    the_new_owner_sees_nothing_old(srv)
    [kept] = [p for p in srv.mailbox("z@example.test").parent.iterdir() if p.name.startswith(".removed.z.")]
    assert any(b"old owner's" in p.read_bytes() for p in kept.rglob("*") if p.is_file() and p.parent.name in ("cur", "new"))


# -- what else the old owner left: \\Seen marks, vacation memory, trusted clients ------------

VACATION = 'require "vacation";\nvacation :days 7 :subject "Away" "I am away.";\n'


def seen_on_board(r: Raw) -> bool:
    ok(r.cmd("S SELECT ~boss/Board"))
    return b"\\Seen" in b"".join(ok(r.cmd("F FETCH 1 (FLAGS)")))


def test_no_seen_marks_vacation_memory_or_trusted_clients_are_inherited(tmp_path: Path) -> None:
    srv = WaypostInstance(tmp_path / "data", server={"workers": 2},
                          imap={"plaintext_without_tls": True, "failure_delay": 0.0},
                          auth={"free_failures": 3, "delay": 0.5, "max_delay": 0.5, "block_after": 4, "block_time": 120})
    srv.ok("account", "add", "z@example.test", "--password", "old-pw")
    srv.ok("account", "add", "boss@example.test", "--password", "boss-pw")
    script = tmp_path / "away.sieve"
    script.write_text(VACATION)
    with srv:
        srv.start()
        boss = login(srv, "boss-pw", "boss")
        ok(boss.cmd("C CREATE Board"))
        append(boss, "Board", "Subject: minutes\r\n\r\nconfidential\r\n")
        srv.ok("acl", "set", "boss@example.test/Board", "z@example.test", "lrs")
        # The old owner logs in from 127.0.0.1 (a client it is known by from now on),
        # reads the boss's message (its own \\Seen mark there), and is away: the boss
        # gets one vacation reply, and the next message none (within the 7 days).
        old = login(srv, "old-pw")
        ok(old.cmd("F FETCH 1 BODY[]")) if ok(old.cmd("S SELECT ~boss/Board")) else None
        assert seen_on_board(old)
        old.close()
        srv.ok("sieve", "put", "z@example.test", "away", str(script), "--activate")
        for n in (1, 2):
            with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
                s.sendmail("boss@example.test", ["z@example.test"], f"From: boss@example.test\r\nTo: z@example.test\r\nSubject: q{n}\r\n\r\nthere?\r\n".encode())
        srv.expect_log(r"event=vacation-skipped .*sender=<boss@example.test> .*reason=\"replied within the period\"",
                       timeout=30)
        assert len(wait_for(lambda: srv.messages("boss@example.test"), what="the old owner's vacation reply")) == 1

        srv.ok("account", "remove", "z@example.test")
        srv.ok("account", "add", "z@example.test", "--password", "new-pw")
        srv.ok("acl", "set", "boss@example.test/Board", "z@example.test", "lrs")
        srv.ok("sieve", "put", "z@example.test", "away", str(script), "--activate")

        # Someone guesses the new owner's password from 127.0.0.2: the account is
        # blocked, and 127.0.0.1 is no client the new owner is known by: refused there too.
        for i in range(4):
            assert not imap_login(srv, "z@example.test", f"guess-{i}", "127.0.0.2")
        srv.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.2 login=z@example.test", count=4)
        assert not imap_login(srv, "z@example.test", "new-pw", "127.0.0.1")
        srv.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.1 login=z@example.test reason=blocked")
        srv.ok("auth", "unblock", "z@example.test")

        # The new owner has seen nothing of the boss's mailbox (the boss's own view unchanged) ...
        new = login(srv, "new-pw")
        assert not seen_on_board(new)
        ok(boss.cmd("S SELECT Board"))
        assert b"\\Seen" not in b"".join(ok(boss.cmd("F FETCH 1 (FLAGS)")))
        # ... and replied to nobody yet: the boss's next message gets the new owner's reply.
        with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
            s.sendmail("boss@example.test", ["z@example.test"], b"From: boss@example.test\r\nTo: z@example.test\r\nSubject: q3\r\n\r\nthere?\r\n")
        wait_for(lambda: len(srv.messages("boss@example.test")) == 2, timeout=30, what="the new owner's vacation reply")
        new.close()
        boss.close()


def test_a_silent_old_session_hears_nothing_of_the_new_owner(srv: WaypostInstance) -> None:
    """Sessions of the old owner that send no command — one under NOTIFY (RFC 5465,
    which pushes LIST and STATUS between commands), one in IDLE — get BYE once the name
    is made again, and nothing of the new owner's folders or mail reaches them (found by
    review: the NOTIFY session received the new owner's folder names and counts)."""
    watcher = login(srv, "old-pw")
    ok(watcher.cmd("N NOTIFY SET STATUS (personal (MessageNew MessageExpunge MailboxName))"))
    idler = login(srv, "old-pw")
    ok(idler.cmd("S SELECT INBOX"))
    idler.send(b"I IDLE\r\n")
    assert idler.line().startswith(b"+ ")
    srv.ok("account", "remove", "z@example.test")
    srv.ok("account", "add", "z@example.test", "--password", "new-pw")
    new = login(srv, "new-pw")
    ok(new.cmd("C CREATE Secret-Merger-Plans"))
    append(new, "INBOX", "Subject: for the new owner\r\n\r\nnot for the old one\r\n")
    for r in (watcher, idler):
        r.sock.settimeout(20)
        heard = []
        try:
            while True:
                heard.append(r.line())
        except (EOFError, ConnectionError):
            pass
        except TimeoutError:
            raise AssertionError(f"{'watcher' if r is watcher else 'idler'} not ended: {heard}\n" + "\n".join(srv.output[-60:])) from None
        # The IDLE session may instead be told its selected mailbox went (the removal
        # retires it): either BYE ends it before anything of the new owner's.
        assert heard and heard[-1].startswith(b"* BYE "), heard
        assert r is watcher or b"removed or changed" in heard[-1] or b"mailbox was deleted" in heard[-1], heard
        assert not any(b"Secret-Merger-Plans" in x or b"STATUS" in x or b"EXISTS" in x for x in heard), heard
    srv.expect_log(r"event=imap-account-gone .*account=z@example.test")  # (the NOTIFY session's, at least)
    for r in (watcher, idler, new):
        r.close()


# -- two `account add` of one name at the same instant --------------------------------------

def lock_waiters() -> set[int]:
    """The processes blocked on a file lock now (``N: -> FLOCK ...`` in /proc/locks)."""
    return {int(f[5]) for f in (line.split() for line in Path("/proc/locks").read_text().splitlines())
            if len(f) > 5 and f[1:3] == ["->", "FLOCK"]}


def server_pids(srv: WaypostInstance) -> set[int]:
    """The server's leader and its workers (the test suites run at once on one host:
    another test's lock waiters are not this server's)."""
    assert srv.proc is not None
    leader = srv.proc.pid
    out = {leader}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{leader}\n" in status.read_text():
                out.add(int(status.parent.name))
        except OSError:
            pass
    return out


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T"


def test_two_adds_of_one_name_at_once_never_retire_the_winners_mail(tmp_path: Path) -> None:
    """An API retry and the CLI add one name at the same instant, where a removal cut
    short left the old owner's Maildir: the loser's clean-up of what was left must not
    move aside what the winner received meanwhile.  The CLI's add is caught in its
    clean-up (waiting for the account's Maildir lock, which the test holds) and stopped
    there (SIGSTOP: descheduled at the worst moment); then the API's add runs.  Whoever
    wins, every message sent to the name after it won is in its INBOX."""
    http = free_port()
    srv = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "failure_delay": 0.05},
                          listen={"http": f"127.0.0.1:{http}"})
    srv.ok("account", "add", "z@example.test", "--password", "old-pw")
    srv.ok("account", "add", "boss@example.test", "--password", "boss-pw")
    token = srv.ok("token", "add", "ops").splitlines()[0]
    with srv:
        srv.start()
        give_the_old_owner_mail(srv)
        db = srv.db()
        try:  # an older version's removal, killed after its first step
            db.remove_object("example.test", "z")
        finally:
            db.close()

        api: dict[str, object] = {}

        def api_add() -> None:
            conn = http_client.HTTPConnection("127.0.0.1", http, timeout=60)
            try:
                conn.request("POST", "/api/v1/accounts",
                             body=json.dumps({"address": "z@example.test", "password": "api-pw"}),
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                r = conn.getresponse()
                api["status"], api["body"] = r.status, r.read().decode()
            finally:
                conn.close()

        fd = os.open(srv.mailbox("z@example.test"), os.O_RDONLY | os.O_DIRECTORY)
        released = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            cli = waypost(srv, "account", "add", "z@example.test", "--password", "cli-pw")
            try:
                wait_for(lambda: cli.pid in lock_waiters() or cli.poll() is not None, timeout=30,
                         what="the CLI's account add waiting for the account's lock")
                assert cli.poll() is None, cli.communicate()[0]
                os.kill(cli.pid, signal.SIGSTOP)
                wait_for(lambda: stopped(cli.pid), what="the CLI's account add stopped")
                os.close(fd)
                released = True
                caller = threading.Thread(target=api_add)
                caller.start()
                # The API's add either goes through (while the CLI's is half-way) or
                # waits for the CLI's to finish.
                wait_for(lambda: not caller.is_alive() or lock_waiters() & server_pids(srv), timeout=30,
                         what="the API's account add done or waiting")
                sent = 0
                if not caller.is_alive() and api.get("status") == 201:
                    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
                        s.sendmail("x@example.net", ["z@example.test"], b"Subject: new-1\r\n\r\nfor the winner\r\n")
                    sent = 1
                    wait_for(lambda: len(srv.messages("z@example.test")) == 1, timeout=20,
                             what="the winner's first message stored")
            finally:
                os.kill(cli.pid, signal.SIGCONT)
                out = cli.communicate(timeout=60)[0]
            caller.join(60)
        finally:
            if not released:
                os.close(fd)
        winners = [pw for pw, won in (("cli-pw", cli.returncode == 0), ("api-pw", api.get("status") == 201)) if won]
        assert len(winners) == 1, (out, api)
        assert cli.returncode == 0 or "exists" in out, out
        with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
            s.sendmail("x@example.net", ["z@example.test"], b"Subject: new-2\r\n\r\nfor the winner\r\n")
        sent += 1
        r = login(srv, winners[0])
        wait_for(lambda: exists(r, "INBOX") >= sent, timeout=20, what="the winner's messages in its INBOX")
        assert exists(r, "INBOX") == sent
        assert b"NO" in r.cmd("X SELECT Private")[-1]
        r.close()
        # The old owner's files are kept aside; none of the winner's went with them.
        for kept in (p for p in srv.mailbox("z@example.test").parent.iterdir() if p.name.startswith(".removed.z.")):
            assert not any(b"for the winner" in p.read_bytes() for p in kept.rglob("*") if p.is_file())


def test_the_new_owner_is_not_blocked_for_guesses_at_the_old_owners_password(tmp_path: Path) -> None:
    """The login throttle's count of failed logins for the name (and its block) goes
    with the account: someone guessed the old owner's password until the name was
    blocked; the new owner logs in at once, from a client never seen before."""
    srv = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "failure_delay": 0.0},
                          auth={"free_failures": 3, "delay": 0.5, "max_delay": 0.5, "block_after": 4, "block_time": 600})
    srv.ok("account", "add", "z@example.test", "--password", "old-pw")
    with srv:
        srv.start()
        for i in range(4):
            assert not imap_login(srv, "z@example.test", f"guess-{i}", "127.0.0.2")
        srv.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.2 login=z@example.test", count=4)
        assert "account:z@example.test" in srv.ok("auth", "blocked")
        srv.ok("account", "remove", "z@example.test")
        assert "account:z@example.test" not in srv.ok("auth", "blocked")
        srv.ok("account", "add", "z@example.test", "--password", "new-pw")
        assert imap_login(srv, "z@example.test", "new-pw", "127.0.0.3")


# -- a local delivery queued for the old owner ------------------------------------------------

def test_mail_queued_for_the_old_owner_never_reaches_the_new_one(srv: WaypostInstance) -> None:
    """A message accepted for z while z was the old owner's account, still queued when
    the name is removed and made again, is bounced to its sender (5.1.1, with a log
    line), not stored for the new owner.  It waits in the queue because the old owner's
    mailbox was over quota (the client gave no SIZE, so RCPT could not tell)."""
    srv.ok("account", "set", "z@example.test", "--quota", "100")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
        s.ehlo("client.example.test")
        assert s.mail("boss@example.test")[0] == 250  # (no SIZE=)
        assert s.rcpt("z@example.test")[0] == 250
        assert s.data(b"From: boss@example.test\r\nSubject: for the old owner\r\n\r\n" + b"old owner's business\r\n" * 40)[0] == 250
    srv.expect_log(r"event=deferred .*rcpt=<z@example.test>.*4\.2\.2", timeout=30)
    srv.ok("account", "remove", "z@example.test")
    srv.ok("account", "add", "z@example.test", "--password", "new-pw")
    srv.ok("queue", "flush")
    wait_for(lambda: not srv.queue_ids(), timeout=30, what="the queue empty")
    r = login(srv, "new-pw")
    assert exists(r, "INBOX") == 0, "the old owner's mail reached the new owner"
    r.close()
    assert not any(b"old owner's business" in p.read_bytes() for p in srv.messages("z@example.test"))
    srv.expect_log(r"event=local-recipient-gone .*account=z@example.test", timeout=30)
    srv.expect_log(r"event=bounced .*rcpt=<z@example.test>.*5\.1\.1", timeout=30)
    [dsn] = wait_for(lambda: srv.messages("boss@example.test"), timeout=30, what="the bounce to the sender")
    assert b"5.1.1" in dsn.read_bytes()


# -- POP3 and submission sessions of the old owner --------------------------------------------

@pytest.mark.parametrize("change", ["removed-and-made-again", "disabled"])
def test_pop3_and_submission_sessions_end_when_their_account_goes(tmp_path: Path, change: str) -> None:
    """An old owner's POP3 session gets ``-ERR`` at its next command and is closed
    (nothing it marked is removed); its submission session is refused the next MAIL
    with 421 and closed: as IMAP's sessions end (one log line each)."""
    srv = WaypostInstance(tmp_path / "data", pop3={"failure_delay": 0.0}, server={"workers": 2})
    srv.ok("account", "add", "z@example.test", "--password", "old-pw")
    srv.ok("account", "add", "boss@example.test", "--password", "boss-pw")
    with srv:
        srv.start()
        with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=30) as s:
            s.sendmail("x@example.net", ["z@example.test"], b"Subject: old-1\r\n\r\nold owner's\r\n")
        wait_for(lambda: srv.messages("z@example.test"), timeout=20, what="the old owner's message stored")
        pop = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=30)
        pop.stls(context=client_context())
        pop.user("z@example.test")
        pop.pass_("old-pw")
        assert pop.stat()[0] == 1
        pop.dele(1)
        sub = smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=30)
        sub.starttls(context=client_context())
        sub.login("z@example.test", "old-pw")
        sub.sendmail("z@example.test", ["boss@example.test"], b"From: z@example.test\r\nSubject: s1\r\n\r\nsent\r\n")
        if change == "disabled":
            srv.ok("account", "set", "z@example.test", "--disable")
        else:
            srv.ok("account", "remove", "z@example.test")
            srv.ok("account", "add", "z@example.test", "--password", "new-pw")
        with pytest.raises(poplib.error_proto) as refused:
            pop.stat()
        assert refused.value.args[0].startswith(b"-ERR ") and b"removed or changed" in refused.value.args[0]
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            pop.noop()
        pop.close()
        srv.expect_log(r"event=pop3-account-gone .*account=z@example.test")
        code, text = sub.mail("z@example.test")
        assert code == 421 and b"removed or changed" in text, (code, text)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            sub.rcpt("boss@example.test")
        sub.close()
        srv.expect_log(r"event=submission-account-gone .*account=z@example.test")
        # The old owner's DELE was not carried out: the session ended without UPDATE.
        if change == "disabled":
            assert len(srv.messages("z@example.test")) == 1
        assert len(wait_for(lambda: srv.messages("boss@example.test"), timeout=20, what="the boss's message")) == 1
