"""Each account's file area on disk, and the one API the web and FTP use to reach it.

Layout under ``storage.files`` (the data directory's ``files/`` by default)::

    files/<domain>/<name>/...          the area of account name@domain (the user's files)
    files/<domain>/.<name>.owner       which account owns the area (its creation time)
    files/.locks/<name>@<domain>       a lock file: commits and the owner check are serialised
    files/.tmp/                        uploads in progress (same file system: rename is atomic)

Domain names and account names never start with a dot, so the dot-names beside the
areas cannot be anyone's area.

What this module guarantees:

* **Jail.**  Every path is checked by ``split_path`` and then walked one component at a
  time from the area's top with ``O_NOFOLLOW`` directory descriptors (``openat``): no
  ``..``, no absolute path, and no symbolic link (inside or pointing out) is ever
  followed, even one made behind our back while a request runs.  Symbolic links are
  neither listed nor counted.
* **Atomic writes.**  An upload goes to a temporary file in ``files/.tmp``; it is
  fsynced, renamed over its name and the folder is fsynced.  Readers see the old file
  or the new one, never a part; an aborted or refused upload leaves nothing behind.
* **Size limit.**  An area holds at most its limit (the account's ``files_limit``, else
  its domain's ``files_limit``, else ``files.size_limit``), in octets of file content.
  An upload is refused (``LimitExceeded``) as soon as it would pass the limit, and again
  at the commit, under the area's lock, against what the other sessions (in every
  worker) committed meanwhile.
* **Owner.**  An area belongs to one account, known by its creation time: a removed
  account's files are moved aside (``.<name>.removed-<time>``), never inherited by a
  new account of the same name.

Every method does blocking I/O: the asyncio listeners call it from a thread.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mimetypes
import os
import stat
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from ..db import ObjectRecord
from ..directory import Directory
from ..log import event
from .paths import FilesError, PathError, split_path

__all__ = [
    "AccountFiles",
    "Entry",
    "Exists",
    "FileInfo",
    "FileStore",
    "FilesError",
    "LimitExceeded",
    "Missing",
    "NotEmpty",
    "PathError",
    "Upload",
    "content_type",
]

log = logging.getLogger("waypost.files")

#: Account (``data``) and domain (``settings``) keys this package reads.
LIMIT_KEY = "files_limit"
LISTING_KEY = "files_listing"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 64 * 1024

# Built-in types only (not /etc/mime.types): the same answer on every machine.
_TYPES = mimetypes.MimeTypes(filenames=())


class Missing(FilesError):
    """No such file or folder."""


class Exists(FilesError):
    """The name is taken."""


class NotEmpty(FilesError):
    """A folder that still holds something."""


class LimitExceeded(FilesError):
    """The area would hold more than its limit."""

    def __init__(self, limit: int, needed: int) -> None:
        super().__init__(f"exceeds the storage limit of {limit} octets (would need {needed})")
        self.limit = limit
        self.needed = needed


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or folder of a listing."""

    name: str
    is_dir: bool
    size: int        # octets (0 for a folder)
    mtime: float


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file to be served: its area-relative path, size and content type."""

    path: str
    size: int
    content_type: str
    mtime: float


def content_type(name: str) -> str:
    """The content type a file is served with, by its name (``application/octet-stream``
    when unknown).  No charset is claimed: a page says its own (``<meta charset>``), and
    personal pages are not all UTF-8."""
    guessed, _ = _TYPES.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _refuse(e: OSError, what: str) -> FilesError:
    """The FilesError an OSError from a walk or an operation stands for."""
    if e.errno == errno.ENOENT:
        return Missing(f"{what}: no such file or folder")
    if e.errno in (errno.ELOOP, errno.EMLINK):
        return PathError(f"{what}: symbolic links are not followed")
    if e.errno == errno.ENOTDIR:
        return Missing(f"{what}: not a folder")
    if e.errno == errno.EISDIR:
        return FilesError(f"{what}: is a folder")
    if e.errno == errno.EEXIST:
        return Exists(f"{what}: exists")
    if e.errno == errno.ENOTEMPTY:
        return NotEmpty(f"{what}: folder not empty")
    if e.errno == errno.ENAMETOOLONG:
        return PathError(f"{what}: name too long")
    return FilesError(f"{what}: {os.strerror(e.errno or 0)}")


class AccountFiles:
    """One account's area.  Paths are area-relative (``split_path``)."""

    __slots__ = ("owner", "root", "limit", "listing", "_tmp", "_lock")

    def __init__(self, owner: str, root: Path, tmp: Path, lock: Path, limit: int, listing: bool = False) -> None:
        self.owner = owner          # name@domain
        self.root = root
        self.limit = limit
        self.listing = listing      # the owner lets visitors list folders without index.html
        self._tmp = tmp
        self._lock = lock

    # -- walking -----------------------------------------------------------------

    def _open_dir(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the folder ``parts`` (the caller closes it)."""
        try:
            fd = os.open(self.root, _DIR_FLAGS)
        except OSError as e:
            if os.path.islink(self.root):
                raise PathError("the area's top is a symbolic link") from None
            raise _refuse(e, "/") from None
        try:
            for part in parts:
                try:
                    nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    st = self._lstat(fd, part)
                    if st is not None and stat.S_ISLNK(st.st_mode):
                        raise PathError(f"{part}: symbolic links are not followed") from None
                    raise _refuse(e, "/".join(parts)) from None
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextmanager
    def _parent(self, path: str) -> Iterator[tuple[int, str, tuple[str, ...]]]:
        """(folder descriptor, last name, all parts) for a path that names something."""
        parts = split_path(path)
        if not parts:
            raise PathError("the top folder itself")
        fd = self._open_dir(parts[:-1])
        try:
            yield fd, parts[-1], parts
        finally:
            os.close(fd)

    @staticmethod
    def _lstat(fd: int, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    # -- reading -----------------------------------------------------------------

    def list(self, path: str = "") -> list[Entry]:
        """The files and folders of a folder, by name (symbolic links and other special
        files are left out)."""
        parts = split_path(path)
        fd = self._open_dir(parts)
        try:
            out = []
            for name in os.listdir(fd):
                st = self._lstat(fd, name)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    out.append(Entry(name, True, 0, st.st_mtime))
                elif stat.S_ISREG(st.st_mode):
                    out.append(Entry(name, False, st.st_size, st.st_mtime))
            return sorted(out, key=lambda e: e.name)
        finally:
            os.close(fd)

    def stat(self, path: str) -> Entry:
        """What ``path`` is (the top folder for ``""``)."""
        parts = split_path(path)
        if not parts:
            top = os.stat(self.root, follow_symlinks=False)
            return Entry("", True, 0, top.st_mtime)
        with self._parent(path) as (fd, name, _):
            st = self._lstat(fd, name)
        if st is None or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise Missing(f"{path}: no such file or folder")
        return Entry(name, stat.S_ISDIR(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else 0, st.st_mtime)

    def is_dir(self, path: str) -> bool:
        try:
            return self.stat(path).is_dir
        except FilesError:
            return False

    def open(self, path: str) -> tuple[BinaryIO, FileInfo]:
        """A regular file opened for reading, and what it is.  The caller closes it."""
        with self._parent(path) as (fd, name, parts):
            try:
                ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                raise _refuse(e, path) from None
        try:
            st = os.fstat(ffd)
            if stat.S_ISDIR(st.st_mode):
                raise FilesError(f"{path}: is a folder")
            if not stat.S_ISREG(st.st_mode):
                raise Missing(f"{path}: not a file")
        except BaseException:
            os.close(ffd)
            raise
        info = FileInfo("/".join(parts), st.st_size, content_type(name), st.st_mtime)
        return os.fdopen(ffd, "rb"), info

    def info(self, path: str) -> FileInfo:
        f, info = self.open(path)
        f.close()
        return info

    def read_bytes(self, path: str) -> bytes:
        f, _ = self.open(path)
        with f:
            return f.read()

    def usage(self) -> int:
        """Octets of file content in the area (regular files; links not followed)."""
        total = 0
        stack = [os.open(self.root, _DIR_FLAGS)]
        try:
            while stack:
                fd = stack.pop()
                try:
                    for name in os.listdir(fd):
                        st = self._lstat(fd, name)
                        if st is None:
                            continue
                        if stat.S_ISREG(st.st_mode):
                            total += st.st_size
                        elif stat.S_ISDIR(st.st_mode):
                            try:
                                stack.append(os.open(name, _DIR_FLAGS, dir_fd=fd))
                            except OSError:
                                pass  # removed meanwhile, or replaced by a link
                finally:
                    os.close(fd)
        finally:
            for fd in stack:
                os.close(fd)
        return total

    # -- writing -----------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The area's lock (every thread and worker): commits are checked against the
        limit one at a time."""
        fd = os.open(self._lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def upload(self, path: str) -> "Upload":
        """Start writing ``path`` (a new file, or one that replaces a file): write the
        content, then ``commit()``; ``close()`` without a commit leaves nothing."""
        parts = split_path(path)
        if not parts:
            raise PathError("the top folder itself")
        fd = self._open_dir(parts[:-1])
        try:
            st = self._lstat(fd, parts[-1])
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise Exists(f"{path}: is a folder") if stat.S_ISDIR(st.st_mode) else PathError(f"{path}: not a file")
            replaced = st.st_size if st is not None else 0
            room = self.limit - self.usage() + replaced
            if room < 0:
                room = 0
            tfd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="upload-")
        except BaseException:
            os.close(fd)
            raise
        return Upload(self, "/".join(parts), fd, parts[-1], tfd, tmp_name, room)

    def write(self, path: str, data: bytes | Iterable[bytes]) -> FileInfo:
        """Write a whole file atomically (``upload`` for content that streams in)."""
        with self.upload(path) as up:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                up.write(chunk)
            return up.commit()

    def mkdir(self, path: str) -> None:
        with self._parent(path) as (fd, name, _):
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except OSError as e:
                raise _refuse(e, path) from None
            os.fsync(fd)

    def rmdir(self, path: str) -> None:
        """Remove an empty folder."""
        with self._parent(path) as (fd, name, _):
            st = self._lstat(fd, name)
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise Missing(f"{path}: no such folder")
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError as e:
                raise _refuse(e, path) from None
            os.fsync(fd)

    def remove(self, path: str) -> None:
        """Delete a file."""
        with self._parent(path) as (fd, name, _):
            st = self._lstat(fd, name)
            if st is None or stat.S_ISLNK(st.st_mode):
                raise Missing(f"{path}: no such file")
            if stat.S_ISDIR(st.st_mode):
                raise FilesError(f"{path}: is a folder")
            try:
                os.unlink(name, dir_fd=fd)
            except OSError as e:
                raise _refuse(e, path) from None
            os.fsync(fd)

    def rename(self, src: str, dst: str) -> None:
        """Move a file or folder; an existing file at ``dst`` is replaced, a folder is not."""
        with self._parent(src) as (sfd, sname, sparts), self._parent(dst) as (dfd, dname, dparts):
            st = self._lstat(sfd, sname)
            if st is None or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise Missing(f"{src}: no such file or folder")
            if stat.S_ISDIR(st.st_mode) and dparts[:len(sparts)] == sparts:
                raise PathError(f"{dst}: inside {src}")
            target = self._lstat(dfd, dname)
            if target is not None and (stat.S_ISDIR(target.st_mode) or not stat.S_ISREG(target.st_mode)):
                raise Exists(f"{dst}: exists")
            try:
                os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
            except OSError as e:
                raise _refuse(e, dst) from None
            os.fsync(dfd)
            os.fsync(sfd)


class Upload:
    """A file being written (``AccountFiles.upload``): a temporary file until ``commit``.

    File-like enough for an FTP data channel (``write``, ``close``, ``closed``, ``name``).
    ``write`` raises ``LimitExceeded`` (and discards what came) as soon as the content
    passes the room the area had when the upload began."""

    __slots__ = ("area", "name", "_dir_fd", "_final", "_fd", "_tmp", "room", "size", "committed", "closed")

    def __init__(self, area: AccountFiles, path: str, dir_fd: int, final: str, fd: int, tmp: str, room: int) -> None:
        self.area = area
        self.name = path            # the area-relative path it will have
        self._dir_fd = dir_fd
        self._final = final
        self._fd = fd
        self._tmp = tmp
        self.room = room
        self.size = 0
        self.committed = False
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("upload closed")
        n = len(data)
        if self.size + n > self.room:
            needed = self.area.limit - self.room + self.size + n
            self.close()
            raise LimitExceeded(self.area.limit, needed)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += n
        return n

    def commit(self) -> FileInfo:
        """Make the file durable under its name (fsync, rename, fsync the folder), if the
        area can still hold it; else ``LimitExceeded`` and nothing is left."""
        if self.closed:
            raise ValueError("upload closed")
        try:
            os.fsync(self._fd)
            with self.area.locked():
                st = AccountFiles._lstat(self._dir_fd, self._final)
                if st is not None and not stat.S_ISREG(st.st_mode):
                    raise Exists(f"{self.name}: is a folder")
                replaced = st.st_size if st is not None else 0
                needed = self.area.usage() - replaced + self.size
                if needed > self.area.limit:
                    raise LimitExceeded(self.area.limit, needed)
                try:
                    os.rename(self._tmp, self._final, dst_dir_fd=self._dir_fd)
                except OSError as e:
                    raise _refuse(e, self.name) from None
                self.committed = True
            os.fsync(self._dir_fd)
        finally:
            self.close()
        return FileInfo(self.name, self.size, content_type(self._final), time.time())

    def close(self) -> None:
        """End the upload; without a commit the temporary file is removed."""
        if self.closed:
            return
        self.closed = True
        os.close(self._fd)
        os.close(self._dir_fd)
        if not self.committed:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Upload":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileStore:
    """Every account's area under one root (``storage.files``)."""

    def __init__(self, root: Path, directory: Directory, default_limit: int) -> None:
        self.root = root
        self.directory = directory
        self.default_limit = default_limit
        self._tmp = root / ".tmp"
        self._locks = root / ".locks"

    def recover(self, min_age: float = 0.0) -> int:
        """Remove the uploads a stopped or killed server left in ``.tmp`` (none of them
        was committed); ``serve`` calls it once, before any worker starts.  Returns how
        many were removed.  ``min_age``: only files not written for that many seconds
        (an area several nodes share: the others' uploads in progress stay)."""
        removed = 0
        now = time.time()
        try:
            names = os.listdir(self._tmp)
        except FileNotFoundError:
            return 0
        for name in names:
            try:
                if min_age and now - os.stat(self._tmp / name).st_mtime < min_age:
                    continue
                os.unlink(self._tmp / name)
                removed += 1
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                continue
        if removed:
            event(log, "files-recovered", removed_tmp=removed)
        return removed

    def limit_of(self, account: ObjectRecord) -> int:
        """The account's own limit, else its domain's, else ``files.size_limit``."""
        own = account.data.get(LIMIT_KEY)
        if isinstance(own, int) and not isinstance(own, bool):
            return own
        dom = self.directory.db.get_domain(account.domain)
        shared = dom.settings.get(LIMIT_KEY) if dom is not None else None
        if isinstance(shared, int) and not isinstance(shared, bool):
            return shared
        return self.default_limit

    def area_path(self, domain: str, name: str) -> Path:
        return self.root / domain / name

    def for_account(self, account: ObjectRecord) -> AccountFiles:
        """The area of an account (made on first use), checked to be this account's."""
        if account.kind != "account":
            raise FilesError(f"{account.address} is a {account.kind}, not an account")
        for d in (self.root, self._tmp, self._locks):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        domain_dir = self.root / account.domain
        domain_dir.mkdir(mode=0o700, exist_ok=True)
        area = AccountFiles(account.address, domain_dir / account.name, self._tmp,
                            self._locks / account.address, self.limit_of(account),
                            bool(account.data.get(LISTING_KEY, False)))
        self._claim(area, domain_dir, account)
        return area

    def account_area(self, address: str) -> AccountFiles:
        """The area of the account ``address`` names (an alias gives its account)."""
        obj = self.directory.get(address)
        acct = self.directory.account_of(obj)
        if acct is None:
            raise FilesError(f"{obj.address} is a {obj.kind}, not an account")
        return self.for_account(acct)

    def _claim(self, area: AccountFiles, domain_dir: Path, account: ObjectRecord) -> None:
        marker = domain_dir / f".{account.name}.owner"
        stamp = repr(float(account.created))
        try:
            if marker.read_text() == stamp and area.root.is_dir():
                return
        except FileNotFoundError:
            pass
        with area.locked():
            try:
                old: str | None = marker.read_text()
            except FileNotFoundError:
                old = None
            if old is not None and old != stamp and area.root.exists():
                aside = domain_dir / f".{account.name}.removed-{int(time.time())}"
                os.rename(area.root, aside)
                event(log, "files-area-set-aside", level=logging.WARNING, account=account.address, to=str(aside))
            try:
                area.root.mkdir(mode=0o700)
            except FileExistsError:
                if area.root.is_symlink() or not area.root.is_dir():
                    raise FilesError(f"{area.root}: not a folder") from None
            if old != stamp:
                tmp = marker.with_name(marker.name + ".tmp")
                tmp.write_text(stamp)
                os.replace(tmp, marker)
                fd = os.open(domain_dir, _DIR_FLAGS)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
