"""The Mailstore: Maildir files, the mailbox index beside them, and delivery.

The files are the truth for *what* is in a mailbox; the index (``waypost.db``) gives each
file its UID, flags and mod-sequence.  Every change is made file first, index second,
so that a crash in between is repaired by ``sync`` (a file the index does not know is
indexed; an index row whose file is gone is expunged):

* delivery and APPEND write ``tmp/``, make the data durable, rename into ``new/`` (or
  ``cur/``), make the directory durable, then index the file;
* EXPUNGE unlinks the files, then removes their rows.

A writer holds the mailbox's indexing lock (``Mailstore.indexing``) from the move of its
files into ``new/`` or ``cur/`` to their indexing, and ``sync`` holds it while it scans,
so a message being stored is never indexed by a scan as a file dropped in.

Files are never renamed after they are stored: flags live in the index (a file picked
up by ``sync`` brings the flags of its ``:2,`` info).  COPY hard-links the file under a
new name, so a message copied or filed into a shared mailbox is one file on disk.
Each change is announced on the bus as ``mailbox <id>``.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import itertools
import logging
import re
from array import array
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Mapping, Sequence

from ..bus import Bus
from ..db import Conflict, Database, MailboxRecord, MessageRecord, NotFound, SortKeys
from ..fsutil import durable_batch, fsync_dir, write_new_file
from . import uidfile
from .quota import OverQuota, Quota, quota_of

__all__ = ["Delivery", "ListingIndex", "Mailstore", "MailboxNameError", "MailboxNameTooLong", "SPECIAL_USE", "Selection",
           "account_topic", "topic"]

log = logging.getLogger("waypost.mailstore")

_SUBDIRS = ("cur", "new", "tmp")

#: The folders every new account gets, with their RFC 6154 attribute.
SPECIAL_USE = (("Drafts", "\\Drafts"), ("Sent", "\\Sent"), ("Junk", "\\Junk"), ("Trash", "\\Trash"))

#: Maildir info letters (the ``:2,`` part of a file name) and the IMAP flags they stand for.
_INFO_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}
_FLAG_INFO = {v: k for k, v in _INFO_FLAGS.items()}

#: Mailbox listings kept in memory per process (see ``Mailstore.listing``), and the
#: message records they may hold in all unless told otherwise (``storage.listing_cache``).
_MAX_LISTINGS = 32
LISTING_CACHE = 200_000
#: Maildir directories this process knows to exist, and mailboxes whose directories it
#: scanned: a few hundred bytes each, bounded all the same (least recently used go).
_MAX_KNOWN_DIRS = 4096
_MAX_SCANNED = 4096
#: A writer that holds a mailbox's indexing lock and finds its directories as the last
#: scan left them carries that scan over its own change (``_carry_scan``), so that the
#: next SELECT in any worker does not list the whole Maildir again; for mailboxes of
#: at least this many messages (below, a scan is cheaper than the index write).
SCAN_CARRY_MIN = 1000
#: A mailbox's UID file (``uidfile``) brought up to date from the index's change log is
#: written again once it is this many changes behind (a SELECT after a restart reads
#: at most about this many rows besides the file).
UID_FILE_REWRITE = 256

#: Mailbox names: at most this many octets (UTF-8), levels, and octets per level.
MAX_NAME = 512
MAX_LEVELS = 16
SEPARATOR = "/"


class MailboxNameError(ValueError):
    """The name cannot be a mailbox (empty level, control character, too long, ...)."""


class MailboxNameTooLong(MailboxNameError):
    """The name is valid but longer than the file system can hold as a directory."""


#: The bus topic that makes every worker drop its cached listings.
LISTINGS_TOPIC = "listings"


@dataclass(frozen=True, slots=True)
class ListingIndex:
    """What a session needs of a listing to select the mailbox (``listing_index``)."""

    uids: array[int]
    by_uid: dict[int, MessageRecord]
    keywords: frozenset[str]


@dataclass(frozen=True, slots=True)
class Selection:
    """What SELECT needs of a mailbox at one index ``state`` (``Mailstore.selection``):
    its UIDs in order and its keywords, and its message records by UID when this
    process has them at hand (else None: ``listing`` reads them when a command needs
    them).  Shared and read-only: a session copies ``uids`` before changing them."""

    state: tuple[int, int, int]
    uids: array[int]
    keywords: frozenset[str]
    records: Mapping[int, MessageRecord] | None


def topic(mailbox_id: int) -> str:
    """The bus topic announcing a change to a mailbox."""
    return f"mailbox {mailbox_id}"


def account_topic(domain: str, account: str) -> str:
    """The bus topic announcing a change to an account's list of mailboxes or of
    subscriptions (IMAP NOTIFY, RFC 5465 MailboxName and SubscriptionChange)."""
    return f"account {account}@{domain}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one mailbox.  With a ``key`` (the queue id and recipient) the
    file's name is made of it and of ``date`` instead of a fresh unique name, so a
    delivery made again (``retry``: the queue may have stored it before a crash kept it
    from recording that) is recognised and not stored twice."""

    domain: str
    account: str
    data: bytes | tuple[bytes, ...]  # chunks are written one after the other (no joined copy)
    mailbox: str = "INBOX"
    key: str = ""
    date: float = 0.0
    retry: bool = False
    flags: tuple[str, ...] = ()      # set in the index (Sieve imap4flags, RFC 5232)
    # The creation stamp of the account the message was accepted for (0: not checked):
    # stored only while ``account`` is still that account (``AccountGone`` otherwise).
    owner: float = 0.0


class AccountGone(OSError):
    """The account a delivery was accepted for was removed (or its name made again:
    another account now), as a file system says a path is gone."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOENT, message)


def normalize_name(name: str) -> str:
    """The stored form of a mailbox name: "INBOX" in any case is "INBOX" (RFC 3501
    §5.1), also as the first level of a hierarchy; no empty level; no trailing
    separator."""
    if not name or len(name.encode("utf-8")) > MAX_NAME:
        raise MailboxNameError("a mailbox name is 1 to 512 octets")
    name = name.rstrip(SEPARATOR)
    levels = name.split(SEPARATOR)
    if len(levels) > MAX_LEVELS:
        raise MailboxNameError(f"at most {MAX_LEVELS} levels")
    for level in levels:
        if not level or level in (".", ".."):
            raise MailboxNameError("empty or dot level in the mailbox name")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in level):
            raise MailboxNameError("control character in the mailbox name")
    if levels[0].upper() == "INBOX":
        levels[0] = "INBOX"
    return SEPARATOR.join(levels)


def folder_of(name: str) -> str:
    """The Maildir++ directory of a mailbox: "" for INBOX, ``.Archive.2026`` for
    ``Archive/2026`` ("." and "%" inside a level are written %2E and %25)."""
    if name == "INBOX":
        return ""
    levels = name.split(SEPARATOR)
    return "." + ".".join(lv.replace("%", "%25").replace(".", "%2E") for lv in levels)


def flags_from_info(filename: str) -> tuple[str, ...]:
    _, sep, info = filename.partition(":2,")
    if not sep:
        return ()
    flags = _FLAGS_OF_INFO.get(info)
    if flags is None:
        flags = tuple(_INFO_FLAGS[c] for c in sorted(set(info)) if c in _INFO_FLAGS)
        if len(_FLAGS_OF_INFO) < 1024:  # a handful in practice ("S", "RS", "FS", ...)
            _FLAGS_OF_INFO[info] = flags
    return flags


_FLAGS_OF_INFO: dict[str, tuple[str, ...]] = {}
_LOCK_STRIPES = 256


def info_of(flags: Sequence[str]) -> str:
    return ":2," + "".join(sorted(_FLAG_INFO[f] for f in flags if f in _FLAG_INFO))


class Mailstore:
    def __init__(self, root: Path, hostname: str | None = None, db: Database | None = None,
                 bus: Bus | None = None, listing_cache: int = LISTING_CACHE) -> None:
        self.root = root
        self._listing_cache = listing_cache
        self.db = db
        self.bus = bus
        # Called after every copy between mailboxes as on_copy(src, dst, paths of the
        # copies): Rspamd learning (waypost.mailauth.learn) hears moves into and out of Junk.
        self.on_copy: Callable[[MailboxRecord, MailboxRecord, list[Path]], None] | None = None
        # Makes a message list's sort keys from the start of a message (its header), kept
        # in the index as each message is stored so that no sort reads the files (set by
        # the server: ``waypost.imap.message.list_keys``; None: the list makes them from
        # the files once).
        self.sort_keys: Callable[[bytes, float], SortKeys] | None = None
        # Maildir unique names: time.MusecPpidQn.host (the "/" and ":" of a host
        # name are encoded as the Maildir convention asks).
        host = hostname or socket.gethostname()
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._counter = itertools.count()
        # Maildirs made or seen by this process: a hint only, checked with one stat at
        # each use, since another worker may delete or rename them (and make them again).
        self._known: OrderedDict[Path, None] = OrderedDict()
        # The longest directory name the file system takes (NAME_MAX, 255 on most).
        try:
            self._name_max = os.pathconf(root if root.exists() else "/", "PC_NAME_MAX")
        except (OSError, ValueError):
            self._name_max = 255
        self._held = threading.local()  # account locks this thread holds (re-entrant)
        self._lock = threading.Lock()
        # Two threads bringing one mailbox's index up to date (a login warming INBOX,
        # the SELECT that follows) take turns: the second then finds nothing to do.
        self._sync_locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]
        self._account_locks = [threading.RLock() for _ in range(_LOCK_STRIPES)]
        # mailbox id -> (new, cur) mtimes last synced (ids are never reused)
        self._scanned: OrderedDict[int, tuple[int, int]] = OrderedDict()
        # mailbox id -> (index state, its messages): the last listing this process read,
        # shared by its sessions while the mailbox does not change (records are never
        # modified in place).
        # Bounded by entries and by message records in all (``_keep_listing``).
        self._listings: OrderedDict[int, tuple[tuple[int, int, int], list[MessageRecord]]] = OrderedDict()
        self._listed = 0  # message records in _listings
        # One thread of this process reads (or patches) a mailbox's listing at a time;
        # the others wait and take what it read.  (After a restart, the sessions that
        # one delivery to a big mailbox wakes would each read it whole at once.)
        self._listing_locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        # mailbox id -> (the listing's message list, (UIDs, records by UID, keywords)):
        # worked out once per cached listing (``listing_index``), gone with it.
        self._indexes: dict[int, tuple[list[MessageRecord], ListingIndex]] = {}
        # mailbox id -> (UID file stamp, UIDs, keywords): the last UID file this process
        # read, patched or wrote (``selection``); the id is never reused and the stamp
        # holds the index state, so an entry is only used for exactly that state.
        self._uid_files: OrderedDict[int, tuple[uidfile.Stamp, array[int], frozenset[str]]] = OrderedDict()
        # mailbox id -> ((since, index state), what changed): see ``changes``.
        self._changes: dict[int, tuple[tuple[int, tuple[int, int, int]],
                                       tuple[list[MessageRecord], list[int] | None]]] = {}
        # mailbox id -> (bus serial, (mailbox row, index state)): see ``woken_state``.
        self._woken: dict[int, tuple[int, tuple[MailboxRecord, tuple[int, int, int]]]] = {}
        # mailbox id -> (index state, first UID without \Seen): see ``first_unseen``.
        self._unseen: dict[int, tuple[tuple[int, int, int], int | None]] = {}

    # -- paths and names --------------------------------------------------------------

    def account_path(self, domain: str, account: str) -> Path:
        return self.root / domain / account

    def mailbox_path(self, domain: str, account: str, mailbox: str = "INBOX") -> Path:
        return self.account_path(domain, account) / folder_of(normalize_name(mailbox))

    def box_path(self, box: MailboxRecord) -> Path:
        return self.account_path(box.domain, box.account) / box.folder

    def file_path(self, box: MailboxRecord, msg: MessageRecord) -> Path:
        return self.box_path(box) / msg.subdir / msg.name

    def ensure(self, path: Path) -> None:
        """Create the Maildir (0700) if needed; every directory created is made durable
        in its parent, so a new mailbox survives a power cut like its first message.

        A directory this process made before is checked with one stat: another worker
        may have deleted it since (DELETE, RENAME), and the same path may be a new
        mailbox now."""
        if path in self._known:
            if os.path.isdir(path / "tmp"):
                return
            with self._lock:
                self._known.pop(path, None)
        created: list[Path] = []
        for parent in reversed([path, *path.parents]):
            if not parent.exists() and self.root in (parent, *parent.parents):
                parent.mkdir(mode=0o700, exist_ok=True)
                created.append(parent)
        for sub in _SUBDIRS:
            if not (path / sub).exists():
                (path / sub).mkdir(mode=0o700, exist_ok=True)
                created.append(path / sub)
        for d in {c.parent for c in created}:
            fsync_dir(d)
        with self._lock:
            self._known[path] = None
            while len(self._known) > _MAX_KNOWN_DIRS:
                self._known.popitem(last=False)

    def ensure_dir(self, path: Path) -> None:
        """Create the directory ``path`` under the root (0700, durable in its parent),
        not a Maildir: a domain's directory, which holds its accounts' Maildirs."""
        if os.path.isdir(path):
            return
        for parent in reversed([path, *path.parents]):
            if not parent.exists() and self.root in (parent, *parent.parents):
                parent.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(parent.parent)

    def _forget_dir(self, path: Path) -> None:
        with self._lock:
            self._known.pop(path, None)

    def check_folder(self, name: str) -> str:
        """The Maildir++ folder of mailbox ``name``, which must fit in one directory
        name of the file system (a folder holds every level of the name)."""
        folder = folder_of(name)
        if len(os.fsencode(folder)) > self._name_max:
            raise MailboxNameTooLong(
                f"the mailbox name is too long for the file system ({self._name_max} octets for all levels)")
        return folder

    @contextmanager
    def account_locked(self, domain: str, account: str) -> Iterator[None]:
        """Hold the account's mailbox lock: CREATE, DELETE and RENAME of its mailboxes
        run one at a time across threads, sessions and worker processes (an exclusive
        ``flock`` on the account's directory, re-entrant within a thread)."""
        key = (domain, account)
        held: dict[tuple[str, str], int] = self._held.__dict__.setdefault("held", {})
        if held.get(key):
            held[key] += 1
            try:
                yield
            finally:
                held[key] -= 1
            return
        path = self.account_path(domain, account)
        while True:
            self.ensure(path)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:  # moved aside by a removal since ``ensure``: again
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            # ``retire_account`` moves the directory aside under this lock: a waiter
            # then holds the lock of the moved one, not the name's.  Again, on the new one.
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            held[key] = 1
            try:
                yield
            finally:
                held.pop(key, None)
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def names_locked(self, domain: str, shared: bool = False) -> Iterator[None]:
        """Hold the lock of the domain's account names (a ``flock`` on the domain's
        directory, across threads, worker processes and the CLI): exclusive while an
        account of the domain is made or removed (``account add`` looks the name up,
        retires what a cut-short removal left and makes the account as one step, so
        that of two adds of one name the loser never retires the winner's new mail);
        shared while a delivery checks that each account it stores for is still the
        one the message was accepted for, and stores.  Taken before any account lock.

        A writer waits ahead of readers that come after it: ``flock`` alone lets shared
        holders that overlap (a busy domain's deliveries) keep an exclusive one waiting
        for as long as they come.  So every holder first passes a gate (an exclusive
        ``flock`` on ``<domain>/.names-gate``; no account name starts with a dot): a
        reader holds it only while it takes its shared lock, a writer until it has its
        exclusive one, and readers arriving meanwhile wait at the gate."""
        path = self.root / domain
        self.ensure_dir(path)
        gate = os.open(path / ".names-gate", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(gate, fcntl.LOCK_EX)
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                finally:
                    fcntl.flock(gate, fcntl.LOCK_UN)
                yield
            finally:
                os.close(fd)  # releases the lock
        finally:
            os.close(gate)

    @contextmanager
    def indexing(self, *paths: Path, wait: bool = True, missing_ok: bool = False) -> Iterator[bool]:
        """Hold the indexing lock of these Maildirs (an exclusive ``flock`` on each one's
        ``tmp/``, in path order), across threads and worker processes.  A writer holds
        it from moving its files into ``new/`` or ``cur/`` until it has indexed them, and
        ``sync`` while it lists and indexes: so ``sync`` never takes a file a writer is
        about to index for one another program dropped in (indexed with its size and
        internal date unknown, and the writer's own record then lost).  Yields False,
        holding nothing, when ``wait`` is false and another holder has one of them.
        ``FileNotFoundError`` for a Maildir that is gone, unless ``missing_ok`` (a
        writer's files then fail to move there: the mailbox was deleted)."""
        fds: list[int] = []
        try:
            for path in sorted(set(paths)):
                try:
                    fd = os.open(path / "tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except FileNotFoundError:
                    if missing_ok:
                        continue
                    raise
                fds.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield False
                    return
            yield True
        finally:
            for fd in fds:
                os.close(fd)  # releases its lock

    def unique_name(self, size: int) -> str:
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{next(self._counter)}.{self._host},S={size}"

    def keyed_name(self, key: str, date: float, size: int) -> str:
        """The Maildir name of a queued delivery: the same on every attempt, by any node
        (the queue id makes it unique; no host name in it, so that a node taking over a
        dead node's delivery recognises a copy the dead one stored: docs/cluster.md)."""
        return f"{int(date)}.Q{key}.waypost,S={size}"

    def _db(self) -> Database:
        if self.db is None:
            raise RuntimeError("this Mailstore has no index")
        return self.db

    def changed(self, box: MailboxRecord | int) -> None:
        if self.bus is not None:
            self.bus.publish(topic(box if isinstance(box, int) else box.id))

    def account_changed(self, domain: str, account: str) -> None:
        if self.bus is not None:
            self.bus.publish(account_topic(domain, account))

    # -- mailboxes ----------------------------------------------------------------------

    def ensure_account(self, domain: str, account: str) -> MailboxRecord:
        """The account's INBOX; the first call also creates the special-use folders
        (RFC 6154) and subscribes to them."""
        db = self._db()
        inbox = db.mailbox_get(domain, account, "INBOX")
        if inbox is not None:
            return inbox
        with self._account_locks[hash((domain, account)) % _LOCK_STRIPES]:
            inbox = db.mailbox_get(domain, account, "INBOX")
            if inbox is not None:
                return inbox
            return self._create_account(domain, account)

    def _create_account(self, domain: str, account: str) -> MailboxRecord:
        db = self._db()
        inbox = self._create(domain, account, "INBOX")
        for name, use in SPECIAL_USE:
            if db.mailbox_get(domain, account, name) is None:
                self._create(domain, account, name, use)
            db.subscription_set(domain, account, name, True)
        db.subscription_set(domain, account, "INBOX", True)
        self._apply_template(domain, account)
        return inbox

    def _apply_template(self, domain: str, account: str) -> None:
        """The domain's account template (``waypost domain template``): initial
        mailboxes, subscriptions and mailbox aliases of every new account."""
        db = self._db()
        record = db.get_domain(domain)
        template = (record.settings.get("template") if record is not None else None) or {}
        for name in template.get("mailboxes", []):
            try:
                self.create(domain, account, name)
            except (Conflict, MailboxNameError) as e:
                log.info("event=template-mailbox-skipped account=%s@%s mailbox=%s reason=%s", account, domain, name, e)
        for name in template.get("subscriptions", []):
            db.subscription_set(domain, account, name, True)
        for alias, target in (template.get("aliases") or {}).items():
            db.mailbox_alias_set(domain, account, alias, target)

    def _create(self, domain: str, account: str, name: str, special_use: str = "") -> MailboxRecord:
        db = self._db()
        folder = self.check_folder(name)
        self.ensure(self.account_path(domain, account) / folder)
        try:
            return db.mailbox_create(domain, account, name, folder, _uidvalidity(), special_use)
        except Conflict:  # another session or worker made it first
            box = db.mailbox_get(domain, account, name)
            if box is None:
                raise
            return box

    def mailboxes(self, domain: str, account: str) -> list[MailboxRecord]:
        self.ensure_account(domain, account)
        return self._db().mailbox_list(domain, account)

    def get(self, domain: str, account: str, name: str) -> MailboxRecord | None:
        """The mailbox, or None; ``name`` in any case for INBOX."""
        name = normalize_name(name)
        if name == "INBOX":
            return self.ensure_account(domain, account)
        return self._db().mailbox_get(domain, account, name)

    def create(self, domain: str, account: str, name: str) -> MailboxRecord:
        """Create a mailbox (and its missing parents, RFC 3501 §6.3.3).  Raises
        ``Conflict`` when it exists, ``MailboxNameError`` for a bad name
        (``MailboxNameTooLong`` for one the file system cannot hold)."""
        name = normalize_name(name)
        folder = self.check_folder(name)
        self.ensure_account(domain, account)
        db = self._db()
        with self.account_locked(domain, account):
            if db.mailbox_get(domain, account, name) is not None:
                raise Conflict(f"mailbox {name!r} exists")
            levels = name.split(SEPARATOR)
            for i in range(1, len(levels)):
                parent = SEPARATOR.join(levels[:i])
                if db.mailbox_get(domain, account, parent) is None:
                    self._create(domain, account, parent)
            self.ensure(self.account_path(domain, account) / folder)
            box = db.mailbox_create(domain, account, name, folder, _uidvalidity())
        self.account_changed(domain, account)
        return box

    def _current(self, box: MailboxRecord) -> MailboxRecord:
        """``box`` as the index has it now (under the account lock): NotFound when it
        was deleted or renamed by another session since the caller looked it up."""
        current = self._db().mailbox_by_id(box.id)
        if current is None or current.name != box.name or current.uidvalidity != box.uidvalidity:
            raise NotFound(f"mailbox {box.name!r}")
        return current

    def delete(self, box: MailboxRecord) -> None:
        """Delete a mailbox and its messages (not INBOX; RFC 3501 §6.3.4).  Raises
        NotFound when it is gone already, Conflict when it has children."""
        if box.name == "INBOX":
            raise MailboxNameError("INBOX cannot be deleted")
        db = self._db()
        with self.account_locked(box.domain, box.account):
            box = self._current(box)
            if any(b.name.startswith(box.name + SEPARATOR) for b in db.mailbox_list(box.domain, box.account)):
                raise Conflict(f"mailbox {box.name!r} has children")
            path = self.box_path(box)
            db.mailbox_delete(box.id)
            self._scanned.pop(box.id, None)
            self._drop_listing(box.id)
            db.set_mark(f"maildir-scan:{box.id}", None)
            self._forget_dir(path)
            # The index row goes first: a crash now leaves a directory without a row,
            # which nothing lists; the next CREATE of that name reuses the directory.
            shutil.rmtree(path, ignore_errors=True)
            fsync_dir(path.parent)
        self.changed(box)
        self.account_changed(box.domain, box.account)

    def retire_account(self, domain: str, account: str) -> Path | None:
        """An account was removed: its mailboxes leave the index and its Maildir is moved
        aside to ``<domain>/.removed.<account>.<time>`` (kept on disk, never listed: no
        account name starts with a dot), so an account made later under the same name
        starts empty instead of finding the old owner's mail.  Returns where the files
        went (None when the account had none)."""
        db = self._db()
        path = self.account_path(domain, account)
        if not path.is_dir() and not db.mailbox_list(domain, account):
            return None
        boxes: list[MailboxRecord] = []
        moved: Path | None = None
        with self.account_locked(domain, account):
            for box in db.mailbox_list(domain, account):
                db.mailbox_delete(box.id)
                self._scanned.pop(box.id, None)
                self._drop_listing(box.id)
                db.set_mark(f"maildir-scan:{box.id}", None)
                boxes.append(box)
            with self._lock:
                for known in [k for k in self._known if path in (k, *k.parents)]:
                    self._known.pop(known, None)
            if path.is_dir():
                moved = path.with_name(f".removed.{account}.{time.time_ns()}")
                os.rename(path, moved)
                fsync_dir(path.parent)
        for box in boxes:
            self.changed(box)
        self.account_changed(domain, account)
        return moved

    def rename(self, box: MailboxRecord, new_name: str) -> MailboxRecord:
        """Rename a mailbox and its children (RFC 3501 §6.3.5).  Renaming INBOX moves
        its messages into the new mailbox and leaves INBOX empty.  Raises NotFound
        when ``box`` was deleted or renamed meanwhile, Conflict when the name is taken."""
        new_name = normalize_name(new_name)
        self.check_folder(new_name)
        db = self._db()
        with self.account_locked(box.domain, box.account):
            box = self._current(box)
            if db.mailbox_get(box.domain, box.account, new_name) is not None:
                raise Conflict(f"mailbox {new_name!r} exists")
            if new_name == box.name or new_name.startswith(box.name + SEPARATOR):
                raise MailboxNameError("a mailbox cannot be renamed into itself")
            moved = [box] + [b for b in db.mailbox_list(box.domain, box.account)
                             if b.name.startswith(box.name + SEPARATOR)]
            for b in moved:  # every new name must fit before anything moves
                self.check_folder(new_name + b.name[len(box.name):])
            if box.name == "INBOX":
                target = self.create(box.domain, box.account, new_name)
                msgs = self.messages(box)
                self.copy(box, msgs, target, quota=False)
                self.expunge(box, msgs)
                return target
            levels = new_name.split(SEPARATOR)
            for i in range(1, len(levels)):
                parent = SEPARATOR.join(levels[:i])
                if db.mailbox_get(box.domain, box.account, parent) is None:
                    self._create(box.domain, box.account, parent)
            base = self.account_path(box.domain, box.account)
            out = box
            for b in moved:
                name = new_name + b.name[len(box.name):]
                folder = folder_of(name)
                try:
                    os.rename(base / b.folder, base / folder)
                except FileNotFoundError:
                    # No directory (a crash between a DELETE's two steps, or files
                    # removed by hand): the mailbox is empty; it gets its directory.
                    self.ensure(base / folder)
                self._forget_dir(base / b.folder)
                renamed = db.mailbox_rename(b.id, name, folder)
                if b.id == box.id:
                    out = renamed
                self.changed(b)
            fsync_dir(base)
        self.account_changed(box.domain, box.account)
        return out

    # -- subscriptions ------------------------------------------------------------------

    def subscriptions(self, domain: str, account: str) -> list[str]:
        return self._db().subscription_list(domain, account)

    def subscribe(self, domain: str, account: str, name: str, on: bool = True) -> None:
        self._db().subscription_set(domain, account, normalize_name(name), on)
        self.account_changed(domain, account)

    # -- messages -----------------------------------------------------------------------

    def sync(self, box: MailboxRecord, force: bool = False, wait: bool = True) -> bool:
        """Bring the index in line with the Maildir: index files it does not know (in
        file-name order, which is arrival order), expunge rows whose file is gone.
        Cheap when neither ``new/`` nor ``cur/`` changed since the last call in this
        process.  Returns whether the index changed.  ``wait=False`` (callers on the
        event loop): when another thread is syncing this mailbox, return False at once
        instead of blocking every session of the worker; that thread announces what
        it indexes."""
        lock = self._sync_locks[box.id % _LOCK_STRIPES]
        if not lock.acquire(blocking=wait):
            return False
        try:
            return self._sync(box, force, wait)
        finally:
            lock.release()

    def _sync(self, box: MailboxRecord, force: bool, wait: bool = True) -> bool:
        path = self.box_path(box)
        try:
            if not force and self._scanned.get(box.id) == _scan_key(path):
                return False  # the common case, without the lock
            with self.indexing(path, wait=wait) as held:
                if not held:
                    return False  # a writer is indexing: it announces what it adds
                return self._scan(box, path, force)
        except FileNotFoundError:
            # Renamed or deleted by another session: never recreate the old folder
            # (that would expunge every message of the mailbox).
            current = self._db().mailbox_by_id(box.id)
            if current is None:
                return False
            if current.folder != box.folder:
                return self._sync(current, force, wait)
            self.ensure(path)
            return False

    def _scan(self, box: MailboxRecord, path: Path, force: bool) -> bool:
        key = _scan_key(path)
        if not force and self._scanned.get(box.id) == key:
            return False
        db = self._db()
        shared = f"maildir-scan:{box.id}"
        if not force and db.get_mark(shared) == list(key):
            # Another worker scanned these very directories: nothing new since.
            self._scanned_at(box, key)
            return False
        on_disk: dict[str, str] = {}
        for sub in ("new", "cur"):
            for name in os.listdir(path / sub):
                if not name.startswith("."):
                    on_disk[name] = sub
        state, listed = self.listing(box)
        indexed = {m.name: m for m in listed}
        fresh: list[tuple[str, str, tuple[str, ...], int, float]] = []
        base = str(path)
        for name in sorted(n for n in on_disk if n not in indexed):
            sub = on_disk[name]
            found = _size_from_name(f"{base}/{sub}/{name}", name)
            if found is None:
                continue
            fresh.append((name, sub, flags_from_info(name), found[0], found[1]))
        gone = [m.uid for n, m in indexed.items() if n not in on_disk]
        if fresh:
            added = db.message_add(box.id, fresh)
            if not gone:
                self._extend_listing(box, state, listed, added)
        if gone:
            db.message_expunge(box.id, gone)
        self._scanned_at(box, key)
        db.set_mark(shared, list(key))
        if fresh or gone:
            self.changed(box)
        return bool(fresh or gone)

    def _scanned_at(self, box: MailboxRecord, key: tuple[int, int]) -> None:
        self._scanned[box.id] = key
        self._scanned.move_to_end(box.id)
        while len(self._scanned) > _MAX_SCANNED:
            try:
                self._scanned.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break

    def _carry_scan(self, box: MailboxRecord, path: Path, before: tuple[int, int] | None) -> None:
        """A writer holding the indexing lock of ``path`` changed its files and indexed
        the change itself: when the directories were, before that change, as the last
        scan left them (``before`` equal to the scan's key, here or in the index's shared
        mark), everything in them is indexed now too, and the scan is carried over to
        their new key.  No other writer and no scan can have changed them in between
        (all hold that lock); a program that drops files in without it changes the key
        again later, or did so before (then nothing is carried and the next SELECT scans).
        Only for big mailboxes: for small ones a scan costs less than the write."""
        if before is None or box.exists < SCAN_CARRY_MIN:
            return
        after = _key_or_none(path)
        if after is None or after == before:
            return
        if self._scanned.get(box.id) == before:
            self._scanned_at(box, after)
        shared = f"maildir-scan:{box.id}"
        db = self._db()
        if db.get_mark(shared) == list(before):
            db.set_mark(shared, list(after))

    def sized(self, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> dict[int, MessageRecord]:
        """The messages among ``msgs`` whose size was not checked yet (files another
        program dropped in), with their size as sent, now checked and kept in the
        index: UID -> new record.  The records given are not changed."""
        todo = [m for m in msgs if m.size < 0]
        if not todo:
            return {}
        # Another session (or worker) may have checked them already.
        known = {m.uid: m.size for m in self._db().message_list(box.id) if m.size >= 0}
        base = str(self.box_path(box))
        out: dict[int, MessageRecord] = {}
        checked: list[tuple[int, int]] = []
        for m in todo:
            size = known.get(m.uid)
            if size is None:
                size = _crlf_size(f"{base}/{m.subdir}/{m.name}")
                if size is None:
                    continue
                checked.append((m.uid, size))
            out[m.uid] = MessageRecord(m.uid, m.name, m.subdir, m.flags, m.modseq, size, m.internaldate, m.savedate)
        if checked:
            self._db().message_set_sizes(box.id, checked)
            if self.bus is not None:
                self.bus.publish(LISTINGS_TOPIC)  # every worker drops its listings
        self._drop_listing(box.id)
        return out

    def forget_listings(self) -> None:
        """Drop the listings this process keeps (sizes were checked elsewhere)."""
        with self._lock:
            self._listings.clear()
            self._listed = 0

    def _keep_listing(self, mailbox_id: int, entry: tuple[tuple[int, int, int], list[MessageRecord]]) -> None:
        """Cache a listing; the least recently used go while there are more than
        ``_MAX_LISTINGS`` or more than ``listing_cache`` message records in all (the
        newest is kept even alone above the bound: its sessions hold it anyway)."""
        with self._lock:
            old = self._listings.pop(mailbox_id, None)
            if old is not None:
                self._listed -= len(old[1])
                self._indexes.pop(mailbox_id, None)
            self._listings[mailbox_id] = entry
            self._listed += len(entry[1])
            while len(self._listings) > 1 and (len(self._listings) > _MAX_LISTINGS
                                               or self._listed > self._listing_cache):
                gone, dropped = self._listings.popitem(last=False)
                self._listed -= len(dropped[1])
                self._indexes.pop(gone, None)

    def _drop_listing(self, mailbox_id: int) -> None:
        with self._lock:
            old = self._listings.pop(mailbox_id, None)
            self._indexes.pop(mailbox_id, None)
            if old is not None:
                self._listed -= len(old[1])

    def changes(self, mailbox_id: int, since: int,
                state: tuple[int, int, int]) -> tuple[list[MessageRecord], list[int] | None]:
        """``db.message_changes(mailbox_id, since)``, read by a session that saw the index
        at ``state`` (read before this call).  The sessions of this process that ask
        for the same mailbox, mod-sequence and state share one read: the answer was
        read after that state was seen, and while the state is the same nothing has
        changed since, so it holds everything each of them would have read.  One entry
        per mailbox, bounded; read-only lists."""
        key = (since, state)
        hit = self._changes.get(mailbox_id)
        if hit is not None and hit[0] == key:
            return hit[1]
        result = self._db().message_changes(mailbox_id, since)
        if len(self._changes) >= 4 * _MAX_LISTINGS:
            self._changes.clear()
        self._changes[mailbox_id] = (key, result)
        return result

    def first_unseen(self, mailbox_id: int, state: tuple[int, int, int]) -> int | None:
        """``db.message_first_unseen(mailbox_id, state's UIDNEXT)`` (the owner's view, for
        SELECT's [UNSEEN]), read by a session that saw the index at ``state``.  Shared
        by the sessions of this process that ask at the same state, as ``changes``:
        every flag change and expunge moves the mod-sequence, every new message UIDNEXT,
        so while the state is the same the answer read after it was seen holds.  The
        mailbox id is never given again.  One entry per mailbox, bounded."""
        hit = self._unseen.get(mailbox_id)
        if hit is not None and hit[0] == state:
            return hit[1]
        uid = self._db().message_first_unseen(mailbox_id, state[0])
        if len(self._unseen) >= 4 * _MAX_LISTINGS:
            self._unseen.clear()
        self._unseen[mailbox_id] = (state, uid)
        return uid

    def woken_state(self, mailbox_id: int, serial: int) -> tuple[MailboxRecord, tuple[int, int, int]] | None:
        """The mailbox row and index state that a session of this process read (after
        bringing the index in line with the Maildir) when it was woken by the bus's
        dispatch ``serial`` of the mailbox's topic; None when none did yet.  The
        hundreds of IDLE sessions of one worker woken by one delivery share that read
        instead of each asking the index and stat-ing the Maildir: it was made after the
        dispatch, and a later change is a later dispatch (``Bus.heard_serial``), which
        wakes them again.  On the event loop only; one entry per mailbox, bounded."""
        hit = self._woken.get(mailbox_id)
        return hit[1] if hit is not None and hit[0] == serial else None

    def keep_woken(self, mailbox_id: int, serial: int, box: MailboxRecord, state: tuple[int, int, int]) -> None:
        if len(self._woken) >= 4 * _MAX_LISTINGS:
            self._woken.clear()
        self._woken[mailbox_id] = (serial, (box, state))

    def woken_claimed(self, mailbox_id: int, serial: int, recent_uid: int) -> None:
        """A session woken by dispatch ``serial`` claimed the messages below
        ``recent_uid`` as its \\Recent ones (RFC 3501 §2.3.2): the row shared with the
        sessions woken by the same dispatch says so from now on (the index's mark only
        grows, so it is at least that)."""
        hit = self._woken.get(mailbox_id)
        if hit is None or hit[0] != serial:
            return
        box, state = hit[1]
        if box.recent_uid < recent_uid:
            self._woken[mailbox_id] = (serial, (dataclasses.replace(box, recent_uid=recent_uid), state))

    def listing_index(self, mailbox_id: int, msgs: list[MessageRecord]) -> ListingIndex:
        """The UIDs in order, the records by UID and the keywords of ``msgs`` (a list
        ``listing`` returned), worked out once while that listing is cached in this
        process: every session that selects a 100,000-message mailbox copies them
        instead of walking every record again.  Read-only (copy before changing)."""
        hit = self._indexes.get(mailbox_id)
        if hit is not None and hit[0] is msgs:
            return hit[1]
        uids = array("I", [m.uid for m in msgs])
        index = ListingIndex(uids, dict(zip(uids, msgs)),
                             frozenset(f for flags in {m.flags for m in msgs} for f in flags if not f.startswith("\\")))
        with self._lock:
            cached = self._listings.get(mailbox_id)
            if cached is not None and cached[1] is msgs:  # only for a listing still kept
                self._indexes[mailbox_id] = (msgs, index)
        return index

    def selection(self, box: MailboxRecord, state: tuple[int, int, int] | None = None) -> Selection:
        """What SELECT needs of ``box`` now, at the least cost: from this process's
        cached listing when it is at the index's state; else from the mailbox's UID
        file (``uidfile``), checked against the index's state and brought up to date
        from its change log, without reading the message records; else from the whole
        listing, and the UID file is written for the next process that starts.
        ``state``: the index's state as the caller just read it (else it is read)."""
        db = self._db()
        if state is None:
            state = db.mailbox_state(box.id) or (0, 0, 0)
        cached = self._listings.get(box.id)
        if cached is not None and cached[0] == state:
            index = self.listing_index(box.id, cached[1])
            known = self._uid_files.get(box.id)
            if known is None or state[1] - known[0][3] >= UID_FILE_REWRITE:
                self._write_uid_file(box, state, index.uids, index.keywords)
            return Selection(state, index.uids, index.keywords, MappingProxyType(index.by_uid))
        found = self._from_uid_file(box, state)
        if found is not None:
            return found
        state, msgs = self.listing(box)
        index = self.listing_index(box.id, msgs)
        self._write_uid_file(box, state, index.uids, index.keywords)
        return Selection(state, index.uids, index.keywords, MappingProxyType(index.by_uid))

    def _from_uid_file(self, box: MailboxRecord, state: tuple[int, int, int]) -> Selection | None:
        """The selection at ``state`` from the UID file; None when there is none, it is
        not this mailbox's, or it cannot be brought to ``state`` cheaply and surely."""
        stamp = (box.id, box.uidvalidity, *state)
        known = self._uid_files.get(box.id)
        if known is not None and known[0] == stamp:
            return Selection(state, known[1], known[2], None)
        found = uidfile.read(self.box_path(box), box.id, box.uidvalidity)
        if found is None:
            return None
        old, uids, keywords = found
        if old != stamp:
            _, _, old_next, old_modseq, _ = old
            if old_modseq >= state[1] or old_next > state[0]:
                return None  # newer than the state read, or not an earlier state of it
            changed, gone = self._db().message_changes(box.id, old_modseq)
            if gone is None:
                return None  # the expunge records since the file's were pruned
            if len(changed) + len(gone) > max(4 * UID_FILE_REWRITE, len(uids) // 4):
                return None  # reading the listing is as cheap
            if gone:
                expunged = set(gone)
                uids = array("I", [u for u in uids if u not in expunged])
            # Messages added since: UIDs above every one in the file (RFC 3501
            # §2.3.1.1), below the state's UIDNEXT (later ones are not in its count).
            uids.extend(m.uid for m in changed if old_next <= m.uid < state[0])
            keywords = keywords | {f for m in changed for f in m.flags if not f.startswith("\\")}
            # Every change made after ``state`` was read can only leave UIDs out:
            # a count that adds up is the state's set of UIDs.
            if len(uids) != state[2]:
                return None
            if len(changed) + len(gone) >= UID_FILE_REWRITE:
                self._write_uid_file(box, state, uids, keywords)
        self._remember_uid_file(box.id, (stamp, uids, keywords))
        return Selection(state, uids, keywords, None)

    def _write_uid_file(self, box: MailboxRecord, state: tuple[int, int, int], uids: array[int],
                        keywords: frozenset[str]) -> None:
        stamp = (box.id, box.uidvalidity, *state)
        if uidfile.write(self.box_path(box), stamp, uids, keywords):
            self._remember_uid_file(box.id, (stamp, uids, keywords))

    def _remember_uid_file(self, mailbox_id: int, entry: tuple[uidfile.Stamp, array[int], frozenset[str]]) -> None:
        with self._lock:
            self._uid_files[mailbox_id] = entry
            self._uid_files.move_to_end(mailbox_id)
            while len(self._uid_files) > _MAX_LISTINGS:
                self._uid_files.popitem(last=False)

    def messages(self, box: MailboxRecord) -> list[MessageRecord]:
        return list(self.listing(box)[1])

    def _extend_listing(self, box: MailboxRecord, state: tuple[int, int, int], listed: list[MessageRecord],
                        added: list[MessageRecord]) -> None:
        """Cache the listing after ``added`` were appended to the one of ``state``
        without reading it again (10,000 rows on a first scan) when the index state
        shows that nothing else happened meanwhile."""
        if not added or added[0].uid != state[0] or added[0].modseq != state[1] + 1:
            return
        expected = (added[-1].uid + 1, added[0].modseq, state[2] + len(added))
        if self._db().mailbox_state(box.id) == expected:
            self._keep_listing(box.id, (expected, listed + added))

    def listing(self, box: MailboxRecord) -> tuple[tuple[int, int, int], list[MessageRecord]]:
        """(state, messages by UID): the index state read first, then the messages, so
        the messages are at least as new as the state.  Served from this process's
        cache while the state is unchanged; the list must not be modified.

        When the state moved on, the cached listing is patched from the index's change
        log (``message_changes`` since its mod-sequence: new and changed records, and
        the UIDs expunged) instead of read again whole: a flag set or a message
        delivered in a 100,000-message mailbox reads a few rows, not 100,000."""
        db = self._db()
        state = db.mailbox_state(box.id) or (0, 0, 0)
        cached = self._listings.get(box.id)
        if cached is not None and cached[0] == state:
            try:
                self._listings.move_to_end(box.id)
            except KeyError:  # dropped by another thread meanwhile: still valid here
                pass
            return cached
        with self._listing_locks[box.id % _LOCK_STRIPES]:
            cached = self._listings.get(box.id)
            if cached is not None and (cached[0] == state or (cached[0][1] > state[1] and cached[0][0] >= state[0])):
                # Read by another thread while this one waited: its state was read after
                # this one's (mod-sequences only grow), so it is as good as a new read.
                return cached
            entry: tuple[tuple[int, int, int], list[MessageRecord]] | None = None
            if cached is not None and state[1] > cached[0][1] and state[0] >= cached[0][0]:
                entry = self._patched(box, cached, state)
            if entry is None:
                entry = (state, db.message_list(box.id))
            self._keep_listing(box.id, entry)
            return entry

    def _patched(self, box: MailboxRecord, cached: tuple[tuple[int, int, int], list[MessageRecord]],
                 state: tuple[int, int, int]) -> tuple[tuple[int, int, int], list[MessageRecord]] | None:
        """``cached`` brought to ``state`` from the change log, as a new list (sessions
        hold the old one); None when reading the whole listing is the surer or the
        cheaper way (many changes, or the result does not add up to the state's count:
        a change made between the two reads, then the next call patches again)."""
        old_state, old = cached
        changed, gone = self._db().message_changes(box.id, old_state[1])
        if gone is None or len(changed) + len(gone) > max(64, len(old) // 4):
            return None  # (None: the expunges since are no longer recorded one by one)
        expunged = set(gone)
        by_uid = {m.uid: m for m in changed}
        out = [by_uid.pop(m.uid, m) for m in old if m.uid not in expunged]
        # What is left is new: UIDs above every one listed (RFC 3501 §2.3.1.1).
        added = sorted((m for m in by_uid.values() if m.uid not in expunged), key=lambda m: m.uid)
        if added and out and added[0].uid <= out[-1].uid:
            return None
        out += added
        if len(out) != state[2]:
            return None
        return state, out

    def read(self, box: MailboxRecord, msg: MessageRecord) -> bytes:
        """The message's bytes; FileNotFoundError when it was expunged meanwhile."""
        try:
            with open(self.file_path(box, msg), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            current = self._db().mailbox_by_id(box.id) if self.db is not None else None
            if current is None or current.folder == box.folder:
                raise
            with open(self.file_path(current, msg), "rb") as f:  # renamed meanwhile
                data = f.read()
        if len(data) != msg.size and data.count(b"\n") != data.count(b"\r\n"):
            # A file another program dropped in with bare LF line ends: IMAP and
            # POP3 speak CRLF, and its size was indexed as CRLF (see sync).
            data = _to_crlf(data)
        return data

    def append(self, box: MailboxRecord, data: bytes, flags: Sequence[str] = (),
               internaldate: float | None = None) -> MessageRecord:
        """Store a message durably in ``cur/`` and index it (IMAP APPEND).  Raises
        OverQuota when it does not fit in the owner's quota."""
        self.check_quota(box.domain, box.account, len(data))
        path = self.box_path(box)
        self.ensure(path)
        name = self.unique_name(len(data)) + info_of(flags)
        tmp = path / "tmp" / name
        fd = write_new_file(tmp, data)
        try:
            durable_batch([fd])
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        final = path / "cur" / name
        if internaldate is not None:
            os.utime(tmp, (internaldate, internaldate))
        when = internaldate if internaldate is not None else time.time()
        with self.indexing(path, missing_ok=True):
            before = _key_or_none(path)
            os.rename(tmp, final)
            fsync_dir(path / "cur")
            try:
                [msg] = self._db().message_add(box.id, [(name, "cur", tuple(dict.fromkeys(flags)), len(data), when)],
                                               [self._sort_keys(data, when)])
            except NotFound:  # the mailbox was deleted meanwhile: the file goes with it
                _unlink(final)
                raise
            self._carry_scan(box, path, before)
        self.changed(box)
        return msg

    def append_many(self, box: MailboxRecord,
                    items: Sequence[tuple[bytes, Sequence[str], float | None]]) -> list[MessageRecord]:
        """Store several messages (data, flags, internal date) all or none (RFC 3502
        MULTIAPPEND): every file is written and flushed in ``tmp/`` first, then all are
        moved to ``cur/`` and indexed in one transaction.  On any failure the files
        already made are removed and the error is raised (OverQuota, before anything is
        written, when they do not all fit)."""
        self.check_quota(box.domain, box.account, sum(len(d) for d, _f, _w in items), len(items))
        path = self.box_path(box)
        self.ensure(path)
        names = [self.unique_name(len(data)) + info_of(flags) for data, flags, _when in items]
        fds: list[int] = []
        made: list[Path] = []
        try:
            for name, (data, _flags, _when) in zip(names, items):
                fds.append(write_new_file(path / "tmp" / name, data))
                made.append(path / "tmp" / name)
            durable_batch(fds)
            with self.indexing(path, missing_ok=True):
                before = _key_or_none(path)
                for i, (name, (_data, _flags, when)) in enumerate(zip(names, items)):
                    if when is not None:
                        os.utime(made[i], (when, when))
                    os.rename(made[i], path / "cur" / name)
                    made[i] = path / "cur" / name
                fsync_dir(path / "cur")
                now = time.time()
                dates = [when if when is not None else now for _data, _flags, when in items]
                out = self._db().message_add(box.id, [
                    (name, "cur", tuple(dict.fromkeys(flags)), len(data), date)
                    for name, (data, flags, _when), date in zip(names, items, dates)],
                    [self._sort_keys(data, date) for (data, _flags, _when), date in zip(items, dates)])
                self._carry_scan(box, path, before)
        except BaseException:
            for p in made:
                _unlink(p)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self.changed(box)
        return out

    def store(self, box: MailboxRecord, uids: Sequence[int], flags: Sequence[str], mode: str,
              unchanged_since: int | None = None) -> tuple[list[MessageRecord], list[int]]:
        out = self._db().message_store(box.id, uids, flags, mode, unchanged_since)
        self.changed(box)
        return out

    def expunge(self, box: MailboxRecord, msgs: Sequence[MessageRecord]) -> list[int]:
        """Remove messages: files first, then their index rows.  Returns the UIDs."""
        if not msgs:
            return []
        path = self.box_path(box)
        subdirs: set[str] = set()
        with self.indexing(path, missing_ok=True):
            before = _key_or_none(path)
            for m in msgs:
                try:
                    os.unlink(path / m.subdir / m.name)
                    subdirs.add(m.subdir)
                except FileNotFoundError:
                    pass
            for sub in subdirs:
                fsync_dir(path / sub)
            gone = self._db().message_expunge(box.id, [m.uid for m in msgs])
            self._carry_scan(box, path, before)
        self.changed(box)
        return [m.uid for m in gone]

    def copy(self, src: MailboxRecord, msgs: Sequence[MessageRecord], dst: MailboxRecord,
             flags: Sequence[tuple[str, ...]] | None = None, quota: bool = True) -> list[MessageRecord]:
        """Copy messages into ``dst`` keeping flags (or, per message, ``flags``) and
        internal dates (RFC 3501 §6.4.7); the copies are hard links where the file
        system allows.  Returns the new records in the order of ``msgs``.  Raises
        OverQuota when the copies do not fit in the quota of ``dst``'s owner (RFC 9208
        §4.1: a hard link is counted as a copy, as every copy is); ``quota=False`` for a
        move within one account, which adds nothing in the end."""
        if not msgs:
            return []
        checked = self.sized(src, msgs)
        if checked:
            msgs = [checked.get(m.uid, m) for m in msgs]
        if quota:
            self.check_quota(dst.domain, dst.account, sum(max(m.size, 0) for m in msgs), len(msgs))
        spath, dpath = self.box_path(src), self.box_path(dst)
        self.ensure(dpath)
        items: list[tuple[str, str, tuple[str, ...], int, float]] = []
        fds: list[int] = []
        made: list[Path] = []
        with self.indexing(dpath, missing_ok=True):
            before = _key_or_none(dpath)
            try:
                for i, m in enumerate(msgs):
                    kept = tuple(m.flags if flags is None else flags[i])
                    name = self.unique_name(m.size) + info_of(kept)
                    target = dpath / "cur" / name
                    source = spath / m.subdir / m.name
                    try:
                        os.link(source, target)
                    except OSError as e:
                        if isinstance(e, FileNotFoundError):
                            raise
                        with open(source, "rb") as f:
                            fd = write_new_file(dpath / "tmp" / name, f.read())
                        fds.append(fd)
                        os.rename(dpath / "tmp" / name, target)
                    made.append(target)
                    items.append((name, "cur", kept, m.size, m.internaldate))
                durable_batch(fds)
            except BaseException:
                for p in made:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
                raise
            finally:
                for fd in fds:
                    os.close(fd)
            fsync_dir(dpath / "cur")
            # The copies' sort keys are the originals' (the same octets).
            kept_keys = self._db().message_sort_keys_get(src.id, [m.uid for m in msgs])
            out = self._db().message_add(dst.id, items, [kept_keys.get(m.uid) for m in msgs])
            self._carry_scan(dst, dpath, before)
        self.changed(dst)
        hook = self.on_copy
        if hook is not None:
            try:
                hook(src, dst, made)
            except Exception:  # a listener's trouble never fails the copy
                log.exception("event=copy-hook-error mailbox=%s", dst.name)
        return out

    def _sort_keys(self, data: bytes | Sequence[bytes], internaldate: float) -> SortKeys | None:
        """The sort keys of a message being stored (``data``: it, or its chunks), or None
        (no maker set, or it failed: a cache, never a reason to refuse the message)."""
        make = self.sort_keys
        if make is None:
            return None
        if isinstance(data, bytes):
            head = data if len(data) <= SORT_KEYS_HEAD else data[:SORT_KEYS_HEAD]
        else:
            parts: list[bytes] = []
            got = 0
            for chunk in data:
                parts.append(chunk if got + len(chunk) <= SORT_KEYS_HEAD else chunk[:SORT_KEYS_HEAD - got])
                got += len(parts[-1])
                if got >= SORT_KEYS_HEAD:
                    break
            head = b"".join(parts)
        try:
            return make(head, internaldate)
        except Exception:  # noqa: BLE001 - logged; the list makes them from the file
            log.exception("event=sort-keys-error")
            return None

    # -- quotas ---------------------------------------------------------------------------

    def quota(self, domain: str, account: str, usage: bool = False) -> Quota:
        """The account's limits and usage now (``waypost.mailstore.quota``)."""
        return quota_of(self._db(), domain, account, usage)

    def check_quota(self, domain: str, account: str, octets: int, count: int = 1) -> None:
        """Raise OverQuota unless ``count`` messages of ``octets`` fit."""
        if self.db is not None:
            self.quota(domain, account).refuse(octets, count)

    # -- delivery -------------------------------------------------------------------------

    def deliver_batch(self, items: Sequence[Delivery]) -> list[str | OSError]:
        """Store each message in its mailbox's ``new/``; one flush for the whole batch;
        then index them (one transaction per mailbox) and announce the change.

        Returns, per item, the file name given or the OSError that stopped it (a full
        disk fails the items it hit, not the others; ``OverQuota`` the items that do not
        fit in their account's quota, counting the items of the batch before them)."""
        # Each account is checked, and its messages stored, under the shared lock of
        # its domain's names: an ``account add`` or ``remove`` of the name waits, so
        # the account checked is the one stored for (never a new owner of the name).
        owned = sorted({i.domain for i in items if i.owner} if self.db is not None else set())
        with ExitStack() as locks:
            for domain in owned:
                locks.enter_context(self.names_locked(domain, shared=True))
            return self._deliver_batch(items)

    def _deliver_batch(self, items: Sequence[Delivery]) -> list[str | OSError]:
        results: list[str | OSError] = []
        written: list[tuple[int, Path, Path, int]] = []  # (fd, tmp, new, result index)
        quotas: dict[tuple[str, str], Quota] = {}
        pending: dict[tuple[str, str], tuple[int, int]] = {}  # stored by this batch so far
        owners: dict[tuple[str, str], float | None] = {}  # (domain, account) -> its stamp now
        for item in items:
            if item.owner and self.db is not None:
                who = (item.domain, item.account)
                if who not in owners:
                    obj = self.db.get_object(item.domain, item.account, fresh=True)
                    owners[who] = obj.created if obj is not None and obj.kind == "account" else None
                if owners[who] != item.owner:
                    results.append(AccountGone(f"the account {item.account}@{item.domain} it was accepted for"
                                               " was removed"))
                    continue
            try:
                box = self.mailbox_path(item.domain, item.account, item.mailbox)
                chunks = item.data if isinstance(item.data, tuple) else (item.data,)
                size = sum(len(c) for c in chunks)
                name = self.unique_name(size)
                final = self.keyed_name(item.key, item.date, size) if item.key else name
                if item.retry and item.key and _stored(box, final):
                    log.info("event=delivery-recognised file=%s (stored before, not again)", final)
                    results.append(final)
                    continue
                if self.db is not None:
                    who = (item.domain, item.account)
                    if who not in quotas:
                        quotas[who] = self.quota(*who)
                    octets, count = pending.get(who, (0, 0))
                    quotas[who].refuse(octets + size, count + 1)
                    pending[who] = (octets + size, count + 1)
                self.ensure(box)
                # tmp/ under a name of this process: two workers retrying one delivery
                # at once (a lease ran out) each rename their own file over one name.
                tmp = box / "tmp" / name
                fd = write_new_file(tmp, chunks)
            except OSError as e:
                results.append(e)
                continue
            written.append((fd, tmp, box / "new" / final, len(results)))
            results.append(final)
        try:
            durable_batch([w[0] for w in written])
        except OSError as e:
            for fd, tmp, _new, i in written:
                os.close(fd)
                _unlink(tmp)
                results[i] = e
            return results
        dirs: set[Path] = set()
        boxes = {new.parent.parent for _fd, _tmp, new, _i in written}
        with self.indexing(*boxes, missing_ok=True):
            before = {b: _key_or_none(b) for b in boxes} if self.db is not None else {}
            for fd, tmp, new, i in written:
                os.close(fd)
                try:
                    os.rename(tmp, new)
                    dirs.add(new.parent)
                except OSError as e:
                    _unlink(tmp)
                    results[i] = e
            for d in dirs:
                fsync_dir(d)
            if self.db is not None:
                for record in self._index_delivered(items, results):
                    path = self.box_path(record)
                    self._carry_scan(record, path, before.get(path))
        return results

    def _index_delivered(self, items: Sequence[Delivery], results: Sequence[str | OSError]) -> list[MailboxRecord]:
        """Index what was delivered; returns the mailboxes indexed.  The messages are
        safe already: should this fail, the next ``sync`` of the mailbox indexes them."""
        indexed: list[MailboxRecord] = []
        now = time.time()
        groups: dict[tuple[str, str, str], list[tuple[str, str, tuple[str, ...], int, float]]] = {}
        keys: dict[tuple[str, str, str], list[SortKeys | None]] = {}
        for item, res in zip(items, results):
            if isinstance(res, str):
                size = len(item.data) if isinstance(item.data, bytes) else sum(len(c) for c in item.data)
                where = (item.domain, item.account, item.mailbox)
                groups.setdefault(where, []).append((res, "new", item.flags, size, now))
                keys.setdefault(where, []).append(self._sort_keys(item.data, now))
        for (domain, account, mailbox), entries in groups.items():
            try:
                box = self.get(domain, account, mailbox)
                if box is None:
                    box = self._create(domain, account, normalize_name(mailbox))
                self._db().message_add(box.id, entries, keys[(domain, account, mailbox)])
                self.changed(box)
                indexed.append(box)
            except Exception as e:  # noqa: BLE001 - logged; sync repairs it
                log.warning(
                    "event=index-error domain=%s account=%s mailbox=%s error=%r", domain, account, mailbox, e)
        return indexed


#: Octets of a message's start from which its sort keys are made (a longer header is
#: cut there, as the list cuts one it reads from a file).
SORT_KEYS_HEAD = 256 * 1024

_W_SIZE = re.compile(r",W=(\d+)")
#: Maildir names begin with the delivery time in seconds (maildir(5)).
_DELIVERED = re.compile(r"([1-9][0-9]{8,10})\.")


def _scan_key(path: Path) -> tuple[int, int]:
    """What tells whether a Maildir changed since it was scanned: the mtimes of its
    ``new/`` and ``cur/``; ``FileNotFoundError`` when it is gone.  (``os.stat`` of
    strings: no two ``Path`` objects made at each IDLE re-check.)"""
    base = os.fspath(path)
    return os.stat(base + "/new").st_mtime_ns, os.stat(base + "/cur").st_mtime_ns


def _key_or_none(path: Path) -> tuple[int, int] | None:
    try:
        return _scan_key(path)
    except FileNotFoundError:
        return None


def _to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _size_from_name(file: str, name: str) -> tuple[int, float] | None:
    """(size, internal date) of a file another program put in a Maildir, without
    reading it and, for a name of the Maildir form (``<seconds>.<unique>...``), without
    even a stat: the date is the delivery time the name starts with.  The size is the
    ``,W=`` of the name (Dovecot's size with CRLF line ends) or else unknown (``-1``):
    ``Mailstore.sized`` reads the file when a client first needs the size, as Dovecot
    does.  None when the file is gone."""
    w = _W_SIZE.search(name)
    size = int(w.group(1)) if w is not None else -1
    m = _DELIVERED.match(name)
    if m is not None:
        return size, float(m.group(1))
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return None
    return size, st.st_mtime


def _crlf_size(file: str) -> int | None:
    """The size of a file as sent (CRLF line ends); None if it is gone."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, 8192)
        first = head.find(b"\n")
        if first > 0 and head[first - 1] == 0x0D or first < 0 and len(head) < 8192:
            # CRLF from its first line: taken as CRLF throughout (a file that mixes
            # both is sent CRLF by ``read``, which notices the difference in size).
            return size
        data = head + os.read(fd, size + 1)
    finally:
        os.close(fd)
    bare = data.count(b"\n") - data.count(b"\r\n")
    return len(data) + max(bare, 0)


def _uidvalidity() -> int:
    # RFC 3501 §2.3.1.1: a new mailbox of an old name needs a greater UIDVALIDITY;
    # seconds since the epoch grow, and fit in 32 bits until 2106.
    return int(time.time()) & 0xFFFFFFFF


def _stored(box: Path, name: str) -> bool:
    """Whether the Maildir holds a file of this name (ours stay in ``new/``; a tool may
    have moved one to ``cur/``, with or without flags)."""
    return any(os.path.exists(p) for p in (box / "new" / name, box / "cur" / name, box / "cur" / f"{name}:2,"))


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
