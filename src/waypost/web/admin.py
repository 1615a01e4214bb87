"""The admin pages under ``/admin/`` (issue 18): server-rendered forms over the
operations layer (``waypost.ops``), the same checks as the CLI and the API.

A page needs a WebUser session (``app._page``: login, and the session's CSRF token in
every POST) of an administrator: the right ``AllUsers`` (everything) or domains given
with ``waypost account set --admin-domain`` (those domains only).  An ordinary account
gets 403.  A refused change is shown on the page with the field it is about; nothing is
changed.  Every change is logged by the operations layer as ``actor=admin:<account>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..address import AddressError
from ..db import Conflict, NotFound, QueueFilter
from ..directory import DirectoryError
from ..log import event
from ..ops import Actor, Denied, Invalid, Operations, domain_view, object_view
from ..ops.mail import format_size as _size
from .sessions import Session

log = logging.getLogger("waypost.web")

if TYPE_CHECKING:
    from .app import Web

__all__ = ["ADMIN_ROUTES", "QUEUE_PAGE"]

#: Messages on one page of the queue list.
QUEUE_PAGE = 50
_QUEUE_FIELDS = ("domain", "target", "sender", "recipient", "state")

Handler = Callable[["Web", Request], Any]


def _ops(web: "Web", request: Request) -> Operations | None:
    """The operations as the session's account, or None: not an administrator."""
    session: Session = request.scope["waypost.session"]
    obj = web.server.db.get_object(session.domain, session.name)
    actor = Actor.of_account(obj) if obj is not None else None
    return web.operations(actor) if actor is not None else None


def _refusal(e: Exception) -> str:
    if isinstance(e, Invalid):
        return f"{e.field}: {e.message}"
    return str(e).strip("'\"")


_EXPECTED = (Denied, Invalid, NotFound, Conflict, DirectoryError, AddressError, ValueError)


def admin_page(handler: Callable[["Web", Request, Operations], Any]) -> Handler:
    """An admin page: 403 for an account that administers nothing."""
    async def run(web: "Web", request: Request) -> Response:
        ops = await asyncio.to_thread(_ops, web, request)
        if ops is None:
            return web.page(request, "error.html", 403, title="Forbidden",
                            message="This account does not administer anything here.")
        request.scope["waypost.ops"] = ops
        try:
            result: Response = await handler(web, request, ops)
        except Denied as e:
            return web.page(request, "error.html", 403, title="Forbidden", message=str(e), admin=ops.actor)
        except NotFound as e:
            return web.page(request, "error.html", 404, title="Not found", message=str(e).strip("'\""), admin=ops.actor)
        except (Invalid, DirectoryError, AddressError, ValueError) as e:
            # A bad address or id in the URL (a form's own errors are shown on its page).
            event(log, "web-admin-refused", level=logging.INFO, account=ops.actor.name, path=request.url.path,
                  reason=str(e)[:200])
            return web.page(request, "error.html", 400, title="Refused", message=str(e).strip("'\""),
                            admin=ops.actor)
        return result
    return run


def _render(web: "Web", request: Request, template: str, status: int = 200, **values: Any) -> Response:
    ops: Operations = request.scope["waypost.ops"]
    return web.page(request, template, status, admin=ops.actor, **values)


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v) for k, v in form.items() if isinstance(v, str)}


# -- domains -------------------------------------------------------------------------------

def _domains_values(ops: Operations) -> dict[str, Any]:
    return {"domains": [domain_view(ops.directory, d) for d in ops.domain_list()]}


async def domains(web: "Web", request: Request, ops: Operations) -> Response:
    error, status = "", 200
    if request.method == "POST":
        f = await _form(request)
        action = f.get("action", "")

        def change() -> None:
            if action == "add":
                ops.domain_add(f.get("name", ""), [a for a in f.get("aliases", "").split() if a])
            elif action == "remove":
                ops.domain_remove(f.get("name", ""))
            else:
                raise Invalid("action", "unknown action")
        try:
            await asyncio.to_thread(change)
            return RedirectResponse("/admin/domains", 303)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400
    values = await asyncio.to_thread(_domains_values, ops)
    return _render(web, request, "admin_domains.html", status, title="Domains", error=error, **values)


def _domain_values(ops: Operations, name: str) -> dict[str, Any]:
    rec = ops.domain_get(name)
    objects = {kind: [object_view(o) for o in ops.object_list(kind, rec.name)]
               for kind in ("account", "alias", "forwarder", "group")}
    return {"domain": domain_view(ops.directory, rec), "objects": objects,
            "account_template": rec.settings.get("template") or {}}


async def domain(web: "Web", request: Request, ops: Operations) -> Response:
    """One domain: its settings and objects; the forms that change them."""
    name = request.query_params.get("name", "")
    error, status = "", 200
    if request.method == "POST":
        f = await _form(request)
        name = f.get("domain", name)
        action = f.get("action", "")

        def change() -> None:
            address = f.get("address", "").strip()
            if action == "settings":
                changes: dict[str, Any] = {}
                if f.get("mail_to_unknown"):
                    changes["mail_to_unknown"] = f["mail_to_unknown"]
                if f.get("send_as"):
                    changes["send_as"] = None if f["send_as"] == "own" else f["send_as"]
                if ops.actor.server_admin and "aliases" in f:
                    changes["aliases"] = f["aliases"].split()
                if ops.actor.server_admin and "ips" in f:
                    changes["ips"] = f["ips"].split()
                if not changes:
                    raise Invalid("settings", "nothing to change")
                ops.domain_set(name, **changes)
            elif action == "template":
                ops.domain_template(name, {"mailboxes": f.get("mailboxes", "").split(),
                                           "subscriptions": f.get("subscriptions", "").split(), "aliases": {}})
            elif action == "add-account":
                obj = ops.account_add(f"{address}@{name}" if "@" not in address else address,
                                      f.get("password") or None, f.get("real_name", ""))
                web.server.mailstore.ensure_account(obj.domain, obj.name)
            elif action == "add-alias":
                ops.alias_add(f"{address}@{name}" if "@" not in address else address, f.get("target", ""))
            elif action == "add-forwarder":
                ops.forwarder_add(f"{address}@{name}" if "@" not in address else address, f.get("target", ""))
            elif action == "add-group":
                ops.group_add(f"{address}@{name}" if "@" not in address else address, f.get("members", "").split(),
                              f.get("real_name", ""))
            elif action in ("remove-alias", "remove-forwarder", "remove-group", "remove-account"):
                getattr(ops, action.split("-", 1)[1] + "_remove")(address)
            else:
                raise Invalid("action", "unknown action")
        try:
            await asyncio.to_thread(change)
            return RedirectResponse("/admin/domain?" + urlencode({"name": name}), 303)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400
    values = await asyncio.to_thread(_domain_values, ops, name)
    return _render(web, request, "admin_domain.html", status, title=values["domain"]["name"], error=error, **values)


async def account(web: "Web", request: Request, ops: Operations) -> Response:
    """One account: password, real name, enable/disable, forwarding, rights."""
    address = request.query_params.get("address", "")
    error, status = "", 200
    if request.method == "POST":
        f = await _form(request)
        address = f.get("address", address)
        action = f.get("action", "")

        def change() -> None:
            if action == "password":
                ops.account_passwd(address, f.get("password") or None)
            elif action == "settings":
                changes: dict[str, Any] = {"real_name": f.get("real_name", ""), "enabled": f.get("enabled") == "on",
                                           "forward": f.get("forward", "").strip() or None}
                if changes["forward"]:
                    changes["keep_copy"] = f.get("keep_copy") == "on"
                ops.account_set(address, **changes)
            elif action == "rights":
                ops.account_set(address, rights=[r for r in ("AllUsers", "CanAccessMailboxes") if f.get(r) == "on"],
                                admin_domains=f.get("admin_domains", "").split())
            elif action == "quota":  # "2G", "unlimited", or empty: the domain's default
                ops.account_set(address, quota_storage=f.get("quota_storage", "").strip() or None,
                                quota_messages=f.get("quota_messages", "").strip() or None)
            elif action == "quota-recount":
                ops.quota_recount(address)
            elif action == "files":  # "50M", or empty: the domain's limit
                ops.files_set(address, limit=f.get("files_limit", "").strip() or None,
                              listing=f.get("files_listing") == "on")
            elif action == "mailbox-alias-add":
                ops.mailbox_alias_add(address, f.get("alias", "").strip(), f.get("target", "").strip())
            elif action == "mailbox-alias-remove":
                ops.mailbox_alias_remove(address, f.get("alias", ""))
            elif action == "mailbox-create":
                ops.mailbox_create(f"{address}/{f.get('mailbox', '').strip()}")
            elif action == "sieve-put":
                ops.sieve_put(address, f.get("name", "").strip(), f.get("script", "").replace("\r\n", "\n"),
                              f.get("activate") == "on")
            elif action == "sieve-activate":
                ops.sieve_activate(address, f.get("name") or None)
            elif action == "sieve-delete":
                ops.sieve_delete(address, f.get("name", ""))
            else:
                raise Invalid("action", "unknown action")
        try:
            await asyncio.to_thread(change)
            return RedirectResponse("/admin/account?" + urlencode({"address": address}), 303)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400
    obj = await asyncio.to_thread(ops.object_get, address, "account")
    boxes = await asyncio.to_thread(ops.mailbox_list, obj.address)
    quota = await asyncio.to_thread(ops.quota_show, obj.address)
    scripts = await asyncio.to_thread(ops.sieve_list, obj.address)
    aliases = await asyncio.to_thread(ops.mailbox_alias_list, obj.address)
    [files] = await asyncio.to_thread(ops.files_usage, obj.address)
    return _render(web, request, "admin_account.html", status, title=obj.address, error=error, account=object_view(obj),
                   files=files, own_files_limit=obj.data.get("files_limit"), mailbox_aliases=aliases,
                   mailboxes=boxes, quota=quota, own_quota={k: obj.data.get(k) for k in ("quota_storage",
                                                                                          "quota_messages")},
                   scripts=scripts, size=_size)


async def dkim(web: "Web", request: Request, ops: Operations) -> Response:
    """A domain's DKIM keys (generate, activate, deactivate, remove) and every DNS
    record the domain should publish, as ``waypost dkim`` and ``waypost dns``."""
    name = request.query_params.get("domain", "")
    error, status = "", 200
    if request.method == "POST":
        f = await _form(request)
        name = f.get("domain", name)
        action = f.get("action", "")

        def change() -> None:
            selector = f.get("selector", "").strip()
            if action == "generate":
                ops.dkim_generate(name, selector or None, f.get("algorithm", "rsa"), f.get("inactive") == "on")
            elif action in ("activate", "deactivate"):
                ops.dkim_activate(name, selector, action == "activate")
            elif action == "remove":
                ops.dkim_remove(name, selector)
            else:
                raise Invalid("action", "unknown action")
        try:
            await asyncio.to_thread(change)
            return RedirectResponse("/admin/dkim?" + urlencode({"domain": name}), 303)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400

    def values() -> dict[str, Any]:
        domain_name, expected = ops.dns_expected(name)
        return {"domain": domain_name, "keys": ops.dkim_list(domain_name), "records": expected}
    shown = await asyncio.to_thread(values)
    return _render(web, request, "admin_dkim.html", status, title=f"DKIM and DNS of {shown['domain']}", error=error,
                   **shown)


async def quotas(web: "Web", request: Request, ops: Operations) -> Response:
    """The accounts of a domain, fullest first, and the domain's default limits (of
    mailboxes, and of file areas)."""
    name = request.query_params.get("domain", "")
    error, status = "", 200
    if request.method == "POST":
        f = await _form(request)
        name = f.get("domain", name)

        def change() -> None:
            if f.get("action") == "defaults":
                ops.domain_set(name, quota_storage=f.get("quota_storage", "").strip() or None,
                               quota_messages=f.get("quota_messages", "").strip() or None)
            elif f.get("action") == "files-default":  # the file areas' limit; empty: the server's
                ops.files_set_domain(name, f.get("files_limit", "").strip() or None)
            else:
                raise Invalid("action", "unknown action")
        try:
            await asyncio.to_thread(change)
            return RedirectResponse("/admin/quotas?" + urlencode({"domain": name}), 303)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400

    def values() -> dict[str, Any]:
        rec = ops.domain_get(name)
        return {"domain": rec.name, "rows": ops.quota_list(rec.name),
                "defaults": {k: rec.settings.get(k) for k in ("quota_storage", "quota_messages", "files_limit")}}
    shown = await asyncio.to_thread(values)
    return _render(web, request, "admin_quotas.html", status, title=f"Quotas of {shown['domain']}", error=error,
                   size=_size, **shown)


async def acl(web: "Web", request: Request, ops: Operations) -> Response:
    """The ACL of one mailbox (``mailbox=ACCOUNT/MAILBOX``): grant, change, take away."""
    path = request.query_params.get("mailbox", "")
    error, status = "", 200
    if request.method == "POST":
        f = await _form(request)
        path = f.get("mailbox", path)
        try:
            await asyncio.to_thread(ops.acl_set, path, f.get("identifier", ""), f.get("rights", "").strip() or "none")
            return RedirectResponse("/admin/acl?" + urlencode({"mailbox": path}), 303)
        except _EXPECTED as e:
            if isinstance(e, (Denied, NotFound)):
                raise
            error, status = _refusal(e), 400
    try:
        entries = await asyncio.to_thread(ops.acl_get, path)
    except Invalid as e:
        return _render(web, request, "error.html", 400, title="Bad request", message=_refusal(e))
    return _render(web, request, "admin_acl.html", status, title=f"ACL of {path}", error=error, mailbox=path,
                   entries=entries)


# -- the queue -----------------------------------------------------------------------------

def _queue_where(params: Any) -> tuple[QueueFilter, str | None]:
    state = params.get("state") or None
    if state is not None and state not in ("queued", "held", "deferred", "active"):
        raise Invalid("state", "expected queued, held, deferred or active")
    sender = params.get("sender") or None
    return (QueueFilter(target=params.get("target") or None, sender="" if sender == "<>" else sender,
                        recipient=params.get("recipient") or None, state=state), params.get("domain") or None)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _queue_values(ops: Operations, params: Any) -> dict[str, Any]:
    where, domain = _queue_where(params)
    after: tuple[float, str] | None = None
    if params.get("after"):
        created, _, msg_id = str(params.get("after")).partition(",")
        try:
            after = (float(created), msg_id)
        except ValueError:
            raise Invalid("after", "expected CREATED,ID") from None
    # One more than a page: whether there is a next page, without counting them all.
    rows = ops.queue_page(where, domain, after, QUEUE_PAGE + 1)
    more = len(rows) > QUEUE_PAGE
    rows = rows[:QUEUE_PAGE]
    entries = [{"id": e.msg_id, "sender": e.sender or "<>", "size": e.size, "created": _when(e.created),
                "recipients": e.recipients, "targets": e.targets, "held": e.held, "attempts": e.attempts,
                "last_reply": e.last_reply} for e in rows]
    kept = {k: params.get(k) for k in _QUEUE_FIELDS if params.get(k)}
    nxt = "/admin/queue?" + urlencode({**kept, "after": f"{rows[-1].created!r},{rows[-1].msg_id}"}) if more else ""
    first = "/admin/queue?" + urlencode(kept) if after is not None else ""
    return {"entries": entries, "next": nxt, "first": first, "filters": kept, "holds": ops.queue_holds()}


async def queue(web: "Web", request: Request, ops: Operations) -> Response:
    error, status = "", 200
    back = "/admin/queue"
    if request.method == "POST":
        f = await _form(request)
        action = f.get("action", "")
        back = f.get("back", "") if f.get("back", "").startswith("/admin/queue") else "/admin/queue"

        def change() -> None:
            if action == "hold":
                ops.queue_hold(f.get("domain", ""))
            elif action == "release":
                ops.queue_release(f.get("domain", ""))
            elif action == "flush":
                ops.queue_flush(f.get("id", ""))
            elif action == "delete":
                ops.queue_delete(f.get("id", ""))
            elif action in ("hold-matching", "release-matching", "flush-matching", "delete-matching"):
                # The messages the filter shown chooses (all of its pages).
                where, domain = _queue_where(f)
                if action == "hold-matching":
                    ops.queue_hold_matching(where, domain)
                elif action == "release-matching":
                    ops.queue_release_matching(where, domain)
                elif action == "flush-matching":
                    ops.queue_flush(None, where, domain)
                else:
                    ops.queue_delete_matching(where, domain)
            else:
                raise Invalid("action", "unknown action")
        try:
            await asyncio.to_thread(change)
            return RedirectResponse(back, 303)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400
    try:
        values = await asyncio.to_thread(_queue_values, ops, request.query_params)
    except Invalid as e:
        error, status = _refusal(e), 400
        values = await asyncio.to_thread(_queue_values, ops, {})
    return _render(web, request, "admin_queue.html", status, title="Queue", error=error, **values)


async def queue_message(web: "Web", request: Request, ops: Operations) -> Response:
    m = await asyncio.to_thread(ops.queue_get, request.query_params.get("id", ""))
    return _render(web, request, "admin_queued.html", title=m.msg_id, message=m, when=_when)


# -- routing -------------------------------------------------------------------------------

async def router(web: "Web", request: Request, ops: Operations) -> Response:
    """The Router table, edited in place (checked whole: a bad line is refused with its
    number and nothing changes), and the route explainer."""
    errors: list[Any] = []
    text: str | None = None
    status = 200
    if request.method == "POST":
        f = await _form(request)
        text = f.get("text", "").replace("\r\n", "\n")
        count, errors = await asyncio.to_thread(ops.router_set, text)
        if not errors:
            return RedirectResponse("/admin/router?saved=1", 303)
        status = 400
    current, version = await asyncio.to_thread(ops.router_get)
    explained = None
    address = request.query_params.get("address", "").strip()
    client_ip = request.query_params.get("client_ip", "").strip() or None
    explain_error = ""
    if address:
        from ..ops.explain import explain

        try:
            explained = await explain(web.server.router, web.settings, web.server.db, address[:320], "mail",
                                      client_ip[:64] if client_ip else None)
        except (AddressError, ValueError) as e:
            explain_error = str(e)
    return _render(web, request, "admin_router.html", status, title="Routing", text=current if text is None else text,
                   version=version, errors=errors, saved=request.query_params.get("saved") == "1",
                   address=address, client_ip=client_ip or "", explained=explained, explain_error=explain_error)


async def _settings_page(web: "Web", request: Request, ops: Operations, template: str, title: str, path: str,
                         change: Callable[[dict[str, str]], Any], values: Callable[[], dict[str, Any]]) -> Response:
    """A page of server-wide settings: POST a form to ``change`` (which may return the
    bad lines of a whole text), then back to the page; else show ``values``."""
    error, errors, status = "", [], 200
    text: str | None = None
    if request.method == "POST":
        f = await _form(request)
        try:
            bad = await asyncio.to_thread(change, f)
        except _EXPECTED as e:
            if isinstance(e, Denied):
                raise
            error, status = _refusal(e), 400
        else:
            if not bad:
                return RedirectResponse(path, 303)
            errors, status, text = bad, 400, f.get("text", "")
    shown = await asyncio.to_thread(values)
    if text is not None:
        shown["text"] = text
    return _render(web, request, template, status, title=title, error=error, errors=errors, **shown)


async def rules(web: "Web", request: Request, ops: Operations) -> Response:
    """The server-wide rules: add (at a position), move up and down, remove."""
    def change(f: dict[str, str]) -> Any:
        action = f.get("action", "")
        if action == "add":
            position = f.get("position", "").strip()
            if position and not position.isdigit():
                raise Invalid("position", "expected a number")
            return ops.rule_add(f.get("text", "").strip(), int(position) if position else None)[1]
        if action == "move":
            if not f.get("position", "").isdigit():
                raise Invalid("position", "expected a number")
            ops.rule_move(f.get("name", ""), int(f["position"]))
        elif action == "remove":
            ops.rule_remove(f.get("name", ""))
        else:
            raise Invalid("action", "unknown action")
        return []
    return await _settings_page(web, request, ops, "admin_rules.html", "Server-wide rules", "/admin/rules", change,
                                lambda: {"rules": ops.rules_list()})


async def gateway(web: "Web", request: Request, ops: Operations) -> Response:
    """The gateway forwarding rules (edited whole, as the Router table) and next-hop AUTH."""
    def change(f: dict[str, str]) -> Any:
        action = f.get("action", "")
        if action == "rules":
            return ops.gateway_set(f.get("text", "").replace("\r\n", "\n"))[1]
        if action == "auth-set":
            ops.gateway_auth_set(f.get("who", "").strip() or "*", f.get("user", "").strip(), f.get("password", ""))
        elif action == "auth-remove":
            ops.gateway_auth_remove(f.get("who", ""))
        else:
            raise Invalid("action", "unknown action")
        return []
    address = request.query_params.get("address", "").strip()[:320]
    return await _settings_page(web, request, ops, "admin_gateway.html", "Gateway", "/admin/gateway", change,
                                lambda: {"text": ops.gateway_text(), "credentials": ops.gateway_auth_list(),
                                         "address": address, "tested": ops.gateway_test(address) if address else None})


async def sharing_page(web: "Web", request: Request, ops: Operations) -> Response:
    """Domain Sharing: peers (added, removed) and the remembered answers."""
    def change(f: dict[str, str]) -> Any:
        action = f.get("action", "")
        if action == "peer-add":
            ports = {}
            for key, default in (("smtp_port", 25), ("minger_port", 4069)):
                value = f.get(key, "").strip()
                if value and not value.isdigit():
                    raise Invalid(key, "expected a port number")
                ports[key] = int(value) if value else default
            ops.peer_add(f.get("host", "").strip(), ports["smtp_port"], ports["minger_port"], f.get("secret", ""),
                         f.get("domains", "").split())
        elif action == "peer-remove":
            ops.peer_remove(f.get("host", ""))
        elif action == "cache-clear":
            ops.sharing_cache_clear()
        else:
            raise Invalid("action", "unknown action")
        return []
    lookup = request.query_params.get("lookup", "").strip()[:320]

    def values() -> dict[str, Any]:
        out: dict[str, Any] = {"peers": ops.peers_list(), "cache": ops.sharing_cache(), "when": _when,
                               "lookup": lookup, "answers": None, "lookup_error": ""}
        if lookup:  # waypost share lookup: ask every peer now
            try:
                out["answers"] = ops.sharing_lookup(lookup, web.settings.sharing.timeout)
            except Invalid as e:
                out["lookup_error"] = e.message
        return out
    return await _settings_page(web, request, ops, "admin_sharing.html", "Domain Sharing", "/admin/sharing", change,
                                values)


async def logins(web: "Web", request: Request, ops: Operations) -> Response:
    """Failed logins counted against client addresses and accounts, and their blocks;
    a block forgotten (server administrators)."""
    def change(f: dict[str, str]) -> Any:
        if f.get("action") != "unblock":
            raise Invalid("action", "unknown action")
        ops.auth_unblock(f.get("who", "").strip())
        return []
    return await _settings_page(web, request, ops, "admin_logins.html", "Failed logins", "/admin/logins", change,
                                lambda: {"rows": ops.auth_blocked(), "when": _when, "now": time.time()})


async def home(web: "Web", request: Request, ops: Operations) -> Response:
    return RedirectResponse("/admin/domains", 303)


#: (path, handler, methods)
ADMIN_ROUTES: list[tuple[str, Handler, list[str]]] = [
    ("/admin", admin_page(home), ["GET"]),
    ("/admin/domains", admin_page(domains), ["GET", "POST"]),
    ("/admin/domain", admin_page(domain), ["GET", "POST"]),
    ("/admin/account", admin_page(account), ["GET", "POST"]),
    ("/admin/queue", admin_page(queue), ["GET", "POST"]),
    ("/admin/queue/message", admin_page(queue_message), ["GET"]),
    ("/admin/router", admin_page(router), ["GET", "POST"]),
    ("/admin/acl", admin_page(acl), ["GET", "POST"]),
    ("/admin/dkim", admin_page(dkim), ["GET", "POST"]),
    ("/admin/quotas", admin_page(quotas), ["GET", "POST"]),
    ("/admin/rules", admin_page(rules), ["GET", "POST"]),
    ("/admin/gateway", admin_page(gateway), ["GET", "POST"]),
    ("/admin/sharing", admin_page(sharing_page), ["GET", "POST"]),
    ("/admin/logins", admin_page(logins), ["GET", "POST"]),
]
