"""``Overlay``: a session's message records as the worker's shared ones with the
session's own changes laid over them.  Whatever is done to it, it answers exactly as a
dict copy of the shared records changed the same way would (the code it replaces),
and the shared records are never touched.  Then ``Selected.own_msgs``: the first change
lays an Overlay over the shared records, and a session whose changes pass a quarter
of them takes a dict of its own."""

from __future__ import annotations

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
