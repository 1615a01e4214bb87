"""A successful login is remembered by each worker (``auth.verified_cache_*``, issue 14
"Logins"), and a password change made with the CLI ends it at once in every worker of a
running server: the old password is refused, the new one works.

Which worker took a connection is the kernel's choice; the workers' debug lines
``event=password-check ... cached=yes|no ok=yes|no pid=N`` say which one answered, and
the loops below go on (bounded) until both have.
"""

from __future__ import annotations

import re

from support.logins import imap_login, smtp_login
from support.server import wait_for


def _pids(inst, pattern: str, since: int = 0) -> set[str]:
    rx = re.compile(pattern + r".* pid=(\d+)")
    return {m.group(1) for line in inst.output[since:] if (m := rx.search(line))}


def test_a_password_change_ends_a_remembered_login_in_every_worker(instance):
    instance.configure(server={"workers": 2, "log_level": "debug"},
                       smtp={"auth_requires_tls": False},
                       imap={"plaintext_without_tls": True, "failure_delay": 0.0},
                       # the refusals below are failures the throttle counts: let them through
                       auth={"free_failures": 200, "block_after": 300})
    instance.ok("account", "add", "alice@example.test", "--password", "old-password")
    instance.start()
    workers = wait_for(lambda: len(w := _pids(instance, r"event=worker-ready")) == 2 and w, what="two workers")
    check = r"event=password-check account=alice@example\.test "

    # Logins until each worker has answered one from what it remembers.
    accepted = 0
    for _ in range(80):
        assert imap_login(instance, "alice@example.test", "old-password")
        accepted += 1
        if _pids(instance, check + "cached=yes ok=yes") == workers:
            break
    assert _pids(instance, check + "cached=yes ok=yes") == workers
    assert smtp_login(instance, "alice@example.test", "old-password")  # every protocol shares it
    # A login's line reaches the output a moment after its reply: every one of these is
    # read before the mark, so that none is taken for an answer given after the change.
    instance.expect_log(check + r"cached=\w+ ok=yes", count=accepted + 1)

    mark = len(instance.output)
    instance.ok("account", "passwd", "alice@example.test", "--password", "new-password")
    # At once, in both workers: the old password gets the full check, and fails.
    for _ in range(80):
        assert not imap_login(instance, "alice@example.test", "old-password")
        if _pids(instance, check + "cached=no ok=no", mark) == workers:
            break
    assert _pids(instance, check + "cached=no ok=no", mark) == workers
    assert not smtp_login(instance, "alice@example.test", "old-password")
    assert not _pids(instance, check + "cached=yes", mark)
    # The new password works (checked in full, then remembered in turn).
    assert imap_login(instance, "alice@example.test", "new-password")
    assert imap_login(instance, "alice@example.test", "new-password")
    wait_for(lambda: _pids(instance, check + "cached=no ok=yes", mark), what="the new password's full check")
    assert not [line for line in instance.output if "old-password" in line or "new-password" in line]


def test_remembering_can_be_turned_off(instance):
    instance.configure(server={"log_level": "debug"}, imap={"plaintext_without_tls": True},
                       auth={"verified_cache_ttl": 0.0})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.start()
    for _ in range(3):
        assert imap_login(instance, "alice@example.test", "alice-password")
    lines = instance.expect_log(r"event=password-check account=alice@example\.test cached=no ok=yes", count=3)
    assert len(lines) == 3
    assert not instance.log_lines(r"event=password-check .*cached=yes")


def test_a_remembered_login_does_not_lift_a_block(instance):
    """The throttle decides first: a blocked client is refused even with the password the
    worker remembers, and wrong passwords are still checked in full and counted."""
    instance.configure(server={"log_level": "debug"}, imap={"plaintext_without_tls": True, "failure_delay": 0.0},
                       auth={"free_failures": 3, "delay": 0.1, "max_delay": 0.2, "block_after": 3,
                             "block_time": 120})
    instance.ok("account", "add", "alice@example.test", "--password", "alice-password")
    instance.start()
    assert imap_login(instance, "alice@example.test", "alice-password")
    assert imap_login(instance, "alice@example.test", "alice-password")
    instance.expect_log(r"event=password-check account=alice@example\.test cached=yes ok=yes")
    for i in range(3):
        assert not imap_login(instance, "alice@example.test", f"wrong-{i}")
    instance.expect_log(r"event=password-check account=alice@example\.test cached=no ok=no", count=3)
    assert not imap_login(instance, "alice@example.test", "alice-password")
    instance.expect_log(r"event=auth-failed proto=imap client=127\.0\.0\.1 login=alice@example\.test reason=blocked$")
    instance.ok("auth", "unblock", "127.0.0.1")
    instance.ok("auth", "unblock", "alice@example.test")
    assert imap_login(instance, "alice@example.test", "alice-password")
    instance.expect_log(r"event=password-check account=alice@example\.test cached=yes ok=yes", count=2)
