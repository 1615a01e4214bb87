"""FTP and explicit FTPS on the account file areas, through a real ``waypost serve``:
Python's ftplib (FTP_TLS against the test CA) and curl --ftp-ssl as clients.

Seed 001: "FTP clients behave like POP/IMAP mailers": the login is ``name%domain`` (or
``name@domain``), or a bare name in the domain bound to the address the client
connected to.  Seed 004 / issue 17: each account works in its own file area, with a
size limit; an upload past it is refused (552) and leaves nothing behind.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support import tls
from support.server import WaypostInstance, wait_for

DOMAIN = "client.test"
PASSWORD = "alice-ftp-pw-1"


def ftps(inst: WaypostInstance, login: str | None = None, password: str = PASSWORD,
         prot_p: bool = True) -> ftplib.FTP_TLS:
    f = ftplib.FTP_TLS(context=tls.client_context(), timeout=15)
    f.connect("127.0.0.1", inst.ftp_port)
    f.auth()
    if login is not None:
        f.login(login, password)
        if prot_p:
            f.prot_p()
    return f


def area(inst: WaypostInstance, address: str) -> Path:
    name, domain = address.split("@")
    return inst.data / "files" / domain / name


def tmp_files(inst: WaypostInstance) -> list[str]:
    d = inst.data / "files" / ".tmp"
    return os.listdir(d) if d.is_dir() else []


def refused_upload(f: ftplib.FTP, name: str, data: bytes) -> str:
    """The reply to an upload the server refuses.  A refusal in the middle of a transfer
    closes the data connection first (RFC 959), so a client still sending sees it
    reset and reads the reply afterwards, as ftplib's caller must."""
    try:
        f.storbinary(f"STOR {name}", io.BytesIO(data))
    except ftplib.error_perm as e:
        return str(e)
    except OSError:
        try:
            return f.getresp()
        except ftplib.error_perm as e:
            return str(e)
    raise AssertionError(f"STOR {name} was accepted")


def get(f: ftplib.FTP, name: str) -> bytes:
    buf = io.BytesIO()
    f.retrbinary(f"RETR {name}", buf.write)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with WaypostInstance(tmp_path_factory.mktemp("ftp") / "data", auth={"free_failures": 1000, "block_after": 1000},
                         ftp={"failure_delay": 0.05}) as inst:
        inst.ok("domain", "add", DOMAIN)
        inst.ok("account", "add", f"alice@{DOMAIN}", "--password", PASSWORD)
        inst.ok("account", "add", f"bob@{DOMAIN}", "--password", "bob-ftp-pw-1")
        inst.ok("account", "add", "carol@example.test", "--password", "carol-ftp-pw-1")
        inst.ok("alias", "add", f"al@{DOMAIN}", "alice")
        inst.start()
        yield inst


def test_percent_login_upload_list_download_rename_delete(server):
    f = ftps(server, f"alice%{DOMAIN}")
    try:
        assert f.pwd() == "/"
        # Passive data connections: on the address the client connected to, in ftp.passive_ports.
        host, port = f.makepasv()
        assert host == "127.0.0.1" and 50000 <= port <= 50099
        f.storbinary("STOR hello.txt", io.BytesIO(b"hello over FTPS"))
        assert (area(server, f"alice@{DOMAIN}") / "hello.txt").read_bytes() == b"hello over FTPS"
        assert f.nlst() == ["hello.txt"]
        lines: list[str] = []
        f.retrlines("LIST", lines.append)
        assert len(lines) == 1 and lines[0].startswith("-") and lines[0].endswith(" hello.txt") and " 15 " in lines[0]
        assert dict(f.mlsd())["hello.txt"]["size"] == "15"
        f.voidcmd("TYPE I")
        assert f.size("hello.txt") == 15
        assert get(f, "hello.txt") == b"hello over FTPS"
        assert f.mkd("site") == "/site"
        f.cwd("site")
        assert f.pwd() == "/site"
        f.storbinary("STOR index.html", io.BytesIO(b"<h1>alice</h1>"))
        f.cwd("/")
        f.rename("hello.txt", "site/moved.txt")
        assert sorted(f.nlst("site")) == ["index.html", "moved.txt"]
        # A replacing upload is whole too.
        f.storbinary("STOR site/moved.txt", io.BytesIO(b"v2"))
        assert get(f, "site/moved.txt") == b"v2"
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.rmd("site")  # not empty
        f.delete("site/moved.txt")
        f.delete("site/index.html")
        f.rmd("site")
        # (An empty listing is checked on disk: ftplib's TLS data connection cannot
        # take an empty transfer, CPython issue 75908; curl can, see test_curl_over_ftps.)
        assert os.listdir(area(server, f"alice@{DOMAIN}")) == []
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.delete("nothing.txt")
    finally:
        f.quit()
    assert tmp_files(server) == []
    server.expect_log(rf"event=ftp-login client=127\.0\.0\.1 account=alice@{DOMAIN} login=alice%{DOMAIN} tls=yes")
    server.expect_log(rf"event=ftp-transfer client=127\.0\.0\.1 account=alice@{DOMAIN} command=STOR path=hello.txt "
                      r"completed=yes octets=15")


def test_at_login_alias_and_areas_are_separate(server):
    a = ftps(server, f"al@{DOMAIN}")  # the alias logs in as its account
    b = ftps(server, f"bob@{DOMAIN}", "bob-ftp-pw-1")
    try:
        a.storbinary("STOR mine.txt", io.BytesIO(b"alice's"))
        # bob's listing is not empty (ftplib's TLS data connection cannot take an empty
        # transfer, CPython issue 75908), so it shows his file and not alice's.
        b.storbinary("STOR bobs.txt", io.BytesIO(b"bob's"))
        assert b.nlst() == ["bobs.txt"]
        b.delete("bobs.txt")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            get(b, "mine.txt")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            get(b, "../alice/mine.txt")
        a.delete("mine.txt")
    finally:
        a.quit()
        b.quit()
    server.expect_log(rf"event=ftp-login client=127\.0\.0\.1 account=alice@{DOMAIN} login=al@{DOMAIN}")


def test_bare_name_takes_the_domain_bound_to_the_server_address(server):
    # Seed 001: a bare name is looked up in the domain bound to the address the client
    # connected to, else in the main domain.
    f = ftps(server, "carol", "carol-ftp-pw-1")
    f.quit()
    server.expect_log(r"event=ftp-login client=127\.0\.0\.1 account=carol@example\.test login=carol ")
    server.ok("domain", "set", DOMAIN, "--ip", "127.0.0.1")
    try:
        f = ftps(server, "bob", "bob-ftp-pw-1")
        f.quit()
        server.expect_log(rf"event=ftp-login client=127\.0\.0\.1 account=bob@{DOMAIN} login=bob ")
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftps(server, "carol", "carol-ftp-pw-1")
    finally:
        server.ok("domain", "set", DOMAIN, "--no-ips")


def test_wrong_password_disabled_and_unknown_are_refused_and_logged(server):
    for login, password in ((f"alice%{DOMAIN}", "wrong-password"), (f"nobody%{DOMAIN}", PASSWORD)):
        f = ftps(server)
        try:
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                f.login(login, password)
        finally:
            f.close()
        server.expect_log(rf"warning waypost\.auth event=auth-failed proto=ftp client=127\.0\.0\.1 login={login} "
                          r"reason=credentials")
    server.ok("account", "set", f"bob@{DOMAIN}", "--disable")
    try:
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftps(server, f"bob@{DOMAIN}", "bob-ftp-pw-1")
    finally:
        server.ok("account", "set", f"bob@{DOMAIN}", "--enable")
    assert all("Traceback" not in line for line in server.output)


def test_login_and_data_need_tls(server):
    f = ftplib.FTP(timeout=15)
    f.connect("127.0.0.1", server.ftp_port)
    try:
        with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required"):
            f.login(f"alice%{DOMAIN}", PASSWORD)
    finally:
        f.close()
    f = ftps(server, f"alice%{DOMAIN}", prot_p=False)  # a clear data channel is refused
    try:
        with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required on the data channel"):
            f.nlst()
    finally:
        f.quit()


def test_traversal_and_bad_names_are_refused(server):
    root = area(server, f"alice@{DOMAIN}")
    root.mkdir(parents=True, exist_ok=True)
    secret = server.data / "outside-secret.txt"
    secret.write_bytes(b"secret")
    os.symlink(secret, root / "link.txt")
    f = ftps(server, f"alice%{DOMAIN}")
    try:
        for name in ("../../../waypost.toml", "/../../waypost.toml", "%2e%2e/%2e%2e/waypost.toml", "link.txt",
                     "..%2f..%2fwaypost.toml", "a\x00b"):
            with pytest.raises(ftplib.error_perm, match=r"^550"):
                get(f, name)
        # The jail's top is "/": climbing above it stays in it.
        f.cwd("../../..")
        assert f.pwd() == "/"
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.cwd("%2e%2e")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.storbinary("STOR %2e%2e%2fescape.txt", io.BytesIO(b"x"))
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.storbinary("STOR link.txt", io.BytesIO(b"overwrite"))  # a link is not replaced
        # Whatever ".." a STOR names, the file lands inside the area.
        f.storbinary("STOR ../../escape.txt", io.BytesIO(b"x"))
        assert (root / "escape.txt").exists() and not (root.parent / "escape.txt").exists()
        assert not (server.data / "escape.txt").exists()
        assert "link.txt" not in f.nlst()  # links are not listed
        f.delete("escape.txt")
        # Appending, resuming and unique names would bypass the whole-file rule.
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.storbinary("APPE x.txt", io.BytesIO(b"x"))
        with pytest.raises(ftplib.error_temp, match=r"^450"):
            f.storbinary("STOU", io.BytesIO(b"x"))
    finally:
        f.quit()
        (root / "link.txt").unlink()
    assert secret.read_bytes() == b"secret"
    assert tmp_files(server) == []
    assert all("Traceback" not in line for line in server.output)


def test_upload_over_the_limit_is_552_and_leaves_nothing(server):
    server.ok("files", "set", f"alice@{DOMAIN}", "--limit", "20000")
    f = ftps(server, f"alice%{DOMAIN}")
    try:
        f.storbinary("STOR keep.bin", io.BytesIO(b"k" * 15000))
        assert refused_upload(f, "big.bin", b"b" * 200_000).startswith("552 Exceeded storage allocation")
        # A replacing upload over the limit leaves the old file whole.
        assert refused_upload(f, "keep.bin", b"n" * 20001).startswith("552 ")
        assert get(f, "keep.bin") == b"k" * 15000
        assert f.nlst() == ["keep.bin"]
        # The session goes on: what fits is stored.
        f.storbinary("STOR small.bin", io.BytesIO(b"s" * 5000))
        assert sorted(f.nlst()) == ["keep.bin", "small.bin"]
        f.delete("keep.bin")
        f.delete("small.bin")
    finally:
        f.quit()
        server.ok("files", "set", f"alice@{DOMAIN}", "--default-limit")
    assert sorted(os.listdir(area(server, f"alice@{DOMAIN}"))) == []
    assert tmp_files(server) == []
    server.expect_log(rf"warning waypost\.ftp event=ftp-over-limit client=127\.0\.0\.1 account=alice@{DOMAIN} "
                      r"path=big.bin limit=20000")
    usage = server.ok("files", "usage", f"alice@{DOMAIN}", "--json")
    assert '"used": 0' in usage


def test_aborted_upload_leaves_nothing(server):
    f = ftps(server, f"alice%{DOMAIN}")
    try:
        f.storbinary("STOR page.html", io.BytesIO(b"old page"))
        conn = f.transfercmd("STOR page.html")
        conn.sendall(b"new page, cut short " * 1000)
        wait_for(lambda: tmp_files(server), what="the upload's temporary file")
        # The data connection drops without a TLS close: an aborted transfer.
        conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        with pytest.raises(ftplib.error_temp, match=r"^426 Data connection closed without TLS close_notify"):
            f.voidresp()
        wait_for(lambda: not tmp_files(server), what="the temporary file to go")
        assert get(f, "page.html") == b"old page"
        f.delete("page.html")
    finally:
        f.quit()


def test_curl_over_ftps(server, tmp_path):
    if shutil.which("curl") is None:
        pytest.fail("curl is required (make test installs it)")
    ca = tls.write_ca_file(tmp_path / "ca.pem")
    src = tmp_path / "upload.html"
    src.write_bytes(b"<p>from curl</p>\n" * 100)
    url = f"ftp://127.0.0.1:{server.ftp_port}/"
    user = f"alice%{DOMAIN}:{PASSWORD}"
    up = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(ca), "--user", user, "-T", str(src),
                         url + "curl.html"], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    assert (area(server, f"alice@{DOMAIN}") / "curl.html").read_bytes() == src.read_bytes()
    out = tmp_path / "down.html"
    down = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(ca), "--user", user, "-o", str(out),
                           url + "curl.html"], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == src.read_bytes()
    listing = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(ca), "--user", user, "-l", url],
                             capture_output=True, text=True, timeout=60)
    assert listing.stdout.split() == ["curl.html"]
    bad = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(ca), "--user", f"alice%{DOMAIN}:wrong",
                          url], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 67, bad  # CURLE_LOGIN_DENIED
    f = ftps(server, f"alice%{DOMAIN}")
    f.delete("curl.html")
    f.quit()


# -- servers of their own ------------------------------------------------------------

def test_throttle_blocks_ftp_logins_like_imap(tmp_path):
    with WaypostInstance(tmp_path / "data", auth={"free_failures": 1, "delay": 0.2, "max_delay": 0.5, "block_after": 3},
                         ftp={"failure_delay": 0.01}) as inst:
        inst.ok("account", "add", "dave@example.test", "--password", "dave-ftp-pw-1")
        inst.start()
        times = []
        for _ in range(3):
            f = ftps(inst)
            start = time.monotonic()
            with pytest.raises(ftplib.error_perm, match=r"^530"):
                f.login("dave", "wrong")
            times.append(time.monotonic() - start)
            f.close()
        assert times[1] >= 0.2  # the second failure waited (auth.delay)
        # Blocked now: even the right password is refused, unchecked, and said so.
        f = ftps(inst)
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            f.login("dave", "dave-ftp-pw-1")
        f.close()
        inst.expect_log(r"event=auth-failed proto=ftp client=127\.0\.0\.1 login=dave reason=blocked")
        blocked = inst.ok("auth", "blocked", "--json")
        assert "127.0.0.1" in blocked


def test_two_workers_and_a_clean_stop_with_sessions_open(tmp_path):
    with WaypostInstance(tmp_path / "data", server={"workers": 2}) as inst:
        inst.ok("account", "add", "erin@example.test", "--password", "erin-ftp-pw-1")
        inst.start()
        sessions = [ftps(inst, "erin@example.test", "erin-ftp-pw-1") for _ in range(4)]
        for i, f in enumerate(sessions):
            f.storbinary(f"STOR f{i}.txt", io.BytesIO(b"x" * (i + 1)))
        assert sorted(sessions[0].nlst()) == ["f0.txt", "f1.txt", "f2.txt", "f3.txt"]
        # start() returns when the first worker is ready; the second may still be starting.
        inst.expect_log("worker-ready", count=2, timeout=20)
        pids = {line.split("pid=")[1] for line in inst.log_lines("event=worker-ready")}
        assert len(pids) == 2
        # An upload in flight when the server stops is discarded; the server stops in time.
        conn = sessions[1].transfercmd("STOR inflight.bin")
        conn.sendall(b"y" * 100_000)
        wait_for(lambda: tmp_files(inst), what="the upload's temporary file")
        start = time.monotonic()
        assert inst.stop() == 0
        assert time.monotonic() - start < 10
        conn.close()
        for f in sessions:
            f.close()
        assert tmp_files(inst) == []
        assert not (area(inst, "erin@example.test") / "inflight.bin").exists()
        assert all("Traceback" not in line for line in inst.output)


def test_files_commands(instance):
    instance.ok("domain", "add", DOMAIN)
    instance.ok("account", "add", f"alice@{DOMAIN}", "--password", PASSWORD)
    instance.ok("files", "set-domain", DOMAIN, "--limit", "1M")
    [row] = json.loads(instance.ok("files", "usage", f"alice@{DOMAIN}", "--json"))
    assert (row["used"], row["limit"], row["limit_from"], row["listing"]) == (0, 1048576, "domain", False)
    root = area(instance, f"alice@{DOMAIN}")
    (root / "site").mkdir()
    (root / "site" / "index.html").write_bytes(b"x" * 1500)
    rows = json.loads(instance.ok("files", "ls", f"alice@{DOMAIN}", "--json"))
    assert [(r["name"], r["kind"]) for r in rows] == [("site/", "folder")]
    rows = json.loads(instance.ok("files", "ls", f"alice@{DOMAIN}", "site", "--json"))
    assert [(r["name"], r["size"]) for r in rows] == [("index.html", 1500)]
    instance.ok("files", "set", f"alice@{DOMAIN}", "--limit", "2K", "--listing")
    [row] = json.loads(instance.ok("files", "usage", f"alice@{DOMAIN}", "--json"))
    assert (row["used"], row["limit"], row["limit_from"], row["listing"]) == (1500, 2048, "account", True)
    instance.ok("files", "set", f"alice@{DOMAIN}", "--default-limit", "--no-listing")
    [row] = json.loads(instance.ok("files", "usage", f"alice@{DOMAIN}", "--json"))
    assert (row["limit_from"], row["listing"]) == ("domain", False)
    everyone = json.loads(instance.ok("files", "usage", "--json"))
    assert {r["account"] for r in everyone} == {f"alice@{DOMAIN}", "postmaster@example.test"}
    for args in (["files", "ls", f"alice@{DOMAIN}", "../.."], ["files", "ls", f"alice@{DOMAIN}", "none"],
                 ["files", "set", f"alice@{DOMAIN}", "--limit", "lots"], ["files", "usage", f"nobody@{DOMAIN}"],
                 ["files", "set", f"alice@{DOMAIN}"], ["files", "set-domain", "nowhere.test", "--limit", "1M"]):
        result = instance.cli(*args)
        assert result.exit_code != 0 and "Traceback" not in result.output, (args, result.output)
    table = instance.ok("files", "usage", f"alice@{DOMAIN}")  # the table for people
    assert "1.5 KiB" in table and "1.0 MiB" in table and "domain" in table


def test_uploads_left_by_a_killed_server_are_removed_at_start(instance):
    tmp = instance.data / "files" / ".tmp"
    tmp.mkdir(parents=True)
    (tmp / "upload-stale").write_bytes(b"half an upload")
    # Written two hours ago: on PostgreSQL, whose file areas several nodes may share,
    # start-up leaves younger ones alone (another node's uploads in progress).
    os.utime(tmp / "upload-stale", (time.time() - 7200, time.time() - 7200))
    instance.start()
    assert not (tmp / "upload-stale").exists()
    instance.expect_log(r"event=files-recovered removed_tmp=1")
    instance.stop()
