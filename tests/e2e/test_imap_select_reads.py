"""SELECT and STATUS read the index as little as they can (the mailbox row read by the
look-up stands for the index state, the \\Recent claim is skipped when nothing is left
to claim, [UNSEEN] and the mailbox aliases are remembered per process): what a client
sees must stay exactly what RFC 3501 says, when other sessions, the CLI and programs
dropping files into the Maildir change things between two SELECTs of one session.
Through the real listener (one worker: every session shares its memory), on both
engines (the PostgreSQL pass of ``make test``)."""

from __future__ import annotations

import imaplib
import re
import smtplib

import pytest

from support.server import WaypostInstance, wait_for

imaplib.Commands.setdefault("UNSELECT", ("SELECTED",))  # type: ignore[attr-defined]


@pytest.fixture()
def srv(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True})
    for who in ("ann", "bea"):
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    inst.start()
    yield inst
    inst.stop()


def login(srv: WaypostInstance, who: str = "ann") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.imap_port, timeout=10)
    c.login(f"{who}@example.test", "pw")
    return c


def deliver(srv: WaypostInstance, n: int, to: str = "ann@example.test") -> None:
    before = len(srv.messages(to))
    with smtplib.SMTP("127.0.0.1", srv.smtp_port) as s:
        for i in range(n):
            s.sendmail("x@example.net", [to], f"Subject: m{before + i}\r\n\r\nbody\r\n".encode())
    wait_for(lambda: len(srv.messages(to)) == before + n)
    # The file is renamed into the Maildir before the index takes it: wait for the index
    # too (a SELECT in between saw the state without the new message, on PostgreSQL).
    who = to.split("@")[0]
    c = login(srv, who)
    try:
        wait_for(lambda: int(c.status("INBOX", "(MESSAGES)")[1][0].split()[-1].strip(b")")) == before + n)
    finally:
        c.logout()


def select(c: imaplib.IMAP4, mailbox: str = "INBOX", examine: bool = False) -> dict[str, int | None]:
    """What SELECT said: EXISTS, RECENT and the [UNSEEN] number (None when absent)."""
    typ, data = c.select(mailbox, readonly=examine)
    assert typ == "OK", data
    unseen = c.untagged_responses.pop("UNSEEN", [None])[0]
    return {"exists": int(c.untagged_responses.pop("EXISTS")[0]),
            "recent": int(c.untagged_responses.pop("RECENT")[0]),
            "unseen": None if unseen is None else int(unseen)}


def test_unseen_follows_other_sessions_flags(srv):
    deliver(srv, 3)
    a, b = login(srv), login(srv)
    assert select(a)["unseen"] == 1
    assert select(b)["unseen"] == 1
    assert b.store("1", "+FLAGS", "\\Seen")[0] == "OK"
    assert select(a)["unseen"] == 2  # at a new state: not the remembered answer
    assert select(a)["unseen"] == 2
    assert b.store("2:3", "+FLAGS", "\\Seen")[0] == "OK"
    assert select(a)["unseen"] is None
    deliver(srv, 1)
    assert select(a)["unseen"] == 4
    assert b.store("1", "-FLAGS", "\\Seen")[0] == "OK"
    assert select(a)["unseen"] == 1
    # An expunge moves the state too: message 1 goes, the first unseen is now 3 (UID 4).
    assert b.store("1", "+FLAGS", "\\Deleted")[0] == "OK"
    assert b.expunge()[0] == "OK"
    got = select(a)
    assert got["exists"] == 3 and got["unseen"] == 3
    a.logout()
    b.logout()


def test_recent_is_claimed_once_and_examine_claims_nothing(srv):
    deliver(srv, 2)
    a, b, c = login(srv), login(srv), login(srv)
    assert select(c, examine=True)["recent"] == 2  # EXAMINE shows them, claims none
    assert select(a)["recent"] == 2
    assert select(b)["recent"] == 0  # claimed by a
    assert select(a)["recent"] == 0  # a's own claim ended with its earlier selection
    assert select(c, examine=True)["recent"] == 0
    deliver(srv, 1)
    assert select(c, examine=True)["recent"] == 1
    assert select(b)["recent"] == 1
    assert select(a)["recent"] == 0
    for s in (a, b, c):
        s.logout()


def test_alias_changes_from_the_cli_reach_a_logged_in_session_at_once(srv):
    deliver(srv, 1, to="bea@example.test")
    bea = login(srv, "bea")
    assert bea._simple_command("SETACL", "INBOX", "ann@example.test", "lr")[0] == "OK"  # type: ignore[attr-defined]
    bea.logout()
    a = login(srv)
    assert a.select("team")[0] == "NO"  # looked up once: the (empty) alias list is remembered
    srv.ok("mailbox", "alias", "add", "ann@example.test", "team", "~bea/INBOX")
    assert select(a, "team", examine=True)["exists"] == 1  # "lr": read-only
    typ, data = a.status("team", "(MESSAGES)")
    assert typ == "OK" and b"MESSAGES 1" in data[0]
    srv.ok("mailbox", "alias", "remove", "ann@example.test", "team")
    assert a.select("team")[0] == "NO"
    assert a.status("team", "(MESSAGES)")[0] == "NO"
    a.logout()


def test_status_and_select_count_a_file_dropped_into_the_maildir(srv):
    deliver(srv, 2)
    a = login(srv)
    assert select(a)["exists"] == 2
    assert a._simple_command("UNSELECT")[0] == "OK"  # type: ignore[attr-defined]
    typ, data = a.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
    assert typ == "OK" and re.search(rb"MESSAGES 2\b", data[0]), data
    # Another program (a migration tool, procmail) drops a message in as Maildir allows.
    new = srv.mailbox("ann@example.test") / "new"
    (new / "1700000000.M1P1.dropped").write_bytes(b"Subject: dropped\r\n\r\nhi\r\n")
    typ, data = a.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
    assert typ == "OK" and re.search(rb"MESSAGES 3\b", data[0]) and re.search(rb"UNSEEN 3\b", data[0]), data
    got = select(a)
    assert got["exists"] == 3 and got["unseen"] == 1
    (new.parent / "new" / "1700000001.M2P1.dropped").write_bytes(b"Subject: again\r\n\r\nhi\r\n")
    got = select(a)  # SELECT's own look-up finds the file (the row read before it is stale)
    assert got["exists"] == 4
    a.logout()


def test_two_workers_a_mailbox_made_again_and_a_kill_9(tmp_path):
    """What each worker remembers ([UNSEEN] by mailbox id and state, the alias lists
    under the change token) with server.workers = 2: a change made through one worker,
    or by the CLI, is seen by a session of the other at once; a mailbox deleted and made
    again under its name is a new mailbox (a new id), not the old one's remembered
    answers; and after kill -9 and a restart the answers are the index's."""
    from support.workers import on_two_workers

    srv = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True}, server={"workers": 2})
    srv.ok("account", "add", "ann@example.test", "--password", "pw")
    srv.start()
    try:
        wait_for(lambda: sum("worker-ready" in line for line in srv.output) == 2, what="both workers ready")
        a, b = on_two_workers(lambda: login(srv), lambda c: c.sock, lambda c: c.logout(), srv.proc.pid)
        assert a.create("Team")[0] == "OK"
        for i in range(3):
            assert a.append("Team", None, None, f"Subject: t{i}\r\n\r\nx\r\n".encode())[0] == "OK"
        assert select(a, "Team")["unseen"] == 1
        assert select(b, "Team")["unseen"] == 1
        assert b.store("1:2", "+FLAGS", "\\Seen")[0] == "OK"
        assert select(a, "Team")["unseen"] == 3  # the other worker's change, at once
        # Deleted and made again under its name: a new mailbox, nothing of the old one.
        assert a._simple_command("UNSELECT")[0] == "OK"  # type: ignore[attr-defined]
        assert b._simple_command("UNSELECT")[0] == "OK"  # type: ignore[attr-defined]
        assert a.delete("Team")[0] == "OK"
        assert a.create("Team")[0] == "OK"
        got = select(b, "Team")
        assert got == {"exists": 0, "recent": 0, "unseen": None}
        assert a.append("Team", None, None, b"Subject: new\r\n\r\nx\r\n")[0] == "OK"
        got = select(b, "Team")
        assert got["exists"] == 1 and got["unseen"] == 1 and got["recent"] == 1
        # An alias made by the CLI works in both workers' sessions at once, and goes.
        srv.ok("mailbox", "alias", "add", "ann@example.test", "t", "Team")
        assert select(a, "t")["exists"] == 1 and select(b, "t")["exists"] == 1
        srv.ok("mailbox", "alias", "remove", "ann@example.test", "t")
        assert a.select("t")[0] == "NO" and b.select("t")[0] == "NO"
        assert select(b, "Team")["unseen"] == 1
        assert b.store("1", "+FLAGS", "\\Seen")[0] == "OK"
        a.sock.close()
        b.sock.close()
        srv.kill9()
        srv.start()
        c = login(srv)
        got = select(c, "Team")
        assert got["exists"] == 1 and got["unseen"] is None and got["recent"] == 0
        assert c.select("t")[0] == "NO"
        c.logout()
    finally:
        srv.stop()
