"""``waypost queue list|show|flush|delete``"""

from __future__ import annotations

import functools
import json
import json.encoder
import re
import sys
import time
from typing import Any, Callable

import click

from ..db import QUEUE_STATES, QueueEntry, QueueFilter
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["queue"]


def _when(t: float) -> str:
    if not t:
        return ""
    s = int(t)
    return f"{_minute(s - s % 60)}:{s % 60:02d}"  # time zones differ from UTC by whole minutes


@functools.lru_cache(maxsize=4096)
def _minute(t: int) -> str:  # a long listing has many entries of one minute: one strftime each
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _row(e: QueueEntry) -> dict[str, Any]:
    return {
        "id": e.msg_id,
        "sender": e.sender or "<>",
        "size": e.size,
        "created": _when(e.created),
        "recipients": e.recipients,
        "targets": e.targets,
        "held": e.held,
        "attempts": e.attempts,
        "next_attempt": _when(e.next_attempt),
        "last_reply": e.last_reply,
    }


_string = json.encoder.encode_basestring  # type: ignore[attr-defined]  # the C function where there is one


def _json_row(e: QueueEntry) -> str:
    """``json.dumps(_row(e))``, written out: a listing of 100,000 entries spends its
    time here, and a dict per entry for the general encoder costs twice as much."""
    return (f'{{"id": {_string(e.msg_id)}, "sender": {_string(e.sender or "<>")}, "size": {int(e.size)},'
            f' "created": "{_when(e.created)}", "recipients": [{", ".join(map(_string, e.recipients))}],'
            f' "targets": [{", ".join(map(_string, e.targets))}], "held": {"true" if e.held else "false"},'
            f' "attempts": {int(e.attempts)}, "next_attempt": "{_when(e.next_attempt)}",'
            f' "last_reply": {_string(e.last_reply)}}}')


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _age(text: str | None, option: str) -> float | None:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` in seconds."""
    if text is None:
        return None
    m = _AGE.match(text)
    if m is None:
        fail(f"{option}: expected an age such as 90s, 15m, 2h or 3d, not {text!r}")
    assert m is not None
    return float(m.group(1)) * _UNITS[m.group(2)]


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options that choose messages, shared by list and the bulk actions."""
    for opt in reversed([
        click.option("--target", help="Only this destination's queue (e.g. mx:example.net, local)."),
        click.option("--sender", help="Only this envelope sender (* is any text: *@example.com; <> for none)."),
        click.option("--recipient", help="Only messages waiting for this recipient (* is any text)."),
        click.option("--older-than", "older_than", metavar="AGE",
                     help="Only messages queued longer than AGE (90s, 15m, 2h, 3d)."),
        click.option("--newer-than", "newer_than", metavar="AGE", help="Only messages queued for less than AGE."),
        click.option("--state", type=click.Choice(QUEUE_STATES),
                     help="queued (waiting), held, deferred (tried before), active (being delivered)."),
    ]):
        f = opt(f)
    return f


def _filter(target: str | None, sender: str | None, recipient: str | None, older_than: str | None,
            newer_than: str | None, state: str | None) -> QueueFilter:
    now = time.time()
    older = _age(older_than, "--older-than")
    newer = _age(newer_than, "--newer-than")
    return QueueFilter(
        target=target, sender="" if sender == "<>" else sender, recipient=recipient, state=state,
        created_before=None if older is None else now - older, created_after=None if newer is None else now - newer,
    )


@click.group()
def queue() -> None:
    """The mail queue: what waits for delivery, and why.

    Example: waypost queue list
    """


@queue.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(min=0), help="At most this many messages.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many messages first.")
@json_option
@pass_app
def queue_list(app: App, target: str | None, sender: str | None, recipient: str | None, older_than: str | None,
               newer_than: str | None, state: str | None, limit: int | None, offset: int, as_json: bool) -> None:
    """List queued messages, oldest first, printed as they are read (any number).

    Example: waypost queue list --target mx:example.net --older-than 2h --limit 50
    """
    where = _filter(target, sender, recipient, older_than, newer_than, state)
    out = sys.stdout
    entries = app.db.queue_entries(where, limit=limit, offset=offset)
    chunk: list[str] = []  # written a few hundred lines at a time, never all at once
    if as_json:  # one JSON array, written as the entries are read
        chunk.append("[")
        for n, e in enumerate(entries):
            chunk.append(("\n" if not n else ",\n") + _json_row(e))
            if len(chunk) >= 500:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
        out.write("\n]\n")
        return
    # Whole ids, one line per message.
    chunk.append(f"{'id':<21} {'created':<19} {'size':>8}  sender -> recipients (targets) [state] last reply\n")
    count = 0
    for e in entries:
        count += 1
        state = "held" if e.held else ("deferred" if e.attempts else "queued")
        reply = e.last_reply.replace("\n", " ")
        chunk.append(f"{e.msg_id:<21} {_when(e.created):<19} {e.size:>8}  <{e.sender}> -> {', '.join(e.recipients)}"
                     f" ({', '.join(e.targets)}) [{state}] {reply}\n")
        if len(chunk) >= 500:
            out.write("".join(chunk))
            chunk.clear()
    chunk.append(f"({count} message(s))\n")
    out.write("".join(chunk))


def _choose(app: App, where: QueueFilter, everything: bool, what: str, yes: bool) -> int:
    """How many messages the filter chooses (``--all``: every one); asks first."""
    if where == QueueFilter() and not everything:
        fail("say which messages: an ID, --target/--sender/--recipient/--older-than/--newer-than/--state, or --all")
    n = app.db.queue_count(where)
    if n == 0:
        click.echo("no queued message matches")
        return 0
    if not yes and not click.confirm(f"{what} {n} queued message(s)?", default=False, err=True):
        fail("nothing done")
    return n


def bulk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(f)
    f = click.option("--all", "everything", is_flag=True, help="Every queued message.")(f)
    return filter_options(f)


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
    from ..queue.spool import read_spool_file  # here: the queue package is slow to import, list need not wait

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
@bulk_options
@pass_app
def queue_flush(app: App, msg_id: str | None, target: str | None, sender: str | None, recipient: str | None,
                older_than: str | None, newer_than: str | None, state: str | None, everything: bool,
                yes: bool) -> None:
    """Retry now: one message, the messages chosen by the options (after a count and a
    confirmation), or, with nothing given, everything.

    Example: waypost queue flush --target mx:example.net --older-than 1h --yes
    """
    where = _filter(target, sender, recipient, older_than, newer_than, state)
    if msg_id is not None or (where == QueueFilter(target=target) and not everything):
        n = app.db.queue_reschedule(time.time(), target=target, msg_id=msg_id)
    else:
        if not _choose(app, where, everything, "Retry now", yes):
            return
        n = app.db.queue_set_matching(where, time.time(), due=True)
    click.echo(f"{n} recipient(s) due now; a running server delivers them within queue.poll_interval")


@queue.command("hold")
@click.argument("domain", required=False)
@bulk_options
@pass_app
@handle_errors
def queue_hold(app: App, domain: str | None, target: str | None, sender: str | None, recipient: str | None,
               older_than: str | None, newer_than: str | None, state: str | None, everything: bool,
               yes: bool) -> None:
    """Hold Mail for Domains: keep DOMAIN's mail (now and to come) until ETRN, ATRN or
    ``queue release`` lets it go; or, with options instead of DOMAIN, hold the queued
    messages they choose (after a count and a confirmation).

    Example: waypost queue hold customer.example; waypost queue hold --older-than 1d --yes
    """
    if domain is None:
        where = _filter(target, sender, recipient, older_than, newer_than, state)
        if _choose(app, where, everything, "Hold", yes):
            n = app.ops.queue_hold_matching(where)
            click.echo(f"{n} queued recipient(s) now held; 'waypost queue release' with the same options lets them go")
        return
    from ..address import normalize_domain

    n = app.ops.queue_hold(domain)
    click.echo(f"holding mail for {normalize_domain(domain)} ({n} queued recipient(s) now held)")


@queue.command("release")
@click.argument("domain", required=False)
@bulk_options
@pass_app
@handle_errors
def queue_release(app: App, domain: str | None, target: str | None, sender: str | None, recipient: str | None,
                  older_than: str | None, newer_than: str | None, state: str | None, everything: bool,
                  yes: bool) -> None:
    """Stop holding DOMAIN's mail and deliver what waits now; or, with options instead
    of DOMAIN, release the held messages they choose.

    Example: waypost queue release customer.example; waypost queue release --all --yes
    """
    if domain is None:
        where = _filter(target, sender, recipient, older_than, newer_than, state or "held")
        if _choose(app, where, everything, "Release", yes):
            n = app.ops.queue_release_matching(where)
            click.echo(f"{n} recipient(s) released and due now")
        return
    from ..address import normalize_domain

    n = app.ops.queue_release(domain)
    click.echo(f"no longer holding mail for {normalize_domain(domain)}; {n} recipient(s) due now")


@queue.command("holds")
@json_option
@pass_app
def queue_holds(app: App, as_json: bool) -> None:
    """List the domains whose mail is held (Hold Mail for Domains).  Example: waypost queue holds"""
    rows = app.ops.queue_holds()
    emit(app, rows, ["domain", "messages"], as_json, "Held domains")


@queue.command("delete")
@click.argument("msg_ids", metavar="[ID]...", nargs=-1)
@bulk_options
@pass_app
@handle_errors
def queue_delete(app: App, msg_ids: tuple[str, ...], target: str | None, sender: str | None,
                 recipient: str | None, older_than: str | None, newer_than: str | None, state: str | None,
                 everything: bool, yes: bool) -> None:
    """Delete messages from the queue without a bounce: the IDs given, or the messages
    the options choose (after a count and a confirmation).

    Example: waypost queue delete 18C2F...A1; waypost queue delete --target mx:spam.example --yes
    """
    spool = app.settings.path(app.settings.storage.spool) / "queue"
    if not msg_ids:
        where = _filter(target, sender, recipient, older_than, newer_than, state)
        if not _choose(app, where, everything, "Delete", yes):
            return
        deleted = app.ops.queue_delete_matching(where, everything=everything)
        click.echo(f"deleted {deleted} message(s)")
        return
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
