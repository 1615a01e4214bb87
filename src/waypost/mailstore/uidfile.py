"""The UID file: a mailbox's UIDs in order, packed, beside its Maildir (``waypost.uids``).

SELECT needs the sequence-number <-> UID map of the whole mailbox; read from the index
it is one row per message (100,000 rows: hundreds of milliseconds in a process that
just started).  This file holds the same map as 4 octets per UID, opened and checked
in about a millisecond by any worker or node that shares the file system.

It is a cache, never the truth: every read checks its stamp (mailbox id, UIDVALIDITY,
UIDNEXT, HIGHESTMODSEQ, message count) against the index, and its CRC.  The id is
never given twice and HIGHESTMODSEQ grows with every append, expunge and flag change,
so a stamp equal to the index's names exactly one set of UIDs; a file left behind by
a crash, by a mailbox deleted and made again under the same name (a new id and
UIDVALIDITY), or by a writer that lost a race is stale and is not trusted.  A stale
file is brought up to date from the index's change log (the UIDs added and expunged
since its HIGHESTMODSEQ) when that is cheap, and rewritten when it fell far behind.

Writes go to a private name in the Maildir's ``tmp/`` and are renamed over the file: a reader sees
the old file or the new one, never half of one.  No flush: a file torn by a power cut
fails its length or CRC check and is rebuilt from the index.

Layout (little-endian): magic ``WPUIDS01``, mailbox id (u64), UIDVALIDITY (u32),
count (u32), UIDNEXT (u64), HIGHESTMODSEQ (u64), CRC-32 of the rest (u32); then
``count`` UIDs (u32 each) and the mailbox's keywords, UTF-8, separated by spaces.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import zlib
from array import array
from pathlib import Path

__all__ = ["NAME", "Stamp", "read", "write"]

#: The file's name in the mailbox's Maildir directory (beside cur/ new/ tmp/; a
#: Maildir++ folder starts with "." so no folder can have this name).
NAME = "waypost.uids"
_MAGIC = b"WPUIDS01"
_HEAD = struct.Struct("<8sQIIQQI")
_SWAP = sys.byteorder != "little"

#: (mailbox id, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, message count)
Stamp = tuple[int, int, int, int, int]


def read(directory: Path, mailbox_id: int, uidvalidity: int) -> tuple[Stamp, array[int], frozenset[str]] | None:
    """(stamp, UIDs, keywords) of the file in ``directory`` when it is whole and of this
    mailbox (id and UIDVALIDITY); None otherwise.  The caller compares the stamp with
    the index's state."""
    try:
        with open(directory / NAME, "rb") as f:
            data = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if len(data) < _HEAD.size:
        return None
    magic, box_id, validity, count, uidnext, modseq, crc = _HEAD.unpack_from(data)
    if magic != _MAGIC or box_id != mailbox_id or validity != uidvalidity:
        return None
    body = memoryview(data)[_HEAD.size:]
    if len(body) < 4 * count or zlib.crc32(body) != crc:
        return None
    uids = array("I")
    uids.frombytes(body[:4 * count])
    if _SWAP:
        uids.byteswap()
    words = bytes(body[4 * count:]).decode("utf-8", "replace").split()
    return (box_id, validity, uidnext, modseq, count), uids, frozenset(words)


_serial = 0
_serial_lock = threading.Lock()


def write(directory: Path, stamp: Stamp, uids: array[int], keywords: frozenset[str]) -> bool:
    """Replace the file with ``uids`` at ``stamp``; False (and nothing left behind) when
    the directory is gone or cannot be written: the next SELECT reads the index."""
    global _serial
    box_id, validity, uidnext, modseq, count = stamp
    if len(uids) != count:
        raise ValueError("the UIDs do not match the stamp's count")
    if _SWAP:
        uids = array("I", uids)
        uids.byteswap()
    body = uids.tobytes() + " ".join(sorted(keywords)).encode("utf-8")
    head = _HEAD.pack(_MAGIC, box_id, validity, count, uidnext, modseq, zlib.crc32(body))
    with _serial_lock:
        _serial += 1
        serial = _serial
    # Made in the Maildir's own tmp/ (which every reader of a Maildir skips).
    tmp = directory / "tmp" / f"{NAME}.{os.getpid()}.{serial}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(head + body)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, directory / NAME)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    return True
