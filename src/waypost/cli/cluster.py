"""``waypost cluster status``: the nodes and workers sharing this database, from the
heartbeats they write (table ``nodes``)."""

from __future__ import annotations

import time

import click

from ..queue.manager import NODE_HEARTBEAT
from .common import App, emit, handle_errors, json_option, pass_app

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
