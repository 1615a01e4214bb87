"""The queue manager: from the spool to the mailboxes and the next hops.

Theory of operation.  ``submit`` makes a message durable (spool + index, leased to this
worker) and hands it straight to delivery, so a fresh message costs no index poll.
Every ``queue.poll_interval`` the manager also claims due recipients from the index
(retries, mail released by ``waypost queue flush``, leases of a worker that died), so
any worker — or any node on a shared database — can finish any message.

Recipients are grouped by their target (one queue per destination): ``local`` goes to
the local delivery agent, which stores batches with one flush; ``mx:DOMAIN`` and
``HOST[:PORT]`` go to the SMTP client under a per-destination and a global concurrency
limit; ``refuse`` and ``discard`` are settled at once.  Each outcome is written to the
index; a temporary failure is retried on the schedule of ``queue.retry_intervals``
until ``queue.expire_after``; a permanent failure or an expiry sends a DSN to the
sender (never to the null sender).  When no recipient of a message is left queued, its
spool file is removed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import os
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import metrics
from ..config import Settings
from ..db import Database, QueueFilter, QueuedMessage, QueuedRecipient, RecipientUpdate, StorageUnavailable
from ..delivery import remote
from ..delivery.tlspolicy import TLSPolicies
from ..log import event
from ..mailauth import Sealer, Signer, should_seal, should_sign
from ..mailstore import AccountGone, Delivery, Mailstore, OverQuota
from ..router import LOCAL_TARGET, Context, Route, Router
from . import dsn
from .journal import Journal
from .sieve_filter import Filtered, SieveFilter
from .spool import Spool, SpoolEntry, SpoolStream, new_message_id, node_dir
from .tlsrpt import TLSReporter

__all__ = ["QueueManager", "Recipient", "count_received", "release_dead_worker"]

log = logging.getLogger("waypost.queue")

#: Larger messages are DKIM-signed in a thread (hashing the body would hold the loop).
SIGN_INLINE = 256 * 1024

#: Most recipients one local batch stores with one flush.
LOCAL_BATCH = 256
#: ... and at most about this many octets of messages.
LOCAL_BATCH_BYTES = 8 * 1024 * 1024

#: Usage (percent of a quota) at which the user is warned, at most once a day.
QUOTA_WARNING = 90
#: Octets the fields added on the way in (Return-Path, Delivered-To, Received) may
#: give the warning, counted when checking that it fits.
WARNING_FIELDS = 1024

_RECEIVED = re.compile(rb"^received:", re.IGNORECASE | re.MULTILINE)


def count_received(data: bytes) -> int:
    """Received header fields in the header block (RFC 5321 §6.3 loop detection)."""
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[: end + 2]
    return len(_RECEIVED.findall(header))


@dataclass(slots=True)
class Recipient:
    """An envelope recipient as accepted: the address given, where it goes, DSN params."""

    address: str
    route: Route
    notify: str = ""
    orcpt: str = ""


@dataclass(slots=True)
class _Outcome:
    recipient: QueuedRecipient
    status: str           # delivered | failed | deferred
    reply: str            # "250 2.0.0 ..." style, or our own reason
    enhanced: str = ""
    remote_mta: str = ""
    journaled: bool = False  # written to the journal: cleared from it once in the index


#: Seconds between two heartbeats of a worker in the database (``waypost cluster
#: status`` calls a worker gone after three missed ones).
NODE_HEARTBEAT = 10.0

#: Present (in the data directory) while start-up recovery waits for an unreachable
#: database; ``serve`` removes it once recovery has run.
RECOVERY_PENDING = "run/recovery-pending"


class QueueManager:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        router: Router,
        mailstore: Mailstore,
        owner: str,
        is_self: Callable[[str, str, int], bool] | None = None,
        credentials: Callable[[str], tuple[str, str] | None] | None = None,
        srs: Any = None,
        signer: Signer | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        """``credentials(account)``: next-hop AUTH for routes that ask for it (gateway);
        ``srs``: the Sender Rewriting Scheme for copies made by account forwarding;
        ``signer``: DKIM-signs outgoing mail of our domains as it enters the queue;
        ``sealer``: ARC-seals mail from outside that we send on (RFC 8617)."""
        self.signer = signer
        self.sealer = sealer
        self.credentials = credentials
        self.srs = srs
        self.settings = settings
        self.db = db
        self.router = router
        self.mailstore = mailstore
        self.sieve = SieveFilter(db, mailstore, settings.server.hostname)
        self.owner = owner
        self.node = cluster_node(settings)
        root = settings.path(settings.storage.spool)
        self.spool = Spool(root, on_commit=self._index, on_abort=self._unindex, node=self.node)
        self.journal = Journal(node_dir(root, self.node) / "journal")
        self.resolver = remote.Resolver(settings)
        self.tls_policies = TLSPolicies(settings, db, self.resolver)
        self.tlsrpt = TLSReporter(settings, root, self.node, self.resolver, self.submit, self._made_for) \
            if settings.tlsrpt.enabled else None
        self.is_self = is_self or (lambda host, ip, port: False)
        self._local_queue: asyncio.Queue[tuple[QueuedMessage, list[QueuedRecipient], bytes | None] | None] | None = None
        self._host_limits: dict[str, asyncio.Semaphore] = {}
        self._global_limit: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: list[asyncio.Task[Any]] = []
        self._wake: asyncio.Event | None = None
        self._stopping = False
        # (msg_id, idx) of every recipient this worker is delivering: a claim never
        # dispatches one of them twice, and the heartbeat keeps their leases alive.
        self._in_flight: set[tuple[str, int]] = set()
        # Finished messages whose spool files are gone: their index entries are removed
        # with the next index write (see Database.queue_update).
        self._forget: list[str] = []
        # Outcomes the index could not take (a full disk under the database): written
        # again at every poll, their leases given back at once when the index recovers.
        self._unsettled: list[tuple[QueuedMessage, list[_Outcome]]] = []
        self._recovery_pending = settings.data_dir / RECOVERY_PENDING
        self._db_down = False

    # -- life cycle -------------------------------------------------------------------

    def recover(self) -> None:
        """Start-up only, before any worker of this node runs: make the index match the
        spool.  On a shared spool (``cluster_node``) the other nodes go on meanwhile:
        only this node's own files are cleaned, and an index entry without its file is
        left to the claim that finds it (it may be another node's message between its
        index insert and its rename into queue/, not a lost one) — while another node is
        up; a node alone (PostgreSQL with one node, or every other one down) forgets such
        entries at once, as with SQLite, instead of showing them for ``queue.lease``."""
        shared = bool(self.node) and self._other_nodes_up()
        removed = self.spool.clean_tmp()
        known = self.db.queue_known_ids()
        on_disk = set(self.spool.ids())
        restored = []
        for msg_id in sorted(on_disk - known):
            try:
                envelope, data = self.spool.read(msg_id)
            except (OSError, ValueError) as e:
                log.error("event=spool-damaged id=%s error=%r", msg_id, e)
                continue
            restored.append(SpoolEntry(msg_id, envelope, data))
        if restored:
            self.db.queue_insert([_queued(e) for e in restored], lease_owner="", lease_until=0.0)
        # Finished before a kill, file not yet removed: remove it now, then the entry
        # (in that order, or the file would look like an orphan and go out again).
        waiting = {e.msg_id for e in self.db.queue_entries(QueueFilter())}
        done = sorted((known & on_disk) - waiting)
        if done:
            self.spool.discard(done)
            self.db.queue_forget(done)
            on_disk -= set(done)
            known -= set(done)
        gone = set() if shared else known - on_disk
        self.db.queue_forget(gone)  # finished: the file was removed, the entry not yet
        for msg_id in sorted(gone & self.db.queue_known_ids()):
            # Indexed but never renamed into queue/ (never acknowledged), or lost.
            log.warning("event=spool-missing id=%s (index entry removed)", msg_id)
            self.db.queue_delete(msg_id)
        self._replay_journals(everything=True)
        self.db.queue_release_leases_of(self.settings.server.hostname)
        event(log, "recovered", restored=len(restored), removed_tmp=removed, queued=len(known | on_disk))

    def _replay_journals(self, everything: bool = False) -> int:
        """Record in the index what the journals of dead processes say was delivered
        (a kill -9 between a next hop's 250 and the index update)."""
        return _replay(self.db, self.spool, self.journal.orphaned(everything))

    async def start(self) -> None:
        # A worker that replaces a dead one finishes the dead one's bookkeeping first.
        await asyncio.to_thread(self._replay_journals)
        self._local_queue = asyncio.Queue()
        self._global_limit = asyncio.Semaphore(self.settings.delivery.max_connections)
        self._wake = asyncio.Event()
        self.spool.start()
        self._running = [
            asyncio.create_task(self._supervised(self._local_agent, "local-delivery")),
            asyncio.create_task(self._supervised(self._scheduler, "queue-scheduler")),
            asyncio.create_task(self._supervised(self._heartbeat, "lease-heartbeat")),
            asyncio.create_task(self._supervised(self._orphans, "orphan-scan")),
            asyncio.create_task(self._supervised(self._node_beat, "node-heartbeat")),
            *([asyncio.create_task(self._supervised(self.tlsrpt.run, "tls-reports"))] if self.tlsrpt else []),
        ]

    async def _supervised(self, body: Callable[[], Any], name: str) -> None:
        """Run a loop of the manager for ever: an unexpected error is logged and the
        loop restarted, so that a database hiccup never silently stops delivery."""
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event=loop-restarted loop=%s", name)
                await asyncio.sleep(0.5)

    async def _orphans(self) -> None:
        """Spool files the index does not know (a lost database, a restored backup) are
        looked for now and then, not only at start-up."""
        while True:
            await asyncio.sleep(self.settings.queue.orphan_scan)
            found = await asyncio.to_thread(self._adopt_orphans, self.settings.queue.orphan_scan)
            if found:
                event(log, "orphans-adopted", count=found)
                self.wake()

    def _adopt_orphans(self, min_age: float) -> int:
        # The spool is listed BEFORE the index is read: a file is removed before its
        # entry is forgotten, so a message whose delivery finishes between the two steps
        # is either still known or its file can no longer be read; the other order took
        # such a message for an orphan and queued it again.
        on_disk = list(self.spool.ids())
        known = self.db.queue_known_ids()
        now = time.time()
        entries = []
        for msg_id in on_disk:
            if msg_id in known:
                continue
            path = self.spool.path(msg_id)
            try:
                if now - path.stat().st_mtime < min_age:
                    continue  # written a moment ago: let the next scan decide
                envelope, data = self.spool.read(msg_id)
            except (OSError, ValueError):
                continue
            entries.append(SpoolEntry(msg_id, envelope, data))
        if entries:  # INSERT OR IGNORE: two workers adopting one file record it once
            self.db.queue_insert([_queued(e) for e in entries], lease_owner="", lease_until=0.0)
        return len(entries)

    async def _heartbeat(self) -> None:
        """Renew this worker's leases well before they run out (a third of the lease)."""
        lease = self.settings.queue.lease
        while True:
            await asyncio.sleep(max(lease / 3, 0.1))
            await asyncio.to_thread(self.db.queue_extend_leases, self.owner, time.time() + lease)

    async def _node_beat(self) -> None:
        """This worker's heartbeat in the database (``waypost cluster status``): its
        node, listeners and load, every ``NODE_HEARTBEAT`` seconds."""
        listen = self.settings.listen
        addresses = [f"{name}={value}" for name in ("smtp", "submission", "odmr", "imap", "pop3", "ftp", "http", "minger")
                     if (value := getattr(listen, name))]
        while True:
            try:
                await asyncio.to_thread(self.db.node_heartbeat, self.owner, self.settings.server.hostname, addresses,
                                        os.getloadavg()[0], time.time())
            except StorageUnavailable:
                pass  # the claim loop says so in the log
            await asyncio.sleep(NODE_HEARTBEAT)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work; let deliveries in flight finish their bookkeeping (index
        update, spool removal) for at most ``grace`` seconds, so that what was delivered
        is not delivered again after a restart; then give back what is left."""
        self._stopping = True
        local, *loops = self._running
        for t in loops:
            t.cancel()
        if self._local_queue is not None:
            self._local_queue.put_nowait(None)  # the agent ends after the batch in hand
        in_flight = {local, *self._tasks}
        _done, late = await asyncio.wait(in_flight, timeout=grace)
        for t in late:
            t.cancel()
        await asyncio.gather(*self._running, *self._tasks, return_exceptions=True)
        if late:
            event(log, "stop-cut-short", level=logging.WARNING, tasks=len(late))
        self.spool.stop()
        self.journal.close()
        if self._forget:
            await asyncio.to_thread(self.db.queue_forget, self._forget)
            self._forget = []
        event(log, "spool-stats", messages=self.spool.messages, flushes=self.spool.batches)
        # Whatever this worker held goes back to the index for the next start.
        await asyncio.to_thread(self.db.queue_release_leases_of, self.owner)
        await asyncio.to_thread(self.db.node_forget, self.owner)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- submission -------------------------------------------------------------------

    async def submit(self, sender: str, recipients: Sequence[Recipient], data: bytes,
                     params: dict[str, Any] | None = None, msg_id: str | None = None,
                     source: str = "local", stream: SpoolStream | None = None) -> str:
        """Make the message durable, then start delivering it.  Returns the queue id.
        Raises SpoolError when it could not be stored (the client gets 452).
        ``source``: the listener it came in by (or local, dsn, sieve), for the metrics.
        ``stream``: the message's text is in this spool stream (flushed), and ``data``
        is only what goes in front of it (a big message, never held in memory whole);
        the stream is taken over (committed, or removed on failure)."""
        try:
            return await self._submit(sender, recipients, data, params, msg_id, source, stream)
        except BaseException:
            # Not handed to the committer (which removes the file itself when it fails):
            # the stream's file is not left in tmp/ until the next start.
            if stream is not None and not stream.committing:
                stream.abort()
            raise

    async def _submit(self, sender: str, recipients: Sequence[Recipient], data: bytes,
                      params: dict[str, Any] | None, msg_id: str | None, source: str,
                      stream: SpoolStream | None) -> str:
        msg_id = msg_id or new_message_id()
        recipients = _unique(recipients)
        if self.signer is not None and should_sign(params or {}, [r.route.target for r in recipients]) is None:
            # Every message enters the queue here (sessions, rules' copies, DSNs): the
            # one place outgoing mail is signed, after the rules and before the spool.
            if stream is not None:
                data = await asyncio.to_thread(_in_front_of_stream, self.signer.sign, data, stream, msg_id)
            elif len(data) > SIGN_INLINE:
                data = await asyncio.to_thread(self.signer.sign, data, msg_id)
            else:
                data = self.signer.sign(data, msg_id)
        elif (self.sealer is not None and should_seal(params or {}, [r.route.target for r in recipients]) is None
              and self.sealer.has_our_results(data)):
            # Mail from outside that leaves again (forwarders, groups, lists, gateway
            # rules): an ARC set over what the rules made of it, with our verdicts.
            # dkimpy's RSA is pure Python: a thread, so the loop goes on meanwhile.
            if stream is not None:
                data = await asyncio.to_thread(_in_front_of_stream, self.sealer.seal, data, stream, msg_id)
            else:
                data = await asyncio.to_thread(self.sealer.seal, data, msg_id)
        size = len(data) + (stream.length if stream is not None else 0)
        if stream is not None:
            # The header section is in the head, or at the start of the text.
            hops = count_received(data if b"\r\n\r\n" in data else data + stream.read_start(64 * 1024))
        else:
            hops = count_received(data)
        now = time.time()
        envelope: dict[str, Any] = {
            "sender": sender,
            "created": now,
            "size": size,
            "hops": hops,
            "params": params or {},
            "recipients": [
                {"idx": i, "address": r.address, "route": r.route.to_dict(), "target": r.route.target,
                 "notify": r.notify, "orcpt": r.orcpt, "held": r.route.kind == "held"}
                for i, r in enumerate(recipients)
            ],
        }
        entry = SpoolEntry(msg_id, envelope, data, stream)
        await self.spool.commit(entry)
        metrics.received(source)
        for r in recipients:
            event(log, "received", id=msg_id, sender=f"<{sender}>", rcpt=f"<{r.address}>",
                  size=size, client=(params or {}).get("client"), target=r.route.target)
        if not self._stopping:
            msg = _queued(entry)
            # A streamed message is read back from its spool file when it is delivered.
            self._dispatch(msg, msg.recipients, data if stream is None else None)
        return msg_id

    def _other_nodes_up(self) -> bool:
        """Another node's heartbeat is recent (docs/cluster.md)."""
        now = time.time()
        return any(n.node != self.node and now - n.seen <= 3 * NODE_HEARTBEAT for n in self.db.node_list(now))

    def recovery_pending(self) -> bool:
        """Start-up recovery could not run (the database was unreachable) and has not
        run since: until it has, nothing enters the index and nothing is claimed."""
        return self._recovery_pending.exists()

    def _index(self, entries: list[SpoolEntry]) -> None:
        """Committer thread: one index transaction per spool batch."""
        if self.recovery_pending():
            raise StorageUnavailable("start-up recovery waits for the database")
        lease_until = time.time() + self.settings.queue.lease
        self.db.queue_insert([_queued(e) for e in entries], lease_owner=self.owner, lease_until=lease_until)

    def _unindex(self, msg_ids: list[str]) -> None:
        """Committer thread: the files of an indexed batch could not enter queue/."""
        for msg_id in msg_ids:
            self.db.queue_delete(msg_id)

    # -- scheduling ---------------------------------------------------------------------

    async def _scheduler(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.queue.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self.recovery_pending():
                continue  # start-up recovery has not run yet: nothing is claimed before it
            try:
                if self._unsettled and not await self._retry_unsettled():
                    continue  # the index still takes no writes: no claim either
                if self._forget:  # no delivery wrote to the index since the last ones finished
                    forget, self._forget = self._forget, []
                    try:
                        await asyncio.to_thread(self.db.queue_forget, forget)
                    except BaseException:
                        self._forget[:0] = forget
                        raise
                now = time.time()
                claimed = await asyncio.to_thread(
                    self.db.queue_claim_due, now, self.owner, now + self.settings.queue.lease, 500
                )
            except StorageUnavailable as e:
                if not self._db_down:  # one line when it goes, one when it is back
                    event(log, "claim-error", level=logging.ERROR, error=str(e))
                    self._db_down = True
                continue
            except Exception:
                log.exception("event=claim-error")
                continue
            if self._db_down:
                self._db_down = False
                event(log, "database-reachable", level=logging.WARNING)
            for msg in claimed:
                fresh = [r for r in msg.recipients if (msg.msg_id, r.idx) not in self._in_flight]
                if fresh:
                    self._dispatch(msg, fresh, None)

    async def _retry_unsettled(self) -> bool:
        """Write the outcomes the index refused; a deferral among them (most likely
        caused by the same failure) is not recorded as an attempt: its lease is given
        back, so the recipient is due again at once rather than after ``queue.lease``.
        False while the index still refuses."""
        items, self._unsettled = self._unsettled, []
        release = [(m.msg_id, o.recipient.idx) for m, outs in items for o in outs if o.status == "deferred"]
        final = [(m, kept) for m, outs in items if (kept := [o for o in outs if o.status != "deferred"])]
        try:
            if release:
                await asyncio.to_thread(self.db.queue_release_rows, release, self.owner)
        except Exception:
            self._unsettled[:0] = items
            return False
        if release:
            event(log, "leases-released", count=len(release), reason="index-write-failed")
        if final:
            await self._settle_many(final)  # kept again if the index refuses them
        if self._unsettled:
            return False
        event(log, "index-writable-again", recorded=sum(len(outs) for _m, outs in final))
        return True

    def _dispatch(self, msg: QueuedMessage, recipients: list[QueuedRecipient], data: bytes | None,
                  force: bool = False) -> None:
        """Start delivering; held recipients wait for ETRN/ATRN unless ``force``."""
        if not force:
            for r in recipients:
                if r.held:  # says that it waits: a test (or an admin) need not wait to see nothing happen
                    event(log, "held", id=msg.msg_id, sender=f"<{msg.sender}>", rcpt=f"<{r.address}>", target=r.target)
            recipients = [r for r in recipients if not r.held]
        recipients = [r for r in recipients if (msg.msg_id, r.idx) not in self._in_flight]
        if not recipients:
            return
        self._in_flight.update((msg.msg_id, r.idx) for r in recipients)
        if msg.envelope.get("hops", 0) > self.settings.smtp.max_received_headers:
            reason = (f"554 5.4.6 Mail loop: more than {self.settings.smtp.max_received_headers}"
                      " Received header fields")
            self._spawn(self._settle(msg, [_Outcome(r, "failed", reason, "5.4.6") for r in recipients]))
            return
        by_target: dict[str, list[QueuedRecipient]] = defaultdict(list)
        for r in recipients:
            by_target[r.target].append(r)
        for target, group in by_target.items():
            if target == LOCAL_TARGET:
                assert self._local_queue is not None
                self._local_queue.put_nowait((msg, group, data))
            elif target in ("refuse", "bounce"):
                outcomes = [
                    _Outcome(r, "failed", f"{r.route.get('code', 550)} {r.route.get('status', '5.1.1')} "
                             f"{r.route.get('reason', 'refused')}", r.route.get("status", "5.1.1"))
                    for r in group
                ]
                self._spawn(self._settle(msg, outcomes))
            elif target == "discard":
                self._spawn(self._settle(msg, [_Outcome(r, "delivered", "250 2.0.0 discarded") for r in group]))
            else:
                self._spawn(self._remote(msg, target, group, data))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("event=delivery-task-error error=%r", task.exception(), exc_info=task.exception())

    async def _load(self, msg: QueuedMessage, data: bytes | None) -> bytes:
        if data is not None:
            return data
        _env, body = await asyncio.to_thread(self.spool.read, msg.msg_id)
        return body

    async def _missing(self, msg: QueuedMessage, group: list[QueuedRecipient]) -> None:
        """A claimed entry whose spool file is gone: its worker died between the index
        insert and the rename into queue/ (the message was never acknowledged; its
        lease, and so ``queue.lease``, has passed since), or the file was removed by
        hand.  Nothing can be delivered; retrying would only end in a bounce for mail
        that never was, so the entry goes."""
        try:
            if time.time() - msg.created < self.settings.queue.lease:
                # Young: its committer may be between the index insert and the rename
                # (a held recipient released by ETRN at that moment); look again later.
                await asyncio.to_thread(self.db.queue_release_rows, [(msg.msg_id, r.idx) for r in group], self.owner)
                return
            log.warning("event=spool-missing id=%s (index entry removed)", msg.msg_id)
            await asyncio.to_thread(self.db.queue_delete, msg.msg_id)
        finally:
            for r in group:
                self._in_flight.discard((msg.msg_id, r.idx))

    # -- on-demand release (ETRN, ATRN) -----------------------------------------------------

    async def claim(self, targets: Sequence[str]) -> list[QueuedMessage]:
        """Lease everything waiting in ``targets`` (held or not) to this worker."""
        now = time.time()
        return await asyncio.to_thread(self.db.queue_claim_targets, list(targets), self.owner,
                                       now + self.settings.queue.lease, now)

    async def release_now(self, targets: Sequence[str]) -> int:
        """ETRN: deliver what waits in these queues now, by MX (RFC 1985).  Returns the
        number of messages started; what fails stays queued (and held)."""
        msgs = await self.claim(targets)
        for m in msgs:
            self._dispatch(m, m.recipients, None, force=True)
        return len(msgs)

    async def load(self, msg: QueuedMessage) -> bytes:
        return await self._load(msg, None)

    async def record(self, msg: QueuedMessage, results: Sequence[tuple[QueuedRecipient, int, str, str]],
                     remote: str) -> None:
        """Outcomes of a delivery made elsewhere (the turned ATRN connection):
        (recipient, code, enhanced status, reply text) each; 2xx delivered, 5xx bounced,
        anything else deferred (and still held)."""
        outcomes = []
        for r, code, enhanced, text in results:
            reply = f"{code} {enhanced} {text}".replace("  ", " ")
            status = "delivered" if 200 <= code < 300 else ("failed" if 500 <= code < 600 else "deferred")
            outcomes.append(_Outcome(r, status, reply, enhanced, remote))
        await self._settle(msg, outcomes)

    async def unclaim(self, msgs: Sequence[QueuedMessage]) -> None:
        """Give back the leases of exactly these recipients, without an attempt (the
        turned connection ended first); other recipients of the same messages that this
        worker is delivering elsewhere keep theirs."""
        rows = [(m.msg_id, r.idx) for m in msgs for r in m.recipients]
        await asyncio.to_thread(self.db.queue_release_rows, rows, self.owner)

    # -- local delivery -----------------------------------------------------------------

    async def _local_agent(self) -> None:
        assert self._local_queue is not None
        q = self._local_queue
        stopping = False
        while not stopping:
            first = await q.get()
            if first is None:
                return
            batch = [first]
            count = len(first[1])
            size = first[0].size
            # Bounded in recipients and in octets: the messages of a batch are in memory
            # together, and big ones (streamed in at intake) are taken one at a time.
            while count < LOCAL_BATCH and size < LOCAL_BATCH_BYTES and not q.empty():
                item = q.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                count += len(item[1])
                size += item[0].size
            try:
                await self._deliver_local(batch)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # nothing lost: the work is deferred and retried
                if isinstance(e, StorageUnavailable):  # the database went away: one line, no trace
                    event(log, "local-delivery-error", level=logging.ERROR, error=str(e))
                else:
                    log.exception("event=local-delivery-error error=%r", e)
                for msg, group, _ in batch:
                    try:
                        await self._settle(msg, [_Outcome(r, "deferred", f"451 4.3.0 local delivery failed: {e}")
                                                 for r in group])
                    except StorageUnavailable as e2:  # the leases expire (or are given back), then a retry
                        event(log, "settle-error", level=logging.ERROR, id=msg.msg_id, error=str(e2))
                        for r in group:
                            self._in_flight.discard((msg.msg_id, r.idx))
                    except Exception:
                        log.exception("event=settle-error id=%s", msg.msg_id)
                        for r in group:
                            self._in_flight.discard((msg.msg_id, r.idx))

    async def _deliver_local(self, batch: list[tuple[QueuedMessage, list[QueuedRecipient], bytes | None]]) -> None:
        loaded: list[tuple[int, QueuedMessage, QueuedRecipient, bytes]] = []
        for n, (msg, group, data) in enumerate(batch):
            try:
                body = await self._load(msg, data)
            except FileNotFoundError:
                await self._missing(msg, group)
                continue
            loaded.extend((n, msg, r, body) for r in group)
        # One thread hop: the accounts removed since their messages were accepted (no
        # script of theirs runs, nothing is stored for them: ``_plans``), each other
        # account's Sieve script (after the server-wide rules, which ran at DATA), then
        # the batch stored and the quotas it filled looked at.
        slots, rejected, sends, results, warnings = await asyncio.to_thread(self._plan_and_store, batch, loaded)
        # Redirected copies and vacation replies are in the spool before the original
        # is recorded as delivered: a crash between the two sends them again, never loses them.
        for msg, sender, targets, data in sends:
            await self._send_filtered(msg, sender, targets, data)
        per_rcpt: dict[tuple[int, int], list[str | OSError | None]] = defaultdict(list)
        order: list[tuple[int, QueuedRecipient]] = []
        for (n, r, _d), res in zip(slots, results):
            if (n, r.idx) not in per_rcpt:
                order.append((n, r))
            per_rcpt[(n, r.idx)].append(res)
        per_msg: dict[int, list[_Outcome]] = defaultdict(list)
        for n, r in order:
            outs = per_rcpt[(n, r.idx)]
            quota = next((o for o in outs if isinstance(o, OverQuota)), None)
            error = next((o for o in outs if isinstance(o, OSError)), None)
            if isinstance(error, AccountGone):
                # Accepted for an account that was removed since (perhaps made again
                # under its name: another customer's now): bounced, never stored there.
                account = f"{r.route.get('account') or r.route['name']}@{r.route['domain']}"
                event(log, "local-recipient-gone", logging.WARNING, id=batch[n][0].msg_id, rcpt=f"<{r.address}>",
                      account=account)
                per_msg[n].append(_Outcome(r, "failed", f"550 5.1.1 <{r.address}>: the account {account} it was"
                                           " accepted for was removed", "5.1.1"))
            elif quota is not None:
                # RFC 3463 X.2.2 mailbox full: retried until the queue's lifetime ends,
                # then bounced as 5.2.2 (see _plan).
                per_msg[n].append(_Outcome(r, "deferred", "452 4.2.2 mailbox full (over quota)", "4.2.2"))
            elif error is not None:
                per_msg[n].append(_Outcome(r, "deferred", f"452 4.3.1 cannot store the message: {error.strerror or error}"))
            elif (n, r.idx) in rejected:
                # RFC 5429 §2.1: refused after acceptance: a DSN to the sender.
                reason = " ".join(rejected[(n, r.idx)].split())[:500]
                per_msg[n].append(_Outcome(r, "failed", f"550 5.7.1 {reason}", "5.7.1"))
            elif all(o is None for o in outs):
                per_msg[n].append(_Outcome(r, "delivered", "250 2.0.0 not stored: the recipient's filter took it",
                                           remote_mta=""))
            else:
                names = ",".join(o for o in outs if isinstance(o, str))
                per_msg[n].append(_Outcome(r, "delivered", f"250 2.0.0 stored as {names}", remote_mta=""))
        await self._settle_many([(batch[n][0], outs) for n, outs in per_msg.items()])
        for domain, account, percent, text in warnings:
            await self._warn_quota(domain, account, percent, text)

    def _plan_and_store(self, batch: list[tuple[QueuedMessage, list[QueuedRecipient], bytes | None]],
                        loaded: list[tuple[int, QueuedMessage, QueuedRecipient, bytes]]) -> tuple[
            list[tuple[int, QueuedRecipient, Delivery | None]], dict[tuple[int, int], str],
            list[tuple[QueuedMessage, str, list[str], bytes]], list[str | OSError | None],
            list[tuple[str, str, int, bytes]]]:
        """Worker thread: the Sieve plans of a local batch, the deliveries they make
        (stored), and what the loop does next: (slots, rejected, sends, results per
        slot, quota warnings)."""
        gone, plans = self._plans(loaded)
        slots: list[tuple[int, QueuedRecipient, Delivery | None]] = []  # None: nothing to store
        rejected: dict[tuple[int, int], str] = {}
        sends: list[tuple[QueuedMessage, str, list[str], bytes]] = []  # (msg, sender, to, data)
        for (n, msg, r, body), plan in zip(loaded, plans):
            # RFC 5321 §4.4: the final delivery adds Return-Path.
            return_path = f"Return-Path: <{msg.sender}>\r\n"
            route = r.route
            account = route.get("account") or route["name"]
            top = (return_path + _delivery_fields(r.address, f"{account}@{route['domain']}")).encode()
            if (n, r.idx) in gone:
                slots.append((n, r, None))
                continue
            boxes = [(route.get("mailbox") or "INBOX", ())] if plan is None else plan.deliveries
            if plan is not None:
                if plan.data is not None:  # edited by the script (editheader)
                    body = plan.data
                if plan.reject:
                    rejected[(n, r.idx)] = plan.reject
                if plan.redirects:
                    sends.append((msg, msg.sender, plan.redirects, plan.redirect_header + body))
                if plan.vacation is not None:
                    sends.append((msg, "", [plan.vacation[0]], plan.vacation[1]))
            if not boxes:  # discarded, rejected or redirected away: nothing stored
                slots.append((n, r, None))
                continue
            for k, (mailbox, flags) in enumerate(boxes):
                # Named by queue id and recipient: a delivery made again after a crash
                # (stored, not yet recorded) is recognised instead of stored twice.
                key = f"{msg.msg_id}_{r.idx}" + (f"_{k}" if k else "")
                slots.append((n, r, Delivery(route["domain"], account, (top, body), mailbox, key=key,
                                             date=msg.created, retry=batch[n][2] is None, flags=flags,
                                             owner=route.get("created", 0.0))))
        items = [d for _n, _r, d in slots if d is not None]
        stored_list, warnings = self._store(items)
        stored = iter(stored_list)
        results: list[str | OSError | None] = [
            next(stored) if d is not None
            else AccountGone("the account it was accepted for was removed") if (n, r.idx) in gone else None
            for n, r, d in slots]
        return slots, rejected, sends, results, warnings

    def _store(self, items: list[Delivery]) -> tuple[list[str | OSError], list[tuple[str, str, int, bytes]]]:
        """Worker thread: store a local batch, then the quota warnings its accounts are
        due (an unreachable database delays a warning to the next delivery)."""
        results = self.mailstore.deliver_batch(items)
        filled = {(d.domain, d.account) for d, res in zip(items, results) if isinstance(res, str)}
        if not filled:
            return results, []
        try:
            return results, self._quota_warnings(filled)
        except StorageUnavailable as e:  # delivered: the warning waits for the next one
            event(log, "quota-warning-error", level=logging.WARNING, error=str(e))
            return results, []

    def _quota_warnings(self, accounts: set[tuple[str, str]]) -> list[tuple[str, str, int, bytes]]:
        """The accounts just delivered to that are at ``QUOTA_WARNING`` percent or more
        and were not warned in the last day (claimed in the database, so that one
        worker warns, once), with their warning.  A warning that would not fit in the
        account's quota is not queued at all (it would only wait in the queue, refused
        452 4.2.2, until it expired) and not claimed: the next delivery looks again."""
        out: list[tuple[str, str, int, bytes]] = []
        now = time.time()
        for domain, account in sorted(accounts):
            quota = self.mailstore.quota(domain, account)
            if not quota.limited:
                continue
            percent = quota.percent()
            if percent < QUOTA_WARNING:
                continue
            text = self._warning_text(domain, account, percent)
            if not quota.room_for(len(text) + WARNING_FIELDS):
                event(log, "quota-warning-skipped", level=logging.INFO, account=f"{account}@{domain}",
                      percent=percent, reason="no-room")
                continue
            if self.db.vacation_claim(domain, account, "quota-warning", "", now, now + 86400):
                out.append((domain, account, percent, text))
        return out

    def _warning_text(self, domain: str, account: str, percent: int) -> bytes:
        address = f"{account}@{domain}"
        host = self.settings.server.hostname
        return (f"From: Mail System <postmaster@{host}>\r\nTo: <{address}>\r\n"
                f"Subject: Your mailbox is {percent}% full\r\n"
                f"Date: {email.utils.formatdate(time.time())}\r\n"
                f"Message-ID: {email.utils.make_msgid(domain=host)}\r\nAuto-Submitted: auto-generated\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                f"Your mailboxes use {percent}% of the space you have. When they are full, new mail\r\n"
                "is refused or returned to its senders. Please delete or archive some messages.\r\n").encode()

    async def _warn_quota(self, domain: str, account: str, percent: int, text: bytes) -> None:
        """Tell the user their mailboxes are nearly full (issue 21), from the postmaster."""
        address = f"{account}@{domain}"
        res = self.router.resolve(address, Context(kind="mail", internal=True))
        if res.route.kind != "local":
            return
        await self.submit("", [Recipient(address, r) for r in self.router.expand(res.route)], text,
                          {"client": "local"})
        event(log, "quota-warning", account=address, percent=percent)

    def _plans(self, loaded: list[tuple[int, QueuedMessage, QueuedRecipient, bytes]]
               ) -> tuple[set[tuple[int, int]], list[Filtered | None]]:
        """Worker thread: the (batch index, recipient) pairs whose account is no longer
        the one the message was accepted for (the route's ``created`` stamp; read from
        the database, not the cache), and the Sieve plans of the others (None for those)."""
        now: dict[tuple[str, str], float | None] = {}
        gone: set[tuple[int, int]] = set()
        for n, _msg, r, _body in loaded:
            stamp = r.route.get("created")
            if not stamp:  # queued by a version that did not record it
                continue
            who = (r.route["domain"], r.route.get("account") or r.route["name"])
            if who not in now:
                obj = self.db.get_object(*who, fresh=True)
                now[who] = obj.created if obj is not None and obj.kind == "account" else None
            if now[who] != stamp:
                gone.add((n, r.idx))
        plans = iter(self._sieve_plans([x for x in loaded if (x[0], x[2].idx) not in gone]))
        return gone, [None if (x[0], x[2].idx) in gone else next(plans) for x in loaded]

    def _sieve_plans(self, loaded: list[tuple[int, QueuedMessage, QueuedRecipient, bytes]]) -> list[Filtered | None]:
        out: list[Filtered | None] = []
        for _n, msg, r, body in loaded:
            try:
                out.append(self.sieve.plan(msg, r, body))
            except Exception as e:  # noqa: BLE001 - a filter never loses mail: plain delivery
                event(log, "sieve-error", logging.ERROR, id=msg.msg_id, rcpt=f"<{r.address}>", error=repr(e),
                      action="kept in INBOX")
                out.append(None)
        return out

    async def _send_filtered(self, msg: QueuedMessage, sender: str, targets: list[str], data: bytes) -> None:
        """Queue a Sieve redirect (the original sender; SRS for a remote hop, as account
        forwarding does) or a vacation reply (the null sender, RFC 5230 §5.1)."""
        internal = Context(kind="mail", internal=True)
        recipients: list[Recipient] = []
        for address in targets:
            res = self.router.resolve(address, internal)
            if res.route.kind == "refuse":
                event(log, "sieve-send-refused", logging.WARNING, id=msg.msg_id, rcpt=f"<{address}>",
                      reason=res.route.reason)
                continue
            routes = self.router.expand(res.route) if res.route.kind == "local" else [res.route]
            if sender:
                routes = [dataclasses.replace(x, forwarded=True) if x.kind == "remote" else x for x in routes]
            recipients += [Recipient(address, x) for x in routes]
        if not recipients:
            return
        new_id = await self.submit(sender, recipients, data, {"client": "local", "sieve_for": msg.msg_id},
                                   source="sieve")
        event(log, "sieve-sent", id=msg.msg_id, new_id=new_id, kind="redirect" if sender else "vacation",
              rcpt=",".join(f"<{a}>" for a in targets))

    # -- remote delivery ----------------------------------------------------------------

    def _destination(self, recipient: QueuedRecipient) -> remote.Destination:
        route = recipient.route
        host = route.get("host", "")
        port = route.get("port")
        if not host:
            return remote.Destination.mx(route["domain"])
        if _is_ip(host):
            return remote.Destination.ip(host, port)
        return remote.Destination.host(host, port)

    async def _remote(self, msg: QueuedMessage, target: str, group: list[QueuedRecipient], data: bytes | None) -> None:
        assert self._global_limit is not None
        journaled: set[int] = set()  # recipients written to the journal
        limit = self._host_limits.setdefault(target, asyncio.Semaphore(self.settings.delivery.max_per_host))
        async with limit, self._global_limit:
            try:
                body = await self._load(msg, data)
            except FileNotFoundError:
                await self._missing(msg, group)
                return
            try:
                params = msg.envelope.get("params", {})
                mail_options = _mail_options(params, len(body))
                rcpts = [(r.address if not r.route.get("address") else r.route["address"],
                          _rcpt_options(r)) for r in group]
                auth = None
                if group[0].route.get("auth") == "gateway" and self.credentials is not None:
                    # A sender's own upstream account only when it logged in as itself:
                    # MAIL FROM alone proves nothing.
                    who = str(msg.envelope.get("params", {}).get("auth") or "")
                    auth = await asyncio.to_thread(self.credentials, who)
                sender = msg.sender
                if group[0].route.get("forwarded") and self.srs is not None:
                    sender = self.srs.forward(sender)  # SPF at the destination checks our domain
                def accepted(positions: list[int]) -> None:
                    rows = [(msg.msg_id, group[i].idx) for i in positions]
                    if self.journal.record(rows):
                        journaled.update(idx for _m, idx in rows)

                destination = self._destination(group[0])
                # delivery.tls_policy, MTA-STS (RFC 8461) or opportunistic TLS.
                tls = await self.tls_policies.policy_for(
                    destination, self.tlsrpt.recorder(destination.name) if self.tlsrpt is not None else None)
                results = await remote.deliver(
                    settings=self.settings, resolver=self.resolver, is_self=self.is_self,
                    destination=destination, sender=sender, recipients=rcpts,
                    data=body, mail_options=mail_options, auth=auth, on_accepted=accepted, tls=tls,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("event=remote-delivery-error id=%s target=%s", msg.msg_id, target)
                outcomes = [_Outcome(r, "deferred", f"451 4.3.0 delivery failed: {e}") for r in group]
            else:
                outcomes = []
                for r, res in zip(group, results):
                    status = "delivered" if res.ok else ("failed" if res.permanent else "deferred")
                    outcomes.append(_Outcome(r, status, res.smtp_reply, res.enhanced, res.remote_host,
                                             journaled=r.idx in journaled))
        await self._settle(msg, outcomes)

    # -- outcomes -----------------------------------------------------------------------

    async def _settle(self, msg: QueuedMessage, outcomes: list[_Outcome]) -> None:
        await self._settle_many([(msg, outcomes)])

    async def _settle_many(self, items: list[tuple[QueuedMessage, list[_Outcome]]]) -> None:
        """Record outcomes of several messages in one index transaction (a local batch
        costs one write, not one per message), remove finished spool files, send DSNs."""
        try:
            plans = [(msg, *self._plan(msg, outcomes)) for msg, outcomes in items]
            originals: dict[str, bytes] = {}
            for msg, _updates, bounces, successes in plans:
                if (bounces or successes) and msg.sender:
                    try:  # read before the file may go away below
                        originals[msg.msg_id] = await self._load(msg, None)
                    except OSError:
                        originals[msg.msg_id] = b""
            all_updates = [u for _msg, updates, _b, _s in plans for u in updates]
            forget, self._forget = self._forget, []
            try:
                # One thread hop: the index, then the files of what is finished.
                finished = await asyncio.to_thread(self._record, all_updates, forget)
            except asyncio.CancelledError:
                self._forget[:0] = forget
                raise
            except Exception as e:
                self._forget[:0] = forget
                self._unsettled.extend(items)
                event(log, "index-write-failed", level=logging.ERROR, count=len(all_updates), error=repr(e),
                      retry="every queue.poll_interval")
                return
            self.journal.settled(sum(1 for _m, outs in items for o in outs if o.journaled))  # in the index now
            if finished:
                # File first (removed by _record), entry second (forgotten with the next
                # index write).
                self._forget.extend(finished)
            for msg, _updates, bounces, successes in plans:
                if msg.msg_id in originals:
                    for statuses in (bounces, successes):
                        if statuses:
                            await self._send_dsn(msg, statuses, originals[msg.msg_id])
        finally:
            for msg, outcomes in items:
                for o in outcomes:
                    self._in_flight.discard((msg.msg_id, o.recipient.idx))

    def _record(self, updates: list[RecipientUpdate], forget: list[str]) -> list[str]:
        """Worker thread: write outcomes to the index, then remove the spool files of
        the messages that are finished; returns the ids whose file is gone (their
        entries may be forgotten).  A file that cannot be removed keeps its entry,
        done, and start-up removes both."""
        removed: list[str] = []
        for msg_id in self.db.queue_update(updates, self.owner, forget):
            try:
                self.spool.remove(msg_id)
                removed.append(msg_id)
            except OSError as e:
                event(log, "spool-remove-failed", level=logging.ERROR, id=msg_id, error=repr(e))
        return removed

    def _plan(self, msg: QueuedMessage, outcomes: list[_Outcome]
              ) -> tuple[list[RecipientUpdate], list[dsn.RecipientStatus], list[dsn.RecipientStatus]]:
        """The index updates, bounces and success reports for one message's outcomes."""
        now = time.time()
        expire_at = msg.created + self.settings.queue.expire_after
        intervals = self.settings.queue.retry_intervals
        updates: list[RecipientUpdate] = []
        bounces: list[dsn.RecipientStatus] = []
        successes: list[dsn.RecipientStatus] = []
        for o in outcomes:
            r = o.recipient
            fields: dict[str, Any] = dict(id=msg.msg_id, sender=f"<{msg.sender}>", rcpt=f"<{r.address}>",
                                          relay=o.remote_mta or r.target, reply=o.reply, attempts=r.attempts + 1)
            if o.status == "delivered":
                updates.append(RecipientUpdate(msg.msg_id, r.idx, "delivered", o.reply))
                event(log, "delivered", **fields)
                metrics.outcome("delivered", r.target)
                if dsn.should_notify(r.notify, "delivered") and msg.sender:
                    successes.append(self._status(r, o, "delivered", now))
            elif o.status == "failed":
                updates.append(RecipientUpdate(msg.msg_id, r.idx, "failed", o.reply))
                event(log, "bounced", logging.WARNING, **fields)
                metrics.outcome("failed", r.target)
                if dsn.should_notify(r.notify, "failed"):
                    bounces.append(self._status(r, o, "failed", now))
            elif now >= expire_at:
                reply = f"{o.reply} (delivery time expired: {self.settings.queue.expire_after}s in the queue)"
                updates.append(RecipientUpdate(msg.msg_id, r.idx, "failed", reply))
                event(log, "expired", logging.WARNING, **fields)
                metrics.outcome("expired", r.target)
                if dsn.should_notify(r.notify, "failed"):
                    # Still full at the end: the mailbox-full status made permanent.
                    status = "5.2.2" if o.enhanced == "4.2.2" else "4.4.7"
                    o = _Outcome(r, "failed", reply, status, o.remote_mta)
                    bounces.append(self._status(r, o, "failed", now))
            else:
                interval = intervals[min(r.attempts, len(intervals) - 1)]
                nxt = min(now + interval, expire_at)
                updates.append(RecipientUpdate(msg.msg_id, r.idx, "queued", o.reply, next_attempt=nxt))
                event(log, "deferred", **fields, retry_in=int(nxt - now))
                metrics.outcome("deferred", r.target)
        return updates, bounces, successes

    def _status(self, r: QueuedRecipient, o: _Outcome, action: str, now: float) -> dsn.RecipientStatus:
        enhanced = o.enhanced or _enhanced_of(o.reply) or ("2.0.0" if action == "delivered" else "5.0.0")
        return dsn.RecipientStatus(
            address=r.route.get("address") or r.address, action=action, status=enhanced,
            diagnostic=o.reply, remote_mta=o.remote_mta.split(" ")[0] if o.remote_mta else "",
            orcpt=r.orcpt, last_attempt=now,
        )

    async def _send_dsn(self, msg: QueuedMessage, statuses: list[dsn.RecipientStatus], original: bytes) -> None:
        params = msg.envelope.get("params", {})
        try:
            report = dsn.build_dsn(
                reporting_mta=self.settings.server.hostname, sender=msg.sender, recipients=statuses,
                original=original, ret=params.get("ret"), envid=params.get("envid"), arrival=msg.created,
                received_from_mta=params.get("helo", ""),
            )
        except ValueError as e:
            event(log, "dsn-undeliverable", level=logging.WARNING, id=msg.msg_id, sender=f"<{msg.sender}>",
                  reason=str(e))
            return
        res = self.router.resolve(msg.sender, Context(kind="mail", internal=True))
        if res.route.kind == "refuse":
            event(log, "dsn-undeliverable", level=logging.WARNING, id=msg.msg_id, sender=f"<{msg.sender}>",
                  reason=res.route.reason)
            return
        routes = self.router.expand(res.route) if res.route.kind == "local" else [res.route]
        recipients = [Recipient(msg.sender, r) for r in routes]
        dsn_id = await self.submit("", recipients, report, {"client": "local", "dsn_for": msg.msg_id},
                                   source="dsn")
        event(log, "dsn-sent", id=msg.msg_id, dsn_id=dsn_id, sender=f"<{msg.sender}>", count=len(statuses))


    def _made_for(self, address: str) -> list[Recipient]:
        """The recipients of a message we make to ``address`` (a TLS report), routed as a DSN is."""
        res = self.router.resolve(address, Context(kind="mail", internal=True))
        if res.route.kind == "refuse":
            return []
        routes = self.router.expand(res.route) if res.route.kind == "local" else [res.route]
        return [Recipient(address, r) for r in routes]


def cluster_node(settings: Settings) -> str:
    """This node's name on a spool that several nodes may share (``server.hostname``, on
    the PostgreSQL engine, whose database several machines share: docs/cluster.md); ""
    with SQLite, whose database, and so spool, belong to one machine."""
    return settings.server.hostname if "://" in settings.storage.database else ""


def release_dead_worker(settings: Settings, db: Database, owner: str, pid: int) -> tuple[int, int]:
    """A worker died (the supervisor reaped ``pid``, whose lease owner was ``owner``):
    first record in the index what its journal says the next hops accepted, then give
    its leases back so that the other workers finish its messages now rather than after
    ``queue.lease``.  In that order: a lease given back first lets another worker claim
    and send again a message whose next hop had already taken it.  Returns (recipients
    replayed, recipients released)."""
    root = settings.path(settings.storage.spool)
    node = cluster_node(settings)
    replayed = _replay(db, Spool(root, node=node), Journal(node_dir(root, node) / "journal").of(pid))
    released = db.queue_release_leases_of(owner)
    return replayed, released


def release_node(settings: Settings, db: Database, node: str, now: float) -> tuple[int, int, int]:
    """A node that is gone for good (``waypost cluster release``, docs/cluster.md): first
    record in the index what its journals say its next hops accepted, then give back
    every lease its workers hold (so that the other nodes finish its messages now rather
    than after ``queue.lease``), then forget its heartbeats.  In that order, for the
    reason given in ``release_dead_worker``.  On a spool of one machine (SQLite) only
    the journals of processes that are gone are read.  Returns (recipients replayed,
    recipients released, workers forgotten)."""
    root = settings.path(settings.storage.spool)
    shared = bool(cluster_node(settings))
    directory = node_dir(root, node if shared else "") / "journal"
    journals = Journal(directory).orphaned(everything=shared) if directory.is_dir() else []
    replayed = _replay(db, Spool(root, node=node if shared else ""), journals) if journals else 0
    released = db.queue_release_leases_of(node)
    workers = [w.worker for w in db.node_list(now) if w.node == node]
    for worker in workers:
        db.node_forget(worker)
    return replayed, released, len(workers)


def _replay(db: Database, spool: Spool, journals: list[tuple[Path, set[tuple[str, int]]]]) -> int:
    """Write journaled deliveries into the index, remove what that finishes, then the
    journal files (only once the index holds their rows)."""
    total = 0
    for path, rows in journals:
        if rows:
            updates = [RecipientUpdate(m, i, "delivered", "250 2.0.0 accepted by the next hop before a restart")
                       for m, i in sorted(rows)]
            finished = db.queue_update(updates, "")
            spool.discard(finished)  # file first, entry second (see recover)
            db.queue_forget(finished)
            total += len(rows)
        try:
            path.unlink()
        except OSError:
            pass
    if total:
        event(log, "journal-replayed", recipients=total)
    return total


def _in_front_of_stream(add: Callable[[bytes, str], bytes], head: bytes, stream: SpoolStream, msg_id: str) -> bytes:
    """The head of a streamed message with what ``add`` (DKIM signing, ARC sealing: both
    put fields in front of the message) puts in front; ``add`` reads the whole message,
    so the text is read back from the stream's file for it."""
    whole = head + stream.read_text()
    done = add(whole, msg_id)
    return done[: len(done) - len(whole)] + head


def _delivery_fields(original: str, final: str) -> str:
    """X-Original-To (the recipient as the client gave it) and Delivered-To (the
    account it was stored for), as Postfix's local delivery adds them: one account that
    collects a whole domain (``<*@custb.dom> = custb.dom@company.dom``) keeps, in each
    message, who it was for, for a fetcher to sort (fetchmail's ``envelope`` option)."""
    def clean(address: str) -> str:  # an address never spans lines; be sure of it
        return "".join(ch for ch in address if ch >= " " and ch != "\x7f")
    return f"X-Original-To: {clean(original)}\r\nDelivered-To: {clean(final)}\r\n"


def _unique(recipients: Sequence[Recipient]) -> list[Recipient]:
    """One copy per final mailbox or remote address per message, as given first (an
    account reached directly, through an alias and through a group gets one copy)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for r in recipients:
        route = r.route
        if route.kind == "local":
            key: tuple[str, ...] = ("local", route.domain, route.account or route.name, route.mailbox)
        else:  # the same address at two destinations (a shared group's peer copies) is two
            key = (route.kind, route.address.lower(), route.target)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _queued(entry: SpoolEntry) -> QueuedMessage:
    env = entry.envelope
    msg = QueuedMessage(entry.msg_id, env["sender"], env["created"], env["size"],
                        {k: v for k, v in env.items() if k not in ("recipients", "sender", "created", "size")})
    for r in env["recipients"]:
        msg.recipients.append(QueuedRecipient(
            entry.msg_id, r["idx"], r["address"], r["target"], r["route"], "queued", 0, 0.0, "",
            r.get("notify", ""), r.get("orcpt", ""), bool(r.get("held", False)),
        ))
    return msg


def _mail_options(params: dict[str, Any], size: int) -> list[str]:
    opts = [f"SIZE={size}"]
    if params.get("body"):
        opts.append(f"BODY={params['body']}")
    if params.get("smtputf8"):
        opts.append("SMTPUTF8")
    if params.get("ret"):
        opts.append(f"RET={params['ret']}")
    if params.get("envid"):
        opts.append(f"ENVID={params['envid']}")
    return opts


def _rcpt_options(r: QueuedRecipient) -> list[str]:
    opts = []
    if r.notify:
        opts.append(f"NOTIFY={r.notify}")
    if r.orcpt:
        opts.append(f"ORCPT={r.orcpt}")
    return opts


_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")


def _enhanced_of(reply: str) -> str:
    m = _ENHANCED.match(reply)
    return m.group(1) if m else ""


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False
