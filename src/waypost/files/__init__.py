"""Account File Storage (seed 004): each account's file area under ``storage.files``,
with a size limit, and the typed API that the web and FTP listeners use to reach it.

This package owns the files of the areas and what may be done to them (path safety,
atomic writes, the limit); it never speaks a protocol.  The web's public pages ask
``lookup`` which account's file an HTTP request names; FTP sessions work through
``AccountFiles``.
"""

from .paths import MAX_DEPTH, MAX_NAME, PathError, split_path
from .public import INDEX, PublicAnswer, Site, find_site, lookup
from .store import (LIMIT_KEY, LISTING_KEY, AccountFiles, Entry, Exists, FileInfo, FilesError, FileStore,
                    LimitExceeded, Missing, NotEmpty, Upload, content_type)

__all__ = [
    "AccountFiles",
    "Entry",
    "Exists",
    "FileInfo",
    "FileStore",
    "FilesError",
    "INDEX",
    "LIMIT_KEY",
    "LISTING_KEY",
    "LimitExceeded",
    "MAX_DEPTH",
    "MAX_NAME",
    "Missing",
    "NotEmpty",
    "PathError",
    "PublicAnswer",
    "Site",
    "Upload",
    "content_type",
    "find_site",
    "lookup",
    "split_path",
]
