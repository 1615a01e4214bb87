"""The durable spool: one file per message, made durable in batches (group commit).

A spool file is::

    WAYPOST-SPOOL 1\\n
    <length of the envelope JSON in bytes>\\n
    <envelope JSON>\\n
    <the message, exactly as it will be delivered>

A message too big to hold in memory (``SpoolStream``: the SMTP listener writes it
while it arrives) is in version 2, written in the order it becomes known::

    WAYPOST-SPOOL 2\\n
    <the client's text, as it arrived>
    <the head: what goes in front of the text (Received and the fields we add)>
    <envelope JSON>
    <offset of the head, 20 digits> SP <offset of the envelope, 20 digits>\\n

and the message is the head followed by the text.  Both versions are read; small
messages are still written in version 1.

Theory of operation.  ``Spool.commit`` hands a message to the committer thread and
waits.  The committer takes every message waiting at that moment as one batch: it
writes each to ``tmp/``, makes all of them durable with one flush, records the batch
in the queue index (one transaction), renames them into ``queue/``, syncs ``queue/``
once, and only then wakes the callers, who may answer 250.  While a batch is
being flushed the next one gathers, so the number of flushes grows with time, not with
the number of messages.  A crash before the rename leaves only ``tmp/`` files, which
were never acknowledged and are removed at start-up (with the index entries of those
already recorded); a crash after it leaves a complete, indexed file.

Files are reused.  A delivered message's file is not unlinked but renamed into
``free/``, and once a later flush of ``queue/`` has made that rename durable, a new
message is written over it (then truncated to its length) and renamed into ``queue/``
like a new one.  Creating and freeing an inode for every
message is the costliest part of a spool on some file systems: on ext4 without a
journal each new inode is searched for past every inode freed in the last seconds
(``recently_deleted``), which made inode allocation, for the spool and for the
Maildir files alike, a fifth of the server's CPU under load.  Each process reuses
only the files it put into ``free/`` itself, named ``<pid>.<id>`` (so two workers never
write one file); start-up removes what is left there, as it does ``tmp/``, and a
worker that replaces a dead one removes the dead one's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue as _queue
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import metrics
from ..fsutil import durable_batch, fsync_dir, overwrite_file, write_new_file

__all__ = ["STREAM_BUFFER", "Spool", "SpoolEntry", "SpoolError", "SpoolStream", "new_message_id", "node_dir"]

log = logging.getLogger("waypost.queue")

MAGIC = b"WAYPOST-SPOOL 1\n"
MAGIC2 = b"WAYPOST-SPOOL 2\n"
#: Version 2's trailer: the offsets of the head and of the envelope.
_TRAILER = 42
#: Most messages made durable by one flush.
MAX_BATCH = 512
#: Most files a process keeps in ``free/`` for reuse, and the largest it keeps.
POOL_FILES = 512
POOL_FILE_MAX = 256 * 1024


class SpoolError(OSError):
    """The spool could not take the message (disk full, I/O error)."""


def new_message_id() -> str:
    """A queue id: sortable by arrival (milliseconds, hex) and unique across workers."""
    # 40 random bits from the random module's generator, not os.urandom (a system call
    # for every message): it is seeded from the system in every process, and again in
    # every forked worker (the module reseeds after fork); an id is no secret (it is in
    # the 250 reply), it only must not repeat.
    return f"{time.time_ns() // 1_000_000:011X}{random.getrandbits(40):010X}"


@dataclass(slots=True)
class SpoolEntry:
    """A message for the spool.  ``data`` is the whole message, or with ``stream`` the
    head that goes in front of the text already in the stream's file."""

    msg_id: str
    envelope: dict[str, Any]
    data: bytes
    stream: "SpoolStream | None" = None

    def header(self) -> bytes:
        env = json.dumps(self.envelope, separators=(",", ":")).encode()
        return MAGIC + str(len(env)).encode() + b"\n" + env + b"\n"


class SpoolStream:
    """The text of one message being received, written to a file of ``tmp/`` as it
    arrives (spool format 2), so that a big message is never held in memory.

    ``write`` only appends to a buffer and says when ``flush`` (a thread hop, one
    ``write(2)`` of up to ``STREAM_BUFFER`` octets) is due: memory per message stays
    under about twice that.  The file becomes a spool file when its entry is committed
    (``Spool.commit``, which writes the head, the envelope and the trailer behind the
    text, makes it durable with the rest of its batch and renames it into ``queue/``);
    ``abort`` removes it.  Until then it is in ``tmp/``, removed at start-up after a
    crash: nothing in it was ever acknowledged."""

    __slots__ = ("path", "fd", "length", "committing", "_buf", "_tail")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            _write_fully(self.fd, MAGIC2)
        except BaseException:
            self.abort()
            raise
        self.length = 0  # octets of text written or buffered
        self.committing = False  # handed to the committer, which owns the file from then on
        self._buf: list[bytes] = []
        self._tail = 0  # octets in _buf

    def write(self, piece: bytes) -> bool:
        """Buffer ``piece``; True when ``flush`` should be awaited before more."""
        if piece:
            self._buf.append(piece)
            self._tail += len(piece)
            self.length += len(piece)
        return self._tail >= STREAM_BUFFER

    async def flush(self) -> None:
        """Write what is buffered (in a thread: a busy disk never stalls the event loop);
        SpoolError when the disk refuses it."""
        if not self._buf:
            return
        data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
        self._buf.clear()
        self._tail = 0
        fd = self.fd
        if fd is None:
            raise SpoolError(0, "the spool stream was closed")
        try:
            await asyncio.to_thread(_write_fully, fd, data)
        except OSError as e:
            raise SpoolError(e.errno or 0, str(e)) from e

    def read_text(self) -> bytes:
        """The text written so far (after ``flush``): for the checks that need the whole
        message at once (DKIM signing, inbound DKIM, Rspamd)."""
        with open(self.path, "rb") as f:
            f.seek(len(MAGIC2))
            return f.read(self.length)

    def read_start(self, n: int) -> bytes:
        """The first ``n`` octets of the text written so far."""
        with open(self.path, "rb") as f:
            f.seek(len(MAGIC2))
            return f.read(min(n, self.length))

    def finish(self, head: bytes, envelope: dict[str, Any]) -> int:
        """Committer thread: write head, envelope and trailer behind the text; returns
        the fd (its ownership passes to the committer)."""
        fd = self.fd
        if fd is None or self._buf:
            raise SpoolError(0, "spool stream not flushed")
        head_at = len(MAGIC2) + self.length
        env = json.dumps(envelope, separators=(",", ":")).encode()
        trailer = b"%020d %020d\n" % (head_at, head_at + len(head))
        os.lseek(fd, head_at, os.SEEK_SET)
        _write_fully(fd, head + env + trailer)
        self.fd = None
        return fd

    def abort(self) -> None:
        """Drop the file (the message was refused, or the client went away); nothing
        once it is handed to the committer."""
        if not self.committing:
            self.remove()

    def remove(self) -> None:
        self._buf.clear()
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
            try:
                os.unlink(self.path)
            except OSError:
                pass


#: Octets a ``SpoolStream`` buffers before a write.  Each write is a hop to a thread
#: and back, which costs more CPU than the write itself on a busy 2-CPU host: 1 MiB
#: makes 20 of them for a 20 MiB message (256 KiB made 80, a tenth of the CPU).
STREAM_BUFFER = 1024 * 1024


def _write_fully(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Pending:
    __slots__ = ("entry", "loop", "future")

    def __init__(self, entry: SpoolEntry, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.entry = entry
        self.loop = loop
        self.future = future


class Spool:
    """Spool files under ``root`` and the committer thread that writes them.

    ``on_commit(entries)`` runs in the committer thread after the files are durable and
    before they are renamed into ``queue/`` and the callers woken: the queue index is
    written there, one transaction per batch.  If it fails, the batch fails (451).
    ``on_abort(ids)`` takes entries out of the index again when the rename fails.
    """

    def __init__(self, root: Path, on_commit: Callable[[list[SpoolEntry]], None] | None = None,
                 on_abort: Callable[[list[str]], None] | None = None, node: str = "") -> None:
        """``node``: on a spool that several nodes share (docs/cluster.md), this node's
        name; its ``tmp/`` and ``free/`` are then ``nodes/<node>/tmp`` and ``.../free``,
        which only this node writes and cleans, while ``queue/`` is common."""
        self.root = root
        self.node = node
        own = node_dir(root, node)
        self.tmp = own / "tmp"
        self.queue_dir = root / "queue"
        self.free = own / "free"
        for d in (self.tmp, self.queue_dir, self.free):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._on_commit = on_commit
        self._on_abort = on_abort
        self._pending: _queue.SimpleQueue[_Pending | None] = _queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.batches = 0  # flushes made (group commits) ...
        self.messages = 0  # ... for this many messages: the logs show both at stop
        # (name, size) of files in free/ that this process put there: ``_pool`` may be
        # written over; ``_freed`` may not yet, until their leaving queue/ is durable.
        self._pool: list[tuple[str, int]] = []
        self._freed: list[tuple[str, int]] = []
        self._pool_lock = threading.Lock()

    # -- committer ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._drop_dead_pools()
            self._thread = threading.Thread(target=self._run, name="spool-committer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join()
            self._thread = None

    async def commit(self, entry: SpoolEntry) -> None:
        """Return once ``entry`` is durable in the spool; raise SpoolError if it is not."""
        if self._stopped:
            if entry.stream is not None:
                entry.stream.abort()
            raise SpoolError(0, "the spool is shutting down")
        self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if entry.stream is not None:
            entry.stream.committing = True
        self._pending.put(_Pending(entry, loop, future))
        await future

    def _run(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._pending.get_nowait()
                except _queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._write_batch(batch)
            if stop:
                return

    def _write_batch(self, batch: list[_Pending]) -> None:
        written: list[tuple[int, _Pending, Path]] = []
        failed: list[tuple[_Pending, BaseException]] = []
        for p in batch:
            try:
                fd, source = self._write_file(p.entry)
                written.append((fd, p, source))
            except OSError as e:
                if p.entry.stream is not None:
                    p.entry.stream.remove()
                failed.append((p, e))
        try:
            durable_batch([fd for fd, _, _ in written])
        except OSError as e:
            self._drop(written, failed, e)
            written = []
        if written and self._on_commit is not None:
            # The index first, the rename into queue/ second: a file in queue/ always
            # has its entry, so the orphan scan never mistakes a message being committed
            # for a lost one.  A crash in between leaves an entry without a file, for a
            # message never acknowledged: recovery (or the first claim) drops it.
            try:
                self._on_commit([p.entry for _, p, _ in written])
            except Exception as e:
                # Not indexed means not delivered until a restart: let the clients retry
                # (451) rather than answer 250 for them.
                if isinstance(e, ConnectionError):  # the database is unreachable: one line says it
                    log.error("event=index-error count=%d error=%s", len(written), e)
                else:
                    log.exception("event=index-error count=%d", len(written))
                self._drop(written, failed, e)
                written = []
        if written:
            try:
                for fd, p, source in written:
                    os.close(fd)
                    os.rename(source, self.queue_dir / p.entry.msg_id)
                # Files freed before this flush of queue/ are durably out of it after it:
                # only then may they be written over (were a power cut to bring a freed
                # name back into queue/, it must hold the message it held, not a new
                # one half written).
                with self._pool_lock:
                    freed, self._freed = self._freed, []
                try:
                    fsync_dir(self.queue_dir)
                except OSError:
                    with self._pool_lock:
                        self._freed[:0] = freed
                    raise
                with self._pool_lock:
                    self._pool.extend(freed)
            except OSError as e:
                self._drop(written, failed, e, closed=True)
                if self._on_abort is not None:
                    try:
                        self._on_abort([p.entry.msg_id for _, p, _ in written])
                    except Exception:  # the entries without files are dropped at the first claim
                        log.exception("event=index-error count=%d", len(written))
                written = []
        if written:
            self.batches += 1
            self.messages += len(written)
            metrics.spool_flush(len(written))
        # One wake-up per event loop for the whole batch (each call_soon_threadsafe
        # writes to the loop's self-pipe).
        outcomes: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
        for _, p, _ in written:
            outcomes.setdefault(p.loop, []).append((p.future, None))
        for p, err in failed:
            log.error("event=spool-error id=%s error=%r", p.entry.msg_id, err)
            outcomes.setdefault(p.loop, []).append((p.future, SpoolError(getattr(err, "errno", 0) or 0, str(err))))
        for loop, results in outcomes.items():
            try:
                loop.call_soon_threadsafe(_resolve_all, results)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    def _drop(self, written: list[tuple[int, _Pending, Path]], failed: list[tuple[_Pending, BaseException]],
              error: BaseException, closed: bool = False) -> None:
        """Take back files that will not be acknowledged: they fail with ``error``."""
        for fd, p, source in written:
            if not closed:
                try:
                    os.close(fd)
                except OSError:
                    pass
            for path in (source, self.queue_dir / p.entry.msg_id):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            failed.append((p, error))
        if closed:
            try:
                fsync_dir(self.queue_dir)
            except OSError:
                pass

    # -- reading ------------------------------------------------------------------------

    def path(self, msg_id: str) -> Path:
        return self.queue_dir / msg_id

    def read(self, msg_id: str) -> tuple[dict[str, Any], bytes]:
        return read_spool_file(self.path(msg_id))

    def remove(self, msg_id: str) -> None:
        """Take a finished message out of the queue (its file goes to the pool)."""
        path = self.path(msg_id)
        try:
            with self._pool_lock:
                room = len(self._pool) + len(self._freed) < POOL_FILES
            size = os.stat(path).st_size if room else POOL_FILE_MAX + 1
            if size <= POOL_FILE_MAX and self._to_pool(path, msg_id, size):
                return
            os.unlink(path)
        except FileNotFoundError:
            pass

    def _to_pool(self, path: Path, msg_id: str, size: int) -> bool:
        name = f"{os.getpid()}.{msg_id}"
        try:
            os.rename(path, self.free / name)
        except FileNotFoundError:
            raise
        except OSError:  # a full disk may refuse a directory entry; unlink needs none
            return False
        with self._pool_lock:
            self._freed.append((name, size))
        return True

    def remove_many(self, msg_ids: list[str]) -> None:
        for msg_id in msg_ids:
            self.remove(msg_id)

    def discard(self, msg_ids: list[str]) -> None:
        """Unlink finished files for good (start-up recovery: no pool to feed), durably."""
        for msg_id in msg_ids:
            try:
                os.unlink(self.path(msg_id))
            except FileNotFoundError:
                pass
        fsync_dir(self.queue_dir)

    def _drop_dead_pools(self) -> None:
        """Remove the pooled files of processes that are gone (a worker that died and
        was replaced: nobody else will reuse them)."""
        alive: dict[int, bool] = {}
        for entry in os.scandir(self.free):
            pid_text = entry.name.partition(".")[0]
            if not pid_text.isdigit() or int(pid_text) == os.getpid():
                continue
            pid = int(pid_text)
            if pid not in alive:
                try:
                    os.kill(pid, 0)
                    alive[pid] = True
                except ProcessLookupError:
                    alive[pid] = False
                except PermissionError:
                    alive[pid] = True
            if not alive[pid]:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass

    def open_stream(self) -> SpoolStream:
        """A new file in ``tmp/`` for a message written while it arrives; SpoolError
        when it cannot be made."""
        try:
            return SpoolStream(self.tmp / f"stream.{new_message_id()}")
        except OSError as e:
            raise SpoolError(e.errno or 0, str(e)) from e

    def _write_file(self, entry: SpoolEntry) -> tuple[int, Path]:
        """Write ``entry`` over a pooled file, else into a new one in ``tmp/``: the open
        fd and the path to rename into ``queue/``."""
        if entry.stream is not None:
            stream = entry.stream
            return stream.finish(entry.data, entry.envelope), stream.path
        chunks = [entry.header(), entry.data]
        with self._pool_lock:
            pooled = self._pool.pop() if self._pool else None
        if pooled is not None:
            path = self.free / pooled[0]
            try:
                return overwrite_file(path, chunks, pooled[1]), path
            except OSError:
                pass  # left in free/ for start-up to remove; a new file will do
        path = self.tmp / entry.msg_id
        return write_new_file(path, chunks), path

    def ids(self) -> Iterator[str]:
        for entry in os.scandir(self.queue_dir):
            if entry.is_file():
                yield entry.name

    def clean_tmp(self) -> int:
        """Remove files that never became durable, and the pool (start-up only: no
        committer running); returns the number of unfinished files removed."""
        _remove_all(self.free)
        return _remove_all(self.tmp)


def node_dir(root: Path, node: str) -> Path:
    """Where a node keeps the spool files only it writes (tmp/, free/, journal/): the
    spool itself on one machine, ``nodes/<node>`` on a spool several nodes share."""
    if not node:
        return root
    safe = node.replace("/", "_").replace("\x00", "_")
    if safe in (".", ".."):
        safe = f"_{safe}"
    return root / "nodes" / safe


def _remove_all(directory: Path) -> int:
    n = 0
    for entry in os.scandir(directory):
        try:
            os.unlink(entry.path)
            n += 1
        except OSError:
            pass
    return n


def _resolve_all(results: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in results:
        _resolve(future, error)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the waiting session went away (client disconnected)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def read_spool_file(path: Path) -> tuple[dict[str, Any], bytes]:
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(MAGIC2):
        return _read_v2(path, raw)
    if not raw.startswith(MAGIC):
        raise ValueError(f"{path}: not a Waypost spool file")
    rest = raw[len(MAGIC):]
    length_text, _, rest = rest.partition(b"\n")
    length = int(length_text)
    envelope = json.loads(rest[:length])
    if rest[length:length + 1] != b"\n":
        raise ValueError(f"{path}: damaged envelope")
    return envelope, rest[length + 1:]


def _read_v2(path: Path, raw: bytes) -> tuple[dict[str, Any], bytes]:
    """Spool format 2 (see the module docstring): text, head, envelope, trailer."""
    trailer = raw[-_TRAILER:]
    try:
        if len(raw) < len(MAGIC2) + _TRAILER or not trailer.endswith(b"\n"):
            raise ValueError
        head_text, _, env_text = trailer[:-1].partition(b" ")
        head_at, env_at = int(head_text), int(env_text)
        if not len(MAGIC2) <= head_at <= env_at <= len(raw) - _TRAILER:
            raise ValueError
        envelope = json.loads(raw[env_at:len(raw) - _TRAILER])
    except ValueError:
        raise ValueError(f"{path}: damaged spool file (version 2)") from None
    view = memoryview(raw)
    return envelope, b"".join((view[head_at:env_at], view[len(MAGIC2):head_at]))
