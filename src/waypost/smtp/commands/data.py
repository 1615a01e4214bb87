"""The message: DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030), then the checks, the
server-wide rules, the trace field, and the hand-off to the queue.

``accept`` is the one place where a received message — its octets, its envelope, the
client's address, its greeting and its login — is handed to ``QueueManager.submit``
(which fsyncs it before we say 250).  The checks of the message as a whole (SPF, DKIM,
DMARC: ``inbound.py``) run there first, before the rules and ``submit``.

LMTP (RFC 2033 §4.2): after the message, one reply per accepted recipient, in the
order of the RCPT commands.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import errno
import logging
import re
import time
from typing import TYPE_CHECKING

from ...db import StorageUnavailable
from ...log import event
from ...queue import Recipient, SpoolError
from ...queue.spool import new_message_id
from ...rules.outcome import rule_routes
from ..proto import BodyCheck, Mode, parse_bdat, parse_burl, refusal, wire
from ..replies import R, Reply
from . import inbound, rspamd
from .envelope import foreign_from, rule_envelope
from .text import MessageText, header_section

if TYPE_CHECKING:
    from ..server import WaypostSMTP

__all__ = ["HANDLERS", "accept", "header_section"]

log = logging.getLogger("waypost.smtp")


async def data(s: WaypostSMTP, arg: str | None) -> None:
    if arg:
        s.send(R.PARAM_SYNTAX.with_text("Syntax: DATA"))
        return
    s.send(f"354 {R.DATA_GO.text}", raw=True)
    s.in_data = True
    text = MessageText(s.service.queue.spool)
    try:
        s.conn.start_data()
        check = BodyCheck(s.settings.smtp.max_line_length)  # checked as it arrives
        try:
            end = await s.read_text(s.settings.smtp.data_timeout, text, check)
        except SpoolError as e:
            # The disk refused the text of a big message: the rest is read and dropped.
            text.abort()
            await s.read_text(s.settings.smtp.data_timeout, None)
            s.reset_transaction()
            s.send(_spool_reply(s, e))
            return
        except Exception:
            event(log, "data-aborted", level=logging.INFO, client=s.client_ip)
            raise
        if end.too_big:
            s.reset_transaction()
            s.send(R.TOO_BIG)
            return
        await _complete(s, text, check)
    finally:
        text.abort()  # unless handed to the queue, which then owns it
        s.in_data = False


async def bdat(s: WaypostSMTP, arg: str | None) -> None:
    """RFC 3030 §2.  The chunk is read whatever happens to it: a chunk refused (wrong
    state, too big, after a failed chunk of a pipeline) is read and dropped, so that
    its octets are never taken for commands."""
    command = parse_bdat(arg)
    if isinstance(command, Reply):
        await s.error(command)
        return
    refused = refusal("BDAT", s.state, s.mode, s.authenticated)
    s.in_data = True
    try:
        s.conn.start_chunk(command.size)
        if refused is None and s.chunks is None:
            s.chunks = MessageText(s.service.queue.spool)
            s.chunk_check = BodyCheck(s.settings.smtp.max_line_length)
        total = s.chunk_size + command.size
        # (Checked and kept as it arrives, unless it will be dropped.)
        keep = refused is None and total <= s.settings.smtp.max_message_size
        check = s.chunk_check if keep else None
        try:
            await s.read_text(s.settings.smtp.data_timeout, s.chunks if keep else None, check)
        except SpoolError as e:
            await s.read_text(s.settings.smtp.data_timeout, None)
            s.reset_transaction()
            s.send(_spool_reply(s, e))
            return
        except Exception:
            event(log, "data-aborted", level=logging.INFO, client=s.client_ip)
            raise
        if refused is not None:
            s.send(refused)
            return
        if check is None:
            # RFC 3030 §2: the transaction has failed; chunks already pipelined behind
            # this one are read and refused (503: no transaction).
            s.reset_transaction()
            s.send(R.TOO_BIG)
            return
        text = s.chunks
        assert text is not None
        s.chunk_size = total
        if not command.last:
            s.send(Reply(250, "2.0.0", f"{command.size} octets received"))
            return
        if text.size and not text.ends_with_crlf:  # the last line ends here
            text.add(b"\r\n")
            check.feed(b"\r\n")
        await _complete(s, text, check)
    finally:
        s.in_data = False


async def burl(s: WaypostSMTP, arg: str | None) -> None:
    """RFC 4468: the octets an IMAP URL names, taken as a BDAT chunk would be (BURL and
    BDAT mix in one message).  Only URLAUTH URLs of our own store are resolved
    (``imap/urlauth.py``), as the submission server acting for the user who
    authenticated: ``submit+`` that user, ``authuser`` or ``anonymous``.  A URL that
    does not resolve fails the transaction (554 5.6.6; RFC 4468 §6)."""
    command = parse_burl(arg)
    if isinstance(command, Reply):
        await s.error(command)
        return
    from ...imap import urlauth  # the IMAP side owns URLAUTH

    store, lookup = s.service.mailstore, s.service.lookup_account
    got = None
    if store is not None and lookup is not None and s.auth_data and command.url[:7].lower() == "imap://":
        account, _, domain = str(s.auth_data).rpartition("@")
        who = urlauth.Requester(submit=(domain, account))
        got = await asyncio.to_thread(urlauth.fetch, store, lookup, command.url, who, domain)
    if got is None:
        event(log, "burl-failed", level=logging.INFO, client=s.client_ip, account=s.auth_data,
              url=command.url[:200])
        s.reset_transaction()
        s.send(R.BURL_FAILED)
        return
    data = got.octets()
    if s.chunks is None:
        s.chunks = MessageText(s.service.queue.spool)
        s.chunk_check = BodyCheck(s.settings.smtp.max_line_length)
    assert s.chunk_check is not None
    total = s.chunk_size + len(data)
    if total > s.settings.smtp.max_message_size:
        s.reset_transaction()
        s.send(R.TOO_BIG)
        return
    check = s.chunk_check
    check.feed(data)
    text = s.chunks
    try:
        if text.add(data):
            await text.flush()
    except SpoolError as e:
        s.reset_transaction()
        s.send(_spool_reply(s, e))
        return
    s.chunk_size = total
    if not command.last:
        s.send(R.BURL_MORE)
        return
    if text.size and not text.ends_with_crlf:  # the last line ends here
        text.add(b"\r\n")
        check.feed(b"\r\n")
    await _complete(s, text, check)


async def _complete(s: WaypostSMTP, text: MessageText, check: BodyCheck) -> None:
    problem = check.verdict(s.options.body == "8BITMIME" or s.options.smtputf8)
    if problem is not None:
        event(log, "data-refused", level=logging.INFO, client=s.client_ip, reply=f"{problem.code} {problem.status}")
        _answer(s, problem)
        return
    _answer(s, await accept(s, text))


def _answer(s: WaypostSMTP, reply: Reply) -> None:
    """The reply to the end of a message: one, or (LMTP) one per recipient; the
    transaction is over either way."""
    count = s.rcpt_count if s.mode is Mode.LMTP else 1
    s.reset_transaction()
    s.write(wire(reply) * max(count, 1))


def _spool_reply(s: WaypostSMTP, e: SpoolError) -> Reply:
    event(log, "spool-refused", level=logging.ERROR, client=s.client_ip, error=str(e))
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    return R.NO_STORAGE if full else R.LOCAL_ERROR


async def accept(s: WaypostSMTP, text: MessageText) -> Reply:
    """The message has been read and is well-formed: apply the rules, add the trace
    field and hand it to the queue.  Returns the reply for the client.

    ``text`` is the message text, in memory or (a big one) already in a spool stream;
    it is taken over.  Checks of the message as a whole go here, before ``submit``:
    the octets are ``await text.whole()`` (read back from the spool for a big message),
    the header section ``text.header()``, the envelope ``sender`` and ``recipients``,
    the client ``s.client_ip``, its greeting ``s.host_name`` and login ``s.auth_data``."""
    verdict_field = b""
    junk = False
    try:
        await text.flush()  # a streamed text: all of it in its file
    except SpoolError as e:
        return _spool_reply(s, e)
    if inbound.applies(s):
        # SPF, DKIM and DMARC of mail from outside (mailauth.inbound): see inbound.py.
        outcome = await inbound.check(s, await text.whole())
        if outcome.reply is not None:
            return outcome.reply
        text.pieces[:] = [outcome.message]
        text.size = len(outcome.message)
        verdict_field, junk = outcome.header, outcome.junk
    head = text.header()
    refused, recipients, added = _apply_rules(s, head, text.size)
    if refused is not None:
        return refused
    msg_id = new_message_id()
    if s.settings.filter.rspamd and inbound.outside(s):
        whole = await text.whole()
        spam = await rspamd.scan(s, whole, msg_id)
        if spam.reply is not None:
            return spam.reply
        if spam.remove or spam.subject is not None:
            edited = rspamd.edit(whole, spam.remove, spam.subject)
            text.pieces[:] = [edited]
            text.size = len(edited)
        verdict_field += spam.headers
        junk = junk or spam.junk
    if junk:
        recipients = inbound.junked(recipients)
    if s.authenticated:
        # The message as it will leave: with the fields rules added.
        foreign = foreign_from(s, added + head)
        if foreign is not None:
            event(log, "sender-refused", level=logging.WARNING, client=s.client_ip,
                  account=s.auth_data, sender=f"<{foreign}>", where="from-header")
            return R.FROM_NOT_OWNED
    stream = text.stream
    front = b"".join([received_header(s, msg_id), verdict_field, added])
    if s.mode is Mode.SUBMISSION:
        front = _complete_headers(front, head, s.settings.server.hostname)
    if stream is None:
        message = b"".join([front, *text.pieces])  # one copy of the text
        text.pieces = []
    else:
        message = front  # what goes in front of the text in the stream's file
    params = dict(s.options.as_params(), client=s.client_ip, helo=s.host_name or "",
                  auth=s.auth_data if s.authenticated else None)
    sender = s.mail_from or ""
    try:
        queued = await s.service.queue.submit(sender, recipients, message, params, msg_id=msg_id,
                                              source=s.mode.value, stream=stream)
    except SpoolError as e:
        return _spool_reply(s, e)
    except asyncio.CancelledError:
        raise
    except StorageUnavailable as e:  # the queue index cannot take it: 451, one line
        event(log, "storage-unavailable", level=logging.ERROR, client=s.client_ip, command="DATA", error=str(e))
        return R.LOCAL_ERROR
    except Exception:
        log.exception("event=submit-error client=%s", s.client_ip)
        return R.LOCAL_ERROR
    return R.QUEUED.with_text(f"OK: queued as {queued}")


def _apply_rules(s: WaypostSMTP, head: bytes, size: int) -> tuple[Reply | None, list[Recipient], bytes]:
    """After the message (its header section and size): (a refusal, or None; the
    recipients; the header fields to add)."""
    recipients = list(s.recipients)
    if s.service.rules is None:
        return None, recipients, b""
    try:
        out = s.service.rules().apply(rule_envelope(s, list(s.rcpt_tos), head, size))
        if not out.matched:
            return None, recipients, b""
        event(log, "rules", client=s.client_ip, sender=f"<{s.mail_from}>", matched=",".join(out.matched))
        if out.rejected:
            return Reply(550, "5.7.1", out.rejected), [], b""
        if out.discard:
            return Reply(250, "2.0.0", "OK: discarded by a server rule"), [], b""
        pairs = rule_routes(s.service.router, out)
        if out.redirect:
            recipients = []
        recipients += [Recipient(a, r) for a, r in pairs]
        extra = "".join(h + "\r\n" for h in out.add_headers).encode("utf-8")
        return None, recipients, extra
    except StorageUnavailable as e:
        # The rules could not be read: "try again later", never a message let through
        # without the rules that may refuse or redirect it.
        event(log, "storage-unavailable", level=logging.ERROR, client=s.client_ip, command="DATA", error=str(e))
        return R.LOCAL_ERROR, [], b""
    except Exception:
        log.exception("event=rule-error phase=data")
        return None, list(s.recipients), b""


def received_header(s: WaypostSMTP, msg_id: str) -> bytes:
    """RFC 5321 §4.4 trace field; protocol names of RFC 3848 ("LMTP" of RFC 2033)."""
    helo = s.host_name or "unknown"
    ip = s.client_ip or "unknown"
    if s.mode is Mode.LMTP:
        proto = "LMTP"
    else:
        proto = "ESMTP" if s.extended else "SMTP"
    if s.tls:
        proto += "S"
    if s.authenticated:
        proto += "A"
    if s.options.smtputf8:
        proto = "UTF8" + proto.replace("ESMTP", "SMTP")
    tls = ""
    if s.tls and s.transport is not None:
        cipher = s.transport.get_extra_info("cipher")
        if cipher:
            tls = f"\r\n\t(using {cipher[1]} with cipher {cipher[0]})"
    rcpts = s.rcpt_tos
    for_clause = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
    date = _date_now()
    return (f"Received: from {_clean(helo)} ([{ip}]){tls}\r\n\tby {s.settings.server.hostname} (Waypost) with "
            f"{proto} id {msg_id}{for_clause}; {date}\r\n").encode("utf-8")


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The RFC 5322 date-time of now in local time (made once a second: every message
    of a busy second carries the same one)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        local = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).astimezone()
        _date_cache = (now, email.utils.format_datetime(local))
    return _date_cache[1]


def _clean(text: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", text)[:255]


def _complete_headers(front: bytes, head: bytes, hostname: str) -> bytes:
    """RFC 6409 §8.3, §8.4: a submission server may add a missing Date and Message-ID.
    ``front``: our Received field (and what we add after it); ``head``: the client's
    header section.  Returns ``front`` with the missing fields after Received."""
    end = head.find(b"\r\n\r\n")
    header = b"\r\n" + (front + (head if end < 0 else head[: end + 2])).lower()
    extra = b""
    if b"\r\ndate:" not in header:
        extra += f"Date: {_date_now()}\r\n".encode()
    if b"\r\nmessage-id:" not in header:
        extra += f"Message-ID: {email.utils.make_msgid(domain=hostname)}\r\n".encode()
    if not extra:
        return front
    # After our Received field (the first line block), before the client's headers.
    first_end = front.find(b"\r\n", 0)
    while first_end >= 0 and front[first_end + 2:first_end + 3] in (b" ", b"\t"):
        first_end = front.find(b"\r\n", first_end + 2)
    return front[: first_end + 2] + extra + front[first_end + 2:]


HANDLERS = {"DATA": data, "BDAT": bdat, "BURL": burl}

