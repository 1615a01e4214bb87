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
