"""Our own MTA-STS policy (RFC 8461 §3.2), served at
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` for every hosted domain from the
web listener, as the ``[mta_sts]`` settings describe it.

The policy is the same for every domain (they share our MX hosts); its ``id`` (what the
``_mta-sts.<domain>`` TXT record must carry, and ``waypost dns`` prints) is a hash of
the text, so it changes exactly when the policy does: senders fetch it again then.
Never: a policy for a host name that is not ``mta-sts.`` + a domain we host.
"""

from __future__ import annotations

import asyncio

import logging
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..config import Settings
from ..log import event
from ..mailauth.publish import policy_id, policy_text

__all__ = ["PATH", "policy_text", "policy_id", "respond"]

log = logging.getLogger("waypost.web")

PATH = "/.well-known/mta-sts.txt"


async def respond(settings: Settings, directory: Any, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer a GET of the policy for ``mta-sts.<hosted domain>``; False when the
    request is not one (the rest of the web application answers it)."""
    if scope.get("path") != PATH or not settings.mta_sts.mode:
        return False
    headers = dict(scope.get("headers", []))
    host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].rstrip(".").lower()
    if host.startswith("[") or not host.startswith("mta-sts."):
        return False
    domain = host[len("mta-sts."):]
    if await asyncio.to_thread(directory.domain, domain) is None:  # (the database: never on the loop)
        event(log, "mta-sts-unknown-domain", level=logging.INFO, host=host)
        return False
    if scope.get("method") not in ("GET", "HEAD"):
        await Response("Method not allowed\n", 405, media_type="text/plain",
                       headers={"Allow": "GET, HEAD"})(scope, receive, send)
        return True
    # RFC 8461 §3.3: text/plain; no redirect; caching is the sender's business (max_age).
    await Response(policy_text(settings), 200, media_type="text/plain",
                   headers={"Cache-Control": "no-cache"})(scope, receive, send)
    return True
