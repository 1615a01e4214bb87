"""The queue index on both engines: claims, leases, outcomes (regressions from review), figures."""

from __future__ import annotations

import time

from waypost.db import QueuedMessage, QueuedRecipient, QueueStats, RecipientUpdate


def _msg(msg_id: str, n: int, held: bool = False) -> QueuedMessage:
    m = QueuedMessage(msg_id, "s@x.test", time.time(), 10, {})
    for i in range(n):
        m.recipients.append(QueuedRecipient(msg_id, i, f"r{i}@d{i}.test", f"mx:d{i}.test", {"kind": "remote"},
                                            held=held))
    return m


def test_a_claim_returns_only_the_rows_it_leased(tmp_path, make_db):
    db = make_db("q.db")
    now = time.time()
    db.queue_insert([_msg("M1", 2)], lease_owner="w/1", lease_until=now + 600)
    # recipient 0 is deferred (lease released, due now); recipient 1 is still in flight
    db.queue_update([RecipientUpdate("M1", 0, "queued", "451 later", next_attempt=now - 1)], "w/1")
    [m] = db.queue_claim_due(now, "w/1", now + 600, 100)
    assert [r.idx for r in m.recipients] == [0]


def test_leases_are_renewed_and_released(tmp_path, make_db):
    db = make_db("q.db")
    now = time.time()
    db.queue_insert([_msg("M1", 1)], lease_owner="w/1", lease_until=now + 1)
    assert db.queue_extend_leases("w/1", now + 600) == 1
    assert db.queue_claim_due(now + 5, "w/2", now + 600, 10) == []  # still leased to w/1
    db.queue_release_leases_of("w")
    assert len(db.queue_claim_due(now + 5, "w/2", now + 600, 10)) == 1


def test_update_of_an_unknown_message_never_reports_it_finished(tmp_path, make_db):
    db = make_db("q.db")
    assert db.queue_update([RecipientUpdate("GHOST", 0, "delivered", "250")], "w/1") == []


def test_held_recipients_are_not_leased_at_insert_and_not_due(tmp_path, make_db):
    db = make_db("q.db")
    now = time.time()
    db.queue_insert([_msg("M1", 1, held=True)], lease_owner="w/1", lease_until=now + 600)
    assert db.queue_claim_due(now + 1, "w/1", now + 600, 10) == []
    [m] = db.queue_claim_targets(["mx:d0.test"], "w/2", now + 600, now)
    assert m.recipients[0].held


def test_queue_stats_count_queued_and_held_recipients_and_the_oldest_message(tmp_path, make_db):
    """The queue figures of /metrics and `waypost status` (issue 18), on both engines."""
    db = make_db("q.db")
    assert db.queue_stats() == QueueStats(0, 0, 0, 0.0)
    now = time.time()
    old = _msg("M1", 2)
    old.created = now - 100
    db.queue_insert([old, _msg("M2", 1, held=True)], lease_owner="w/1", lease_until=now + 600)
    assert db.queue_stats() == QueueStats(2, 3, 1, old.created)
    db.queue_update([RecipientUpdate("M1", 0, "delivered", "250"), RecipientUpdate("M1", 1, "failed", "550")], "w/1")
    stats = db.queue_stats()
    assert (stats.messages, stats.recipients, stats.held) == (1, 1, 1) and stats.oldest > old.created


def _reference(msgs: list[QueuedMessage], where, now: float) -> list[str]:
    """What a queue filter chooses, computed here from the messages themselves (the
    QueueFilter contract), in arrival order."""
    import fnmatch

    def rcpt_ok(m: QueuedMessage, r: QueuedRecipient) -> bool:
        d = r.address.rpartition("@")[2].lower()
        sent_by = str(m.envelope.get("params", {}).get("auth") or "").rpartition("@")[2].lower()
        return (r.status == "queued"
                and (where.target is None or r.target == where.target)
                and (where.recipient is None or fnmatch.fnmatchcase(r.address.lower(), where.recipient.lower()))
                and (where.domain is None or where.domain in (d, sent_by))
                and (where.state is None or (where.state == "held") == r.held))

    return [m.msg_id for m in sorted(msgs, key=lambda m: (m.created, m.msg_id))
            if any(rcpt_ok(m, r) for r in m.recipients)
            and (where.sender is None or fnmatch.fnmatchcase(m.sender.lower(), where.sender.lower()))
            and (where.created_after is None or m.created >= where.created_after)]


def test_filters_read_through_the_index_choose_what_the_contract_says(make_db):
    """Issue 18: a filter matching few messages is read through the domain, target and
    held indexes (sorted afterwards), one matching many in arrival order; both give what
    the QueueFilter contract says, on both engines: the domain of a recipient, or of
    the account that logged in to send it (never the MAIL FROM address alone)."""
    from waypost.db import QueueFilter
    from waypost.db.sqlite import NARROW_QUEUE

    db = make_db("q.db")
    now = time.time()
    msgs = []
    for n in range(NARROW_QUEUE + 300):  # more than NARROW_QUEUE in mx:far.test: that one goes in arrival order
        msg_id = f"{n:012d}"
        auth = {"auth": "alice@a.test"} if n % 97 == 0 else ({"auth": "bob@b.test"} if n % 89 == 0 else {})
        sender = "alice@a.test" if n % 97 == 0 else ("forged@a.test" if n % 83 == 0 else f"s{n % 5}@out.test")
        m = QueuedMessage(msg_id, sender, now - 100000 + n // 2, 10, {"params": auth})
        dom = "a.test" if n % 101 == 0 else ("B.Test" if n % 103 == 0 else "far.test")
        m.recipients.append(QueuedRecipient(msg_id, 0, f"r{n}@{dom}", f"mx:{dom.lower()}", {"kind": "remote"},
                                            held=n % 211 == 0))
        if n % 7 == 0:
            m.recipients.append(QueuedRecipient(msg_id, 1, f"x{n}@c.test", "mx:c.test", {"kind": "remote"}))
        msgs.append(m)
    db.queue_insert(msgs, lease_owner="", lease_until=0.0)
    filters = [QueueFilter(domain="a.test"), QueueFilter(domain="b.test"), QueueFilter(domain="c.test"),
               QueueFilter(domain="nothing.test"), QueueFilter(state="held"), QueueFilter(state="held", domain="a.test"),
               QueueFilter(target="mx:far.test"), QueueFilter(target="mx:far.test", domain="a.test"),
               QueueFilter(recipient="*@b.test"), QueueFilter(recipient="*@nothing.test"),
               QueueFilter(recipient="r1*@far.test"), QueueFilter(sender="*@a.test", domain="a.test"),
               QueueFilter(recipient="*@c.test", domain="a.test"), QueueFilter(domain="a.test", created_after=now - 99000)]
    for where in filters:
        expected = _reference(msgs, where, now)
        got = [e.msg_id for e in db.queue_entries(where)]
        assert got == expected, (where, len(got), len(expected))
        assert db.queue_count(where) == len(expected), where
        page = [e.msg_id for e in db.queue_entries(where, limit=50, offset=10)]
        assert page == expected[10:60], where
    # The MAIL FROM address alone does not make a message the domain's.
    forged = {m.msg_id for m in msgs if m.sender == "forged@a.test"}
    assert forged and not forged & {e.msg_id for e in db.queue_entries(QueueFilter(domain="a.test"))
                                    if not any(r.endswith("@a.test") for r in e.recipients)}
    # Changes by a domain's filter touch its own recipients (and all of the mail its
    # accounts sent), not another domain's recipients of the same message.
    held = db.queue_set_matching(QueueFilter(domain="c.test"), now, held=True)
    assert held == sum(1 for m in msgs for r in m.recipients if r.address.endswith("@c.test"))
    far = [e for e in db.queue_entries(QueueFilter(target="mx:far.test", state="held"))]
    assert all(int(e.msg_id) % 211 == 0 for e in far)


def test_migration_10_fills_the_domain_columns_of_a_queue_indexed_before(tmp_path):
    """Rows queued under schema 9 get their recipient's and sending account's domain."""
    import sqlite3

    from waypost.db import QueueFilter, SQLiteDatabase
    from waypost.db import sqlite as sqlite_engine

    path = tmp_path / "v9.db"
    conn = sqlite3.connect(path)
    for statements in sqlite_engine.MIGRATIONS[:9]:
        for st in statements:
            conn.execute(st)
    conn.execute("PRAGMA user_version=9")
    conn.execute("INSERT INTO queue_messages (id, sender, created, size, envelope) VALUES"
                 " ('M1', 'x@out.test', 1.0, 10, '{\"params\": {\"auth\": \"Bob@B.test\"}}'),"
                 " ('M2', 'bob@b.test', 2.0, 10, '{\"params\": {}}')")
    conn.execute("INSERT INTO queue_recipients (msg_id, idx, address, target, route, status, next_attempt) VALUES"
                 " ('M1', 0, 'r@far.test', 'mx:far.test', '{}', 'queued', 0),"
                 " ('M2', 0, '\"a@b\"@A.Test', 'local', '{}', 'queued', 0)")
    conn.commit()
    conn.close()
    db = SQLiteDatabase(path)
    try:
        assert [e.msg_id for e in db.queue_entries(QueueFilter(domain="b.test"))] == ["M1"]
        assert [e.msg_id for e in db.queue_entries(QueueFilter(domain="a.test"))] == ["M2"]
        assert [e.msg_id for e in db.queue_entries(QueueFilter(recipient="*@a.test"))] == ["M2"]
    finally:
        db.close()
