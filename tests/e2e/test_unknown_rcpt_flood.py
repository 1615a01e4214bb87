"""A flood of unknown RCPTs (the settings cache then keeps a domain's names: docs/admin-guide.md)
through the real SMTP listener with two workers: a name made by the CLI afterwards is
accepted at once by every worker, removed and made again likewise, and after kill -9."""

from __future__ import annotations

import smtplib

SESSIONS = 6  # several connections: both workers take some


def _rcpts(instance, addresses: list[str]) -> list[int]:
    """The RCPT reply codes of each address, in each of SESSIONS sessions."""
    codes: list[int] = []
    for _ in range(SESSIONS):
        with smtplib.SMTP(instance.host, instance.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("sender@outside.example")
            codes += [s.rcpt(a)[0] for a in addresses]
            s.rset()
    return codes


def test_a_name_made_after_a_flood_is_seen_by_every_worker(instance):
    instance.configure(server={"workers": 2}, smtp={"max_errors": 10_000})
    instance.start()
    unknown = [f"nobody{i}@{instance.domain}" for i in range(40)]  # past the 32 misses in every worker
    assert set(_rcpts(instance, unknown)) == {550}
    assert set(_rcpts(instance, [f"ann@{instance.domain}"])) == {550}

    instance.ok("account", "add", f"ann@{instance.domain}", "--password", "ann-password")
    assert set(_rcpts(instance, [f"ann@{instance.domain}"] + unknown[:5])) == {250, 550}
    assert _rcpts(instance, [f"ann@{instance.domain}"]) == [250] * SESSIONS

    instance.ok("account", "remove", f"ann@{instance.domain}")
    assert set(_rcpts(instance, unknown + [f"ann@{instance.domain}"])) == {550}
    instance.ok("forwarder", "add", f"ann@{instance.domain}", "ann@elsewhere.example")
    assert _rcpts(instance, [f"ann@{instance.domain}"]) == [250] * SESSIONS

    instance.kill9()
    instance.start()
    assert set(_rcpts(instance, unknown)) == {550}
    assert _rcpts(instance, [f"ann@{instance.domain}"]) == [250] * SESSIONS
    # Hostile names in the flooded domain get a clean reply, never a dropped connection.
    with smtplib.SMTP(instance.host, instance.smtp_port, timeout=30) as s:
        s.ehlo("client.example")
        s.mail("sender@outside.example")
        assert s.rcpt(f'"a\\"b"@{instance.domain}')[0] == 550
        assert s.docmd(f"RCPT TO:<x\x7f@{instance.domain}>")[0] in (501, 553)
        assert s.noop()[0] == 250
