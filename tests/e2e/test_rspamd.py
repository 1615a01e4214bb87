"""The spam filter: Debian's Rspamd, started by the test on 127.0.0.1 (its own
configuration directory, DNS through the test DNS server, no Redis), asked by Waypost
after DATA (``filter.rspamd``): GTUBE is refused with 550, a clean message is delivered
with Rspamd's verdict fields, a forged X-Spam is removed; Rspamd's "add header" and
"rewrite subject" actions (its thresholds set by the test, reached by two multimap
rules of its own) put the message into Junk, the second with Rspamd's Subject, as an
IMAP client sees it; a filter that cannot be reached or does not answer in time gets
``filter.rspamd_failure``."""

from __future__ import annotations

import email
import email.policy
import imaplib
import shutil
import smtplib
import socket
import subprocess
import time
import urllib.request

import pytest

from support.dnsserver import TestDNSServer
from support.server import WaypostInstance, free_port, maildir_messages, wait_for
from support.tls import client_context

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

#: Rspamd's thresholds in this test (override.d/actions.conf): far above what a plain
#: message scores here, reached only by the multimap rules below; greylisting off.
ACTIONS = ('reject = 150;\nrewrite_subject = 100;\nadd_header = 50;\ngreylist = null;\n'
           'subject = "[SPAM] %s";\n')
#: A Subject containing the word gets the symbol's score (local.d/multimap.conf).
MULTIMAP = {"WAYPOST_ADD_HEADER": ("add-header-word", 60), "WAYPOST_REWRITE_SUBJECT": ("rewrite-subject-word", 110)}


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
    (over / "actions.conf").write_text(ACTIONS)
    local = base / "conf" / "local.d"
    local.mkdir()
    rules = []
    for symbol, (word, score) in MULTIMAP.items():
        (local / f"{symbol}.map").write_text(f"/{word}/i\n")
        rules.append(f'{symbol} {{ type = "header"; header = "Subject"; regexp = true; '
                     f'map = "{local / (symbol + ".map")}"; score = {score}; }}\n')
    (local / "multimap.conf").write_text("".join(rules))
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


def imap_message(inst: WaypostInstance, mailbox: str, subject_word: str) -> email.message.EmailMessage | None:
    """The message of ``mailbox`` whose Subject has ``subject_word``, fetched by an IMAP
    client (None when there is none)."""
    c = imaplib.IMAP4("127.0.0.1", inst.imap_port, timeout=30)
    try:
        c.starttls(ssl_context=client_context())
        c.login("bob@example.test", "bob-password")
        typ, _ = c.select(mailbox, readonly=True)
        if typ != "OK":
            return None
        typ, found = c.search(None, "SUBJECT", subject_word)
        assert typ == "OK"
        numbers = found[0].split()
        if not numbers:
            return None
        typ, data = c.fetch(numbers[-1], "(BODY.PEEK[])")
        assert typ == "OK"
        raw = next(part[1] for part in data if isinstance(part, tuple))
        return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]
    finally:
        c.logout()


def test_add_header_action_files_the_message_in_junk(server):
    assert send(server, message("offer add-header-word today")) == {}
    delivered(server, "add-header-word", mailbox="Junk")
    got = imap_message(server, "Junk", "add-header-word")
    assert got is not None
    assert got["Subject"] == "offer add-header-word today"  # this action leaves the Subject alone
    assert got["X-Spam"] == "Yes"
    result = got["X-Spamd-Result"]
    assert result.startswith("default: True [") and "action=add header" in result and "WAYPOST_ADD_HEADER" in result
    assert imap_message(server, "INBOX", "add-header-word") is None
    server.expect_log(r"event=rspamd .*action=\"add header\" .*symbols=[^ ]*WAYPOST_ADD_HEADER.*result=junk")


def test_rewrite_subject_action_files_the_message_in_junk_with_rspamds_subject(server):
    assert send(server, message("deal rewrite-subject-word now")) == {}
    delivered(server, "rewrite-subject-word", mailbox="Junk")
    got = imap_message(server, "Junk", "rewrite-subject-word")
    assert got is not None
    # Rspamd's subject (actions.subject = "[SPAM] %s"), once: the original field is replaced.
    assert got["Subject"] == "[SPAM] deal rewrite-subject-word now"
    assert len(got.get_all("Subject")) == 1
    assert got["X-Spam"] == "Yes"
    assert "action=rewrite subject" in got["X-Spamd-Result"] and "WAYPOST_REWRITE_SUBJECT" in got["X-Spamd-Result"]
    assert "Hello Bob" in got.get_content()  # the body is untouched
    assert imap_message(server, "INBOX", "rewrite-subject-word") is None
    server.expect_log(r"event=rspamd .*action=\"rewrite subject\" .*symbols=[^ ]*WAYPOST_REWRITE_SUBJECT"
                      r".*result=junk")
