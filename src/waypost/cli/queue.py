"""``waypost queue list|show|flush|delete``"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ..db import QueuedMessage
from ..queue.spool import read_spool_file
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["queue"]


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""


def _row(m: QueuedMessage) -> dict[str, Any]:
    waiting = [r for r in m.recipients if r.status == "queued"]
    return {
        "id": m.msg_id,
        "sender": m.sender or "<>",
        "size": m.size,
        "created": _when(m.created),
        "recipients": [r.address for r in waiting],
        "targets": sorted({r.target for r in waiting}),
        "held": any(r.held for r in waiting),
        "next_attempt": _when(min((r.next_attempt for r in waiting), default=0)),
        "last_reply": next((r.last_reply for r in waiting if r.last_reply), ""),
    }


@click.group()
def queue() -> None:
    """The mail queue: what waits for delivery, and why.

    Example: waypost queue list
    """


@queue.command("list")
@json_option
@pass_app
def queue_list(app: App, as_json: bool) -> None:
    """List queued messages.  Example: waypost queue list --json"""
    rows = [_row(m) for m in app.db.queue_list()]
    emit(app, rows, ["id", "sender", "size", "created", "recipients", "targets", "held", "next_attempt", "last_reply"],
         as_json, "Queued messages")


@queue.command("show")
@click.argument("msg_id", metavar="ID")
@click.option("--body", is_flag=True, help="Also print the message itself.")
@json_option
@pass_app
def queue_show(app: App, msg_id: str, body: bool, as_json: bool) -> None:
    """Show one queued message, recipient by recipient.  Example: waypost queue show 18C2F...A1"""
    m = app.db.queue_get(msg_id)
    if m is None:
        fail(f"no queued message {msg_id}")
    assert m is not None
    path = app.settings.path(app.settings.storage.spool) / "queue" / m.msg_id
    data = b""
    try:
        _env, data = read_spool_file(path)
    except (OSError, ValueError) as e:
        click.echo(f"warning: spool file {path}: {e}", err=True)
    info: dict[str, Any] = {
        "id": m.msg_id, "sender": m.sender, "size": m.size, "created": _when(m.created),
        "params": m.envelope.get("params", {}),
        "recipients": [
            {"address": r.address, "target": r.target, "status": r.status, "attempts": r.attempts,
             "next_attempt": _when(r.next_attempt), "last_reply": r.last_reply, "held": r.held,
             "notify": r.notify, "orcpt": r.orcpt}
            for r in m.recipients
        ],
    }
    if as_json:
        if body:
            info["message"] = data.decode("utf-8", "replace")
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    for key in ("id", "sender", "size", "created", "params"):
        click.echo(f"{key:>8}: {info[key]}")
    emit(app, info["recipients"], ["address", "target", "status", "attempts", "next_attempt", "last_reply"],
         False, "Recipients")
    if body:
        click.echo(data.decode("utf-8", "replace"))


@queue.command("flush")
@click.argument("msg_id", metavar="[ID]", required=False)
@click.option("--target", help="Only the queue of this destination (e.g. mx:example.com).")
@pass_app
def queue_flush(app: App, msg_id: str | None, target: str | None) -> None:
    """Retry now (all, one message, or one destination).  Example: waypost queue flush"""
    n = app.db.queue_reschedule(time.time(), target=target, msg_id=msg_id)
    click.echo(f"{n} recipient(s) due now; a running server delivers them within queue.poll_interval")


@queue.command("hold")
@click.argument("domain")
@pass_app
@handle_errors
def queue_hold(app: App, domain: str) -> None:
    """Hold Mail for Domains: keep DOMAIN's mail until ETRN or ATRN releases it.
    Example: waypost queue hold customer.example"""
    from ..address import normalize_domain
    from ..router.resolve import HOLD_KEY

    d = normalize_domain(domain)
    held = list(app.db.get_value(HOLD_KEY) or [])
    if d not in held:
        held.append(d)
        app.db.set_value(HOLD_KEY, sorted(held))
    n = app.db.queue_set_held(f"mx:{d}", True)
    click.echo(f"holding mail for {d} ({n} queued recipient(s) now held)")


@queue.command("release")
@click.argument("domain")
@pass_app
@handle_errors
def queue_release(app: App, domain: str) -> None:
    """Stop holding DOMAIN's mail and deliver what waits now.  Example: waypost queue release customer.example"""
    from ..address import normalize_domain
    from ..router.resolve import HOLD_KEY

    d = normalize_domain(domain)
    held = list(app.db.get_value(HOLD_KEY) or [])
    if d in held:
        held.remove(d)
        app.db.set_value(HOLD_KEY, held)
    n = app.db.queue_set_held(f"mx:{d}", False)
    app.db.queue_reschedule(time.time(), target=f"mx:{d}")
    click.echo(f"no longer holding mail for {d}; {n} recipient(s) due now")


@queue.command("holds")
@json_option
@pass_app
def queue_holds(app: App, as_json: bool) -> None:
    """List the domains whose mail is held (Hold Mail for Domains).  Example: waypost queue holds"""
    from ..router.resolve import HOLD_KEY

    targets = app.db.queue_targets()
    rows = [{"domain": d, "messages": targets.get(f"mx:{d}", 0)} for d in app.db.get_value(HOLD_KEY) or []]
    emit(app, rows, ["domain", "messages"], as_json, "Held domains")


@queue.command("delete")
@click.argument("msg_ids", metavar="ID...", nargs=-1, required=True)
@pass_app
@handle_errors
def queue_delete(app: App, msg_ids: tuple[str, ...]) -> None:
    """Delete messages from the queue without a bounce.  Example: waypost queue delete 18C2F...A1"""
    spool = app.settings.path(app.settings.storage.spool) / "queue"
    missing = 0
    for msg_id in msg_ids:
        if "/" in msg_id or msg_id.startswith("."):
            fail(f"bad queue id {msg_id!r}")
        if app.db.queue_delete(msg_id):
            try:
                (spool / msg_id).unlink()
            except FileNotFoundError:
                pass
            click.echo(f"deleted {msg_id}")
        else:
            missing += 1
            click.echo(f"no queued message {msg_id}", err=True)
    if missing:
        raise SystemExit(1)
