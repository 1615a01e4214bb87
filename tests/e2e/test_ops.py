"""Running Waypost as an operator does: file modes, start-up checks, version, backups,
privileges (issue 13, items 14, 20 and 22)."""

from __future__ import annotations

import imaplib
import os
import shutil
import smtplib
import sqlite3
import ssl
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.server import ROOT, WaypostInstance, free_port, wait_for
from support.tls import client_context

import waypost


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _private(root: Path) -> list[str]:
    """Every path under ``root`` that a group or other user can read, write or enter."""
    loose = [str(root)] if _mode(root) & 0o077 else []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink() and _mode(p) & 0o077:
                loose.append(f"{p} {oct(_mode(p))}")
    return loose


def _send(inst: WaypostInstance, to: str, subject: str = "hello") -> None:
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=10) as c:
        c.sendmail("someone@remote.example", [to], f"Subject: {subject}\r\n\r\nbody\r\n")


def _serve_cmd(inst: WaypostInstance, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "waypost", "--data", str(inst.data), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


# -- item 14: nothing readable by other local users ------------------------------------


@pytest.mark.sqlite_only
def test_data_directory_is_private_under_a_loose_umask(tmp_path):
    """init, serve, a delivery and the CLI leave no file or directory that another
    local user may read, even when started with umask 022."""
    old = os.umask(0o022)
    try:
        inst = WaypostInstance(tmp_path / "data")
        with inst:
            os.umask(0o022)  # the in-process CLI set its own
            inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
            os.umask(0o022)
            inst.configure(sharing={"secret": "s" * 20})
            os.umask(0o022)
            inst.start()
            _send(inst, "alice@example.test")
            wait_for(lambda: inst.messages("alice@example.test"), what="delivery")
            with imaplib.IMAP4("127.0.0.1", inst.imap_port) as c:  # the INBOX index is written
                c.starttls(client_context())
                c.login("alice@example.test", "alice-password")
                c.select("INBOX")
            inst.stop()
    finally:
        os.umask(old)
    d = inst.data
    for p in (d / "waypost.db-wal", d / "waypost.db-shm", d / "secret.key", d / "tls" / "cert.pem"):
        assert p.exists(), p
    assert _private(d) == []


@pytest.mark.sqlite_only
def test_config_check_warns_about_loose_modes(instance):
    d = instance.data
    assert "warning" not in instance.ok("config", "check")
    os.chmod(d / "waypost.toml", 0o644)
    os.chmod(d / "waypost.db", 0o640)
    os.chmod(d / "mail", 0o755)
    os.chmod(d / "tls" / "key.pem", 0o604)
    result = instance.cli("config", "check")
    assert result.exit_code == 0, result.output
    for p in ("waypost.toml", "waypost.db", "mail", "tls/key.pem"):
        assert f"warning: {d / p}" in result.output, result.output
    assert "chmod" in result.output


# -- item 20: config check reports what would stop serve -------------------------------


def _refused_by_both(instance: WaypostInstance, key: str) -> str:
    check = instance.cli("config", "check")
    assert check.exit_code == 1, check.output
    assert f"error: {key}:" in check.output, check.output
    serve = _serve_cmd(instance, "serve")
    assert serve.returncode != 0
    assert f"{key}:" in serve.stderr, serve.stderr
    assert "Traceback" not in serve.stderr + serve.stdout
    return check.output


def test_a_postgresql_url_without_a_database_is_refused_naming_the_key(instance):
    # (A well-formed URL is the PostgreSQL engine: tests/e2e/test_postgresql.py.)
    instance.configure(storage={"database": "postgresql://waypost@127.0.0.1"})
    out = _refused_by_both(instance, "storage.database")
    assert "names no database" in out


def test_a_file_that_is_not_a_database_is_refused(instance):
    (instance.data / "notes.txt").write_text("not a database, but long enough to have a header line\n" * 10)
    instance.configure(storage={"database": "notes.txt"})
    out = _refused_by_both(instance, "storage.database")
    assert "not a database" in out


def test_two_listeners_on_one_port_are_refused(instance):
    port = free_port()
    instance.configure(listen={"http": f"127.0.0.1:{port}", "https": f"127.0.0.1:{port}"})
    out = _refused_by_both(instance, "listen.https")
    assert "is also listen.http" in out


def test_an_address_not_on_this_host_is_refused(instance):
    instance.configure(listen={"imap": "192.0.2.1:2143"})  # TEST-NET-1: never ours; nothing is sent
    _refused_by_both(instance, "listen.imap")


def test_an_unknown_server_user_is_refused(instance):
    instance.configure(server={"user": "no-such-user-waypost"})
    _refused_by_both(instance, "server.user")


def test_a_missing_certificate_outside_the_data_directory_is_refused(instance, tmp_path):
    instance.configure(tls={"certificate": str(tmp_path / "nowhere" / "cert.pem"),
                            "key": str(tmp_path / "nowhere" / "key.pem")})
    _refused_by_both(instance, "tls.certificate")


def test_a_bad_certificate_is_refused(instance):
    (instance.data / "tls" / "cert.pem").write_text("not a certificate\n")
    _refused_by_both(instance, "tls.certificate")


def test_a_missing_certificate_in_the_data_directory_is_made_anew(instance):
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    (instance.data / "tls" / "cert.pem").unlink()
    (instance.data / "tls" / "key.pem").unlink()
    check = instance.cli("config", "check")
    assert check.exit_code == 0 and "warning: tls.certificate:" in check.output and "self-signed" in check.output
    instance.start()
    assert instance.log_lines("event=tls-certificate-created")
    assert _mode(instance.data / "tls" / "key.pem") == 0o600
    with imaplib.IMAP4("127.0.0.1", instance.imap_port) as c:  # logins work: STARTTLS is offered
        # The certificate served is the one just made: checked against that file (it names
        # the host name, not the address imaplib connects to).
        made = ssl.create_default_context(cafile=str(instance.data / "tls" / "cert.pem"))
        made.check_hostname = False
        c.starttls(made)
        assert c.login("alice@example.test", "alice-password")[0] == "OK"


def test_config_check_beside_a_running_server_only_warns(server):
    check = server.cli("config", "check")
    assert check.exit_code == 0, check.output
    assert f"warning: listen.smtp: 127.0.0.1:{server.smtp_port} is in use now" in check.output


def test_config_check_passes_a_good_file(instance):
    out = instance.ok("config", "check")
    assert out.strip().endswith(": OK")


# -- item 22: operations ---------------------------------------------------------------


def test_version():
    out = subprocess.run([sys.executable, "-m", "waypost", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == f"waypost {waypost.__version__}"


@pytest.mark.sqlite_only
def test_backup_while_running_restores(server, tmp_path):
    _send(server, "alice@example.test", "before the backup")
    wait_for(lambda: server.messages("alice@example.test"), what="delivery")
    dest = tmp_path / "backup"
    out = server.ok("backup", str(dest))
    assert str(dest) in out
    _send(server, "bob@example.test", "after the backup")  # the server goes on
    wait_for(lambda: server.messages("bob@example.test"), what="delivery")
    assert _private(dest) == []
    for name in ("waypost.toml", "waypost.db", "secret.key", "tls/cert.pem", "tls/key.pem"):
        assert (dest / name).exists(), name
    assert not (dest / "waypost.db-wal").exists()  # one self-contained file
    db = sqlite3.connect(dest / "waypost.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    again = server.cli("backup", str(dest))
    assert again.exit_code == 1 and "exists" in again.output
    # Restore: the copy plus the Maildirs is a data directory a server runs on.
    restored = tmp_path / "restored"
    shutil.copytree(dest, restored)
    shutil.copytree(server.data / "mail", restored / "mail", dirs_exist_ok=True)
    with _Existing(restored) as r:
        assert "alice@example.test" in r.ok("account", "list")
        r.start()
        with imaplib.IMAP4("127.0.0.1", r.imap_port) as c:
            c.starttls(client_context())
            c.login("alice@example.test", "alice-password")
            assert c.select("INBOX") == ("OK", [b"1"])
            typ, data = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert b"before the backup" in data[0][1]


def _python_for(user: str) -> str:
    """An interpreter whose standard library ``user`` can read (this one may live in
    root's home), with our source and site-packages on PYTHONPATH; skip if none."""
    import site

    path = os.pathsep.join([str(ROOT / "src"), *site.getsitepackages()])
    for python in (sys.executable, "/usr/bin/python3.11", "/usr/bin/python3"):
        try:
            probe = subprocess.run([python, "-c", "import concurrent.futures.thread, waypost.server"], user=user,
                                   env=dict(os.environ, PYTHONPATH=path), capture_output=True, cwd="/")
        except OSError:
            continue
        if probe.returncode == 0:
            return python
    pytest.skip(f"no Python interpreter that {user} can run")


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a port below 1024 and switching users needs root")
def test_server_user_binds_low_ports_then_drops_privileges(monkeypatch):
    import pwd
    import site

    nobody = pwd.getpwnam("nobody")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), *site.getsitepackages()]))
    python = _python_for("nobody")
    low = _free_low_port()
    base = Path(tempfile.mkdtemp(prefix="waypost-user-", dir="/tmp"))
    try:
        os.chmod(base, 0o711)  # the data directory below must be reachable by nobody
        inst = WaypostInstance(base / "data")
        with inst:
            inst.configure(listen={"smtp": f"127.0.0.1:{low}"}, server={"user": "nobody", "workers": 2})
            inst.smtp_port = low
            mine = _serve_cmd(inst, "config", "check", python=python)  # init ran as root: the files are root's
            assert mine.returncode == 1 and "error: server.user: not owned by nobody" in mine.stderr, mine.stderr
            assert f"chown -R nobody: {inst.data}" in mine.stderr
            refused = _serve_cmd(inst, "account", "list", python=python)
            assert refused.returncode == 1 and "server.user: not owned by nobody" in refused.stderr, refused.stderr
            for p in [inst.data, *inst.data.rglob("*")]:  # what the error says to do
                os.lchown(p, nobody.pw_uid, nobody.pw_gid)
            # As root with server.user set, the CLI works as that user: nothing it makes is root's.
            add = _serve_cmd(inst, "account", "add", "alice@example.test", "--password", "alice-password",
                             python=python)
            assert add.returncode == 0, add.stderr
            check = _serve_cmd(inst, "config", "check", python=python)
            assert check.returncode == 0 and "error" not in check.stdout + check.stderr, check.stdout + check.stderr
            inst.start(python=python)
            assert inst.log_lines(f"listening smtp 127.0.0.1:{low}")
            workers = wait_for(lambda: len(pids := _children(inst.proc.pid)) == 2 and pids, what="two workers")
            for pid in [inst.proc.pid, *workers]:
                assert _uids(pid) == {nobody.pw_uid}, pid
            _send(inst, "alice@example.test")
            files = wait_for(lambda: inst.messages("alice@example.test"), what="delivery")
            sqlite = [] if "://" in inst.settings.storage.database else [inst.data / "waypost.db",
                                                                           inst.data / "waypost.db-wal"]
            for p in [*files, *sqlite, inst.data / "mail", *(inst.data / "run").iterdir()]:
                assert p.stat().st_uid == nobody.pw_uid, p
            assert _private(inst.data) == []
            inst.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _Existing(WaypostInstance):
    """A data directory made elsewhere (a restored backup), moved to free ports."""

    def __init__(self, data: Path) -> None:
        self.data, self.domain, self.host = data, "example.test", "127.0.0.1"
        self.proc, self.output, self._reader = None, [], None
        self.smtp_port, self.submission_port, self.odmr_port, self.imap_port, self.pop3_port, self.ftp_port = (
            free_port() for _ in range(6))
        self.configure(listen={"smtp": f"127.0.0.1:{self.smtp_port}", "submission": f"127.0.0.1:{self.submission_port}",
                               "odmr": f"127.0.0.1:{self.odmr_port}", "imap": f"127.0.0.1:{self.imap_port}",
                               "pop3": f"127.0.0.1:{self.pop3_port}", "ftp": f"127.0.0.1:{self.ftp_port}",
                               "http": "", "https": ""})


def _free_low_port() -> int:
    # Claimed like every test port: the two engine passes of `make test` run this test at once.
    try:
        return free_port(port_range=(600, 1000))
    except RuntimeError:
        pytest.skip("no free port below 1024")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _uids(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(x) for x in line.split()[1:]}
    raise AssertionError("no Uid line")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_init_user_gives_the_directory_to_that_user(tmp_path):
    import pwd

    from click.testing import CliRunner

    from waypost.cli import cli
    from waypost.config import load_settings

    nobody = pwd.getpwnam("nobody")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "d"), "--domain", "example.test", "--user", "nobody"])
    assert result.exit_code == 0, result.output
    assert load_settings(tmp_path / "d").server.user == "nobody"
    paths = [tmp_path / "d", *(tmp_path / "d").rglob("*")]
    assert len(paths) > 6 and all(p.lstat().st_uid == nobody.pw_uid for p in paths)
    assert _private(tmp_path / "d") == []
    bad = CliRunner().invoke(cli, ["init", str(tmp_path / "e"), "--user", "no-such-user-waypost"])
    assert bad.exit_code == 1 and "--user: no such user" in bad.output
