"""The spam filter: Debian's Rspamd, started by the test on 127.0.0.1 (its own
configuration directory, DNS through the test DNS server, no Redis), asked by Waypost
after DATA (``filter.rspamd``): GTUBE is refused with 550, a clean message is delivered
with Rspamd's verdict fields, a forged X-Spam is removed; a filter that cannot be
reached or does not answer in time gets ``filter.rspamd_failure``."""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import time
import urllib.request

import pytest

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, free_port, maildir_messages, wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(subject: str, body: str = "Hello Bob, see you tomorrow at ten.", extra: str = "") -> bytes:
    return (f"{extra}From: Alice <alice@outside.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@outside.test>\r\n"
            f"\r\n{body}\r\n").encode()


@pytest.fixture(scope="module")
def dns():
    with TestDNSServer({"outside.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]}}) as server:
        yield server


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory, dns):
    exe = shutil.which("rspamd")
    assert exe, "rspamd is installed by 'make test' (Debian package rspamd)"
    base = tmp_path_factory.mktemp("rspamd")
    port = free_port()
    over = base / "conf" / "override.d"
    over.mkdir(parents=True)
    for d in ("db", "run", "log"):
        (base / d).mkdir()
    (over / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{port}";\ncount = 1;\n')
    for worker in ("controller", "proxy", "fuzzy"):
        (over / f"worker-{worker}.inc").write_text("enabled = false;\n")
    (over / "options.inc").write_text(f'dns {{ nameserver = ["{dns.nameserver}"]; timeout = 1s; retransmits = 1; }}\n'
                                      "disable_hyperscan = true;\n")
    (over / "logging.inc").write_text('type = "console";\nlevel = "error";\n')
    log = open(base / "rspamd.out", "wb")
    proc = subprocess.Popen([exe, "-f", "-i", "--insecure", "-c", "/etc/rspamd/rspamd.conf",
                             f"--var=LOCAL_CONFDIR={base / 'conf'}", f"--var=DBDIR={base / 'db'}",
                             f"--var=RUNDIR={base / 'run'}", f"--var=LOGDIR={base / 'log'}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if proc.poll() is not None:
            raise AssertionError("rspamd exited:\n" + (base / "rspamd.out").read_text())
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=120, interval=0.5, what="rspamd to answer /ping")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _instance(base, dns, url: str, **filter_settings) -> WaypostInstance:
    inst = WaypostInstance(base, dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                           relay={"trusted_networks": []}, filter={"rspamd": url, **filter_settings})
    inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
    return inst


@pytest.fixture(scope="module")
def server(tmp_path_factory, dns, rspamd):
    with _instance(tmp_path_factory.mktemp("rspamd-waypost") / "data", dns, rspamd) as inst:
        inst.start()
        yield inst


def send(inst: WaypostInstance, data: bytes):
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=60) as c:
        c.ehlo("mx.outside.test")
        return c.sendmail("alice@outside.test", ["bob@example.test"], data)


def delivered(inst: WaypostInstance, subject: str, mailbox: str = "INBOX") -> str:
    root = inst.mailbox("bob@example.test")
    if mailbox != "INBOX":
        root = root / f".{mailbox}"

    def find():
        for p in maildir_messages(root):
            data = p.read_bytes()
            if f"{subject}".encode() in data:
                return data.split(b"\r\n\r\n", 1)[0].decode()
        return None

    return wait_for(find, what=f"{subject!r} in bob's {mailbox}")


def test_gtube_is_refused(server):
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(server, message("buy now", body=GTUBE))
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1")
    server.expect_log(r"event=rspamd .*action=reject .*symbols=GTUBE.*result=refused")


def test_a_clean_message_is_delivered_with_the_verdict(server):
    forged = "X-Spam: No\r\nX-Spamd-Result: default: False [-100.00 / 15.00]\r\n"
    assert send(server, message("lunch tomorrow", extra=forged)) == {}
    head = delivered(server, "lunch tomorrow")
    assert "X-Spamd-Result: default: False [" in head and "action=no action" in head
    assert "[-100.00" not in head and head.count("X-Spamd-Result:") == 1
    assert head.count("X-Spam: No") == 1
    server.expect_log(r"event=rspamd .*action=\"no action\" .*result=accepted")


def test_rspamd_unreachable_fail_open_and_fail_closed(tmp_path, dns):
    closed_port = free_port()  # nothing listens there
    inst = _instance(tmp_path / "open", dns, f"http://127.0.0.1:{closed_port}", rspamd_timeout=2.0)
    with inst:
        inst.start()
        assert send(inst, message("unscanned")) == {}
        head = delivered(inst, "unscanned")
        assert "X-Spamd-Result" not in head
        inst.expect_log(r"event=rspamd-unavailable .*action=accept-unscanned")
    # A filter that takes the connection and never answers: the time-out, then 451.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        inst = _instance(tmp_path / "closed", dns, f"http://127.0.0.1:{port}", rspamd_timeout=1.0,
                         rspamd_failure="closed")
        with inst:
            inst.start()
            started = time.monotonic()
            with pytest.raises(smtplib.SMTPDataError) as e:
                send(inst, message("deferred"))
            assert e.value.smtp_code == 451 and e.value.smtp_error.startswith(b"4.7.1")
            assert time.monotonic() - started < 10
            inst.expect_log(r"event=rspamd-unavailable .*no answer within 1 s.*action=defer")
