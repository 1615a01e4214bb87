"""The spam filter: Rspamd asked over its HTTP protocol (``POST /checkv2``) after DATA,
for mail from outside (the clients ``inbound.outside`` names), when ``filter.rspamd`` is
set.

Rspamd's action is honoured: ``reject`` → 550 5.7.1; ``soft reject`` and ``greylist``
→ 451 4.7.1; ``add header`` and ``rewrite subject`` → accepted into the recipients'
Junk mailbox (the subject rewritten to Rspamd's ``subject`` for the latter); ``no
action`` → accepted.  Every scanned message gets ``X-Spamd-Result`` and ``X-Spam``
fields, and the fields Rspamd asks for (``milter.add_headers``).  A filter that does
not answer within ``filter.rspamd_timeout`` (or answers nonsense) gets
``filter.rspamd_failure``: ``open`` (accepted unscanned, logged) or ``closed`` (451).

The request is plain HTTP/1.1 on an asyncio stream (one connection per message): the
worker serves its other sessions while Rspamd works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...log import event
from ..replies import Reply

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["Scan", "edit", "parse_url", "scan"]

log = logging.getLogger("waypost.smtp")

#: Octets of an answer read at most (a verdict is a few KiB).
MAX_ANSWER = 1024 * 1024


@dataclass(slots=True)
class Scan:
    reply: Reply | None = None
    headers: bytes = b""
    junk: bool = False
    subject: str | None = None  # a new Subject (rewrite subject)
    remove: list[str] = field(default_factory=list)  # fields of the message to remove (forged verdicts)
    action: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class FilterError(Exception):
    pass


def parse_url(url: str) -> tuple[str, int, str]:
    """``http://host:port[/path]`` → (host, port, path prefix); ValueError otherwise."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"{url!r}: expected http://host:port (Rspamd's normal worker, e.g. http://127.0.0.1:11333)")
    return u.hostname, u.port or 11333, u.path.rstrip("/")


def _field(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text)[:900]


async def _post(s: WaypostSMTP, message: bytes, queue_id: str) -> dict[str, Any]:
    host, port, prefix = parse_url(s.settings.filter.rspamd)
    headers = [f"POST {prefix}/checkv2 HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
               f"Content-Length: {len(message)}", f"Queue-Id: {queue_id}",
               f"From: {_field(s.mail_from or '')}", f"Helo: {_field(s.host_name or '')}",
               f"MTA-Name: {s.settings.server.hostname}"]
    if s.client_ip:
        headers.append(f"IP: {s.client_ip}")
    if s.authenticated and s.auth_data:
        headers.append(f"User: {_field(s.auth_data)}")
    headers += [f"Rcpt: {_field(r)}" for r in s.rcpt_tos]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("utf-8") + message)
        await writer.drain()
        raw = await reader.read(MAX_ANSWER + 1)
        while raw and len(raw) <= MAX_ANSWER:
            more = await reader.read(MAX_ANSWER + 1 - len(raw))
            if not more:
                break
            raw += more
    finally:
        writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or status[1] != b"200":
        raise FilterError(f"answered {head[:80]!r}")
    if b"chunked" in head.lower():
        body = _unchunk(body)
    try:
        answer = json.loads(body)
    except ValueError as e:
        raise FilterError(f"answer is not JSON ({e})") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("action"), str):
        raise FilterError("answer has no action")
    return answer


def _unchunk(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return out
        size = int(body[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return out
        out += body[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


async def scan(s: WaypostSMTP, message: bytes, queue_id: str) -> Scan:
    f = s.settings.filter
    try:
        answer = await asyncio.wait_for(_post(s, message, queue_id), f.rspamd_timeout)
    except asyncio.CancelledError:
        raise
    except (asyncio.TimeoutError, OSError, FilterError, ValueError) as e:
        reason = f"no answer within {f.rspamd_timeout:g} s" if isinstance(e, asyncio.TimeoutError) else str(e)
        closed = f.rspamd_failure == "closed"
        event(log, "rspamd-unavailable", level=logging.WARNING, client=s.client_ip, sender=f"<{s.mail_from}>",
              error=reason or type(e).__name__, action="defer" if closed else "accept-unscanned")
        if closed:
            return Scan(Reply(451, "4.7.1", "The spam filter cannot be asked now; try again later"),
                        action="unavailable")
        return Scan(action="unavailable")
    action = answer["action"]
    score, required = _number(answer.get("score")), _number(answer.get("required_score"))
    symbols: dict[str, Any] = answer["symbols"] if isinstance(answer.get("symbols"), dict) else {}
    names = sorted(symbols, key=lambda k: -abs(float(symbols[k].get("score", 0) or 0))
                   if isinstance(symbols[k], dict) else 0)[:20]
    is_spam = action not in ("no action", "greylist")
    fields = [f"X-Spamd-Result: default: {is_spam} [{score:.2f} / {required:.2f}]; action={action}"
              + (f";\r\n\t{', '.join(names)}" if names else ""),
              f"X-Spam: {'Yes' if is_spam else 'No'}"]
    milter: dict[str, Any] = answer["milter"] if isinstance(answer.get("milter"), dict) else {}
    adds: dict[str, Any] = milter["add_headers"] if isinstance(milter.get("add_headers"), dict) else {}
    for name, value in adds.items():
        if not re.fullmatch(r"[!-9;-~]+", str(name)) or str(name).lower() in ("x-spamd-result", "x-spam"):
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            text = v.get("value") if isinstance(v, dict) else v
            if isinstance(text, str):
                fields.append(f"{name}: {_field(text)}")
    removes: dict[str, Any] = milter["remove_headers"] if isinstance(milter.get("remove_headers"), dict) else {}
    out = Scan(headers="".join(x + "\r\n" for x in fields).encode("utf-8"), action=action,
               remove=[str(n).lower() for n in removes] + ["x-spamd-result"])
    if action == "reject":
        out.reply = Reply(550, "5.7.1", "Message refused as spam")
    elif action in ("soft reject", "greylist"):
        out.reply = Reply(451, "4.7.1", "Try again later (spam filter)")
    elif action in ("add header", "rewrite subject"):
        out.junk = True
        if action == "rewrite subject" and isinstance(answer.get("subject"), str):
            out.subject = _field(answer["subject"])
    event(log, "rspamd", client=s.client_ip, sender=f"<{s.mail_from}>", action=action, score=f"{score:.2f}",
          required=f"{required:.2f}", symbols=",".join(names[:8]) or "-",
          result="refused" if out.reply is not None else "junk" if out.junk else "accepted")
    return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


_FIELD_START = re.compile(rb"(?m)^(?=[^ \t\r\n])")


def edit(message: bytes, remove: list[str], subject: str | None) -> bytes:
    """The message without the fields named in ``remove`` (Rspamd's
    ``milter.remove_headers``, and a forged X-Spamd-Result), with ``subject`` (when
    given) as its Subject."""
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 2:])
    names = {n.encode("ascii", "replace") for n in remove}
    if subject is not None:
        names.add(b"subject")
    kept = [f for f in _FIELD_START.split(head) if f and f.partition(b":")[0].strip().lower() not in names]
    if subject is not None:
        kept.insert(0, f"Subject: {subject}\r\n".encode("utf-8"))
    return b"".join(kept) + body
