"""Minger (draft-hathcock-minger-06): wire format, server, client.

(a) pure protocol tests: bytes in, values out;  (b) transcripts over a real UDP socket
on 127.0.0.1 (C: what a client sends, S: the exact reply, or None for no reply);
(c) the client against the server and against fake peers.  Free ports only (bind 0);
the only waits are bounded timeouts of a fraction of a second.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waypost.sharing import (
    DEFAULT_PORT,
    MAX_DATAGRAM_SIZE,
    MAX_MAILBOX_LENGTH,
    MAX_SECRET_LENGTH,
    MIN_SECRET_LENGTH,
    Code,
    Malformed,
    MingerError,
    MingerServer,
    MingerTimeout,
    MingerUnreachable,
    Peer,
    Query,
    RateLimiter,
    Reply,
    digest,
    digest_matches,
    encode_query,
    encode_reply,
    parse_query,
    parse_reply,
    query,
    query_many,
)
from waypost.sharing.client import _Waiter
from waypost.sharing.proto import check_credentials, is_valid_mailbox, same_mailbox

SECRET = "correct-horse-battery-staple"
# Independent vectors: printf 'SECRET:MAILBOX' | openssl dgst -md5 -binary | base64
ARVEL_DIGEST = "kxvbhP98EpEshd1qO9crTw=="
MIXED_CASE_DIGEST = "Y6LFDzv9eJLbXXBthogkjw=="  # for "Alice@Example.com"

DIRECTORY = {
    "alice@example.com": Code.ACTIVE,
    "frozen@example.com": Code.CANNOT_RECEIVE,
}

SHORT = 0.25  # seconds: the bound on any wait for "no reply"
LOG = "waypost.sharing"


def directory_lookup(mailbox: str) -> Code:
    return DIRECTORY.get(mailbox.lower(), Code.NOT_FOUND)


def signed(mailbox: str, secret: str = SECRET) -> bytes:
    return f"{mailbox} d={digest(secret, mailbox)}".encode("ascii")


# -- helpers: a UDP endpoint on 127.0.0.x, the server on a free port ----------------


class UdpPeer(asyncio.DatagramProtocol):
    """A raw UDP endpoint for tests: what it receives lands in a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if not data:  # asyncio's sendto skips empty datagrams; the socket sends them
            with self.transport.get_extra_info("socket").dup() as raw:
                raw.sendto(data, addr)
            return
        self.transport.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, Any]:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def recv_none(self, timeout: float = SHORT) -> bool:
        """True if nothing arrives within ``timeout`` (a bounded wait)."""
        try:
            await asyncio.wait_for(self.received.get(), timeout)
        except TimeoutError:
            return True
        return False


@asynccontextmanager
async def udp_peer(host: str = "127.0.0.1") -> AsyncIterator[UdpPeer]:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(host, 0))
    try:
        yield peer
    finally:
        assert peer.transport is not None
        peer.transport.close()


@asynccontextmanager
async def minger_server(**overrides: Any) -> AsyncIterator[MingerServer]:
    settings_: dict[str, Any] = {
        "secret": SECRET,
        "allow_anonymous": False,
        "allowed_networks": ["127.0.0.0/8"],
        "host": "127.0.0.1",
        "port": 0,
    }
    settings_.update(overrides)
    lookup = settings_.pop("lookup", directory_lookup)
    async with MingerServer(lookup, **settings_) as server:
        yield server


async def exchange(server: MingerServer, payload: bytes, client: UdpPeer) -> bytes | None:
    """Send one datagram; the reply, or None when none comes within SHORT."""
    client.send(payload, server.address)
    try:
        data, addr = await client.recv(SHORT)
    except TimeoutError:
        return None
    assert addr[:2] == server.address
    return data


async def free_udp_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# == (a) the wire format ============================================================


def test_limits_are_named() -> None:
    assert DEFAULT_PORT == 4069
    assert MAX_DATAGRAM_SIZE == 512
    assert MAX_MAILBOX_LENGTH == 254
    assert (MIN_SECRET_LENGTH, MAX_SECRET_LENGTH) == (16, 50)
    assert [c.value for c in Code] == [0, 1, 2, 3, 4, 5]


def test_digest_matches_an_independent_vector() -> None:
    assert digest(SECRET, "arvel@example.com") == ARVEL_DIGEST
    assert digest(SECRET, "Alice@Example.com") == MIXED_CASE_DIGEST
    assert digest_matches(SECRET, "arvel@example.com", ARVEL_DIGEST)
    assert not digest_matches(SECRET, "arvel@example.com", ARVEL_DIGEST.lower())
    assert not digest_matches(SECRET, "Arvel@example.com", ARVEL_DIGEST)  # verbatim
    assert not digest_matches(SECRET, "arvel@example.com", "")
    assert not digest_matches(SECRET, "arvel@example.com", "kxvbhP98EpEshd1qO9crTw")
    assert not digest_matches(SECRET, "arvel@example.com", "é" * 24)


def test_encode_query() -> None:
    assert encode_query("arvel@example.com", None) == b"arvel@example.com"
    assert encode_query("arvel@example.com", SECRET) == b"arvel@example.com d=" + ARVEL_DIGEST.encode()
    assert (
        encode_query("arvel@example.com", None, (("x_1", "on"), ("D", "2")))
        == b"arvel@example.com x_1=on D=2"
    )


@pytest.mark.parametrize(
    "mailbox, secret, tags",
    [
        ("not a mailbox", None, ()),
        ("arvel@", None, ()),
        ("jürgen@example.com", None, ()),
        ("a" * 65 + "@example.com", None, ()),
        ("arvel@example.com", "has space in it!", ()),
        ("arvel@example.com", "x" * (MAX_SECRET_LENGTH + 1), ()),
        ("arvel@example.com", None, (("d", "1"),)),
        ("arvel@example.com", None, (("a", "1"), ("a", "2"))),
        ("arvel@example.com", None, (("a", "x=y"),)),
        ("arvel@example.com", None, tuple((f"t{i}", "v" * 20) for i in range(30))),
    ],
)
def test_encode_query_refuses_what_cannot_be_sent(
    mailbox: str, secret: str | None, tags: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(ValueError):
        encode_query(mailbox, secret, tags)


def test_parse_query_forms() -> None:
    assert parse_query(b"arvel@example.com") == Query("arvel@example.com")
    assert parse_query(b"arvel@example.com").anonymous  # type: ignore[union-attr]
    assert parse_query(b"arvel@example.com d=" + ARVEL_DIGEST.encode()) == Query(
        "arvel@example.com", ARVEL_DIGEST
    )
    assert parse_query(b"arvel@example.com d=" + ARVEL_DIGEST.encode() + b" v=2 D=x") == Query(
        "arvel@example.com", ARVEL_DIGEST, (("v", "2"), ("D", "x"))
    )
    # tags without digest; a line end is tolerated; case kept
    assert parse_query(b"Arvel@Example.COM v=2\r\n") == Query("Arvel@Example.COM", None, (("v", "2"),))
    assert parse_query(b"arvel@example.com\n") == Query("arvel@example.com")
    # a digest of the right syntax but the wrong value still parses (code 2 later)
    assert parse_query(b"arvel@example.com d=AAAA") == Query("arvel@example.com", "AAAA")
    # address literals and single-label domains (RFC 5321)
    assert isinstance(parse_query(b"postmaster@[192.0.2.1]"), Query)
    assert isinstance(parse_query(b"root@localhost"), Query)


@pytest.mark.parametrize(
    "datagram, echoed",
    [
        (b"", None),
        (b"\r\n", None),
        (b" ", None),
        (b"arvel", None),
        (b"arvel@example.com ", "arvel@example.com"),
        (b"arvel@example.com  d=AAAA", "arvel@example.com"),
        (b"arvel@example.com\tv=1", None),
        (b"arvel@example.com d=", "arvel@example.com"),
        (b"arvel@example.com d=!!!!", "arvel@example.com"),
        (b"arvel@example.com d=AAA", "arvel@example.com"),
        (b"arvel@example.com D=AAA=", "arvel@example.com"),
        (b"arvel@example.com v=1 d=AAAA", "arvel@example.com"),
        (b"arvel@example.com v=1 v=2", "arvel@example.com"),
        (b"arvel@example.com v=", "arvel@example.com"),
        (b"arvel@example.com =1", "arvel@example.com"),
        (b"arvel@example.com v=1=2", "arvel@example.com"),
        (b"\"arvel smith\"@example.com", None),
        (b"arvel@example.com\r\n\r\n", None),
        (b"arvel@example.com\r", None),
        (b"j\xc3\xbcrgen@example.com", None),
        (b"arvel@example.com\x00", None),
        (b"\xff\xfe\x00\x01", None),
        (b".arvel@example.com", None),
        (b"arvel@-example.com", None),
    ],
)
def test_parse_query_malformed(datagram: bytes, echoed: str | None) -> None:
    result = parse_query(datagram)
    assert isinstance(result, Malformed), result
    assert result.mailbox == echoed


def test_mailbox_length_edges() -> None:
    domain = "@" + ".".join(["d" * 63] * 3) + ".e" * 30  # 252 octets
    assert len(domain) - 1 == 251
    local = "a" * (MAX_MAILBOX_LENGTH - len(domain))
    assert is_valid_mailbox(local + domain) and len(local + domain) == MAX_MAILBOX_LENGTH
    assert not is_valid_mailbox("a" + local + domain)
    assert isinstance(parse_query((local + domain).encode()), Query)
    assert isinstance(parse_query(("a" + local + domain).encode()), Malformed)
    assert is_valid_mailbox("a" * 64 + "@example.com")
    assert not is_valid_mailbox("a" * 65 + "@example.com")
    assert not is_valid_mailbox("a@" + "b" * 64 + ".com")  # a label is at most 63


def test_datagram_size_edge() -> None:
    head = b"arvel@example.com d=" + ARVEL_DIGEST.encode() + b" x="
    exact = head + b"y" * (MAX_DATAGRAM_SIZE - len(head))
    assert len(exact) == MAX_DATAGRAM_SIZE
    assert isinstance(parse_query(exact), Query)
    assert isinstance(parse_query(exact + b"y"), Malformed)
    assert isinstance(parse_query(b"a" * 65507), Malformed)


def test_reply_round_trip() -> None:
    for code in Code:
        data = encode_reply("arvel@example.com", code)
        assert data == f"arvel@example.com {code.value}".encode()
        assert parse_reply(data) == Reply("arvel@example.com", code)
    assert encode_reply(None, Code.MALFORMED) == b"0"
    assert parse_reply(b"Arvel@Example.com 5\r\n") == Reply("Arvel@Example.com", Code.ACTIVE)
    with pytest.raises(ValueError):
        encode_reply("not a mailbox", Code.ACTIVE)
    with pytest.raises(ValueError):
        encode_reply("arvel@example.com", 6)


@pytest.mark.parametrize(
    "datagram",
    [b"", b"5", b"0", b"arvel@example.com", b"arvel@example.com 6", b"arvel@example.com 55",
     b"arvel@example.com5", b" 5", b"arvel@example.com  5", b"arvel@example.com -1",
     b"arvel@example.com \xd9", b"\xff 5", b"x" * 600 + b" 5"],
)
def test_parse_reply_refuses(datagram: bytes) -> None:
    assert parse_reply(datagram) is None


def test_same_mailbox_ignores_ascii_case() -> None:
    assert same_mailbox("Alice@Example.COM", "alice@example.com")
    assert not same_mailbox("alice@example.com", "alice2@example.com")


def test_credentials_rule() -> None:
    anon = Query("arvel@example.com")
    good = Query("arvel@example.com", ARVEL_DIGEST)
    bad = Query("arvel@example.com", "AAAAAAAAAAAAAAAAAAAAAA==")
    # draft §4: anonymous refused -> 2;  wrong digest -> 2 even when anonymous is allowed
    assert check_credentials(anon, SECRET, allow_anonymous=False) is Code.BAD_CREDENTIALS
    assert check_credentials(anon, SECRET, allow_anonymous=True) is None
    assert check_credentials(good, SECRET, allow_anonymous=False) is None
    assert check_credentials(bad, SECRET, allow_anonymous=False) is Code.BAD_CREDENTIALS
    assert check_credentials(bad, SECRET, allow_anonymous=True) is Code.BAD_CREDENTIALS
    assert check_credentials(good, None, allow_anonymous=True) is Code.BAD_CREDENTIALS


# -- hypothesis: hostile bytes never raise; valid queries round-trip ---------------

MAILBOXES = st.from_regex(
    r"\A[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9_-]{1,8}){0,2}"
    r"@[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?){0,3}\Z",
    fullmatch=True,
)


@given(st.binary(max_size=2 * MAX_DATAGRAM_SIZE))
@settings(max_examples=500)
def test_parse_query_never_raises_on_bytes(data: bytes) -> None:
    assert isinstance(parse_query(data), (Query, Malformed))
    assert parse_reply(data) is None or isinstance(parse_reply(data), Reply)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_parse_query_never_raises_on_text(text: str) -> None:
    result = parse_query(text.encode("utf-8", "surrogatepass"))
    assert isinstance(result, (Query, Malformed))
    if isinstance(result, Query):  # then it was ASCII and the mailbox is valid
        assert text.isascii() and is_valid_mailbox(result.mailbox)


@given(MAILBOXES, st.sampled_from([None, SECRET, "0123456789abcdef", "!" * MAX_SECRET_LENGTH]))
def test_query_round_trip(mailbox: str, secret: str | None) -> None:
    parsed = parse_query(encode_query(mailbox, secret))
    assert isinstance(parsed, Query) and parsed.mailbox == mailbox
    if secret is None:
        assert parsed.anonymous
    else:
        assert parsed.digest is not None and digest_matches(secret, mailbox, parsed.digest)
    assert parse_reply(encode_reply(mailbox, Code.ACTIVE)) == Reply(mailbox, Code.ACTIVE)


# -- the rate limiter, pure ---------------------------------------------------------


def test_rate_limiter_bucket_refill_and_notice() -> None:
    limiter = RateLimiter(rate=2.0, burst=3, log_interval=10.0, max_keys=100)
    now = 0.0
    assert [limiter.allow("a", now)[0] for _ in range(3)] == [True] * 3
    assert limiter.allow("a", now) == (False, 1)  # first drop: noticed at once
    assert limiter.allow("a", now) == (False, 0)  # then silent within the interval
    assert limiter.allow("b", now) == (True, 0)  # per address
    now += 0.5  # one token back
    assert limiter.allow("a", now) == (True, 0)
    assert limiter.allow("a", now) == (False, 0)
    now += 10.0 - 0.5  # interval passed; bucket full again
    assert [limiter.allow("a", now)[0] for _ in range(3)] == [True] * 3
    assert limiter.allow("a", now) == (False, 3)  # the drops since the last notice


def test_rate_limiter_forgets_the_oldest_client() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, log_interval=1.0, max_keys=2)
    assert limiter.allow("a", 0.0)[0] and not limiter.allow("a", 0.0)[0]
    limiter.allow("b", 0.0)
    limiter.allow("c", 0.0)  # evicts "a"
    assert len(limiter) == 2
    assert limiter.allow("a", 0.0)[0]  # a fresh bucket


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0, "burst": 1, "log_interval": 1.0, "max_keys": 1},
        {"rate": 1.0, "burst": 0, "log_interval": 1.0, "max_keys": 1},
        {"rate": 1.0, "burst": 1, "log_interval": 0.0, "max_keys": 1},
        {"rate": 1.0, "burst": 1, "log_interval": 1.0, "max_keys": 0},
    ],
)
def test_rate_limiter_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)


# == (b) the server over UDP on 127.0.0.1 ===========================================


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"secret": "x" * (MIN_SECRET_LENGTH - 1)}, "secret"),
        ({"secret": "x" * (MAX_SECRET_LENGTH + 1)}, "secret"),
        ({"secret": "sixteen chars ok"}, "secret"),  # spaces are not VCHAR
        ({"secret": None}, "secret"),  # and anonymous not allowed
        ({"allowed_networks": ["10.0.0.1/8"]}, "allowed_networks"),
        ({"allowed_networks": "127.0.0.0/8"}, "allowed_networks"),
        ({"port": 70000}, "port"),
        ({"rate_burst": 0}, "rate_burst"),
        ({"lookup_timeout": 0}, "lookup_timeout"),
    ],
)
def test_server_refuses_bad_settings(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = {"secret": SECRET, "allowed_networks": ["127.0.0.0/8"]}
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=message):
        MingerServer(directory_lookup, **kwargs)


def test_server_accepts_the_shortest_secret() -> None:
    MingerServer(directory_lookup, secret="x" * MIN_SECRET_LENGTH, allowed_networks=[])
    MingerServer(directory_lookup, secret=None, allow_anonymous=True, allowed_networks=[])


GARBAGE = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))

# C: the datagram sent;  S: the exact reply (draft §3: "mailbox SP status").
TRANSCRIPT_SECRET_ONLY: list[tuple[str, bytes, bytes]] = [
    ("exists and active", signed("alice@example.com"), b"alice@example.com 5"),
    ("exists, cannot receive", signed("frozen@example.com"), b"frozen@example.com 4"),
    ("does not exist", signed("nobody@example.com"), b"nobody@example.com 3"),
    ("case echoed verbatim", b"Alice@Example.com d=" + MIXED_CASE_DIGEST.encode(), b"Alice@Example.com 5"),
    ("line end tolerated, never sent", signed("alice@example.com") + b"\r\n", b"alice@example.com 5"),
    ("unknown tags ignored", signed("alice@example.com") + b" v=7 X_y=z", b"alice@example.com 5"),
    ("wrong digest", signed("alice@example.com", "another-secret-of-ours"), b"alice@example.com 2"),
    ("digest for another mailbox", b"alice@example.com d=" + ARVEL_DIGEST.encode(), b"alice@example.com 2"),
    ("anonymous, refused", b"alice@example.com", b"alice@example.com 2"),
    ("bad digest syntax", b"alice@example.com d=not/base64!", b"alice@example.com 0"),
    ("duplicate tag", signed("alice@example.com") + b" v=1 v=1", b"alice@example.com 0"),
    ("garbage", GARBAGE, b"0"),
    ("empty", b"", b"0"),
    ("non-ASCII", b"j\xc3\xbcrgen@example.com", b"0"),
    ("NUL inside", b"alice@example.com\x00 d=AAAA", b"0"),
    ("oversized", signed("alice@example.com") + b" x=" + b"y" * MAX_DATAGRAM_SIZE, b"0"),
    ("binary, 60000 octets", bytes(range(256)) * 234, b"0"),
]


async def test_transcript_secret_required() -> None:
    async with minger_server() as server, udp_peer() as client:
        for label, sent, expected in TRANSCRIPT_SECRET_ONLY:
            assert await exchange(server, sent, client) == expected, label
        assert server.stats.answered == 6
        assert server.stats.refused == len(TRANSCRIPT_SECRET_ONLY) - 6


async def test_transcript_anonymous_allowed() -> None:
    async with minger_server(allow_anonymous=True) as server, udp_peer() as client:
        assert await exchange(server, b"alice@example.com", client) == b"alice@example.com 5"
        assert await exchange(server, b"nobody@example.com v=1", client) == b"nobody@example.com 3"
        assert await exchange(server, signed("alice@example.com"), client) == b"alice@example.com 5"
        wrong = signed("alice@example.com", "another-secret-of-ours")
        assert await exchange(server, wrong, client) == b"alice@example.com 2"


async def test_transcript_anonymous_only_server() -> None:
    async with minger_server(secret=None, allow_anonymous=True) as server, udp_peer() as client:
        assert await exchange(server, b"alice@example.com", client) == b"alice@example.com 5"
        assert await exchange(server, signed("alice@example.com"), client) == b"alice@example.com 2"


async def test_transcript_client_network_not_allowed() -> None:
    async with minger_server(allowed_networks=["10.0.0.0/8", "::1/128"]) as server, udp_peer() as client:
        assert await exchange(server, signed("alice@example.com"), client) == b"alice@example.com 1"
        assert await exchange(server, GARBAGE, client) == b"1"  # refused before parsing matters
        assert server.stats.answered == 0


async def test_server_survives_hostile_datagrams_and_still_answers() -> None:
    async with minger_server() as server, udp_peer() as client:
        for payload in (b"", b"\x00" * 100, bytes(range(256)) * 200, "ü".encode() * 300, b"\n" * 10):
            assert await exchange(server, payload, client) == b"0"
        assert await exchange(server, signed("alice@example.com"), client) == b"alice@example.com 5"
        assert server.stats.failed == 0


async def test_every_refusal_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    async with minger_server() as server, udp_peer() as client:
        await exchange(server, b"alice@example.com", client)
        await exchange(server, GARBAGE, client)
        await exchange(server, signed("alice@example.com", "another-secret-of-ours"), client)
        await exchange(server, signed("alice@example.com"), client)
    refused = [r for r in caplog.records if r.name == LOG and "refused" in r.getMessage()]
    assert len(refused) == 3
    assert "2 BAD_CREDENTIALS (anonymous query)" in refused[0].getMessage()
    assert "0 MALFORMED" in refused[1].getMessage()
    assert "2 BAD_CREDENTIALS (wrong digest)" in refused[2].getMessage()
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_async_lookup() -> None:
    async def lookup(mailbox: str) -> int:
        await asyncio.sleep(0)
        return 4 if mailbox.startswith("frozen") else 5

    async with minger_server(lookup=lookup) as server, udp_peer() as client:
        assert await exchange(server, signed("frozen@example.com"), client) == b"frozen@example.com 4"
        assert await exchange(server, signed("bob@example.com"), client) == b"bob@example.com 5"


async def test_lookup_failures_leave_the_query_unanswered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)

    def lookup(mailbox: str) -> int:
        if mailbox.startswith("boom"):
            raise RuntimeError("directory down")
        if mailbox.startswith("zero"):
            return 0  # not an answer about an address
        return 5

    async with minger_server(lookup=lookup) as server, udp_peer() as client:
        assert await exchange(server, signed("boom@example.com"), client) is None
        assert await exchange(server, signed("zero@example.com"), client) is None
        assert await exchange(server, signed("alice@example.com"), client) == b"alice@example.com 5"
        assert server.stats.failed == 2


async def test_slow_async_lookup_times_out() -> None:
    never = asyncio.Event()

    async def lookup(mailbox: str) -> int:
        await never.wait()
        return 5

    async with minger_server(lookup=lookup, lookup_timeout=0.05) as server, udp_peer() as client:
        assert await exchange(server, signed("alice@example.com"), client) is None
        assert server.stats.failed == 1


async def test_flood_from_one_address_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOG)
    clock = FakeClock()  # frozen: no refill unless the test moves it
    async with minger_server(
        rate_per_second=1.0, rate_burst=5, rate_log_interval=30.0, clock=clock
    ) as server, udp_peer("127.0.0.1") as flooder, udp_peer("127.0.0.2") as bystander:
        for _ in range(20):
            flooder.send(signed("alice@example.com"), server.address)
        # The bystander's query is queued behind the flood on the server's socket, so
        # once it is answered every flood datagram has been dealt with.
        assert await exchange(server, signed("alice@example.com"), bystander) == b"alice@example.com 5"
        for _ in range(5):
            assert (await flooder.recv())[0] == b"alice@example.com 5"
        assert await flooder.recv_none()
        assert server.stats.dropped == 15
        notices = [r for r in caplog.records if "rate limit" in r.getMessage()]
        assert len(notices) == 1 and "127.0.0.1" in notices[0].getMessage()

        clock.now += 2.0  # two tokens back; still inside the notice interval
        for _ in range(3):
            flooder.send(signed("alice@example.com"), server.address)
        assert await exchange(server, signed("alice@example.com"), bystander) is not None
        assert [(await flooder.recv())[0] for _ in range(2)] == [b"alice@example.com 5"] * 2
        assert await flooder.recv_none()
        assert len([r for r in caplog.records if "rate limit" in r.getMessage()]) == 1

        clock.now += 30.0  # next interval: the next drop is reported with the count
        for _ in range(7):
            flooder.send(signed("alice@example.com"), server.address)
        assert await exchange(server, signed("alice@example.com"), bystander) is not None
        notices = [r for r in caplog.records if "rate limit" in r.getMessage()]
        assert len(notices) == 2 and "(16 dropped" in notices[1].getMessage()  # 14 + 1 + 1


# == (c) the client ================================================================


async def test_client_against_server_every_answer() -> None:
    async with minger_server() as server:
        host, port = server.address
        assert await query(host, port, "alice@example.com", SECRET, 1.0) is Code.ACTIVE
        assert await query(host, port, "frozen@example.com", SECRET, 1.0) is Code.CANNOT_RECEIVE
        assert await query(host, port, "nobody@example.com", SECRET, 1.0) is Code.NOT_FOUND
        assert await query(host, port, "alice@example.com", "another-secret-of-ours", 1.0) is Code.BAD_CREDENTIALS
        assert await query(host, port, "alice@example.com", None, 1.0) is Code.BAD_CREDENTIALS
    async with minger_server(allowed_networks=["10.0.0.0/8"]) as server:
        host, port = server.address
        assert await query(host, port, "alice@example.com", SECRET, 1.0) is Code.ACCESS_DENIED


async def test_client_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        await query("127.0.0.1", 9, "not a mailbox", None, 1.0)
    with pytest.raises(ValueError):
        await query("127.0.0.1", 9, "alice@example.com", "short secret", 1.0)  # has SP
    with pytest.raises(ValueError):
        await query("127.0.0.1", 9, "alice@example.com", None, 0)


async def test_client_ignores_replies_that_do_not_match() -> None:
    async with udp_peer() as fake, udp_peer() as impostor:
        task = asyncio.create_task(query(*fake.address, "alice@example.com", SECRET, 2.0))
        data, client_addr = await fake.recv()
        assert data == signed("alice@example.com")
        fake.send(b"bob@example.com 5", client_addr)  # another mailbox
        impostor.send(b"alice@example.com 3", client_addr)  # right mailbox, wrong port
        fake.send(b"alice@example.com 9", client_addr)  # not a reply
        fake.send(b"\xff\xfe", client_addr)
        fake.send(b"ALICE@example.com 5", client_addr)  # the answer (case aside)
        assert await task is Code.ACTIVE


async def test_client_keeps_waiting_past_a_wrong_mailbox_until_the_timeout() -> None:
    async with udp_peer() as fake:
        task = asyncio.create_task(query(*fake.address, "alice@example.com", None, SHORT))
        _, client_addr = await fake.recv()
        fake.send(b"bob@example.com 5", client_addr)
        with pytest.raises(MingerTimeout):
            await task


def test_client_checks_the_source_address_itself() -> None:
    # The connected socket already filters on Linux; the waiter checks too.
    loop = asyncio.new_event_loop()
    try:
        answer: asyncio.Future[Code] = loop.create_future()
        waiter = _Waiter("alice@example.com", ("127.0.0.1", 4069), answer)
        waiter.datagram_received(b"alice@example.com 5", ("127.0.0.1", 4070))
        waiter.datagram_received(b"alice@example.com 5", ("127.0.0.2", 4069))
        waiter.datagram_received(b"alice@example.com 5", ("not an address", 4069))
        assert not answer.done()
        waiter.datagram_received(b"alice@example.com 4", ("127.0.0.1", 4069))
        assert answer.result() is Code.CANNOT_RECEIVE
    finally:
        loop.close()


async def test_slow_peer_times_out() -> None:
    async with udp_peer() as silent:
        started = time.monotonic()
        with pytest.raises(MingerTimeout) as info:
            await query(*silent.address, "alice@example.com", SECRET, 0.2)
        assert 0.15 < time.monotonic() - started < 1.0
        assert isinstance(info.value, TimeoutError) and isinstance(info.value, MingerError)
        assert (await silent.recv())[0] == signed("alice@example.com")  # it was asked


async def test_client_resends_when_asked_to() -> None:
    async with udp_peer() as lossy:
        task = asyncio.create_task(
            query(*lossy.address, "alice@example.com", SECRET, 0.6, attempts=3)
        )
        first, _ = await lossy.recv()  # "lost"
        second, client_addr = await lossy.recv(0.5)
        assert first == second == signed("alice@example.com")
        lossy.send(b"alice@example.com 5", client_addr)
        assert await task is Code.ACTIVE


async def test_query_many_with_one_peer_down() -> None:
    down_port = await free_udp_port()
    async with (
        minger_server() as server,
        minger_server(secret="another-secret-of-ours") as other,
        udp_peer() as silent1,
        udp_peer() as silent2,
        udp_peer() as silent3,
    ):
        live = Peer(*server.address, secret=SECRET)
        wrong_secret = Peer(*other.address, secret=SECRET)
        down = Peer("127.0.0.1", down_port, secret=SECRET)
        mutes = [Peer(*silent.address) for silent in (silent1, silent2, silent3)]
        started = time.monotonic()
        answers = await query_many([live, down, wrong_secret, *mutes], "alice@example.com", SHORT)
        # asked at once: three silent peers in turn would take 3 * SHORT
        assert time.monotonic() - started < 2.4 * SHORT
    assert list(answers) == [live, down, wrong_secret, *mutes]
    assert answers[live] is Code.ACTIVE
    assert answers[wrong_secret] is Code.BAD_CREDENTIALS
    assert isinstance(answers[down], MingerUnreachable)  # ICMP port unreachable on loopback
    assert all(isinstance(answers[mute], MingerTimeout) for mute in mutes)


async def test_query_many_refuses_bad_input_before_asking() -> None:
    async with udp_peer() as peer:
        with pytest.raises(ValueError):
            await query_many([Peer(*peer.address)], "not a mailbox", SHORT)
        with pytest.raises(ValueError):
            await query_many([Peer(*peer.address, secret="with space")], "alice@example.com", SHORT)
        assert await peer.recv_none(0.05)


async def test_peer_defaults_to_the_minger_port() -> None:
    assert Peer("mx.example.com") == Peer("mx.example.com", DEFAULT_PORT, None)
