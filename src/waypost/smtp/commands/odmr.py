"""ATRN and TURN (RFC 2645, On-Demand Mail Relay): an authenticated customer asks for
the mail of its domains, and the connection is turned around — we become the client
and deliver it there.  What is not delivered stays queued (and held)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from ...address import AddressError, normalize_domain
from ...log import event
from ..replies import Reply, default_enhanced
from ..server import ClientGone

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS"]

log = logging.getLogger("waypost.smtp")


async def atrn(s: WaypostSMTP, arg: str | None) -> None:
    await _atrn(s, arg, "ATRN")


async def turn(s: WaypostSMTP, arg: str | None) -> None:
    # RFC 2645 §5 / RFC 821 TURN: only for an authenticated client, meaning "all my domains".
    await _atrn(s, None, "TURN")


def _releasable(s: WaypostSMTP) -> list[str]:
    """The domains the authenticated account may release with ATRN/TURN: the account
    named after a domain in the main domain (seed 004), and its atrn_domains."""
    account = str(s.auth_data or "")
    name, _, domain = account.partition("@")
    directory = s.service.router.directory
    out = []
    if domain == directory.main_domain and "." in name:
        out.append(name)
    obj = directory.db.get_object(domain, name)
    if obj is not None:
        out.extend(d.lower() for d in obj.data.get("atrn_domains", []))
    return sorted(set(out))


async def _atrn(s: WaypostSMTP, arg: str | None, verb: str) -> None:
    # (Only on the ODMR listener, greeted and authenticated: the state table.)
    may = _releasable(s)
    if arg:
        try:
            asked = [normalize_domain(d) for d in arg.split(",") if d.strip()]
        except AddressError:
            s.send(Reply(501, "5.5.4", f"Syntax: {verb} domain[,domain...]"))
            return
    else:
        asked = may
    refused = [d for d in asked if d not in may]
    if refused or not asked:
        event(log, "atrn-refused", level=logging.WARNING, account=s.auth_data, domains=",".join(refused))
        s.send(Reply(450, "4.7.1", f"{verb} request refused for {', '.join(refused) or 'no domains'}"))
        return
    msgs = await s.service.queue.claim([f"mx:{d}" for d in asked])
    if not msgs:
        s.send(Reply(453, "4.2.4", "You have no mail"))
        return
    event(log, "atrn", account=s.auth_data, domains=",".join(asked), messages=len(msgs))
    s.send(Reply(250, "2.0.0", "OK now reversing the connection"))
    await _turned(s, msgs)


async def _turned(s: WaypostSMTP, msgs: list[Any]) -> None:
    """RFC 2645 §4: the roles are reversed on this connection: we are the client."""
    queue = s.service.queue
    timeout = s.settings.delivery.command_timeout
    hostname = s.settings.server.hostname
    peer = f"odmr:{s.auth_data or ''}"
    pending = list(msgs)

    async def reply() -> tuple[int, str, str]:
        lines = []
        while True:
            try:
                line = await s.read_line(4096, timeout, announce=False)
            except ClientGone:
                raise ConnectionError("connection lost or timed out") from None
            if isinstance(line, Reply):
                raise ConnectionError("the customer's reply was cut or malformed")
            text = line.decode("utf-8", "replace")
            if len(text) < 3 or not text[:3].isdigit():
                raise ConnectionError(f"not an SMTP reply: {text[:60]!r}")
            lines.append(text[4:])
            if text[3:4] != "-":
                code = int(text[:3])
                first = lines[0] if len(lines) == 1 else lines[-1]
                m = re.match(r"^([245]\.\d{1,3}\.\d{1,3}) (.*)$", first)
                return code, (m.group(1) if m else default_enhanced(code)), (m.group(2) if m else first)

    async def send(line: str) -> None:
        s.write(line.encode("utf-8") + b"\r\n")
        try:
            await s.drain()
        except ClientGone:
            raise ConnectionError("connection lost") from None

    try:
        code, _, text = await reply()
        if code != 220:
            raise ConnectionError(f"greeting {code} {text}")
        await send(f"EHLO {hostname}")
        code, _, _ = await reply()
        if code != 250:
            await send(f"HELO {hostname}")
            code, _, text = await reply()
            if code != 250:
                raise ConnectionError(f"HELO refused: {code} {text}")
        while pending:
            msg = pending[0]
            data = await queue.load(msg)
            await send(f"MAIL FROM:<{msg.sender}>")
            code, enh, text = await reply()
            results = []
            if code != 250:
                results = [(r, code, enh, text) for r in msg.recipients]
            else:
                accepted = []
                for r in msg.recipients:
                    await send(f"RCPT TO:<{r.route.get('address') or r.address}>")
                    rc = await reply()
                    if rc[0] in (250, 251):
                        accepted.append(r)
                    else:
                        results.append((r, *rc))
                if accepted:
                    await send("DATA")
                    code, enh, text = await reply()
                    if code == 354:
                        body = data if data.endswith(b"\r\n") else data + b"\r\n"
                        if body.startswith(b"."):
                            body = b"." + body
                        s.write(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
                        try:
                            await s.drain()
                        except ClientGone:
                            raise ConnectionError("connection lost") from None
                        code, enh, text = await reply()
                    else:  # DATA refused: the transaction is over (RFC 5321 §3.3)
                        await send("RSET")
                        await reply()
                    results.extend((r, code, enh, text) for r in accepted)
                else:
                    await send("RSET")
                    await reply()
            await queue.record(msg, results, peer)
            pending.pop(0)
        await send("QUIT")
        try:
            await reply()
        except (ConnectionError, asyncio.TimeoutError):
            pass
    except (ConnectionError, asyncio.TimeoutError, OSError, asyncio.CancelledError) as e:
        event(log, "atrn-aborted", level=logging.WARNING, peer=peer, error=str(e) or "connection lost",
              left=len(pending))
        if pending:  # nothing is lost: what was not finished stays queued (and held)
            await asyncio.shield(queue.unclaim(pending))
        if isinstance(e, asyncio.CancelledError):
            raise
    except Exception:  # anything else (a damaged spool file, the index): nothing stays stuck
        log.exception("event=atrn-error peer=%s", peer)
        if pending:
            await asyncio.shield(queue.unclaim(pending))
    finally:
        s.finish()


HANDLERS = {"ATRN": atrn, "TURN": turn}
