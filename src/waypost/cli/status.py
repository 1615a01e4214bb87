"""``waypost status``: the figures of ``/metrics`` at a glance, read from the same place
(the workers' files under ``DATA/run/metrics`` and the queue in the database)."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.table import Table

from .. import metrics
from .common import App, handle_errors, json_option, pass_app

__all__ = ["status"]

#: What each sample is called in the table, in the order shown.
_FIGURES = (
    ("waypost_messages_received_total", "messages received"),
    ("waypost_recipients_delivered_total", "recipients delivered"),
    ("waypost_recipients_deferred_total", "deliveries deferred"),
    ("waypost_recipients_bounced_total", "recipients bounced"),
    ("waypost_queue_messages", "queue: messages"),
    ("waypost_queue_recipients", "queue: recipients"),
    ("waypost_queue_oldest_age_seconds", "queue: oldest (s)"),
    ("waypost_connections_total", "connections"),
    ("waypost_logins_total", "logins"),
    ("waypost_login_failures_total", "failed logins"),
    ("waypost_spool_flushes_total", "spool flushes"),
    ("waypost_spool_group_commit_size_sum", "messages in those flushes"),
    ("waypost_minger_lookups_total", "Minger look-ups"),
    ("waypost_minger_cache_hits_total", "Minger cache hits"),
    ("waypost_worker_resident_memory_bytes", "worker memory (MiB)"),
)


def _samples(app: App) -> list[dict[str, Any]]:
    out = []
    for family in metrics.read_families(metrics.metrics_dir(app.settings.data_dir), app.db):
        for s in family.samples:
            out.append({"name": s.name, "labels": dict(s.labels), "value": s.value})
    return out


@click.command("status")
@json_option
@pass_app
@handle_errors
def status(app: App, as_json: bool) -> None:
    """The server at a glance: messages received, delivered, deferred and bounced,
    the queue, connections and logins, spool flushes, Minger look-ups and each worker's
    memory; the counts are since the server started.  Works while the server runs, and
    says so when it does not (the queue figures are read from the database all the same).

    Example: waypost status
    """
    directory = metrics.metrics_dir(app.settings.data_dir)
    samples = _samples(app)
    workers = metrics.live_workers(directory)
    running = bool(workers)
    if as_json:
        click.echo(json.dumps({"running": running, "workers": workers, "metrics": samples}, indent=2))
        return
    if running:
        click.echo(f"server running: {len(workers)} worker(s), pid {', '.join(map(str, workers))}")
    elif directory.is_dir() and any(directory.iterdir()):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(directory.stat().st_mtime))
        click.echo(f"server not running: counts below are from its last run (last counted {when})")
    else:
        click.echo("server not running: no counts (only the queue, read from the database)")
    table = Table(title="Waypost status")
    table.add_column("figure")
    table.add_column("by")
    table.add_column("value", justify="right")
    for name, label in _FIGURES:
        for s in samples:
            if s["name"] != name:
                continue
            labels = dict(s["labels"])
            value = s["value"]
            if name == "waypost_worker_resident_memory_bytes":
                if int(labels.get("pid", "0")) not in workers:
                    continue
                value = value / (1024 * 1024)
            by = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
            table.add_row(label, by, f"{value:.1f}" if value != int(value) else str(int(value)))
    app.console.print(table)
