"""The user's own pages beside the mail: Account File Storage (``/files``: upload,
folders, delete, the public listing switch) and the account settings (``/settings``:
password, real name, forwarding).

Files go through ``waypost.files`` only (``AccountFiles``: the jail, the atomic upload,
the area's size limit); an upload that would pass the limit is answered 413 and leaves
nothing behind.  Settings go through the ``Directory`` as ``waypost account set`` does
(the same keys, the same forwarding-loop check through the Router); the password change
asks for the current password through the server's throttled ``authenticate``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .. import files as filestore
from ..address import AddressError, parse_address
from ..log import event
from .sessions import Session

if TYPE_CHECKING:
    from .app import Web

__all__ = ["routes"]

log = logging.getLogger("waypost.web")

#: Longest real name, and the password lengths a user may choose.
MAX_REAL_NAME = 200
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
#: Longest vacation subject and reason (the reply is one short message).
MAX_SUBJECT = 200
MAX_REASON = 10_000
#: Octets read from an uploaded part at a time into the area.
_CHUNK = 64 * 1024


# -- file storage -------------------------------------------------------------------------


def _area(web: "Web", session: Session) -> filestore.AccountFiles:
    return web.server.files.account_area(session.account)


def _folder_of(path: str) -> str:
    return "/".join(filestore.split_path(path))


def _files_values(web: "Web", session: Session, path: str) -> dict[str, Any]:
    area = _area(web, session)
    folder = _folder_of(path)
    entries = area.list(folder)
    crumbs: list[tuple[str, str]] = []
    parts = folder.split("/") if folder else []
    for i, part in enumerate(parts):
        crumbs.append((part, "/".join(parts[:i + 1])))
    return {"folder": folder, "entries": entries, "crumbs": crumbs, "usage": area.usage(), "limit": area.limit,
            "listing": area.listing, "public": f"/~{session.name}/" + (folder + "/" if folder else "")}


async def files_page(web: "Web", request: Request, error: str = "", status: int = 200,
                     folder: str | None = None) -> Response:
    session: Session = request.scope["waypost.session"]
    path = folder if folder is not None else request.query_params.get("path", "")
    try:
        values = await asyncio.to_thread(_files_values, web, session, path)
        # The public pages are on the account's domain: from another host name (our
        # host name, an address) the links name that domain, on the port asked.
        if request.scope.get("waypost.domain") != session.domain:
            port = request.url.port
            values["site"] = f"{request.url.scheme}://{session.domain}" + (f":{port}" if port else "")
        else:
            values["site"] = ""
    except filestore.PathError as e:
        event(log, "web-files-refused", level=logging.INFO, account=session.account, path=path[:200], reason=str(e))
        return web.page(request, "error.html", 400, title="Refused", message=f"Bad path: {e}")
    except filestore.FilesError:
        return web.not_found(request, "No such folder.")
    return web.page(request, "files.html", status, title="Files", error=error, **values)


def _store_upload(area: filestore.AccountFiles, target: str, item: UploadFile) -> filestore.FileInfo:
    """Copy one uploaded part into the area: through ``Upload`` (a temporary file until
    the commit), so a refusal at any point leaves nothing."""
    item.file.seek(0)
    with area.upload(target) as up:
        while True:
            chunk = item.file.read(_CHUNK)
            if not chunk:
                break
            up.write(chunk)
        return up.commit()


async def files_upload(web: "Web", request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    form = await request.form()
    folder = str(form.get("path") or "")
    items = [i for i in form.getlist("file") if isinstance(i, UploadFile) and i.filename]
    if not items:
        return await files_page(web, request, "Choose a file to upload.", 400, folder)
    stored: list[str] = []
    try:
        area = await asyncio.to_thread(_area, web, session)
        base = _folder_of(folder)
        for item in items:
            name = item.filename or ""
            # The name is one component: a browser sends no folder; "../x" is refused.
            if "/" in name or "\\" in name:
                raise filestore.PathError("a file name holds no folder")
            target = f"{base}/{name}" if base else name
            filestore.split_path(target)
            info = await asyncio.to_thread(_store_upload, area, target, item)
            stored.append(info.path)
    except filestore.LimitExceeded as e:
        event(log, "web-files-over-limit", level=logging.INFO, account=session.account, limit=e.limit,
              needed=e.needed)
        return await files_page(web, request, f"Not stored: the file area is full ({e}).", 413, folder)
    except filestore.PathError as e:
        event(log, "web-files-refused", level=logging.INFO, account=session.account, path=folder[:200],
              reason=str(e))
        return web.page(request, "error.html", 400, title="Refused", message=f"Bad path or name: {e}")
    except filestore.FilesError as e:
        return await files_page(web, request, str(e), 400, folder)
    event(log, "web-files-upload", account=session.account, files=len(stored))
    return RedirectResponse(f"/files?path={_q(folder)}", 303)


def _q(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


def _files_change(action: str) -> Any:
    async def handler(web: "Web", request: Request) -> Response:
        session: Session = request.scope["waypost.session"]
        form = await request.form()
        folder = str(form.get("path") or "")
        name = str(form.get("name") or "").strip()

        def change() -> None:
            area = _area(web, session)
            if action == "listing":
                on = str(form.get("listing") or "") == "on"
                web.server.directory.update(session.account, "account", {filestore.LISTING_KEY: on or None})
                return
            if not name or "/" in name or "\\" in name:
                raise filestore.PathError("a name (no folder in it) is needed")
            base = _folder_of(folder)
            target = f"{base}/{name}" if base else name
            if action == "mkdir":
                area.mkdir(target)
            elif area.is_dir(target):
                area.rmdir(target)
            else:
                area.remove(target)

        try:
            await asyncio.to_thread(change)
        except filestore.PathError as e:
            event(log, "web-files-refused", level=logging.INFO, account=session.account,
                  path=f"{folder}/{name}"[:200], reason=str(e))
            return web.page(request, "error.html", 400, title="Refused", message=f"Bad path or name: {e}")
        except filestore.FilesError as e:
            return await files_page(web, request, str(e), 409 if isinstance(e, (filestore.Exists,
                                                                                   filestore.NotEmpty)) else 404,
                                    folder)
        event(log, f"web-files-{action}", account=session.account)
        return RedirectResponse(f"/files?path={_q(folder)}", 303)
    return handler


# -- settings ------------------------------------------------------------------------------


def _settings_values(web: "Web", session: Session) -> dict[str, Any]:
    account = web.server.directory.account_named(session.name, session.domain)
    data = account.data if account is not None else {}
    return {"real_name": data.get("real_name", ""), "forward": data.get("forward") or "",
            "keep_copy": bool(data.get("keep_copy", False))}


async def settings_page(web: "Web", request: Request, error: str = "", done: str = "", status: int = 200) -> Response:
    session: Session = request.scope["waypost.session"]
    values = await asyncio.to_thread(_settings_values, web, session)
    if not done:
        done = {"name": "Your name was changed.", "forward": "Forwarding was changed.",
                "password": "Your password was changed."}.get(request.query_params.get("done", ""), "")
    return web.page(request, "settings.html", status, title="Settings", error=error, done=done, **values)


async def settings_change(web: "Web", request: Request) -> Response:
    session: Session = request.scope["waypost.session"]
    form = await request.form()
    action = str(form.get("action") or "")
    directory = web.server.directory
    if action == "name":
        name = " ".join(str(form.get("real_name") or "").split())
        if len(name) > MAX_REAL_NAME:
            return await settings_page(web, request, f"At most {MAX_REAL_NAME} characters.", status=400)
        await asyncio.to_thread(directory.update, session.account, "account", {"real_name": name})
    elif action == "forward":
        target = str(form.get("forward") or "").strip()
        keep = str(form.get("keep_copy") or "") == "on"
        if target:
            try:
                target = str(parse_address(target))
            except AddressError as e:
                return await settings_page(web, request, f"Forward to: {e}", status=400)
            chain = await asyncio.to_thread(web.server.router.loop_back, session.account, [target])
            if chain:
                return await settings_page(web, request, "That would make a forwarding loop: "
                                           + " -> ".join(chain), status=400)
            changes: dict[str, Any] = {"forward": target, "keep_copy": keep}
        else:
            changes = {"forward": None, "keep_copy": None}
        await asyncio.to_thread(directory.update, session.account, "account", changes)
    elif action == "password":
        current = str(form.get("current") or "")[:MAX_PASSWORD]
        new = str(form.get("new") or "")
        if new != str(form.get("repeat") or ""):
            return await settings_page(web, request, "The new password and its repetition differ.", status=400)
        if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
            return await settings_page(web, request, f"A password has {MIN_PASSWORD} to {MAX_PASSWORD} characters.",
                                       status=400)
        client = request.client.host if request.client else None
        server_ip = request.scope.get("server", (None,))[0] if request.scope.get("server") else None
        # The current password, checked like a login (throttled, failures logged).
        who = await web.server.authenticate(session.account, current, server_ip, client, "web")
        if who != session.account:
            return await settings_page(web, request, "The current password is wrong.", status=403)
        account = await asyncio.to_thread(directory.account_named, session.name, session.domain)
        cram = bool(account is not None and account.data.get("cram"))
        await asyncio.to_thread(directory.update, session.account, "account", {"password": new}, cram)
        # The other sessions of the account end (a password changed because it leaked).
        ended = await asyncio.to_thread(web.server.db.web_session_end_others, session.account, session.id_hash)
        event(log, "web-sessions-ended", account=session.account, sessions=ended)
    else:
        return await settings_page(web, request, "Unknown change.", status=400)
    event(log, "web-settings", account=session.account, change=action)  # never the values
    return RedirectResponse(f"/settings?done={action}", 303)


# -- quota and vacation (issue 21) -------------------------------------------------------------

#: The script WebUser makes when the account has no active one.
WEB_SCRIPT = "webuser"


def _quota_values(web: "Web", session: Session) -> dict[str, Any]:
    store = web.server.mailstore
    store.ensure_account(session.domain, session.name)
    quota = store.quota(session.domain, session.name, usage=True)
    boxes = []
    for box in store.mailboxes(session.domain, session.name):
        msgs = store.listing(box)[1]
        boxes.append((box.name, len(msgs), sum(max(m.size, 0) for m in msgs)))
    boxes.sort(key=lambda b: -b[2])
    try:
        area = _area(web, session)
        files = (area.usage(), area.limit)
    except filestore.FilesError:
        files = (0, 0)
    return {"quota": quota, "percent": quota.percent(), "boxes": boxes, "files": files}


async def quota_page(web: "Web", request: Request) -> Response:
    """"My mailbox is full — of what?": the limits, the usage, and the mailboxes by size."""
    session: Session = request.scope["waypost.session"]
    values = await asyncio.to_thread(_quota_values, web, session)
    return web.page(request, "quota.html", title="Storage", **values)


def _vacation_state(web: "Web", session: Session) -> tuple[str, str, bool]:
    """(script name, its text, whether it is the active one) that the page edits: the
    active script, else WebUser's own (made active when saved)."""
    db = web.server.db
    active = db.sieve_active(session.domain, session.name)
    if active is not None:
        return active[0], active[1], True
    text = db.sieve_get(session.domain, session.name, WEB_SCRIPT)
    return WEB_SCRIPT, text or "", False


async def vacation_page(web: "Web", request: Request, error: str = "", status: int = 200,
                        form_values: Any = None) -> Response:
    from ..sieve import SieveError
    from ..sieve.edit import DEFAULT_DAYS, Foreign, vacation_of

    session: Session = request.scope["waypost.session"]
    name, text, active = await asyncio.to_thread(_vacation_state, web, session)
    foreign = ""
    values: dict[str, Any] = {"enabled": False, "subject": "", "reason": "", "days": DEFAULT_DAYS, "start": "",
                              "end": ""}
    try:
        v = vacation_of(text) if text.strip() else None
        if v is not None:
            values = {"enabled": v.enabled, "subject": v.subject, "reason": v.reason.replace("\r\n", "\n"),
                      "days": v.days, "start": v.start, "end": v.end}
    except Foreign as e:
        foreign = f"Your Sieve script {name!r} {e}: change it with a Sieve client (ManageSieve)."
    except SieveError as e:
        foreign = f"Your Sieve script {name!r} cannot be read ({e}): change it with a Sieve client."
    if form_values:
        values.update(form_values)
    done = "Saved." if request.query_params.get("done") else ""
    return web.page(request, "vacation.html", status, title="Vacation", error=error, done=done, foreign=foreign,
                    script=name, active=active, **values)


async def vacation_change(web: "Web", request: Request) -> Response:
    from ..sieve import SieveError
    from ..sieve.edit import MAX_DAYS, Foreign, Vacation, with_vacation

    session: Session = request.scope["waypost.session"]
    form = await request.form()
    enabled = str(form.get("enabled") or "") == "on"
    subject = " ".join(str(form.get("subject") or "").split())[:MAX_SUBJECT]
    reason = str(form.get("reason") or "").replace("\r\n", "\n").strip("\n")
    try:
        days = int(str(form.get("days") or ""))
    except ValueError:
        days = 0
    start, end = str(form.get("start") or "").strip()[:10], str(form.get("end") or "").strip()[:10]
    kept = {"enabled": enabled, "subject": subject, "reason": reason, "days": days, "start": start, "end": end}
    if not 1 <= days <= MAX_DAYS:
        return await vacation_page(web, request, f"Days: 1 to {MAX_DAYS}.", 400, kept)
    if enabled and not reason.strip():
        return await vacation_page(web, request, "Write the message to send.", 400, kept)
    if len(reason) > MAX_REASON:
        return await vacation_page(web, request, f"At most {MAX_REASON} characters.", 400, kept)

    def save() -> tuple[str, int] | None:
        name, text, active = _vacation_state(web, session)
        if not text.strip() and not enabled:
            return None  # nothing to turn off
        try:
            new = with_vacation(text, Vacation(enabled, reason.replace("\n", "\r\n"), subject, days, start, end))
        except Foreign as e:
            return f"Your Sieve script {e}: change it with a Sieve client.", 409
        except SieveError as e:
            return f"Your Sieve script cannot be read ({e}): change it with a Sieve client.", 409
        except ValueError as e:  # the dates
            return f"Dates: {e}.", 400
        db = web.server.db
        db.sieve_put(session.domain, session.name, name, new)
        if not active:
            db.sieve_activate(session.domain, session.name, name)
        event(log, "web-vacation", account=session.account, script=name, enabled="yes" if enabled else "no")
        return None

    problem = await asyncio.to_thread(save)
    if problem:
        return await vacation_page(web, request, problem[0], problem[1], kept)
    return RedirectResponse("/vacation?done=1", 303)


def _filters_values(web: "Web", session: Session) -> dict[str, Any]:
    from ..sieve import SieveError
    from ..sieve.edit import FIELDS, filters_of

    name, text, active = _vacation_state(web, session)
    store = web.server.mailstore
    store.ensure_account(session.domain, session.name)
    boxes = [b.name for b in store.mailboxes(session.domain, session.name) if b.name != "INBOX"]
    values: dict[str, Any] = {"script": name, "active": active, "fields": FIELDS, "boxes": boxes, "filters": [],
                              "other": 0, "foreign": ""}
    try:
        values["filters"], values["other"] = filters_of(text)
    except SieveError as e:
        values["foreign"] = f"Your Sieve script {name!r} cannot be read ({e}): change it with a Sieve client."
    return values


async def filters_page(web: "Web", request: Request, error: str = "", status: int = 200) -> Response:
    session: Session = request.scope["waypost.session"]
    values = await asyncio.to_thread(_filters_values, web, session)
    done = "Saved." if request.query_params.get("done") else ""
    return web.page(request, "filters.html", status, title="Filters", error=error, done=done, **values)


async def filters_change(web: "Web", request: Request) -> Response:
    from ..sieve import SieveError
    from ..sieve.edit import Filter, with_filter, without_filter

    session: Session = request.scope["waypost.session"]
    form = await request.form()
    action = str(form.get("action") or "")

    def save() -> tuple[str, int] | None:
        name, text, active = _vacation_state(web, session)
        try:
            if action == "add":
                field = str(form.get("field") or "").lower()
                value = " ".join(str(form.get("value") or "").split())[:MAX_SUBJECT]
                box = str(form.get("mailbox") or "")
                store = web.server.mailstore
                if box == "INBOX" or store.get(session.domain, session.name, box) is None:
                    return "Choose one of your mailboxes.", 400
                new = with_filter(text, Filter(field, value, box))
            elif action == "remove":
                try:
                    index = int(str(form.get("index") or ""))
                except ValueError:
                    return "No such rule.", 400
                # (A form sends its line breaks as CRLF: HTML "converting line breaks".)
                new = without_filter(text, index, str(form.get("rule") or "").replace("\r\n", "\n"))
            else:
                return "Unknown change.", 400
        except SieveError as e:
            return f"Your Sieve script cannot be read ({e}): change it with a Sieve client.", 409
        except ValueError as e:
            return str(e), 409 if action == "remove" else 400
        db = web.server.db
        db.sieve_put(session.domain, session.name, name, new)
        if not active:
            db.sieve_activate(session.domain, session.name, name)
        event(log, "web-filters", account=session.account, script=name, change=action)
        return None

    problem = await asyncio.to_thread(save)
    if problem:
        return await filters_page(web, request, problem[0], problem[1])
    return RedirectResponse("/filters?done=1", 303)


def routes(web: "Web") -> list[Route]:
    from .app import _page

    return [
        Route("/files", _page(lambda w, r: files_page(w, r), web), methods=["GET"]),
        Route("/files/upload", _page(files_upload, web), methods=["POST"]),
        Route("/files/mkdir", _page(_files_change("mkdir"), web), methods=["POST"]),
        Route("/files/delete", _page(_files_change("delete"), web), methods=["POST"]),
        Route("/files/listing", _page(_files_change("listing"), web), methods=["POST"]),
        Route("/settings", _page(lambda w, r: settings_page(w, r), web), methods=["GET"]),
        Route("/settings", _page(settings_change, web), methods=["POST"]),
        Route("/quota", _page(quota_page, web), methods=["GET"]),
        Route("/vacation", _page(lambda w, r: vacation_page(w, r), web), methods=["GET"]),
        Route("/vacation", _page(vacation_change, web), methods=["POST"]),
        Route("/filters", _page(lambda w, r: filters_page(w, r), web), methods=["GET"]),
        Route("/filters", _page(filters_change, web), methods=["POST"]),
    ]
