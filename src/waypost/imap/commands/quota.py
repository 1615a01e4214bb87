"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208).

Each account has one quota root, named "" (the empty string), that holds all its
mailboxes; it exists when the account has a limit (its own or its domain's), with the
resources that are limited: STORAGE (in units of 1024 octets, RFC 9208 §5.1) and
MESSAGE (§5.2).  Another user's mailbox is in its owner's root, which this user does
not see: GETQUOTAROOT names no root for it.  Limits are set by the administrator
(``waypost account set --quota``), so SETQUOTA is refused (§4.3: "NO" when the user
may not change the limits).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...mailstore import Quota
from ..proto import Codes, GetQuota, GetQuotaRoot, QuotaData, QuotaRootData, SetQuota, Tagged
from .authenticated import find_mailbox, no_mailbox

if TYPE_CHECKING:
    from ..server import Connection

ROOT = ""


def resources(quota: Quota) -> tuple[tuple[str, int, int], ...]:
    """(resource, usage, limit) of each limited resource."""
    out: list[tuple[str, int, int]] = []
    if quota.storage_limit is not None:
        out.append(("STORAGE", -(-quota.storage // 1024), quota.storage_limit // 1024))
    if quota.message_limit is not None:
        out.append(("MESSAGE", quota.messages, quota.message_limit))
    return tuple(out)


async def _own_quota(conn: Connection) -> Quota:
    assert conn.access is not None
    return await asyncio.to_thread(conn.store.quota, conn.access.domain, conn.access.account)


async def getquota(conn: Connection, cmd: GetQuota) -> Tagged:
    quota = await _own_quota(conn)
    if cmd.root != ROOT or not quota.limited:
        return Tagged(cmd.tag, "NO", "No such quota root", Codes.NONEXISTENT)
    conn.send(QuotaData(ROOT, resources(quota)))
    return Tagged(cmd.tag, "OK", "GETQUOTA completed")


async def getquotaroot(conn: Connection, cmd: GetQuotaRoot) -> Tagged:
    assert conn.access is not None
    ref = find_mailbox(conn, cmd.mailbox)
    if ref is None:
        return no_mailbox(cmd.tag)
    if not conn.access.is_owner(ref.box):
        conn.send(QuotaRootData(cmd.mailbox, ()))
        return Tagged(cmd.tag, "OK", "GETQUOTAROOT completed")
    quota = await _own_quota(conn)
    if not quota.limited:
        conn.send(QuotaRootData(cmd.mailbox, ()))
        return Tagged(cmd.tag, "OK", "GETQUOTAROOT completed")
    # RFC 9208 §4.3.2: the QUOTAROOT response, then a QUOTA response for each root.
    conn.send(QuotaRootData(cmd.mailbox, (ROOT,)), QuotaData(ROOT, resources(quota)))
    return Tagged(cmd.tag, "OK", "GETQUOTAROOT completed")


async def setquota(conn: Connection, cmd: SetQuota) -> Tagged:
    return Tagged(cmd.tag, "NO", "Quotas are set by the administrator", Codes.NOPERM)


HANDLERS: dict[str, Any] = {
    "GETQUOTA": getquota,
    "GETQUOTAROOT": getquotaroot,
    "SETQUOTA": setquota,
}
