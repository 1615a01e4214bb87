"""The URLAUTH commands (RFC 4467, with URLAUTH=BINARY, RFC 5524), legal once
authenticated.

RFC 4467 §9:
    resetkey      = "RESETKEY" [SP mailbox *(SP mechanism)]
    genurlauth    = "GENURLAUTH" 1*(SP url-rump SP mechanism)
    url-rump      = astring
    urlfetch      = "URLFETCH" 1*(SP url-full)
    url-full      = astring
    mechanism     = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")
RFC 5524 §6:
    urlfetch      =/ "URLFETCH" 1*(SP url-fetch-param)
    url-fetch-param = url-full / "(" url-full url-fetch-args ")"
    url-fetch-args = [SP url-fetch-arg *(SP url-fetch-arg)]
    url-fetch-arg = "BODYPARTSTRUCTURE" / "BINARY" / "BODY"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader
from .base import Command, CommandParser

__all__ = ["FETCH_ARGS", "GenUrlAuth", "PARSERS", "ResetKey", "UrlFetch", "UrlFetchItem"]

FETCH_ARGS = ("BODYPARTSTRUCTURE", "BINARY", "BODY")
_MECHANISM = re.compile(r"[A-Za-z0-9.-]+\Z")


@dataclass(frozen=True, slots=True)
class ResetKey(Command):
    mailbox: str | None
    mechanisms: tuple[str, ...] = ()
    name: ClassVar[str] = "RESETKEY"


@dataclass(frozen=True, slots=True)
class GenUrlAuth(Command):
    """``urls``: (url-rump, mechanism in upper case) in the order given."""

    urls: tuple[tuple[str, str], ...]
    name: ClassVar[str] = "GENURLAUTH"


@dataclass(frozen=True, slots=True)
class UrlFetchItem:
    """A URL to fetch; ``args`` None for the RFC 4467 form (the URL's octets), else
    the RFC 5524 items asked for, upper case."""

    url: str
    args: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class UrlFetch(Command):
    items: tuple[UrlFetchItem, ...]
    name: ClassVar[str] = "URLFETCH"


def _mechanism(r: Reader) -> str:
    word = r.keyword("URLAUTH mechanism")
    if _MECHANISM.match(word) is None:
        r.fail_here("URLAUTH mechanism")
    return word


def _resetkey(r: Reader, tag: str) -> Command:
    if not r.skip_sp():
        return ResetKey(tag, None)
    mailbox = r.mailbox()
    mechanisms = []
    while r.skip_sp():
        mechanisms.append(_mechanism(r))
    return ResetKey(tag, mailbox, tuple(mechanisms))


def _url(r: Reader) -> str:
    return r.text(r.astring("URL"), "URL")


def _genurlauth(r: Reader, tag: str) -> Command:
    urls = []
    while True:
        r.sp()
        url = _url(r)
        r.sp()
        urls.append((url, _mechanism(r)))
        if r.peek() != 0x20:
            break
    return GenUrlAuth(tag, tuple(urls))


def _urlfetch(r: Reader, tag: str) -> Command:
    items = []
    while True:
        r.sp()
        if r.peek() == 0x28:  # "(" url-full url-fetch-args ")"
            r.open()
            url = _url(r)
            args = []
            while r.skip_sp():
                arg = r.keyword("URLFETCH item")
                if arg not in FETCH_ARGS:
                    r.fail_here("BODYPARTSTRUCTURE, BINARY or BODY")
                args.append(arg)
            r.close()
            items.append(UrlFetchItem(url, tuple(dict.fromkeys(args))))
        else:
            items.append(UrlFetchItem(_url(r)))
        if r.peek() != 0x20:
            break
    return UrlFetch(tag, tuple(items))


PARSERS: dict[str, CommandParser] = {
    "RESETKEY": _resetkey,
    "GENURLAUTH": _genurlauth,
    "URLFETCH": _urlfetch,
}
