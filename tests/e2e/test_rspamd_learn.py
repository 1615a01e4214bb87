"""Rspamd learning: Debian's rspamd (controller worker with a password, Bayes in a
redis-server started by the test on 127.0.0.1) hears from Waypost when a user moves a
message into Junk (learnspam) or out of it (learnham), by IMAP MOVE and COPY (imaplib)
and by the WebUser move form; a wrong password is logged, never a failed move."""

from __future__ import annotations

import imaplib
import json
import shutil
import subprocess
import urllib.request

import pytest

from support.server import WaypostInstance, free_port, wait_for
from support.tls import client_context

PASSWORD = "learn-secret"
WORDS = ("meeting budget quarterly review projector agenda minutes tuesday coffee lunch report slides "
         "numbers colleague office calendar invitation conference room whiteboard summary").split()


def message(subject: str) -> bytes:
    body = " ".join(WORDS[i % len(WORDS)] + str(i // len(WORDS)) for i in range(80))
    return (f"From: Carol <carol@outside.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@outside.test>\r\n\r\n{body}\r\n").encode()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    assert shutil.which("rspamd") and shutil.which("redis-server"), "Debian's rspamd and redis-server"
    base = tmp_path_factory.mktemp("rspamd-learn")
    redis_port, normal_port, controller_port = free_port(), free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(base)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    over = base / "conf" / "override.d"
    over.mkdir(parents=True)
    for d in ("db", "run", "log"):
        (base / d).mkdir()
    (over / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{normal_port}";\ncount = 1;\n')
    # Our address is not a secure_ip here: the controller asks for the password.
    (over / "worker-controller.inc").write_text(f'bind_socket = "127.0.0.1:{controller_port}";\ncount = 1;\n'
                                                f'password = "{PASSWORD}";\nenable_password = "{PASSWORD}";\n'
                                                'secure_ip = "192.0.2.1";\n')
    for worker in ("proxy", "fuzzy"):
        (over / f"worker-{worker}.inc").write_text("enabled = false;\n")
    (over / "options.inc").write_text('dns { nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; }\n'
                                      "disable_hyperscan = true;\n")
    (over / "classifier-bayes.conf").write_text(f'servers = "127.0.0.1:{redis_port}";\nmin_learns = 1;\n')
    (over / "redis.conf").write_text(f'servers = "127.0.0.1:{redis_port}";\n')
    (over / "logging.inc").write_text('type = "console";\nlevel = "error";\n')
    log = open(base / "rspamd.out", "wb")
    proc = subprocess.Popen(["rspamd", "-f", "-i", "--insecure", "-c", "/etc/rspamd/rspamd.conf",
                             f"--var=LOCAL_CONFDIR={base / 'conf'}", f"--var=DBDIR={base / 'db'}",
                             f"--var=RUNDIR={base / 'run'}", f"--var=LOGDIR={base / 'log'}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{controller_port}"

    def ready():
        if proc.poll() is not None:
            raise AssertionError("rspamd exited:\n" + (base / "rspamd.out").read_text())
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=120, interval=0.5, what="rspamd's controller to answer /ping")
        yield url
    finally:
        _stop(proc)
        _stop(redis)
        log.close()


def learned(url: str) -> int:
    """The controller's count of messages learned (its /stat; the per-class Bayes
    counts there are refreshed from redis only now and then)."""
    req = urllib.request.Request(f"{url}/stat", headers={"Password": PASSWORD})
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(json.loads(r.read())["learned"])


@pytest.fixture(scope="module")
def server(tmp_path_factory, rspamd):
    inst = WaypostInstance(tmp_path_factory.mktemp("learn") / "data",
                           filter={"rspamd_controller": rspamd, "rspamd_password": PASSWORD})
    inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
    with inst:
        inst.start()
        yield inst


def imap(server) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=30)
    c.starttls(ssl_context=client_context())
    c.login("bob@example.test", "bob-password")
    return c


def test_moves_into_and_out_of_junk_are_learned(server, rspamd):
    before = learned(rspamd)
    c = imap(server)
    try:
        c.create("Junk")
        c.append("INBOX", None, None, message("spam by move"))
        c.append("INBOX", None, None, message("plain copy").replace(b"meeting", b"dinner"))
        c.select("INBOX")
        typ, _ = c.uid("MOVE", "1", "Junk")
        assert typ == "OK"
        server.expect_log(r"event=rspamd-learn kind=spam account=example.test/bob result=learned status=200")
        assert learned(rspamd) == before + 1
        # Out of Junk into INBOX (COPY): ham.  Into Trash from Junk: nothing.
        c.select("Junk")
        assert c.copy("1", "INBOX")[0] == "OK"
        server.expect_log(r"event=rspamd-learn kind=ham account=example.test/bob result=learned status=200")
        assert learned(rspamd) == before + 2
        c.create("Trash")
        assert c.copy("1", "Trash")[0] == "OK"
        # INBOX to Archive: not a Junk move, nothing learned.
        c.select("INBOX")
        c.create("Archive")
        assert c.copy("1", "Archive")[0] == "OK"
    finally:
        c.logout()
    assert len(server.log_lines(r"event=rspamd-learn")) == 2 and learned(rspamd) == before + 2


def test_a_wrong_password_is_logged_and_the_move_still_works(tmp_path, rspamd):
    inst = WaypostInstance(tmp_path / "data", filter={"rspamd_controller": rspamd, "rspamd_password": "wrong"})
    inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
    with inst:
        inst.start()
        c = imap(inst)
        try:
            c.create("Junk")
            c.append("INBOX", None, None, message("wrong password"))
            c.select("INBOX")
            assert c.uid("MOVE", "1", "Junk")[0] == "OK"
            c.select("Junk")
            assert c.search(None, "ALL")[1][0] == b"1"
        finally:
            c.logout()
        inst.expect_log(r"event=rspamd-learn kind=spam account=example.test/bob result=refused status=401 answer=.*Unauthorized")


def test_a_webuser_move_into_junk_is_learned(tmp_path, rspamd):
    """The WebUser move form goes through the same copy hook: learnspam."""
    import http.client
    import urllib.parse

    port = free_port()
    inst = WaypostInstance(tmp_path / "data", listen={"http": f"127.0.0.1:{port}"},
                           filter={"rspamd_controller": rspamd, "rspamd_password": PASSWORD})
    inst.ok("account", "add", "bob@example.test", "--password", "bob-password")
    with inst:
        inst.start()
        c = imap(inst)
        try:
            c.create("Junk")
            c.append("INBOX", None, None, message("web move"))
        finally:
            c.logout()
        before = learned(rspamd)

        def call(method: str, path: str, body: str = "", cookie: str = "") -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            headers = {"Cookie": cookie} if cookie else {}
            if body:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body, headers)
            return conn.getresponse()

        r = call("GET", "/login")
        token = r.read().decode().split('name="csrf" value="')[1].split('"')[0]
        login_cookie = r.getheader("set-cookie").split(";")[0]
        r = call("POST", "/login", urllib.parse.urlencode({"csrf": token, "login": "bob@example.test",
                                                           "password": "bob-password"}), login_cookie)
        r.read()
        assert r.status == 303
        cookie = [v for k, v in r.getheaders() if k.lower() == "set-cookie" and v.startswith("wp_session=")][0]
        cookie = cookie.split(";")[0]
        page = call("GET", "/mail/msg?box=INBOX&uid=1", cookie=cookie).read().decode()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        r = call("POST", "/mail/move", urllib.parse.urlencode({"csrf": csrf, "box": "INBOX", "uid": "1",
                                                               "to": "Junk"}), cookie)
        r.read()
        assert r.status in (200, 303), r.status
        inst.expect_log(r"event=rspamd-learn kind=spam account=example.test/bob result=learned status=200")
        assert learned(rspamd) == before + 1
