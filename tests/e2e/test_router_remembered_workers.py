"""The answers each worker's Router remembers follow a CLI change at once, in every
worker: two SMTP sessions held by two different workers of a running server ask the
same recipients before and right after ``waypost account add|remove`` and
``waypost forwarder add`` (no wait, no retry)."""

from __future__ import annotations

import smtplib

from support.workers import on_two_workers


def test_cli_changes_reach_every_workers_remembered_answers(instance):
    instance.configure(server={"workers": 2})
    instance.start()

    def connect() -> smtplib.SMTP:
        c = smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=30)
        c.ehlo("client.example")
        return c

    first, second = on_two_workers(connect, lambda c: c.sock, lambda c: c.close(), instance.proc.pid)
    try:
        def rcpt_codes(address: str) -> list[int]:
            codes = []
            for c in (first, second):
                c.rset()
                assert c.mail("someone@far.example")[0] == 250
                codes.append(c.rcpt(address)[0])
                codes.append(c.rcpt(address)[0])  # asked again: the remembered answer
            return codes

        assert rcpt_codes("carol@example.test") == [550] * 4
        instance.ok("account", "add", "carol@example.test", "--password", "carol-password")
        assert rcpt_codes("carol@example.test") == [250] * 4
        instance.ok("account", "remove", "carol@example.test")
        assert rcpt_codes("carol@example.test") == [550] * 4
        instance.ok("forwarder", "add", "carol@example.test", "carol@elsewhere.example")
        assert rcpt_codes("carol@example.test") == [250] * 4
    finally:
        for c in (first, second):
            try:
                c.quit()
            except (smtplib.SMTPException, OSError):
                pass
