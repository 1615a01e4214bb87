"""Issue 13 item 16: ``faß.de`` is one domain and ``fass.de`` another, wherever a domain
is read: the CLI, the Router table, SMTP recipients and login names."""

from __future__ import annotations

import base64
import json

from support.server import WaypostInstance, wait_for
from support.transcript import Transcript


def test_fass_and_fass_with_sharp_s_are_two_domains(tmp_path):
    inst = WaypostInstance(tmp_path / "d", relay={"trusted_networks": []}, smtp={"auth_requires_tls": False})
    inst.ok("domain", "add", "faß.de")
    inst.ok("domain", "add", "fass.de")  # another domain: no conflict
    names = [r["name"] for r in json.loads(inst.ok("domain", "list", "--json"))]
    assert "xn--fa-hia.de" in names and "fass.de" in names
    inst.ok("account", "add", "joerg@FAß.de", "--password", "sharp-s-pw")
    inst.ok("account", "add", "ulf@fass.de", "--password", "double-s-pw")
    route = json.loads(inst.ok("route", "joerg@ＦＡß。de", "--json"))
    assert route["route"]["kind"] == "local" and route["route"]["domain"] == "xn--fa-hia.de"
    route = json.loads(inst.ok("route", "joerg@fass.de", "--json"))
    assert route["route"]["kind"] == "refuse" and route["route"]["status"] == "5.1.1"
    inst.ok("router", "import", "-", input="<info@faß.de> = ulf@fass.de\n")
    route = json.loads(inst.ok("route", "info@xn--fa-hia.de", "--json"))
    assert route["route"]["kind"] == "local" and route["route"]["address"] == "ulf@fass.de"
    inst.ok("domain", "set", "fass.de", "--mail-to-unknown", "*@Faß.de")
    rows = {r["name"]: r for r in json.loads(inst.ok("domain", "list", "--json"))}
    assert rows["fass.de"]["mail_to_unknown"] == "*@xn--fa-hia.de"
    route = json.loads(inst.ok("route", "joerg@fass.de", "--json"))
    assert route["route"]["kind"] == "local" and route["route"]["address"] == "joerg@xn--fa-hia.de"
    inst.configure(etrn={"domains": ["faß.de"]})
    inst.ok("config", "check")
    text = inst.settings_path.read_text()
    inst.settings_path.write_text(text.replace('"faß.de"', '"☃.net"'))
    bad = inst.cli("config", "check")
    assert bad.exit_code == 1 and "etrn.domains" in bad.output
    inst.settings_path.write_text(text)
    try:
        inst.start()
        with Transcript("127.0.0.1", inst.smtp_port) as t:
            t.expect(220)
            t.cmd("EHLO client.example", 250)
            t.cmd("MAIL FROM:<x@outside.example> SMTPUTF8", 250)
            t.cmd("RCPT TO:<joerg@faß.de>", 250, "2.1.5")
            t.cmd("RCPT TO:<nobody@faß.de>", 550, "5.1.1")  # faß.de has no Mail to Unknown
            t.cmd("DATA", 354)
            t.send("Subject: idna\r\n\r\nhallo\r\n.")
            t.expect(250)
        wait_for(lambda: inst.messages("joerg@xn--fa-hia.de"), what="delivery to joerg@faß.de")
        assert inst.messages("ulf@fass.de") == []
        with Transcript("127.0.0.1", inst.submission_port) as t:
            t.expect(220)
            t.cmd("EHLO c", 250)
            plain = base64.b64encode("\0joerg@faß.de\0sharp-s-pw".encode()).decode()
            t.cmd(f"AUTH PLAIN {plain}", 235)
        with Transcript("127.0.0.1", inst.submission_port) as t:
            t.expect(220)
            t.cmd("EHLO c", 250)
            plain = base64.b64encode("\0ulf@faß.de\0double-s-pw".encode()).decode()
            t.cmd(f"AUTH PLAIN {plain}", 535)  # ulf is in fass.de, not in faß.de
    finally:
        inst.stop()
