"""The change token that the settings caches of every process of a data directory read.

Eight bytes in a small file that every process maps into memory: a write to cached
settings stores eight new random bytes; a cached row is used only while the token it
was read under is still the current one.  A look-up costs a comparison of eight bytes
instead of a query, and a change made by any process (a worker, the CLI) is seen by the
next look-up everywhere on this machine.  (Several machines sharing one PostgreSQL
database also hear each other's changes through ``LISTEN``; see ``postgres.py``.)
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from array import array
from bisect import bisect_left
from typing import Any, Callable, Sequence

__all__ = ["SettingsCache", "changes_token", "value_entry", "value_of", "CACHE_ROWS", "DOMAIN_NAMES",
           "MISSES_BEFORE_NAMES", "NAMES_PER_MISS", "OBJECT_NAMES", "NAMES_HELD"]

#: Most rows a process caches; past it the cache starts again (unknown names asked for
#: by a flood of bad RCPTs must not grow it for ever).
CACHE_ROWS = 20_000
#: Most domain names and domain aliases a process keeps whole, to answer every
#: ``domain_name`` from memory (a name that is no local domain included: a remote
#: domain is asked about at every RCPT to it).  Past it, names are cached one by one.
DOMAIN_NAMES = 50_000
#: Names asked for in one domain and not found there, under one change token, before
#: the process reads the names of the domain's objects whole (``OBJECT_NAMES``): a
#: flood of unknown RCPTs then costs no query each.  For a domain whose names were read
#: before, at least one miss for every ``NAMES_PER_MISS`` of them: reading the names
#: again after each change then costs no more than the misses it saves had.
MISSES_BEFORE_NAMES = 32
NAMES_PER_MISS = 64
#: Most objects a domain may have for its names to be read whole; a bigger domain's
#: unknown names are asked for one by one.
OBJECT_NAMES = 200_000
#: Most names all the domains' name sets hold together in a process (8 octets each:
#: the sets keep each name's hash, not the name).
NAMES_HELD = 500_000

_ALL_DOMAIN_NAMES = ("N",)
_TOO_MANY = -1  # a domain with more than OBJECT_NAMES objects, under this token


def changes_token(path: str) -> mmap.mmap | None:
    """The shared change token in the file ``path`` (eight bytes, mapped); read-only for a
    user who may only read the data directory; None (nothing is cached) when there is
    none to read."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return mmap.mmap(fd, 8, access=mmap.ACCESS_READ) if os.fstat(fd).st_size >= 8 else None
        finally:
            os.close(fd)
    try:
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 8)
        return mmap.mmap(fd, 8)
    finally:
        os.close(fd)


# A server-wide value as the settings cache keeps it: (text, how, value).  Decoding the
# JSON on every read cost a resolution more than its table look-up; what cannot be
# changed by a caller is decoded once and handed out as is.
_AS_IS, _FRESH_EMPTY, _DECODE = 0, 1, 2


def value_entry(text: str | None) -> tuple[str | None, int, Any]:
    """The cache entry of a stored value's text (None: no value)."""
    if text is None:
        return None, _AS_IS, None
    value = json.loads(text)
    if isinstance(value, (list, dict)):
        return (text, _FRESH_EMPTY, type(value)) if not value else (text, _DECODE, None)
    return text, _AS_IS, value  # a number, a string, true/false, null: immutable


def value_of(entry: tuple[str | None, int, Any]) -> Any:
    """What ``get_value`` gives for a cache entry: a caller may change a list or a
    dictionary it is given, so those are new each time."""
    text, how, value = entry
    if how == _AS_IS:
        return value
    if how == _FRESH_EMPTY:
        return value()
    assert text is not None
    return json.loads(text)


class SettingsCache:
    """What a process keeps of the settings (server-wide values, domains, objects), each
    entry under the change token it was read under and used only while that token is
    the current one: any settings write, by any process or node, makes every entry
    stale at once (STYLE.md point 13).  ``token`` gives the current token, or None
    when nothing may be cached (then every read is a query).

    Two kinds of absence are answered without a query, because a flood of bad RCPTs
    asks for nothing else: a name that is no local domain (the domains' names are
    kept whole while there are at most ``DOMAIN_NAMES``: ``domain_names``), and, once
    a domain has had ``MISSES_BEFORE_NAMES`` unknown names asked under one token (one
    for every ``NAMES_PER_MISS`` names it had when last read, if more), an object name
    the domain does not have (the hashes of its names, sorted; a hash that is there
    sends the question on to the database, so a collision costs a query, never a wrong
    answer).  Bounded: ``CACHE_ROWS`` rows, ``NAMES_HELD`` hashes."""

    def __init__(self, token: Callable[[], bytes | None]) -> None:
        self.token = token
        self._rows: dict[tuple[str, ...], tuple[bytes, Any]] = {}
        # domain -> (token, misses so far | _TOO_MANY | the sorted hashes of its names)
        self._names: dict[str, tuple[bytes, int | array[int]]] = {}
        self._sizes: dict[str, int] = {}  # domain -> how many names it had when last read
        self._held = 0
        self._names_lock = threading.Lock()  # _names, _sizes and _held change together

    def get(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        """``load()``, or what it gave under the current change token."""
        token = self.token()
        if token is None:
            return load()
        hit = self._rows.get(key)
        if hit is not None and hit[0] == token:
            return hit[1]
        value = load()
        self._put(key, token, value)  # the token read before the query: safe
        return value

    def _put(self, key: tuple[str, ...], token: bytes, value: Any) -> None:
        if len(self._rows) >= CACHE_ROWS:
            self._rows.clear()
        self._rows[key] = (token, value)

    def domain_names(self, load_all: Callable[[int], Sequence[tuple[str, str]]]) -> dict[str, str] | None:
        """Every domain name and domain alias, with the canonical name each stands for;
        None when nothing may be cached or there are more than ``DOMAIN_NAMES`` (then
        ask for one name at a time).  ``load_all(limit)`` gives (name, canonical) for
        every alias and then every domain, at most ``limit`` + 1 of each."""
        token = self.token()
        if token is None:
            return None
        whole = self._rows.get(_ALL_DOMAIN_NAMES)
        if whole is not None and whole[0] == token:
            return whole[1]  # type: ignore[no-any-return]
        pairs = load_all(DOMAIN_NAMES)
        names = dict(pairs) if len(pairs) <= DOMAIN_NAMES else None
        self._put(_ALL_DOMAIN_NAMES, token, names)
        return names

    def object_row(self, domain: str, name: str, load_row: Callable[[str, str], Any],
                   load_names: Callable[[str, int], Sequence[str]]) -> Any:
        """The row of the object ``name`` of ``domain`` (None: there is none).
        ``load_row(domain, name)`` reads it; ``load_names(domain, limit)`` the names
        of the domain's objects, at most ``limit`` + 1."""
        token = self.token()
        if token is None:
            return load_row(domain, name)
        key = ("o", domain, name)
        hit = self._rows.get(key)
        if hit is not None and hit[0] == token:
            return hit[1]
        known = self._names.get(domain)
        if known is not None and known[0] == token and type(known[1]) is array:
            hashes = known[1]
            h = hash(name)
            i = bisect_left(hashes, h)
            if i == len(hashes) or hashes[i] != h:
                return None  # not one of its names: no query, and no row kept for it
        row = load_row(domain, name)
        self._put(key, token, row)
        if row is None:
            self._missed(domain, token, load_names)
        return row

    def _missed(self, domain: str, token: bytes, load_names: Callable[[str, int], Sequence[str]]) -> None:
        known = self._names.get(domain)
        misses = known[1] if known is not None and known[0] == token else 0
        if type(misses) is not int or misses == _TOO_MANY:
            return  # its names are kept (a hash collision), or there are too many
        misses += 1
        if misses < max(MISSES_BEFORE_NAMES, self._sizes.get(domain, 0) // NAMES_PER_MISS):
            with self._names_lock:
                if known is None and len(self._names) >= CACHE_ROWS:
                    self._drop_names()
                self._set_names(domain, (token, misses))
            return
        names = load_names(domain, OBJECT_NAMES)
        with self._names_lock:
            if len(names) > OBJECT_NAMES:
                self._sizes[domain] = len(names)
                self._set_names(domain, (token, _TOO_MANY))
                return
            hashes = array("q", sorted({hash(n) for n in names}))
            if self._held + len(hashes) > NAMES_HELD:
                self._drop_names()
            self._sizes[domain] = len(hashes)
            # Under the token read before the names: if a name was added meanwhile, the
            # token has changed and these hashes are never used.
            self._set_names(domain, (token, hashes))

    def _set_names(self, domain: str, entry: tuple[bytes, int | array[int]]) -> None:
        """(under ``_names_lock``)"""
        old = self._names.get(domain)
        if old is not None and type(old[1]) is array:
            self._held -= len(old[1])
        if type(entry[1]) is array:
            self._held += len(entry[1])
        self._names[domain] = entry

    @property
    def names_held(self) -> int:
        """How many name hashes the domains' name sets hold now."""
        return self._held

    def _drop_names(self) -> None:
        """(under ``_names_lock``)"""
        self._names.clear()
        self._sizes.clear()
        self._held = 0
