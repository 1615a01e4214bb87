"""``waypost mailbox`` (mailboxes and mailbox aliases of an account) and ``waypost acl``
(who may use a mailbox: RFC 4314 rights)."""

from __future__ import annotations

import click

from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["acl", "mailbox"]


def _account(app: App, address: str) -> tuple[str, str]:
    obj = app.directory.get(address)
    acct = app.directory.account_of(obj)
    if acct is None:
        fail(f"{address} is not an account")
    assert acct is not None
    return acct.domain, acct.name


@click.group()
def mailbox() -> None:
    """Mailboxes of an account, and mailbox aliases."""


@mailbox.command("list")
@click.argument("account")
@json_option
@pass_app
@handle_errors
def mailbox_list(app: App, account: str, as_json: bool) -> None:
    """An account's mailboxes.  Example: waypost mailbox list info@client1.com"""
    domain, name = _account(app, account)
    store = app.mailstore
    rows = []
    subscribed = set(store.subscriptions(domain, name))
    for b in store.mailboxes(domain, name):
        store.sync(b)
        box = app.db.mailbox_by_id(b.id) or b
        rows.append({"mailbox": box.name, "messages": box.exists, "uidvalidity": box.uidvalidity,
                     "uidnext": box.uidnext, "special_use": box.special_use, "subscribed": box.name in subscribed,
                     "acl": app.db.acl_get(box.id)})
    emit(app, rows, ["mailbox", "messages", "special_use", "subscribed", "acl"], as_json, f"Mailboxes of {domain}/{name}")


@mailbox.command("create")
@click.argument("path", metavar="ACCOUNT/MAILBOX")
@pass_app
@handle_errors
def mailbox_create(app: App, path: str) -> None:
    """Create a mailbox.  Example: waypost mailbox create public@client1.com/announce"""
    name = app.ops.mailbox_create(path)
    domain, account = _account(app, path.partition("/")[0])
    click.echo(f"mailbox {name} of {account}@{domain} created")


@mailbox.group("alias")
def alias() -> None:
    """Mailbox aliases: a name in an account's list that stands for another mailbox."""


@alias.command("add")
@click.argument("account")
@click.argument("name")
@click.argument("target")
@pass_app
@handle_errors
def alias_add(app: App, account: str, name: str, target: str) -> None:
    """Give ACCOUNT a mailbox NAME that stands for TARGET.  Example: waypost mailbox alias add
    bob@client1.com mkt-announce "~marketing/announce" """
    from ..ops import Invalid

    try:
        app.ops.mailbox_alias_add(account, name, target)
    except Invalid as e:
        fail(e.message)
    click.echo(f"{account}: mailbox alias {name} -> {target}")


@alias.command("list")
@click.argument("account")
@json_option
@pass_app
@handle_errors
def alias_list(app: App, account: str, as_json: bool) -> None:
    """An account's mailbox aliases.  Example: waypost mailbox alias list bob@client1.com"""
    domain, acct = _account(app, account)
    emit(app, app.ops.mailbox_alias_list(account), ["alias", "target"], as_json, f"Mailbox aliases of {acct}@{domain}")


@alias.command("remove")
@click.argument("account")
@click.argument("name")
@pass_app
@handle_errors
def alias_remove(app: App, account: str, name: str) -> None:
    """Remove a mailbox alias.  Example: waypost mailbox alias remove bob@client1.com mkt-announce"""
    app.ops.mailbox_alias_remove(account, name)
    click.echo(f"{account}: mailbox alias {name} removed")


@click.group()
def acl() -> None:
    """Access rights on mailboxes (RFC 4314: l r s w i p k x t e a)."""


@acl.command("get")
@click.argument("path", metavar="ACCOUNT/MAILBOX")
@json_option
@pass_app
@handle_errors
def acl_get(app: App, path: str, as_json: bool) -> None:
    """Who has which rights on a mailbox.  Example: waypost acl get public@client1.com/announce"""
    rows = app.ops.acl_get(path)
    emit(app, rows, ["identifier", "rights", "note"], as_json, f"ACL of {path}")


@acl.command("set")
@click.argument("path", metavar="ACCOUNT/MAILBOX")
@click.argument("identifier")
@click.argument("rights")
@pass_app
@handle_errors
def acl_set(app: App, path: str, identifier: str, rights: str) -> None:
    """Grant rights: RIGHTS replaces, +RIGHTS adds, -RIGHTS removes, "none" takes all away.
    Example: waypost acl set public@client1.com/announce marketing@client1.com lrswipkxtea"""
    ident, new = app.ops.acl_set(path, identifier, rights)
    click.echo(f"{path}: {ident} {new or '(no rights)'}")
