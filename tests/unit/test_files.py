"""The account file areas (waypost.files) on a real file system and SQLite database:
path safety, the size limit, atomic uploads, ownership, and the public look-up."""

from __future__ import annotations

import os
import threading

import pytest
from waypost.directory import Directory
from waypost.files import (Exists, FilesError, FileStore, LimitExceeded, Missing, NotEmpty, PathError, content_type,
                           lookup, split_path)
from waypost.router import Router
from waypost.router.resolve import store_table

LIMIT = 10_000


@pytest.fixture
def env(tmp_path, make_db):
    db = make_db("w.db")
    d = Directory(db, "main.dom")
    d.add_domain("main.dom")
    d.add_domain("domain.dom", aliases=["www.domain.dom"])
    d.add_account("alice@domain.dom", None)
    d.add_account("bob@main.dom", None)
    store = FileStore(tmp_path / "files", d, LIMIT)
    r = Router(d, ["127.0.0.0/8"], own_addresses=["127.0.0.1", "::1"])
    yield d, store, r, tmp_path
    db.close()


def alice(env):
    d, store, _, _ = env
    return store.account_area("alice@domain.dom")


def leftovers(store):
    return os.listdir(store.root / ".tmp")


# -- path safety -------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    "../x", "a/../../x", "..", ".", "a/./b", "/etc/passwd", "/x", "a\x00b", "a\\..\\b", "%2e%2e/x", "a/%2E%2E",
    "..%2fetc", "%2e%2e%2fetc", "a%00b", "x\nname", "x\x7f", "a" * 256, "/".join(["d"] * 33),
])
def test_split_path_refuses(bad):
    with pytest.raises(PathError):
        split_path(bad)


def test_split_path_accepts_ordinary_names():
    assert split_path("") == ()
    assert len(split_path("/".join(["d"] * 32))) == 32  # MAX_DEPTH, at its edge
    assert split_path("n" * 255) == ("n" * 255,)  # MAX_NAME, at its edge
    assert split_path("docs//index.html/") == ("docs", "index.html")
    assert split_path("100% sure.txt") == ("100% sure.txt",)
    assert split_path("%41bc") == ("%41bc",)  # decodes to a plain name: harmless, kept as given
    assert split_path("ünïcode/файл.txt") == ("ünïcode", "файл.txt")


@pytest.mark.parametrize("bad", ["../escape.txt", "/abs.txt", "a\x00.txt", "%2e%2e/escape.txt", "sub/../../x"])
def test_every_operation_refuses_bad_paths(env, bad):
    area = alice(env)
    area.mkdir("sub")
    for op in (lambda: area.write(bad, b"x"), lambda: area.read_bytes(bad), lambda: area.list(bad),
               lambda: area.mkdir(bad), lambda: area.remove(bad), lambda: area.rmdir(bad),
               lambda: area.stat(bad), lambda: area.rename("sub", bad)):
        with pytest.raises(PathError):
            op()
    assert not (area.root.parent / "escape.txt").exists()
    assert not (area.root.parent.parent / "escape.txt").exists()


def test_symbolic_links_are_never_followed(env, tmp_path):
    area = alice(env)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(secret, area.root / "link.txt")
    os.symlink(outside, area.root / "linkdir")
    area.write("real.txt", b"ok")
    os.symlink("real.txt", area.root / "inside-link.txt")
    with pytest.raises(PathError):
        area.read_bytes("link.txt")
    with pytest.raises(PathError):
        area.list("linkdir")
    with pytest.raises(PathError):
        area.write("linkdir/new.txt", b"x")
    with pytest.raises(PathError):
        area.read_bytes("inside-link.txt")
    assert not (outside / "new.txt").exists()
    assert [e.name for e in area.list()] == ["real.txt"]  # links are not listed
    assert area.usage() == 2  # nor counted
    # Replacing a link by an upload is refused too (it is not a file).
    with pytest.raises(PathError):
        area.write("link.txt", b"overwrite")
    assert secret.read_bytes() == b"top secret"
    # The area's top being a link (made behind our back) is refused as well.
    area.root.rename(area.root.with_name("moved"))
    os.symlink(outside, area.root)
    with pytest.raises(PathError):
        area.list()


# -- reading and writing -----------------------------------------------------------

def test_write_list_read_delete(env):
    area = alice(env)
    assert area.list() == [] and area.usage() == 0
    area.mkdir("site")
    info = area.write("site/index.html", b"<h1>hi</h1>")
    assert (info.path, info.size, info.content_type) == ("site/index.html", 11, "text/html")
    area.write("site/pic.png", [b"\x89PNG", b"rest"])
    assert [(e.name, e.is_dir, e.size) for e in area.list()] == [("site", True, 0)]
    assert [(e.name, e.size) for e in area.list("site")] == [("index.html", 11), ("pic.png", 8)]
    f, got = area.open("site/pic.png")
    with f:
        assert f.read() == b"\x89PNGrest"
    assert got.content_type == "image/png"
    assert area.usage() == 19
    with pytest.raises(NotEmpty):
        area.rmdir("site")
    with pytest.raises(Exists):
        area.mkdir("site")
    with pytest.raises(FilesError):
        area.remove("site")  # a folder is not deleted as a file
    with pytest.raises(FilesError):
        area.read_bytes("site")
    with pytest.raises(Missing):
        area.read_bytes("site/none.txt")
    with pytest.raises(Missing):
        area.write("nofolder/x.txt", b"x")
    area.rename("site/pic.png", "pic2.png")
    assert area.read_bytes("pic2.png") == b"\x89PNGrest"
    with pytest.raises(PathError):
        area.rename("site", "site/inner")
    area.remove("site/index.html")
    area.remove("pic2.png")
    area.rmdir("site")
    assert area.list() == [] and area.usage() == 0
    assert leftovers(env[1]) == []


def test_content_types():
    assert content_type("a.html") == "text/html"
    assert content_type("A.CSS") == "text/css"
    assert content_type("x.pdf") == "application/pdf"
    assert content_type("noext") == "application/octet-stream"
    assert content_type("x.jpg") == "image/jpeg"


# -- the limit and atomicity -------------------------------------------------------

def test_upload_over_the_limit_is_refused_and_leaves_nothing(env):
    area = alice(env)
    area.write("keep.bin", b"k" * 4000)
    with pytest.raises(LimitExceeded) as e:
        area.write("big.bin", b"b" * 6001)
    assert e.value.limit == LIMIT and e.value.needed == 10_001
    assert [x.name for x in area.list()] == ["keep.bin"]
    assert leftovers(env[1]) == []
    # Exactly at the limit is fine; one more octet is not.
    area.write("fits.bin", b"f" * 6000)
    assert area.usage() == LIMIT
    with pytest.raises(LimitExceeded):
        area.write("one.bin", b"1")
    # Replacing a file counts the new size instead of the old one.
    area.write("keep.bin", b"s" * 3000)
    area.write("keep.bin", b"t" * 4000)
    assert area.usage() == LIMIT


def test_streamed_upload_stops_at_the_first_chunk_past_the_limit(env):
    area = alice(env)
    up = area.upload("stream.bin")
    up.write(b"x" * 6000)
    with pytest.raises(LimitExceeded):
        up.write(b"x" * 4001)
    assert up.closed and not up.committed
    assert area.list() == [] and leftovers(env[1]) == []


def test_uncommitted_upload_leaves_the_old_file_whole(env):
    area = alice(env)
    area.write("page.html", b"old content")
    up = area.upload("page.html")
    up.write(b"new, half")
    # While it is being written readers see the old file...
    assert area.read_bytes("page.html") == b"old content"
    tmp = leftovers(env[1])
    assert len(tmp) == 1
    up.close()  # ... and an abort leaves it as it was, with no temporary file
    assert area.read_bytes("page.html") == b"old content"
    assert leftovers(env[1]) == []


def test_commit_checks_the_limit_against_concurrent_uploads(env):
    # Two uploads that each fit when they begin, but not together: the second commit
    # (under the area's lock) is refused and leaves nothing.
    area = alice(env)
    a, b = area.upload("a.bin"), area.upload("b.bin")
    a.write(b"a" * 6000)
    b.write(b"b" * 6000)
    a.commit()
    with pytest.raises(LimitExceeded):
        b.commit()
    assert [e.name for e in area.list()] == ["a.bin"]
    assert leftovers(env[1]) == []


def test_parallel_threads_never_pass_the_limit(env):
    area = alice(env)
    results: list[str] = []

    def one(i: int) -> None:
        try:
            area.write(f"f{i}.bin", b"z" * 3000)
            results.append("ok")
        except LimitExceeded:
            results.append("full")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results.count("ok") == 3 and results.count("full") == 5
    assert area.usage() == 9000


def test_limits_per_account_and_per_domain(env):
    d, store, _, _ = env
    acct = d.get("alice@domain.dom")
    assert store.limit_of(acct) == LIMIT
    d.set_domain("domain.dom", files_limit=500)
    assert store.account_area("alice@domain.dom").limit == 500
    d.update("alice@domain.dom", "account", {"files_limit": 2000})
    area = store.account_area("alice@domain.dom")
    assert area.limit == 2000
    with pytest.raises(LimitExceeded):
        area.write("x.bin", b"x" * 2001)
    d.update("alice@domain.dom", "account", {"files_limit": None})
    assert store.account_area("alice@domain.dom").limit == 500


# -- ownership ---------------------------------------------------------------------

def test_a_new_account_of_a_removed_name_does_not_inherit_its_files(env):
    d, store, _, _ = env
    store.account_area("alice@domain.dom").write("private.txt", b"alice's")
    d.remove("alice@domain.dom", "account")
    d.add_account("alice@domain.dom", None)
    fresh = store.account_area("alice@domain.dom")
    assert fresh.list() == []
    aside = [p.name for p in (store.root / "domain.dom").iterdir() if ".removed-" in p.name]
    assert len(aside) == 1
    assert (store.root / "domain.dom" / aside[0] / "private.txt").read_bytes() == b"alice's"


def test_aliases_reach_their_accounts_area(env):
    d, store, _, _ = env
    d.add_alias("al@domain.dom", "alice")
    store.account_area("al@domain.dom").write("x.txt", b"x")
    assert store.account_area("alice@domain.dom").read_bytes("x.txt") == b"x"
    with pytest.raises(FilesError):
        d.add_forwarder("fw@domain.dom", "x@elsewhere.example")
        store.account_area("fw@domain.dom")


# -- the public look-up (seed 004) ---------------------------------------------------

SECONDARY = "*.domain.dom = *@domain.dom\n<LoginPage%*@domain.dom> = *@domain.dom\n"
MAIN = "*.main.dom = *@fict\n<LoginPage%*@fict> = *\n"


def test_tilde_urls(env):
    d, store, r, _ = env
    area = alice(env)
    area.mkdir("docs")
    area.write("index.html", b"home")
    area.write("docs/a.txt", b"A")
    ans = lookup(store, r, "domain.dom", "/~alice/")
    assert ans.kind == "file" and ans.file.path == "index.html" and ans.site.account == "alice@domain.dom"
    assert lookup(store, r, "DOMAIN.dom:8080", "/~alice/docs/a.txt").file.content_type == "text/plain"
    assert lookup(store, r, "www.domain.dom", "/~alice/docs/a.txt").kind == "file"  # a domain alias
    ans = lookup(store, r, "domain.dom", "/~alice")
    assert (ans.kind, ans.location) == ("redirect", "/~alice/")
    ans = lookup(store, r, "domain.dom", "/~alice/docs")
    assert (ans.kind, ans.location) == ("redirect", "/~alice/docs/")
    # A folder without index.html: no listing unless the owner turns it on.
    ans = lookup(store, r, "domain.dom", "/~alice/docs/")
    assert ans.kind == "not-found"
    d.update("alice@domain.dom", "account", {"files_listing": True})
    ans = lookup(store, r, "domain.dom", "/~alice/docs/")
    assert ans.kind == "listing" and [e.name for e in ans.entries] == ["a.txt"]
    # The server's own address stands for the main domain.
    store.account_area("bob@main.dom").write("b.txt", b"B")
    assert lookup(store, r, "127.0.0.1:8080", "/~bob/b.txt").kind == "file"
    assert lookup(store, r, "[::1]:8080", "/~bob/b.txt").kind == "file"
    assert lookup(store, r, "192.0.2.1", "/~bob/b.txt").kind == "none"  # not one of ours


@pytest.mark.parametrize("path", ["/~alice/../bob/b.txt", "/~alice/%2e%2e/x", "/~alice/a\x00b",
                                  "/~alice/docs/../../../etc/passwd", "/~nobody/", "/~alice/missing.html",
                                  "/~alice%domain.dom/", "/~al@x/"])
def test_public_refusals_look_like_not_found(env, path):
    _, store, r, _ = env
    alice(env).write("index.html", b"home")
    assert lookup(store, r, "domain.dom", path).kind in ("not-found", "none")


def test_not_a_file_storage_url(env):
    _, store, r, _ = env
    assert lookup(store, r, "domain.dom", "/").kind == "none"
    assert lookup(store, r, "domain.dom", "/login").kind == "none"
    assert lookup(store, r, "unknown.example", "/~alice/").kind == "none"
    assert lookup(store, r, "bad host!", "/~alice/").kind == "none"


def test_disabled_account_is_not_served(env):
    d, store, r, _ = env
    alice(env).write("index.html", b"home")
    d.update("alice@domain.dom", "account", {"enabled": False})
    assert lookup(store, r, "domain.dom", "/~alice/").kind == "none"


def test_personal_site_host_names_secondary_domain(env):
    d, store, r, _ = env
    store_table(d.db, SECONDARY)
    alice(env).write("index.html", b"home")
    ans = lookup(store, r, "alice.domain.dom", "/")
    assert ans.kind == "file" and ans.site.prefix == "/" and ans.site.account == "alice@domain.dom"
    assert lookup(store, r, "Alice.Domain.Dom:8080", "/index.html").kind == "file"
    assert lookup(store, r, "nobody.domain.dom", "/").kind == "none"
    assert lookup(store, r, "alice.domain.dom", "/../etc/passwd").kind == "not-found"
    # An object called LoginPage that no record routed to is nobody's personal site.
    d.add_account("loginpage@domain.dom", None)
    assert lookup(store, r, "domain.dom", "/").kind == "none"
    # The domain itself is no personal site: its /~name URLs still work.
    assert lookup(store, r, "domain.dom", "/").kind == "none"
    assert lookup(store, r, "domain.dom", "/~alice/").kind == "file"


def test_personal_site_host_names_main_domain(env):
    d, store, r, _ = env
    store_table(d.db, MAIN)
    store.account_area("bob@main.dom").write("index.html", b"bob's")
    ans = lookup(store, r, "bob.main.dom", "/")
    assert ans.kind == "file" and ans.site.account == "bob@main.dom"
    assert ans.area.read_bytes(ans.file.path) == b"bob's"
