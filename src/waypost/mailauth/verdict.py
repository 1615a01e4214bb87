"""The inbound verdict: SPF (MAIL FROM and HELO), DKIM, ARC, DMARC for one message, as one
``Authentication-Results`` field (RFC 8601) named after our host and a trace.

``check_message`` is what ``waypost mailauth check`` runs and what the SMTP listener
will call after DATA; it reads DNS (through ``Lookup``) and nothing else, and decides
nothing: the caller applies the policy (``Verdict.dmarc.disposition``; a
``temperror`` means "answer 451", never 550).
"""

from __future__ import annotations

import ipaddress
import random
import re
from dataclasses import dataclass, field

from ..config import Settings
from .arc import ARCResult, trusted_override, verify_arc
from .dmarc import DMARCResult, evaluate_dmarc
from .lookup import Lookup
from .sign import field_values, from_domain
from .spf import SPFResult, check_host, check_spf
from .canon import Canon
from .verify import DKIMResult, verify_all

__all__ = ["Verdict", "check_message", "authentication_results"]


@dataclass(slots=True)
class Verdict:
    spf: SPFResult
    helo: SPFResult | None
    dkim: list[DKIMResult]
    dmarc: DMARCResult
    arc: ARCResult
    header: str                      # the Authentication-Results field, folded, with CRLF
    trace: list[str] = field(default_factory=list)
    dns_queries: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "spf": {"result": self.spf.result, "domain": self.spf.domain, "reason": self.spf.reason},
            "helo": None if self.helo is None else {"result": self.helo.result, "domain": self.helo.domain},
            "dkim": [{"result": d.result, "domain": d.domain, "selector": d.selector, "algorithm": d.algorithm,
                      "reason": d.reason} for d in self.dkim],
            "arc": {"result": self.arc.result, "sets": self.arc.sets, "sealers": self.arc.sealers,
                    "reason": self.arc.reason},
            "dmarc": {"result": self.dmarc.result, "from": self.dmarc.from_domain, "policy": self.dmarc.policy,
                      "disposition": self.dmarc.disposition, "reason": self.dmarc.reason},
            "authentication_results": self.header,
            "trace": self.trace,
            "dns_queries": self.dns_queries,
        }


def _is_ip_literal(helo: str) -> bool:
    text = helo.strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    if ":" not in text and text.strip("0123456789."):
        return False  # a name (no IPv6 colon, not only digits and dots): no parse needed
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


async def check_message(settings: Settings, message: bytes, client_ip: str, helo: str, mail_from: str,
                        lookup: Lookup | None = None, rng: random.Random | None = None) -> Verdict:
    """Every check for one message received from ``client_ip``; ``mail_from`` is the
    reverse-path without brackets ("" for the null sender)."""
    lookup = lookup.own() if lookup is not None else Lookup(settings)  # its queries are this check's alone
    hostname = settings.server.hostname
    trace: list[str] = [f"client {client_ip}, HELO {helo or '(none)'}, MAIL FROM <{mail_from}>"]

    helo_result: SPFResult | None = None
    if helo and not _is_ip_literal(helo):  # RFC 7208 §2.3: the HELO identity, when it is a name
        helo_result = await check_host(lookup, client_ip, helo, f"postmaster@{helo}", helo, hostname)
        trace += [f"spf (helo): {line}" for line in helo_result.trace]
        trace.append(f"spf (helo {helo}): {helo_result.result}")
    if mail_from:
        spf = await check_spf(lookup, client_ip, mail_from, helo, hostname)
        trace += [f"spf (mailfrom): {line}" for line in spf.trace]
        trace.append(f"spf (mailfrom {mail_from}): {spf.result}")
    elif helo_result is not None:
        spf = helo_result  # RFC 7208 §2.4: a null reverse-path is checked as postmaster@HELO
        trace.append("spf (mailfrom): null reverse-path: the HELO result stands for it")
    else:
        spf = SPFResult("none", "", "no MAIL FROM domain and no HELO name")
        trace.append("spf: nothing to check: none")

    canon = Canon(message)  # split and canonicalized once for every DKIM and ARC signature
    dkim_results = await verify_all(lookup, message, trace, canon)
    arc = await verify_arc(lookup, message, trace, canon)

    author, problem = from_domain(field_values(message, "from"))
    temp = spf.result == "temperror" or any(d.result == "temperror" for d in dkim_results)
    dmarc = await evaluate_dmarc(lookup, author, problem, spf.result, spf.domain,
                                 [d.domain for d in dkim_results if d.result == "pass"], temp, trace, rng)
    if dmarc.result == "fail" and dmarc.disposition != "none":
        sealer = trusted_override(arc, dmarc.from_domain, settings.mailauth.arc_trusted_sealers)
        if sealer is not None:
            # RFC 7489 §6.7 local policy, RFC 8617 §7.2: a sealer we trust saw it pass
            # before it changed the message (a list footer, a subject tag).
            dmarc.disposition = "none"
            dmarc.override = f"arc trusted sealer {sealer}"
            trace.append(f"dmarc: ARC chain passes and trusted sealer {sealer} recorded dmarc=pass: "
                         "disposition none")
    header = authentication_results(hostname, spf, helo_result, helo, mail_from, dkim_results, dmarc, arc,
                                    client_ip)
    return Verdict(spf, helo_result, dkim_results, dmarc, arc, header, trace, lookup.queries)


# RFC 2045 token: the characters a value may have without quotes (RFC 8601 §2.2 pvalue).
_TOKEN = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~@]+$")


def _value(text: str) -> str:
    if _TOKEN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: What a comment leaves out: control characters (below " ") and the comment's own
#: specials "(", ")" and "\\" (RFC 5322 §3.2.2 ctext).
_NOT_CTEXT = dict.fromkeys([*range(0x20), ord("("), ord(")"), ord("\\")])


def _comment(text: str) -> str:
    clean = text.translate(_NOT_CTEXT)  # (one C call, not a generator step per character)
    return f" ({clean[:200]})" if clean else ""


def authentication_results(hostname: str, spf: SPFResult, helo_result: SPFResult | None, helo: str,
                           mail_from: str, dkim: list[DKIMResult], dmarc: DMARCResult,
                           arc: ARCResult | None = None, client_ip: str = "") -> str:
    """RFC 8601 §2.2: ``Authentication-Results: authserv-id; resinfo; ...``, one
    method result a line."""
    parts: list[str] = []
    if mail_from:
        parts.append(f"spf={spf.result}{_comment(spf.reason if spf.result != 'pass' else '')}"
                     f" smtp.mailfrom={_value(mail_from)}")
    if helo_result is not None:
        parts.append(f"spf={helo_result.result} smtp.helo={_value(helo)}")
    if not dkim:
        parts.append("dkim=none")
    for d in dkim:
        props = "".join(f" {k}={_value(v)}" for k, v in
                        (("header.d", d.domain), ("header.s", d.selector), ("header.a", d.algorithm),
                         ("header.b", d.b)) if v)
        parts.append(f"dkim={d.result}{_comment(d.reason)}{props}")
    if arc is not None and arc.result != "none":
        # RFC 8617 §4.4 (and its IANA registrations): arc=, header.oldest-pass, smtp.remote-ip.
        note = f"{arc.sets} set{'s' if arc.sets > 1 else ''}, sealed by {', '.join(arc.sealers)}" if arc.result == "pass" else arc.reason
        parts.append(f"arc={arc.result}{_comment(note)}"
                     + (f" header.oldest-pass={arc.oldest_pass}" if arc.result == "pass" else "")
                     + (f" smtp.remote-ip={_value(client_ip)}" if client_ip else ""))
    dmarc_comment = f"p={dmarc.policy} dis={dmarc.disposition}" if dmarc.result in ("pass", "fail") else dmarc.reason
    if dmarc.override:
        dmarc_comment += f" {dmarc.override}"
    parts.append(f"dmarc={dmarc.result}{_comment(dmarc_comment)}"
                 + (f" header.from={_value(dmarc.from_domain)}" if dmarc.from_domain else ""))
    return f"Authentication-Results: {hostname};\r\n\t" + ";\r\n\t".join(parts) + "\r\n"
