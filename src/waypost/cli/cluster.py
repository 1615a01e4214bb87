"""``waypost cluster status``: the nodes and workers sharing this database, from the
heartbeats they write (table ``nodes``); ``waypost cluster release NODE``: give back
what a node that is gone for good held."""

from __future__ import annotations

import json
import time

import click

from ..queue import release_node
from ..queue.manager import NODE_HEARTBEAT
from .common import App, emit, fail, handle_errors, json_option, pass_app

__all__ = ["cluster"]

#: A worker not heard for this long is shown as gone (three missed heartbeats).
GONE_AFTER = 3 * NODE_HEARTBEAT


@click.group()
def cluster() -> None:
    """Several Waypost nodes on one database.  Example: waypost cluster status"""


@cluster.command("status")
@json_option
@pass_app
@handle_errors
def status(app: App, as_json: bool) -> None:
    """Every worker seen (its node, listeners, load, leases held, last heartbeat); a
    worker silent for three heartbeats is "gone" (its leases run out for the others).

    Example: waypost cluster status --json
    """
    now = time.time()
    rows = []
    for n in app.db.node_list(now):
        age = max(0.0, now - n.seen)
        rows.append({"node": n.node, "worker": n.worker, "state": "up" if age <= GONE_AFTER else "gone",
                     "addresses": " ".join(n.addresses), "load": round(n.load, 2), "leases": n.leases,
                     "seen": f"{age:.0f}s ago", "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(n.started))})
    emit(app, rows, ["node", "worker", "state", "addresses", "load", "leases", "seen"], as_json, title="Workers")
    if not as_json:
        nodes = {r["node"] for r in rows if r["state"] == "up"}
        click.echo(f"{len(nodes)} node(s) up, {sum(r['state'] == 'up' for r in rows)} worker(s)")


@cluster.command("release")
@click.argument("node")
@click.option("--force", is_flag=True,
              help="Release even though a worker of NODE was heard lately, or none ever was.")
@json_option
@pass_app
@handle_errors
def release(app: App, node: str, force: bool, as_json: bool) -> None:
    """Give back what NODE (its server.hostname), gone for good, held: first record
    what its delivered-journals say its next hops accepted, then release every queue
    lease of its workers (the other nodes deliver its messages now, not after
    queue.lease), then forget its heartbeats.  Refused while a worker of NODE was heard
    in the last 30 seconds (it may be alive: two nodes could deliver one recipient)
    unless --force.

    Example: waypost cluster release mail-c.example.com
    """
    now = time.time()
    workers = [w for w in app.db.node_list(now) if w.node == node]
    alive = [w.worker for w in workers if now - w.seen <= GONE_AFTER]
    if alive and not force:
        fail(f"node {node} is up ({len(alive)} worker(s) heard in the last {GONE_AFTER:.0f} s): "
             "stop it first, or --force if it is dead")
    if not workers and not force:
        known = sorted({w.node for w in app.db.node_list(now)})
        fail(f"no worker of node {node} has a heartbeat (nodes seen: {', '.join(known) or 'none'});"
             " --force to release its leases all the same")
    replayed, released, forgotten = release_node(app.settings, app.db, node, now)
    result = {"node": node, "replayed": replayed, "released": released, "workers_forgotten": forgotten}
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"node {node}: {replayed} delivery(ies) recorded from its journal, {released} lease(s)"
                   f" given back, {forgotten} worker heartbeat(s) forgotten")
