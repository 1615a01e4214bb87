"""An authenticated sender may use only its own addresses (issue 13 item 12).

Its own: the account, its aliases, in the domain and the domain's aliases; plus the
addresses an administrator lets it send as (``account set --send-as``).  A domain's
``--send-as domain|any`` relaxes the rule for its accounts.  Checked for MAIL FROM (553
5.7.1) and for the From: header field (550 5.7.1 after DATA).
"""

from __future__ import annotations

import smtplib
import ssl

import pytest

from support.server import wait_for
from support.tls import client_context


def _tls() -> ssl.SSLContext:
    return client_context()


@pytest.fixture
def clients(instance):
    instance.ok("domain", "add", "client1.com", "--alias", "client1.net")
    instance.ok("domain", "add", "client2.org")
    instance.ok("account", "add", "info@client1.com", "--password", "info-pw")
    instance.ok("account", "add", "bob@client1.com", "--password", "bob-pw")
    instance.ok("account", "add", "ceo@client2.org", "--password", "ceo-pw")
    instance.ok("alias", "add", "sales@client1.com", "info")
    instance.ok("group", "add", "team@client1.com", "--member", "info", "--member", "bob")
    instance.start()
    return instance


def _send(inst, mail_from: str, header_from: str, login: str = "info@client1.com", password: str = "info-pw",
          port: str = "submission") -> tuple[int, str]:
    """(code, enhanced status) of the first refusal, or (250, ...) when queued."""
    with smtplib.SMTP("127.0.0.1", getattr(inst, f"{port}_port")) as c:
        c.starttls(context=_tls())
        c.login(login, password)
        code, text = c.mail(mail_from)
        if code != 250:
            return code, text.decode().split()[0]
        assert c.rcpt("ceo@client2.org")[0] == 250
        code, text = c.data(f"From: {header_from}\r\nSubject: t\r\n\r\nbody\r\n".encode())
        return code, text.decode().split()[0]


def test_spoofed_envelope_and_header_senders_are_refused(clients):
    assert _send(clients, "ceo@client2.org", "ceo@client2.org") == (553, "5.7.1")
    assert _send(clients, "info@client1.com", "ceo@client2.org") == (550, "5.7.1")
    assert _send(clients, "info@client1.com", '"The CEO" <ceo@client2.org>, info@client1.com') == (550, "5.7.1")
    assert _send(clients, "bob@client1.com", "bob@client1.com") == (553, "5.7.1")  # another account of the domain
    assert _send(clients, "team@client1.com", "info@client1.com") == (553, "5.7.1")  # a group: only with a right
    # Also on the relay port, once authenticated.
    assert _send(clients, "ceo@client2.org", "info@client1.com", port="smtp") == (553, "5.7.1")
    clients.expect_log(r"event=sender-refused .*account=info@client1.com .*sender=<ceo@client2.org>")
    assert not clients.messages("ceo@client2.org")


def test_own_addresses_are_accepted(clients):
    for sender, header in [("info@client1.com", "Info <info@client1.com>"),
                           ("INFO@Client1.COM", "info@client1.com"),
                           ("sales@client1.com", "Sales <sales@client1.com>"),   # its alias
                           ("info@client1.net", "info@client1.net"),             # the domain's alias
                           ("sales@client1.net", "sales@client1.com"),
                           ("", "info@client1.com")]:                            # a null reverse-path
        assert _send(clients, sender, header)[0] == 250, sender
    wait_for(lambda: len(clients.messages("ceo@client2.org")) == 6)


def test_send_as_rights_and_the_domain_setting(clients):
    clients.ok("account", "set", "info@client1.com", "--send-as", "team@client1.com", "--send-as", "ceo@client2.org")
    assert _send(clients, "team@client1.com", "Team <team@client1.com>")[0] == 250
    assert _send(clients, "ceo@client2.org", "ceo@client2.org")[0] == 250
    assert _send(clients, "bob@client1.com", "bob@client1.com") == (553, "5.7.1")
    clients.ok("account", "set", "info@client1.com", "--no-send-as")
    assert _send(clients, "team@client1.com", "team@client1.com") == (553, "5.7.1")
    # The domain relaxes the rule for its own accounts.
    clients.ok("domain", "set", "client1.com", "--send-as", "domain")
    assert _send(clients, "bob@client1.com", "bob@client1.net")[0] == 250
    assert _send(clients, "ceo@client2.org", "ceo@client2.org") == (553, "5.7.1")
    clients.ok("domain", "set", "client1.com", "--send-as", "any")
    assert _send(clients, "ceo@client2.org", "ceo@client2.org")[0] == 250
    # ... and only for them: client2.org's accounts are still held to their own.
    assert _send(clients, "info@client1.com", "info@client1.com", login="ceo@client2.org", password="ceo-pw") \
        == (553, "5.7.1")
