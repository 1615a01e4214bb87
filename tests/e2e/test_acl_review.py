"""ACL review: holes found in the shared-mailbox rights checks (RFC 4314)."""

from __future__ import annotations

import imaplib

import pytest

from support.server import WaypostInstance


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("aclreview") / "data", imap={"plaintext_without_tls": True})
    for who in ("alice", "bob"):
        inst.ok("account", "add", f"{who}@example.test", "--password", f"{who}-pw")
    inst.start()
    a = login(inst, "alice")
    for box in ("movable", "secret", "flagged"):
        assert a.create(box)[0] == "OK"
    assert cmd(a, "SETACL", "movable", "bob", "lrx")[0] == "OK"          # no "k" anywhere
    assert cmd(a, "SETACL", "INBOX", "bob", "lk")[0] == "OK"             # k on INBOX only
    assert cmd(a, "SETACL", "flagged", "bob", "lrstw")[0] == "OK"
    assert a.append("flagged", "(\\Seen)", None, b"Subject: read by alice\r\n\r\nx\r\n")[0] == "OK"
    a.logout()
    yield inst
    inst.stop()


def login(server: WaypostInstance, who: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(f"{who}@example.test", f"{who}-pw")
    return c


def cmd(c: imaplib.IMAP4, name: str, *args: str):
    return c._simple_command(name, *args)  # type: ignore[attr-defined]


def test_rename_needs_k_on_the_new_parent(office):
    # RFC 4314 §4: RENAME needs "x" on the old mailbox and "k" on the new one's parent.
    bob = login(office, "bob")
    try:
        typ, _ = bob.rename("~alice/movable", "~alice/secret/moved")  # no "k" on secret
        assert typ == "NO"
    finally:
        bob.logout()


def test_create_under_a_hidden_mailbox_needs_k_on_that_mailbox(office):
    # bob has "k" on alice's INBOX only; ~alice/secret grants him nothing.
    bob = login(office, "bob")
    try:
        typ, _ = bob.create("~alice/secret/planted")
        assert typ == "NO"
    finally:
        bob.logout()
    a = login(office, "alice")
    try:
        assert b"secret/planted" not in b"\n".join(a.list('""', "*")[1])
    finally:
        a.logout()

