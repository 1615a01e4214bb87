"""DMARC (RFC 7489): the policy record, identifier alignment and the verdict.

Theory of operation.  The RFC5322.From domain (one From, one address: §6.6.1) is the
author domain.  Its policy is looked up at ``_dmarc.<author domain>``, then at
``_dmarc.<organisational domain>`` (§6.6.3).  DMARC passes when an SPF pass (of the
MAIL FROM identity, or of HELO for a null reverse-path) or a DKIM pass is *aligned*
with the author domain: the same domain under ``s`` (strict), the same organisational
domain under ``r`` (relaxed, the default) (§3.1).  A failure whose SPF or DKIM part
was a temporary error is reported ``temperror``: it may pass when retried (the
listener answers 451, not 550).  The disposition applies ``p`` (or ``sp`` for a
sub-domain) to ``pct`` per cent of failing messages, the others get the next milder
policy (§6.6.4).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Sequence

from .lookup import DNSTempError, Lookup
from .psl import organizational_domain

__all__ = ["DMARCRecord", "DMARCResult", "DMARCSyntaxError", "parse_record", "evaluate_dmarc", "aligned"]

POLICIES = ("none", "quarantine", "reject")
MILDER = {"reject": "quarantine", "quarantine": "none", "none": "none"}
#: A record longer than this is refused unread (a policy is a few dozen octets).
MAX_RECORD = 2048

# RFC 7489 §6.4: dmarc-record = dmarc-version dmarc-sep *(dmarc-tag dmarc-sep); version "v=DMARC1"
_VERSION = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
_TAG = re.compile(r"^([a-z][a-z0-9_]*)\s*=\s*(.*)$", re.IGNORECASE | re.DOTALL)


class DMARCSyntaxError(ValueError):
    pass


@dataclass(slots=True)
class DMARCRecord:
    p: str
    sp: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: list[str] = field(default_factory=list)
    text: str = ""


@dataclass(slots=True)
class DMARCResult:
    """``result``: none, pass, fail, temperror, permerror (RFC 7489 §11.2)."""

    result: str
    from_domain: str = ""
    policy: str = "none"          # the published policy that applies (p or sp)
    disposition: str = "none"     # what the receiver should do: none, quarantine, reject
    record_domain: str = ""
    reason: str = ""
    override: str = ""            # why the disposition is milder than the policy (RFC 7489 §6.7)


def is_dmarc_record(text: str) -> bool:
    return bool(_VERSION.match(text.strip()))


def parse_record(text: str) -> DMARCRecord:
    """A DMARC record; ``DMARCSyntaxError`` naming the bad tag."""
    if len(text) > MAX_RECORD:
        raise DMARCSyntaxError(f"record longer than {MAX_RECORD} octets")
    parts = [t.strip() for t in text.split(";")]
    if not parts or not _VERSION.match(parts[0] + ";"):
        raise DMARCSyntaxError("does not start with v=DMARC1 (RFC 7489 §6.4)")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        m = _TAG.match(part)
        if not m:
            raise DMARCSyntaxError(f"{part!r}: not tag=value (RFC 7489 §6.4)")
        name = m.group(1).lower()
        if name in tags:
            raise DMARCSyntaxError(f"tag {name} given twice")
        tags[name] = m.group(2).strip()
    rua = [u.strip() for u in tags.get("rua", "").split(",") if u.strip()]
    valid_rua = [u for u in rua if re.match(r"^[a-z][a-z0-9+.-]*:\S+$", u, re.IGNORECASE)]
    p = tags.get("p", "").lower()
    sp = tags.get("sp", p).lower()
    if p not in POLICIES or sp not in POLICIES:
        # §6.6.3 step 6: no valid p (or a bad sp) is p=none when a valid rua is given.
        if not valid_rua:
            bad = "p" if p not in POLICIES else "sp"
            raise DMARCSyntaxError(f"{bad}={tags.get(bad, '')!r}: not none, quarantine or reject (RFC 7489 §6.3)")
        p, sp = "none", "none"
    for name in ("adkim", "aspf"):
        if tags.get(name, "r").lower() not in ("r", "s"):
            raise DMARCSyntaxError(f"{name}={tags[name]!r}: not r or s (RFC 7489 §6.3)")
    pct_text = tags.get("pct", "100")
    if not pct_text.isdigit() or int(pct_text) > 100:
        raise DMARCSyntaxError(f"pct={pct_text!r}: not an integer from 0 to 100 (RFC 7489 §6.3)")
    return DMARCRecord(p, sp, tags.get("adkim", "r").lower(), tags.get("aspf", "r").lower(), int(pct_text),
                       valid_rua, text)


#: Records whose parse is kept (a pure function of the text; DNS says how long a text holds).
PARSE_CACHE = 1024
_parses: dict[str, DMARCRecord | DMARCSyntaxError] = {}


def _parsed(text: str) -> DMARCRecord:
    """``parse_record(text)``, once per record text (its readers never change it)."""
    got = _parses.get(text)
    if got is None:
        try:
            got = parse_record(text)
        except DMARCSyntaxError as e:
            got = e
        if len(_parses) >= PARSE_CACHE:
            _parses.clear()
        _parses[text] = got
    if isinstance(got, DMARCSyntaxError):
        raise DMARCSyntaxError(*got.args)
    return got


def aligned(identifier: str, author: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict = the same name; relaxed = the same organisational domain."""
    identifier, author = identifier.rstrip(".").lower(), author.rstrip(".").lower()
    if not identifier or not author:
        return False
    if mode == "s":
        return identifier == author
    return organizational_domain(identifier) == organizational_domain(author)


async def _find_record(lookup: Lookup, author: str, trace: list[str]) -> tuple[DMARCRecord | None, str]:
    """§6.6.3: the record of the author domain, else of its organisational domain."""
    org = organizational_domain(author)
    for domain in dict.fromkeys((author, org)):
        name = f"_dmarc.{domain}"
        answers = await lookup.query(name, "TXT")  # DNSTempError goes up
        records = [r for r in answers if is_dmarc_record(r)]
        if len(records) > 1:
            trace.append(f"dmarc: {name}: {len(records)} records: none applies (RFC 7489 §6.6.3)")
            return None, domain
        if records:
            trace.append(f"dmarc: {name}: {records[0]}")
            return _parsed(records[0]), domain  # DMARCSyntaxError goes up
        trace.append(f"dmarc: {name}: no record")
    return None, author


async def evaluate_dmarc(lookup: Lookup, author: str | None, author_problem: str, spf_result: str,
                         spf_domain: str, dkim_passes: Sequence[str], temp_errors: bool,
                         trace: list[str], rng: random.Random | None = None) -> DMARCResult:
    """``spf_domain``: the domain SPF checked (MAIL FROM's, or HELO's); ``dkim_passes``:
    the d= of each passing signature; ``temp_errors``: SPF or a signature was temperror."""
    if author is None:
        trace.append(f"dmarc: {author_problem}: none (RFC 7489 §6.6.1)")
        return DMARCResult("none", reason=author_problem)
    try:
        record, record_domain = await _find_record(lookup, author, trace)
    except DNSTempError as e:
        trace.append(f"dmarc: policy look-up: {e}: temperror")
        return DMARCResult("temperror", author, reason=str(e))
    except DMARCSyntaxError as e:
        trace.append(f"dmarc: record: {e}: permerror")
        return DMARCResult("permerror", author, reason=f"bad record: {e}")
    if record is None:
        return DMARCResult("none", author, reason="no policy published")
    policy = record.p if record_domain == author else record.sp
    out = DMARCResult("fail", author, policy, "none", record_domain)
    dkim_ok = [name for name in dkim_passes if aligned(name, author, record.adkim)]
    spf_ok = spf_result == "pass" and aligned(spf_domain, author, record.aspf)
    if dkim_ok or spf_ok:
        out.result = "pass"
        out.reason = ", ".join([f"DKIM d={name} aligned" for name in dkim_ok] +
                               ([f"SPF {spf_domain} aligned"] if spf_ok else []))
        trace.append(f"dmarc: {out.reason} ({'strict' if record.adkim == 's' else 'relaxed'} DKIM, "
                     f"{'strict' if record.aspf == 's' else 'relaxed'} SPF alignment): pass")
        return out
    unaligned = []
    if spf_result == "pass":
        unaligned.append(f"SPF passed for {spf_domain}, not aligned with {author}")
    for d in dkim_passes:
        unaligned.append(f"DKIM passed for d={d}, not aligned with {author}")
    out.reason = "; ".join(unaligned) or "no aligned SPF or DKIM pass"
    if temp_errors:
        out.result = "temperror"
        trace.append(f"dmarc: {out.reason}, and a check had a temporary error: temperror (retry later)")
        return out
    draw = (rng or random).random() * 100
    out.disposition = policy if draw < record.pct else MILDER[policy]
    trace.append(f"dmarc: {out.reason}: fail, policy {policy}"
                 + (f" (pct={record.pct}: {out.disposition})" if record.pct < 100 else ""))
    return out
