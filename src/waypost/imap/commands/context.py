"""Search contexts (RFC 5267 CONTEXT=SEARCH and CONTEXT=SORT): SEARCH or SORT
RETURN (UPDATE ...) keeps its result, and the session tells its client how that
result changes until the mailbox is closed or the client says CANCELUPDATE.

Theory of operation.  A context holds the criteria (and sort keys), the result as
UIDs in result order, and the mailbox state (UIDNEXT, HIGHESTMODSEQ, count) it was
worked out at.  Whatever changes the mailbox — this session, another session, another
worker — shows in that state, which the session reads after every command and in
IDLE (the change channel wakes IDLE).  Then ``updates`` works the result out again
(RFC 5267 Appendix B: only the messages whose mod-sequence is above the one the
context has seen, new ones included, are tested again; a SORT result is then put in
order again) and sends the difference as an unsolicited ESEARCH (TAG "t") with REMOVEFROM and
ADDTO (RFC 5267 §4.3): message numbers for SEARCH/SORT, UIDs for the UID forms,
always naming messages the client has been told of (EXISTS sent, EXPUNGE not yet).
Expunges go through ``expunging`` before their EXPUNGE responses, so a REMOVEFROM
names a message number that is still right when the client reads it.

Positions (context-position): for SORT, the 1-based place in the sorted result, one
item per run of neighbours, removals from the last place back and additions from the
first on, so each position is right when the client applies it in order; for
SEARCH the result is in mailbox order and the position says nothing: ADDTO gives 0
(RFC 5267 §6 allows it), REMOVEFROM the place of the first one removed.

A session keeps at most ``MAX_CONTEXTS``; one more is refused with NOUPDATE.
"""

from __future__ import annotations

import logging
from typing import Any, TYPE_CHECKING

from ...log import event
from ..proto import All, And, Code, ESearchData, Not, Or, SearchKey, SequenceKey, SequenceSet, Tagged, Untagged, Within
from ..proto.commands.context import CancelUpdate
from ..search_context import MAX_CONTEXTS, SearchContext, numbers, removals, runs, state_of

if TYPE_CHECKING:
    from ..server import Connection
    from ..session import Selected

__all__ = ["HANDLERS", "remember", "reused", "updates"]

log = logging.getLogger("waypost.imap")


def reused(conn: Connection, tag: str, returns: tuple[str, ...] | None) -> Tagged | None:
    """RFC 5267 §4.3: UPDATE with the tag of a search still updated is BAD (and the
    search is not run)."""
    sel = conn.selected
    if returns is None or "UPDATE" not in returns or sel is None or tag not in sel.contexts:
        return None
    event(log, "imap-bad", level=logging.INFO, peer=conn.peer, detail=f"search tag {tag!r} reused")
    return Tagged(tag, "BAD", "Tag reuse: a search with this tag is being updated")


def remember(conn: Connection, tag: str, uid: bool, criteria: SearchKey,
             keys: tuple[tuple[str, bool], ...] | None, uids: list[int]) -> None:
    """Keep the context of a SEARCH/SORT RETURN (UPDATE) just answered."""
    sel = conn.selected
    assert sel is not None
    contexts: dict[str, SearchContext] = sel.contexts
    if _aging(criteria):
        # OLDER/YOUNGER (RFC 5032) change their answer as time passes, with no change
        # to any message; the updates follow changes only, so such a context is not
        # kept (RFC 5267 §4.3.1: NOUPDATE).
        conn.send(Untagged("NO", "Results of OLDER/YOUNGER are not updated", Code("NOUPDATE", f'"{tag}"')))
        return
    if len(contexts) >= MAX_CONTEXTS:
        # RFC 5267 §4.3.1: the server refuses to keep the context.
        conn.send(Untagged("NO", "Too many search contexts", Code("NOUPDATE", f'"{tag}"')))
        return
    # The result covers the messages as ``find`` saw them: up to sel.state's
    # HIGHESTMODSEQ (unless some are still to be announced: test them all again).
    contexts[tag] = SearchContext(tag, uid, _frozen(sel, criteria), keys, list(uids), state_of(sel),
                                  0 if sel.arrived else sel.state[1])


def _aging(key: SearchKey) -> bool:
    if isinstance(key, Within):
        return True
    if isinstance(key, Not):
        return _aging(key.key)
    if isinstance(key, Or):
        return _aging(key.left) or _aging(key.right)
    if isinstance(key, And):
        return any(_aging(k) for k in key.keys)
    return False


def _frozen(sel: Selected, key: SearchKey) -> SearchKey:
    """``key`` with message numbers and "$" replaced by the UIDs they name now."""
    if isinstance(key, SequenceKey) and (key.sequence.saved or not key.uid):
        if key.sequence.saved:
            named = [u for u in sel.saved if u in sel.msgs]
        else:
            largest = len(sel.uids)  # numbers past it name nothing (as in the search)
            named = [sel.uids[n - 1] for r in key.sequence.resolve(largest, uid=True) for n in r
                     if 1 <= n <= largest]
        return SequenceKey(SequenceSet.from_numbers(named), uid=True) if named else Not(All())
    if isinstance(key, Not):
        return Not(_frozen(sel, key.key))
    if isinstance(key, Or):
        return Or(_frozen(sel, key.left), _frozen(sel, key.right))
    if isinstance(key, And):
        return And(tuple(_frozen(sel, k) for k in key.keys))
    return key


async def _evaluate(conn: Connection, sel: Selected, ctx: SearchContext) -> list[int]:
    """The context's result now.  A message's match depends on nothing but itself
    (message numbers and "$" are frozen), and every change to it raises its
    mod-sequence: only the messages above ``ctx.modseq`` are tested."""
    from . import search as _search, sort as _sort  # they import this module
    msgs, gone, since = sel.msgs, sel.gone, ctx.modseq
    retest, ctx.retest = ctx.retest, set()
    changed = [u for u in sel.uids if u not in gone and (msgs[u].modseq > since or u in retest)]
    members = {u for u in ctx.result if u in msgs and u not in gone and msgs[u].modseq <= since
               and u not in retest}
    if changed:
        only = SequenceKey(SequenceSet.from_numbers(changed), uid=True)
        members.update((await _search.find(conn, And((only, ctx.criteria)))).uids)
    if ctx.keys is None:
        return sorted(members)  # mailbox order: UIDs ascend with message numbers
    if members == set(ctx.result):
        return ctx.result  # sort keys never change: the same order
    names = {name for name, _ in ctx.keys}
    listed = [u for u in sel.uids if u in members]
    items = await _sort._items(conn, sel, listed, True, bool(names - _sort._INDEX_KEYS), "SIZE" in names)
    ordered = await _sort._run(_sort.sorting.sort, items, ctx.keys)
    return [m.number for m in ordered]


async def updates(conn: Connection) -> None:
    """Send the changes of every context of the selected mailbox whose state moved."""
    sel = conn.selected
    if sel is None or not sel.contexts:
        return
    contexts: dict[str, SearchContext] = sel.contexts
    for ctx in list(contexts.values()):
        if ctx.state == sel.state and not sel.arrived:
            continue
        sel.catch_up(conn.store)
        # What this evaluation covers; changes read while it runs wait for the next.
        state, top = state_of(sel), (ctx.modseq if sel.arrived else sel.state[1])
        try:
            fresh = await _evaluate(conn, sel, ctx)
        except Exception:
            log.exception("event=imap-context-error peer=%s tag=%s", conn.peer, ctx.tag)
            continue
        if conn.selected is not sel or contexts.get(ctx.tag) is not ctx:
            return  # unselected or cancelled meanwhile
        ctx.state, ctx.modseq = state, top
        now = set(fresh)
        removed = removals(sel, ctx, set(ctx.result) - now)
        known = set(ctx.result)
        added: list[tuple[int, tuple[int, ...]]] = []
        new_at = [i for i, u in enumerate(fresh) if u not in known]
        if new_at:
            if ctx.keys is None:
                added.append((0, numbers(sel, ctx, [fresh[i] for i in new_at])))  # RFC 5267 §4.3.3
            else:
                added.extend((run[0] + 1, numbers(sel, ctx, [fresh[i] for i in run])) for run in runs(new_at))
        ctx.result = fresh
        if removed or added:
            conn.send(ESearchData(ctx.tag, ctx.uid, addto=tuple(added), removefrom=removed))


async def cancel_update(conn: Connection, cmd: CancelUpdate) -> Tagged:
    """RFC 5267 §4.3: CANCELUPDATE ends the updates of these searches."""
    sel = conn.selected
    assert sel is not None
    unknown = [t for t in cmd.tags if t not in sel.contexts]
    if unknown:
        event(log, "imap-bad", level=logging.INFO, peer=conn.peer, detail=f"CANCELUPDATE of unknown {unknown[0]!r}")
        return Tagged(cmd.tag, "BAD", f"No search with the tag {unknown[0]!r} is being updated")
    for t in cmd.tags:
        del sel.contexts[t]
    return Tagged(cmd.tag, "OK", "CANCELUPDATE completed")


HANDLERS: dict[str, Any] = {"CANCELUPDATE": cancel_update}
