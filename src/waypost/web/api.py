"""The JSON API under ``/api/v1/`` (issue 18): the operations of ``waypost.ops``, the
same ones the CLI and the admin pages use, with the same checks.

Every operation is one ``Op`` in ``OPERATIONS``: method, path, the schema of its body
and query, what it answers.  The Starlette routes and the OpenAPI 3.1 document served
at ``/api/v1/openapi.json`` are both made from that table (and a test probes the
listener for every documented route).

Who asks: ``Authorization: Bearer <token>`` (``waypost token add``; unknown or
revoked: 401), or the session cookie of an administrator logged in on the web (an
unsafe method then also needs the session's CSRF token in ``X-CSRF-Token``).  A
server administrator (right ``AllUsers``, or a token without domains) may do
everything; a domain administrator only what concerns their domains (403 otherwise);
an ordinary account nothing (403).

Errors are ``{"error": {"code", "message", "field"}}``: 400 for bad input (the field
named), 401, 403, 404, 405, 409 (exists), 413 (body too large), 415 (not JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..address import AddressError
from ..db import Conflict, NotFound, QueueEntry, QueueFilter, QueuedMessage, StorageUnavailable
from ..directory import DirectoryError
from ..log import event
from ..ops import Actor, Denied, Invalid, Operations, domain_view, object_view, token_actor
from .schema import ERROR, PAGE, S, SchemaError, validate
from .sessions import COOKIE, same_token

if TYPE_CHECKING:
    from .app import Web

__all__ = ["OPERATIONS", "PREFIX", "build_api", "metrics_endpoint", "openapi_document"]

log = logging.getLogger("waypost.web")

PREFIX = "/api/v1"
#: Octets of a request body (the Router table may be large; everything else is small).
MAX_BODY = 1024 * 1024
MAX_BODY_TABLE = 16 * 1024 * 1024
#: Seconds one DNS look-up of ``GET /domains/{domain}/dns?check=true`` may take.
DNS_CHECK_TIMEOUT = 5.0
#: Items of one page of a list, by default and at most.
PAGE_DEFAULT, PAGE_MAX = 100, 1000


@dataclass
class Call:
    """What a handler gets: the operations as the caller, and the checked input."""

    ops: Operations
    web: "Web"
    path: dict[str, str]
    query: dict[str, Any]
    body: Any
    csrf: str = ""


@dataclass
class Op:
    method: str
    path: str
    op_id: str
    summary: str
    tag: str
    run: Callable[[Call], Any]
    body: dict[str, Any] | None = None
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    response: dict[str, Any] | None = None
    status: int = 200
    #: The field a DirectoryError (a bad name, a domain that is not ours) is about.
    subject: str = "address"
    max_body: int = MAX_BODY
    #: Query parameters that must be given.
    required: tuple[str, ...] = ()


_LIMITS: dict[str, dict[str, Any]] = {"limit": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
           "offset": {"type": "integer", "minimum": 0}}
_DOMAIN_Q: dict[str, dict[str, Any]] = {"domain": {"type": "string", "minLength": 1, "maxLength": 255}}
_QUEUE_Q: dict[str, dict[str, Any]] = {**_DOMAIN_Q, "target": {"type": "string", "minLength": 1, "maxLength": 300},
            "sender": {"type": "string", "maxLength": 320}, "recipient": {"type": "string", "minLength": 1,
                                                                          "maxLength": 320},
            "state": {"type": "string", "enum": ["queued", "held", "deferred", "active"]}}


def _page(items: list[Any], q: dict[str, Any]) -> dict[str, Any]:
    limit, offset = q.get("limit", PAGE_DEFAULT), q.get("offset", 0)
    return {"items": items[offset:offset + limit], "total": len(items), "limit": limit, "offset": offset}


# -- handlers (blocking: run in a thread, except the async ones) -------------------------

def _whoami(c: Call) -> Any:
    a = c.ops.actor
    out = {"actor": a.name, "server_admin": a.server_admin, "domains": sorted(a.domains) if a.domains else None}
    if c.csrf:  # a session: what its unsafe requests send as X-CSRF-Token
        out["csrf"] = c.csrf
    return out


def _domains(c: Call) -> Any:
    return _page([domain_view(c.ops.directory, d) for d in c.ops.domain_list()], c.query)


def _domain_add(c: Call) -> Any:
    b = c.body
    return domain_view(c.ops.directory, c.ops.domain_add(b["name"], b.get("aliases", ()), b.get("ips", ())))


def _domain_get(c: Call) -> Any:
    return domain_view(c.ops.directory, c.ops.domain_get(c.path["domain"]))


def _domain_set(c: Call) -> Any:
    changes = dict(c.body)
    if "send_as" in changes and changes["send_as"] == "own":
        changes["send_as"] = None
    return domain_view(c.ops.directory, c.ops.domain_set(c.path["domain"], **changes))


def _domain_remove(c: Call) -> Any:
    return {"objects": c.ops.domain_remove(c.path["domain"])}


def _template_get(c: Call) -> Any:
    rec = c.ops.domain_get(c.path["domain"])
    return rec.settings.get("template") or {"mailboxes": [], "subscriptions": [], "aliases": {}}


def _template_set(c: Call) -> Any:
    rec = c.ops.domain_template(c.path["domain"], c.body)
    return rec.settings.get("template")


def _template_remove(c: Call) -> Any:
    c.ops.domain_template(c.path["domain"], None)
    return {"mailboxes": [], "subscriptions": [], "aliases": {}}


def _lister(kind: str) -> Callable[[Call], Any]:
    def run(c: Call) -> Any:
        return _page([object_view(o) for o in c.ops.object_list(kind, c.query.get("domain"))], c.query)
    return run


def _getter(kind: str) -> Callable[[Call], Any]:
    def run(c: Call) -> Any:
        return object_view(c.ops.object_get(c.path["address"], kind))
    return run


async def _account_add(c: Call) -> Any:
    b = c.body
    if not b.get("force"):  # domain sharing (seed 002): a name a peer has is not made here
        from ..secrets import Secrets
        from ..sharing.peers import ask_peers

        name, domain = await asyncio.to_thread(c.ops._domain_of, b["address"])  # (may the caller, first)
        s = c.web.settings.sharing
        answers = await ask_peers(c.web.server.db, Secrets(c.web.settings.data_dir), f"{name}@{domain}", s.timeout,
                                  s.cache_ttl)
        for host, answer in answers.items():
            if answer in (4, 5):
                raise Conflict(f"{name}@{domain} exists on the sharing peer {host} (force: true makes it anyway)")
            if not isinstance(answer, int) or answer != 3:
                raise Conflict(f"the sharing peer {host} could not be asked about {name}@{domain}: {answer}")

    def make() -> Any:
        obj = c.ops.account_add(b["address"], b.get("password"), b.get("real_name", ""))
        c.web.server.mailstore.ensure_account(obj.domain, obj.name)
        return object_view(obj)
    return await asyncio.to_thread(make)


def _account_set(c: Call) -> Any:
    return object_view(c.ops.account_set(c.path["address"], **c.body))


def _account_password(c: Call) -> Any:
    return object_view(c.ops.account_passwd(c.path["address"], c.body["password"], bool(c.body.get("cram_md5"))))


def _remover(kind: str) -> Callable[[Call], Any]:
    def run(c: Call) -> Any:
        if kind == "account":
            return object_view(c.ops.account_remove(c.path["address"]))
        return object_view(getattr(c.ops, f"{kind}_remove")(c.path["address"]))
    return run


def _router_view(text: str, version: int) -> dict[str, Any]:
    from ..router.table import parse_table

    records, _ = parse_table(text)
    return {"text": text, "version": version, "records": [
        {"line": r.line_no, "prefix": r.prefix, "left": r.left, "right": r.right} for r in records]}


def _router_get(c: Call) -> Any:
    return _router_view(*c.ops.router_get())


class _BadLines(Exception):
    def __init__(self, lines: list[Any]) -> None:
        super().__init__(f"{len(lines)} bad line(s); the table was not changed")
        self.lines = lines


def _router_set(c: Call) -> Any:
    _count, errors = c.ops.router_set(c.body["text"])
    if errors:
        raise _BadLines(errors)
    return _router_view(*c.ops.router_get())


async def _route(c: Call) -> Any:
    from ..ops.explain import explain

    b = c.body
    c.ops._require_server_admin("explain routes")
    try:
        return await explain(c.web.server.router, c.web.settings, c.web.server.db, b["address"],
                             b.get("kind", "mail"), b.get("client_ip"), b.get("server_ip"), b.get("authenticated"))
    except (AddressError, ValueError) as e:
        raise Invalid("address", str(e)) from None


def _queue_filter(q: dict[str, Any]) -> QueueFilter:
    sender = q.get("sender")
    return QueueFilter(target=q.get("target"), sender="" if sender == "<>" else sender,
                       recipient=q.get("recipient"), state=q.get("state"))


def _entry(e: QueueEntry) -> dict[str, Any]:
    return {"id": e.msg_id, "sender": e.sender, "size": e.size, "created": e.created, "recipients": e.recipients,
            "targets": e.targets, "held": e.held, "attempts": e.attempts, "next_attempt": e.next_attempt,
            "last_reply": e.last_reply}


def _queue_list(c: Call) -> Any:
    where, domain = _queue_filter(c.query), c.query.get("domain")
    limit, offset = c.query.get("limit", PAGE_DEFAULT), c.query.get("offset", 0)
    items = [_entry(e) for e in c.ops.queue_list(where, domain, limit=limit, offset=offset)]
    return {"items": items, "total": c.ops.queue_count(where, domain), "limit": limit, "offset": offset}


def _message(m: QueuedMessage) -> dict[str, Any]:
    return {"id": m.msg_id, "sender": m.sender, "size": m.size, "created": m.created,
            "params": m.envelope.get("params", {}),
            "recipients": [{"address": r.address, "target": r.target, "status": r.status, "attempts": r.attempts,
                            "next_attempt": r.next_attempt, "last_reply": r.last_reply, "held": r.held}
                           for r in m.recipients]}


def _queue_get(c: Call) -> Any:
    return _message(c.ops.queue_get(c.path["id"]))


def _queue_flush_one(c: Call) -> Any:
    return {"recipients": c.ops.queue_flush(c.path["id"])}


def _queue_flush(c: Call) -> Any:
    return {"recipients": c.ops.queue_flush(None, _queue_filter(c.body), c.body.get("domain"))}


def _queue_delete(c: Call) -> Any:
    m = _message(c.ops.queue_get(c.path["id"]))
    c.ops.queue_delete(c.path["id"])
    return m


def _holds(c: Call) -> Any:
    return _page(c.ops.queue_holds(), c.query)


def _hold(c: Call) -> Any:
    return {"recipients": c.ops.queue_hold(c.path["domain"])}


def _release(c: Call) -> Any:
    return {"recipients": c.ops.queue_release(c.path["domain"])}


def _rules_view(c: Call) -> Any:
    return {"text": c.ops.rules_text(), "rules": c.ops.rules_list()}


def _rules_set(c: Call) -> Any:
    _count, errors = c.ops.rules_set(c.body["text"])
    if errors:
        raise _BadLines(errors)
    return _rules_view(c)


def _rule_add(c: Call) -> Any:
    _at, errors = c.ops.rule_add(c.body["text"], c.body.get("position"))
    if errors:
        raise _BadLines(errors)
    return _rules_view(c)


def _rule_move(c: Call) -> Any:
    c.ops.rule_move(c.path["name"], c.body["position"])
    return _rules_view(c)


def _rule_remove(c: Call) -> Any:
    c.ops.rule_remove(c.path["name"])
    return _rules_view(c)


def _gateway_view(c: Call) -> Any:
    return {"text": c.ops.gateway_text(), "rules": c.ops.gateway_list()}


def _gateway_set(c: Call) -> Any:
    _count, errors = c.ops.gateway_set(c.body["text"])
    if errors:
        raise _BadLines(errors)
    return _gateway_view(c)


def _auth_set(c: Call) -> Any:
    c.ops.gateway_auth_set(c.path["who"], c.body["user"], c.body["password"])
    return {"for": c.path["who"].lower(), "user": c.body["user"]}


def _auth_remove(c: Call) -> Any:
    c.ops.gateway_auth_remove(c.path["who"])
    return {"for": c.path["who"].lower(), "user": ""}


def _sharing_lookup(c: Call) -> Any:
    timeout: float = c.web.settings.sharing.timeout
    return {"address": c.body["address"], "answers": c.ops.sharing_lookup(c.body["address"], timeout)}


def _peer_add(c: Call) -> Any:
    b = c.body
    c.ops.peer_add(b["host"], b.get("smtp_port", 25), b.get("minger_port", 4069), b.get("secret", ""),
                   b.get("domains", []))
    return next(p for p in c.ops.peers_list() if p["host"] == b["host"])


def _peer_remove(c: Call) -> Any:
    gone = next((p for p in c.ops.peers_list() if p["host"] == c.path["host"]), None)
    c.ops.peer_remove(c.path["host"])
    return gone


def _acl_set(c: Call) -> Any:
    c.ops.acl_set(c.body["mailbox"], c.body["identifier"], c.body["rights"])
    return {"mailbox": c.body["mailbox"], "entries": c.ops.acl_get(c.body["mailbox"])}


def _dkim_generate(c: Call) -> Any:
    b = c.body
    return c.ops.dkim_generate(c.path["domain"], b.get("selector"), b.get("algorithm", "rsa"), bool(b.get("inactive")))


async def _dns(c: Call) -> Any:
    """The records a domain should publish; with ``check=true`` also what DNS answers
    now (as ``waypost dns``)."""
    from ..mailauth import Lookup
    from ..mailauth.publish import check_records

    _name, expected = await asyncio.to_thread(c.ops.dns_expected, c.path["domain"])
    if c.query.get("check"):
        # The records at once, each look-up bounded: an unreachable name server makes
        # the answer "error" for each, within DNS_CHECK_TIMEOUT, not a hung request.
        lookup = Lookup(c.web.settings, min(c.web.settings.dns.timeout, DNS_CHECK_TIMEOUT))
        checked = await asyncio.gather(*(check_records(lookup, [e]) for e in expected))
        rows = [x[0].to_dict() for x in checked]
    else:
        rows = [{"name": e.name, "type": e.rtype, "expected": e.value, "purpose": e.purpose} for e in expected]
    return _page(rows, c.query)


def _sieve_get(c: Call) -> Any:
    text = c.ops.sieve_get(c.path["address"], c.path["name"])
    active = any(r["name"] == c.path["name"] and r["active"] for r in c.ops.sieve_list(c.path["address"]))
    return {"name": c.path["name"], "active": active, "script": text}


def _sieve_put(c: Call) -> Any:
    return c.ops.sieve_put(c.path["address"], c.path["name"], c.body["script"], bool(c.body.get("activate")))


def _sieve_delete(c: Call) -> Any:
    gone = _sieve_get(c)
    c.ops.sieve_delete(c.path["address"], c.path["name"])
    return gone | {"active": False}


def _sieve_activate(c: Call) -> Any:
    c.ops.sieve_activate(c.path["address"], c.body["name"])
    return {"items": c.ops.sieve_list(c.path["address"])}


def _mailbox_create(c: Call) -> Any:
    c.ops.mailbox_create(f"{c.path['address']}/{c.body['name']}")
    return {"mailboxes": c.ops.mailbox_list(c.path["address"])}


def _unblock(c: Call) -> Any:
    key, cleared = c.ops.auth_unblock(c.path["who"])
    return {"key": key, "cleared": bool(cleared)}


P = PREFIX
OPERATIONS: list[Op] = [
    Op("GET", f"{P}/whoami", "whoami", "Who the token or session acts as", "session", _whoami,
       response=S.Whoami),
    Op("GET", f"{P}/domains", "listDomains", "List the domains the caller administers", "domains", _domains,
       query=_LIMITS, response=PAGE(S.Domain)),
    Op("POST", f"{P}/domains", "addDomain", "Create a domain (server administrators)", "domains", _domain_add,
       body=S.DomainAdd, response=S.Domain, status=201, subject="name"),
    Op("GET", f"{P}/domains/{{domain}}", "getDomain", "Show a domain", "domains", _domain_get,
       response=S.Domain, subject="domain"),
    Op("PATCH", f"{P}/domains/{{domain}}", "setDomain",
       "Change a domain: aliases and ips (server administrators), Mail to Unknown, send-as, DMARC",
       "domains", _domain_set, body=S.DomainSet, response=S.Domain, subject="domain"),
    Op("DELETE", f"{P}/domains/{{domain}}", "removeDomain", "Remove a domain and its objects (server administrators)",
       "domains", _domain_remove, response={"type": "object", "required": ["objects"],
                                            "properties": {"objects": {"type": "integer"}}}, subject="domain"),
    Op("GET", f"{P}/domains/{{domain}}/template", "getTemplate", "The account template of a domain", "domains",
       _template_get, response=S.Template, subject="domain"),
    Op("PUT", f"{P}/domains/{{domain}}/template", "setTemplate", "Replace the account template of a domain",
       "domains", _template_set, body=S.Template, response=S.Template, subject="domain"),
    Op("DELETE", f"{P}/domains/{{domain}}/template", "removeTemplate", "Remove the account template of a domain",
       "domains", _template_remove, response=S.Template, subject="domain"),
    Op("GET", f"{P}/accounts", "listAccounts", "List accounts", "accounts", _lister("account"),
       query={**_DOMAIN_Q, **_LIMITS}, response=PAGE(S.Object), subject="domain"),
    Op("POST", f"{P}/accounts", "addAccount", "Create an account", "accounts", _account_add,
       body=S.AccountAdd, response=S.Object, status=201),
    Op("GET", f"{P}/accounts/{{address}}", "getAccount", "Show an account", "accounts", _getter("account"),
       response=S.Object),
    Op("PATCH", f"{P}/accounts/{{address}}", "setAccount",
       "Change an account (rights, admin_domains, send_as, atrn_domains: server administrators)", "accounts",
       _account_set, body=S.AccountSet, response=S.Object),
    Op("DELETE", f"{P}/accounts/{{address}}", "removeAccount", "Remove an account and its aliases", "accounts",
       _remover("account"), response=S.Object),
    Op("PUT", f"{P}/accounts/{{address}}/password", "setPassword", "Set an account's password", "accounts",
       _account_password, body=S.Password, response=S.Object),
    Op("GET", f"{P}/accounts/{{address}}/mailboxes", "listMailboxes", "The names of an account's mailboxes",
       "acl", lambda c: {"mailboxes": c.ops.mailbox_list(c.path["address"])}, response=S.Mailboxes),
    Op("POST", f"{P}/accounts/{{address}}/mailboxes", "createMailbox",
       "Create a mailbox of an account (and its missing parents)", "acl", _mailbox_create, body=S.MailboxCreate,
       response=S.Mailboxes, status=201),
    Op("GET", f"{P}/accounts/{{address}}/mailbox-aliases", "listMailboxAliases",
       "An account's mailbox aliases (names standing for another mailbox)", "acl",
       lambda c: {"items": c.ops.mailbox_alias_list(c.path["address"])}, response=S.MailboxAliases),
    Op("PUT", f"{P}/accounts/{{address}}/mailbox-aliases/{{name}}", "setMailboxAlias",
       "Make a mailbox name of the account stand for target (its own mailbox or ~account/mailbox)", "acl",
       lambda c: c.ops.mailbox_alias_add(c.path["address"], c.path["name"], c.body["target"]),
       body=S.MailboxAliasSet, response=S.MailboxAlias),
    Op("DELETE", f"{P}/accounts/{{address}}/mailbox-aliases/{{name}}", "removeMailboxAlias",
       "Remove a mailbox alias", "acl", lambda c: c.ops.mailbox_alias_remove(c.path["address"], c.path["name"]),
       response=S.MailboxAlias),
    Op("GET", f"{P}/accounts/{{address}}/quota", "getQuota",
       "An account's mailbox usage and limits (null: unlimited); set them with PATCH of the account or domain",
       "quota", lambda c: c.ops.quota_show(c.path["address"]), response=S.Quota),
    Op("POST", f"{P}/accounts/{{address}}/quota/recount", "recountQuota",
       "Count an account's usage again from the mailbox index (a repair)", "quota",
       lambda c: c.ops.quota_recount(c.path["address"]), response=S.Quota),
    Op("GET", f"{P}/quotas", "listQuotas", "Every account's usage and limits, fullest first", "quota",
       lambda c: _page(c.ops.quota_list(c.query.get("domain")), c.query), query={**_DOMAIN_Q, **_LIMITS},
       response=PAGE(S.Quota), subject="domain"),
    Op("GET", f"{P}/accounts/{{address}}/sieve", "listSieveScripts", "An account's Sieve scripts", "sieve",
       lambda c: {"items": c.ops.sieve_list(c.path["address"])}, response=S.SieveList),
    Op("PUT", f"{P}/accounts/{{address}}/sieve-active", "activateSieveScript",
       "Choose the account's active Sieve script (null: none, plain delivery)", "sieve", _sieve_activate,
       body=S.SieveActivate, response=S.SieveList),
    Op("GET", f"{P}/accounts/{{address}}/sieve/{{name}}", "getSieveScript", "A Sieve script's text", "sieve",
       _sieve_get, response=S.SieveScript),
    Op("PUT", f"{P}/accounts/{{address}}/sieve/{{name}}", "putSieveScript",
       "Store a Sieve script (checked first: a bad one is refused with its line and column)", "sieve", _sieve_put,
       body=S.SievePut, response=S.SieveScript, max_body=2 * 1024 * 1024),
    Op("DELETE", f"{P}/accounts/{{address}}/sieve/{{name}}", "deleteSieveScript",
       "Delete a Sieve script (not the active one)", "sieve", _sieve_delete, response=S.SieveScript),
    Op("GET", f"{P}/files", "listFileAreas", "Every account's file area: octets used and the limit", "files",
       lambda c: _page(c.ops.files_usage(None, c.query.get("domain")), c.query), query={**_DOMAIN_Q, **_LIMITS},
       response=PAGE(S.FileArea), subject="domain"),
    Op("GET", f"{P}/accounts/{{address}}/files", "getFileArea", "An account's file area: used, limit, listing",
       "files", lambda c: c.ops.files_usage(c.path["address"])[0], response=S.FileArea),
    Op("PATCH", f"{P}/accounts/{{address}}/files", "setFileArea",
       "An account's file-area limit (octets, or \"50M\"; null: its domain's) and listing", "files",
       lambda c: c.ops.files_set(c.path["address"], **c.body), body=S.FileAreaSet, response=S.FileArea),
    Op("GET", f"{P}/accounts/{{address}}/files/list", "listFiles", "A folder of an account's file area", "files",
       lambda c: {"items": c.ops.files_list(c.path["address"], c.query.get("path", ""))},
       query={"path": {"type": "string", "maxLength": 1024}}, response=S.FileEntries, subject="path"),
    Op("PUT", f"{P}/domains/{{domain}}/files", "setDomainFileLimit",
       "The file-area limit of a domain's accounts without their own (null: files.size_limit)", "files",
       lambda c: {"domain": c.ops.domain_get(c.path["domain"]).name,
                  "limit": c.ops.files_set_domain(c.path["domain"], c.body["limit"])},
       body=S.DomainFiles, response=S.DomainFilesView, subject="domain"),
    Op("GET", f"{P}/domains/{{domain}}/dkim", "listDkimKeys",
       "A domain's DKIM keys, which one signs, and the TXT record each needs", "dkim",
       lambda c: _page(c.ops.dkim_list(c.path["domain"]), c.query), query=_LIMITS, response=PAGE(S.DkimKey),
       subject="domain"),
    Op("POST", f"{P}/domains/{{domain}}/dkim", "generateDkimKey",
       "Make a DKIM key (signing at once unless inactive: publish its record first)", "dkim", _dkim_generate,
       body=S.DkimGenerate, response=S.DkimKey, status=201, subject="domain"),
    Op("GET", f"{P}/domains/{{domain}}/dkim/{{selector}}", "getDkimKey", "One DKIM key and its DNS record", "dkim",
       lambda c: c.ops.dkim_get(c.path["domain"], c.path["selector"]), response=S.DkimKey, subject="selector"),
    Op("PATCH", f"{P}/domains/{{domain}}/dkim/{{selector}}", "setDkimKey",
       "Sign with this key from now on (active: true), or stop signing with it", "dkim",
       lambda c: c.ops.dkim_activate(c.path["domain"], c.path["selector"], c.body["active"]), body=S.DkimSet,
       response=S.DkimKey, subject="selector"),
    Op("DELETE", f"{P}/domains/{{domain}}/dkim/{{selector}}", "removeDkimKey",
       "Delete a DKIM key (remove its DNS record days later)", "dkim",
       lambda c: c.ops.dkim_remove(c.path["domain"], c.path["selector"]), response=S.DkimKey, subject="selector"),
    Op("GET", f"{P}/domains/{{domain}}/dns", "listDnsRecords",
       "Every DNS record the domain should publish (check=true: and what DNS answers now)", "dkim", _dns,
       query={"check": {"type": "boolean"}, **_LIMITS}, response=PAGE(S.DnsRecord), subject="domain"),
    Op("GET", f"{P}/acl", "getAcl", "Who has which rights (RFC 4314) on a mailbox, ACCOUNT/MAILBOX", "acl",
       lambda c: {"mailbox": c.query["mailbox"], "entries": c.ops.acl_get(c.query["mailbox"])},
       query={"mailbox": {"type": "string", "minLength": 3, "maxLength": 1024}}, required=("mailbox",),
       response=S.Acl, subject="mailbox"),
    Op("PUT", f"{P}/acl", "setAcl",
       "Grant rights on a mailbox: rights replaces, +rights adds, -rights removes, none takes all", "acl",
       _acl_set, body=S.AclSet, response=S.Acl, subject="mailbox"),
    Op("GET", f"{P}/aliases", "listAliases", "List aliases", "aliases", _lister("alias"),
       query={**_DOMAIN_Q, **_LIMITS}, response=PAGE(S.Object), subject="domain"),
    Op("POST", f"{P}/aliases", "addAlias", "Make an address another name of an account", "aliases",
       lambda c: object_view(c.ops.alias_add(c.body["address"], c.body["account"])), body=S.AliasAdd,
       response=S.Object, status=201),
    Op("GET", f"{P}/aliases/{{address}}", "getAlias", "Show an alias", "aliases", _getter("alias"), response=S.Object),
    Op("DELETE", f"{P}/aliases/{{address}}", "removeAlias", "Remove an alias", "aliases", _remover("alias"),
       response=S.Object),
    Op("GET", f"{P}/forwarders", "listForwarders", "List forwarders", "forwarders", _lister("forwarder"),
       query={**_DOMAIN_Q, **_LIMITS}, response=PAGE(S.Object), subject="domain"),
    Op("POST", f"{P}/forwarders", "addForwarder", "Create a forwarder", "forwarders",
       lambda c: object_view(c.ops.forwarder_add(c.body["address"], c.body["target"])), body=S.ForwarderAdd,
       response=S.Object, status=201),
    Op("GET", f"{P}/forwarders/{{address}}", "getForwarder", "Show a forwarder", "forwarders", _getter("forwarder"),
       response=S.Object),
    Op("PATCH", f"{P}/forwarders/{{address}}", "setForwarder", "Point a forwarder elsewhere", "forwarders",
       lambda c: object_view(c.ops.forwarder_set(c.path["address"], c.body["target"])), body=S.ForwarderSet,
       response=S.Object),
    Op("DELETE", f"{P}/forwarders/{{address}}", "removeForwarder", "Remove a forwarder", "forwarders",
       _remover("forwarder"), response=S.Object),
    Op("GET", f"{P}/groups", "listGroups", "List groups", "groups", _lister("group"),
       query={**_DOMAIN_Q, **_LIMITS}, response=PAGE(S.Object), subject="domain"),
    Op("POST", f"{P}/groups", "addGroup", "Create a group", "groups",
       lambda c: object_view(c.ops.group_add(c.body["address"], c.body.get("members", []),
                                             c.body.get("real_name", ""), bool(c.body.get("shared")))),
       body=S.GroupAdd, response=S.Object, status=201),
    Op("GET", f"{P}/groups/{{address}}", "getGroup", "Show a group", "groups", _getter("group"), response=S.Object),
    Op("PATCH", f"{P}/groups/{{address}}", "setGroup", "Add and remove members", "groups",
       lambda c: object_view(c.ops.group_set(c.path["address"], c.body.get("add", []), c.body.get("remove", []))),
       body=S.GroupSet, response=S.Object),
    Op("DELETE", f"{P}/groups/{{address}}", "removeGroup", "Remove a group", "groups", _remover("group"),
       response=S.Object),
    Op("GET", f"{P}/router", "getRouter", "The Router table (server administrators)", "routing", _router_get,
       response=S.Router),
    Op("PUT", f"{P}/router", "setRouter",
       "Replace the Router table; a bad line is refused with its number and nothing changes", "routing",
       _router_set, body=S.RouterSet, response=S.Router, subject="text", max_body=MAX_BODY_TABLE),
    Op("POST", f"{P}/route", "explainRoute", "Explain how an address is resolved, step by step", "routing",
       _route, body=S.RouteAsk, response=S.Route),
    Op("GET", f"{P}/rules", "getRules", "The server-wide rules, in the order they apply", "rules", _rules_view,
       response=S.Rules),
    Op("PUT", f"{P}/rules", "setRules", "Replace every server-wide rule (checked first; a bad line changes nothing)",
       "rules", _rules_set, body=S.Text, response=S.Rules, subject="text", max_body=MAX_BODY_TABLE),
    Op("POST", f"{P}/rules", "addRule", "Add one server-wide rule (at position, 1 = first; default last)", "rules",
       _rule_add, body=S.RuleAdd, response=S.Rules, subject="text"),
    Op("PATCH", f"{P}/rules/{{name}}", "moveRule", "Move a server-wide rule to another position", "rules",
       _rule_move, body=S.RuleMove, response=S.Rules, subject="name"),
    Op("DELETE", f"{P}/rules/{{name}}", "removeRule", "Remove a server-wide rule", "rules", _rule_remove,
       response=S.Rules, subject="name"),
    Op("GET", f"{P}/gateway", "getGateway", "The gateway forwarding rules (first match wins)", "gateway",
       _gateway_view, response=S.Gateway),
    Op("PUT", f"{P}/gateway", "setGateway", "Replace the gateway forwarding rules (a bad line changes nothing)",
       "gateway", _gateway_set, body=S.Text, response=S.Gateway, subject="text", max_body=MAX_BODY_TABLE),
    Op("POST", f"{P}/gateway/test", "testGateway", "Which gateway rule decides for an address (waypost gateway test)",
       "gateway", lambda c: c.ops.gateway_test(c.body["address"]), body=S.GatewayAsk, response=S.GatewayAnswer),
    Op("GET", f"{P}/gateway/auth", "listGatewayAuth", "Next-hop SMTP AUTH accounts (never the passwords)",
       "gateway", lambda c: _page(c.ops.gateway_auth_list(), c.query), query=_LIMITS,
       response=PAGE(S.Credentials)),
    Op("PUT", f"{P}/gateway/auth/{{who}}", "setGatewayAuth",
       "Set the next-hop account of a sender ('*': the common one); the password is sealed", "gateway",
       _auth_set, body=S.CredentialsSet, response=S.Credentials, subject="who"),
    Op("DELETE", f"{P}/gateway/auth/{{who}}", "removeGatewayAuth", "Remove next-hop credentials", "gateway",
       _auth_remove, response=S.Credentials, subject="who"),
    Op("GET", f"{P}/sharing/peers", "listPeers", "Domain Sharing peers (never their secrets)", "sharing",
       lambda c: _page(c.ops.peers_list(), c.query), query=_LIMITS, response=PAGE(S.Peer)),
    Op("POST", f"{P}/sharing/peers", "addPeer", "Add (or replace) a Domain Sharing peer", "sharing", _peer_add,
       body=S.PeerAdd, response=S.Peer, status=201, subject="host"),
    Op("DELETE", f"{P}/sharing/peers/{{host}}", "removePeer", "Remove a Domain Sharing peer", "sharing",
       _peer_remove, response=S.Peer, subject="host"),
    Op("POST", f"{P}/sharing/lookup", "lookupSharing", "Ask every sharing peer about an address now (Minger)",
       "sharing", _sharing_lookup, body=S.LookupAsk, response=S.Lookup, subject="address"),
    Op("GET", f"{P}/sharing/cache", "listSharingCache", "Positive Minger answers remembered", "sharing",
       lambda c: _page(c.ops.sharing_cache(), c.query), query=_LIMITS, response=PAGE(S.CacheEntry)),
    Op("DELETE", f"{P}/sharing/cache", "clearSharingCache", "Forget every remembered Minger answer", "sharing",
       lambda c: {"answers": c.ops.sharing_cache_clear()}, response=S.Cleared),
    Op("GET", f"{P}/auth/blocked", "listLoginFailures",
       "Client addresses and accounts with failed logins counted, and their blocks", "auth",
       lambda c: _page(c.ops.auth_blocked(), c.query), query=_LIMITS, response=PAGE(S.LoginFailures)),
    Op("DELETE", f"{P}/auth/blocked/{{who}}", "unblockLogins",
       "Forget the failed logins of a client address (IPv6: its /64) or an account", "auth",
       _unblock, response=S.Unblocked, subject="who"),
    Op("GET", f"{P}/queue", "listQueue", "List queued messages, oldest first, a page at a time", "queue",
       _queue_list, query={**_QUEUE_Q, **_LIMITS}, response=PAGE(S.QueueEntry), subject="domain"),
    Op("POST", f"{P}/queue/flush", "flushQueue", "Retry now the queued messages a filter chooses", "queue",
       _queue_flush, body=S.QueueFlush, response=S.Count, subject="domain"),
    Op("POST", f"{P}/queue/hold", "holdQueue", "Hold the queued messages a filter chooses", "queue",
       lambda c: {"recipients": c.ops.queue_hold_matching(_queue_filter(c.body), c.body.get("domain"))},
       body=S.QueueFlush, response=S.Count, subject="domain"),
    Op("POST", f"{P}/queue/release", "releaseQueue", "Release (and retry now) the held messages a filter chooses",
       "queue", lambda c: {"recipients": c.ops.queue_release_matching(_queue_filter(c.body), c.body.get("domain"))},
       body=S.QueueFlush, response=S.Count, subject="domain"),
    Op("POST", f"{P}/queue/delete", "deleteQueue",
       "Delete without a bounce the messages a filter chooses (an empty filter is refused)", "queue",
       lambda c: {"messages": c.ops.queue_delete_matching(_queue_filter(c.body), c.body.get("domain"))},
       body=S.QueueFlush, response=S.Deleted, subject="domain"),
    Op("GET", f"{P}/queue/holds", "listHolds", "Domains whose mail is held (Hold Mail for Domains)", "queue",
       _holds, query=_LIMITS, response=PAGE(S.Hold)),
    Op("PUT", f"{P}/queue/holds/{{domain}}", "holdDomain", "Hold a domain's mail until ETRN, ATRN or release",
       "queue", _hold, response=S.Count, subject="domain"),
    Op("DELETE", f"{P}/queue/holds/{{domain}}", "releaseDomain", "Stop holding a domain's mail; deliver it now",
       "queue", _release, response=S.Count, subject="domain"),
    Op("GET", f"{P}/queue/{{id}}", "getQueued", "Show a queued message, recipient by recipient", "queue",
       _queue_get, response=S.QueueMessage, subject="id"),
    Op("DELETE", f"{P}/queue/{{id}}", "deleteQueued", "Delete a queued message without a bounce", "queue",
       _queue_delete, response=S.QueueMessage, subject="id"),
    Op("POST", f"{P}/queue/{{id}}/flush", "flushQueued", "Retry a queued message now", "queue",
       _queue_flush_one, response=S.Count, subject="id"),
]


# -- the document -----------------------------------------------------------------------

_ERRORS = {"400": "Bad input (the field is named)", "401": "No token or session, or a revoked token",
           "403": "The caller may not do this", "404": "No such object", "409": "It exists already",
           "413": "The body is too large", "415": "The body is not JSON"}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        params = [{"name": n, "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 320}}
                  for n in _path_names(op.path)]
        params += [{"name": n, "in": "query", "required": n in op.required, "schema": s} for n, s in op.query.items()]
        entry: dict[str, Any] = {
            "operationId": op.op_id, "summary": op.summary, "tags": [op.tag],
            "responses": {str(op.status): {"description": "Done", "content": {
                "application/json": {"schema": op.response or {"type": "object"}}}}} | {
                code: {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                for code, text in _ERRORS.items()},
        }
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Waypost administration API", "version": "1",
                 "description": "Domains, accounts, aliases, forwarders, groups, DKIM keys, quotas, Sieve "
                                "scripts, mailboxes and their ACLs, the Router table, rules, the gateway, "
                                "Domain Sharing and the queue of a Waypost mail server; the operations of the "
                                "`waypost` command."},
        "servers": [{"url": "/"}],
        "security": [{"token": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "A token from `waypost token add`."},
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                            "description": "An administrator's web session; unsafe methods also send X-CSRF-Token."}},
            "schemas": {"Error": ERROR}},
        "paths": paths,
    }


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


# -- the Starlette side ---------------------------------------------------------------------

def error(status: int, code: str, message: str, field: str | None = None, **more: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    body.update(more)
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="waypost"'
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _actor(web: "Web", request: Request) -> tuple[Actor, str] | Response:
    """Who asks (and the CSRF token of a session), or the refusal."""
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        actor = await asyncio.to_thread(token_actor, web.server.db, token.strip()) if scheme.lower() == "bearer" else None
        if actor is None:
            event(log, "api-refused", level=logging.WARNING, client=_client(request), reason="bad-token",
                  path=request.url.path)
            return error(401, "unauthorized", "unknown or revoked token")
        return actor, ""
    session = await asyncio.to_thread(web.sessions.get, request.cookies.get(COOKIE))
    if session is None:
        return error(401, "unauthorized", "a token (Authorization: Bearer) or an administrator's session is needed")

    def account_actor() -> Actor | None:
        obj = web.server.db.get_object(session.domain, session.name)
        return Actor.of_account(obj) if obj is not None else None
    actor = await asyncio.to_thread(account_actor)
    if actor is None:
        return error(403, "forbidden", f"{session.account} is not an administrator")
    if request.method not in ("GET", "HEAD") and not same_token(request.headers.get("x-csrf-token"), session.csrf):
        event(log, "web-csrf-refused", level=logging.WARNING, client=_client(request), path=request.url.path)
        return error(403, "csrf", "X-CSRF-Token is missing or wrong for this session")
    return actor, session.csrf


async def _body(request: Request, op: Op) -> Any:
    if op.body is None:
        return None
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > op.max_body):
        raise _TooLarge()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise _NotJson()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > op.max_body:
            raise _TooLarge()
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise SchemaError("body", f"not JSON: {e}") from None
    validate(body, op.body)
    return body


class _TooLarge(Exception):
    pass


class _NotJson(Exception):
    pass


def _query(request: Request, op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        schema = op.query.get(name)
        if schema is None:
            raise SchemaError(name, "unknown query parameter")
        if name in out:
            raise SchemaError(name, "given twice")
        v: Any = value
        if schema.get("type") == "integer":
            try:
                v = int(value)
            except ValueError:
                raise SchemaError(name, "expected integer") from None
        elif schema.get("type") == "boolean":
            if value not in ("true", "false"):
                raise SchemaError(name, "expected true or false")
            v = value == "true"
        validate(v, schema, name)
        out[name] = v
    for name in op.required:
        if name not in out:
            raise SchemaError(name, "required")
    return out


def _endpoint(web: "Web", by_method: dict[str, Op]) -> Callable[[Request], Awaitable[Response]]:
    allowed = ", ".join(sorted(by_method))

    async def endpoint(request: Request) -> Response:
        op = by_method.get(request.method)
        if op is None:
            return JSONResponse({"error": {"code": "method_not_allowed", "message": f"use {allowed}"}}, 405,
                                headers={"Allow": allowed})
        who = await _actor(web, request)
        if isinstance(who, Response):
            return who
        actor, csrf = who
        try:
            call = Call(web.operations(actor), web, dict(request.path_params), _query(request, op),
                        await _body(request, op), csrf)
            if asyncio.iscoroutinefunction(op.run):
                result = await op.run(call)
            else:
                result = await asyncio.to_thread(op.run, call)
        except Denied as e:
            event(log, "api-refused", level=logging.WARNING, client=_client(request), actor=actor.name,
                  reason="denied", path=request.url.path)
            return error(403, "forbidden", str(e))
        except (Invalid, SchemaError) as e:
            return error(400, "invalid", e.message, e.field)
        except _BadLines as e:
            return error(400, "invalid", str(e), op.subject,
                         lines=[{"line": x.line_no, "reason": x.reason, "text": x.line.strip()} for x in e.lines])
        except NotFound as e:
            return error(404, "not_found", str(e).strip("'\""))
        except Conflict as e:
            return error(409, "conflict", str(e).strip("'\""))
        except _TooLarge:
            return error(413, "too_large", f"the body is larger than {op.max_body} octets")
        except _NotJson:
            return error(415, "not_json", "send Content-Type: application/json")
        except (DirectoryError, AddressError, ValueError) as e:
            return error(400, "invalid", str(e).strip("'\""), op.subject)
        return JSONResponse(result, op.status, headers={"Cache-Control": "no-store"})

    return endpoint


async def metrics_endpoint(web: "Web", request: Request) -> Response:
    """``/metrics`` on the web listeners (the Prometheus text format, as the
    ``listen.metrics`` listener answers), for a server administrator's API token only:
    a scraper that cannot reach a private listener sends ``Authorization: Bearer``."""
    from .. import metrics

    if request.method != "GET":
        return Response("Method not allowed\n", 405, headers={"Allow": "GET"}, media_type="text/plain")
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    actor = await asyncio.to_thread(token_actor, web.server.db, token.strip()) if scheme.lower() == "bearer" else None
    if actor is None:
        event(log, "api-refused", level=logging.WARNING, client=_client(request), reason="bad-token", path="/metrics")
        return Response("a server administrator's token is needed (Authorization: Bearer)\n", 401,
                        headers={"WWW-Authenticate": 'Bearer realm="waypost"'}, media_type="text/plain")
    if not actor.server_admin:
        return Response("server administrators only\n", 403, media_type="text/plain")
    body = await asyncio.to_thread(metrics.render, metrics.metrics_dir(web.settings.data_dir), web.server.db)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8", headers={"Cache-Control": "no-store"})


def build_api(web: "Web") -> Starlette:
    """The Starlette app of ``/api/v1/`` (JSON errors, also for unknown paths)."""
    grouped: dict[str, dict[str, Op]] = {}
    for op in OPERATIONS:
        grouped.setdefault(op.path, {})[op.method] = op
    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document, headers={"Cache-Control": "no-cache"})

    routes = [Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"])]
    routes += [Route(path, _endpoint(web, ops), methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
               for path, ops in grouped.items()]

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        if code >= 500:
            log.error("event=api-error path=%s error=%r", request.url.path, exc)
            return error(500, "internal", "internal error")
        return error(code, "not_found" if code == 404 else "http_error", "no such API route" if code == 404 else str(exc))

    async def unavailable(request: Request, exc: Exception) -> Response:
        event(log, "storage-unavailable", level=logging.ERROR, path=request.url.path, error=str(exc))
        response = error(503, "unavailable", "the database cannot be reached now; try again later")
        response.headers["Retry-After"] = "10"
        return response

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, StorageUnavailable: unavailable,
                                                        Exception: http_error})

