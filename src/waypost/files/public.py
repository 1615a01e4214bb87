"""The public, read-only view of the file areas: which account's file an HTTP request
names (seed 004, "Account File Storage").  Pure look-ups; no HTTP server here.

* ``http://domain.dom/~username/path`` is the file ``path`` of ``username@domain.dom``:
  the router resolves ``username@<host>`` as an HTTP name (``Context(kind="http")``),
  so domain aliases, IP literals of our own addresses and ``http``-kind records apply.
* ``http://username.domain.dom/path`` is a personal site: the router is asked for
  ``LoginPage@<host>``, exactly as the seed says, and the Router records

      *.domain.dom = *@domain.dom
      <LoginPage%*@domain.dom> = *@domain.dom

  (or ``*.domain.dom = *@fict`` / ``<LoginPage%*@fict> = *`` for the main domain) route
  it to ``username@domain.dom``.  A host that routes nowhere is not a personal site.

A folder is served by its ``index.html``; without one, its listing only when the owner
turned listings on (``files_listing``); a folder named without its trailing ``/`` is
redirected to the name with it.  A disabled account, an unknown one, a bad path and a
missing file all look the same to a visitor: not found.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..address import AddressError, normalize_domain
from ..router import Context, Router
from .paths import PathError, split_path
from .store import AccountFiles, Entry, FileInfo, FilesError, FileStore

__all__ = ["PublicAnswer", "Site", "find_site", "lookup", "INDEX"]

#: The file that stands for its folder.
INDEX = "index.html"


@dataclass(frozen=True, slots=True)
class Site:
    """Whose area a request is in: ``prefix`` is the URL path of the area's top
    (``/~alice/`` or ``/``), ``path`` the area-relative rest."""

    account: str            # name@domain of the account
    prefix: str
    path: str
    needs_slash: bool = False  # ``/~alice`` without its ``/``: redirect to ``prefix``


@dataclass(frozen=True, slots=True)
class PublicAnswer:
    """What to send.  ``kind``:

    * ``file``: serve ``file`` from ``area`` (``area.open(file.path)``);
    * ``listing``: the folder's ``entries`` (the owner allows listings);
    * ``redirect``: to ``location`` (a folder named without its ``/``);
    * ``not-found``: nothing here (also for bad paths, unknown or disabled accounts,
      and a folder without ``index.html`` whose owner allows no listing);
    * ``none``: not a file-storage URL at all (the web application's own pages).
    """

    kind: str
    site: Site | None = None
    area: AccountFiles | None = None
    file: FileInfo | None = None
    entries: list[Entry] = field(default_factory=list)
    location: str = ""
    reason: str = ""


def _host_domain(host: str) -> str | None:
    """The domain part an HTTP ``Host`` stands for: the name without its port, or an IP
    address as an address literal (``[127.0.0.1]``); None for nonsense."""
    h = host.strip()
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            return None
        inner = h[1:end]
        try:
            return f"[IPv6:{ipaddress.IPv6Address(inner)}]"
        except ValueError:
            return None
    h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    try:
        return f"[{ipaddress.IPv4Address(h)}]"
    except ValueError:
        pass
    try:
        return normalize_domain(h)
    except AddressError:
        return None


def _account(router: Router, address: str, *, rewritten_from: str = "") -> str | None:
    route = router.resolve(address, Context(kind="http")).route
    if route.kind != "local" or not route.account:
        return None
    if rewritten_from and route.name.lower() == rewritten_from:
        return None  # no record routed it: an object called LoginPage is nobody's site
    return f"{route.account}@{route.domain}"


def find_site(router: Router, host: str, path: str) -> Site | None:
    """The account area an HTTP request (``Host`` header, decoded URL path) is in, if
    any.  A personal-site host (``LoginPage@<host>`` routes to an account) owns every
    path under it; elsewhere ``/~name/...`` names ``name@<host>``."""
    domain = _host_domain(host)
    if domain is None or not path.startswith("/"):
        return None
    if not domain.startswith("["):
        owner = _account(router, f"LoginPage@{domain}", rewritten_from="loginpage")
        if owner is not None:
            return Site(owner, "/", path[1:])
    if not path.startswith("/~"):
        return None
    name, slash, rest = path[2:].partition("/")
    if not name or "@" in name or "%" in name:
        return None
    owner = _account(router, f"{name}@{domain}")
    if owner is None:
        return None
    return Site(owner, f"/~{name}/", rest, needs_slash=not slash)


def lookup(store: FileStore, router: Router, host: str, path: str) -> PublicAnswer:
    """What a visitor asking ``path`` (decoded, as the URL gives it) of ``host`` gets."""
    site = find_site(router, host, path)
    if site is None:
        return PublicAnswer("none")
    if site.needs_slash:
        return PublicAnswer("redirect", site, location=site.prefix)
    try:
        area = store.account_area(site.account)
        parts = split_path(site.path)
        rel = "/".join(parts)
        entry = area.stat(rel)
        if entry.is_dir:
            if rel and not site.path.endswith("/"):
                return PublicAnswer("redirect", site, area, location=f"{site.prefix}{rel}/")
            index = f"{rel}/{INDEX}" if rel else INDEX
            try:
                return PublicAnswer("file", site, area, file=area.info(index))
            except FilesError:
                pass
            if area.listing:
                return PublicAnswer("listing", site, area, entries=area.list(rel))
            return PublicAnswer("not-found", site, area, reason="folder without index.html; listing is off")
        return PublicAnswer("file", site, area, file=area.info(rel))
    except PathError as e:
        return PublicAnswer("not-found", site, reason=f"refused path: {e}")
    except (FilesError, ValueError, LookupError) as e:  # ValueError: DirectoryError; LookupError: NotFound
        return PublicAnswer("not-found", site, reason=str(e))
