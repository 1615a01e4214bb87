"""Real IMAP clients against ``waypost serve``: Debian's mbsync (isync) syncing an account
both ways, and fetchmail fetching over IMAP.  Both are installed by ``make test``."""

from __future__ import annotations

import imaplib
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

from support.server import WaypostInstance, maildir_messages, wait_for


@pytest.fixture
def server(tmp_path):
    with WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True}) as inst:
        inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
        inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
        inst.start()
        yield inst


def send(server: WaypostInstance, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        s.sendmail("sender@example.test", [to],
                   f"From: sender@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\n{subject} body\r\n".encode())


def subject(path: Path) -> bytes:
    m = re.search(rb"^Subject: ([^\r\n]*)", path.read_bytes(), re.M)
    assert m, path
    return m.group(1)


def mbsync(server: WaypostInstance, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("mbsync")
    assert exe, "mbsync is installed by 'make test' (Debian package isync)"
    local = tmp_path / "local"
    local.mkdir(exist_ok=True)
    rc = tmp_path / "mbsyncrc"
    rc.write_text(f"""IMAPAccount wp
Host 127.0.0.1
Port {server.imap_port}
User alice@example.test
Pass alice-password
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account wp

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel c
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    out = subprocess.run([exe, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_mbsync_syncs_both_ways(server, tmp_path):
    for i in range(3):
        send(server, "alice@example.test", f"message {i}")
    wait_for(lambda: len(server.messages("alice@example.test")) == 3)
    mbsync(server, tmp_path)
    local = tmp_path / "local"
    got = maildir_messages(local / "INBOX")
    assert len(got) == 3
    assert {subject(p) for p in got} == {b"message 0", b"message 1", b"message 2"}
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()  # the special-use folders came down

    # Near-side changes go up: a new folder with a message, a flag, a deletion.
    (local / "Projects" / "cur").mkdir(parents=True)
    for sub in ("new", "tmp"):
        (local / "Projects" / sub).mkdir()
    (local / "Projects" / "cur" / "1700000000.1.local:2,S").write_bytes(
        b"From: alice@example.test\r\nSubject: written offline\r\n\r\nhi\r\n")
    first = sorted(got)[0]
    first.rename(first.parent.parent / "cur" / (first.name.split(":")[0] + ":2,F"))
    doomed = sorted(got)[1]
    doomed.rename(doomed.parent.parent / "cur" / (doomed.name.split(":")[0] + ":2,T"))
    mbsync(server, tmp_path)

    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login("alice@example.test", "alice-password")
    assert c.select("Projects")[1] == [b"1"]
    typ, data = c.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"\\Seen" in data[0][0] and data[0][1] == b"Subject: written offline\r\n\r\n"
    assert c.select("INBOX")[1] == [b"2"]  # mbsync expunged the deleted one (Expunge Both)
    typ, data = c.search(None, "FLAGGED")
    assert data == [b"1"]

    # Server-side changes come down: a delivery and an expunge.
    send(server, "alice@example.test", "after the first sync")
    wait_for(lambda: len(server.messages("alice@example.test")) == 3)
    c.store("2", "+FLAGS", "\\Deleted")
    c.expunge()
    c.logout()
    mbsync(server, tmp_path)
    subjects = sorted(subject(p) for p in maildir_messages(local / "INBOX"))
    assert subjects == [b"after the first sync", b"message 0"]


def test_fetchmail_over_imap(server, tmp_path):
    fetchmail = shutil.which("fetchmail")
    assert fetchmail, "fetchmail is installed by 'make test'"
    send(server, "bob@example.test", "fetch me")
    send(server, "bob@example.test", "fetch me too")
    wait_for(lambda: len(server.messages("bob@example.test")) == 2)
    out_dir = tmp_path / "fetched"
    out_dir.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {server.imap_port} protocol IMAP\n'
        f'  user "bob@example.test" password "bob-password"\n'
        f'  sslproto "" fetchall\n'
        f'  mda "/bin/sh -c \'cat > {out_dir}/$$$$.eml\'"\n'
    )
    rc.chmod(0o600)
    out = subprocess.run([fetchmail, "-f", str(rc), "-v", "--nosyslog", "--idfile", str(tmp_path / "ids"),
                          "--pidfile", str(tmp_path / "pid")],
                         capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout + out.stderr
    fetched = sorted(p.read_bytes() for p in out_dir.iterdir())
    assert len(fetched) == 2 and all(b"Subject: fetch me" in f for f in fetched)
    # fetchmail deletes what it fetched (no "keep"): the INBOX is empty now.
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login("bob@example.test", "bob-password")
    assert c.select("INBOX")[1] == [b"0"]
    c.logout()
