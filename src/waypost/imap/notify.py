"""NOTIFY (RFC 5465): what one session has asked to hear of, and the task that tells
it, unasked, as changes happen in any worker.

Theory of operation.  ``NOTIFY SET`` replaces the session's ``Watcher``.  The watcher
keeps a snapshot of what the client has been told: for each watched mailbox of the
user's own its (MESSAGES, UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ), the names of the
user's mailboxes (by id, which is never reused, so a RENAME is told from a DELETE
and a CREATE) and the subscriptions.  It wakes on the change channel (the topic of
each watched mailbox and the account's topic, which CREATE, DELETE, RENAME and
(UN)SUBSCRIBE announce) and every ``imap.idle_check_interval`` seconds, as IDLE, in
case a datagram was lost or a program wrote into a Maildir itself, compares, and sends
what differs:

- MessageNew / MessageExpunge in a mailbox that is not the selected one: ``STATUS
  (MESSAGES UIDNEXT UIDVALIDITY)``, with HIGHESTMODSEQ when FlagChange is asked
  too (RFC 5465 §5.2, §5.3); FlagChange alone: ``STATUS (UIDVALIDITY HIGHESTMODSEQ)``.
- MailboxName: ``LIST () "/" name`` for a new mailbox, ``LIST (\\NonExistent)`` for
  one deleted, ``LIST () "/" new ("OLDNAME" (old))`` for a rename (§5.4).
- SubscriptionChange: ``LIST (\\Subscribed) "/" name``, or ``LIST () ...`` when
  unsubscribed (§5.5).
- Events of the SELECTED group: the selected mailbox's EXISTS, EXPUNGE and FETCH
  FLAGS are sent as soon as they happen rather than after the next command.

Nothing is sent while a command is running (IDLE excepted: a client in IDLE takes
untagged responses at any time); the watcher waits for the command to end, so
message numbers never move under a command (RFC 5465 §3: no EXPUNGE in the middle of
FETCH, STORE or SEARCH).  Only the user's own mailboxes are watched.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..db import MailboxRecord, StorageUnavailable
from ..log import event
from ..mailstore.maildir import SEPARATOR, account_topic, topic
from .proto import ListData, NotifyGroup, Response, StatusData

if TYPE_CHECKING:
    from .server import Connection

__all__ = ["SUPPORTED", "Watcher"]

log = logging.getLogger("waypost.imap")

#: The events we report (RFC 5465 §5.9: BADEVENT lists them).
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})


def problem(groups: tuple[NotifyGroup, ...]) -> tuple[str, str] | None:
    """(status, text) refusing a NOTIFY SET, or None.  RFC 5465 §5: an event we do not
    offer is ``NO [BADEVENT ...]``; for the selected mailbox (whose message numbers
    they move), MessageNew and MessageExpunge go together and FlagChange needs both.
    Other mailboxes are told of by STATUS, where any one of them makes sense alone
    (Dovecot checks the same; imaptest's notify group asks for each alone)."""
    for g in groups:
        for e in g.events:
            if e not in SUPPORTED:
                return "BADEVENT", f"Event {e} is not supported"
        events = set(g.events)
        selected = g.filter in ("SELECTED", "SELECTED-DELAYED")
        if selected and ("MessageNew" in events) != ("MessageExpunge" in events):
            return "BAD", "MessageNew and MessageExpunge must be given together for the selected mailbox"
        if selected and "FlagChange" in events and "MessageNew" not in events:
            return "BAD", "FlagChange needs MessageNew and MessageExpunge for the selected mailbox"
        if g.fetch_atts is not None and g.filter not in ("SELECTED", "SELECTED-DELAYED"):
            return "BAD", "A fetch-att list is for the selected mailbox only"
    return None


@dataclass(slots=True)
class Watcher:
    conn: Connection
    groups: tuple[NotifyGroup, ...]
    status: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    topics: set[str] = field(default_factory=set)

    # -- what is watched ---------------------------------------------------------------

    @property
    def selected_events(self) -> frozenset[str]:
        return frozenset(e for g in self.groups if g.filter.startswith("SELECTED") for e in g.events)

    def _matches(self, g: NotifyGroup, name: str) -> bool:
        if g.filter == "PERSONAL":
            return True
        if g.filter == "INBOXES":
            return name == "INBOX"
        if g.filter == "SUBSCRIBED":
            return name in self.subscribed
        wanted = [self._decode(m) for m in g.mailboxes]
        if g.filter == "MAILBOXES":
            return name in wanted
        if g.filter == "SUBTREE":
            return any(name == w or name.startswith(w + SEPARATOR) for w in wanted)
        return False

    def _decode(self, wire: str) -> str:
        from .commands.authenticated import decode_name, utf8_names

        try:
            return decode_name(wire, utf8_names(self.conn)).rstrip(SEPARATOR)
        except ValueError:
            return wire

    def events_for(self, box: MailboxRecord) -> frozenset[str]:
        """The events asked for this mailbox: the SELECTED groups' for the selected
        mailbox (when there is one), else the first other group that names it
        (RFC 5465 §6: the first matching filter applies)."""
        sel = self.conn.selected
        if sel is not None and sel.box.id == box.id and any(g.filter.startswith("SELECTED") for g in self.groups):
            return frozenset()  # reported as the selected mailbox's updates
        for g in self.groups:
            if not g.filter.startswith("SELECTED") and self._matches(g, box.name):
                return frozenset(g.events)
        return frozenset()

    def _wants_anywhere(self, event: str) -> bool:
        return any(event in g.events for g in self.groups if not g.filter.startswith("SELECTED"))

    # -- snapshots (synchronous: run in a thread) -------------------------------------

    def _boxes(self) -> list[MailboxRecord]:
        access = self.conn.access
        assert access is not None
        return self.conn.store.mailboxes(access.domain, access.account)

    def _state(self, box: MailboxRecord) -> tuple[int, int, int, int] | None:
        db = self.conn.store.db
        assert db is not None
        self.conn.store.sync(box, wait=False)
        st = db.mailbox_state(box.id)
        if st is None:
            return None
        uidnext, highestmodseq, count = st
        return count, uidnext, box.uidvalidity, highestmodseq

    def snapshot(self) -> list[StatusData]:
        """Remember the present state; the initial STATUS responses (``NOTIFY SET
        STATUS``, RFC 5465 §3) of the mailboxes with message events."""
        access = self.conn.access
        assert access is not None
        self.subscribed = set(self.conn.store.subscriptions(access.domain, access.account))
        boxes = self._boxes()
        self.names = {b.id: b.name for b in boxes}
        out: list[StatusData] = []
        self.status = {}
        for b in boxes:
            events = self.events_for(b) & MESSAGE_EVENTS
            if not events:
                continue
            st = self._state(b)
            if st is None:
                continue
            self.status[b.id] = st
            out.append(self._status_response(b, st, events))
        return out

    def _status_response(self, box: MailboxRecord, st: tuple[int, int, int, int],
                         events: frozenset[str]) -> StatusData:
        from .commands.authenticated import encode_name, utf8_names

        count, uidnext, uidvalidity, highestmodseq = st
        items: list[tuple[str, int | str]] = []
        if events & {"MessageNew", "MessageExpunge"}:
            items += [("MESSAGES", count), ("UIDNEXT", uidnext)]
        items.append(("UIDVALIDITY", uidvalidity))
        if "FlagChange" in events:
            items.append(("HIGHESTMODSEQ", highestmodseq))
        return StatusData(encode_name(box.name, utf8_names(self.conn)), tuple(items))

    def changes(self) -> list[Response]:
        """What changed since the last look, as responses; the snapshot moves on."""
        from .commands.authenticated import encode_name, utf8_names

        access = self.conn.access
        assert access is not None
        utf8 = utf8_names(self.conn)
        out: list[Response] = []
        boxes = self._boxes()
        now = {b.id: b.name for b in boxes}
        if self._wants_anywhere("MailboxName"):
            for box_id, name in now.items():
                old = self.names.get(box_id)
                if old is None:
                    out.append(ListData((), SEPARATOR, encode_name(name, utf8)))
                elif old != name:
                    out.append(ListData((), SEPARATOR, encode_name(name, utf8), old_name=encode_name(old, utf8)))
            for box_id, name in self.names.items():
                if box_id not in now:
                    out.append(ListData(("\\NonExistent",), SEPARATOR, encode_name(name, utf8)))
        self.names = now
        subscribed = set(self.conn.store.subscriptions(access.domain, access.account))
        if self._wants_anywhere("SubscriptionChange"):
            for name in sorted(subscribed - self.subscribed):
                out.append(ListData(("\\Subscribed",), SEPARATOR, encode_name(name, utf8)))
            for name in sorted(self.subscribed - subscribed):
                out.append(ListData((), SEPARATOR, encode_name(name, utf8)))
        self.subscribed = subscribed
        status: dict[int, tuple[int, int, int, int]] = {}
        for b in boxes:
            events = self.events_for(b) & MESSAGE_EVENTS
            if not events:
                continue
            st = self._state(b)
            if st is None:
                continue
            status[b.id] = st
            before = self.status.get(b.id)
            if before is None:  # a new mailbox (its LIST said so): only what it holds
                moved = st[1] > 1
            elif before[2] != st[2]:
                moved = True
            else:
                moved = (bool(events & {"MessageNew", "MessageExpunge"}) and before[:2] != st[:2]) \
                    or ("FlagChange" in events and before[3] != st[3])
            if moved:
                out.append(self._status_response(b, st, events))
        self.status = status
        return out

    # -- the task ----------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._subscribe(set())

    def _subscribe(self, wanted: set[str]) -> None:
        bus = self.conn.service.bus
        if bus is None:
            return
        for t in self.topics - wanted:
            bus.unsubscribe(t, self.wake.set)
        for t in wanted - self.topics:
            bus.subscribe(t, self.wake.set)
        self.topics = wanted

    def poke(self) -> None:
        self.wake.set()

    async def _run(self) -> None:
        conn = self.conn
        access = conn.access
        assert access is not None
        outage = False  # the last look met an unreachable database
        try:
            while not conn.closed:
                wanted = {account_topic(access.domain, access.account)} | {topic(i) for i in self.names}
                if conn.selected is not None:
                    wanted.add(topic(conn.selected.box.id))
                self._subscribe(wanted)
                # The re-check sets the same event (no task and no TimeoutError each time).
                recheck = asyncio.get_running_loop().call_later(conn.service.limits.idle_recheck, self.wake.set)
                try:
                    await self.wake.wait()
                finally:
                    recheck.cancel()
                self.wake.clear()
                # Not while a command runs (IDLE excepted): its responses come first.
                while conn._busy and conn._idle_wake is None and not conn.closed:
                    await asyncio.sleep(0.02)
                if conn.closed or await conn.account_gone():
                    return
                # STATUS and LIST responses may come at any time; only the selected
                # mailbox's updates wait for no command to be running.
                try:
                    out = await asyncio.to_thread(self.changes)
                except StorageUnavailable as e:  # look again at the next wake-up or re-check
                    if not outage:
                        event(log, "storage-unavailable", level=logging.ERROR, peer=conn.peer, command="NOTIFY",
                              error=str(e))
                    outage = True
                    continue
                except Exception:
                    # The account went while we looked (its mailboxes being retired by
                    # `account remove`): the check says so and the session ends; anything
                    # else is logged and the watcher looks again at the next wake-up.
                    if await conn.account_gone():
                        return
                    log.exception("event=imap-notify-error peer=%s", conn.peer)
                    continue
                outage = False
                if conn.closed:
                    return
                if conn.selected is not None and not conn.selected.loaded:
                    await conn.load_records()  # in a thread; then the state is looked at again
                sel = conn.selected
                if (sel is not None and self.selected_events and not conn._busy
                        and conn._idle_wake is None and not conn.closed):
                    updates = sel.refresh(conn.store, allow_expunge=True)
                    out += updates
                if out:
                    conn.send(*out)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event=imap-notify-error peer=%s", conn.peer)
        finally:
            self._subscribe(set())
