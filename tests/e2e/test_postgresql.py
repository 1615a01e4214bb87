"""The PostgreSQL engine as a client sees it: a server whose database cannot be reached
answers "try again later" (451 4.3.0), says so in one log line, and recovers by itself
when the database's port comes up.  (PostgreSQL itself is shared on this machine and is
never stopped: the port that comes up is a forwarder to it, support/tcpproxy.py.)"""

from __future__ import annotations

import smtplib

from support import pg
from support.server import WaypostInstance, free_port, wait_for
from support.tcpproxy import TCPProxy


def test_unreachable_database_gives_451_then_mail_flows_when_it_comes_back(tmp_path):
    url = pg.new_url()
    inst = WaypostInstance(tmp_path / "data", database=url)
    inst.ok("account", "add", "alice@example.test", "--password", "alice-password")
    port = free_port()
    inst.configure(storage={"database": pg.at_port(url, port), "pool_timeout": 1.0})
    with inst:
        inst.start()  # the server starts although its database is down
        with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
            c.ehlo("client.example")
            assert c.mail("someone@outside.example")[0] == 250
            code, text = c.rcpt("alice@example.test")
            assert (code, text[:5]) == (451, b"4.3.0")
        line = inst.expect_log(r"event=storage-unavailable")[0]
        assert f"127.0.0.1:{port}" in line and "Traceback" not in "".join(inst.output)

        with TCPProxy(port, ("127.0.0.1", 5432)):
            def accepted() -> bool:
                with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=30) as c:
                    c.ehlo("client.example")
                    c.mail("someone@outside.example")
                    if c.rcpt("alice@example.test")[0] != 250:
                        return False
                    code, _ = c.data(b"Subject: back\r\n\r\nthe database is back\r\n")
                    # a pool still reconnecting on a loaded machine may answer DATA 451 too
                    assert code in (250, 451)
                    return code == 250
            wait_for(accepted, timeout=30, interval=0.5, what="a 250 once the database is reachable")
            wait_for(lambda: len(inst.messages("alice@example.test")) == 1, what="the message delivered")
            inst.stop()


def test_init_with_a_postgresql_url_writes_it_and_makes_the_schema(tmp_path):
    url = pg.new_url()
    inst = WaypostInstance(tmp_path / "data", database=url)
    assert inst.settings.storage.database == url
    assert not (inst.data / "waypost.db").exists()
    assert "postmaster" in inst.ok("account", "list")
    bad = inst.cli("init", str(tmp_path / "other"), "--database", "postgresql://postgres@127.0.0.1:1", use_data=False)
    assert bad.exit_code != 0 and "names no database" in bad.output
