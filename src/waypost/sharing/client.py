"""The Minger client: asks a peer whether it accepts mail for an address.

Thin asyncio adapter over ``waypost.sharing.proto``.  One query is one UDP socket,
connected to the peer, so the kernel passes on only datagrams from the peer's address
and port and reports an ICMP "port unreachable" back to us.  A reply is taken only
when it comes from the peer's address and port and names the mailbox asked about
(without regard to case); any other datagram is ignored and the wait goes on until
the timeout.

The client never retries on its own beyond ``attempts``: what a timeout means (SMTP
451, try the next peer) is the caller's decision.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from .proto import DEFAULT_PORT, Code, encode_query, is_valid_mailbox, parse_reply, same_mailbox

__all__ = [
    "MingerError",
    "MingerTimeout",
    "MingerUnreachable",
    "Peer",
    "query",
    "query_many",
]

logger = logging.getLogger("waypost.sharing")


class MingerError(Exception):
    """A Minger question got no answer."""


class MingerTimeout(MingerError, TimeoutError):
    """No matching reply came before the timeout."""


class MingerUnreachable(MingerError, ConnectionError):
    """The peer could not be asked: its name does not resolve, or the network or the
    peer's host refused the datagram (ICMP unreachable)."""


@dataclass(frozen=True, slots=True)
class Peer:
    """One domain-sharing peer: where to ask and with which shared secret (None:
    anonymous).  MDaemon keeps a Minger password per host, so do we."""

    host: str
    port: int = DEFAULT_PORT
    secret: str | None = None


def _same_endpoint(a: Any, b: Any) -> bool:
    try:
        ip_a, ip_b = ipaddress.ip_address(a[0]), ipaddress.ip_address(b[0])
        return bool(ip_a == ip_b and int(a[1]) == int(b[1]))
    except (ValueError, TypeError, IndexError):
        return False


class _Waiter(asyncio.DatagramProtocol):
    """Waits for the one reply that answers our question; ignores everything else."""

    __slots__ = ("mailbox", "peer", "answer", "transport")

    def __init__(self, mailbox: str, peer: Any, answer: asyncio.Future[Code]) -> None:
        self.mailbox = mailbox
        self.peer = peer
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.answer.done():
            return
        if not _same_endpoint(addr, self.peer):
            logger.debug("minger: ignored a datagram from %r, asked %r", addr, self.peer)
            return
        reply = parse_reply(data)
        if reply is None:
            logger.debug("minger: ignored an unparseable reply from %r", addr)
            return
        if not same_mailbox(reply.mailbox, self.mailbox):
            logger.debug("minger: ignored a reply for %s from %r", reply.mailbox, addr)
            return
        self.answer.set_result(reply.code)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(MingerUnreachable(f"{self.peer[0]} port {self.peer[1]}: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.answer.done():
            self.answer.set_exception(MingerUnreachable(str(exc)))


async def query(
    host: str,
    port: int,
    mailbox: str,
    secret: str | None,
    timeout: float,
    *,
    attempts: int = 1,
) -> Code:
    """Ask ``host``:``port`` about ``mailbox``; its status code (0-5).

    ``timeout`` bounds the whole question, name resolution included.  ``attempts``
    sends the same datagram that many times, evenly spread over the timeout (UDP may
    lose one); the first matching reply wins.
    Raises ``MingerTimeout`` when no matching reply comes in time, ``MingerUnreachable``
    when the peer cannot be asked, ``ValueError`` for a mailbox, secret or setting that
    cannot be sent.
    """
    payload = encode_query(mailbox, secret)
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    loop = asyncio.get_running_loop()
    transport: asyncio.DatagramTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise MingerUnreachable(f"{host}: {exc}") from exc
            if not infos:
                raise MingerUnreachable(f"{host}: no address")
            family, _, _, _, sockaddr = infos[0]
            peer = (str(sockaddr[0]), int(sockaddr[1]))
            answer: asyncio.Future[Code] = loop.create_future()
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Waiter(mailbox, peer, answer), remote_addr=peer, family=family
                )
            except OSError as exc:
                raise MingerUnreachable(f"{host} port {port}: {exc}") from exc
            interval = timeout / attempts
            for attempt in range(attempts):
                transport.sendto(payload)
                last = attempt == attempts - 1
                await asyncio.wait({answer}, timeout=None if last else interval)
                if answer.done():
                    return answer.result()
            raise AssertionError("unreachable: the last wait ends only by answer or timeout")
    except TimeoutError as exc:
        if isinstance(exc, MingerError):
            raise
        raise MingerTimeout(f"no answer from {host} port {port} within {timeout}s") from None
    finally:
        if transport is not None:
            transport.close()


async def query_many(
    peers: Iterable[Peer], mailbox: str, timeout: float
) -> dict[Peer, Code | MingerError]:
    """Ask every peer about ``mailbox`` at once; each peer's code or error.

    The result keeps the peers' order (a peer given twice is asked once).  A peer that
    does not answer in ``timeout`` maps to ``MingerTimeout``, one that cannot be asked
    to ``MingerUnreachable``.  Raises ``ValueError`` before asking anyone when the
    mailbox or a peer's secret cannot be sent.
    """
    unique = list(dict.fromkeys(peers))
    if not is_valid_mailbox(mailbox):
        raise ValueError(f"not a mailbox Minger can carry: {mailbox!r}")
    for peer in unique:
        encode_query(mailbox, peer.secret)  # raises ValueError now, not per peer

    async def ask(peer: Peer) -> Code | MingerError:
        try:
            return await query(peer.host, peer.port, mailbox, peer.secret, timeout)
        except MingerError as exc:
            return exc
        except OSError as exc:
            return MingerUnreachable(f"{peer.host} port {peer.port}: {exc}")

    answers = await asyncio.gather(*(ask(peer) for peer in unique))
    return dict(zip(unique, answers))
