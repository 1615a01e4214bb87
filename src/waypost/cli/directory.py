"""``waypost domain|account|alias|forwarder|group ...``"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..db import DomainRecord, ObjectRecord
from ..ops import domain_view, object_view
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["register"]


def _domain_row(app: App, d: DomainRecord) -> dict[str, Any]:
    return domain_view(app.directory, d)


def _object_row(o: ObjectRecord) -> dict[str, Any]:
    return object_view(o)


def _read_password(password: str | None, stdin: bool, prompt: bool = True) -> str | None:
    if stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("no password on standard input")
        return line
    if password is None and prompt:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)  # type: ignore[no-any-return]
    return password


def _check_peers(app: App, address: str) -> None:
    """Domain sharing (seed 002): a name that exists on a peer is not created here."""
    import asyncio

    from ..secrets import Secrets
    from ..sharing.peers import ask_peers

    name, domain = app.directory.split(address)
    s = app.settings.sharing
    answers = asyncio.run(ask_peers(app.db, Secrets(app.settings.data_dir), f"{name}@{domain}", s.timeout, s.cache_ttl))
    for host, answer in answers.items():
        if answer in (4, 5):
            fail(f"{name}@{domain} exists on the sharing peer {host} (use --force to create it anyway)")
        if not isinstance(answer, int) or answer != 3:
            fail(f"the sharing peer {host} could not be asked about {name}@{domain}: {answer} (use --force)")


# -- domain ---------------------------------------------------------------------------

@click.group()
def domain() -> None:
    """Local domains: the main domain and secondary domains.

    Example: waypost domain add client1.com --alias www.client1.com
    """


@domain.command("add")
@click.argument("name")
@click.option("--alias", "aliases", multiple=True, help="Another name of the same domain (repeatable).")
@click.option("--ip", "ips", multiple=True, help="Server address bound to this domain (repeatable).")
@pass_app
@handle_errors
def domain_add(app: App, name: str, aliases: tuple[str, ...], ips: tuple[str, ...]) -> None:
    """Create a domain.  Example: waypost domain add client1.com"""
    rec = app.ops.domain_add(name, aliases, ips)
    click.echo(f"domain {rec.name} added")


@domain.command("list")
@json_option
@pass_app
def domain_list(app: App, as_json: bool) -> None:
    """List domains.  Example: waypost domain list --json"""
    rows = [_domain_row(app, d) for d in app.directory.list_domains()]
    emit(app, rows, ["name", "main", "aliases", "ips", "mail_to_unknown", "objects"], as_json, "Domains")


@domain.command("set")
@click.argument("name")
@click.option("--alias", "aliases", multiple=True, help="Replace the domain's aliases (repeatable).")
@click.option("--no-aliases", is_flag=True, help="Remove every alias.")
@click.option("--ip", "ips", multiple=True, help="Replace the server addresses bound to it (repeatable).")
@click.option("--no-ips", is_flag=True, help="Unbind every server address.")
@click.option("--mail-to-unknown", "unknown", metavar="rejected|discarded|bounced|PATTERN",
              help="What mail to a name with no object does; PATTERN reroutes, e.g. '*%client1.com@old.client1.com.via'.")
@click.option("--send-as", "send_as", type=click.Choice(["own", "domain", "any"]),
              help="Senders (MAIL FROM, From:) the domain's authenticated accounts may use: own (the account, its "
                   "aliases and its --send-as rights; the default), domain (any address of the domain), any.")
@click.option("--quota", "quota_storage", metavar="SIZE|unlimited",
              help="Default mailbox storage limit of the domain's accounts: octets, or 500M, 2G.")
@click.option("--quota-messages", "quota_messages", metavar="N|unlimited",
              help="Default limit of messages in the domain's accounts.")
@click.option("--dmarc-reject", "dmarc_reject", type=click.Choice(["reject", "junk", "default"]),
              help="Under mailauth.inbound = enforce, what mail to this domain failing DMARC of a p=reject sender "
                   "gets: reject (550 5.7.1), junk (into the recipient's Junk), default (mailauth.dmarc_reject).")
@pass_app
@handle_errors
def domain_set(app: App, name: str, aliases: tuple[str, ...], no_aliases: bool, ips: tuple[str, ...],
               no_ips: bool, unknown: str | None, send_as: str | None, quota_storage: str | None,
               quota_messages: str | None, dmarc_reject: str | None) -> None:
    """Change a domain.  Example: waypost domain set client1.com --ip 127.0.0.2"""
    kwargs: dict[str, Any] = {}
    if dmarc_reject is not None:
        kwargs["dmarc_reject"] = None if dmarc_reject == "default" else dmarc_reject
    if quota_storage is not None or quota_messages is not None:
        from .quota import quota_changes

        kwargs.update(quota_changes(app, quota_storage, quota_messages, for_domain=True))
    if send_as is not None:
        kwargs["send_as"] = None if send_as == "own" else send_as
    if unknown is not None:
        kwargs["mail_to_unknown"] = unknown  # checked by the operation
    if aliases or no_aliases:
        kwargs["aliases"] = [] if no_aliases else list(aliases)
    if ips or no_ips:
        kwargs["ips"] = [] if no_ips else list(ips)
    if not kwargs:
        fail("nothing to change (see --help)")
    rec = app.ops.domain_set(name, **kwargs)
    click.echo(f"domain {rec.name} changed")


@domain.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
@handle_errors
def domain_remove(app: App, name: str, yes: bool) -> None:
    """Remove a domain and every object in it.  Example: waypost domain remove old.com --yes"""
    rec = app.directory.require_domain(name)
    count = len(app.db.list_objects(rec.name))
    if not yes and not click.confirm(f"remove {rec.name} and its {count} objects?"):
        fail("not removed")
    count = app.ops.domain_remove(rec.name)
    click.echo(f"domain {rec.name} removed ({count} objects)")


@domain.command("template")
@click.argument("name")
@click.option("--mailbox", "mailboxes", multiple=True, help="A mailbox every new account gets (repeatable).")
@click.option("--subscribe", "subscriptions", multiple=True,
              help="A subscription every new account gets, own or ~account/mailbox (repeatable).")
@click.option("--alias", "aliases", multiple=True, metavar="NAME=TARGET",
              help="A mailbox alias every new account gets, e.g. mkt-announce=~marketing/announce (repeatable).")
@click.option("--clear", is_flag=True, help="Remove the template.")
@json_option
@pass_app
@handle_errors
def domain_template(app: App, name: str, mailboxes: tuple[str, ...], subscriptions: tuple[str, ...],
                    aliases: tuple[str, ...], clear: bool, as_json: bool) -> None:
    """The account template of a domain: what every new account of it starts with (the
    options replace the template; none shows it).
    Example: waypost domain template client1.com --subscribe "~marketing/announce" --alias mkt-announce=~marketing/announce"""
    import json as _json

    rec = app.directory.require_domain(name)
    if clear or mailboxes or subscriptions or aliases:
        pairs: dict[str, str] = {}
        for item in aliases:
            alias, sep, target = item.partition("=")
            if not sep or not alias or not target:
                fail(f"--alias {item!r}: give NAME=TARGET")
            pairs[alias] = target
        template = None if clear else {"mailboxes": list(mailboxes), "subscriptions": list(subscriptions),
                                       "aliases": pairs}
        rec = app.ops.domain_template(rec.name, template)
        click.echo(f"domain {rec.name}: template {'removed' if clear else 'set'}")
        return
    shown: dict[str, Any] = rec.settings.get("template") or {"mailboxes": [], "subscriptions": [], "aliases": {}}
    if as_json:
        click.echo(_json.dumps(shown, indent=2))
        return
    click.echo(f"mailboxes: {', '.join(shown.get('mailboxes', [])) or '-'}")
    click.echo(f"subscriptions: {', '.join(shown.get('subscriptions', [])) or '-'}")
    click.echo("aliases: " + (", ".join(f"{a} -> {t}" for a, t in shown.get("aliases", {}).items()) or "-"))


# -- account --------------------------------------------------------------------------

@click.group()
def account() -> None:
    """Accounts (mailboxes with a password).

    Example: waypost account add info@client1.com --password 's3cret'
    """


@account.command("add")
@click.argument("address")
@click.option("--password", help="The password (prompted for when neither this nor --password-stdin is given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--no-password", is_flag=True, help="Create the account without a password (no login).")
@click.option("--name", "real_name", default="", help="The user's real name.")
@click.option("--force", is_flag=True, help="Create it even if a domain-sharing peer has the name, or cannot be asked.")
@pass_app
@handle_errors
def account_add(app: App, address: str, password: str | None, password_stdin: bool, no_password: bool,
                real_name: str, force: bool) -> None:
    """Create an account.  Example: waypost account add info@client1.com --password s3cret"""
    if not force:
        _check_peers(app, address)
    pw = None if no_password else _read_password(password, password_stdin)
    obj = app.ops.account_add(address, pw, real_name)
    # The mailboxes now: INBOX, the special-use folders and the domain's template.
    app.mailstore.ensure_account(obj.domain, obj.name)
    click.echo(f"account {obj.address} added")


@account.command("list")
@click.option("--domain", "domain_name", help="Only this domain.")
@json_option
@pass_app
@handle_errors
def account_list(app: App, domain_name: str | None, as_json: bool) -> None:
    """List accounts.  Example: waypost account list --domain client1.com"""
    rows = [_object_row(o) for o in app.directory.list_objects(domain_name, "account")]
    emit(app, rows, ["address", "real_name", "enabled", "has_password"], as_json, "Accounts")


@account.command("set")
@click.argument("address")
@click.option("--name", "real_name", help="The user's real name.")
@click.option("--enable/--disable", "enabled", default=None, help="Allow or refuse mail and logins.")
@click.option("--atrn-domain", "atrn", multiple=True,
              help="A domain this account may release with ATRN (repeatable; replaces the list).")
@click.option("--no-atrn-domains", is_flag=True, help="Clear the ATRN domain list.")
@click.option("--forward", "forward", default=None, metavar="ADDRESS", help="Forward this account's mail to ADDRESS.")
@click.option("--keep-copy/--no-keep-copy", "keep_copy", default=None, help="With --forward: keep a copy here too.")
@click.option("--no-forward", is_flag=True, help="Stop forwarding.")
@click.option("--right", "rights", multiple=True, type=click.Choice(["AllUsers", "CanAccessMailboxes"]),
              help="Administrator right (repeatable; replaces the list): AllUsers = every right on every mailbox; "
                   "CanAccessMailboxes = every right on the mailboxes of the account's domain.")
@click.option("--no-rights", is_flag=True, help="Take every administrator right away.")
@click.option("--admin-domain", "admin_domains", multiple=True, metavar="DOMAIN",
              help="Make the account a domain administrator of DOMAIN on the admin pages and the API "
                   "(repeatable; replaces the list).")
@click.option("--no-admin-domains", is_flag=True, help="The account administers no domain.")
@click.option("--send-as", "send_as", multiple=True, metavar="ADDRESS",
              help="Another address (a group, a shared account; *@domain for a whole domain) this account may use "
                   "as its sender (repeatable; replaces the list).")
@click.option("--no-send-as", is_flag=True, help="Clear the send-as list.")
@click.option("--quota", "quota_storage", metavar="SIZE|unlimited|default",
              help="Mailbox storage limit: octets, or 500M, 2G; unlimited; default (the domain's).")
@click.option("--quota-messages", "quota_messages", metavar="N|unlimited|default",
              help="Limit of messages in the account's mailboxes.")
@pass_app
@handle_errors
def account_set(app: App, address: str, real_name: str | None, enabled: bool | None, atrn: tuple[str, ...],
                no_atrn_domains: bool, forward: str | None, keep_copy: bool | None, no_forward: bool,
                rights: tuple[str, ...], no_rights: bool, admin_domains: tuple[str, ...], no_admin_domains: bool,
                send_as: tuple[str, ...], no_send_as: bool,
                quota_storage: str | None, quota_messages: str | None) -> None:
    """Change an account.  Example: waypost account set info@client1.com --forward info@home.example --keep-copy"""
    changes: dict[str, Any] = {}
    if quota_storage is not None or quota_messages is not None:
        from .quota import quota_changes

        changes.update(quota_changes(app, quota_storage, quota_messages, for_domain=False))
    if send_as or no_send_as:
        changes["send_as"] = None if no_send_as else list(send_as)
    if rights or no_rights:
        changes["rights"] = None if no_rights else list(rights)
    if admin_domains or no_admin_domains:
        changes["admin_domains"] = None if no_admin_domains else list(admin_domains)
    if forward is not None:
        changes["forward"] = forward
    if no_forward:
        changes["forward"] = None
        changes["keep_copy"] = None
    if keep_copy is not None:
        changes["keep_copy"] = keep_copy
    if atrn or no_atrn_domains:
        changes["atrn_domains"] = [] if no_atrn_domains else list(atrn)
    if real_name is not None:
        changes["real_name"] = real_name
    if enabled is not None:
        changes["enabled"] = enabled
    if not changes:
        fail("nothing to change (see --help)")
    obj = app.ops.account_set(address, **changes)
    click.echo(f"account {obj.address} changed")


@account.command("passwd")
@click.argument("address")
@click.option("--password", help="The new password (prompted for when not given).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--cram-md5", is_flag=True,
              help="Also keep it sealed for CRAM-MD5 (needed by ODMR clients such as fetchmail).")
@pass_app
@handle_errors
def account_passwd(app: App, address: str, password: str | None, password_stdin: bool, cram_md5: bool) -> None:
    """Set an account's password.  Example: waypost account passwd info@client1.com"""
    pw = _read_password(password, password_stdin)
    obj = app.ops.account_passwd(address, pw, cram_md5=cram_md5)
    click.echo(f"password of {obj.address} changed")


@account.command("remove")
@click.argument("address")
@pass_app
@handle_errors
def account_remove(app: App, address: str) -> None:
    """Remove an account and its aliases.  Its mail files stay on disk, moved aside to
    mail/DOMAIN/.removed.NAME.TIME: an account made later under the name starts empty.
    If the command is killed midway, the account is still there: run it again.
    Example: waypost account remove info@client1.com"""
    obj = app.ops.account_remove(address)
    click.echo(f"account {obj.address} removed")


# -- alias ----------------------------------------------------------------------------

@click.group()
def alias() -> None:
    """Aliases: other names of an account in the same domain.

    Example: waypost alias add sales@client1.com info
    """


@alias.command("add")
@click.argument("address")
@click.argument("account_name", metavar="ACCOUNT")
@pass_app
@handle_errors
def alias_add(app: App, address: str, account_name: str) -> None:
    """Make ADDRESS another name of ACCOUNT.  Example: waypost alias add sales@client1.com info"""
    obj = app.ops.alias_add(address, account_name)
    click.echo(f"alias {obj.address} -> {obj.data['target']}@{obj.domain} added")


@alias.command("list")
@click.option("--domain", "domain_name", help="Only this domain.")
@json_option
@pass_app
@handle_errors
def alias_list(app: App, domain_name: str | None, as_json: bool) -> None:
    """List aliases.  Example: waypost alias list --json"""
    rows = [_object_row(o) for o in app.directory.list_objects(domain_name, "alias")]
    emit(app, rows, ["address", "target"], as_json, "Aliases")


@alias.command("remove")
@click.argument("address")
@pass_app
@handle_errors
def alias_remove(app: App, address: str) -> None:
    """Remove an alias.  Example: waypost alias remove sales@client1.com"""
    app.ops.alias_remove(address)
    click.echo(f"alias {address} removed")


# -- forwarder ------------------------------------------------------------------------

@click.group()
def forwarder() -> None:
    """Forwarders: a name in a local domain whose mail goes to another address.

    Example: waypost forwarder add boss@client1.com boss@gmail.example
    """


@forwarder.command("add")
@click.argument("address")
@click.argument("target")
@pass_app
@handle_errors
def forwarder_add(app: App, address: str, target: str) -> None:
    """Create a forwarder.  Example: waypost forwarder add boss@client1.com boss@other.example"""
    obj = app.ops.forwarder_add(address, target)
    click.echo(f"forwarder {obj.address} -> {target} added")


@forwarder.command("list")
@click.option("--domain", "domain_name", help="Only this domain.")
@json_option
@pass_app
@handle_errors
def forwarder_list(app: App, domain_name: str | None, as_json: bool) -> None:
    """List forwarders.  Example: waypost forwarder list"""
    rows = [_object_row(o) for o in app.directory.list_objects(domain_name, "forwarder")]
    emit(app, rows, ["address", "target"], as_json, "Forwarders")


@forwarder.command("set")
@click.argument("address")
@click.argument("target")
@pass_app
@handle_errors
def forwarder_set(app: App, address: str, target: str) -> None:
    """Point a forwarder elsewhere.  Example: waypost forwarder set boss@client1.com boss@new.example"""
    obj = app.ops.forwarder_set(address, target)
    click.echo(f"forwarder {obj.address} -> {target}")


@forwarder.command("remove")
@click.argument("address")
@pass_app
@handle_errors
def forwarder_remove(app: App, address: str) -> None:
    """Remove a forwarder.  Example: waypost forwarder remove boss@client1.com"""
    app.ops.forwarder_remove(address)
    click.echo(f"forwarder {address} removed")


# -- group ----------------------------------------------------------------------------

@click.group()
def group() -> None:
    """Groups: mail to the group goes to every member.

    Example: waypost group add staff@client1.com --member info --member bob@other.example
    """


@group.command("add")
@click.argument("address")
@click.option("--member", "members", multiple=True, help="A member address; a bare name is in the group's domain.")
@click.option("--name", "real_name", default="", help="A descriptive name.")
@click.option("--shared", is_flag=True, help="Domain sharing: posts are also copied to every sharing peer.")
@pass_app
@handle_errors
def group_add(app: App, address: str, members: tuple[str, ...], real_name: str, shared: bool) -> None:
    """Create a group.  Example: waypost group add staff@client1.com --member info --member bob"""
    obj = app.ops.group_add(address, members, real_name, shared)
    click.echo(f"group {obj.address} added with {len(obj.data['members'])} members")


@group.command("list")
@click.option("--domain", "domain_name", help="Only this domain.")
@json_option
@pass_app
@handle_errors
def group_list(app: App, domain_name: str | None, as_json: bool) -> None:
    """List groups.  Example: waypost group list --json"""
    rows = [_object_row(o) for o in app.directory.list_objects(domain_name, "group")]
    emit(app, rows, ["address", "real_name", "members"], as_json, "Groups")


@group.command("set")
@click.argument("address")
@click.option("--add", "add", multiple=True, help="Add a member (repeatable).")
@click.option("--remove", "remove", multiple=True, help="Remove a member (repeatable).")
@pass_app
@handle_errors
def group_set(app: App, address: str, add: tuple[str, ...], remove: tuple[str, ...]) -> None:
    """Change a group's members.  Example: waypost group set staff@client1.com --add carol --remove bob"""
    if not add and not remove:
        fail("nothing to change (see --help)")
    obj = app.ops.group_set(address, add, remove)
    click.echo(f"group {obj.address}: {', '.join(obj.data['members']) or '(no members)'}")


@group.command("remove")
@click.argument("address")
@pass_app
@handle_errors
def group_remove(app: App, address: str) -> None:
    """Remove a group.  Example: waypost group remove staff@client1.com"""
    app.ops.group_remove(address)
    click.echo(f"group {address} removed")


def register(cli: click.Group) -> None:
    for g in (domain, account, alias, forwarder, group):
        cli.add_command(g)
