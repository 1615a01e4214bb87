"""TLS-RPT (RFC 8460): aggregate reports of our outbound TLS results to the domains
that ask for them (``_smtp._tls.<domain>`` TXT ``v=TLSRPTv1; rua=...``).

Theory of operation.  Every delivery under a policy (MTA-STS, DANE) reports each
session's outcome (``TLSPolicy.report``): "success", or an RFC 8460 §4.3 result type.
A worker counts them in memory by period (``tlsrpt.interval`` seconds, a day by
default, aligned on the epoch: UTC days) and appends its counts every
``FLUSH_EVERY`` seconds and at stop to its own file
``<spool>/tlsrpt/<period start>/<node>-<pid>.jsonl`` (no other process writes it, so
no lock is needed, and a shared spool gathers every node's counts).  Once a period
is over (and the last flushes are in), the first worker that creates
``<period>/claimed`` with O_EXCL sends that period's reports: one JSON report (§4)
per policy domain, gzip'ed, to each ``rua`` URI: ``mailto:`` as a multipart/report
message through our own queue (DKIM-signed like the other mail we make, §5.3),
``https:`` as a POST of ``application/tlsrpt+gzip`` (§5.4) over verified TLS.  A
report that cannot be sent is logged, not retried (a later period's report follows).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import gzip
import json
import logging
import os
import re
import socket
import ssl
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any, Awaitable, Callable

import dns.exception
import dns.resolver

from ..config import Settings
from ..delivery.mtasts import verified_context
from ..delivery.remote import TLSPolicy
from ..log import event

__all__ = ["TLSReporter", "parse_rua", "FLUSH_EVERY"]

log = logging.getLogger("waypost.tlsrpt")

#: Seconds between a worker's flushes of its counts (at most).
FLUSH_EVERY = 60.0
#: A period's reports are sent this long after it ended (the last flushes must be in).
GRACE = 5.0
#: Periods kept (their "claimed" markers) before they are removed.
KEEP_PERIODS = 14
#: Largest report sent (RFC 8460 §5.3 leaves it to the sender; a receiver may refuse more).
MAX_REPORT = 1 << 20
_RECORD = re.compile(r"^v=TLSRPTv1\s*;", re.IGNORECASE)

Key = tuple[str, str, tuple[str, ...], str]          # (policy domain, type, policy strings, mx host)


def parse_rua(text: str) -> list[str]:
    """RFC 8460 §3: ``v=TLSRPTv1; rua=URI[,URI]``; only mailto: and https: URIs."""
    if not _RECORD.match(text.strip()):
        return []
    for part in text.split(";")[1:]:
        key, _eq, value = part.strip().partition("=")
        if key.strip().lower() == "rua":
            return [u.strip() for u in value.split(",")
                    if u.strip().lower().startswith(("mailto:", "https://"))]
    return []


class TLSReporter:
    """One per worker."""

    def __init__(self, settings: Settings, root: Path, node: str, resolver: Any,
                 submit: Callable[..., Awaitable[str]], route: Callable[[str], list[Any]],
                 clock: Callable[[], float] = time.time) -> None:
        """``root``: the spool; ``resolver``: the delivery ``Resolver``; ``submit``:
        ``QueueManager.submit``; ``route(address)``: the recipients (with routes) of a
        message we make to ``address``, or [] when the router refuses it."""
        self.route = route
        self.settings = settings
        self.dir = root / "tlsrpt"
        self.name = f"{(node or socket.gethostname()).replace('/', '_')}-{os.getpid()}"
        self.resolver = resolver
        self.submit = submit
        self.clock = clock
        self.counts: dict[int, dict[Key, dict[str, Any]]] = defaultdict(dict)

    @property
    def interval(self) -> int:
        return self.settings.tlsrpt.interval

    # -- counting ---------------------------------------------------------------------

    def recorder(self, policy_domain: str) -> Callable[[TLSPolicy, str, str, str, str], None]:
        """The ``TLSPolicy.report`` of one delivery to ``policy_domain``."""

        def record(tls: TLSPolicy, host: str, ip: str, result: str, detail: str) -> None:
            if tls.source == "DANE":
                kind = "tlsa"
                records = (tls.dane or {}).get(host, [])
                strings = tuple(f"{r.usage} {r.selector} {r.mtype} {r.data.hex()}" for r in records)
                domain = host  # RFC 8460 §4.4: for DANE the policy domain is the TLSA base (the MX host)
            elif tls.source.startswith("MTA-STS"):
                kind = "sts"
                strings = tuple(line for line in tls.policy_text.replace("\r\n", "\n").split("\n") if line)
                domain = policy_domain
            else:
                return
            period = int(self.clock()) // self.interval * self.interval
            entry = self.counts[period].setdefault((domain, kind, strings, host),
                                                   {"success": 0, "failures": {}})
            if result == "success":
                entry["success"] += 1
            else:
                fkey = (result, ip, host)
                entry["failures"][fkey] = entry["failures"].get(fkey, 0) + 1

        return record

    def flush(self) -> None:
        """Append the counts to this worker's files (one per period) and forget them."""
        counts, self.counts = self.counts, defaultdict(dict)
        for period, entries in counts.items():
            folder = self.dir / str(period)
            folder.mkdir(parents=True, exist_ok=True)
            lines = [json.dumps({"domain": k[0], "type": k[1], "strings": list(k[2]), "mx": k[3],
                                 "success": v["success"],
                                 "failures": [[rt, ip, h, n] for (rt, ip, h), n in v["failures"].items()]})
                     for k, v in entries.items()]
            with open(folder / f"{self.name}.jsonl", "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())

    # -- sending ----------------------------------------------------------------------

    async def run(self) -> None:
        """Flush and send, until cancelled."""
        every = max(0.5, min(FLUSH_EVERY, self.interval / 4))
        try:
            while True:
                await asyncio.sleep(every)
                await asyncio.to_thread(self.flush)
                await self.send_due()
        finally:
            self.flush()

    def _claim(self, now: float) -> list[int]:
        """The periods that are over and that this worker now owns (O_EXCL claim)."""
        if not self.dir.is_dir():
            return []
        out = []
        for entry in sorted(self.dir.iterdir()):
            if not entry.name.isdigit():
                continue
            period = int(entry.name)
            if period + self.interval + GRACE > now:
                continue
            marker = entry / "claimed"
            if marker.exists():
                if period + self.interval * KEEP_PERIODS < now:
                    for f in entry.iterdir():
                        f.unlink(missing_ok=True)
                    entry.rmdir()
                continue
            try:
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            os.close(fd)
            out.append(period)
        return out

    def _load(self, period: int) -> dict[str, list[dict[str, Any]]]:
        """Every worker's counts of a period, summed, by policy domain."""
        folder = self.dir / str(period)
        total: dict[Key, dict[str, Any]] = {}
        for path in folder.glob("*.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    d = json.loads(line)
                    key = (d["domain"], d["type"], tuple(d["strings"]), d["mx"])
                except (ValueError, KeyError, TypeError):
                    continue
                entry = total.setdefault(key, {"success": 0, "failures": {}})
                entry["success"] += int(d["success"])
                for rt, ip, h, n in d["failures"]:
                    entry["failures"][(rt, ip, h)] = entry["failures"].get((rt, ip, h), 0) + int(n)
            path.unlink()
        by_domain: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (domain, kind, strings, mx), v in total.items():
            policy: dict[str, Any] = {"policy-type": kind, "policy-string": list(strings), "policy-domain": domain}
            if kind == "sts":
                policy["mx-host"] = [line.split(":", 1)[1].strip() for line in strings if line.startswith("mx:")]
            fails = [{"result-type": rt, "sending-mta-ip": self.settings.delivery.bind_address or "",
                      "receiving-mx-hostname": h, "receiving-ip": ip, "failed-session-count": n}
                     for (rt, ip, h), n in sorted(v["failures"].items())]
            for f in fails:
                for k in ("sending-mta-ip", "receiving-ip"):
                    if not f[k]:
                        del f[k]
            by_domain[domain].append({
                "policy": policy,
                "summary": {"total-successful-session-count": v["success"],
                            "total-failure-session-count": sum(f["failed-session-count"] for f in fails)},
                **({"failure-details": fails} if fails else {}),
            })
        return by_domain

    def report(self, domain: str, period: int, policies: list[dict[str, Any]]) -> dict[str, Any]:
        """RFC 8460 §4: the JSON report of one policy domain for one period."""
        s = self.settings
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(period))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(period + self.interval - 1))
        return {
            "organization-name": s.tlsrpt.organization or s.server.hostname,
            "date-range": {"start-datetime": start, "end-datetime": end},
            "contact-info": s.tlsrpt.contact or f"postmaster@{s.server.main_domain}",
            "report-id": f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(period))}.{uuid.uuid4().hex}"
                         f"@{s.server.hostname}",
            "policies": policies,
        }

    async def send_due(self) -> None:
        for period in await asyncio.to_thread(self._claim, self.clock()):
            by_domain = await asyncio.to_thread(self._load, period)
            for domain, policies in by_domain.items():
                try:
                    await self._send(domain, period, policies)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # one domain's trouble never stops the others
                    event(log, "tlsrpt-failed", level=logging.WARNING, domain=domain, error=str(e) or type(e).__name__)

    async def _send(self, domain: str, period: int, policies: list[dict[str, Any]]) -> None:
        try:
            answer = await self.resolver.dnspython.resolve(f"_smtp._tls.{domain}", "TXT", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            event(log, "tlsrpt-not-asked", level=logging.DEBUG, domain=domain)
            return
        except dns.exception.DNSException as e:
            event(log, "tlsrpt-failed", level=logging.WARNING, domain=domain, error=f"_smtp._tls look-up: {e}")
            return
        records = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        uris = [u for r in records for u in parse_rua(r)]
        if not uris:
            return
        report = self.report(domain, period, policies)
        body = gzip.compress(json.dumps(report, indent=1).encode("utf-8"))
        if len(body) > MAX_REPORT:
            event(log, "tlsrpt-failed", level=logging.WARNING, domain=domain, error=f"report over {MAX_REPORT} octets")
            return
        for uri in uris:
            if uri.lower().startswith("mailto:"):
                address = uri[7:].split("?", 1)[0]
                msg_id = await self.submit_report(address, domain, period, report, body)
                event(log, "tlsrpt-sent", domain=domain, to=uri, id=msg_id, report_id=report["report-id"])
            else:
                status = await self.post(uri, body)
                event(log, "tlsrpt-sent", domain=domain, to=uri, status=status, report_id=report["report-id"])

    async def submit_report(self, address: str, domain: str, period: int, report: dict[str, Any],
                            body: bytes) -> str:
        """RFC 8460 §5.3: a multipart/report (report-type="tlsrpt") with the gzip'ed JSON."""
        s = self.settings
        submitter = s.server.hostname
        sender = f"noreply-tlsrpt@{submitter}"
        boundary = f"tlsrpt-{uuid.uuid4().hex}"
        filename = f"{submitter}!{domain}!{period}!{period + self.interval - 1}.json.gz"
        encoded = base64.encodebytes(body).decode("ascii").replace("\n", "\r\n")
        text = (f"From: TLS reports <{sender}>\r\nTo: <{address}>\r\n"
                f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
                f"Subject: Report Domain: {domain} Submitter: {submitter} Report-ID: <{report['report-id']}>\r\n"
                f"TLS-Report-Domain: {domain}\r\nTLS-Report-Submitter: {submitter}\r\n"
                f"Message-ID: <{uuid.uuid4().hex}@{submitter}>\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\"\r\n\r\n"
                f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                f"This is an aggregate TLS report from {submitter} (RFC 8460).\r\n\r\n"
                f"--{boundary}\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n"
                f"Content-Disposition: attachment; filename=\"{filename}\"\r\n\r\n{encoded}\r\n"
                f"--{boundary}--\r\n").encode("ascii")
        recipients = self.route(address)
        if not recipients:
            raise ValueError(f"{address}: the router refuses it")
        return await self.submit(sender, recipients, text, {"client": "local", "tlsrpt": domain}, source="local")

    async def post(self, uri: str, body: bytes) -> int:
        """RFC 8460 §5.4: POST the gzip'ed report; the HTTP status (2xx = taken)."""
        m = re.match(r"^https://([^/:]+)(?::(\d+))?(/.*)?$", uri, re.IGNORECASE)
        if not m:
            raise ValueError(f"{uri}: not an https URI")
        host, port, path = m.group(1).lower(), int(m.group(2) or 443), m.group(3) or "/"
        addresses = await self.resolver.addresses(host)
        context: ssl.SSLContext = verified_context(str(self.settings.path(self.settings.delivery.tls_ca_file))
                                                   if self.settings.delivery.tls_ca_file else "")
        last: Exception = OSError("no address")
        for ip in addresses:
            try:
                return await asyncio.wait_for(self._post(host, ip, port, path, body, context),
                                              self.settings.delivery.mta_sts_timeout)
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                last = e
        raise last

    async def _post(self, host: str, ip: str, port: int, path: str, body: bytes, context: ssl.SSLContext) -> int:
        reader, writer = await asyncio.open_connection(ip, port, ssl=context, server_hostname=host)
        try:
            authority = host if port == 443 else f"{host}:{port}"
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: Waypost\r\n"
                         f"Content-Type: application/tlsrpt+gzip\r\nContent-Length: {len(body)}\r\n"
                         "Connection: close\r\n\r\n".encode("ascii") + body)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise ValueError(f"{host}: not an HTTP response")
            status = int(parts[1])
            if not 200 <= status < 300:
                raise ValueError(f"{host}: HTTP {status}")
            return status
        finally:
            writer.close()
