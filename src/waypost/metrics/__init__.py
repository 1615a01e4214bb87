"""Metrics: what the workers count, read back by ``/metrics`` and ``waypost status``.

Workers are separate processes, so nothing is counted in memory that another process
would need: each worker writes its counters to files of its own under
``DATA/run/metrics`` (prometheus_client's multiprocess mode: one memory-mapped file per
process and metric type), and a reader sums every file there.  A worker that dies leaves
its files behind, so its counts neither vanish nor count twice (a new worker has a new
pid and new files); only its memory gauge goes (``worker_died``).  ``serve`` empties
the directory when it starts: counters begin at zero with each start, as Prometheus
expects of a restarted process.

The queue figures are not counted: they are read from the database when asked
(``QueueCollector``), so every worker and ``waypost status`` see the same numbers.

Nothing here counts until ``start_worker`` was called in the process: the CLI, the
unit tests and the supervisor count nothing, and every counting function costs one
``None`` check there.  Counting never raises into the caller's work.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from ..db import Database

__all__ = [
    "METRICS_DIR",
    "QueueCollector",
    "connection",
    "login",
    "metrics_dir",
    "live_workers",
    "minger_cache_hit",
    "minger_lookup",
    "outcome",
    "read_families",
    "received",
    "render",
    "report_search_cache",
    "reset",
    "spool_flush",
    "start_worker",
    "target_kind",
    "update_memory",
    "worker_died",
]

log = logging.getLogger("waypost.metrics")

#: Under the data directory: the workers' metric files.
METRICS_DIR = "run/metrics"

#: Sizes of one group commit (messages made durable by one flush).
_COMMIT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def metrics_dir(data_dir: Path) -> Path:
    return data_dir / METRICS_DIR


def reset(directory: Path) -> None:
    """Start afresh (``serve``, before any worker): the files of a previous run go."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(mode=0o700, exist_ok=True)
    directory.mkdir(mode=0o700)


@dataclass(slots=True)
class _Metrics:
    received: Any
    delivered: Any
    deferred: Any
    bounced: Any
    connections: Any
    logins: Any
    login_failures: Any
    spool_flushes: Any
    group_commit: Any
    minger_lookups: Any
    minger_cache_hits: Any
    memory: Any
    search_cache: Any


_m: _Metrics | None = None
#: (metric name, label values) -> the labelled child of ``_m``'s metric: ``labels()``
#: takes a lock and builds its key at every call, a few times per message.  Emptied
#: whenever ``_m`` is made again.
_children: dict[tuple[str, tuple[str, ...]], Any] = {}


def start_worker(directory: Path) -> None:
    """Count from now on in this process, into ``directory`` (made by ``reset``)."""
    global _m
    from prometheus_client import Counter, Gauge, Histogram, values

    _children.clear()

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # The value class is chosen when prometheus_client is imported, from the variable
    # above; set here instead, so that only a worker writes files.
    values.ValueClass = values.MultiProcessValue()
    reg = None  # not registered anywhere: readers collect the files (read_families)
    _m = _Metrics(
        received=Counter("waypost_messages_received", "Messages accepted into the queue, by the listener "
                         "(or source: local, dsn, sieve) they came from.", ["listener"], registry=reg),
        delivered=Counter("waypost_recipients_delivered", "Recipients delivered, by target kind "
                          "(local, mx, host).", ["target_kind"], registry=reg),
        deferred=Counter("waypost_recipients_deferred", "Delivery attempts that failed temporarily "
                         "(retried later), by target kind.", ["target_kind"], registry=reg),
        bounced=Counter("waypost_recipients_bounced", "Recipients given up (reason failed: a permanent "
                        "error; expired: too long in the queue), by target kind.", ["target_kind", "reason"],
                        registry=reg),
        connections=Counter("waypost_connections", "Connections accepted, by listener.", ["listener"],
                            registry=reg),
        logins=Counter("waypost_logins", "Successful logins, by protocol.", ["proto"], registry=reg),
        login_failures=Counter("waypost_login_failures", "Failed logins, by protocol and reason "
                               "(credentials, blocked).", ["proto", "reason"], registry=reg),
        spool_flushes=Counter("waypost_spool_flushes", "Spool flushes (group commits).", registry=reg),
        group_commit=Histogram("waypost_spool_group_commit_size", "Messages made durable by one spool flush.",
                               buckets=_COMMIT_BUCKETS, registry=reg),
        minger_lookups=Counter("waypost_minger_lookups", "Domain Sharing look-ups sent to peers by Minger, "
                               "by result (found, not_found, error).", ["result"], registry=reg),
        minger_cache_hits=Counter("waypost_minger_cache_hits", "Domain Sharing addresses answered from the "
                                  "cache of positive answers, without a Minger look-up.", registry=reg),
        memory=Gauge("waypost_worker_resident_memory_bytes", "Resident memory (RSS) of each live worker.",
                     multiprocess_mode="liveall", registry=reg),
        search_cache=Gauge("waypost_imap_search_cache_bytes", "Octets the IMAP SEARCH caches of each live worker "
                           "hold (headers and field strings; imap.search_cache bounds them).",
                           multiprocess_mode="liveall", registry=reg),
    )
    update_memory()


def worker_died(directory: Path, pid: int) -> None:
    """A worker is gone: its memory gauge goes; its counters stay (see the module doc)."""
    from prometheus_client import multiprocess

    try:
        multiprocess.mark_process_dead(pid, str(directory))
    except OSError as e:  # pragma: no cover - the directory went away under us
        log.warning("event=metrics-error pid=%d error=%r", pid, e)


def _count(what: str, *labels: str, amount: float = 1.0) -> None:
    m = _m
    if m is None:
        return
    try:
        child = _children.get((what, labels))
        if child is None:
            metric = getattr(m, what)
            child = _children[(what, labels)] = metric.labels(*labels) if labels else metric
        child.inc(amount)
    except Exception as e:  # a full disk must not stop mail
        log.warning("event=metrics-error metric=%s error=%r", what, e)


def received(listener: str) -> None:
    _count("received", listener)


def target_kind(target: str) -> str:
    """A queue target as a label: local, mx (a domain's MX) or host (a named next hop)."""
    if target == "local":
        return "local"
    if target.startswith("mx:"):
        return "mx"
    return "host"


def outcome(status: str, target: str) -> None:
    """One recipient's delivery attempt: delivered, deferred, failed or expired."""
    kind = target_kind(target)
    if status == "delivered":
        _count("delivered", kind)
    elif status == "deferred":
        _count("deferred", kind)
    else:
        _count("bounced", kind, status)


def connection(listener: str) -> None:
    _count("connections", listener)


def login(proto: str, ok: bool, reason: str = "") -> None:
    if ok:
        _count("logins", proto)
    else:
        _count("login_failures", proto, reason or "credentials")


def spool_flush(messages: int) -> None:
    m = _m
    if m is None:
        return
    try:
        m.spool_flushes.inc()
        m.group_commit.observe(messages)
    except Exception as e:
        log.warning("event=metrics-error metric=spool error=%r", e)


def minger_lookup(answers: dict[str, int | str]) -> None:
    """One look-up of an address at the peers: found (a peer has it), not_found, error
    (no peer answered)."""
    if any(a in (4, 5) for a in answers.values()):
        result = "found"
    elif any(isinstance(a, int) for a in answers.values()):
        result = "not_found"
    else:
        result = "error"
    _count("minger_lookups", result)


def minger_cache_hit() -> None:
    _count("minger_cache_hits")


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: What this worker's IMAP SEARCH caches hold, in octets (``report_search_cache``).
_search_cache_held: Callable[[], int] | None = None


def report_search_cache(held: Callable[[], int]) -> None:
    """``update_memory`` reports ``held()`` as this worker's SEARCH cache size (the
    IMAP service hands it over: this package imports no listener)."""
    global _search_cache_held
    _search_cache_held = held


def update_memory() -> None:
    """This worker's resident memory and SEARCH caches, now (a worker calls it every
    few seconds and before it answers a scrape)."""
    m = _m
    if m is None:
        return
    try:
        m.memory.set(_rss())
        if _search_cache_held is not None:
            m.search_cache.set(_search_cache_held())
    except Exception as e:
        log.warning("event=metrics-error metric=memory error=%r", e)


def live_workers(directory: Path) -> list[int]:
    """The pids of the workers counting into ``directory`` that are alive now (each
    has a memory gauge file until it dies and the supervisor removes it)."""
    out = []
    for path in directory.glob("gauge_liveall_*.db") if directory.is_dir() else ():
        try:
            pid = int(path.stem.rpartition("_")[2])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            continue
        except PermissionError:  # alive, as another user (server.user)
            pass
        out.append(pid)
    return sorted(out)


# -- reading -------------------------------------------------------------------------


class QueueCollector:
    """The queue figures, read from the database when collected."""

    def __init__(self, db: "Database", now: float | None = None) -> None:
        self.db = db
        self.now = now

    def collect(self) -> Iterator["Metric"]:
        from prometheus_client.core import GaugeMetricFamily

        stats = self.db.queue_stats()
        now = self.now if self.now is not None else time.time()
        yield GaugeMetricFamily("waypost_queue_messages", "Messages in the queue with a recipient still to deliver.",
                                value=stats.messages)
        g = GaugeMetricFamily("waypost_queue_recipients", "Recipients waiting in the queue, by state.",
                              labels=["state"])
        g.add_metric(["waiting"], stats.recipients - stats.held)
        g.add_metric(["held"], stats.held)
        yield g
        yield GaugeMetricFamily("waypost_queue_oldest_age_seconds",
                                "Age of the oldest message in the queue (0 when it is empty).",
                                value=max(0.0, now - stats.oldest) if stats.oldest else 0.0)


def _registry(directory: Path, db: "Database | None") -> "CollectorRegistry":
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    class _Collector(MultiProcessCollector):  # type: ignore[misc]
        def collect(self) -> Iterable["Metric"]:
            # A worker that is starting creates its file empty and sizes it a moment
            # later: such a file holds no value yet, and prometheus_client fails on it.
            files = []
            for f in glob.glob(os.path.join(self._path, "*.db")):
                try:
                    if os.stat(f).st_size > 0:
                        files.append(f)
                except FileNotFoundError:  # a dead worker's file, removed since the listing
                    continue
            return self.merge(files, accumulate=True)  # type: ignore[no-any-return]

    registry = CollectorRegistry(auto_describe=False)
    if directory.is_dir():
        _Collector(registry, path=str(directory))
    if db is not None:
        registry.register(QueueCollector(db))  # type: ignore[arg-type]
    return registry


def render(directory: Path, db: "Database | None") -> bytes:
    """Every metric in the Prometheus text format (what ``/metrics`` answers)."""
    from prometheus_client import generate_latest

    update_memory()
    for attempt in range(3):
        try:
            return generate_latest(_registry(directory, db))
        except (FileNotFoundError, struct.error):
            # Workers come and go under the collector: a dead worker's live-gauge files
            # are removed (worker_died) between its listing of the directory and its
            # reading of them, and a new worker's file can still be empty: read again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def read_families(directory: Path, db: "Database | None") -> Iterable["Metric"]:
    """Every metric, as prometheus_client families (``waypost status``)."""
    return list(_registry(directory, db).collect())
