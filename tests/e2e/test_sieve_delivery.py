"""Sieve at local delivery (issue 21), through the real SMTP listener and the queue:
a list message filed into a folder, one sender rejected (a DSN), one vacation reply
per sender per period (none to a list or to Auto-Submitted mail), imap4flags seen by
IMAP, a broken script that loses nothing, and redirect loops that end."""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib

import pytest

from support.server import WaypostInstance, maildir_messages, wait_for

SCRIPT = r'''require ["fileinto", "reject", "vacation", "imap4flags", "envelope"];
# lists go to their folder, read
if exists "List-Id" {
    fileinto :flags "\\Seen" "Lists";
    stop;
}
if address :is "from" "pest@example.test" {
    reject "I do not take mail from you.";
    stop;
}
if header :contains "subject" "urgent" {
    addflag "\\Flagged";
}
vacation :days 7 :subject "Away until Monday" text:
I am away until Monday.
.
;
'''


def send(inst: WaypostInstance, sender: str, subject: str, extra: str = "", to: str = "alice@example.test") -> None:
    data = (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{abs(hash(subject))}@x>\r\n"
            f"{extra}\r\nbody\r\n").encode()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
        s.sendmail(sender, [to], data)


def parsed(paths):
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]


@pytest.fixture()
def inst(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True})
    for who in ("alice", "bob", "dave", "pest", "erin"):
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    yield inst
    inst.stop()


def test_script_files_rejects_replies_once_and_flags(inst, tmp_path):
    path = tmp_path / "main.sieve"
    path.write_text(SCRIPT)
    inst.ok("sieve", "put", "alice@example.test", "main", str(path), "--activate")
    inst.start()
    send(inst, "bob@example.test", "news", "List-Id: <news.example.test>\r\n")
    send(inst, "pest@example.test", "buy now")
    send(inst, "dave@example.test", "urgent: lunch?")
    send(inst, "dave@example.test", "lunch again?")
    send(inst, "erin@example.test", "auto", "Auto-Submitted: auto-generated\r\n")
    inbox = wait_for(lambda: len(m := inst.messages("alice@example.test")) == 3 and m, what="three in INBOX")
    assert sorted(str(m["Subject"]) for m in parsed(inbox)) == ["auto", "lunch again?", "urgent: lunch?"]
    lists = maildir_messages(inst.mailbox("alice@example.test") / ".Lists")
    assert [str(m["Subject"]) for m in parsed(lists)] == ["news"]
    # The reject: a DSN (5.7.1, with the script's reason) to the sender.
    [dsn] = parsed(wait_for(lambda: inst.messages("pest@example.test"), what="the rejection"))
    text = dsn.as_string()
    assert "5.7.1" in text and "I do not take mail from you." in text
    # One vacation reply to dave, though he wrote twice; none to erin (auto-submitted)
    # nor to bob (a list message, filed before the vacation).
    [reply] = parsed(wait_for(lambda: inst.messages("dave@example.test"), what="the vacation reply"))
    assert str(reply["Subject"]) == "Away until Monday"
    assert str(reply["Auto-Submitted"]).startswith("auto-replied")
    assert str(reply["From"]) == "alice@example.test"
    assert "I am away until Monday." in reply.get_content()
    inst.expect_log(r'event=vacation-skipped .*sender=<dave@example.test> reason="replied within the period"')
    inst.expect_log(r"event=vacation-skipped .*sender=<erin@example.test> reason=auto-submitted")
    assert inst.messages("erin@example.test") == [] and inst.messages("bob@example.test") == []
    # The reply itself came from the null sender (RFC 5230 §5.1).
    assert reply["Return-Path"] == "<>"
    # imap4flags: the list message is \Seen, the urgent one \Flagged.
    c = imaplib.IMAP4("127.0.0.1", inst.imap_port)
    c.login("alice@example.test", "pw")
    c.select("Lists")
    assert b"\\Seen" in c.fetch("1", "(FLAGS)")[1][0]
    c.select("INBOX")
    typ, data = c.search(None, "FLAGGED")
    assert len(data[0].split()) == 1
    c.logout()


def test_broken_script_keeps_mail_and_logs(inst):
    inst.start()
    # Stored behind the checker's back (as an older version might have): never loses mail.
    db = inst.db()  # the instance's engine (SQLite or PostgreSQL)
    try:
        db.sieve_put("example.test", "alice", "bad", 'require "fileinto";\nfileinto "A"\nkeep;')
        db.sieve_activate("example.test", "alice", "bad")
    finally:
        db.close()
    send(inst, "bob@example.test", "still here")
    wait_for(lambda: len(inst.messages("alice@example.test")) == 1, what="kept in INBOX")
    inst.expect_log(r"event=sieve-error .*line 3")


def test_redirect_loop_between_two_accounts_ends(inst, tmp_path):
    for me, other in (("alice", "bob"), ("bob", "alice")):
        p = tmp_path / f"{me}.sieve"
        p.write_text(f'redirect "{other}@example.test";\n')
        inst.ok("sieve", "put", f"{me}@example.test", "fwd", str(p), "--activate")
    inst.start()
    send(inst, "dave@example.test", "ping-pong")
    wait_for(lambda: len(inst.messages("alice@example.test")) == 1, what="kept where the loop closed")
    inst.expect_log(r"event=sieve-loop")
    assert inst.messages("bob@example.test") == []
    [kept] = parsed(inst.messages("alice@example.test"))
    assert kept.get_all("Delivered-To")[-2:] == ["bob@example.test", "alice@example.test"]


def test_cli_refuses_bad_scripts_with_line_and_column(inst, tmp_path):
    p = tmp_path / "bad.sieve"
    p.write_text('require "fileinto";\nif header :contains "subject" "x" {\n  fileinto "A"\n}\n')
    out = inst.cli("sieve", "put", "alice@example.test", "bad", str(p))
    assert out.exit_code == 1 and "line 4, column 1" in out.output
    assert inst.cli("sieve", "check", str(p)).exit_code == 1
    p.write_text('require "fileinto";\nfileinto "A";\n')
    assert "requires fileinto" in inst.ok("sieve", "check", str(p))
    inst.ok("sieve", "put", "alice@example.test", "good", str(p))
    assert '"active": false' in inst.ok("sieve", "list", "alice@example.test", "--json")
    assert inst.ok("sieve", "get", "alice@example.test", "good") == p.read_text()
    inst.ok("sieve", "activate", "alice@example.test", "good")
    assert inst.cli("sieve", "delete", "alice@example.test", "good").exit_code == 1  # active
    inst.ok("sieve", "activate", "alice@example.test", "--none")
    inst.ok("sieve", "delete", "alice@example.test", "good")
    assert inst.ok("sieve", "list", "alice@example.test", "--json").strip() == "[]"


def test_two_workers_one_vacation_reply_and_script_changes_seen_by_both(tmp_path):
    import concurrent.futures

    inst = WaypostInstance(tmp_path / "data", server={"workers": 2})
    for who in ("alice", "dave"):
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    p = tmp_path / "a.sieve"
    p.write_text('require ["vacation", "fileinto"];\nfileinto "A";\nvacation "away";\n')
    inst.ok("sieve", "put", "alice@example.test", "main", str(p), "--activate")
    with inst:
        inst.start()

        def burst(tag: str) -> None:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: send(inst, "dave@example.test", f"{tag}{i}"), range(8)))

        burst("first")
        folder_a = inst.mailbox("alice@example.test") / ".A"
        wait_for(lambda: len(maildir_messages(folder_a)) == 8, timeout=30, what="eight filed into A")
        # Eight concurrent sessions over two worker processes: one reply to dave in all.
        wait_for(lambda: inst.messages("dave@example.test"), what="the reply")
        assert len(inst.log_lines(r'event=vacation-skipped .*reason="replied within the period"')) == 7
        assert len(inst.messages("dave@example.test")) == 1
        # A new script (same name) is used by every worker from the next message on.
        p.write_text('require "fileinto";\nfileinto "B";\n')
        inst.ok("sieve", "put", "alice@example.test", "main", str(p))
        burst("second")
        folder_b = inst.mailbox("alice@example.test") / ".B"
        wait_for(lambda: len(maildir_messages(folder_b)) == 8, timeout=30, what="eight filed into B")
        assert len(maildir_messages(folder_a)) == 8
        # Removed and made again under the same name: no script (the cached one of the
        # old account is not used by either worker).
        inst.ok("account", "remove", "alice@example.test")
        inst.ok("account", "add", "alice@example.test", "--password", "pw")
        burst("third")
        wait_for(lambda: len(inst.messages("alice@example.test")) == 8, timeout=30, what="eight in the new INBOX")
        # The old owner's folders went aside with the removal (test_account_reuse.py).
        assert not maildir_messages(folder_b)
        [kept] = folder_b.parent.parent.glob(".removed.alice.*")
        assert len(maildir_messages(kept / ".B")) == 8 and len(maildir_messages(kept / ".A")) == 8


def test_editheader_changes_what_is_stored(inst, tmp_path):
    p = tmp_path / "edit.sieve"
    p.write_text('require ["editheader"];\naddheader "X-Sieve" "checked";\ndeleteheader "X-Spam-Score";\n')
    inst.ok("sieve", "put", "alice@example.test", "edit", str(p), "--activate")
    inst.start()
    send(inst, "bob@example.test", "edited", "X-Spam-Score: 9.9\r\n")
    [stored] = wait_for(lambda: inst.messages("alice@example.test"), what="stored")
    [m] = parsed([stored])
    assert m["X-Sieve"] == "checked" and m["X-Spam-Score"] is None and str(m["Subject"]) == "edited"
    assert stored.read_bytes().startswith(b"Return-Path: <bob@example.test>\r\n")
