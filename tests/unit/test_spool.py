"""The spool on a real directory: group commit, file reuse, start-up cleaning."""

from __future__ import annotations

import asyncio
import os

from waypost.queue.spool import Spool, SpoolEntry, new_message_id


def _commit(spool: Spool, entries: list[SpoolEntry]) -> None:
    async def go() -> None:
        await asyncio.gather(*(spool.commit(e) for e in entries))
    asyncio.run(go())


def test_a_finished_file_is_reused_for_the_next_message_of_any_size(tmp_path):
    spool = Spool(tmp_path)
    committed: list[list[str]] = []
    spool._on_commit = lambda entries: committed.append([e.msg_id for e in entries])
    try:
        big = SpoolEntry(new_message_id(), {"sender": "a@example.test", "rcpt": ["b@example.test"]}, b"x" * 50_000)
        _commit(spool, [big])
        assert spool.read(big.msg_id) == (big.envelope, big.data)
        inode = os.stat(spool.path(big.msg_id)).st_ino
        spool.remove(big.msg_id)
        assert not spool.path(big.msg_id).exists()
        assert list(spool.ids()) == []

        # Not written over before a flush of queue/ has made its removal durable: the
        # next message gets a new file, and that flush frees the old one for reuse.
        filler = SpoolEntry(new_message_id(), {"n": "filler"}, b"filler\r\n")
        _commit(spool, [filler])
        assert os.stat(spool.path(filler.msg_id)).st_ino != inode
        small = SpoolEntry(new_message_id(), {"sender": "", "rcpt": ["c@example.test"]}, b"short\r\n")
        _commit(spool, [small])
        # The same inode, cut to the new length: nothing of the old message is left.
        assert os.stat(spool.path(small.msg_id)).st_ino == inode
        assert spool.read(small.msg_id) == (small.envelope, small.data)
        assert os.path.getsize(spool.path(small.msg_id)) < 200

        spool.remove(small.msg_id)
        spool.remove(filler.msg_id)
        larger = [SpoolEntry(new_message_id(), {"n": i}, bytes([65 + i]) * (1000 * (i + 1))) for i in range(3)]
        _commit(spool, larger)
        for e in larger:
            assert spool.read(e.msg_id) == (e.envelope, e.data)
        assert sorted(spool.ids()) == sorted(e.msg_id for e in larger)
        # Every message was handed to the index once, in batches.
        assert sorted(sum(committed, [])) == sorted([big.msg_id, filler.msg_id, small.msg_id]
                                                    + [e.msg_id for e in larger])
    finally:
        spool.stop()


def test_start_up_cleaning_removes_unfinished_and_pooled_files(tmp_path):
    spool = Spool(tmp_path)
    try:
        entries = [SpoolEntry(new_message_id(), {}, b"m%d\r\n" % i) for i in range(4)]
        _commit(spool, entries)
        spool.remove_many([e.msg_id for e in entries[:2]])
    finally:
        spool.stop()
    (tmp_path / "tmp" / "half-written").write_bytes(b"WAYPOST-SPOOL 1\n12")
    assert len(os.listdir(tmp_path / "free")) == 2
    again = Spool(tmp_path)
    assert again.clean_tmp() == 1  # what was never durable; the pool goes quietly
    assert os.listdir(tmp_path / "tmp") == [] and os.listdir(tmp_path / "free") == []
    assert sorted(again.ids()) == sorted(e.msg_id for e in entries[2:])


def test_a_new_worker_drops_the_pool_of_a_dead_one_and_keeps_a_live_ones(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)  # exited: its pid is free (reuse within the test is not a concern)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "free").mkdir(parents=True)
        (tmp_path / "free" / f"{dead_pid}.1A2B").write_bytes(b"old")
        (tmp_path / "free" / f"{live.pid}.3C4D").write_bytes(b"in use")
        spool = Spool(tmp_path)
        spool.start()
        try:
            assert sorted(os.listdir(tmp_path / "free")) == [f"{live.pid}.3C4D"]
        finally:
            spool.stop()
    finally:
        live.kill()
        live.wait()


def test_a_finished_file_is_unlinked_when_the_pool_cannot_take_it(tmp_path):
    """On a full disk rename may need a directory block that unlink does not: the
    message still leaves queue/ (else it would be adopted and delivered again)."""
    spool = Spool(tmp_path)
    try:
        entry = SpoolEntry(new_message_id(), {}, b"m\r\n")
        _commit(spool, [entry])
        os.rmdir(tmp_path / "free")
        (tmp_path / "free").write_bytes(b"")  # any rename into free/ now fails (ENOTDIR)
        spool.remove(entry.msg_id)
        assert list(spool.ids()) == []
    finally:
        spool.stop()


def test_a_streamed_message_is_spool_format_2_and_both_formats_read(tmp_path):
    """A big message's text is written while it arrives (SpoolStream), its head and
    envelope behind it at commit; read back it is head + text.  Format 1 files (every
    small message, and what older versions wrote) still read."""
    spool = Spool(tmp_path)
    spool._on_commit = lambda entries: None
    text = b"Subject: big\r\n\r\n" + b"line of text\r\n" * 50_000

    async def go() -> SpoolEntry:
        stream = spool.open_stream()
        for at in range(0, len(text), 100_000):
            if stream.write(text[at:at + 100_000]):
                await stream.flush()
        await stream.flush()
        assert stream.read_start(14) == b"Subject: big\r\n"
        entry = SpoolEntry(new_message_id(), {"sender": "a@example.test", "size": 0}, b"Received: x\r\n", stream)
        await spool.commit(entry)
        return entry

    try:
        entry = asyncio.run(go())
        raw = spool.path(entry.msg_id).read_bytes()
        assert raw.startswith(b"WAYPOST-SPOOL 2\n")
        assert spool.read(entry.msg_id) == (entry.envelope, b"Received: x\r\n" + text)
        assert list(os.scandir(spool.tmp)) == []
        old = SpoolEntry(new_message_id(), {"sender": ""}, b"small\r\n")
        _commit(spool, [old])
        assert spool.path(old.msg_id).read_bytes().startswith(b"WAYPOST-SPOOL 1\n")
        assert spool.read(old.msg_id) == (old.envelope, b"small\r\n")
    finally:
        spool.stop()


def test_a_stream_refused_or_abandoned_leaves_no_file(tmp_path):
    spool = Spool(tmp_path)

    def refuse(entries: list[SpoolEntry]) -> None:
        raise ConnectionError("the index is unreachable")

    spool._on_commit = refuse

    async def go() -> None:
        dropped = spool.open_stream()
        dropped.write(b"x" * 1000)
        await dropped.flush()
        dropped.abort()  # the client went away
        stream = spool.open_stream()
        stream.write(b"text\r\n")
        await stream.flush()
        stream_entry = SpoolEntry(new_message_id(), {"sender": ""}, b"", stream)
        try:
            await spool.commit(stream_entry)
        except OSError:
            pass
        else:
            raise AssertionError("committed without an index")
        stream.abort()  # after the committer had it: nothing more to do

    try:
        asyncio.run(go())
        assert list(os.scandir(spool.tmp)) == [] and list(spool.ids()) == []
    finally:
        spool.stop()
