"""The Starlette application: routes, the session and CSRF checks, and the pages.

Every request first meets the file areas (``waypost.files.lookup``: ``/~name/...`` and
personal-site hosts, read-only for everyone); the rest are WebUser pages, which need a
Host that names a domain we serve (or our host name, or an IP address).  Pages are
rendered on the server and need no JavaScript; a Content-Security-Policy forbids
scripts on every page, a second wall behind the sanitiser of message HTML.

A foreign mailbox the user has no right to see gets the same 404 as a mailbox that
does not exist (RFC 4314 §6 for the web).
"""

from __future__ import annotations

import asyncio
import bisect
import email.utils
import ipaddress
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .. import files as filestore
from ..address import AddressError, normalize_domain
from ..db import MailboxRecord, MessageRecord, StorageUnavailable
from ..log import event
from ..mailstore import OverQuota
from ..mailstore.access import Access, MailboxRef
from ..ops import Actor, Operations
from ..rules import rules_store
from . import listing, render, sharing
from .admin import ADMIN_ROUTES
from .api import PREFIX, build_api, metrics_endpoint
from .send import SendError, recipients_of, submit
from .sessions import COOKIE, LOGIN_COOKIE, Session, Sessions, same_token

if TYPE_CHECKING:
    from ..server import Server

__all__ = ["build_app"]

log = logging.getLogger("waypost.web")

_CSP_BASE = "default-src 'none'; script-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; " \
            "frame-ancestors 'none'; base-uri 'none'"
CSP = _CSP_BASE + "; img-src 'self' data:"
CSP_REMOTE_IMAGES = _CSP_BASE + "; img-src 'self' data: http: https:"


class Web:
    """What the handlers share: the worker's server objects and the templates."""

    def __init__(self, server: "Server") -> None:
        self.server = server
        self.settings = server.settings
        self.sessions = Sessions(server.db, server.settings.web.session_lifetime)
        self.rules = rules_store(server.db).get  # the server-wide rules now in force
        # auto_reload off: the templates are the package's files, and checking each one's
        # mtime on every page is a stat per template per request.
        self.env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                               autoescape=select_autoescape(default=True, default_for_string=True), auto_reload=False)
        #: GET pages whose values are worked out in the same trip to a thread as the
        #: Host's domain and the session (``_file_response``): path -> Values function.
        #: Filled by ``build_app``.
        self.prepared: dict[str, Values] = {}

    def operations(self, actor: "Actor") -> Operations:
        """The operations layer acting as ``actor`` (the admin pages and the API)."""
        server = self.server
        return Operations(server.directory, actor, router=lambda: server.router,
                          spool=self.settings.path(self.settings.storage.spool), mailstore=lambda: server.mailstore,
                          settings=self.settings)

    # -- pages -----------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, csp: str = CSP, **values: Any) -> HTMLResponse:
        session: Session | None = request.scope.get("waypost.session")
        body = self.env.get_template(template).render(session=session, csrf=session.csrf if session else "",
                                                      q=quote, **values)
        return HTMLResponse(body, status_code=status, headers=_headers(csp))

    def not_found(self, request: Request, what: str = "Not found") -> HTMLResponse:
        return self.page(request, "error.html", 404, title="Not found", message=what)

    # -- hosts -----------------------------------------------------------------------

    def host_and_session(self, host: str, cookie: str | None) -> tuple[str | None, Session | None]:
        """(``host_domain(host)``, the session of the cookie when the host is served).
        Both read the database: the caller runs this in a thread, never on the event
        loop (a slow or locked database would stop every session of the worker)."""
        domain = self.host_domain(host)
        return domain, (self.sessions.get(cookie) if domain is not None else None)

    def host_domain(self, host: str) -> str | None:
        """The domain a WebUser page is asked for by its ``Host`` header (seed 001: the
        domain comes from the host name): one of ours (or a domain alias); our host
        name, localhost or an IP address stand for the main domain (or the domain bound
        to that address).  None: a host we do not serve.  Reads the database
        (blocking)."""
        host = host.strip().lower()
        name = host[1:host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        router, directory = self.server.router, self.server.directory
        if ip is not None:
            return router.domain_for_ip(str(ip)) or directory.main_domain
        if name in ("localhost", self.settings.server.hostname.lower()):
            return directory.main_domain
        try:
            name = normalize_domain(name)
        except AddressError:
            return None
        rec = directory.domain(name)
        return rec.name if rec is not None else None


def _headers(csp: str = CSP) -> dict[str, str]:
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


Handler = Callable[[Web, Request], Awaitable[Response]]

#: A page's values from the database and the mail store (blocking: run in a thread),
#: for a logged-in session and the request's query parameters.
Values = Callable[["Web", Session, QueryParams], Any]


async def _values(web: Web, request: Request, values: Values) -> Any:
    """``values`` for this request: worked out already in the trip to a thread that looked
    up the session (``_file_response``, for the paths in ``Web.prepared``; an exception
    raised there is raised here), else in a trip of its own."""
    done = request.scope.pop("waypost.values", None)
    if done is not None and done[0] is values:
        if done[1] is not None:
            raise done[1]
        return done[2]
    return await asyncio.to_thread(values, web, request.scope["waypost.session"], request.query_params)


#: Octets a form may carry beyond ``web.max_upload_size`` (its other fields, the
#: multipart boundaries and headers).
FORM_OVERHEAD = 64 * 1024


class BodyTooLarge(Exception):
    """A request body passed the bound (answered 413)."""


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises BodyTooLarge once more than ``limit`` body octets came."""
    seen = 0

    async def bounded() -> Any:
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge()
        return message
    return bounded


def _page(handler: Handler, web: Web, login: bool = True, csrf: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: a Host we serve; with ``login``, a session (else to the login
    page); a POST with the session's CSRF token (else 403)."""
    async def endpoint(request: Request) -> Response:
        host, cookie = request.headers.get("host") or "", request.cookies.get(COOKIE)
        looked = request.scope.get("waypost.looked")
        if looked is not None and looked[2] is not None and looked[:2] == (host, cookie):  # (with the file areas)
            domain, session = looked[2]
        else:
            domain, session = await asyncio.to_thread(web.host_and_session, host, cookie)
        if domain is None:
            event(log, "web-unknown-host", level=logging.INFO, client=_client(request),
                  host=request.headers.get("host", ""))
            return web.page(request, "error.html", 404, title="Not found",
                            message="This server does not serve that host name.")
        request.scope["waypost.domain"] = domain
        request.scope["waypost.session"] = session
        if login and session is None:
            if request.method == "GET":
                return RedirectResponse("/login", 303)
            return web.page(request, "error.html", 403, title="Forbidden", message="Please log in again.")
        if request.method == "POST":
            form = await request.form(max_part_size=web.settings.web.max_upload_size)
            if any("\x00" in (v if isinstance(v, str) else (v.filename or "")) for _, v in form.multi_items()):
                # No form sends U+0000 (HTML turns it into U+FFFD); PostgreSQL stores none.
                event(log, "web-form-refused", level=logging.WARNING, client=_client(request),
                      path=request.url.path, reason="U+0000 in a field")
                return web.page(request, "error.html", 400, title="Refused",
                                message="The form carries a NUL character.")
        if csrf and login and request.method == "POST":
            if session is None or not same_token(str(form.get("csrf") or ""), session.csrf):
                event(log, "web-csrf-refused", level=logging.WARNING, client=_client(request),
                      path=request.url.path)
                return web.page(request, "error.html", 403, title="Forbidden",
                                message="The form has expired or did not come from this site.")
        return await handler(web, request)
    return endpoint


# -- login -----------------------------------------------------------------------------


async def login_page(web: Web, request: Request, error: str = "", status: int = 200) -> Response:
    import secrets

    token = secrets.token_urlsafe(24)
    response = web.page(request, "login.html", status, login_token=token, error=error,
                        domain=request.scope["waypost.domain"])
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="lax", secure=_secure(request), path="/login")
    return response


async def login(web: Web, request: Request) -> Response:
    if request.method == "GET":
        if request.scope.get("waypost.session") is not None:
            return RedirectResponse("/mail", 303)
        return await login_page(web, request)
    form = await request.form()
    if not same_token(str(form.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE)):
        event(log, "web-csrf-refused", level=logging.WARNING, client=_client(request), path="/login")
        return web.page(request, "error.html", 403, title="Forbidden",
                        message="The form has expired or did not come from this site.")
    name = str(form.get("login") or "").strip()[:320]
    password = str(form.get("password") or "")[:1024]
    if "@" not in name and "%" not in name and name:
        name = f"{name}@{request.scope['waypost.domain']}"  # seed 001: the domain of the host name
    server_ip = request.scope.get("server", (None,))[0] if request.scope.get("server") else None
    account = await web.server.authenticate(name, password, server_ip, _client(request), "web") if name else None
    if account is None:
        return await login_page(web, request, "Wrong name or password.", 401)
    old = request.scope.get("waypost.session")
    if old is not None:
        await asyncio.to_thread(web.sessions.end, old)
    session_id, _session = await asyncio.to_thread(web.sessions.create, account)
    event(log, "web-login", client=_client(request), account=account)
    response = RedirectResponse("/mail", 303)
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="lax", secure=_secure(request), path="/",
                        max_age=int(web.settings.web.session_lifetime))
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


async def logout(web: Web, request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    await asyncio.to_thread(web.sessions.end, session)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def home(web: Web, request: Request) -> Response:
    return RedirectResponse("/mail" if request.scope.get("waypost.session") else "/login", 303)


# -- mail ------------------------------------------------------------------------------


def _access(web: Web, session: Session) -> Access:
    return Access(web.server.mailstore, session.domain, session.name, web.server.directory.account_named)


def _unseen(web: Web, access: Access, box: MailboxRecord) -> int:
    store = web.server.mailstore
    if access.is_owner(box):
        current = store.db.mailbox_by_id(box.id) if store.db is not None else None
        return (current or box).unseen  # the index's count (migration 6)
    msgs = store.listing(box)[1]
    db = store.db
    assert db is not None
    seen = db.seen_get(box.id, access.address)
    return sum(1 for m in msgs if m.uid not in seen)


def _mailboxes(web: Web, session: Session) -> list[tuple[MailboxRef, int, int]]:
    """(mailbox, messages, unseen): own, then mailbox aliases, then subscribed
    foreign mailbox names that this user may see."""
    store = web.server.mailstore
    store.ensure_account(session.domain, session.name)
    access = _access(web, session)
    refs = access.own()
    refs += access.aliases()
    for name in store.subscriptions(session.domain, session.name):
        if name.startswith("~"):
            ref = access.resolve(name)
            if ref is not None and "r" in ref.rights:
                refs.append(ref)
    out = []
    for ref in refs:
        store.sync(ref.box, wait=False)
        readable = "r" in ref.rights
        count = len(store.listing(ref.box)[1]) if readable else 0
        out.append((ref, count, _unseen(web, access, ref.box) if readable else 0))
    return out


def _mailboxes_values(web: Web, session: Session, _params: QueryParams) -> list[tuple[MailboxRef, int, int]]:
    return _mailboxes(web, session)


async def mailboxes(web: Web, request: Request) -> Response:
    rows = await _values(web, request, _mailboxes_values)
    return web.page(request, "mailboxes.html", title="Mailboxes", rows=rows)


def _ref(web: Web, session: Session, name: str, rights: str = "r", access: Access | None = None) -> MailboxRef | None:
    """The mailbox a user names, when the user has ``rights`` on it; None otherwise,
    the same for one that does not exist (no leak of names)."""
    if not name or len(name) > 1000:
        return None
    store = web.server.mailstore
    store.ensure_account(session.domain, session.name)
    ref = (access or _access(web, session)).resolve(name)
    if ref is None or not ref.may(rights):
        return None
    store.sync(ref.box, wait=False)
    return ref


def _message(web: Web, ref: MailboxRef, uid_text: str) -> MessageRecord | None:
    try:
        uid = int(uid_text)
    except ValueError:
        return None
    msgs = web.server.mailstore.listing(ref.box)[1]
    at = bisect.bisect_left(msgs, uid, key=lambda m: m.uid)  # by UID (Mailstore.listing)
    return msgs[at] if at < len(msgs) and msgs[at].uid == uid else None


def _list(web: Web, session: Session, name: str, page: int, sort: str = "arrival", descending: bool = True,
          query: str = "") -> dict[str, Any] | None:
    access = _access(web, session)  # (one directory look-up a page)
    ref = _ref(web, session, name, access=access)
    if ref is None:
        return None
    store = web.server.mailstore
    msgs = store.listing(ref.box)[1]
    size = web.settings.web.page_size
    if sort == "arrival" and not query:
        # Newest first: UIDs grow with arrival (RFC 3501 §2.3.1.1); only the page is read.
        total = len(msgs)
        pages = max(1, math.ceil(total / size))
        page = min(max(page, 1), pages)
        if descending:
            end = total - (page - 1) * size
            chosen = list(reversed(msgs[max(0, end - size):end]))
        else:
            chosen = list(msgs[(page - 1) * size:page * size])
    else:
        found = listing.ordered(store, ref.box, msgs, sort, descending, query)
        total = len(found)
        pages = max(1, math.ceil(total / size))
        page = min(max(page, 1), pages)
        chosen = found[(page - 1) * size:page * size]
    seen: set[int] | None = None
    if not access.is_owner(ref.box):
        db = store.db
        assert db is not None
        seen = db.seen_get(ref.box.id, access.address)
    rows = []
    heads = listing.summaries(store, ref.box, chosen)
    for m in chosen:
        unread = ("\\Seen" not in m.flags) if seen is None else (m.uid not in seen)
        rows.append((m, heads[m.uid], unread, "\\Flagged" in m.flags))
    boxes = [r.name for r in access.own()]
    return {"ref": ref, "rows": rows, "rows_html": render.list_rows(rows, ref.name), "page": page, "pages": pages,
            "total": total, "all": len(msgs), "boxes": boxes, "sort": sort, "order": "desc" if descending else "asc",
            "query": query}


def _list_values(web: Web, session: Session, params: QueryParams) -> dict[str, Any] | None:
    name = params.get("box", "INBOX")
    try:
        page = int(params.get("page", "1"))
    except ValueError:
        page = 1
    sort = params.get("sort", "arrival")
    if sort not in listing.SORTS:
        sort = "arrival"
    descending = params.get("order", "desc") != "asc"
    query = " ".join(params.get("q", "").split())[:200]
    return _list(web, session, name, page, sort, descending, query)


async def message_list(web: Web, request: Request) -> Response:
    values = await _values(web, request, _list_values)
    if values is None:
        return web.not_found(request, "No such mailbox.")
    return web.page(request, "messages.html", title=values["ref"].name, **values)


def _mark_seen(web: Web, session: Session, ref: MailboxRef, msg: MessageRecord, access: Access | None = None) -> None:
    """Reading a message sets \\Seen, as IMAP's FETCH BODY[] does (RFC 3501 §6.4.5);
    in another account's mailbox it is the reader's own \\Seen (RFC 4314 §5.1.2)."""
    if not ref.may("s"):
        return
    store = web.server.mailstore
    access = access or _access(web, session)
    if access.is_owner(ref.box) or ref.owner == access.address:
        if "\\Seen" not in msg.flags:
            store.store(ref.box, [msg.uid], ["\\Seen"], "+")
    else:
        db = store.db
        assert db is not None
        db.seen_set(ref.box.id, access.address, [msg.uid], True)
        store.changed(ref.box)


def _read(web: Web, session: Session, name: str, uid: str, images: bool) -> tuple[MailboxRef, MessageRecord,
                                                                                     render.Shown, list[str]] | None:
    access = _access(web, session)  # (one directory look-up a page)
    ref = _ref(web, session, name, access=access)
    if ref is None:
        return None
    msg = _message(web, ref, uid)
    if msg is None:
        return None
    try:
        data = web.server.mailstore.read(ref.box, msg)
    except FileNotFoundError:
        return None
    shown = render.render(data, remote_images=images)
    _mark_seen(web, session, ref, msg, access)
    return ref, msg, shown, [r.name for r in access.own()]


def _read_values(web: Web, session: Session, params: QueryParams) -> tuple[MailboxRef, MessageRecord, render.Shown,
                                                                          list[str]] | None:
    return _read(web, session, params.get("box", ""), params.get("uid", ""), params.get("images") == "1")


async def read_message(web: Web, request: Request) -> Response:
    images = request.query_params.get("images") == "1"
    found = await _values(web, request, _read_values)
    if found is None:
        return web.not_found(request, "No such message.")
    ref, msg, shown, boxes = found
    return web.page(request, "message.html", csp=CSP_REMOTE_IMAGES if images else CSP, title=shown.subject,
                    ref=ref, msg=msg, m=shown, boxes=boxes, images=images,
                    copied=request.query_params.get("copied", "")[:200])


def _data(web: Web, session: Session, name: str, uid: str) -> bytes | None:
    ref = _ref(web, session, name)
    msg = _message(web, ref, uid) if ref is not None else None
    if ref is None or msg is None:
        return None
    try:
        return web.server.mailstore.read(ref.box, msg)
    except FileNotFoundError:
        return None


async def raw_message(web: Web, request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    data = await asyncio.to_thread(_data, web, session, request.query_params.get("box", ""),
                                   request.query_params.get("uid", ""))
    if data is None:
        return web.not_found(request, "No such message.")
    return Response(data, media_type="text/plain; charset=utf-8", headers=_headers())


async def download(web: Web, request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    data = await asyncio.to_thread(_data, web, session, request.query_params.get("box", ""),
                                   request.query_params.get("uid", ""))
    try:
        index = int(request.query_params.get("part", ""))
    except ValueError:
        index = -1
    part = render.attachment(data, index) if data is not None else None
    if part is None:
        return web.not_found(request, "No such attachment.")
    filename, _ctype, content = part
    # Always a download, never rendered here (an HTML attachment must not run as ours).
    headers = _headers()
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(content, media_type="application/octet-stream", headers=headers)


#: Messages one list form may act on at once (a page holds ``web.page_size``).
MAX_BULK = 500


def _change(web: Web, session: Session, action: str, name: str, uids: list[str], target: str,
            single: bool = True) -> str | None:
    """Flag, unflag, mark seen or unseen, delete, move or copy messages (one from the
    message page, ``single``; those ticked in a list); the URL to go to next, or None (no
    such mailbox, none of the messages, or no right to do it).  OverQuota when the
    target's owner has no room (a move within one account takes no more room)."""
    store = web.server.mailstore
    need = {"flag": "w", "unflag": "w", "seen": "s", "unseen": "s", "delete": "te", "move": "te", "copy": ""}[action]
    ref = _ref(web, session, name, "r" + need)
    if ref is None:
        return None
    msgs = list({m.uid: m for m in (_message(web, ref, u) for u in uids[:MAX_BULK]) if m is not None}.values())
    if not msgs:
        return None
    picked = [m.uid for m in msgs]
    back = f"/mail/box?box={quote(ref.name, safe='')}"
    here = f"/mail/msg?box={quote(ref.name, safe='')}&uid={msgs[0].uid}"
    if action in ("flag", "unflag"):
        store.store(ref.box, picked, ["\\Flagged"], "+" if action == "flag" else "-")
        return here if single else back
    if action in ("seen", "unseen"):
        access = _access(web, session)
        if access.is_owner(ref.box) or ref.owner == access.address:
            store.store(ref.box, picked, ["\\Seen"], "+" if action == "seen" else "-")
        else:  # the reader's own \\Seen (RFC 4314 §5.1.2)
            db = store.db
            assert db is not None
            db.seen_set(ref.box.id, access.address, picked, action == "seen")
            store.changed(ref.box)
        return back
    if action == "delete":
        trash = store.get(session.domain, session.name, "Trash")
        if trash is None or trash.id == ref.box.id:
            store.store(ref.box, picked, ["\\Deleted"], "+")
            store.expunge(ref.box, msgs)
            return back
        dst = _access(web, session).resolve("Trash")
    else:
        dst = _access(web, session).resolve(target) if target else None
    if dst is None or not dst.may("i") or (dst.box.id == ref.box.id and action != "copy"):
        return None
    same_owner = (dst.box.domain, dst.box.account) == (ref.box.domain, ref.box.account)
    if action == "copy":
        store.copy(ref.box, msgs, dst.box)  # a copy takes room, in any account (RFC 9208 §4.1)
        return f"{here}&copied={quote(dst.name, safe='')}" if single else back
    store.copy(ref.box, msgs, dst.box, quota=not same_owner)
    store.expunge(ref.box, msgs)
    return back


def _action(action: str | None) -> Handler:
    """A message page's button (``action``), or the list's form (None: the action and
    the ticked UIDs come in the form)."""
    async def handler(web: Web, request: Request) -> Response:
        session: Session = request.scope["waypost.session"]
        form = await request.form()
        what = action or str(form.get("action") or "")
        if what not in ("flag", "unflag", "seen", "unseen", "delete", "move", "copy"):
            return web.page(request, "error.html", 400, title="Refused", message="Unknown action.")
        uids = [str(u) for u in form.getlist("uid")]
        try:
            nxt = await asyncio.to_thread(_change, web, session, what, str(form.get("box") or ""), uids,
                                          str(form.get("to") or ""), action is not None)
        except OverQuota:
            # RFC 4918 §11.5 507 Insufficient Storage: the target account is full.
            event(log, "web-over-quota", level=logging.INFO, account=session.account, action=what,
                  target=str(form.get("to") or "Trash")[:200])
            return web.page(request, "error.html", 507, title="Mailbox full",
                            message="Not done: the target mailbox's account is over its quota.")
        if nxt is None:
            return web.not_found(request, "No such message, or no right to do that.")
        return RedirectResponse(nxt, 303)
    return handler


def _own_addresses(web: Web, session: Session) -> set[str]:
    """The addresses a reply-all leaves out: the account's, and its aliases'."""
    out = {session.account.lower()}
    for obj in web.server.directory.db.list_objects(session.domain, "alias"):
        if obj.data.get("target") == session.name:
            out.add(obj.address.lower())
    return out


def _original(web: Web, session: Session, box: str, uid: str) -> tuple[MailboxRef, MessageRecord, bytes] | None:
    """The message a reply or forward starts from (read right needed), or None."""
    ref = _ref(web, session, box)
    msg = _message(web, ref, uid) if ref is not None else None
    if ref is None or msg is None:
        return None
    try:
        return ref, msg, web.server.mailstore.read(ref.box, msg)
    except FileNotFoundError:
        return None


_MODES = ("reply", "all", "forward")


def _mark_answered(web: Web, ref: MailboxRef, msg: MessageRecord, mode: str) -> None:
    """\\Answered on what was replied to (RFC 3501 §2.3.2), $Forwarded on what was
    forwarded (the keyword of RFC 5550 §5.9), when the user may set flags there."""
    if ref.may("w"):
        web.server.mailstore.store(ref.box, [msg.uid], ["$Forwarded" if mode == "forward" else "\\Answered"], "+")


async def compose(web: Web, request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    source = request.query_params if request.method == "GET" else await request.form(
        max_part_size=web.settings.web.max_upload_size)
    mode = str(source.get("mode") or "")
    box, uid = str(source.get("box") or ""), str(source.get("uid") or "")
    original = None
    if mode in _MODES:
        original = await asyncio.to_thread(_original, web, session, box, uid)
        if original is None:
            return web.not_found(request, "No such message.")
    else:
        mode = ""
    ref_values: dict[str, Any] = {"mode": mode, "box": box, "uid": uid}
    if request.method == "GET":
        if original is None:
            return web.page(request, "compose.html", title="New message", error="", to="", cc="", subject="",
                            body="", attachments=[], keep=set(), **ref_values)
        own = await asyncio.to_thread(_own_addresses, web, session)
        d = render.draft(original[2], mode, own)
        return web.page(request, "compose.html", title=d.subject or "New message", error="", to=d.to, cc=d.cc,
                        subject=d.subject, body=d.body, attachments=d.attachments,
                        keep={a.index for a in d.attachments}, **ref_values)
    form = source
    fields = {k: str(form.get(k) or "") for k in ("to", "cc", "bcc", "subject", "body")}
    uploads: list[tuple[str, str, bytes]] = []
    kept: set[int] = set()
    in_reply_to = references = ""
    offered: list[render.Attachment] = []
    if original is not None:
        d = render.draft(original[2], mode, set())
        offered = d.attachments
        in_reply_to, references = d.in_reply_to, d.references
        # A forward carries the original's attachments the user kept ticked, from the
        # store (they are never sent to the browser and back).
        wanted = {str(v) for v in form.getlist("keep")}
        for a in offered:
            if str(a.index) in wanted:
                part = render.attachment(original[2], a.index)
                if part is not None:
                    uploads.append(part)
                    kept.add(a.index)
    for item in form.getlist("attachment"):
        if isinstance(item, UploadFile) and item.filename:
            content = await item.read()
            uploads.append((item.filename[-200:], item.content_type or "application/octet-stream", content))
    try:
        addresses = recipients_of(fields["to"], fields["cc"], fields["bcc"])
        if "\r" in fields["subject"] or "\n" in fields["subject"]:
            raise SendError("the subject is one line")
        account = await asyncio.to_thread(web.server.directory.account_named, session.name, session.domain)
        real = (account.data.get("real_name") or "") if account is not None else ""
        sender = email.utils.formataddr((real, session.account)) if real else session.account
        msg = render.build(sender, fields["to"], fields["cc"], fields["subject"], fields["body"], uploads,
                           web.settings.server.hostname, in_reply_to, references)
        data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        if len(data) > web.settings.smtp.max_message_size:
            raise SendError("the message is too big")
        sent = await submit(web.server, web.rules, session.account, addresses, data, _client(request), _secure(request))
    except SendError as e:
        return web.page(request, "compose.html", 400, title="New message", error=str(e), attachments=offered,
                        keep=kept, **{k: fields[k] for k in ("to", "cc", "subject", "body")}, **ref_values)
    if original is not None:
        await asyncio.to_thread(_mark_answered, web, original[0], original[1], mode)
    return web.page(request, "sent.html", title="Sent", sent=sent)


# -- sharing: rights, subscriptions, aliases ---------------------------------------------


def _acl_values(web: Web, session: Session, name: str) -> dict[str, Any] | None:
    access = _access(web, session)
    ref = sharing.administered(access, name)
    if ref is None:
        return None
    db = web.server.mailstore.db
    assert db is not None
    return {"ref": ref, "acl": sorted(db.acl_get(ref.box.id).items())}


async def acl_page(web: Web, request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    error: str = ""
    if request.method == "POST":
        form = await request.form()
        name = str(form.get("box") or "")

        def change() -> str | None:
            access = _access(web, session)
            ref = sharing.administered(access, name)
            if ref is None:
                return "missing"
            return sharing.set_rights(access, ref, str(form.get("identifier") or ""), str(form.get("rights") or ""))

        problem: str | None = await asyncio.to_thread(change)
        error = problem or ""
        if error == "missing":
            return web.not_found(request, "No such mailbox.")
        if not error:
            return RedirectResponse(f"/mail/acl?box={quote(name, safe='')}", 303)
    else:
        name = request.query_params.get("box", "")
    values = await asyncio.to_thread(_acl_values, web, session, name)
    if values is None:
        return web.not_found(request, "No such mailbox.")
    return web.page(request, "acl.html", 400 if error else 200, title=f"Sharing {values['ref'].name}",
                    error=error, **values)


def _sharing_values(web: Web, session: Session) -> dict[str, Any]:
    store = web.server.mailstore
    db = store.db
    assert db is not None
    store.ensure_account(session.domain, session.name)
    return {"subscriptions": store.subscriptions(session.domain, session.name),
            "aliases": sorted(db.mailbox_alias_list(session.domain, session.name).items())}


async def sharing_page(web: Web, request: Request) -> Response:
    """Subscriptions (own and foreign names) and mailbox aliases."""
    session: Session = request.scope["waypost.session"]
    error: str = ""
    if request.method == "POST":
        form = await request.form()
        action = str(form.get("action") or "")
        name = str(form.get("name") or "")
        target = str(form.get("target") or "")

        def change() -> str | None:
            access = _access(web, session)
            store = web.server.mailstore
            if action in ("subscribe", "unsubscribe"):
                return sharing.subscribe(store, access, name, action == "subscribe")
            if action == "add-alias":
                return sharing.add_alias(access, name, target)
            if action == "remove-alias":
                return sharing.remove_alias(access, name)
            return "unknown action"

        problem: str | None = await asyncio.to_thread(change)
        error = problem or ""
        if not error:
            return RedirectResponse("/mail/sharing", 303)
    values = await asyncio.to_thread(_sharing_values, web, session)
    return web.page(request, "sharing.html", 400 if error else 200, title="Subscriptions and aliases",
                    error=error, **values)


# -- file areas ------------------------------------------------------------------------


async def _file_response(web: Web, scope: Scope, receive: Receive, send: Send) -> bool:
    """Serve a file-area URL; False when the request is not one (a WebUser page).
    For a page, the same trip to a thread also looks up the Host's domain and the
    session (``Web.host_and_session``), left in the scope for ``_page``: one hop off the
    event loop instead of two."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    host = headers.get("host", "")
    path = scope.get("path", "/")
    server = web.server
    cookie = Request(scope).cookies.get(COOKIE)

    values = web.prepared.get(path) if scope.get("method") == "GET" else None
    done: tuple[Values, BaseException | None, Any] | None = None

    def look() -> tuple[filestore.PublicAnswer, tuple[str | None, Session | None] | None]:
        nonlocal done
        answer = filestore.lookup(server.files, server.router, host, path)
        if answer.kind != "none":
            return answer, None
        try:
            looked = web.host_and_session(host, cookie)
        except StorageUnavailable:  # the page answers it (503 with a page)
            return answer, None
        domain, session = looked
        if values is not None and domain is not None and session is not None:
            # The page's own values too (``_values`` takes them): one hop, not two.
            try:
                done = (values, None, values(web, session, QueryParams(scope.get("query_string", b""))))
            except Exception as exc:  # raised again by the handler, as if it had run there
                done = (values, exc, None)
        return answer, looked

    answer, looked = await asyncio.to_thread(look)
    if answer.kind == "none":
        scope["waypost.looked"] = (host, cookie, looked)
        if done is not None:
            scope["waypost.values"] = done
        return False
    response: Response
    if scope.get("method") not in ("GET", "HEAD"):
        response = Response("Method not allowed\n", 405, headers={"Allow": "GET, HEAD"}, media_type="text/plain")
    elif answer.kind == "redirect":
        response = RedirectResponse(quote(answer.location, safe="/~"), 301)
    elif answer.kind == "file" and answer.area is not None and answer.file is not None:
        try:
            f, info = await asyncio.to_thread(answer.area.open, answer.file.path)
        except (filestore.FilesError, filestore.PathError, OSError):
            f = None
        if f is None:
            response = Response("Not found\n", 404, media_type="text/plain")
        else:
            def chunks() -> Any:
                with f:
                    while True:
                        block = f.read(64 * 1024)
                        if not block:
                            return
                        yield block
            response = StreamingResponse(chunks(), media_type=filestore.content_type(info.path),
                                         headers={"Content-Length": str(info.size), "X-Content-Type-Options": "nosniff"})
    elif answer.kind == "listing" and answer.site is not None:
        body = web.env.get_template("listing.html").render(site=answer.site, entries=answer.entries, q=quote,
                                                           session=None, title=answer.site.prefix + answer.site.path)
        response = HTMLResponse(body, headers=_headers())
    else:
        event(log, "web-file-not-found", level=logging.DEBUG, host=host, path=path, reason=answer.reason)
        response = Response("Not found\n", 404, media_type="text/plain")
    await response(scope, receive, send)
    return True


def build_app(server: "Server") -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    web = Web(server)
    routes = [
        Route("/", _page(home, web, login=False), methods=["GET"]),
        Route("/login", _page(login, web, login=False), methods=["GET", "POST"]),
        Route("/logout", _page(logout, web), methods=["POST"]),
        Route("/mail", _page(mailboxes, web), methods=["GET"]),
        Route("/mail/box", _page(message_list, web), methods=["GET"]),
        Route("/mail/msg", _page(read_message, web), methods=["GET"]),
        Route("/mail/raw", _page(raw_message, web), methods=["GET"]),
        Route("/mail/part", _page(download, web), methods=["GET"]),
        Route("/mail/flag", _page(_action("flag"), web), methods=["POST"]),
        Route("/mail/unflag", _page(_action("unflag"), web), methods=["POST"]),
        Route("/mail/delete", _page(_action("delete"), web), methods=["POST"]),
        Route("/mail/move", _page(_action("move"), web), methods=["POST"]),
        Route("/mail/copy", _page(_action("copy"), web), methods=["POST"]),
        Route("/mail/bulk", _page(_action(None), web), methods=["POST"]),
        Route("/mail/compose", _page(compose, web), methods=["GET", "POST"]),
        Route("/mail/acl", _page(acl_page, web), methods=["GET", "POST"]),
        Route("/mail/sharing", _page(sharing_page, web), methods=["GET", "POST"]),
    ] + [Route(path, _page(handler, web), methods=methods) for path, handler, methods in ADMIN_ROUTES]
    web.prepared.update({"/mail": _mailboxes_values, "/mail/box": _list_values, "/mail/msg": _read_values})

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        if code >= 500:
            log.error("event=web-error path=%s error=%r", request.url.path, exc)
        return web.page(request, "error.html", code, title="Error", message="Not found." if code == 404 else "Error.")

    from . import account, mta_sts
    routes += account.routes(web)

    async def too_large(request: Request, exc: Exception) -> Response:
        event(log, "web-body-too-large", level=logging.INFO, client=_client(request), path=request.url.path)
        return web.page(request, "error.html", 413, title="Too large",
                        message=f"The request is larger than {web.settings.web.max_upload_size} octets.")

    async def unavailable(request: Request, exc: Exception) -> Response:
        # The database is down (PostgreSQL restarting, say): 503 with a retry hint and one
        # log line, as SMTP answers 451 and IMAP NO [UNAVAILABLE]; never a 500 with a traceback.
        event(log, "storage-unavailable", level=logging.ERROR, client=_client(request), path=request.url.path,
              error=str(exc))
        response = web.page(request, "error.html", 503, title="Try again later",
                            message="The server cannot reach its database just now. Try again in a moment.")
        response.headers["Retry-After"] = "10"
        return response

    starlette = Starlette(routes=routes, exception_handlers={HTTPException: not_found, BodyTooLarge: too_large,
                                                             StorageUnavailable: unavailable, Exception: not_found})
    limit = web.settings.web.max_upload_size + FORM_OVERHEAD

    api = build_api(web)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope.get("path") == PREFIX or scope.get("path", "").startswith(PREFIX + "/")):
            await api(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("path") == "/metrics":
            response = await metrics_endpoint(web, Request(scope, receive))
            await response(scope, receive, send)
            return
        try:
            if scope["type"] == "http" and await mta_sts.respond(web.settings, server.directory, scope, receive, send):
                return  # https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 §3.3)
            if scope["type"] == "http" and await _file_response(web, scope, receive, send):
                return
        except StorageUnavailable as e:  # (the look-ups before a response has started)
            event(log, "storage-unavailable", level=logging.ERROR, path=scope.get("path", ""), error=str(e))
            await Response("The server cannot reach its database just now; try again in a moment.\n", 503,
                           media_type="text/plain", headers={"Retry-After": "10"})(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("method") not in ("GET", "HEAD"):
            # A body larger than a form may be is answered 413 before it is read when it
            # says its length, and as soon as it passes the bound when it does not.
            length = dict(scope.get("headers", [])).get(b"content-length", b"")
            if length.isdigit() and int(length) > limit:
                event(log, "web-body-too-large", level=logging.INFO, path=scope.get("path", ""), length=int(length))
                await Response("Request too large\n", 413, media_type="text/plain",
                               headers={"Connection": "close"})(scope, receive, send)
                return
            receive = _bounded(receive, limit)
        await starlette(scope, receive, send)

    return app
