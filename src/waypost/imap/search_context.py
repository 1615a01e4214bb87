"""Search contexts (RFC 5267) as the selected mailbox holds them: the kept results,
and the REMOVEFROM owed when messages are expunged.  The commands that make, update
and cancel them are in ``commands/context.py`` (its docstring says how it works)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .proto import ESearchData, Response, SearchKey

if TYPE_CHECKING:
    from .session import Selected

__all__ = ["MAX_CONTEXTS", "SearchContext", "expunging", "numbers", "private_change", "removals", "runs",
           "state_of"]

#: Search contexts one session keeps at a time (RFC 5267 §4.2 lets a server refuse more).
MAX_CONTEXTS = 16
#: ``SearchContext.state`` that forces the next evaluation.
_STALE = (-1, -1, -1)


@dataclass(slots=True)
class SearchContext:
    tag: str
    uid: bool
    criteria: SearchKey
    keys: tuple[tuple[str, bool], ...] | None      # None: SEARCH (mailbox order)
    result: list[int]                              # UIDs, in result order
    state: tuple[int, int, int]
    modseq: int = 0                                # messages up to here are in ``result`` or not
    retest: set[int] = field(default_factory=set)  # changed without a new mod-sequence


def state_of(sel: Selected) -> tuple[int, int, int]:
    # Messages seen in the index but not announced (EXISTS) are not in a result
    # yet: evaluate again once they are.
    return _STALE if sel.arrived else sel.state


def numbers(sel: Selected, ctx: SearchContext, uids: list[int]) -> tuple[int, ...]:
    if ctx.uid:
        return tuple(uids)
    return tuple(n for n in (sel.seq_of(u) for u in uids) if n is not None)


def runs(positions: list[int]) -> list[list[int]]:
    """Ascending 0-based positions grouped into runs of neighbours."""
    out: list[list[int]] = []
    for p in positions:
        if out and out[-1][-1] == p - 1:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def removals(sel: Selected, ctx: SearchContext, doomed: set[int]) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """REMOVEFROM items for the UIDs of ``doomed`` in the result (which loses them)."""
    at = [i for i, u in enumerate(ctx.result) if u in doomed]
    if not at:
        return ()
    items: list[tuple[int, tuple[int, ...]]] = []
    if ctx.keys is None:
        # RFC 5267 §4.3.4: position 0, the client removes them wherever they are.
        items.append((0, numbers(sel, ctx, [ctx.result[i] for i in at])))
    else:
        for run in reversed(runs(at)):
            items.append((run[0] + 1, numbers(sel, ctx, [ctx.result[i] for i in run])))
    ctx.result = [u for u in ctx.result if u not in doomed]
    return tuple(items)


def expunging(sel: Selected, uids: list[int]) -> list[Response]:
    """The REMOVEFROM responses owed before the EXPUNGE responses of ``uids``
    (numbers as they are before those EXPUNGEs)."""
    doomed = set(uids)
    out: list[Response] = []
    for ctx in sel.contexts.values():
        removed = removals(sel, ctx, doomed)
        if removed:
            out.append(ESearchData(ctx.tag, ctx.uid, removefrom=removed))
    return out


def private_change(sel: Selected, uids: list[int]) -> None:
    """This user's own \\Seen changed on these messages of another account's mailbox
    (RFC 4314 §5.1.2): kept apart, it raises no mod-sequence, so the contexts are
    told to test them again."""
    for ctx in sel.contexts.values():
        ctx.retest.update(uids)
        ctx.state = _STALE
