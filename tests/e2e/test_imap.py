"""The IMAP listener end to end: imaplib and raw transcripts against ``waypost serve``,
mail arriving over SMTP, several sessions on one account."""

from __future__ import annotations

import imaplib
import re
import signal
import smtplib
import ssl
import time

import pytest

from support.imap import Raw
from support.server import WaypostInstance, wait_for
from support.tls import client_context

imaplib.Commands.setdefault("IDLE", ("AUTH", "SELECTED"))  # type: ignore[attr-defined]
imaplib.Commands.setdefault("MOVE", ("SELECTED",))  # type: ignore[attr-defined]


def tls() -> ssl.SSLContext:
    """Checks the server's certificate against the test CA, for the address dialled."""
    return client_context()


@pytest.fixture(scope="module")
def imap_server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imap") / "data", imap={"plaintext_without_tls": True,
                                                                            "failure_delay": 0.05},
                           server={"workers": 2, "log_level": "debug"})  # debug: event=inbox-warm
    inst.ok("domain", "add", "other.test")
    for who in ("alice", "bob", "carol", "dave", "erin", "frank"):
        inst.ok("account", "add", f"{who}@example.test", "--password", f"{who}-password")
    inst.ok("account", "add", "info@other.test", "--password", "info-password")
    inst.start()
    yield inst
    inst.stop()


def login(server: WaypostInstance, who: str = "alice", user: str | None = None) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(user or f"{who}@example.test", f"{who}-password")
    return c


def send(server: WaypostInstance, to: str, subject: str, body: str = "hello\r\n", extra: str = "") -> None:
    msg = (f"From: sender@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n{extra}\r\n{body}")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.sendmail("sender@example.test", [to], msg.encode())


# -- logging in ---------------------------------------------------------------------------


def test_login_name_forms(imap_server):
    # "%" is a list wildcard, not an atom character: the name goes quoted (RFC 3501 §9).
    for user in ("alice@example.test", '"alice%example.test"', "alice"):
        c = imaplib.IMAP4("127.0.0.1", imap_server.imap_port, timeout=10)
        typ, data = c.login(user, "alice-password")
        assert typ == "OK"
        c.logout()
    c = imaplib.IMAP4("127.0.0.1", imap_server.imap_port, timeout=10)
    assert c.login('"info%other.test"', "info-password")[0] == "OK"
    c.logout()


def test_failed_login_is_slowed_logged_and_ends_the_connection(imap_server):
    r = Raw(imap_server.imap_port)
    replies = [r.cmd(b'a%d LOGIN alice@example.test "wrong"' % i) for i in range(1, 3)]
    for reply in replies:
        assert reply[-1].startswith(b"a") and b" NO [AUTHENTICATIONFAILED]" in reply[-1]
    last = r.cmd(b'a3 LOGIN alice@example.test "wrong"', tag=b"a3")
    assert b"NO [AUTHENTICATIONFAILED]" in last[0]
    assert r.line().startswith(b"* BYE") if r.buf or True else True
    r.close()
    imap_server.expect_log(r"event=auth-failed proto=imap client=127.0.0.1 login=alice@example.test reason=credentials")


def test_plaintext_login_needs_tls_by_default(tmp_path):
    with WaypostInstance(tmp_path / "data") as inst:
        inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
        inst.start()
        r = Raw(inst.imap_port)
        assert b"LOGINDISABLED" in r.greeting and b"STARTTLS" in r.greeting
        assert b"NO [PRIVACYREQUIRED]" in r.cmd(b"a1 LOGIN alice@example.test alice-password")[-1]
        r.close()
        c = imaplib.IMAP4("127.0.0.1", inst.imap_port, timeout=10)
        c.starttls(ssl_context=tls())
        assert "AUTH=PLAIN" in c.capabilities and "LOGINDISABLED" not in c.capabilities
        assert c.login("alice@example.test", "alice-password")[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
        c.logout()


def test_authenticate_plain_with_initial_response(imap_server):
    import base64

    r = Raw(imap_server.imap_port)
    token = base64.b64encode(b"\0bob@example.test\0bob-password")
    reply = r.cmd(b"a1 AUTHENTICATE PLAIN " + token)
    assert reply[-1].startswith(b"a1 OK")
    # and the continuation form
    r2 = Raw(imap_server.imap_port)
    r2.send(b"b1 AUTHENTICATE PLAIN\r\n")
    assert r2.line() == b"+ "
    assert r2.cmd(token, tag=b"b1")[-1].startswith(b"b1 OK")
    r.close()
    r2.close()


# -- mailboxes ----------------------------------------------------------------------------


def test_new_account_has_special_use_folders(imap_server):
    c = login(imap_server, "carol")
    typ, lines = c.list()
    listing = b"\n".join(lines)
    for name, use in ((b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"), (b"Trash", b"\\Trash"), (b"Junk", b"\\Junk")):
        assert re.search(rb"\(([^)]*)" + re.escape(use) + rb"[^)]*\) \"/\" " + name, listing), listing
    assert b'"/" INBOX' in listing
    typ, lines = c.lsub()
    assert any(line.endswith(b"Sent") for line in lines)
    typ, data = c._simple_command("LIST", '""', "%", "RETURN", "(STATUS (MESSAGES UIDNEXT))")  # type: ignore[attr-defined]
    assert typ == "OK"
    listed, statuses = c.response("LIST")[1], c.response("STATUS")[1]
    assert len(listed) == len(statuses) == 5 and b"(MESSAGES 0 UIDNEXT 1)" in statuses[0]
    c.create("Archive/2026")
    typ, lines = c.list('""', "Archive/%")
    assert lines == [b'(\\HasNoChildren) "/" Archive/2026']
    typ, lines = c.list('""', "Archive")
    assert lines == [b'(\\HasChildren) "/" Archive']
    assert c.rename("Archive", "Old")[0] == "OK"
    assert c.list('""', "Old/*")[1] == [b'(\\HasNoChildren) "/" Old/2026']
    assert c.delete("Old/2026")[0] == "OK"
    assert c.delete("Old")[0] == "OK"
    assert c.delete("INBOX")[0] == "NO"
    assert c.select("Nope")[0] == "NO"
    # A non-ASCII name travels in modified UTF-7 (RFC 3501 §5.1.3).
    assert c.create("&ZeVnLIqe-")[0] == "OK"
    assert (imap_server.mailbox("carol@example.test") / ".日本語" / "cur").is_dir()
    c.logout()


def test_append_fetch_store_search_copy_move_expunge(imap_server):
    c = login(imap_server, "dave")
    msg = (b"From: Dave <dave@example.test>\r\nTo: bob@example.test\r\nSubject: APPEND test\r\n"
           b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a1@example.test>\r\n\r\nbody line\r\n")
    typ, data = c.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(time.time()), msg)
    assert typ == "OK" and b"[APPENDUID " in data[0]
    uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))
    typ, data = c.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = c.uid("FETCH", str(uid), "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] ENVELOPE)")
    head, literal = data[0]
    assert b"FLAGS (\\Flagged \\Recent)" in head and b"RFC822.SIZE %d" % len(msg) in head
    assert literal == b"Subject: APPEND test\r\n\r\n"
    typ, data = c.fetch("1", "(BODY[])")  # not PEEK: sets \Seen
    assert data[0][1] == msg
    typ, data = c.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]
    assert c.search(None, "SUBJECT", '"append TEST"') == ("OK", [b"1"])
    assert c.search(None, "UNSEEN") == ("OK", [b""])
    assert c.search(None, "HEADER", "Message-ID", "a1@example") == ("OK", [b"1"])
    assert c.search(None, "BODY", "line") == ("OK", [b"1"])
    assert c.search(None, "NOT", "FLAGGED") == ("OK", [b""])
    typ, data = c.store("1", "+FLAGS", "(\\Deleted $Important)")
    assert b"$Important" in data[0]
    typ, data = c.copy("1", "Trash")
    assert typ == "OK" and b"[COPYUID " in data[0]
    typ, data = c._simple_command("MOVE", "1", "Sent")  # type: ignore[attr-defined]
    assert typ == "OK"
    assert c.select("INBOX")[1] == [b"0"]
    typ, data = c.select("Sent")
    assert data == [b"1"]
    typ, data = c.fetch("1", "(FLAGS BODY.PEEK[TEXT])")
    assert data[0][1] == b"body line\r\n"
    assert c.expunge()[0] == "OK"
    assert c.select("Sent")[1] == [b"0"]
    # Trash holds the copy: one file, hard-linked, never a second copy of the data.
    typ, data = c.status("Trash", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
    assert b"MESSAGES 1" in data[0]
    c.logout()


def test_sequence_errors_and_wrong_states(imap_server):
    r = Raw(imap_server.imap_port)
    assert r.cmd(b"a1 SELECT INBOX")[-1].startswith(b"a1 BAD")
    assert r.cmd(b"a2 LOGIN erin@example.test erin-password")[-1].startswith(b"a2 OK")
    assert r.cmd(b"a3 FETCH 1 FLAGS")[-1].startswith(b"a3 BAD")
    assert r.cmd(b"a4 SELECT INBOX")[-1].startswith(b"a4 OK [READ-WRITE]")
    assert r.cmd(b"a5 FETCH 5 FLAGS")[-1].startswith(b"a5 BAD")
    assert r.cmd(b"a6 FETCH 1:x FLAGS")[-1].startswith(b"a6 BAD")
    assert r.cmd(b"a7 UID FETCH 1:* FLAGS")[-1].startswith(b"a7 OK")
    assert r.cmd(b"a8 SEARCH CHARSET KOI8-U TEXT x")[-1].startswith(b"a8 NO [BADCHARSET")
    assert r.cmd(b"a9 LOGIN x y")[-1].startswith(b"a9 BAD")
    assert r.cmd(b"a10 FROBNICATE")[-1].startswith(b"a10 BAD")
    assert r.cmd(b"a11 NOOP \xff\xfe")[-1].startswith(b"a11 BAD")
    # A literal larger than the limit is refused before it is read (RFC 7888 §4).
    assert r.cmd(b"a12 APPEND INBOX {999999999999}")[-1].startswith(b"a12 NO [TOOBIG]")
    # An unbalanced command is BAD and the connection goes on.
    assert r.cmd(b"a13 FETCH 1 (FLAGS")[-1].startswith(b"a13 BAD")
    assert r.cmd(b"a14 NOOP")[-1].startswith(b"a14 OK")
    assert r.cmd(b"a15 LOGOUT")[0].startswith(b"* BYE")
    r.close()


def test_vanishing_mid_append_stores_nothing(imap_server):
    r = Raw(imap_server.imap_port)
    r.cmd(b"a1 LOGIN frank@example.test frank-password")
    r.send(b"a2 APPEND INBOX {100}\r\n")
    assert r.line().startswith(b"+")
    r.send(b"From: x\r\n\r\nhalf")
    r.close()
    c = login(imap_server, "frank")
    assert c.select("INBOX")[1] == [b"0"]
    c.logout()
    tmp = imap_server.mailbox("frank@example.test") / "tmp"
    assert not list(tmp.iterdir())


def test_login_indexes_inbox_while_the_password_is_checked(imap_server):
    """Files another program dropped into INBOX are indexed during LOGIN (while the
    password hash is checked), before any SELECT; a wrong password still fails."""
    imap_server.ok("account", "add", "gina@example.test", "--password", "gina-password")
    cur = imap_server.mailbox("gina@example.test") / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    for i in range(40):
        (cur / f"{1700000000 + i}.G{i}.elsewhere:2,S").write_bytes(b"Subject: dropped %d\r\n\r\nhi\r\n" % i)

    def indexed() -> int:
        db = imap_server.db()
        try:
            inbox = db.mailbox_get("example.test", "gina", "INBOX")
            return 0 if inbox is None else len(db.message_list(inbox.id))
        finally:
            db.close()

    # A submission login does not warm the mailbox (only IMAP and POP3 read it).  A warm-up
    # is logged (debug) when it starts, before the password check ends, so before the
    # login's own event=auth line.
    with smtplib.SMTP("127.0.0.1", imap_server.submission_port, timeout=10) as s:
        s.starttls(context=tls())
        s.login("gina@example.test", "gina-password")
    imap_server.expect_log(r"event=auth .*account=gina@example.test")
    assert not imap_server.log_lines(r"event=inbox-warm account=gina@example.test")
    assert indexed() == 0

    r = Raw(imap_server.imap_port)
    assert r.cmd(b'a1 LOGIN gina@example.test "wrong"')[-1].startswith(b"a1 NO")
    assert r.cmd(b"a2 LOGIN gina@example.test gina-password")[-1].startswith(b"a2 OK")
    imap_server.expect_log(r"event=inbox-warm account=gina@example.test")
    wait_for(lambda: indexed() == 40, what="INBOX indexed without a SELECT")
    reply = r.cmd(b"a3 SELECT INBOX")
    assert b"* 40 EXISTS" in reply and reply[-1].startswith(b"a3 OK")
    assert b"* 41 EXISTS" not in b"".join(reply)
    r.cmd(b"a4 LOGOUT")
    r.close()


# -- several sessions ----------------------------------------------------------------------


def test_sessions_see_each_other_and_delivered_mail(imap_server):
    a = login(imap_server, "bob")
    b = login(imap_server, "bob")
    a.select("INBOX")
    b.select("INBOX")
    send(imap_server, "bob@example.test", "first")
    b.response("EXISTS")
    # b learns of the message on its next command.
    wait_for(lambda: b.noop() and b.response("EXISTS")[1] == [b"1"], timeout=10, what="EXISTS")
    a.noop()
    typ, data = a.search(None, "ALL")
    assert data == [b"1"]
    a.store("1", "+FLAGS", "\\Flagged")
    b.noop()
    typ, data = b.response("FETCH")
    assert data and b"\\Flagged" in data[-1]
    a.store("1", "+FLAGS", "\\Deleted")
    a.expunge()
    b.noop()
    typ, data = b.response("EXPUNGE")
    assert data == [b"1"]
    a.logout()
    b.logout()


def test_idle_wakes_at_once_on_delivery(imap_server):
    r = Raw(imap_server.imap_port)
    r.cmd(b"a1 LOGIN alice@example.test alice-password")
    before = [x for x in r.cmd(b"a2 SELECT INBOX") if x.endswith(b"EXISTS")][0]
    count = int(before.split()[1])
    r.send(b"a3 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    started = time.monotonic()
    send(imap_server, "alice@example.test", "wake up")
    line = r.line()
    waited = time.monotonic() - started
    assert line == b"* %d EXISTS" % (count + 1)
    assert waited < 4.0  # the bus, not the 30 s re-check, woke it
    while not r.line().startswith(b"* ") or False:
        break
    r.send(b"DONE\r\n")
    while True:
        line = r.line()
        if line.startswith(b"a3 "):
            assert line.startswith(b"a3 OK")
            break
    r.close()


def test_idle_ends_at_once_on_done_and_on_the_clients_end_of_input(imap_server):
    """IDLE waits on one event for the client's input and the mailbox's changes: DONE,
    a DONE sent in pieces, and a client that shuts its side of the connection each end
    the IDLE at once, not at the 30 s re-check."""
    import socket

    r = Raw(imap_server.imap_port)
    r.cmd(b"a1 LOGIN alice@example.test alice-password")
    r.cmd(b"a2 SELECT INBOX")
    for n, pieces in enumerate(([b"DONE\r\n"], [b"DO", b"NE", b"\r\n"])):
        r.send(b"i%d IDLE\r\n" % n)
        assert r.line().startswith(b"+ ")
        started = time.monotonic()
        for piece in pieces:
            r.send(piece)
            time.sleep(0.05)
        while not (line := r.line()).startswith(b"i%d " % n):
            pass
        assert line.startswith(b"i%d OK" % n)
        assert time.monotonic() - started < 2.0
    r.send(b"i9 IDLE\r\n")
    assert r.line().startswith(b"+ ")
    started = time.monotonic()
    r.sock.shutdown(socket.SHUT_WR)
    with pytest.raises(EOFError):
        while True:
            r.line()  # (a BYE may come first)
    assert time.monotonic() - started < 2.0
    r.close()


@pytest.mark.parametrize("waiting", ["IDLE", "NOTIFY"])
def test_a_waiting_session_looks_again_every_check_interval(tmp_path, waiting):
    """A file a program writes into the Maildir itself (no notification) reaches a
    session in IDLE, or one with NOTIFY SELECTED and no command sent (RFC 5465), at its
    next look, every ``imap.idle_check_interval`` seconds."""
    with WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "idle_check_interval": 1.0}) as inst:
        inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
        inst.start()
        r = Raw(inst.imap_port)
        r.cmd(b"a1 LOGIN alice@example.test alice-password")
        assert b"* 0 EXISTS" in r.cmd(b"a2 SELECT INBOX")
        if waiting == "IDLE":
            r.send(b"a3 IDLE\r\n")
            assert r.line().startswith(b"+ ")
        else:
            assert r.cmd(b"a3 NOTIFY SET (selected (MessageNew MessageExpunge))")[-1].startswith(b"a3 OK")
        inst.drop_in("alice@example.test", b"Subject: dropped in\r\n\r\nby a program\r\n")
        started = time.monotonic()
        while (line := r.line()) != b"* 1 EXISTS":
            assert line.startswith(b"* "), line
        assert time.monotonic() - started < 5.0
        r.close()


def test_a_server_stopping_says_bye_at_once_to_a_session_in_idle(tmp_path):
    """Not at the session's next look at the index (30 s by default)."""
    with WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True}) as inst:
        inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
        inst.start()
        r = Raw(inst.imap_port)
        r.cmd(b"a1 LOGIN alice@example.test alice-password")
        r.cmd(b"a2 SELECT INBOX")
        r.send(b"a3 IDLE\r\n")
        assert r.line().startswith(b"+ ")
        started = time.monotonic()
        inst.proc.send_signal(signal.SIGTERM)
        assert r.line().startswith(b"* BYE")
        assert time.monotonic() - started < 5.0
        r.close()
        assert inst.stop() == 0


def test_uids_and_uidvalidity_survive_a_restart(tmp_path):
    with WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True}) as inst:
        inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
        inst.start()
        for i in range(3):
            send(inst, "alice@example.test", f"m{i}")
        wait_for(lambda: len(inst.messages("alice@example.test")) == 3)
        c = login(inst)
        c.select("INBOX")
        before = (c.response("UIDVALIDITY")[1], c.uid("SEARCH", None, "ALL")[1])
        c.logout()
        inst.kill9()
        inst.start()
        c = login(inst)
        c.select("INBOX")
        after = (c.response("UIDVALIDITY")[1], c.uid("SEARCH", None, "ALL")[1])
        c.logout()
        assert before == after and before[1] == [b"1 2 3"]


def test_a_large_append_and_a_too_large_nonsynchronizing_literal(imap_server):
    c = login(imap_server, "erin")
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 3000  # 3 MB, more than the read buffer
    typ, data = c.append("INBOX", None, None, big)
    assert typ == "OK"
    c.select("INBOX")
    typ, data = c.fetch("*", "(RFC822.SIZE BODY.PEEK[]<0.20>)")
    assert b"RFC822.SIZE %d" % len(big) in data[0][0] and data[0][1] == big[:20]
    c.logout()
    r = Raw(imap_server.imap_port)
    r.cmd(b"a1 LOGIN erin@example.test erin-password")
    r.send(b"a2 APPEND INBOX {99999999999+}\r\nFrom: x\r\n")
    assert r.line().startswith(b"a2 BAD [TOOBIG]")
    assert r.line().startswith(b"* BYE")
    r.close()


def test_an_idle_client_is_logged_out(tmp_path):
    with WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True, "login_timeout": 0.5}) as inst:
        inst.start()
        r = Raw(inst.imap_port)
        assert r.line().startswith(b"* BYE")
        r.close()


def test_rfc3501_section8_sample_session(imap_server):
    """The sample connection of RFC 3501 §8, with our account and twelve messages:
    each server line is matched with its variable parts as regex holes."""
    c = login(imap_server, "carol")
    c.select("INBOX")
    for i in range(12 - int(c.response("EXISTS")[1][-1] or 0)):
        c.append("INBOX", "(\\Seen)" if i < 11 else None, None,
                 b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\nFrom: Terry Gray <gray@cac.washington.edu>\r\n"
                 b"Subject: IMAP4rev1 WG mtg summary and minutes\r\nTo: imap@cac.washington.edu\r\n"
                 b"Message-Id: <B27397-0100000@cac.washington.edu>\r\nMIME-Version: 1.0\r\n"
                 b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n")
    c.logout()
    r = Raw(imap_server.imap_port)
    expect = [
        (b"a001 login carol@example.test carol-password", [rb"a001 OK .*"]),
        (b"a002 select inbox", [rb"\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft.*\)", rb"\* 12 EXISTS",
                                rb"\* \d+ RECENT", rb"\* OK \[UNSEEN 12\] .*", rb"\* OK \[PERMANENTFLAGS \(.*\\\*\)\] .*",
                                rb"\* OK \[UIDVALIDITY \d+\] .*", rb"\* OK \[UIDNEXT \d+\] .*",
                                rb"\* OK \[HIGHESTMODSEQ \d+\] .*", rb"\* OK \[MAILBOXID \(F\d+\)\] .*",
                                rb"a002 OK \[READ-WRITE\] .*"]),
        (b"a003 fetch 12 full", [rb'\* 12 FETCH \(FLAGS \([^)]*\) INTERNALDATE "[^"]+" RFC822.SIZE \d+ '
                                 rb'ENVELOPE \("Wed, 17 Jul 1996 02:23:25 -0700 \(PDT\)" "IMAP4rev1 WG mtg summary and '
                                 rb'minutes" \(\("Terry Gray" NIL "gray" "cac.washington.edu"\)\) .* '
                                 rb'"<B27397-0100000@cac.washington.edu>"\) BODY \("TEXT" "PLAIN" \("CHARSET" "US-ASCII"\) '
                                 rb'NIL NIL "7BIT" \d+ 1\)\)', rb"a003 OK .*"]),
        (b"a005 store 12 +flags \\deleted", [rb"\* 12 FETCH \(FLAGS \(\\Deleted.*\)\)", rb"a005 OK .*"]),
        (b"a006 logout", [rb"\* BYE .*", rb"a006 OK .*"]),
    ]
    for line, patterns in expect:
        got = r.cmd(line, tag=line.split(b" ")[0])
        assert len(got) == len(patterns), (line, got)
        for want, have in zip(patterns, got):
            assert re.fullmatch(want, have), (want, have)
    r.close()
