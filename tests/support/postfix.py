"""A private Postfix instance for tests (a real peer, STYLE point 10c), set up the way
bench/smtp_accept sets up its own: its own config_directory, queue_directory and
data_directory, listening on 127.0.0.1 only, nothing chrooted, and stopped at the end.
A system Postfix is never touched.  Needs root and Debian's ``postfix``.

Mail for ``domain`` is handed to ``transport`` (``lmtp:unix:/path``,
``lmtp:inet:127.0.0.1:PORT``, ``smtp:[127.0.0.1]:PORT``); every recipient in it is
taken at RCPT time (the next hop decides).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PrivatePostfix"]


def _run(cmd: list[str], timeout: float = 60) -> None:
    # Postfix makes its queue directories with the umask it is given: they must be
    # readable by the postfix user whatever the test runner's umask.
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=lambda: os.umask(0o022))
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


class PrivatePostfix:
    def __init__(self, base: Path, *, port: int, domain: str, transport: str) -> None:
        self.dir = base
        self.conf = base / "conf"
        self.queue = base / "queue"
        self.data = base / "data"
        self.maillog = base / "maillog"
        self.port = port
        self.domain = domain
        self.transport = transport
        self.master_pid: int | None = None

    def __enter__(self) -> "PrivatePostfix":
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def _setup(self) -> None:
        for d in (self.dir, self.conf, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        shutil.copy("/etc/postfix/main.cf", self.conf / "main.cf")
        shutil.copy("/etc/postfix/master.cf", self.conf / "master.cf")
        shutil.chown(self.data, "postfix", "postfix")
        lines = []
        for line in (self.conf / "master.cf").read_text().splitlines():
            fields = line.split()
            if line[:1] not in ("#", " ", "\t", "") and len(fields) >= 8 and fields[1] == "inet":
                if fields[0] == "smtp" and fields[7] == "smtpd":
                    line = f"127.0.0.1:{self.port}" + line[len(fields[0]):]
                else:
                    line = "#" + line
            lines.append(line)
        (self.conf / "master.cf").write_text("\n".join(lines) + "\n")
        _run(["postconf", "-c", str(self.conf), "-F", "*/*/chroot = n"])
        settings = {
            "queue_directory": str(self.queue),
            "data_directory": str(self.data),
            "syslog_name": "postfix-waypost-test",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.dir),
            "myhostname": "mta.postfix.test",
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "localhost",
            "mynetworks": "127.0.0.0/8",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "relayhost": "",
            "alias_maps": "",
            "alias_database": "",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_maps": "",
            "virtual_transport": self.transport,
            "smtpd_reject_unlisted_recipient": "no",
            "smtpd_client_restrictions": "",
            "smtpd_helo_restrictions": "",
            "smtpd_sender_restrictions": "",
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "lmtp_tls_security_level": "none",
            "biff": "no",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "disable_dns_lookups": "yes",
            "smtpd_peername_lookup": "no",
        }
        _run(["postconf", "-c", str(self.conf), "-e", *(f"{k}={v}" for k, v in settings.items())])
        _run(["postfix", "-c", str(self.conf), "check"])

    def start(self) -> None:
        self._setup()
        _run(["postfix", "-c", str(self.conf), "start"])
        pidfile = self.queue / "pid" / "master.pid"
        deadline = time.monotonic() + 30
        while self.master_pid is None:
            try:
                self.master_pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postfix did not start:\n{self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.master_pid is None:
            return
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True, timeout=60,
                       preexec_fn=lambda: os.umask(0o022))
        self.master_pid = None
