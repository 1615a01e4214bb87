"""SRS: forward and reverse, tampering, age."""

from waypost.rules.srs import SRS

DAY = 86400


def test_round_trip_and_checks():
    srs = SRS(b"k" * 32, "ours.test")
    fwd = srs.forward("alice@origin.test", now=1000 * DAY)
    local, _, domain = fwd.rpartition("@")
    assert domain == "ours.test" and local.startswith("SRS0=") and local.endswith("=origin.test=alice")
    assert srs.reverse(local, now=1000 * DAY) == "alice@origin.test"
    assert srs.reverse(local.upper(), now=1005 * DAY) == "ALICE@ORIGIN.TEST"  # case-insensitive hash
    assert srs.reverse(local.replace("alice", "mallory"), now=1000 * DAY) is None  # tampered
    assert srs.reverse(local, now=1030 * DAY) is None  # too old
    assert SRS(b"x" * 32, "ours.test").reverse(local, now=1000 * DAY) is None  # another key
    assert srs.forward("") == "" and srs.forward(fwd) == fwd  # null sender and SRS0 unchanged
    assert srs.reverse("alice") is None
