"""The data directory as files on disk: who may read them, who owns them, and a
consistent copy of it while a server runs.

Everything in a data directory is private to the server's user: the database holds every
password hash and every user's headers, ``waypost.toml`` may hold ``sharing.secret``,
``secret.key`` and the TLS key are keys, the spool and the Maildirs are mail.  Every
``waypost`` process therefore starts with the umask ``UMASK`` (files 0600, directories
0700), ``waypost init`` sets the modes of what it makes explicitly, and
``waypost config check`` names every path whose mode is looser.

Started as root with ``server.user`` set, ``serve`` binds its ports and then becomes that
user; every other command becomes that user before it touches the data, so that nothing
in the directory ends up owned by root.

This module writes no SQL: the database copy is the ``Database``'s own ``backup_to``.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Iterator

from .config import SETTINGS_FILE, Settings
from .db import Database
from .secrets import KEY_FILE

__all__ = ["UMASK", "backup", "chown_tree", "database_file", "loose_modes", "make_private", "make_tree_private",
           "owned_by_others", "private_umask", "switch_user", "user_ids"]

#: The mode bits no Waypost process ever grants when it creates a file or directory.
UMASK = 0o077


def private_umask() -> None:
    """Files this process creates from now on are 0600, directories 0700."""
    os.umask(UMASK)


def make_private(path: Path) -> None:
    """Take group and other permissions off ``path`` (chmod go=)."""
    mode = stat.S_IMODE(path.lstat().st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def make_tree_private(root: Path) -> None:
    """``make_private`` on ``root`` and everything below it (``waypost init``)."""
    for p in _walk(root):
        if not p.is_symlink():
            make_private(p)


def _known_paths(settings: Settings) -> list[Path]:
    """The files and directories Waypost keeps, whether inside the data directory or not."""
    out = [settings.data_dir, settings.data_dir / SETTINGS_FILE, settings.data_dir / KEY_FILE,
           settings.path(settings.tls.key), settings.path(settings.tls.certificate),
           settings.path(settings.storage.spool), settings.path(settings.storage.mail), settings.data_dir / "run"]
    db = database_file(settings)
    if db is not None:
        out += [db] + [Path(f"{db}{suffix}") for suffix in ("-wal", "-shm", "-changes")]
    return out


def database_file(settings: Settings) -> Path | None:
    """The SQLite file of ``storage.database`` (None for another engine)."""
    url = settings.storage.database
    if "://" in url:
        return None
    return settings.path(url.removeprefix("sqlite:"))


def _walk(root: Path) -> Iterator[Path]:
    """``root`` and everything below it, symbolic links not followed."""
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            yield Path(dirpath) / name


def loose_modes(settings: Settings) -> list[tuple[Path, int]]:
    """Every path of the data directory (and the database and TLS key kept elsewhere)
    that a group or other user may read, write or enter, with its mode."""
    seen: set[Path] = set()
    out: list[tuple[Path, int]] = []
    paths = list(_walk(settings.data_dir)) if settings.data_dir.is_dir() else []
    paths += [p for p in _known_paths(settings) if not p.is_relative_to(settings.data_dir)]
    # The TLS certificate is public by nature; one kept outside (/etc/letsencrypt) is not ours to judge.
    public = {settings.path(settings.tls.certificate)} - {p for p in paths if p.is_relative_to(settings.data_dir)}
    for p in paths:
        if p in seen or p in public:
            continue
        seen.add(p)
        try:
            st = p.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & 0o077:
            out.append((p, stat.S_IMODE(st.st_mode)))
    return out


def user_ids(name: str) -> tuple[int, int]:
    """The uid and gid of a user; KeyError if there is no such user."""
    import pwd

    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def owned_by_others(settings: Settings, uid: int) -> list[Path]:
    """The paths ``serve`` writes (the data directory, the database, the key, the spool
    and mail roots) that exist and are not owned by ``uid``.  Not the whole Maildir tree:
    that is the administrator's ``chown -R``."""
    out = []
    for p in _known_paths(settings):
        if p == settings.path(settings.tls.certificate) or p == settings.path(settings.tls.key):
            continue  # read as root, before the switch
        if p == settings.data_dir / SETTINGS_FILE:
            continue  # read as root, before the switch
        try:
            if p.lstat().st_uid != uid:
                out.append(p)
        except FileNotFoundError:
            pass
    return out


def switch_user(name: str) -> None:
    """Become ``name`` (uid, gid and its groups), for good.  Only root may."""
    import pwd

    entry = pwd.getpwnam(name)
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir


def chown_tree(root: Path, uid: int, gid: int) -> None:
    """Give ``root`` and everything below it to ``uid:gid`` (``waypost init --user``)."""
    for p in _walk(root):
        os.lchown(p, uid, gid)


def backup(settings: Settings, db: Database, dest: Path, with_mail: bool = False) -> list[Path]:
    """Copy the data directory's state into the new directory ``dest``, while a server
    may be running: the database through the engine's online backup (one consistent
    snapshot, no -wal file), then the settings, the secret key and the TLS files; with
    ``with_mail`` also the spool, the Maildirs and the file areas (after the snapshot, so every message
    the snapshot knows is in the copy).  Returns what was written.  Raises
    FileExistsError when ``dest`` exists."""
    dest.mkdir(mode=0o700, parents=False)
    written: list[Path] = []
    source = database_file(settings)
    target = dest / (source.name if source is not None else "waypost.pgdump")  # pg_dump --format=custom
    db.backup_to(target)
    written.append(target)
    for path in (settings.data_dir / SETTINGS_FILE, settings.data_dir / KEY_FILE,
                 settings.path(settings.tls.certificate), settings.path(settings.tls.key)):
        if not path.is_file() or not path.is_relative_to(settings.data_dir):
            continue
        copy = dest / path.relative_to(settings.data_dir)
        copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o600)
        written.append(copy)
    if with_mail:
        for root in (settings.path(settings.storage.spool), settings.path(settings.storage.mail),
                     settings.path(settings.storage.files)):
            if root.is_dir() and root.is_relative_to(settings.data_dir):
                written.append(_copy_live_tree(root, dest / root.relative_to(settings.data_dir)))
    return written


def _copy_live_tree(src: Path, dst: Path) -> Path:
    """Copy a tree that changes while it is read: a file that went away meanwhile (a
    Maildir rename, a delivered spool file) is skipped, not an error."""
    dst.mkdir(mode=0o700, parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(src):
        here = dst / Path(dirpath).relative_to(src)
        for name in dirnames:
            (here / name).mkdir(mode=0o700, exist_ok=True)
        for name in filenames:
            try:
                shutil.copyfile(Path(dirpath) / name, here / name)
            except FileNotFoundError:
                continue
    return dst
