"""Sieve mail filtering (RFC 5228) with the extensions users expect (fileinto, reject
and ereject, envelope, imap4flags, vacation, copy, variables, relational, subaddress,
mailbox, body, date, editheader, i;ascii-numeric), and ManageSieve (RFC 5804) to store scripts.

The language is ours, sans-IO: ``compile_script`` turns text into a checked ``Script``
(or a ``SieveError`` with line and column); ``run`` evaluates it against one message
and returns the actions.  Local delivery (``waypost.queue``) runs each account's
active script after the server-wide rules and carries the actions out: the language
never stores, sends or reads anything itself.  The ManageSieve listener is the
asyncio adapter ``managesieve.py`` around the sans-IO ``proto.py``; it reaches scripts
through the ``Database`` only.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .check import EXTENSIONS, Script, compile_script
from .grammar import SieveError
from .interpret import Action, Message, Result, run
from .vacation import build_reply, refusal

__all__ = ["EXTENSIONS", "Action", "Message", "Result", "Script", "SieveError", "build_reply", "compiled",
           "compile_script", "refusal", "run"]

#: Compiled scripts kept per process, keyed by their text: a changed script is another
#: key, so no entry is ever stale in any worker (STYLE point 13); bounded.
_CACHE_SIZE = 512
_cache: OrderedDict[str, Script | SieveError] = OrderedDict()
_lock = threading.Lock()


def compiled(text: str) -> Script:
    """``compile_script(text)``, remembered (errors too) for the next message."""
    with _lock:
        hit = _cache.get(text)
        if hit is not None:
            _cache.move_to_end(text)
    if hit is None:
        try:
            hit = compile_script(text)
        except SieveError as e:
            hit = e
        with _lock:
            _cache[text] = hit
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    if isinstance(hit, SieveError):
        raise hit
    return hit
