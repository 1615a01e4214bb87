"""``Overlay``: a session's message records as the worker's shared ones with the
session's own changes laid over them.  Whatever is done to it, it answers exactly as a
dict copy of the shared records changed the same way would (the code it replaces),
and the shared records are never touched.  Then ``Selected.own_msgs``: the first change
lays an Overlay over the shared records, and a session whose changes pass a quarter
of them takes a dict of its own."""

from __future__ import annotations

from array import array
from types import MappingProxyType

from hypothesis import given, settings, strategies as st

from waypost.db import MailboxRecord, MessageRecord
from waypost.imap.session import Overlay, Selected


def record(uid: int, version: int = 0) -> MessageRecord:
    return MessageRecord(uid, f"m{uid}.{version}", "cur", ("\\Seen",) if version % 2 else (), uid + version, 10, 0.0)


UIDS = st.integers(min_value=1, max_value=40)
OPS = st.lists(st.one_of(
    st.tuples(st.just("set"), UIDS, st.integers(min_value=1, max_value=5)),
    st.tuples(st.just("del"), UIDS),
    st.tuples(st.just("pop"), UIDS),
    st.tuples(st.just("hide"), st.lists(UIDS, max_size=5)),
    st.tuples(st.just("update"), st.lists(UIDS, max_size=5)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(base_uids=st.sets(UIDS, max_size=25), ops=OPS)
def test_an_overlay_answers_as_a_changed_copy_would(base_uids, ops):
    base = {u: record(u) for u in sorted(base_uids)}
    frozen = dict(base)
    overlay = Overlay(MappingProxyType(base))
    model = dict(base)
    for op in ops:
        if op[0] == "set":
            overlay[op[1]] = model[op[1]] = record(op[1], op[2])
        elif op[0] == "del":
            if op[1] in model:
                del model[op[1]]
                del overlay[op[1]]
            else:
                try:
                    del overlay[op[1]]
                except KeyError:
                    pass
                else:
                    raise AssertionError("deleted a UID it does not hold")
        elif op[0] == "pop":
            assert overlay.pop(op[1], None) == model.pop(op[1], None)
        elif op[0] == "hide":
            # (as Selected._load uses it: UIDs of the base not yet changed here)
            fresh = [u for u in op[1] if u in base and u not in overlay.own]
            overlay.hide(fresh)
            for u in fresh:
                model.pop(u, None)
        else:
            changes = {u: record(u, 3) for u in op[1]}
            overlay.update(changes)
            model.update(changes)
        assert len(overlay) == len(model)
        assert sorted(overlay) == sorted(model)
        assert dict(overlay) == model
        for u in range(0, 42):
            assert (u in overlay) == (u in model)
            assert overlay.get(u) == model.get(u)
            if u in model:
                assert overlay[u] == model[u]
    assert base == frozen  # the shared records were never changed


def test_own_msgs_lays_an_overlay_then_takes_a_dict_past_a_quarter():
    box = MailboxRecord(1, "example.test", "u", "INBOX", "", 7, 1001, 1000, 1001, exists=1000)
    shared = {u: record(u) for u in range(1, 1001)}
    sel = Selected(box, readonly=False)
    sel.records = MappingProxyType(shared)
    own = sel.own_msgs()
    assert isinstance(own, Overlay) and sel.records is own and len(own) == 1000 and not own.own
    own[5] = record(5, 1)
    assert sel.msgs[5].flags == ("\\Seen",) and shared[5].flags == ()
    for u in range(1, 400):  # past a quarter of 1,000 (+64)
        sel.own_msgs()[u] = record(u, 1)
    own = sel.own_msgs()
    assert type(own) is dict and len(own) == 1000 and own[399].flags == ("\\Seen",) and own[400].flags == ()
    assert all(shared[u].flags == () for u in shared)


def test_sessions_share_the_workers_uids_until_they_change_them():
    """SELECT shares the worker's UID array; an EXPUNGE or new messages told to one
    session give it an array of its own, and neither the worker's array nor another
    session's view moves."""
    box = MailboxRecord(1, "example.test", "u", "INBOX", "", 7, 11, 10, 11, exists=10)
    shared_uids = array("I", range(1, 11))
    records = MappingProxyType({u: record(u) for u in shared_uids})
    one, two = Selected(box, readonly=False), Selected(box, readonly=False)
    for sel in (one, two):
        sel.uids, sel.uids_own, sel.records = shared_uids, False, records
    assert one.uids is two.uids is shared_uids
    out = one.expunged_here([3])
    assert [r for r in out if type(r).__name__ == "ExpungeData"] and one.uids_own
    assert list(one.uids) == [1, 2, 4, 5, 6, 7, 8, 9, 10] and list(shared_uids) == list(range(1, 11))
    assert two.uids is shared_uids and two.seq_of(3) == 3 and one.seq_of(3) is None
    assert 3 not in one.msgs and 3 in two.msgs
