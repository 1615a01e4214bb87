"""The QUOTA commands (RFC 9208), legal once authenticated.

RFC 9208 §7 (formal syntax):

    getquota         = "GETQUOTA" SP quota-root-name
    getquotaroot     = "GETQUOTAROOT" SP mailbox
    setquota         = "SETQUOTA" SP quota-root-name SP setquota-list
    setquota-list    = "(" [setquota-resource *(SP setquota-resource)] ")"
    setquota-resource = resource-name SP resource-limit
    quota-root-name  = astring
    resource-name    = "STORAGE" / "MESSAGE" / "MAILBOX" / "ANNOTATION-STORAGE" / resource-name-ext
    resource-limit   = number64
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..lexer import Reader
from .base import Command, CommandParser

__all__ = ["GetQuota", "GetQuotaRoot", "PARSERS", "SetQuota"]


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: str
    name: ClassVar[str] = "GETQUOTA"


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    mailbox: str
    name: ClassVar[str] = "GETQUOTAROOT"


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    """``limits``: (resource name in upper case, limit) in the order given."""

    root: str
    limits: tuple[tuple[str, int], ...]
    name: ClassVar[str] = "SETQUOTA"


def _getquota(r: Reader, tag: str) -> Command:
    r.sp()
    return GetQuota(tag, r.text(r.astring("quota root"), "quota root"))


def _getquotaroot(r: Reader, tag: str) -> Command:
    r.sp()
    return GetQuotaRoot(tag, r.mailbox())


def _setquota(r: Reader, tag: str) -> Command:
    r.sp()
    root = r.text(r.astring("quota root"), "quota root")
    r.sp()
    r.open()
    limits: list[tuple[str, int]] = []
    if not r.try_close():
        while True:
            resource = r.keyword("resource name")
            r.sp()
            limits.append((resource, r.number("resource limit")))
            if not r.skip_sp():
                break
        r.close()
    return SetQuota(tag, root, tuple(limits))


PARSERS: dict[str, CommandParser] = {
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
    "SETQUOTA": _setquota,
}
