"""``waypost dkim generate|list|activate|deactivate|remove``, ``waypost mailauth check``
and ``waypost dns DOMAIN``: DKIM keys, verdicts explained, records to publish."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from ..mailauth import ALGORITHMS, Lookup
from ..mailauth.keys import signing_key
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["dkim", "mailauth", "dns_command"]

#: Largest message file ``mailauth check`` reads.
MAX_CHECK_FILE = 64 * 1024 * 1024


def zone_line(name: str, value: str) -> str:
    """A zone-file TXT line; a value over 255 octets is split into several strings
    (RFC 6376 §3.6.2.2: they are joined without a separator)."""
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]
    return f'{name}. IN TXT ( ' + " ".join(f'"{c}"' for c in chunks) + " )"


@click.group()
def dkim() -> None:
    """DKIM signing keys of the local domains (RFC 6376, RFC 8463).  The active key
    activated last signs the domain's outgoing mail.  Example: waypost dkim generate example.com"""


@dkim.command("generate")
@click.argument("domain")
@click.option("--selector", default=None, help="The selector (default: wpYYYYMMDD plus r or e).")
@click.option("--algorithm", type=click.Choice(sorted(ALGORITHMS)), default="rsa", show_default=True,
              help="rsa (2048 bits, rsa-sha256) or ed25519 (ed25519-sha256, RFC 8463).")
@click.option("--inactive", is_flag=True,
              help="Do not sign with it yet (publish its record first, then: waypost dkim activate).")
@json_option
@pass_app
@handle_errors
def dkim_generate(app: App, domain: str, selector: str | None, algorithm: str, inactive: bool, as_json: bool) -> None:
    """Make a key for DOMAIN and print the DNS TXT record to publish.

    Example: waypost dkim generate example.com --selector mail2026 --algorithm ed25519
    """
    key = app.ops.dkim_generate(domain, selector, algorithm, inactive)
    if as_json:
        click.echo(json.dumps({"domain": key["domain"], "selector": key["selector"], "algorithm": algorithm,
                               "active": not inactive, "name": key["name"], "type": "TXT", "value": key["value"]},
                              indent=2))
        return
    click.echo(f"DKIM key {key['selector']} for {key['domain']} ({algorithm}, "
               f"{'inactive' if inactive else 'signing from now on'}).")
    click.echo("Publish this record:")
    click.echo(zone_line(key["name"], key["value"]))


@dkim.command("list")
@click.argument("domain", required=False)
@json_option
@pass_app
@handle_errors
def dkim_list(app: App, domain: str | None, as_json: bool) -> None:
    """The keys (all domains, or DOMAIN's) and which one signs.  Example: waypost dkim list example.com"""
    rows = [{k: v for k, v in r.items() if k not in ("name", "type", "value")}
            | {"record": f"{r['name']} TXT {r['value']}"} for r in app.ops.dkim_list(domain)]
    emit(app, rows, ["domain", "selector", "algorithm", "created", "state"], as_json, title="DKIM keys")


@dkim.command("activate")
@click.argument("domain")
@click.argument("selector")
@pass_app
@handle_errors
def dkim_activate(app: App, domain: str, selector: str) -> None:
    """Make SELECTOR's key the one that signs DOMAIN's mail (after its record is published).
    Example: waypost dkim activate example.com mail2026"""
    key = app.ops.dkim_activate(domain, selector)
    click.echo(f"{key['domain']}: mail is signed with selector {key['selector']} from now on")


@dkim.command("deactivate")
@click.argument("domain")
@click.argument("selector")
@pass_app
@handle_errors
def dkim_deactivate(app: App, domain: str, selector: str) -> None:
    """Stop signing with SELECTOR's key (keep it, and its record, for mail already sent).
    Example: waypost dkim deactivate example.com mail2025"""
    key = app.ops.dkim_activate(domain, selector, active=False)
    now = signing_key(app.db, key["domain"])
    click.echo(f"{key['domain']}: {key['selector']} no longer signs; "
               + (f"{now.selector} signs" if now else "nothing signs now"))


@dkim.command("remove")
@click.argument("domain")
@click.argument("selector")
@pass_app
@handle_errors
def dkim_remove(app: App, domain: str, selector: str) -> None:
    """Delete a key (remove its DNS record a few days later: mail in transit still needs it).
    Example: waypost dkim remove example.com mail2025"""
    key = app.ops.dkim_remove(domain, selector)
    click.echo(f"removed DKIM key {key['selector']} of {key['domain']}")


@click.group()
def mailauth() -> None:
    """Inbound mail authentication verdicts (SPF, DKIM, DMARC).  Example:
    waypost mailauth check msg.eml --client-ip 192.0.2.1 --helo mx.example.net --mail-from a@example.net"""


@mailauth.command("check")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--client-ip", required=True, help="The address the message came from.")
@click.option("--helo", default="", help="The name the client gave in HELO/EHLO.")
@click.option("--mail-from", default="", help="The MAIL FROM address (empty: the null sender).")
@json_option
@pass_app
@handle_errors
def mailauth_check(app: App, file: Path, client_ip: str, helo: str, mail_from: str, as_json: bool) -> None:
    """Check a message (FILE, '-' for standard input) as if it had just arrived, print
    each step and the Authentication-Results field it would get.

    Example: waypost mailauth check msg.eml --client-ip 192.0.2.1 --helo mx.example.net --mail-from a@example.net
    """
    import ipaddress

    from ..mailauth.verdict import check_message

    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        fail(f"--client-ip: {client_ip!r} is not an IP address")
    data = sys.stdin.buffer.read(MAX_CHECK_FILE + 1) if str(file) == "-" else _read(file)
    if len(data) > MAX_CHECK_FILE:
        fail(f"{file}: larger than {MAX_CHECK_FILE} octets")
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    verdict = asyncio.run(check_message(app.settings, data, client_ip, helo, mail_from.strip("<>")))
    if as_json:
        click.echo(json.dumps(verdict.to_dict(), indent=2))
        return
    for n, line in enumerate(verdict.trace, 1):
        click.echo(f"{n:>3}. {line}")
    click.echo(f"({verdict.dns_queries} DNS queries)")
    click.echo(verdict.header.replace("\r\n", "\n"), nl=False)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(MAX_CHECK_FILE + 1)
    except OSError as e:
        fail(f"{path}: {e.strerror}")
        raise


@click.command("dns")
@click.argument("domain")
@json_option
@pass_app
@handle_errors
def dns_command(app: App, domain: str, as_json: bool) -> None:
    """Every DNS record DOMAIN should publish (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
    autoconfiguration SRV) and what DNS answers now: ok, missing, different, error.
    Exit status 1 when one is not ok.

    Example: waypost dns example.com
    """
    from ..mailauth.publish import check_records

    name, expected = app.ops.dns_expected(domain)
    checked = asyncio.run(check_records(Lookup(app.settings), expected))
    rows = [c.to_dict() for c in checked]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        emit(app, [dict(r, found="; ".join(c.found)) for r, c in zip(rows, checked)],
             ["name", "type", "status", "expected", "found"], False, title=f"DNS records of {name}")
    if any(c.status != "ok" for c in checked):
        sys.exit(1)
