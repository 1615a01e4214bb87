"""Domain sharing, first part: the peer list, our Minger server answering for the
directory (seed 002; draft-hathcock-minger-06), and ``waypost share lookup``."""

from __future__ import annotations

import asyncio
import json

from support.server import WaypostInstance, free_port

from waypost.sharing import Code, query

SECRET = "office-secret-0123456789"


def test_minger_answers_for_the_directory_and_share_lookup_asks_peers(tmp_path):
    minger = free_port()
    b = WaypostInstance(tmp_path / "b", domain="example.test", hostname="b.example.test",
                        listen={"minger": f"127.0.0.1:{minger}"}, sharing={"secret": SECRET},
                        server={"workers": 2})
    b.ok("account", "add", "bob@example.test", "--no-password")
    b.ok("account", "add", "carl@example.test", "--no-password")
    b.ok("account", "set", "carl@example.test", "--disable")
    b.ok("alias", "add", "robert@example.test", "bob")
    a = WaypostInstance(tmp_path / "a", domain="example.test", hostname="a.example.test")
    try:
        b.start()
        assert any(line.startswith(f"listening minger 127.0.0.1:{minger}") for line in b.output)

        async def ask(mailbox, secret=SECRET):
            return await query("127.0.0.1", minger, mailbox, secret, 2.0)

        assert asyncio.run(ask("bob@example.test")) is Code.ACTIVE
        assert asyncio.run(ask("robert@example.test")) is Code.ACTIVE
        assert asyncio.run(ask("carl@example.test")) is Code.CANNOT_RECEIVE
        assert asyncio.run(ask("nobody@example.test")) is Code.NOT_FOUND
        assert asyncio.run(ask("bob@example.test", "wrong-secret-0123456789")) is Code.BAD_CREDENTIALS
        assert asyncio.run(ask("bob@example.test", None)) is Code.BAD_CREDENTIALS  # anonymous not allowed

        a.ok("share", "peer", "add", f"127.0.0.1:{b.smtp_port}", "--minger-port", str(minger), "--secret", SECRET)
        [row] = json.loads(a.ok("share", "peer", "list", "--json"))
        assert row["smtp_port"] == b.smtp_port and row["secret"] == "set"
        assert SECRET not in (a.data / "waypost.db").read_bytes().decode("latin-1")  # sealed at rest
        for who, code in (("bob", 5), ("carl", 4), ("nobody", 3)):
            [answer] = json.loads(a.ok("share", "lookup", f"{who}@example.test", "--json"))
            assert answer["code"] == code, (who, answer)
        a.ok("share", "peer", "remove", "127.0.0.1")
        assert json.loads(a.ok("share", "peer", "list", "--json")) == []
    finally:
        b.stop()


def test_minger_settings_are_checked(instance):
    instance.configure(listen={"minger": f"127.0.0.1:{free_port()}"}, sharing={"secret": "short", "allow_anonymous": True})
    text = (instance.data / "waypost.toml").read_text().replace("allow_anonymous = true", "allow_anonymous = false")
    (instance.data / "waypost.toml").write_text(text)
    bad = instance.cli("config", "check")
    assert bad.exit_code == 1 and "sharing.secret" in bad.output
    (instance.data / "waypost.toml").write_text(text.replace("allow_anonymous = false", "allow_anonymous = true"))
    short = instance.cli("share", "peer", "add", "127.0.0.2", "--secret", "too-short")
    assert short.exit_code == 1 and "--secret: at least 16 characters" in short.output
    nodomain = instance.cli("share", "peer", "add", "127.0.0.2", "--domain", "elsewhere.test")
    assert nodomain.exit_code == 1 and "not a local domain" in nodomain.output
