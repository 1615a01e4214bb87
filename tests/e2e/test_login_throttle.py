"""Password guessing is slowed, then blocked, per client address and per account, across
connections, protocols and workers (issue 13 item 13); every failed login is one log
line that the fail2ban filter of docs/fail2ban/ reads.

Each attempt below is a connection of its own, so that the per-connection limits of the
listeners (a few failures, then the connection is closed) play no part: what slows and
blocks is the count kept in the database.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.logins import imap_login, pop3_login, smtp_login

ROOT = Path(__file__).resolve().parents[2]


def _settings(instance, **auth):
    instance.configure(auth=auth,
                       smtp={"auth_requires_tls": False},
                       imap={"plaintext_without_tls": True, "failure_delay": 0.0},
                       pop3={"plaintext_without_tls": True, "failure_delay": 0.0})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.ok("account", "add", "bob@example.test", "--password", "bob-password")


def timed(fn, *args) -> tuple[bool, float]:
    t = time.monotonic()
    ok = fn(*args)
    return ok, time.monotonic() - t


def test_failures_count_across_protocols_and_workers_then_block(instance):
    _settings(instance, free_failures=2, delay=0.5, max_delay=1.0, block_after=5, block_time=120)
    instance.configure(server={"workers": 2})
    instance.start()
    assert imap_login(instance, "bob@example.test", "bob-password")  # nothing counted yet
    assert not smtp_login(instance, "alice@example.test", "wrong-1")
    assert not imap_login(instance, "alice@example.test", "wrong-2")
    # Two failures so far, on two protocols (and whichever workers took them): slowed.
    ok, took = timed(pop3_login, instance, "alice@example.test", "wrong-3")
    assert not ok and took >= 0.5
    ok, took = timed(imap_login, instance, "alice", "wrong-4")  # another form of the same name counts too
    assert not ok and took >= 1.0
    assert not smtp_login(instance, "alice%example.test", "wrong-5")
    # Five: the client address is blocked; even a right password is refused unchecked.
    ok, took = timed(imap_login, instance, "bob@example.test", "bob-password")
    assert not ok and took >= 1.0
    assert not pop3_login(instance, "bob@example.test", "bob-password")
    for proto, login in (("submission", "alice@example.test"), ("imap", "alice@example.test"),
                         ("pop3", "alice@example.test"), ("imap", "alice"), ("submission", "alice%example.test")):
        instance.expect_log(rf"warning waypost\.auth event=auth-failed proto={proto} client=127\.0\.0\.1 "
                            rf"login={login} reason=credentials$")
    instance.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.1 login=bob@example.test reason=blocked$")
    instance.expect_log(r"event=auth-failed proto=pop3 client=127\.0\.0\.1 login=bob@example.test reason=blocked$")
    assert not [line for line in instance.output if "wrong-" in line]  # passwords are never logged
    # The administrator sees and lifts it.
    shown = instance.ok("auth", "blocked")
    assert "client:127.0.0.1" in shown and "account:alice@example.test" in shown
    instance.ok("auth", "unblock", "127.0.0.1")
    assert imap_login(instance, "bob@example.test", "bob-password")


def test_a_known_client_is_not_slowed_by_an_attack_on_its_account(instance):
    _settings(instance, free_failures=3, delay=1.5, max_delay=1.5, block_after=4, block_time=120)
    instance.start()
    assert imap_login(instance, "alice@example.test", "alice-password", "127.0.0.1")  # alice's own address
    for i in range(4):  # someone else guesses from 127.0.0.2: the account is blocked
        assert not imap_login(instance, "alice@example.test", f"guess-{i}", "127.0.0.2")
    instance.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.2 login=alice@example.test", count=4)
    # From an address alice never used, even her password is refused ...
    ok, took = timed(imap_login, instance, "alice@example.test", "alice-password", "127.0.0.3")
    assert not ok and took >= 1.5
    instance.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.3 login=alice@example.test reason=blocked")
    # ... but from her known address she logs in, and is not made to wait.
    ok, took = timed(imap_login, instance, "alice@example.test", "alice-password", "127.0.0.1")
    assert ok and took < 1.5
    ok, took = timed(smtp_login, instance, "alice@example.test", "alice-password", "127.0.0.1")
    assert ok and took < 1.5


def test_the_fail2ban_filter_reads_the_real_log_lines(instance, tmp_path):
    fail2ban_regex = shutil.which("fail2ban-regex")
    assert fail2ban_regex, "fail2ban-regex is installed by 'make test' (Debian package fail2ban)"
    _settings(instance)
    instance.start()
    assert not smtp_login(instance, "alice@example.test", "wrong", "127.0.0.2")
    assert not imap_login(instance, 'evil client=10.9.9.9 login=x', "wrong", "127.0.0.3")  # a login cannot frame anyone
    assert not pop3_login(instance, "nobody@example.test", "wrong", "127.0.0.4")
    assert imap_login(instance, "alice@example.test", "alice-password", "127.0.0.5")
    lines = instance.expect_log(r"event=auth-failed", count=3)
    instance.expect_log(r"event=imap-login")
    log = tmp_path / "waypost.log"
    log.write_text("\n".join(instance.output) + "\n")
    out = subprocess.run([fail2ban_regex, "-v", str(log), str(ROOT / "docs/fail2ban/waypost.conf")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # -v lists each failregex's hits: "|      127.0.0.2  Fri Dec 04 17:09:11 2026"
    hosts = sorted(set(re.findall(r"^\|\s+(\d+\.\d+\.\d+\.\d+)\s", out.stdout, re.M)))
    assert f"Lines: {len(instance.output)} lines, 0 ignored, {len(lines)} matched" in out.stdout, out.stdout
    assert hosts == ["127.0.0.2", "127.0.0.3", "127.0.0.4"], out.stdout


def test_the_fail2ban_filter_reads_json_lines_too(instance, tmp_path):
    fail2ban_regex = shutil.which("fail2ban-regex")
    assert fail2ban_regex, "fail2ban-regex is installed by 'make test' (Debian package fail2ban)"
    _settings(instance)
    instance.configure(server={"log_format": "json"})
    instance.start()
    assert not pop3_login(instance, "alice@example.test", "wrong", "127.0.0.6")
    instance.expect_log(r'"event": "auth-failed"')
    log = tmp_path / "waypost.log"
    log.write_text("\n".join(instance.output) + "\n")
    out = subprocess.run([fail2ban_regex, "-v", str(log), str(ROOT / "docs/fail2ban/waypost.conf")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and " 1 matched" in out.stdout and "127.0.0.6" in out.stdout, out.stdout


@pytest.mark.parametrize("value", [{"block_after": 0}, {"delay": -1.0}])
def test_bad_throttle_settings_are_refused(instance, value):
    from waypost.config import ConfigError

    with pytest.raises(ConfigError, match=r"auth\."):
        instance.configure(auth=value)
