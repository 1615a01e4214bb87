"""SORT and UID SORT (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO, RFC 5267 ESORT),
THREAD and UID THREAD (RFC 5256 §3: ORDEREDSUBJECT, REFERENCES; and REFS).

The messages are found as SEARCH finds them (``search.find``); their sort keys come
from the index (arrival, size) and from the header blocks SEARCH keeps
(``search.header_blocks``: the index, else the file's header once), never from whole
message files.  The order itself is worked out by ``waypost.imap.sorting``.
"""

from __future__ import annotations

import asyncio
from typing import Any, TYPE_CHECKING

from .. import sorting
from ..proto import Sort, SortData, Tagged, Thread, ThreadData, ThreadNode
from . import context
from .search import extended, find, header_blocks, numbers_of

if TYPE_CHECKING:
    from ..server import Connection
    from ..session import Selected

#: Sort keys answered from the index alone.
_INDEX_KEYS = frozenset({"ARRIVAL", "SIZE"})
#: Above this many messages the order is worked out in a thread, so that other
#: sessions of the worker go on meanwhile (about 50 µs a message).
_THREAD_ABOVE = 500


async def _run(fn: Any, *args: Any) -> Any:
    if len(args[0]) > _THREAD_ABOVE:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


async def _items(conn: Connection, sel: Selected, uids: list[int], uid: bool, headers: bool,
                 sizes: bool) -> list[sorting.Item]:
    if sizes and any(sel.msgs[u].size < 0 for u in uids):
        await asyncio.to_thread(sel.check_sizes, conn.store, uids)
    blocks = await header_blocks(conn, sel, uids) if headers and uids else {}
    numbers = numbers_of(sel, uids, False)
    out = []
    for u, seq in zip(uids, numbers):
        m = sel.msgs[u]
        out.append(sorting.Item(u if uid else seq, seq, m.internaldate, m.size, blocks.get(u, b"")))
    return out


async def sort(conn: Connection, cmd: Sort) -> Tagged:
    sel = conn.selected
    assert sel is not None
    refused = context.reused(conn, cmd.tag, cmd.returns)
    if refused is not None:
        return refused
    found = await find(conn, cmd.criteria)
    names = {name for name, _ in cmd.keys}
    items = await _items(conn, sel, found.uids, cmd.uid, bool(names - _INDEX_KEYS), "SIZE" in names)
    ordered: list[sorting.Item] = await _run(sorting.sort, items, cmd.keys)
    numbers = [m.number for m in ordered]
    if cmd.returns is None:
        conn.send(SortData(tuple(numbers), found.top if found.with_modseq and numbers else None))
    else:
        uids = numbers if cmd.uid else [sel.uids[n - 1] for n in numbers]
        extended(conn, cmd.tag, cmd.uid, cmd.returns, uids, numbers, found.with_modseq, in_order=True,
                 partial=cmd.partial)
        if "UPDATE" in cmd.returns:
            context.remember(conn, cmd.tag, cmd.uid, cmd.criteria, cmd.keys, uids)
    return found.completed(cmd.tag, f"{'UID ' if cmd.uid else ''}SORT")


async def thread(conn: Connection, cmd: Thread) -> Tagged:
    sel = conn.selected
    assert sel is not None
    found = await find(conn, cmd.criteria)
    items = await _items(conn, sel, found.uids, cmd.uid, True, False)
    algorithm = _ALGORITHMS[cmd.algorithm]
    threads: list[ThreadNode] = await _run(algorithm, items)
    conn.send(ThreadData(tuple(threads)))
    return found.completed(cmd.tag, f"{'UID ' if cmd.uid else ''}THREAD")


#: RFC 5256 §3 and THREAD=REFS.
_ALGORITHMS: dict[str, Any] = {"ORDEREDSUBJECT": sorting.ordered_subject, "REFERENCES": sorting.references,
                               "REFS": sorting.refs}

HANDLERS: dict[str, Any] = {"SORT": sort, "THREAD": thread}
