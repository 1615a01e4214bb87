"""WITHIN (RFC 5032) through the real listener with two workers: SEARCH OLDER and
YOUNGER against the internal date at the time of the search, with imaplib; a search
context (RFC 5267) with them is refused NOUPDATE, as their answer changes with time
alone."""

from __future__ import annotations

import imaplib
import time
from datetime import datetime, timedelta, timezone

import pytest

from support.imap import Raw
from support.server import WaypostInstance

USER = "wi@example.test"
PASSWORD = "within-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapwi") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def test_older_and_younger(server):
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    assert "WITHIN" in c.capabilities
    c.create("Ages")
    now = datetime.now(timezone.utc)
    for hours in (48, 2, 0):
        when = imaplib.Time2Internaldate((now - timedelta(hours=hours)).timestamp())
        msg = f"From: a@example.test\r\nSubject: {hours}h\r\n\r\nbody\r\n".encode()
        assert c.append("Ages", "()", when, msg)[0] == "OK"
    c.select("Ages")

    def search(*criteria: str) -> list[int]:
        typ, data = c.uid("SEARCH", *criteria)
        assert typ == "OK"
        return [int(x) for x in data[0].split()]

    assert search("YOUNGER", "600") == [3]
    assert search("OLDER", "600") == [1, 2]
    assert search("OLDER", str(24 * 3600)) == [1]
    assert search("YOUNGER", str(3 * 3600)) == [2, 3]
    assert search("NOT", "YOUNGER", "600") == search("OLDER", "600")
    assert search("YOUNGER", str(3 * 3600), "OLDER", "600") == [2]
    # The time is the search's own: wait 2 s and the newest is older than 1 s.
    time.sleep(2)
    assert search("OLDER", "1") == [1, 2, 3]
    for bad in (("OLDER", "0"), ("YOUNGER", "-5"), ("OLDER",), ("YOUNGER", "soon")):
        with pytest.raises(imaplib.IMAP4.error):
            c.uid("SEARCH", *bad)
    c.logout()


def test_no_search_context_for_aging_criteria(server):
    r = Raw(server.imap_port)
    assert r.cmd(f"L LOGIN {USER} {PASSWORD}")[-1].startswith(b"L OK")
    assert r.cmd("S SELECT Ages")[-1].startswith(b"S OK")
    got = r.cmd("U1 SEARCH RETURN (COUNT UPDATE) YOUNGER 600")
    assert got == [b'* ESEARCH (TAG "U1") COUNT 1',
                   b'* NO [NOUPDATE "U1"] Results of OLDER/YOUNGER are not updated',
                   b"U1 OK SEARCH completed"]
    r.close()
