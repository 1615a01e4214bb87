"""Remote delivery against real peers on 127.0.0.1: a dnslib DNS server serving a zone
made by each test, and aiosmtpd receiving servers on free ports.

Every MX and host name resolves to 127.0.0.1 and ``delivery.smtp_port`` points at the
receiver, so hops differ only by name: a test that needs one hop to fail makes the
receiver fail its first connection(s), or (with ``deliver_to_hops``) gives hops their
own ports.  No test reaches any other address.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as ServerSMTP
from aiosmtpd.smtp import Envelope, Session

from support.dnsserver import TestDNSServer
from waypost.config import Settings
from waypost.delivery import (
    Destination,
    Hop,
    PermanentResolveError,
    RecipientResult,
    Resolver,
    TemporaryResolveError,
    deliver,
    deliver_to_hops,
    plan,
    split_reply,
)

LOCAL = "127.0.0.1"
HELO = "waypost.test"
MESSAGE = b"From: a@sender.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"


# -- receiving SMTP servers ------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    mail_options: list[str]
    recipients: list[str]
    rcpt_options: list[str]
    content: bytes
    tls: bool
    helo: str


@dataclass
class Receiver:
    """An aiosmtpd server with a recording handler.

    Recipients whose local part starts with ``bad`` get 550, ``busy`` 450, others 250.
    ``mail_reply`` replaces the reply to MAIL; ``data_reply`` the reply to the end of
    data; the first ``fail_greetings`` connections get ``greeting`` and are closed;
    ``dsn`` advertises DSN (and then accepts its parameters).
    """

    mail_reply: str | None = None
    data_reply: str | None = None
    fail_greetings: int = 0
    greeting: str = "421 4.3.2 try again later"
    dsn: bool = False
    smtp_kwargs: dict[str, Any] = field(default_factory=dict)
    tls_context: ssl.SSLContext | None = None
    # What happened:
    commands: list[str] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    connections: int = 0
    armed: bool = False
    port: int = 0
    controller: Controller | None = None

    # aiosmtpd handler hooks
    async def handle_EHLO(
        self, server: ServerSMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.dsn:
            responses.insert(-1, "250-DSN")
        return responses

    async def handle_MAIL(
        self, server: ServerSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 sender ok"

    async def handle_RCPT(
        self, server: ServerSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.split("@")[0]
        if local.startswith("bad"):
            return "550 5.1.1 no such user"
        if local.startswith("busy"):
            return "450 4.2.1 mailbox busy"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 recipient ok"

    async def handle_DATA(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        assert isinstance(content, bytes)
        self.messages.append(Received(
            sender=envelope.mail_from or "", mail_options=list(envelope.mail_options),
            recipients=list(envelope.rcpt_tos), rcpt_options=list(envelope.rcpt_options),
            content=content, tls=session.ssl is not None, helo=session.host_name or "",
        ))
        return self.data_reply or "250 2.0.0 queued"

    def verbs(self) -> list[str]:
        return [c.split(" ")[0] for c in self.commands]


# RFC 3461 parameters, which aiosmtpd refuses with 555 unless taken out first.
_DSN_MAIL = ("RET=", "ENVID=")
_DSN_RCPT = ("NOTIFY=", "ORCPT=")


class _RecordingSMTP(ServerSMTP):
    """aiosmtpd's SMTP, logging each command line the client sent."""

    def __init__(self, receiver: Receiver, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiver = receiver

    def _strip(self, arg: str | None, params: tuple[str, ...]) -> str | None:
        if arg is None or not self.receiver.dsn:
            return arg
        return " ".join(p for p in arg.split(" ") if not p.upper().startswith(params))

    async def _handle_client(self) -> None:
        if self.receiver.armed:
            self.receiver.connections += 1
            if self.receiver.connections <= self.receiver.fail_greetings:
                await self.push(self.receiver.greeting)
                assert self.transport is not None
                self.transport.close()
                return
        await super()._handle_client()

    async def smtp_EHLO(self, arg: str) -> None:
        self.receiver.commands.append(f"EHLO {arg}")
        await super().smtp_EHLO(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self.receiver.commands.append("STARTTLS")
        await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.receiver.commands.append(f"MAIL {arg}")
        await super().smtp_MAIL(self._strip(arg, _DSN_MAIL))

    async def smtp_RCPT(self, arg: str | None) -> None:
        self.receiver.commands.append(f"RCPT {arg}")
        await super().smtp_RCPT(self._strip(arg, _DSN_RCPT))

    async def smtp_DATA(self, arg: str) -> None:
        self.receiver.commands.append("DATA")
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self.receiver.commands.append("RSET")
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self.receiver.commands.append("QUIT")
        await super().smtp_QUIT(arg)


class _Controller(Controller):
    """aiosmtpd's Controller on a free port of 127.0.0.1, with the recording SMTP."""

    def __init__(self, receiver: Receiver) -> None:
        kwargs = dict(receiver.smtp_kwargs)
        if receiver.tls_context is not None:
            kwargs["tls_context"] = receiver.tls_context
        super().__init__(receiver, hostname=LOCAL, port=0, server_hostname="mx.receiver.test", **kwargs)
        self.receiver = receiver

    def factory(self) -> ServerSMTP:
        return _RecordingSMTP(self.receiver, self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        async def create() -> asyncio.AbstractServer:
            server = await self.loop.create_server(self._factory_invoker, host=self.hostname, port=self.port)
            # Learn the port before start() connects to it (Controller reads self.port).
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


@pytest.fixture
def receivers() -> Iterator[Any]:
    started: list[_Controller] = []

    def start(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        controller = _Controller(receiver)
        controller.start()
        started.append(controller)
        receiver.controller = controller
        receiver.port = controller.port
        receiver.armed = True  # the Controller's own trigger connection is not counted
        return receiver

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def dns_server() -> Iterator[TestDNSServer]:
    with TestDNSServer() as server:
        yield server


def make_settings(dns_server: TestDNSServer, port: int, **delivery: Any) -> Settings:
    timeouts: dict[str, Any] = {"connect_timeout": 2.0, "command_timeout": 2.0}
    timeouts.update(delivery)
    return (
        Settings()
        .replace("server", hostname=HELO)
        .replace("dns", nameservers=[dns_server.nameserver], timeout=1.0)
        .replace("delivery", smtp_port=port, **timeouts)
    )


def not_self(host: str, ip: str, port: int) -> bool:
    return False


def closed_port() -> socket.socket:
    """A TCP socket bound on 127.0.0.1 without listening: connecting to it is refused.
    The caller keeps it open (so no one else takes the port) and closes it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOCAL, 0))
    return s


def two_mx(dns_server: TestDNSServer, domain: str = "example.test") -> None:
    dns_server.set(domain, "MX", [(20, "mx2." + domain), (10, "mx1." + domain)])
    dns_server.set("mx1." + domain, "A", [LOCAL])
    dns_server.set("mx2." + domain, "A", [LOCAL])


async def send(
    settings: Settings,
    destination: Destination,
    recipients: list[str] | list[tuple[str, list[str]]],
    *,
    sender: str = "a@sender.test",
    mail_options: list[str] | None = None,
    is_self: Any = not_self,
    data: bytes = MESSAGE,
    tls_context: ssl.SSLContext | None = None,
) -> list[RecipientResult]:
    rcpts = [(r, []) if isinstance(r, str) else r for r in recipients]
    return await deliver(
        settings=settings, resolver=Resolver(settings), is_self=is_self, destination=destination,
        sender=sender, recipients=rcpts, data=data, mail_options=mail_options or [],
        tls_context=tls_context,
    )


# -- the test DNS server itself --------------------------------------------------------------


async def test_dns_server_answers_nxdomain_nodata_cname_and_tcp(dns_server: TestDNSServer) -> None:
    dns_server.set("example.test", "MX", [(10, "mx1.example.test")])
    dns_server.set("mx1.example.test", "A", [LOCAL])
    dns_server.set("alias.example.test", "CNAME", ["mx1.example.test"])

    async def ask(name: str, rtype: str, tcp: bool = False) -> dns.message.Message:
        query = dns.message.make_query(name, rtype)
        if tcp:
            return await dns.asyncquery.tcp(query, LOCAL, port=dns_server.port, timeout=2)
        return await dns.asyncquery.udp(query, LOCAL, port=dns_server.port, timeout=2)

    assert (await ask("nowhere.test", "A")).rcode() == dns.rcode.NXDOMAIN
    nodata = await ask("example.test", "A")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    alias = await ask("alias.example.test", "A", tcp=True)
    assert [rrset.rdtype.name for rrset in alias.answer] == ["CNAME", "A"]
    dns_server.set("mx1.example.test", "A", ["127.0.0.1", "127.0.0.1"])  # changed while running
    dns_server.fail("example.test")
    assert (await ask("example.test", "MX")).rcode() == dns.rcode.SERVFAIL
    assert ("alias.example.test", "A", "tcp") in dns_server.queries


# -- Resolver --------------------------------------------------------------------------------


async def test_resolver_mx_sorted_and_addresses_ipv4_first(dns_server: TestDNSServer) -> None:
    dns_server.set("example.test", "MX", [(20, "b.example.test"), (10, "c.example.test"), (10, "a.example.test")])
    dns_server.set("dual.example.test", "AAAA", ["::1"])
    dns_server.set("dual.example.test", "A", ["127.0.0.1"])
    resolver = Resolver(make_settings(dns_server, 25))
    assert await resolver.mx("Example.Test.") == [(10, "a.example.test"), (10, "c.example.test"), (20, "b.example.test")]
    assert await resolver.addresses("dual.example.test") == ["127.0.0.1", "::1"]
    dns_server.set("nomx.example.test", "A", [LOCAL])
    assert await resolver.mx("nomx.example.test") == []


async def test_resolver_permanent_and_temporary_failures(dns_server: TestDNSServer) -> None:
    dns_server.set("null.example.test", "MX", [(0, ".")])
    dns_server.set("empty.example.test", "TXT", ["no address here"])
    dns_server.fail("broken.example.test", "SERVFAIL")
    dns_server.drop("slow.example.test")
    resolver = Resolver(make_settings(dns_server, 25).replace("dns", timeout=0.3))

    with pytest.raises(PermanentResolveError) as nx:
        await resolver.mx("nowhere.test")
    assert (nx.value.code, nx.value.status) == (550, "5.1.2")
    with pytest.raises(PermanentResolveError) as null:
        await resolver.mx("null.example.test")
    assert (null.value.code, null.value.status) == (556, "5.1.10")
    with pytest.raises(PermanentResolveError) as nodata:
        await resolver.addresses("empty.example.test")
    assert nodata.value.status == "5.4.4"
    with pytest.raises(TemporaryResolveError) as servfail:
        await resolver.mx("broken.example.test")
    assert servfail.value.status == "4.4.3"
    with pytest.raises(TemporaryResolveError):
        await resolver.addresses("slow.example.test")


def test_resolver_wants_ip_nameservers() -> None:
    with pytest.raises(ValueError, match=r"dns.nameservers\[0\]"):
        Resolver(Settings().replace("dns", nameservers=["ns.example.test:53"]))


# -- plan ------------------------------------------------------------------------------------


async def test_plan_orders_mx_by_preference(dns_server: TestDNSServer) -> None:
    two_mx(dns_server)
    hops = await plan(Destination.mx("example.test"), Resolver(make_settings(dns_server, 25)), not_self,
                      default_port=2500)
    assert hops == [Hop("mx1.example.test", LOCAL, 2500), Hop("mx2.example.test", LOCAL, 2500)]


async def test_plan_without_mx_uses_the_domain_addresses(dns_server: TestDNSServer) -> None:
    dns_server.set("example.test", "A", [LOCAL])
    hops = await plan(Destination.mx("example.test", 2600), Resolver(make_settings(dns_server, 25)), not_self,
                      default_port=25)
    assert hops == [Hop("example.test", LOCAL, 2600)]
    assert dns_server.asked("example.test", "MX")


async def test_plan_host_destination_asks_no_mx(dns_server: TestDNSServer) -> None:
    two_mx(dns_server, "relay.test")
    dns_server.set("relay.test", "A", [LOCAL])
    hops = await plan(Destination.host("relay.test", 2700), Resolver(make_settings(dns_server, 25)), not_self,
                      default_port=25)
    assert hops == [Hop("relay.test", LOCAL, 2700)]
    assert dns_server.asked("relay.test", "A")
    assert not dns_server.asked("relay.test", "MX")


async def test_plan_ip_destination_uses_no_dns(dns_server: TestDNSServer) -> None:
    hops = await plan(Destination.mx("[127.0.0.1]"), Resolver(make_settings(dns_server, 25)), not_self,
                      default_port=2800)
    assert hops == [Hop(LOCAL, LOCAL, 2800)]
    assert dns_server.queries == []


async def test_plan_self_as_preferred_mx_loops_back(dns_server: TestDNSServer) -> None:
    two_mx(dns_server)

    def is_self(host: str, ip: str, port: int) -> bool:
        return host == "mx1.example.test"

    with pytest.raises(PermanentResolveError) as loop:
        await plan(Destination.mx("example.test"), Resolver(make_settings(dns_server, 25)), is_self, default_port=25)
    assert (loop.value.code, loop.value.status) == (554, "5.4.6")
    assert "loops back to myself" in loop.value.text


async def test_plan_self_as_backup_mx_keeps_only_better_ones(dns_server: TestDNSServer) -> None:
    dns_server.set("example.test", "MX", [(10, "mx1.example.test"), (20, "me.example.test"),
                                          (20, "peer.example.test"), (30, "mx3.example.test")])
    for host in ("mx1", "me", "peer", "mx3"):
        dns_server.set(f"{host}.example.test", "A", [LOCAL])

    def is_self(host: str, ip: str, port: int) -> bool:
        return host == "me.example.test"

    hops = await plan(Destination.mx("example.test"), Resolver(make_settings(dns_server, 25)), is_self,
                      default_port=25)
    assert hops == [Hop("mx1.example.test", LOCAL, 25)]


async def test_plan_backup_mx_with_unresolvable_primary_is_temporary(dns_server: TestDNSServer) -> None:
    dns_server.set("example.test", "MX", [(10, "mx1.example.test"), (20, "me.example.test")])
    dns_server.fail("mx1.example.test", "SERVFAIL")
    dns_server.set("me.example.test", "A", [LOCAL])
    with pytest.raises(TemporaryResolveError):
        await plan(Destination.mx("example.test"), Resolver(make_settings(dns_server, 25)),
                   lambda host, ip, port: host == "me.example.test", default_port=25)


async def test_plan_never_returns_a_self_hop_for_a_host(dns_server: TestDNSServer) -> None:
    with pytest.raises(PermanentResolveError) as loop:
        await plan(Destination.ip(LOCAL, 2525), Resolver(make_settings(dns_server, 25)),
                   lambda host, ip, port: (ip, port) == (LOCAL, 2525), default_port=25)
    assert loop.value.status == "5.4.6"


def test_destination_checks_and_normalises() -> None:
    assert Destination.mx("Example.TEST.") == Destination("mx", "example.test")
    assert Destination.mx("[IPv6:::1]") == Destination("ip", "::1")
    with pytest.raises(ValueError):
        Destination.ip("mx.example.test")
    with pytest.raises(ValueError):
        Destination.host("relay.test", 70000)


# -- deliver: hops ---------------------------------------------------------------------------


async def test_deliver_through_mx(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    two_mx(dns_server)
    results = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"),
                         ["b@example.test", "c@example.test"])
    assert [(r.address, r.code, r.enhanced, r.ok) for r in results] == [
        ("b@example.test", 250, "2.0.0", True), ("c@example.test", 250, "2.0.0", True)]
    assert results[0].remote_host == "mx1.example.test [127.0.0.1]"
    assert results[0].smtp_reply == "250 2.0.0 queued"
    (message,) = receiver.messages
    assert message.sender == "a@sender.test"
    assert message.recipients == ["b@example.test", "c@example.test"]
    assert message.content == MESSAGE  # dot-stuffing undone by the receiver
    assert message.helo == HELO
    assert receiver.verbs() == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


async def test_deliver_moves_to_second_mx_after_421_greeting(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers(fail_greetings=1)
    two_mx(dns_server)
    results = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"), ["b@example.test"])
    assert results[0].ok
    assert results[0].remote_host == "mx2.example.test [127.0.0.1]"
    assert receiver.connections == 2
    assert len(receiver.messages) == 1


async def test_deliver_every_hop_failing_gives_temporary_with_last_error(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    receiver = receivers(fail_greetings=2, greeting="421 4.3.2 shutting down")
    two_mx(dns_server)
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"), ["b@example.test"])
    assert result.temporary and (result.code, result.enhanced) == (421, "4.3.2")
    assert result.remote_host == "mx2.example.test [127.0.0.1]"
    assert receiver.connections == 2 and receiver.messages == []


async def test_deliver_5xx_greeting_is_a_temporary_hop_failure(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers(fail_greetings=1, greeting="554 5.3.2 no service here")
    dns_server.set("example.test", "A", [LOCAL])
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"), ["b@example.test"])
    assert result.temporary and result.code == 451
    assert "554 5.3.2 no service here" in result.text and result.remote_host == ""


async def test_deliver_to_hops_skips_a_refused_connection(receivers: Any) -> None:
    receiver = receivers()
    refused = closed_port()
    try:
        settings = Settings().replace("server", hostname=HELO).replace("delivery", connect_timeout=2.0,
                                                                         command_timeout=2.0)
        hops = [Hop("down.test", LOCAL, refused.getsockname()[1]), Hop("up.test", LOCAL, receiver.port)]
        results = await deliver_to_hops(settings=settings, hops=hops, sender="a@sender.test",
                                        recipients=[("b@example.test", [])], data=MESSAGE, mail_options=[])
        assert results[0].ok and results[0].remote_host == "up.test [127.0.0.1]"

        (failed,) = await deliver_to_hops(settings=settings, hops=hops[:1], sender="a@sender.test",
                                          recipients=[("b@example.test", [])], data=MESSAGE, mail_options=[])
        assert failed.temporary and (failed.code, failed.enhanced) == (451, "4.4.1")
        assert "down.test [127.0.0.1]" in failed.text
    finally:
        refused.close()


async def test_deliver_to_hops_skips_a_hop_that_never_greets(receivers: Any) -> None:
    receiver = receivers()
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind((LOCAL, 0))
    silent.listen(1)  # the kernel accepts the connection; nobody ever speaks
    try:
        settings = Settings().replace("server", hostname=HELO).replace("delivery", connect_timeout=0.3,
                                                                         command_timeout=2.0)
        hops = [Hop("mute.test", LOCAL, silent.getsockname()[1]), Hop("up.test", LOCAL, receiver.port)]
        (result,) = await deliver_to_hops(settings=settings, hops=hops, sender="a@sender.test",
                                          recipients=[("b@example.test", [])], data=MESSAGE, mail_options=[])
        assert result.ok and result.remote_host == "up.test [127.0.0.1]"
    finally:
        silent.close()


async def test_deliver_nxdomain_is_permanent(dns_server: TestDNSServer) -> None:
    results = await send(make_settings(dns_server, 9), Destination.mx("nowhere.test"), ["b@nowhere.test", "c@nowhere.test"])
    assert [(r.code, r.enhanced, r.permanent, r.remote_host) for r in results] == [(550, "5.1.2", True, "")] * 2


async def test_deliver_dns_failure_is_temporary(dns_server: TestDNSServer) -> None:
    dns_server.fail("example.test", "SERVFAIL")
    (result,) = await send(make_settings(dns_server, 9), Destination.mx("example.test"), ["b@example.test"])
    assert result.temporary and result.enhanced == "4.4.3"


async def test_deliver_loop_to_self_is_permanent(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    two_mx(dns_server)
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"),
                           ["b@example.test"], is_self=lambda host, ip, port: host == "mx1.example.test")
    assert result.permanent and (result.code, result.enhanced) == (554, "5.4.6")
    assert receiver.connections == 0


async def test_deliver_to_backup_cut_tries_only_better_mx(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers(fail_greetings=1)  # the better MX fails once...
    two_mx(dns_server)
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"),
                           ["b@example.test"], is_self=lambda host, ip, port: host == "mx2.example.test")
    # ... and mx2 (ourselves) is never tried: the result is mx1's temporary failure.
    assert result.temporary and result.remote_host == "mx1.example.test [127.0.0.1]"
    assert receiver.connections == 1


async def test_deliver_host_destination_asks_no_mx(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    dns_server.set("relay.test", "MX", [(10, "elsewhere.test")])
    dns_server.set("relay.test", "A", [LOCAL])
    (result,) = await send(make_settings(dns_server, 9), Destination.host("relay.test", receiver.port), ["b@x.test"])
    assert result.ok and result.remote_host == "relay.test [127.0.0.1]"
    assert not dns_server.asked("relay.test", "MX")


async def test_deliver_ip_destination_uses_no_dns(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test"])
    assert result.ok and result.remote_host == "127.0.0.1 [127.0.0.1]"
    assert dns_server.queries == []


# -- deliver: replies ------------------------------------------------------------------------


async def test_deliver_per_recipient_results(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    settings = make_settings(dns_server, receiver.port)
    results = await send(settings, Destination.ip(LOCAL),
                         ["good@x.test", "busy@x.test", "bad@x.test", "good2@x.test"])
    assert [(r.address, r.code, r.enhanced) for r in results] == [
        ("good@x.test", 250, "2.0.0"), ("busy@x.test", 450, "4.2.1"),
        ("bad@x.test", 550, "5.1.1"), ("good2@x.test", 250, "2.0.0")]
    assert [r.ok for r in results] == [True, False, False, True]
    assert [r.temporary for r in results] == [False, True, False, False]
    assert [r.permanent for r in results] == [False, False, True, False]
    assert results[2].smtp_reply == "550 5.1.1 no such user"
    assert receiver.messages[0].recipients == ["good@x.test", "good2@x.test"]


async def test_deliver_sends_no_data_when_every_recipient_is_refused(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    receiver = receivers()
    results = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL),
                         ["bad@x.test", "busy@x.test"])
    assert [(r.code, r.enhanced) for r in results] == [(550, "5.1.1"), (450, "4.2.1")]
    assert "DATA" not in receiver.verbs()
    assert receiver.verbs()[-1] == "QUIT"
    assert receiver.messages == []


@pytest.mark.parametrize(("reply", "code", "permanent"), [("550 5.7.1 go away", 550, True),
                                                         ("451 4.3.0 try later", 451, False)])
async def test_deliver_mail_refused_applies_to_all(
    dns_server: TestDNSServer, receivers: Any, reply: str, code: int, permanent: bool
) -> None:
    receiver = receivers(mail_reply=reply)
    results = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["a@x.test", "b@x.test"])
    assert [(r.code, r.permanent, r.temporary) for r in results] == [(code, permanent, not permanent)] * 2
    assert results[0].smtp_reply == reply
    assert "RCPT" not in receiver.verbs()


async def test_deliver_421_to_mail_moves_to_next_hop(dns_server: TestDNSServer, receivers: Any) -> None:
    closing = receivers(mail_reply="421 4.3.2 closing")
    good = receivers()
    settings = make_settings(dns_server, 9)
    hops = [Hop("closing.test", LOCAL, closing.port), Hop("good.test", LOCAL, good.port)]
    (result,) = await deliver_to_hops(settings=settings, hops=hops, sender="a@sender.test",
                                      recipients=[("b@x.test", [])], data=MESSAGE, mail_options=[])
    assert result.ok and result.remote_host == "good.test [127.0.0.1]"


async def test_deliver_data_reply_applies_to_accepted_recipients(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers(data_reply="554 5.6.0 content refused")
    results = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL),
                         ["good@x.test", "busy@x.test", "good2@x.test"])
    assert [(r.code, r.enhanced) for r in results] == [(554, "5.6.0"), (450, "4.2.1"), (554, "5.6.0")]


async def test_deliver_null_sender(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test"], sender="")
    assert result.ok
    assert receiver.commands[1].startswith("MAIL FROM:<>")


# -- deliver: extensions ---------------------------------------------------------------------


def _tls_pair() -> tuple[trustme.CA, ssl.SSLContext]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx1.example.test").configure_cert(server_context)
    return ca, server_context


async def test_deliver_uses_starttls_when_offered(dns_server: TestDNSServer, receivers: Any) -> None:
    _ca, server_context = _tls_pair()
    receiver = receivers(tls_context=server_context)
    dns_server.set("example.test", "MX", [(10, "mx1.example.test")])
    dns_server.set("mx1.example.test", "A", [LOCAL])
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"), ["b@example.test"])
    assert result.ok
    assert receiver.messages[0].tls
    assert receiver.verbs() == ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


async def test_deliver_starttls_with_a_verifying_context(dns_server: TestDNSServer, receivers: Any) -> None:
    ca, server_context = _tls_pair()
    receiver = receivers(tls_context=server_context)
    dns_server.set("example.test", "MX", [(10, "mx1.example.test")])
    dns_server.set("mx1.example.test", "A", [LOCAL])
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)  # checks the certificate and the MX name (SNI)
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.mx("example.test"),
                           ["b@example.test"], tls_context=client_context)
    assert result.ok and receiver.messages[0].tls
    assert receiver.connections == 1


async def test_deliver_falls_back_to_clear_text_after_a_failed_handshake(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    _ca, server_context = _tls_pair()
    receiver = receivers(tls_context=server_context)
    other_ca = trustme.CA()
    client_context = ssl.create_default_context()
    other_ca.configure_trust(client_context)  # will refuse the receiver's certificate
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test"],
                           tls_context=client_context)
    assert result.ok
    assert receiver.connections == 2
    assert not receiver.messages[0].tls
    assert receiver.verbs().count("STARTTLS") == 1


async def test_deliver_without_starttls_when_disabled(dns_server: TestDNSServer, receivers: Any) -> None:
    _ca, server_context = _tls_pair()
    receiver = receivers(tls_context=server_context)
    (result,) = await send(make_settings(dns_server, receiver.port, starttls=False), Destination.ip(LOCAL), ["b@x.test"])
    assert result.ok and not receiver.messages[0].tls
    assert "STARTTLS" not in receiver.verbs()


DSN_RCPT = [("b@x.test", ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;b@x.test"])]


async def test_deliver_passes_dsn_parameters_when_advertised(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers(dsn=True)
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), DSN_RCPT,
                           mail_options=["RET=HDRS", "ENVID=QQ314159"])
    assert result.ok and result.remote_dsn
    mail = next(c for c in receiver.commands if c.startswith("MAIL"))
    rcpt = next(c for c in receiver.commands if c.startswith("RCPT"))
    assert "RET=HDRS" in mail.split() and "ENVID=QQ314159" in mail.split()
    assert rcpt.split()[2:] == ["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;b@x.test"]


async def test_deliver_leaves_dsn_parameters_out_when_not_advertised(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    receiver = receivers(dsn=False)  # aiosmtpd would answer 555 to a DSN parameter
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), DSN_RCPT,
                           mail_options=["RET=HDRS", "ENVID=QQ314159"])
    assert result.ok and not result.remote_dsn
    assert not any(p in c for c in receiver.commands for p in ("RET=", "ENVID=", "NOTIFY=", "ORCPT="))


async def test_deliver_passes_body_and_size_when_advertised(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test"],
                           mail_options=["BODY=8BITMIME", "SIZE=1"])
    assert result.ok
    assert receiver.messages[0].mail_options == ["BODY=8BITMIME", f"SIZE={len(MESSAGE)}"]


async def test_deliver_8bit_to_a_server_without_8bitmime_is_sent_without_body(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    receiver = receivers(smtp_kwargs={"decode_data": True})  # decode_data: no 8BITMIME
    body = "From: a@sender.test\r\n\r\nGrüße\r\n".encode()
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test"],
                           mail_options=["BODY=8BITMIME"], data=body)
    assert result.ok
    assert not any("BODY=" in c for c in receiver.commands)


async def test_deliver_smtputf8_needed_but_missing_fails_permanently(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    receiver = receivers(smtp_kwargs={"enable_SMTPUTF8": False})
    results = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test", "c@x.test"],
                         mail_options=["SMTPUTF8"])
    assert [(r.code, r.enhanced, r.permanent) for r in results] == [(550, "5.6.7", True)] * 2
    assert "MAIL" not in receiver.verbs()

    (utf8,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["jörg@x.test"])
    assert utf8.enhanced == "5.6.7"


async def test_deliver_smtputf8_address(dns_server: TestDNSServer, receivers: Any) -> None:
    receiver = receivers()
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["jörg@x.test"])
    assert result.ok
    assert receiver.messages[0].recipients == ["jörg@x.test"]
    assert "SMTPUTF8" in receiver.messages[0].mail_options


async def test_deliver_refuses_to_send_more_than_the_advertised_size(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    receiver = receivers(smtp_kwargs={"data_size_limit": 20})
    (result,) = await send(make_settings(dns_server, receiver.port), Destination.ip(LOCAL), ["b@x.test"])
    assert result.permanent and (result.code, result.enhanced) == (552, "5.3.4")
    assert "MAIL" not in receiver.verbs()


async def test_deliver_rejects_malformed_parameters(dns_server: TestDNSServer) -> None:
    with pytest.raises(ValueError):
        await send(make_settings(dns_server, 9), Destination.ip(LOCAL), [("b@x.test", ["NOTIFY=NEVER ORCPT=x"])])
    with pytest.raises(ValueError):
        await send(make_settings(dns_server, 9), Destination.ip(LOCAL), ["b@x.test"], mail_options=["BODY=BINARYMIME"])


# -- replies ---------------------------------------------------------------------------------


def test_split_reply() -> None:
    assert split_reply(550, "5.1.1 no such user") == ("5.1.1", "no such user")
    assert split_reply(550, "2.1.1 class does not match") == ("5.0.0", "2.1.1 class does not match")
    assert split_reply(451, "try later") == ("4.0.0", "try later")
    assert split_reply(250, "2.0.0 ok\n2.0.0 queued as 1") == ("2.0.0", "ok queued as 1")
    assert RecipientResult("a@b", 450, "4.2.1", "busy").temporary


# -- deliver: the end of data's 2xx recorded as it is read (issue 13 item 4) -------------------


class ScriptedHop:
    """A next hop on 127.0.0.1 that accepts everything and answers the end of data with
    ``end_reply`` written in ``pieces`` (separate writes, so separate reads), and DATA
    itself with ``data_reply``."""

    def __init__(self, end_reply: list[bytes], data_reply: bytes = b"354 go on\r\n") -> None:
        self.end_reply = end_reply
        self.data_reply = data_reply
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.quit = False

    async def __aenter__(self) -> ScriptedHop:
        self.server = await asyncio.start_server(self._session, LOCAL, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 scripted.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-scripted.test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(self.data_reply)
                    if not self.data_reply.startswith(b"354"):
                        continue
                    await reader.readuntil(b"\r\n.\r\n")
                    for piece in self.end_reply:
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(0.05)  # its own read on the other side
                elif verb == b"QUIT":
                    self.quit = True
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"550 5.1.1 no\r\n" if b"<bad" in line else b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()


async def _deliver_noting(port: int, recipients: list[str]) -> tuple[list[RecipientResult], list[tuple[list[int], bool]]]:
    """Deliver to a ScriptedHop; returns the results and, for each call of
    ``on_accepted``, its positions and whether it ran inside a task (False: in the
    transport's own callback, before any coroutine had the reply)."""
    calls: list[tuple[list[int], bool]] = []

    def on_accepted(positions: list[int]) -> None:
        calls.append((positions, asyncio.current_task() is not None))

    settings = Settings().replace("delivery", connect_timeout=2.0, command_timeout=2.0)
    results = await deliver_to_hops(settings=settings, hops=[Hop("scripted.test", LOCAL, port)],
                                    sender="a@sender.test", recipients=[(r, []) for r in recipients],
                                    data=MESSAGE, mail_options=[], on_accepted=on_accepted)
    return results, calls


async def test_the_end_of_data_2xx_is_noted_as_it_is_read() -> None:
    # A multi-line reply cut in three reads: noted once, when its last line is complete,
    # by the transport's callback (not after aiosmtplib's coroutine has returned it).
    async with ScriptedHop([b"250-2.0.0 taken", b" in parts\r\n25", b"0 2.0.0 queued as X\r\n"]) as hop:
        results, calls = await _deliver_noting(hop.port, ["a@x.test", "bad@x.test", "c@x.test"])
        assert [r.code for r in results] == [250, 550, 250]
        assert calls == [([0, 2], False)]
        assert hop.quit  # the session went on to QUIT through aiosmtplib's own protocol


async def test_no_2xx_to_the_end_of_data_is_never_noted() -> None:
    async with ScriptedHop([b"451-4.3.0 not", b" now\r\n451 4.3.0 later\r\n"]) as hop:
        results, calls = await _deliver_noting(hop.port, ["a@x.test"])
        assert [r.code for r in results] == [451] and calls == []
    # A DATA refused at once: the next reply is not the end of data's (it never came).
    async with ScriptedHop([], data_reply=b"554 5.7.1 no data\r\n") as hop:
        results, calls = await _deliver_noting(hop.port, ["a@x.test"])
        assert [r.code for r in results] == [554] and calls == []


async def test_the_end_of_data_2xx_is_noted_as_it_is_read_over_starttls(
    dns_server: TestDNSServer, receivers: Any
) -> None:
    _ca, server_context = _tls_pair()
    receiver = receivers(tls_context=server_context)
    calls: list[tuple[list[int], bool]] = []

    def on_accepted(positions: list[int]) -> None:
        calls.append((positions, asyncio.current_task() is not None))

    settings = make_settings(dns_server, receiver.port)
    results = await deliver_to_hops(settings=settings, hops=[Hop("mx1.example.test", LOCAL, receiver.port)],
                                    sender="a@sender.test", recipients=[("b@x.test", []), ("bad@x.test", [])],
                                    data=MESSAGE, mail_options=[], on_accepted=on_accepted)
    assert [r.code for r in results] == [250, 550]
    assert receiver.messages[0].tls and receiver.verbs()[-1] == "QUIT"
    assert calls == [([0], False)]
