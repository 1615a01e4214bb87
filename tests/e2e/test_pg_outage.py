"""The database goes away under open sessions (a PostgreSQL restart): every listener
answers "try again later" in its protocol, keeps its sessions, logs one line, and
never a traceback; once the database is back the same sessions carry on.

A PostgreSQL server of the test's own (support/pgprivate.py): the machine's
127.0.0.1:5432 is never stopped.  Found by trying it: a selected IMAP session was cut
off with ``* BYE Internal error`` (the untagged updates after a command met the
outage), an IDLE session ended, and WebUser and the API answered 500 with a traceback."""

from __future__ import annotations

import base64
import ftplib
import imaplib
import json
import smtplib
import socket
import urllib.error
import urllib.request

import pytest

from support.pgprivate import PrivatePostgres, available
from support.server import WaypostInstance, free_port, wait_for
from support.tls import client_context

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_sessions_survive_a_database_outage_and_every_listener_says_try_later(tmp_path):
    with PrivatePostgres() as pgs:
        http_port, sieve_port = free_port(), free_port()
        inst = WaypostInstance(tmp_path / "data", database=pgs.new_database(), server={"workers": 2},
                               listen={"http": f"127.0.0.1:{http_port}", "managesieve": f"127.0.0.1:{sieve_port}"},
                               managesieve={"plaintext_without_tls": True},
                               # The IDLE session looks at the index during the outage (a
                               # look every 2 s here, 30 s by default): nothing wakes it.
                               imap={"idle_check_interval": 2.0})
        inst.ok("account", "add", "alice@example.test", "--password", "Secret-pass-1")
        token = inst.ok("token", "add", "probe").splitlines()[0]
        with inst.start():
            with smtplib.SMTP("127.0.0.1", inst.smtp_port) as s:
                s.sendmail("x@ext.test", ["alice@example.test"], "Subject: one\r\n\r\nbody\r\n")
            wait_for(lambda: len(inst.messages("alice@example.test")) == 1, what="the first delivery")
            web = f"http://127.0.0.1:{http_port}"
            assert _get(web + "/api/v1/domains", token)[0] == 200

            selected = imaplib.IMAP4("127.0.0.1", inst.imap_port)
            selected.starttls(client_context())
            selected.login("alice@example.test", "Secret-pass-1")
            assert selected.select("INBOX") == ("OK", [b"1"])
            idler = imaplib.IMAP4("127.0.0.1", inst.imap_port)
            idler.starttls(client_context())
            idler.login("alice@example.test", "Secret-pass-1")
            idler.select("INBOX")
            idler.send(b"I1 IDLE\r\n")
            assert idler.readline().startswith(b"+ ")

            pgs.stop("fast")
            try:
                with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=15) as s:
                        s.sendmail("x@ext.test", ["alice@example.test"], "Subject: two\r\n\r\nbody\r\n")
                assert refused.value.recipients["alice@example.test"][0] == 451
                # The selected session stays: each command is answered, none cut it off.
                assert selected.noop()[0] == "OK"
                for typ, data in (selected.fetch("1", "(FLAGS BODY.PEEK[])"), selected.store("1", "+FLAGS", "\\Seen"),
                                  selected.search(None, "SUBJECT", "one"), selected.status("INBOX", "(MESSAGES)")):
                    assert typ == "NO" and b"[UNAVAILABLE]" in data[-1], (typ, data)
                status, headers, body = _get(web + "/")
                assert status == 503 and headers.get("retry-after"), (status, body[:300])
                status, headers, body = _get(web + "/api/v1/domains", token)
                assert status == 503 and json.loads(body)["error"]["code"] == "unavailable"
                inst.expect_log(r"event=storage-unavailable .*path=/api/v1/domains")
                # FTP: 421 to PASS (RFC 959), not a dropped connection or a failed login.
                ftp = ftplib.FTP_TLS(context=client_context(), timeout=15)
                ftp.connect("127.0.0.1", inst.ftp_port)
                ftp.auth()
                with pytest.raises(ftplib.error_temp, match="^421"):
                    ftp.login("alice@example.test", "Secret-pass-1")
                ftp.close()
                # ManageSieve: NO (TRYLATER) (RFC 5804 §1.3), the session goes on.
                with socket.create_connection(("127.0.0.1", sieve_port), timeout=15) as sv:
                    sv_file = sv.makefile("rb")
                    while not sv_file.readline().startswith(b"OK"):
                        pass
                    cred = base64.b64encode(b"\0alice@example.test\0Secret-pass-1").decode()
                    sv.sendall(f'AUTHENTICATE "PLAIN" "{cred}"\r\n'.encode())
                    assert sv_file.readline().startswith(b"NO (TRYLATER)")
                    sv.sendall(b"NOOP\r\n")
                    assert sv_file.readline().startswith(b"OK")
                inst.expect_log(r"event=storage-unavailable .*command=IDLE", timeout=20)  # it looked, and idles on
            finally:
                pgs.start()

            # Back: the same sessions go on, the IDLE one is told of the new message.
            def delivered() -> bool:
                try:
                    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=15) as s:
                        s.sendmail("x@ext.test", ["alice@example.test"], "Subject: three\r\n\r\nbody\r\n")
                    return True
                except smtplib.SMTPRecipientsRefused:
                    return False
            wait_for(delivered, timeout=20, interval=0.5, what="SMTP accepting again")
            idler.sock.settimeout(20)
            assert idler.readline() == b"* 2 EXISTS\r\n"
            idler.send(b"DONE\r\n")
            lines = [idler.readline() for _ in range(2)]
            assert lines[-1].startswith(b"I1 OK") or lines[0].startswith(b"I1 OK"), lines
            assert selected.noop()[0] == "OK" and selected.untagged_responses.get("EXISTS", [b""])[-1] == b"2"
            typ, data = selected.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert typ == "OK" and b"three" in data[0][1], data
            assert _get(web + "/api/v1/domains", token)[0] == 200
            selected.logout()
            idler.logout()
        assert not [line for line in inst.output if "Traceback" in line], "\n".join(inst.output)
