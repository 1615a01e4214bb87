"""URLAUTH (RFC 4467) and URLAUTH=BINARY (RFC 5524) without a socket: the commands
parse (RFC 4467 §7 examples), URLAUTH URLs split into their parts, the INTERNAL
verifier is HMAC-SHA1 of the rump, the responses serialise, and the access keys are
kept by both storage engines."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

import pytest

from waypost.db import NotFound
from waypost.imap.proto import (
    BadCommand,
    GenUrlAuth,
    GenUrlAuthData,
    ResetKey,
    Section,
    UrlFetch,
    UrlFetchData,
    UrlFetchItem,
    parse_auth_url,
    parse_command,
)
from waypost.imap.proto.state import State, is_legal
from waypost.imap.proto.structure import MultiPart, SinglePart
from waypost.imap.urlauth import part_structure, verifier

RUMP = "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"


def test_rfc4467_genurlauth_and_urlfetch_examples_parse() -> None:
    # RFC 4467 §7.2 and §7.3 (the A001 and A002 commands, a verifier of 32 hex digits)
    cmd, rest = parse_command(b'a001 GENURLAUTH "' + RUMP.encode() + b'" INTERNAL\r\n')
    assert rest == b"" and cmd == GenUrlAuth("a001", ((RUMP, "INTERNAL"),))
    full = RUMP + ":internal:91354a473744909de610943775f92038"
    cmd, _ = parse_command(b'a002 URLFETCH "' + full.encode() + b'"\r\n')
    assert cmd == UrlFetch("a002", (UrlFetchItem(full),))
    cmd, _ = parse_command(b'a003 GENURLAUTH "' + RUMP.encode() + b'" INTERNAL "' + RUMP.encode() + b'" internal\r\n')
    assert isinstance(cmd, GenUrlAuth) and [m for _, m in cmd.urls] == ["INTERNAL", "INTERNAL"]


def test_resetkey_forms_parse() -> None:
    assert parse_command(b"a RESETKEY\r\n")[0] == ResetKey("a", None)
    assert parse_command(b"a RESETKEY INBOX\r\n")[0] == ResetKey("a", "INBOX")
    assert parse_command(b"a RESETKEY Drafts INTERNAL\r\n")[0] == ResetKey("a", "Drafts", ("INTERNAL",))


def test_rfc5524_extended_urlfetch_parses() -> None:
    cmd, _ = parse_command(b'a URLFETCH ("imap://u@h/INBOX/;uid=1;urlauth=anonymous:INTERNAL:'
                           + b"0" * 40 + b'" BINARY bodypartstructure) "x"\r\n')
    assert isinstance(cmd, UrlFetch)
    assert cmd.items[0].args == ("BINARY", "BODYPARTSTRUCTURE") and cmd.items[1] == UrlFetchItem("x")
    assert parse_command(b"a URLFETCH (x)\r\n")[0] == UrlFetch("a", (UrlFetchItem("x", ()),))


@pytest.mark.parametrize("line", [
    b"a GENURLAUTH\r\n",                 # no URL
    b'a GENURLAUTH "x"\r\n',             # no mechanism
    b'a GENURLAUTH "x" INT#RNAL\r\n',     # not a mechanism
    b"a URLFETCH\r\n",
    b"a URLFETCH (x BOGUS)\r\n",          # RFC 5524: BODYPARTSTRUCTURE, BINARY, BODY only
    b"a URLFETCH (x BINARY\r\n",
    b"a RESETKEY INBOX INT#RNAL\r\n",
])
def test_malformed_commands_are_bad(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_command(line)


def test_the_commands_are_command_auth() -> None:
    for name in ("GENURLAUTH", "URLFETCH", "RESETKEY"):
        assert not is_legal(name, State.NOT_AUTHENTICATED)
        assert is_legal(name, State.AUTHENTICATED) and is_legal(name, State.SELECTED)


def test_auth_urls_split_into_their_parts() -> None:
    u = parse_auth_url(RUMP)
    assert (u.user, u.host, u.access, u.access_user, u.mechanism, u.token) == (
        "joe", "example.com", "submit", "fred", None, None)
    assert u.rump == RUMP and u.part.mailbox == "INBOX" and u.part.uid == 20
    assert u.part.section == Section((1, 2))
    full = parse_auth_url("imap://joe%40example.com;AUTH=*@mail.example.com:143/Caf%C3%A9;UIDVALIDITY=7/;UID=3"
                          "/;PARTIAL=0.10;EXPIRE=2030-01-02T03:04:05Z;URLAUTH=user+bob%40example.com"
                          ":INTERNAL:" + "AB" * 20)
    assert full.user == "joe@example.com" and full.host == "mail.example.com:143"
    assert full.part.mailbox == "Caf&AOk-" and full.part.uidvalidity == 7 and full.part.partial == (0, 10)
    assert full.expire == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert full.access_user == "bob@example.com" and full.mechanism == "INTERNAL" and full.token == "ab" * 20
    assert full.rump.endswith(";URLAUTH=user+bob%40example.com")
    assert parse_auth_url("imap://a@h/INBOX/;uid=1;urlauth=anonymous").access == "anonymous"
    assert parse_auth_url("imap://a@h/INBOX/;uid=1;urlauth=AUTHUSER").access == "authuser"


@pytest.mark.parametrize("bad", [
    "/INBOX/;UID=1;URLAUTH=anonymous",                         # not imap://
    "imap://h/INBOX/;UID=1;URLAUTH=anonymous",                  # no user (RFC 4467 §6: required)
    "imap://a@h/INBOX/;UID=1",                                  # no URLAUTH
    "imap://a@h/INBOX;URLAUTH=anonymous",                       # no UID
    "imap://a@h/INBOX/;UID=1;URLAUTH=everyone",                 # no such access identifier
    "imap://a@h/INBOX/;UID=1;EXPIRE=2030-01-02T03:04:05;URLAUTH=anonymous",  # no time zone
    "imap://a@h/INBOX/;UID=1;EXPIRE=2030-13-02T03:04:05Z;URLAUTH=anonymous",
    "imap://a@h/INBOX/;UID=1;URLAUTH=anonymous:INTERNAL:abc",  # verifier too short
    "imap://a@h/INBOX/;UID=1/;SECTION=BOGUS;URLAUTH=anonymous",
])
def test_bad_auth_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_auth_url(bad)


def test_internal_verifier_is_hmac_sha1_of_the_rump() -> None:
    key = bytes(range(32))
    assert verifier(key, RUMP) == hmac.new(key, RUMP.encode(), hashlib.sha1).hexdigest()
    assert len(verifier(key, RUMP)) == 40


def test_responses_serialise() -> None:
    full = RUMP + ":INTERNAL:" + "0" * 40
    assert GenUrlAuthData((full,)).encode() == b'* GENURLAUTH "' + full.encode() + b'"\r\n'
    assert UrlFetchData(full, b"Hi").encode() == b'* URLFETCH "' + full.encode() + b'" "Hi"\r\n'
    assert UrlFetchData(full).encode() == b'* URLFETCH "' + full.encode() + b'" NIL\r\n'
    assert UrlFetchData("u", b"a\r\nb").encode() == b'* URLFETCH "u" {4}\r\na\r\nb\r\n'
    ext = UrlFetchData("u", ext=(("BODYPARTSTRUCTURE", b'("TEXT" "PLAIN")'), ("BINARY", b"~{1}\r\n\x00")))
    assert ext.encode() == b'* URLFETCH "u" (BODYPARTSTRUCTURE ("TEXT" "PLAIN")) (BINARY ~{1}\r\n\x00)\r\n'


def test_part_structure_follows_part_numbers() -> None:
    leaf1, leaf2 = SinglePart("TEXT", "PLAIN", size=1, lines=1), SinglePart("TEXT", "HTML", size=2, lines=1)
    inner = MultiPart((leaf1, leaf2), "ALTERNATIVE")
    msg = SinglePart("MESSAGE", "RFC822", size=9, lines=3, body=inner)
    top = MultiPart((leaf1, msg), "MIXED")
    assert part_structure(top, (1,)) is leaf1
    assert part_structure(top, (2,)) is msg
    assert part_structure(top, (2, 2)) is leaf2
    assert part_structure(top, (3,)) is None
    assert part_structure(leaf1, (1,)) is leaf1  # a message that is not multipart has a part 1
    assert part_structure(leaf1, (2,)) is None


def test_access_keys_are_kept_per_user_and_mailbox_on_both_engines(make_db) -> None:
    db = make_db()
    box = db.mailbox_create("example.test", "joe", "INBOX", "", 1)
    other = db.mailbox_create("example.test", "joe", "Drafts", ".Drafts", 2)
    assert db.urlauth_key(box.id, "example.test", "joe") is None
    key = db.urlauth_key(box.id, "example.test", "joe", create=True)
    assert key is not None and len(key) == 32
    assert db.urlauth_key(box.id, "example.test", "joe", create=True) == key  # made once
    assert db.urlauth_key(box.id, "example.test", "bob", create=True) != key  # per user
    second = db.urlauth_key(other.id, "example.test", "joe", create=True)
    assert second not in (None, key)
    db.urlauth_reset("example.test", "joe", box.id)
    assert db.urlauth_key(box.id, "example.test", "joe") is None
    assert db.urlauth_key(other.id, "example.test", "joe") == second
    assert db.urlauth_key(box.id, "example.test", "joe", create=True) not in (None, key)
    db.urlauth_reset("example.test", "joe")
    assert db.urlauth_key(other.id, "example.test", "joe") is None
    assert db.urlauth_key(box.id, "example.test", "bob") is not None  # another user's stays
    db.mailbox_delete(box.id)  # the keys go with the mailbox
    assert db.urlauth_key(box.id, "example.test", "bob") is None
    with pytest.raises(NotFound):
        db.urlauth_key(box.id, "example.test", "bob", create=True)
