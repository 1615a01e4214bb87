"""Path safety for the file areas: what a client may name, checked before any file is touched.

A path is *area-relative*: ``docs/index.html``, ``""`` for the area's top.  The web
and FTP adapters turn their own forms (``/~alice/docs/``, an FTP working directory)
into it; this module refuses, whatever the adapter did:

* a leading ``/`` (an absolute path) and ``\\`` (another system's separator);
* ``.`` and ``..`` components;
* NUL and the other control characters;
* components that one more round of URL decoding would turn into ``.``, ``..`` or a
  name holding ``/``, ``\\`` or NUL (``%2e%2e``, ``%2f``: a layer that decodes twice must
  not be able to climb out);
* over-long names and paths, and paths nested deeper than ``MAX_DEPTH``.

Symbolic links are refused where the store opens each component (``O_NOFOLLOW``), not
here: this module does no I/O.
"""

from __future__ import annotations

from urllib.parse import unquote

__all__ = ["MAX_DEPTH", "MAX_NAME", "FilesError", "PathError", "split_path"]

#: Deepest folder nesting a path may name.
MAX_DEPTH = 32
#: Longest file or folder name, in UTF-8 octets (the common file-system limit).
MAX_NAME = 255


class FilesError(Exception):
    """A request the file area refuses; the message is safe to show the user."""


class PathError(FilesError, ValueError):
    """A path the file area refuses; the message says why (safe to show a client)."""


def _bad_char(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def split_path(path: str) -> tuple[str, ...]:
    """The components of an area-relative path, or ``PathError``.  Empty components
    (``a//b``, a trailing ``/``) are dropped; ``""`` is the area's top."""
    if not isinstance(path, str):
        raise PathError("a path must be text")
    if "\x00" in path:
        raise PathError("NUL in path")
    if _bad_char(path):
        raise PathError("control character in path")
    if path.startswith("/"):
        raise PathError("absolute path")
    if "\\" in path:
        raise PathError("backslash in path")
    parts = tuple(p for p in path.split("/") if p)
    if len(parts) > MAX_DEPTH:
        raise PathError(f"more than {MAX_DEPTH} levels of folders")
    for part in parts:
        if part in (".", ".."):
            raise PathError(f"{part!r} in path")
        decoded = unquote(part, errors="replace") if "%" in part else part
        if decoded != part and (decoded in (".", "..") or any(c in decoded for c in "/\\\x00")
                                or _bad_char(decoded)):
            raise PathError("encoded separator or dot-segment in path")
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise PathError("path is not valid UTF-8") from None
        if size > MAX_NAME:
            raise PathError(f"name longer than {MAX_NAME} octets")
    return parts
