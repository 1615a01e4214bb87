"""Domain sharing (seed 002; draft-hathcock-minger-06): our Minger server, the peer list,
look-ups before Mail to Unknown, routing to the owner's office, caches, shared groups."""

from __future__ import annotations

import asyncio
import json
import smtplib

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
        db = a.db()  # sealed at rest, on every engine
        try:
            stored = json.dumps(db.get_value("sharing.peers"))
            assert "127.0.0.1" in stored and SECRET not in stored
        finally:
            db.close()
        stored = a.stored_text()  # the peer is there, its secret only sealed
        assert "127.0.0.1" in stored and SECRET not in stored
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


def _office(tmp_path, name, ip):
    inst = WaypostInstance(tmp_path / name, domain="example.test", hostname=f"{name}.example.test", host=ip,
                           sharing={"secret": SECRET, "timeout": 1.0}, delivery={"bind_address": ip})
    inst.minger_port = free_port(ip)
    inst.configure(listen={"minger": f"{ip}:{inst.minger_port}"})
    return inst


def _send(inst, rcpt, subject):
    with smtplib.SMTP(inst.host, inst.smtp_port, source_address=("127.0.0.9", 0)) as c:
        c.ehlo("client.example")
        return c.sendmail("someone@outside.example", [rcpt], f"Subject: {subject}\r\n\r\nx\r\n".encode())


def test_three_offices_share_one_domain(tmp_path):
    from support.server import wait_for

    offices = {"a": _office(tmp_path, "a", "127.0.0.1"), "b": _office(tmp_path, "b", "127.0.0.2"),
               "c": _office(tmp_path, "c", "127.0.0.3")}
    a, b, c = offices["a"], offices["b"], offices["c"]
    a.ok("account", "add", "alice@example.test", "--no-password")
    b.ok("account", "add", "bob@example.test", "--no-password")
    c.ok("account", "add", "carol@example.test", "--no-password")
    for me in offices.values():
        for other in offices.values():
            if other is not me:
                me.ok("share", "peer", "add", f"{other.host}:{other.smtp_port}",
                      "--minger-port", str(other.minger_port), "--secret", SECRET)
    try:
        for o in offices.values():
            o.start()
        # Any office takes mail for anyone; it lands on the right server.
        for via in offices.values():
            for who in ("alice", "bob", "carol"):
                _send(via, f"{who}@example.test", f"{who} via {via.host}")
        for who, home in (("alice", a), ("bob", b), ("carol", c)):
            wait_for(lambda: len(home.messages(f"{who}@example.test")) == 3, what=f"{who}'s three messages")
        assert not (a.data / "mail" / "example.test" / "bob").exists()
        # The positive answer was cached: the second look-up for bob on a did not ask.
        _send(a, "bob@example.test", "cached")
        wait_for(lambda: len(b.messages("bob@example.test")) == 4)
        assert len(a.log_lines(r"event=minger-lookup address=bob@example.test")) == 1
        cached = json.loads(a.ok("share", "cache", "list", "--json"))
        assert {"address": "bob@example.test", "peer": "127.0.0.2"} == {k: cached[0][k] for k in ("address", "peer")}
        # Nobody has it: every peer says 3, Mail to Unknown (rejected) applies.
        try:
            _send(a, "nobody@example.test", "lost")
            raise AssertionError("accepted mail for an unknown user")
        except smtplib.SMTPRecipientsRefused as e:
            assert e.recipients["nobody@example.test"][0] == 550
        # A peer that is down: 451 at RCPT time, so the sender retries; then it works.
        c.stop()
        a.ok("share", "cache", "clear")
        try:
            _send(a, "carol@example.test", "while c is down")
            raise AssertionError("accepted mail while the owner's office could not be asked")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["carol@example.test"]
            assert code == 451 and text.startswith(b"4.4.3")
        created = a.cli("account", "add", "dave@example.test", "--no-password")
        assert created.exit_code == 1 and "127.0.0.3 could not be asked" in created.output
        c.start()
        _send(a, "carol@example.test", "retried")
        wait_for(lambda: len(c.messages("carol@example.test")) == 4, what="the retried message")
        # A name that exists on a peer is not created here (unless --force).
        dup = a.cli("account", "add", "bob@example.test", "--no-password")
        assert dup.exit_code == 1 and "exists on the sharing peer 127.0.0.2" in dup.output
        assert a.cli("account", "add", "dave@example.test", "--no-password").exit_code == 0
        # waypost route shows each peer's answer.
        route = json.loads(a.ok("route", "carol@example.test", "--json"))
        assert route["target"] == f"127.0.0.3:{c.smtp_port}"
    finally:
        for o in offices.values():
            o.stop()


def test_a_shared_group_reaches_every_member_once_and_caches_cannot_loop(tmp_path):
    import time as _time

    from support.server import wait_for

    offices = {"a": _office(tmp_path, "a", "127.0.0.1"), "b": _office(tmp_path, "b", "127.0.0.2"),
               "c": _office(tmp_path, "c", "127.0.0.3")}
    members = {"a": "alice", "b": "bob", "c": "carol"}
    for key, o in offices.items():
        o.ok("account", "add", f"{members[key]}@example.test", "--no-password")
        o.ok("group", "add", "staff@example.test", "--member", members[key], "--shared")
        for other in offices.values():
            if other is not o:
                o.ok("share", "peer", "add", f"{other.host}:{other.smtp_port}",
                     "--minger-port", str(other.minger_port), "--secret", SECRET)
    a, b, c = offices["a"], offices["b"], offices["c"]
    # Poison the caches: a thinks ghost is on b, b thinks ghost is on a.
    for me, other in ((a, "127.0.0.2"), (b, "127.0.0.1")):
        db = me.db()
        db.set_value("sharing.cache", {"ghost@example.test": {"peer": other, "expires": _time.time() + 3600}})
        db.close()
    try:
        for o in offices.values():
            o.start()
        _send(b, "staff@example.test", "all hands")
        for key, o in offices.items():
            wait_for(lambda: len(o.messages(f"{members[key]}@example.test")) == 1, what=f"{members[key]}'s copy\n" + "\n".join(b.output[-30:]))
        _send(a, "ghost@example.test", "nobody has me")  # accepted: the (wrong) cache says b
        wait_for(lambda: a.log_lines(r"event=bounced .*rcpt=<ghost@example.test>"), what="the bounce, not a loop")
        b.expect_log(r"event=rcpt-refused .*rcpt=<ghost@example.test>")
        assert not b.log_lines(r"event=received .*rcpt=<ghost@example.test>")
        # A later message to the group reaches everyone: by then a second copy of the
        # first, had one been under way, would have arrived before it.
        _send(b, "staff@example.test", "later")
        for key, o in offices.items():
            wait_for(lambda: len(o.messages(f"{members[key]}@example.test")) >= 2, what=f"{members[key]}'s later copy")
        for key, o in offices.items():  # exactly one copy of each message
            subjects = sorted(p.read_bytes().split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
                              for p in o.messages(f"{members[key]}@example.test"))
            assert subjects == [b"all hands", b"later"], subjects
    finally:
        for o in offices.values():
            o.stop()


def test_an_address_minger_cannot_carry_is_not_asked_and_a_dead_peer_means_451(instance):
    from support.transcript import Transcript

    instance.ok("share", "peer", "add", "127.0.0.5:9", "--minger-port", str(free_port()), "--secret", SECRET)
    instance.configure(sharing={"timeout": 0.5})
    instance.start()
    with Transcript("127.0.0.1", instance.smtp_port) as t:
        t.expect(220)
        t.cmd("EHLO c", 250)
        t.cmd("MAIL FROM:<x@outside.example>", 250)
        t.cmd('RCPT TO:<"a b"@example.test>', 550, "5.1.1")  # no traceback, no 451 for days
        t.cmd("RCPT TO:<someone@example.test>", 451, "4.4.3")  # the peer cannot be asked
    assert not instance.log_lines("Traceback")


def test_query_sharing_hosts_for_message_senders(tmp_path):
    """Issue 13 item 19 (seed 002, "Query Domain Sharing hosts for message senders"):
    with ``sharing.query_senders`` a MAIL FROM address in a shared domain must exist here
    or on a peer; off (the default), every sender is accepted as before."""
    from support.server import wait_for
    from support.transcript import Transcript

    offices = {"a": _office(tmp_path, "a", "127.0.0.1"), "b": _office(tmp_path, "b", "127.0.0.2"),
               "c": _office(tmp_path, "c", "127.0.0.3")}
    a, b, c = offices["a"], offices["b"], offices["c"]
    a.configure(sharing={"query_senders": True})
    a.ok("account", "add", "alice@example.test", "--no-password")
    b.ok("account", "add", "bob@example.test", "--no-password")
    c.ok("account", "add", "carol@example.test", "--no-password")
    c.ok("account", "add", "cid@example.test", "--no-password")
    c.ok("account", "set", "cid@example.test", "--disable")
    for me in offices.values():
        for other in offices.values():
            if other is not me:
                me.ok("share", "peer", "add", f"{other.host}:{other.smtp_port}",
                      "--minger-port", str(other.minger_port), "--secret", SECRET)

    def mail_from(inst, sender, code, enhanced=None, source="127.0.0.9"):
        with Transcript(inst.host, inst.smtp_port, source=source) as t:
            t.expect(220)
            t.cmd("EHLO client.example", 250)
            return t.cmd(f"MAIL FROM:<{sender}>", code, enhanced)

    try:
        for o in offices.values():
            o.start()
        mail_from(a, "alice@example.test", 250, "2.1.0")          # ours
        mail_from(a, "bob@example.test", 250, "2.1.0")            # on peer b
        mail_from(a, "carol@EXAMPLE.test", 250, "2.1.0")          # on peer c
        mail_from(a, "cid@example.test", 250, "2.1.0")            # exists on c (disabled there)
        mail_from(a, "someone@outside.example", 250, "2.1.0")     # not a shared domain
        mail_from(a, "", 250, "2.1.0")                            # the null sender
        reply = mail_from(a, "ghost@example.test", 550, "5.1.0")  # nowhere
        assert "ghost@example.test" in reply.text
        a.expect_log(r"event=sender-refused .*sender=<ghost@example.test>")
        mail_from(a, "srs0=x=y=z@example.test", 250, "2.1.0", source=b.host)  # a peer vouches for its own
        mail_from(b, "ghost@example.test", 250, "2.1.0")          # b keeps the default: off
        assert not b.log_lines(r"event=minger-lookup address=ghost")
        # The positive answer for bob was remembered: asked once.
        mail_from(a, "bob@example.test", 250, "2.1.0")
        assert len(a.log_lines(r"event=minger-lookup address=bob@example.test")) == 1
        # A peer that cannot be asked: 451, so the sender retries.
        c.stop()
        a.ok("share", "cache", "clear")
        mail_from(a, "carol@example.test", 451, "4.4.3")
        mail_from(a, "alice@example.test", 250, "2.1.0")          # ours: nobody is asked
        c.start()
        # A whole message from a sender on c, through a, to bob on b.
        with smtplib.SMTP(a.host, a.smtp_port, source_address=("127.0.0.9", 0)) as s:
            s.ehlo("client.example")
            s.sendmail("carol@example.test", ["bob@example.test"], b"Subject: from c via a\r\n\r\nx\r\n")
        got = wait_for(lambda: b.messages("bob@example.test"), what="carol's message on b")
        assert b"from c via a" in got[0].read_bytes()
    finally:
        for o in offices.values():
            o.stop()
