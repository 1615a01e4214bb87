"""SPF (RFC 7208): ``check_host()`` for the MAIL FROM and the HELO identities.

Written on dnspython rather than taken from ``pyspf``, whose last release (2.0.14,
2020) resolves through a module-global look-up function and a resolver it builds from
``/etc/resolv.conf``: it cannot be given ``dns.nameservers`` or a time-out without
patching its internals, and it blocks the event loop.

Theory of operation.  ``check_host`` (§4) fetches the domain's TXT records, selects
the one SPF record (§4.5), parses all of it first (a syntax error anywhere is a
permerror, §4.6), then evaluates the mechanisms left to right (§4.6.2) and, when none
matched, the ``redirect`` modifier (§6.1).  One ``_Budget`` is shared by the whole
evaluation, includes and redirects included: at most ``MAX_DNS_MECHANISMS`` terms
that query DNS (§4.6.4) and at most ``MAX_VOID_LOOKUPS`` look-ups that found nothing
(§4.6.4); past either the result is permerror.  A DNS time-out or server failure is
temperror (§2.6.6).  Every step is appended to ``trace``.
"""

from __future__ import annotations

import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from functools import lru_cache

from .lookup import DNSTempError, Lookup

__all__ = ["SPFResult", "check_host", "check_spf", "MAX_DNS_MECHANISMS", "MAX_VOID_LOOKUPS", "MAX_MX_NAMES",
           "MAX_PTR_NAMES"]

#: RFC 7208 §4.6.4: terms that cause DNS queries (include, a, mx, ptr, exists, redirect).
MAX_DNS_MECHANISMS = 10
#: RFC 7208 §4.6.4: look-ups that return no record (NXDOMAIN or no answer).
MAX_VOID_LOOKUPS = 2
#: RFC 7208 §4.6.4: MX names whose addresses one "mx" looks up.
MAX_MX_NAMES = 10
#: RFC 7208 §4.6.4: PTR names one "ptr" (or %{p}) checks.
MAX_PTR_NAMES = 10
#: RFC 7208 §7.3: a macro-expanded domain longer than this loses labels on the left.
MAX_DOMAIN = 253
#: RFC 7208 §3.4: a record (joined character-strings) longer than this is not worth
#: reading: RFC says it SHOULD fit 450 octets; 4096 bounds a hostile zone.
MAX_RECORD = 4096

QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")

# RFC 7208 §12: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
# RFC 7208 §7.1: macro-letter transformers delimiters
_MACRO = re.compile(r"%\{([slodiphcrtv])([0-9]*)(r?)([.\-+,/_=]*)\}", re.IGNORECASE)
# RFC 7208 §5.6: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT)
_CIDR4 = re.compile(r"^(0|[1-9][0-9]?)$")
_CIDR6 = re.compile(r"^(0|[1-9][0-9]{0,2})$")
# RFC 7208 §7.1: toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
_TOPLABEL = re.compile(r"^(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])$", re.IGNORECASE)


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


@dataclass(slots=True)
class SPFResult:
    """``result``: none, neutral, pass, fail, softfail, temperror, permerror (§2.6)."""

    result: str
    domain: str
    reason: str = ""
    explanation: str = ""
    mechanism: str = ""
    trace: list[str] = field(default_factory=list)
    dns_queries: int = 0


@dataclass(slots=True)
class _Budget:
    terms: int = 0
    voids: int = 0

    def term(self, what: str) -> None:
        self.terms += 1
        if self.terms > MAX_DNS_MECHANISMS:
            raise _PermError(f"more than {MAX_DNS_MECHANISMS} DNS-querying terms ({what}) (RFC 7208 §4.6.4)")

    def void(self, name: str) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise _PermError(f"more than {MAX_VOID_LOOKUPS} void look-ups ({name}) (RFC 7208 §4.6.4)")


@dataclass(slots=True)
class _Term:
    kind: str          # a mechanism name, "redirect", "exp" or "unknown-modifier"
    qualifier: str
    arg: str           # domain-spec (unexpanded) or address
    cidr4: int | None
    cidr6: int | None
    text: str


@dataclass(slots=True)
class _Ctx:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    receiver: str
    lookup: Lookup
    trace: list[str]
    budget: _Budget = field(default_factory=_Budget)
    validated: str | None = None  # %{p}, computed once


def _domain_ok(domain: str) -> bool:
    """§4.3: a multi-label name whose labels are 1 to 63 octets."""
    name = domain[:-1] if domain.endswith(".") else domain
    labels = name.split(".")
    return len(labels) > 1 and all(0 < len(label) <= 63 for label in labels) and len(name) <= MAX_DOMAIN


#: Addresses and networks whose parse is kept (pure functions of their text, bounded).
PARSE_CACHE = 4096


@lru_cache(maxsize=PARSE_CACHE)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``ip_network(text, strict=False)`` (a ValueError is raised each time, not kept)."""
    return ipaddress.ip_network(text, strict=False)


@lru_cache(maxsize=PARSE_CACHE)
def _client_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # §5: an IPv4-mapped client is an IPv4 client
    return addr


async def check_spf(lookup: Lookup, ip: str, mail_from: str, helo: str, receiver: str = "unknown",
                    default_explanation: str = "") -> SPFResult:
    """The MAIL FROM check (§2.4); with a null reverse-path, the HELO identity
    ``postmaster@HELO`` (§2.4: "checking the HELO identity")."""
    sender = mail_from if mail_from else f"postmaster@{helo}"
    local, at, domain = sender.rpartition("@")
    if not at:
        domain = sender
    return await check_host(lookup, ip, domain, sender, helo, receiver, default_explanation)


async def check_host(lookup: Lookup, ip: str, domain: str, sender: str, helo: str = "",
                     receiver: str = "unknown", default_explanation: str = "") -> SPFResult:
    trace: list[str] = []
    queries = lookup.queries
    domain = domain.rstrip(".").lower() if domain.endswith(".") and not domain.endswith("..") else domain.lower()
    local, at, _dom = sender.rpartition("@")
    if not at or not local:
        sender = f"postmaster@{domain}" if not at else f"postmaster@{_dom}"  # §4.3
    ctx = _Ctx(_client_ip(ip), sender, helo, receiver, lookup, trace)
    try:
        result, mech, exp = await _check(ctx, domain, 0)
    except _PermError as e:
        trace.append(f"permerror: {e}")
        return SPFResult("permerror", domain, str(e), trace=trace, dns_queries=lookup.queries - queries)
    except _TempError as e:
        trace.append(f"temperror: {e}")
        return SPFResult("temperror", domain, str(e), trace=trace, dns_queries=lookup.queries - queries)
    if result == "fail" and not exp:
        exp = default_explanation
    return SPFResult(result, domain, mech, exp if result == "fail" else "", mech, trace, lookup.queries - queries)


async def _record(ctx: _Ctx, domain: str) -> str | None:
    try:
        answers = await ctx.lookup.query(domain, "TXT")
    except DNSTempError as e:
        raise _TempError(str(e)) from None
    # §4.5: records that begin with "v=spf1" followed by a space or nothing.
    found = [r for r in answers if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
    if not found:
        return None
    if len(found) > 1:
        raise _PermError(f"{domain}: {len(found)} SPF records (RFC 7208 §4.5)")
    if len(found[0]) > MAX_RECORD:
        raise _PermError(f"{domain}: SPF record longer than {MAX_RECORD} octets")
    return found[0]


async def _check(ctx: _Ctx, domain: str, depth: int) -> tuple[str, str, str]:
    """(result, matching term, explanation) of check_host for ``domain``."""
    if not _domain_ok(domain):
        ctx.trace.append(f"{domain!r}: not a valid domain name: none (RFC 7208 §4.3)")
        return "none", "", ""
    record = await _record(ctx, domain)
    if record is None:
        ctx.trace.append(f"{domain}: no SPF record: none")
        return "none", "", ""
    ctx.trace.append(f"{domain}: {record}")
    terms = _parsed(record)
    redirect = next((t for t in terms if t.kind == "redirect"), None)
    exp = next((t for t in terms if t.kind == "exp"), None)
    for term in terms:
        if term.kind not in MECHANISMS:
            continue
        if await _matches(ctx, term, domain, depth):
            result = QUALIFIERS[term.qualifier]
            ctx.trace.append(f"{domain}: {term.text} matched: {result}")
            explanation = ""
            if result == "fail" and exp is not None:
                explanation = await _explain(ctx, exp, domain)
            return result, term.text, explanation
    if redirect is not None:
        ctx.budget.term("redirect")
        target = await _expand_async(ctx, redirect.arg, domain)
        ctx.trace.append(f"{domain}: no mechanism matched: redirect={target}")
        if not _domain_ok(target):
            raise _PermError(f"redirect={target}: not a valid domain name")
        result, mech, explanation = await _check(ctx, target, depth + 1)
        if result == "none":
            raise _PermError(f"redirect={target}: no SPF record there (RFC 7208 §6.1)")
        return result, mech, explanation
    ctx.trace.append(f"{domain}: no mechanism matched: neutral (RFC 7208 §4.7)")
    return "neutral", "", ""


#: Records whose parse is kept (a pure function of the text; a record is re-read from
#: DNS as its TTL says, and a changed record is another text).
PARSE_CACHE = 1024
_parses: dict[str, tuple[_Term, ...] | _PermError] = {}


def _parsed(record: str) -> tuple[_Term, ...]:
    """``_parse(record)``, once per record text (its terms are never changed)."""
    got = _parses.get(record)
    if got is None:
        try:
            got = tuple(_parse(record))
        except _PermError as e:
            got = e
        if len(_parses) >= PARSE_CACHE:
            _parses.clear()
        _parses[record] = got
    if isinstance(got, _PermError):
        raise _PermError(*got.args)
    return got


def _parse(record: str) -> list[_Term]:
    terms: list[_Term] = []
    seen: set[str] = set()
    for text in record.split(" ")[1:]:
        if not text:
            continue
        m = _MODIFIER.match(text)
        if m and not re.match(r"^[+\-~?]?(all|include|a|mx|ptr|ip4|ip6|exists)[:/]", text, re.IGNORECASE):
            name, value = m.group(1).lower(), m.group(2)
            if name in ("redirect", "exp"):
                if name in seen:
                    raise _PermError(f"{name}= given twice (RFC 7208 §6)")
                seen.add(name)
                _check_domain_spec(value, text)
                terms.append(_Term(name, "", value, None, None, text))
            else:
                _check_macro_string(value, text)  # unknown modifiers are ignored, but parsed (§6)
            continue
        qualifier = text[0] if text[0] in QUALIFIERS else "+"
        body = text[1:] if text[0] in QUALIFIERS else text
        name, sep, rest = _split_mechanism(body)
        name = name.lower()
        if name not in MECHANISMS:
            raise _PermError(f"{text!r}: unknown mechanism (RFC 7208 §5)")
        arg, cidr4, cidr6 = rest, None, None
        if name in ("a", "mx"):
            arg, cidr4, cidr6 = _dual_cidr(rest, text)
        elif name == "ip4" or name == "ip6":
            arg, cidr4, cidr6 = _ip_arg(name, sep, rest, text)
        elif name == "all":
            if sep:
                raise _PermError(f"{text!r}: 'all' takes no argument")
        elif name in ("include", "exists"):
            if sep != ":" or not rest:
                raise _PermError(f"{text!r}: needs a domain (RFC 7208 §5)")
        elif name == "ptr":
            if sep == "/":
                raise _PermError(f"{text!r}: 'ptr' takes no CIDR length")
        if name not in ("ip4", "ip6", "all") and arg:
            if sep == ":" and not arg:
                raise _PermError(f"{text!r}: empty domain")
            _check_domain_spec(arg, text)
        elif sep == ":" and not arg and name not in ("ip4", "ip6"):
            raise _PermError(f"{text!r}: empty domain")
        terms.append(_Term(name, qualifier, arg, cidr4, cidr6, text))
    return terms


def _split_mechanism(body: str) -> tuple[str, str, str]:
    for i, ch in enumerate(body):
        if ch in ":/":
            return body[:i], ch, body[i + 1:] if ch == ":" else body[i:]
    return body, "", ""


def _dual_cidr(rest: str, text: str) -> tuple[str, int | None, int | None]:
    """``domain-spec [ ip4-cidr-length ] [ "/" ip6-cidr-length ]`` (§5.3, §5.4)."""
    arg, cidr4, cidr6 = rest, None, None
    m = re.search(r"(/[0-9]+)?(//[0-9]+)?$", rest)
    if m and (m.group(1) or m.group(2)):
        arg = rest[: m.start()]
        if m.group(1):
            if not _CIDR4.match(m.group(1)[1:]) or int(m.group(1)[1:]) > 32:
                raise _PermError(f"{text!r}: bad IPv4 CIDR length (RFC 7208 §5.6)")
            cidr4 = int(m.group(1)[1:])
        if m.group(2):
            if not _CIDR6.match(m.group(2)[2:]) or int(m.group(2)[2:]) > 128:
                raise _PermError(f"{text!r}: bad IPv6 CIDR length (RFC 7208 §5.6)")
            cidr6 = int(m.group(2)[2:])
    return arg, cidr4, cidr6


def _ip_arg(name: str, sep: str, rest: str, text: str) -> tuple[str, int | None, int | None]:
    if sep != ":" or not rest:
        raise _PermError(f"{text!r}: needs an address (RFC 7208 §5.6)")
    addr, slash, length = rest.partition("/")
    pattern, top = (_CIDR4, 32) if name == "ip4" else (_CIDR6, 128)
    if slash and (not pattern.match(length) or int(length) > top):
        raise _PermError(f"{text!r}: bad CIDR length (RFC 7208 §5.6)")
    try:
        parsed = ipaddress.ip_address(addr)
    except ValueError:
        raise _PermError(f"{text!r}: not an IP address (RFC 7208 §5.6)") from None
    if (name == "ip4") != isinstance(parsed, ipaddress.IPv4Address):
        raise _PermError(f"{text!r}: wrong address family (RFC 7208 §5.6)")
    bits = int(length) if slash else top
    return addr, bits if name == "ip4" else None, bits if name == "ip6" else None


def _check_macro_string(value: str, text: str) -> None:
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "%":
            nxt = value[i + 1: i + 2]
            if nxt in ("%", "_", "-"):
                i += 2
                continue
            m = _MACRO.match(value, i)
            if not m:
                raise _PermError(f"{text!r}: bad macro (RFC 7208 §7.1)")
            if m.group(2) == "0" or (m.group(2) and int(m.group(2)) > 128):
                raise _PermError(f"{text!r}: bad macro digit transformer (RFC 7208 §7.1)")
            i = m.end()
            continue
        if not (0x21 <= ord(ch) <= 0x7E):
            raise _PermError(f"{text!r}: bad character in macro-string (RFC 7208 §7.1)")
        i += 1


def _check_domain_spec(spec: str, text: str) -> None:
    """§7.1: domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "." ] ) / macro-expand."""
    if not spec:
        raise _PermError(f"{text!r}: empty domain-spec")
    _check_macro_string(spec, text)
    if re.search(r"%\{[crt]", spec, re.IGNORECASE):
        raise _PermError(f"{text!r}: %{{c}}, %{{r}} and %{{t}} are allowed only in an explanation (RFC 7208 §7.2)")
    if re.search(r"(%\{[^}]*\}|%[%_-])$", spec):
        if spec.endswith("}"):
            return
    body = spec[:-1] if spec.endswith(".") else spec
    if "." not in body:
        raise _PermError(f"{text!r}: domain-spec must end with '.' toplabel or a macro (RFC 7208 §7.1)")
    top = body.rsplit(".", 1)[1]
    if not _TOPLABEL.match(top):
        raise _PermError(f"{text!r}: {top!r} is not a valid top label (RFC 7208 §7.1)")


async def _addresses(ctx: _Ctx, name: str, v6: bool) -> list[str]:
    rtype = "AAAA" if v6 else "A"
    try:
        answer = await ctx.lookup.query(name, rtype)
    except DNSTempError as e:
        raise _TempError(str(e)) from None
    if not answer:
        ctx.budget.void(f"{name} {rtype}")
    return list(answer)


def _in(ctx: _Ctx, addresses: list[str], cidr4: int | None, cidr6: int | None) -> bool:
    v6 = isinstance(ctx.ip, ipaddress.IPv6Address)
    bits = (cidr6 if cidr6 is not None else 128) if v6 else (cidr4 if cidr4 is not None else 32)
    for a in addresses:
        try:
            net = _network(f"{a}/{bits}")
        except ValueError:
            continue
        if net.version == ctx.ip.version and ctx.ip in net:
            return True
    return False


async def _matches(ctx: _Ctx, term: _Term, domain: str, depth: int) -> bool:
    v6 = isinstance(ctx.ip, ipaddress.IPv6Address)
    kind = term.kind
    if kind == "all":
        return True
    if kind == "ip4" or kind == "ip6":
        bits = term.cidr4 if kind == "ip4" else term.cidr6
        net = _network(f"{term.arg}/{bits}")
        return net.version == ctx.ip.version and ctx.ip in net
    ctx.budget.term(term.text)
    target = await _expand_async(ctx, term.arg, domain) if term.arg else domain
    if kind == "include":
        if not _domain_ok(target):
            raise _PermError(f"include:{target}: not a valid domain name")
        ctx.trace.append(f"{domain}: include:{target}")
        result, _mech, _exp = await _check(ctx, target, depth + 1)
        if result == "pass":
            return True
        if result in ("fail", "softfail", "neutral"):
            return False
        if result == "temperror":  # never here: raised as _TempError
            raise _TempError(f"include:{target}")
        raise _PermError(f"include:{target}: {result} (RFC 7208 §5.2)")
    if not _domain_ok(target):
        ctx.trace.append(f"{term.text}: {target!r} is not a valid domain name: no match")
        return False
    if kind == "a":
        return _in(ctx, await _addresses(ctx, target, v6), term.cidr4, term.cidr6)
    if kind == "mx":
        try:
            mx = await ctx.lookup.query(target, "MX")
        except DNSTempError as e:
            raise _TempError(str(e)) from None
        if not mx:
            ctx.budget.void(f"{target} MX")
        names = [n for n in mx if n not in ("", ".")]
        if len(names) > MAX_MX_NAMES:
            raise _PermError(f"{target}: more than {MAX_MX_NAMES} MX names (RFC 7208 §4.6.4)")
        for name in names:
            if _in(ctx, await _addresses(ctx, name, v6), term.cidr4, term.cidr6):
                return True
        return False
    if kind == "ptr":
        validated = await _validated_names(ctx)
        return any(n == target.lower() or n.endswith("." + target.lower()) for n in validated)
    if kind == "exists":
        try:
            answer = await ctx.lookup.query(target, "A")  # §5.7: always A, whatever the client's family
        except DNSTempError as e:
            raise _TempError(str(e)) from None
        if not answer:
            ctx.budget.void(f"{target} A")
        return bool(answer)
    raise _PermError(f"{term.text}: unknown mechanism")  # pragma: no cover - refused by _parse


async def _validated_names(ctx: _Ctx) -> list[str]:
    """§5.5: the PTR names of the client whose addresses include it."""
    try:
        names = await ctx.lookup.ptr(str(ctx.ip))
    except DNSTempError:
        return []  # §5.5: a DNS error on the PTR look-up is no match
    if not names:
        ctx.budget.void(f"PTR {ctx.ip}")
    out = []
    v6 = isinstance(ctx.ip, ipaddress.IPv6Address)
    for name in list(names)[:MAX_PTR_NAMES]:
        try:
            addrs = await ctx.lookup.query(name, "AAAA" if v6 else "A")
        except DNSTempError:
            continue
        if any(_same(a, ctx.ip) for a in addrs):
            out.append(name.rstrip(".").lower())
    return out


def _same(a: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(a) == ip
    except ValueError:
        return False


async def _expand_async(ctx: _Ctx, spec: str, domain: str, exp: bool = False) -> str:
    """``_expand`` after finding %{p}'s value when the spec uses it (§7.3: prefer a
    validated name in ``domain``)."""
    if ctx.validated is None and re.search(r"%\{p", spec, re.IGNORECASE):
        names = await _validated_names(ctx)
        d = domain.lower()
        best = [n for n in names if n == d] or [n for n in names if n.endswith("." + d)] or names
        ctx.validated = best[0] if best else "unknown"
    return _expand(ctx, spec, domain, exp)


def _expand(ctx: _Ctx, spec: str, domain: str, exp: bool = False) -> str:
    """§7: macro expansion; a domain longer than 253 loses labels on the left (§7.3)."""
    out = _expand_text(ctx, spec, domain, exp)
    if not exp:
        while len(out) > MAX_DOMAIN and "." in out:
            out = out.split(".", 1)[1]
    return out


def _expand_text(ctx: _Ctx, spec: str, domain: str, exp: bool) -> str:
    out: list[str] = []
    i = 0
    while i < len(spec):
        ch = spec[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        nxt = spec[i + 1: i + 2]
        if nxt == "%":
            out.append("%")
            i += 2
            continue
        if nxt == "_":
            out.append(" ")
            i += 2
            continue
        if nxt == "-":
            out.append("%20")
            i += 2
            continue
        m = _MACRO.match(spec, i)
        if not m:
            raise _PermError(f"{spec!r}: bad macro (RFC 7208 §7.1)")
        letter, digits, reverse, delims = m.group(1), m.group(2), m.group(3), m.group(4)
        value = _macro_value(ctx, letter.lower(), domain, exp)
        parts = re.split("[" + re.escape(delims or ".") + "]", value)
        if reverse:
            parts.reverse()
        if digits:
            n = int(digits)
            if n == 0:
                raise _PermError(f"{spec!r}: zero digit transformer (RFC 7208 §7.1)")
            parts = parts[-n:]
        value = ".".join(parts)
        if letter.isupper():
            value = urllib.parse.quote(value, safe="-._~")
        out.append(value)
        i = m.end()
    return "".join(out)


def _macro_value(ctx: _Ctx, letter: str, domain: str, exp: bool) -> str:
    local, _at, sender_domain = ctx.sender.rpartition("@")
    if letter == "s":
        return ctx.sender
    if letter == "l":
        return local or "postmaster"
    if letter == "o":
        return sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        if isinstance(ctx.ip, ipaddress.IPv6Address):
            return ".".join(ctx.ip.exploded.replace(":", ""))
        return str(ctx.ip)
    if letter == "p":
        # §7.3: computing it costs look-ups and is discouraged; "unknown" when none.
        return ctx.validated if ctx.validated is not None else "unknown"
    if letter == "v":
        return "ip6" if isinstance(ctx.ip, ipaddress.IPv6Address) else "in-addr"
    if letter == "h":
        return ctx.helo
    if letter in ("c", "r", "t"):
        if not exp:
            raise _PermError(f"%{{{letter}}} is allowed only in an explanation (RFC 7208 §7.2)")
        if letter == "c":
            return str(ctx.ip)
        if letter == "r":
            return ctx.receiver
        return str(int(time.time()))
    raise _PermError(f"unknown macro letter {letter!r}")  # pragma: no cover - refused by _MACRO


async def _explain(ctx: _Ctx, exp: _Term, domain: str) -> str:
    """§6.2: the explanation; any problem with it means no explanation, never an error."""
    try:
        target = await _expand_async(ctx, exp.arg, domain)
        if not _domain_ok(target):
            return ""
        answers = await ctx.lookup.query(target, "TXT")
        if len(answers) != 1:
            return ""
        text = answers[0]
        _check_macro_string(text.replace(" ", "%_"), "exp")
        return await _expand_async(ctx, text, domain, exp=True)
    except (_PermError, _TempError, DNSTempError):
        return ""
