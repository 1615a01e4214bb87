"""An account removed and made again under the same name inherits nothing of the old
owner: not its mail (on two workers that had it cached), not its folders, subscriptions,
Sieve scripts, nor the rights other accounts had granted it (issue 13: one customer must
never act as another). The old owner's files stay on disk, moved aside."""

from __future__ import annotations

import re
import smtplib

import pytest

from support.imap import Raw
from support.server import WaypostInstance, wait_for
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
    # The old owner's files are kept, moved aside where no account can reach them.
    [kept] = [p for p in srv.mailbox("z@example.test").parent.iterdir() if p.name.startswith(".removed.z.")]
    assert any("old owner's" in p.read_text() for p in kept.rglob("*") if p.is_file() and "/cur/" in str(p)
               or p.is_file() and "/new/" in str(p))
    for r in (a, b, c, d, boss):
        r.close()
