"""The DNS records a domain hosted here should publish, and what DNS answers now
(``waypost dns DOMAIN``).

Each record is compared with the answer: ``ok`` (what we expect, or for a policy
record any valid record of its kind — the administrator chooses the policy),
``missing`` (nothing there), ``different`` (something else there), ``error`` (DNS
did not answer).
"""

from __future__ import annotations

import hashlib

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ..config import Settings, parse_hostport
from ..db import DKIMKeyRecord
from .dmarc import DMARCSyntaxError, is_dmarc_record, parse_record
from .keys import dns_name, dns_record
from .lookup import DNSTempError, Lookup

__all__ = ["Expected", "Checked", "expected_records", "check_records"]


@dataclass(slots=True)
class Expected:
    name: str
    rtype: str
    value: str
    purpose: str
    #: Whether an answer is fine: None = it must equal ``value`` (case and spaces aside).
    accept: Callable[[str], bool] | None = None
    #: For a TXT record: only the records that this predicate says are of its kind count.
    kind: Callable[[str], bool] | None = None


@dataclass(slots=True)
class Checked:
    name: str
    rtype: str
    expected: str
    purpose: str
    status: str
    found: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.rtype, "expected": self.expected, "purpose": self.purpose,
                "status": self.status, "found": self.found}


def _tags(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip().lower()] = re.sub(r"\s+", "", v)
    return out


def _dmarc_ok(text: str) -> bool:
    try:
        parse_record(text)
        return True
    except DMARCSyntaxError:
        return False


def _same_key(public: str) -> Callable[[str], bool]:
    return lambda v: _tags(v).get("p") == public


def _mta_sts_record(settings: Settings, domain: str) -> Expected:
    if settings.mta_sts.mode:
        # Served by us ([mta_sts]): the record must carry our policy's id.
        pid = policy_id(settings)
        return Expected(f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={pid}",
                        f"MTA-STS (RFC 8461 §3.1): our policy ({settings.mta_sts.mode}) at "
                        f"https://mta-sts.{domain}/.well-known/mta-sts.txt",
                        kind=lambda v: v.startswith("v=STSv1"),
                        accept=lambda v: bool(re.match(rf"^v=STSv1;\s*id={pid}\s*;?\s*$", v)))
    return Expected(f"_mta-sts.{domain}", "TXT", "v=STSv1; id=<change when the policy changes>",
                    "MTA-STS (RFC 8461 §3.1)", kind=lambda v: v.startswith("v=STSv1"),
                    accept=lambda v: bool(re.match(r"^v=STSv1;\s*id=[A-Za-z0-9]{1,32}\s*;?\s*$", v)))


def _same_target(port: int, host: str) -> Callable[[str], bool]:
    """An SRV answer ``priority weight port target.`` naming our port and host."""
    return lambda v: [x.rstrip(".").lower() for x in v.split()[2:]] == [str(port), host.rstrip(".").lower()]


def policy_text(settings: Settings) -> str:
    """Our MTA-STS policy (RFC 8461 §3.2: ``key: value`` lines, CRLF), as the web
    listener serves it for every hosted domain (``[mta_sts]``)."""
    m = settings.mta_sts
    mx = m.mx or [settings.server.hostname]
    lines = ["version: STSv1", f"mode: {m.mode}", *(f"mx: {h}" for h in mx), f"max_age: {m.max_age}"]
    return "\r\n".join(lines) + "\r\n"


def policy_id(settings: Settings) -> str:
    """RFC 8461 §3.1 ``id`` (1 to 32 letters and digits): 20 hex digits of the policy's
    SHA-256, so that it changes exactly when the policy does."""
    return hashlib.sha256(policy_text(settings).encode("utf-8")).hexdigest()[:20]


def expected_records(settings: Settings, domain: str, keys: Sequence[DKIMKeyRecord]) -> list[Expected]:
    host = settings.server.hostname
    out = [
        Expected(domain, "MX", f"10 {host}", "mail for the domain comes here",
                 accept=lambda v: v.split()[-1].rstrip(".").lower() == host.lower()),
        Expected(domain, "TXT", "v=spf1 mx -all", "SPF: our MX hosts send the domain's mail (RFC 7208)",
                 kind=lambda v: v.lower().startswith("v=spf1"), accept=lambda v: True),
    ]
    for key in keys:
        state = "signing" if key.activated else "not active yet"
        public = key.public_key
        out.append(Expected(dns_name(domain, key.selector), "TXT", dns_record(key.algorithm, public),
                            f"DKIM key {key.selector} ({key.algorithm}, {state}) (RFC 6376)",
                            kind=lambda v: "p=" in v, accept=_same_key(public)))
    out += [
        Expected(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}",
                 "DMARC policy (RFC 7489); any valid policy is ok", kind=is_dmarc_record, accept=_dmarc_ok),
        _mta_sts_record(settings, domain),
        Expected(f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}",
                 "TLS reporting (RFC 8460 §3)", kind=lambda v: v.startswith("v=TLSRPTv1"),
                 accept=lambda v: "rua=" in v),
    ]
    # RFC 6186: where mail clients find the services (only for the listeners that are on).
    for service, listener in (("_submission._tcp", settings.listen.submission), ("_imap._tcp", settings.listen.imap),
                              ("_pop3._tcp", settings.listen.pop3)):
        if not listener:
            continue
        _h, port = parse_hostport(listener, default_port=0)
        out.append(Expected(f"{service}.{domain}", "SRV", f"0 1 {port} {host}", "client autoconfiguration (RFC 6186)",
                            accept=_same_target(port, host)))
    return out


async def check_records(lookup: Lookup, expected: Sequence[Expected]) -> list[Checked]:
    out = []
    for e in expected:
        try:
            answers = list(await lookup.query(e.name, e.rtype))
        except DNSTempError as err:
            out.append(Checked(e.name, e.rtype, e.value, e.purpose, "error", [str(err)]))
            continue
        if e.kind is not None:
            answers = [a for a in answers if e.kind(a)]
        if not answers:
            status = "missing"
        else:
            accept = e.accept or (lambda v: " ".join(v.split()).lower() == " ".join(e.value.split()).lower())
            status = "ok" if any(accept(a) for a in answers) else "different"
        out.append(Checked(e.name, e.rtype, e.value, e.purpose, status, answers))
    return out
