"""auth.argon2_memory and auth.argon2_passes: the cost of each new password hash.  A stored
hash keeps the cost it was made with, so passwords set before a change still log in."""

from __future__ import annotations

import imaplib

import pytest

from support.server import WaypostInstance
from waypost.config import ConfigError, settings_from_dict
from waypost.directory import Directory


def test_new_passwords_take_the_configured_cost_and_older_hashes_still_log_in(tmp_path):
    inst = WaypostInstance(tmp_path / "data", imap={"plaintext_without_tls": True},
                           auth={"argon2_memory": 65536, "argon2_passes": 3})  # the defaults
    inst.ok("account", "add", "old@example.test", "--password", "old-password")
    inst.configure(auth={"argon2_memory": 2048, "argon2_passes": 2})
    inst.ok("account", "add", "new@example.test", "--password", "new-password")
    db = inst.db()
    try:
        directory = Directory(db, "example.test")
        stored = {name: directory.lookup(name, "example.test").data["password"] for name in ("old", "new")}
    finally:
        db.close()
    assert stored["old"].startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert stored["new"].startswith("$argon2id$v=19$m=2048,t=2,p=4$")
    with inst:
        inst.start()
        for name in ("old", "new"):
            with imaplib.IMAP4(inst.host, inst.imap_port) as m:
                with pytest.raises(imaplib.IMAP4.error):
                    m.login(f"{name}@example.test", "wrong-password")
            with imaplib.IMAP4(inst.host, inst.imap_port) as m:
                assert m.login(f"{name}@example.test", f"{name}-password")[0] == "OK"


@pytest.mark.parametrize("auth", [{"argon2_memory": 31}, {"argon2_passes": 0}])
def test_a_cost_argon2_cannot_take_is_refused(tmp_path, auth):
    with pytest.raises(ConfigError, match="auth.argon2_memory and auth.argon2_passes"):
        settings_from_dict({"auth": auth}, tmp_path)
