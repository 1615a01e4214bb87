"""SAVEDATE (RFC 8514) through the real listener with two workers: FETCH SAVEDATE is when
the message was stored in its mailbox (APPEND, COPY, MOVE, delivery), not its internal
date; SAVEDBEFORE, SAVEDON, SAVEDSINCE and SAVEDATESUPPORTED search on it; imaplib as
the client."""

from __future__ import annotations

import imaplib
import re
import smtplib
from datetime import date, datetime, timedelta

import pytest

from support.server import WaypostInstance, wait_for

USER = "sd@example.test"
PASSWORD = "savedate-password"
OLD = "01-Feb-2020 10:00:00 +0000"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imapsd") / "data", imap={"plaintext_without_tls": True},
                           server={"workers": 2})
    inst.ok("account", "add", USER, "--password", PASSWORD)
    inst.start()
    yield inst
    inst.stop()


def client(server: WaypostInstance) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    c.login(USER, PASSWORD)
    return c


def imap_date(d: date) -> str:
    return d.strftime("%d-%b-%Y")


def saved(data: list) -> dict[int, str]:
    out = {}
    for item in data:
        line = item if isinstance(item, bytes) else item[0]
        m = re.search(rb'UID (\d+) SAVEDATE (NIL|"[^"]+")', line)
        assert m, line
        out[int(m.group(1))] = m.group(2).decode()
    return out


def test_savedate_is_when_it_was_stored(server):
    c = client(server)
    assert "SAVEDATE" in c.capabilities
    c.create("Saved")
    msg = b"From: a@example.test\r\nSubject: old\r\n\r\nold body\r\n"
    assert c.append("Saved", "()", f'"{OLD}"', msg)[0] == "OK"
    c.select("Saved")
    typ, data = c.uid("FETCH", "1", "(INTERNALDATE SAVEDATE)")
    line = data[0]
    assert b'INTERNALDATE "01-Feb-2020' in line
    when = re.search(rb'SAVEDATE "([^"]+)"', line).group(1).decode()
    stamp = datetime.strptime(when, "%d-%b-%Y %H:%M:%S %z")
    assert abs(stamp.timestamp() - datetime.now().timestamp()) < 120
    today, yesterday = date.today(), date.today() - timedelta(days=1)

    def search(*criteria: str) -> list[int]:
        typ, data = c.uid("SEARCH", *criteria)
        assert typ == "OK"
        return [int(x) for x in data[0].split()]

    # The save date is today, the internal date is in 2020.
    assert search("SAVEDON", imap_date(today)) == [1] or search("SAVEDON", imap_date(yesterday)) == [1]
    assert search("SAVEDSINCE", imap_date(yesterday)) == [1]
    assert search("SAVEDBEFORE", imap_date(yesterday)) == []
    assert search("SINCE", imap_date(yesterday)) == []
    assert search("BEFORE", "01-Jan-2021") == [1]
    assert search("SAVEDATESUPPORTED") == [1]
    assert search("NOT", "SAVEDATESUPPORTED") == []
    # A COPY (and a MOVE) is stored anew: its own save date, the same internal date.
    c.create("Copies")
    assert c.uid("COPY", "1", "Copies")[0] == "OK"
    c.select("Copies")
    typ, data = c.uid("FETCH", "1:*", "(SAVEDATE INTERNALDATE)")
    assert b'INTERNALDATE "01-Feb-2020' in data[0]
    copy_when = datetime.strptime(saved(data)[1].strip('"'), "%d-%b-%Y %H:%M:%S %z")
    assert copy_when >= stamp
    typ, data = c.uid("FETCH", "1", "(SAVEDATE)")
    assert typ == "OK"
    c.logout()


def test_savedate_of_delivered_mail_in_the_other_worker(server):
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail("x@outside.test", [USER], b"From: x@outside.test\r\nSubject: in\r\n\r\nhello\r\n")
    wait_for(lambda: server.messages(USER), what="delivery")
    for _ in range(3):  # a connection per worker, likely both
        c = client(server)
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(SAVEDATE)")
        assert typ == "OK" and data and data[0] is not None
        assert all(v != "NIL" for v in saved(data).values())
        typ, found = c.uid("SEARCH", "SAVEDSINCE", imap_date(date.today() - timedelta(days=1)))
        assert found[0].split() == [str(u).encode() for u in sorted(saved(data))]
        c.logout()


def test_bad_savedate_searches(server):
    c = client(server)
    c.select("Saved")
    for criteria in (("SAVEDBEFORE",), ("SAVEDON", "32-Jan-2020"), ("SAVEDSINCE", "yesterday")):
        with pytest.raises(imaplib.IMAP4.error):
            c.uid("SEARCH", *criteria)
    assert c.noop()[0] == "OK"
    c.logout()
