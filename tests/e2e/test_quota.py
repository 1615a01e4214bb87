"""Quotas (issue 21) through the real listeners: GETQUOTAROOT and [OVERQUOTA] with
imaplib, 452 4.2.2 at RCPT with smtplib, the bounce (5.2.2) of mail that stays over
quota past the queue's lifetime, and usage kept exact by two workers at once."""

from __future__ import annotations

import concurrent.futures
import email
import imaplib
import json
import re
import smtplib

import pytest

from support.server import WaypostInstance, wait_for

KB = 1024


def body(n: int, subject: str = "filler") -> bytes:
    head = f"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n\r\n".encode()
    filler = (b"x" * 78 + b"\r\n") * n
    cut = filler[: n - len(head) - 2]
    if cut.endswith(b"\r"):
        cut = cut[:-1] + b"x"
    return head + cut + b"\r\n"


def usage(inst: WaypostInstance, address: str) -> dict:
    [row] = json.loads(inst.ok("quota", "show", address, "--json"))
    return row


def imap(inst: WaypostInstance, who: str = "alice") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", inst.imap_port)
    c.login(f"{who}@example.test", "pw")
    return c


@pytest.fixture()
def inst(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True},
                           queue={"poll_interval": 0.2, "retry_intervals": [1], "expire_after": 4})
    for who in ("alice", "bob"):
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    yield inst
    inst.stop()


def test_limits_usage_and_imap_quota_commands(inst):
    inst.ok("domain", "set", "example.test", "--quota", "1G", "--quota-messages", "1000")
    inst.ok("account", "set", "alice@example.test", "--quota", "20K", "--quota-messages", "4")
    inst.start()
    c = imap(inst)
    typ, caps = c.capability()
    assert b"QUOTA" in caps[0].split() and b"QUOTA=RES-STORAGE" in caps[0].split()
    assert c.append("INBOX", None, None, body(5 * KB))[0] == "OK"
    typ, data = c.getquotaroot("INBOX")
    assert typ == "OK"
    assert data[0] == [b'INBOX ""']
    assert data[1] == [b'"" (STORAGE 5 20 MESSAGE 1 4)']
    typ, data = c.getquota('""')
    assert typ == "OK" and data == [b'"" (STORAGE 5 20 MESSAGE 1 4)']
    # SETQUOTA is the administrator's: refused with NOPERM, nothing changed.
    typ, data = c._simple_command("SETQUOTA", '""', "(STORAGE 99999)")
    assert typ == "NO" and data[0].startswith(b"[NOPERM]"), data
    assert usage(inst, "alice@example.test")["storage_limit"] == 20 * KB
    # An unknown root; bob (the domain's default) has his own root.
    assert c.getquota("other")[0] == "NO"
    b = imap(inst, "bob")
    assert b.getquotaroot("INBOX")[1][1] == [b'"" (STORAGE 0 1048576 MESSAGE 0 1000)']
    b.logout()
    # APPEND past the storage limit: NO [OVERQUOTA], nothing stored.
    typ, data = c.append("INBOX", None, None, body(16 * KB))
    assert typ == "NO" and b"[OVERQUOTA]" in data[0], data
    assert usage(inst, "alice@example.test")["messages"] == 1
    # COPY past the message limit: NO [OVERQUOTA]; MOVE within the account is fine.
    for _ in range(2):
        assert c.append("INBOX", None, None, body(1 * KB))[0] == "OK"
    c.create("Archive")
    c.select("INBOX")
    typ, data = c.copy("1:3", "Archive")
    assert typ == "NO" and b"[OVERQUOTA]" in data[0], data
    typ, data = c._simple_command("MOVE", "1:3", "Archive")
    assert typ == "OK", data
    assert usage(inst, "alice@example.test")["messages"] == 3
    # STATUS DELETED-STORAGE (RFC 9208 §4.2), in KiB.
    c.select("Archive")
    c.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = c.status("Archive", "(DELETED DELETED-STORAGE)")
    assert typ == "OK" and re.search(rb"DELETED 1 DELETED-STORAGE 5\b", data[0]), data
    c.expunge()
    row = usage(inst, "alice@example.test")
    assert (row["messages"], row["storage"]) == (2, sum(len(body(1 * KB)) for _ in range(2)))
    c.logout()


def test_full_account_refused_at_rcpt_then_accepted_after_expunge(inst):
    inst.ok("account", "set", "alice@example.test", "--quota-messages", "2")
    inst.start()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        for i in range(2):
            s.sendmail("bob@example.test", ["alice@example.test"], body(600, f"m{i}"))
    wait_for(lambda: usage(inst, "alice@example.test")["messages"] == 2, what="two stored")
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.ehlo()
        s.mail("bob@example.test")
        code, msg = s.rcpt("alice@example.test")
        assert (code, msg[:5]) == (452, b"4.2.2"), (code, msg)
        # Another recipient of the same transaction is not affected.
        assert s.rcpt("bob@example.test")[0] == 250
        s.rset()
    inst.expect_log(r'event=rcpt-refused .*reply="452 4\.2\.2"')
    c = imap(inst)
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("bob@example.test", ["alice@example.test"], body(600, "after"))
    wait_for(lambda: len(inst.messages("alice@example.test")) == 2, what="delivered after room was made")
    c.logout()


def test_message_that_stays_over_quota_bounces_with_5_2_2(inst):
    # Room at RCPT (1K left), but the message is bigger: deferred with 452 4.2.2,
    # retried, and bounced to the sender with 5.2.2 when the queue's lifetime ends.
    inst.ok("account", "set", "alice@example.test", "--quota", "4K")
    inst.start()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("bob@example.test", ["alice@example.test"], body(3 * KB, "fits"))
    wait_for(lambda: usage(inst, "alice@example.test")["messages"] == 1, what="first stored")
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        # With SIZE= declared (smtplib.sendmail does), RCPT knows it cannot fit:
        with pytest.raises(smtplib.SMTPRecipientsRefused, match="4.2.2"):
            s.sendmail("bob@example.test", ["alice@example.test"], body(2 * KB, "too big"))
        # without SIZE it is taken, and found too big at delivery.
        s.ehlo()
        assert s.mail("bob@example.test")[0] == 250
        assert s.rcpt("alice@example.test")[0] == 250
        assert s.data(body(2 * KB, "too big"))[0] == 250
    inst.expect_log(r'event=deferred .*reply="452 4\.2\.2')
    inst.expect_log(r"event=expired", timeout=20)
    dsn = wait_for(lambda: [p for p in inst.messages("bob@example.test")], timeout=20, what="the bounce")
    text = dsn[0].read_text()
    assert re.search(r"^Status: 5\.2\.2", text, re.M), text
    assert len(inst.messages("alice@example.test")) == 1


def test_zero_quota_refuses_everything_and_unlimited_overrides_domain(inst):
    inst.ok("domain", "set", "example.test", "--quota", "0")
    inst.ok("account", "set", "bob@example.test", "--quota", "unlimited")
    out = inst.cli("account", "set", "alice@example.test", "--quota", "lots")
    assert out.exit_code != 0 and "expected a size" in out.output
    big = inst.cli("account", "set", "bob@example.test", "--quota", "900000T")
    assert big.exit_code == 0 and "more than the file system holds" in big.output
    inst.ok("account", "set", "bob@example.test", "--quota", "unlimited")
    inst.start()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.ehlo()
        s.mail("x@outside.example")
        assert s.rcpt("alice@example.test")[0] == 452
        assert s.rcpt("bob@example.test")[0] == 250
        s.rset()
    c = imap(inst)
    typ, data = c.append("INBOX", None, None, body(200))
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    c.logout()
    b = imap(inst, "bob")
    assert b.getquotaroot("INBOX")[1][0] == [b"INBOX"]  # no root: unlimited
    b.logout()


def test_usage_exact_with_two_workers(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True}, server={"workers": 2})
    inst.ok("account", "add", "alice@example.test", "--password", "pw")
    inst.ok("account", "set", "alice@example.test", "--quota", "1G")
    with inst:
        inst.start()

        def send(i: int) -> None:
            with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
                for j in range(10):
                    s.sendmail("x@outside.example", ["alice@example.test"], body(500 + 37 * i + j, f"{i}-{j}"))

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(send, range(6)))
        wait_for(lambda: usage(inst, "alice@example.test")["messages"] == 60, timeout=30, what="60 counted")
        files = inst.messages("alice@example.test")
        assert len(files) == 60
        assert usage(inst, "alice@example.test")["storage"] == sum(p.stat().st_size for p in files)
        # Expunge half from two sessions at once (each worker may take one).
        cs = [imap(inst), imap(inst)]
        for c, seq in zip(cs, ("1:15", "16:30")):
            c.select("INBOX")
            c.store(seq, "+FLAGS", "(\\Deleted)")
        for c in cs:
            c.expunge()
            c.logout()
        files = inst.messages("alice@example.test")
        row = usage(inst, "alice@example.test")
        assert (row["messages"], row["storage"]) == (30, sum(p.stat().st_size for p in files))
        assert inst.ok("quota", "recount", "alice@example.test").startswith("alice@example.test")
        assert usage(inst, "alice@example.test") == row


def test_the_90_percent_warning_is_sent_when_it_fits_and_never_queued_when_not(inst):
    """At 90 % the user gets one warning in INBOX; an account so full that the warning
    itself would not fit gets none: nothing waits in the queue refused 452 4.2.2 (the
    bug: it sat there until it expired), and no claim is taken, so that the next
    delivery with room warns."""
    inst.ok("account", "set", "alice@example.test", "--quota", "20K")
    inst.ok("account", "set", "bob@example.test", "--quota", "40K")
    inst.start()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("x@outside.example", ["alice@example.test"], body(19 * KB + 700, "nearly full"))
        s.sendmail("x@outside.example", ["bob@example.test"], body(37 * KB, "nearly full"))
    inst.expect_log(r"event=quota-warning-skipped account=alice@example\.test .*reason=no-room")
    warned = wait_for(lambda: [p for p in inst.messages("bob@example.test") if b"% full" in p.read_bytes()],
                      what="bob's warning")
    assert re.search(rb"Subject: Your mailbox is 9\d% full", warned[0].read_bytes())
    assert len(inst.messages("alice@example.test")) == 1
    # (The warning's queue entry goes a moment after its file is stored: waited for. A
    # warning refused 452 would wait in the queue for its retry, minutes.)
    wait_for(lambda: json.loads(inst.ok("queue", "list", "--json")) == [], what="an empty queue")
    assert not inst.log_lines(r"event=deferred .*alice")
    # Room made, and mail that takes alice to 90 % again: now the warning fits.
    c = imap(inst)
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.logout()
    inst.ok("account", "set", "alice@example.test", "--quota", "40K")
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail("x@outside.example", ["alice@example.test"], body(37 * KB, "again"))
    wait_for(lambda: [p for p in inst.messages("alice@example.test") if b"% full" in p.read_bytes()],
             what="alice's warning")
