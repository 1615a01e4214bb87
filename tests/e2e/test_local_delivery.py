"""Local delivery as users see it: the fields it adds, checked with the clients that
read them (Debian's fetchmail), and delivery that is never made twice."""

from __future__ import annotations

import email
import email.policy
import shutil
import smtplib
import subprocess
from pathlib import Path

from support.server import WaypostInstance, wait_for


def test_unified_domain_account_keeps_each_recipient_for_fetchmail(tmp_path):
    # Issue 13 item 18: the seed's Unified Domain-Wide Account collects a whole domain
    # in one account; the customer's fetchmail (multidrop, ``envelope``) must tell who
    # each message was for, as it does with Postfix's X-Original-To and Delivered-To.
    inst = WaypostInstance(tmp_path / "data", domain="company.dom", pop3={"plaintext_without_tls": True})
    inst.ok("account", "add", "custb.dom@company.dom", "--password", "custb-password")
    rt = tmp_path / "router.txt"
    rt.write_text("<*@custb.dom> = custb.dom@company.dom\n")
    inst.ok("router", "import", str(rt))
    inst.start()
    with smtplib.SMTP("127.0.0.1", inst.smtp_port) as c:
        c.sendmail("x@outside.example", ["bob@custb.dom"], b"Subject: for bob\r\n\r\nx\r\n")
        c.sendmail("x@outside.example", ["carol@custb.dom"], b"Subject: for carol\r\n\r\nx\r\n")
        c.sendmail("x@outside.example", ["dave@custb.dom"], b"Subject: for dave\r\n\r\nx\r\n")
    files = wait_for(lambda: len(m := inst.messages("custb.dom@company.dom")) == 3 and m, what="three copies")
    heads = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
    assert sorted(h["X-Original-To"] for h in heads) == ["bob@custb.dom", "carol@custb.dom", "dave@custb.dom"]
    assert {h["Delivered-To"] for h in heads} == {"custb.dom@company.dom"}
    # Postfix's order: Return-Path, X-Original-To, Delivered-To, then the message.
    first = files[0].read_bytes().split(b"\r\n")[:3]
    assert [f.split(b":")[0] for f in first] == [b"Return-Path", b"X-Original-To", b"Delivered-To"]

    fetchmail = shutil.which("fetchmail")
    assert fetchmail, "fetchmail is installed by 'make test' (Debian package fetchmail)"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {inst.pop3_port} protocol POP3 no dns envelope "X-Original-To"\n'
        f'  localdomains custb.dom\n'
        f'  user "custb.dom@company.dom" there with password "custb-password" to * here\n'
        f'  sslproto "" smtpaddress custb.dom\n')
    rc.chmod(0o600)
    out_file = tmp_path / "out.bsmtp"
    out = subprocess.run([fetchmail, "-f", str(rc), "-v", "--nosyslog", "--idfile", str(tmp_path / "ids"),
                          "--pidfile", str(tmp_path / "pid"), "--bsmtp", str(out_file)],
                         capture_output=True, text=True, timeout=60,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    bsmtp = out_file.read_text()
    rcpts = sorted(line.split(":", 1)[1].strip("<> ") for line in bsmtp.splitlines() if line.startswith("RCPT TO:"))
    assert rcpts == ["bob@custb.dom", "carol@custb.dom", "dave@custb.dom"], bsmtp
    inst.stop()
