"""Rspamd learning: a message a user moves into Junk is reported as spam, one moved out
of Junk (not into Trash) as ham, to Rspamd's controller (``POST /learnspam`` and
``/learnham``, ``filter.rspamd_controller``, ``filter.rspamd_password``).

The mail store calls ``Learner.copied`` for every copy between mailboxes (IMAP COPY and
MOVE, WebUser moves: ``Mailstore.on_copy``), from whatever thread did the copy; the
learner reads the copies there and hands them to the event loop, where each is POSTed
in the background (at most ``MAX_PENDING`` waiting, ``CONCURRENCY`` at once; beyond,
dropped and logged).  A user's move never waits for Rspamd and never fails because of
it; the outcome is logged (``event=rspamd-learn``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Sequence

from ..config import Settings
from ..log import event

__all__ = ["Learner", "direction", "MAX_PENDING", "MAX_SIZE"]

log = logging.getLogger("waypost.rspamd")

#: Messages waiting to be reported at most; more are dropped (logged).
MAX_PENDING = 200
#: Reports sent at once.
CONCURRENCY = 4
#: Larger messages are not reported (Rspamd scans only so much anyway).
MAX_SIZE = 10 * 1024 * 1024


def _is(box: Any, use: str) -> bool:
    return bool(getattr(box, "special_use", "") == f"\\{use}" or str(box.name).lower() == use.lower())


def direction(src: Any, dst: Any) -> str | None:
    """'spam' into Junk from elsewhere, 'ham' out of Junk into anything but Trash."""
    if _is(dst, "Junk") and not _is(src, "Junk"):
        return "spam"
    if _is(src, "Junk") and not _is(dst, "Junk") and not _is(dst, "Trash"):
        return "ham"
    return None


class Learner:
    __slots__ = ("settings", "loop", "pending", "gate", "tasks")

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.loop = loop
        self.pending = 0
        self.gate = asyncio.Semaphore(CONCURRENCY)
        self.tasks: set[asyncio.Task[None]] = set()

    def copied(self, src: Any, dst: Any, paths: Sequence[Path]) -> None:
        """Called by the store after a copy (any thread)."""
        kind = direction(src, dst)
        if kind is None:
            return
        for path in paths:
            try:
                if path.stat().st_size > MAX_SIZE:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            self.loop.call_soon_threadsafe(self._start, kind, data, f"{dst.domain}/{dst.account}")

    def _start(self, kind: str, data: bytes, account: str) -> None:
        if self.pending >= MAX_PENDING:
            event(log, "rspamd-learn", level=logging.WARNING, kind=kind, account=account, result="dropped",
                  reason=f"{MAX_PENDING} reports waiting")
            return
        self.pending += 1
        task = asyncio.ensure_future(self._learn(kind, data, account))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _learn(self, kind: str, data: bytes, account: str) -> None:
        try:
            async with self.gate:
                status, text = await asyncio.wait_for(self._post(kind, data), self.settings.filter.rspamd_timeout)
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            event(log, "rspamd-learn", level=logging.WARNING, kind=kind, account=account, result="error",
                  error=str(e) or type(e).__name__)
            return
        finally:
            self.pending -= 1
        # Rspamd: 200 learnt; 208 "already learned" as that class.
        result = "learned" if status == 200 else "already" if status == 208 else "refused"
        event(log, "rspamd-learn", level=logging.INFO if status in (200, 208) else logging.WARNING, kind=kind,
              account=account, result=result, status=status, **({"answer": text[:200]} if status not in (200, 208)
                                                                 else {}))

    async def _post(self, kind: str, data: bytes) -> tuple[int, str]:
        from ..smtp.commands.rspamd import parse_url

        f = self.settings.filter
        host, port, prefix = parse_url(f.rspamd_controller)
        headers = [f"POST {prefix}/learn{kind} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                   f"Content-Length: {len(data)}"]
        if f.rspamd_password:
            headers.append(f"Password: {f.rspamd_password}")
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("utf-8") + data)
            await writer.drain()
            raw = await reader.read(65536)
            while len(raw) < 65536:
                more = await reader.read(65536 - len(raw))
                if not more:
                    break
                raw += more
        finally:
            writer.close()
        head, _sep, body = raw.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or not status[1].isdigit():
            raise ValueError(f"not an HTTP answer: {head[:60]!r}")
        return int(status[1]), body.decode("utf-8", "replace")

    async def stop(self, grace: float = 5.0) -> None:
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace)
