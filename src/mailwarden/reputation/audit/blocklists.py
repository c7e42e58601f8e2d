"""The audit check: are our sending IPs or our domain on a DNS blocklist (RFC 5782)?

This module owns the lookups (the A records at each query name, and the TXT reason for a
listing or refusal) and the ``blocklists`` check built on them, with its detail and fix
texts: it fails on a listing, warns when no list could be used at all (every list refused
our resolver, answered something that is no return code, or the lookup failed — we cannot
tell), and passes otherwise. Which lists there are, their query names and what their
answers mean live in ``dnsbl``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace

from mailwarden.core.errors import DnsError
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.dnsbl import (
    DEFAULT_BLOCKLISTS,
    Blocklist,
    Listing,
    interpret,
    query_name,
)
from mailwarden.reputation.audit.host_checks import sending_ips
from mailwarden.reputation.audit.model import AuditTarget, CheckResult

_URL = re.compile(r"https?://[^\s\"'<>]+")

# ---------------------------------------------------------------------- the check


@dataclass(frozen=True, slots=True)
class Finding:
    item: str  # the IP or domain looked up
    blocklist: Blocklist
    listing: Listing


async def lookup(dns: CachingResolver, item: str, bl: Blocklist) -> Finding:
    """Look ``item`` up in ``bl``; a listing or refusal also fetches the TXT reason."""
    name = query_name(item, bl)
    try:
        answer = await dns.query(name, "A")
    except DnsError as exc:
        return Finding(item, bl, Listing("error", meaning=f"the lookup failed ({exc})"))
    listing = interpret(bl, answer.records)
    if listing.state in ("listed", "refused"):
        listing = replace(listing, reason=await _txt(dns, name))
    return Finding(item, bl, listing)


async def _txt(dns: CachingResolver, name: str) -> str:
    try:
        answer = await dns.query(name, "TXT")
    except DnsError:
        return ""  # the reason is a courtesy: the listing stands without it
    return " / ".join(answer.records)


def _pairs(
    lists: tuple[Blocklist, ...], ips: list[str], domain: str
) -> list[tuple[str, Blocklist]]:
    pairs = [(domain, bl) for bl in lists if bl.kind == "domain"]
    for bl in lists:
        if bl.kind == "ip":
            pairs += [(ip, bl) for ip in ips if bl.ipv6 or ":" not in ip]
    return pairs


async def check_blocklists(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    lists: tuple[Blocklist, ...] = tuple(target.blocklists) or DEFAULT_BLOCKLISTS
    ips, source = await sending_ips(target, dns)
    pairs = _pairs(lists, ips, target.domain)
    if not pairs:
        return CheckResult("blocklists", "skip", "no sending IP and no domain list to check")
    findings = await asyncio.gather(*(lookup(dns, item, bl) for item, bl in pairs))
    listed = [f for f in findings if f.listing.state == "listed"]
    if listed:
        return _fail(listed)
    if not any(f.listing.usable for f in findings):
        return _warn(findings)
    return _pass(findings, ips, source)


def _fail(listed: list[Finding]) -> CheckResult:
    detail = "; ".join(_listed_line(f) for f in listed)
    fixes = dict.fromkeys(line for f in listed for line in _delist_steps(f))
    return CheckResult("blocklists", "fail", detail, "\n".join(fixes))


def _listed_line(f: Finding) -> str:
    bl, listing = f.blocklist, f.listing
    line = f"{f.item} is listed on {bl.name} ({bl.zone}) with {listing.meaning}"
    return line + (f" — the list says: {listing.reason}" if listing.reason else "")


def _delist_steps(f: Finding) -> list[str]:
    bl, codes = f.blocklist, f.listing.codes
    url = next(iter(_URL.findall(f.listing.reason)), "") or bl.site or f"the {bl.name} site"
    steps = []
    if any(c in bl.policy for c in codes):
        steps.append(
            f"{f.item}: send through your provider's relay or ask the owner to remove it "
            f"from the PBL ({url})"
        )
    if any(c not in bl.policy for c in codes):
        cause = (
            "open relay, compromised account, a sending spike"
            if bl.kind == "ip"
            else "a compromised account or website, spam that names the domain"
        )
        steps.append(
            f"{f.item} on {bl.name}: find the cause ({cause}), then request removal at {url}"
        )
    return steps


def _unusable_lines(findings: list[Finding]) -> list[str]:
    """One line per list that could not be used (the first finding explains it)."""
    seen: dict[str, str] = {}
    for f in findings:
        if not f.listing.usable and f.blocklist.zone not in seen:
            codes = f" ({', '.join(f.listing.codes)})" if f.listing.codes else ""
            seen[f.blocklist.zone] = f"{f.blocklist.name}{codes}: {f.listing.meaning}"
    return list(seen.values())


RESOLVER_ADVICE = (
    "Spamhaus (and other lists) refuse queries that come through public resolvers such as "
    "8.8.8.8 or 1.1.1.1, or from resolvers over their free-use volume"
)
RESOLVER_FIX = (
    "point dns.nameservers at a local recursive resolver (e.g. unbound on 127.0.0.1:53) "
    "that asks the lists itself, or use a Spamhaus DQS key zone in reputation.blocklists "
    '("ip:<key>.zen.dq.spamhaus.net", "domain:<key>.dbl.dq.spamhaus.net")'
)


def _resolver_fix(findings: list[Finding]) -> str:
    states = {f.listing.state for f in findings}
    if states & {"refused", "unexpected"}:
        return RESOLVER_FIX
    if "error" in states:
        return "check that the resolvers in dns.nameservers reach the blocklists' name servers"
    return ""


def _warn(findings: list[Finding]) -> CheckResult:
    detail = "no blocklist could be used, so we cannot tell: " + "; ".join(
        _unusable_lines(findings)
    )
    if any(f.listing.state == "refused" for f in findings):
        detail += f". {RESOLVER_ADVICE}"
    return CheckResult("blocklists", "warn", detail, _resolver_fix(findings))


def _pass(findings: list[Finding], ips: list[str], source: str) -> CheckResult:
    used = {f.blocklist.zone: f.blocklist.name for f in findings if f.listing.usable}
    items = sorted({f.item for f in findings if f.listing.usable})
    detail = (
        f"not listed: {len(items)} address(es)/domain(s) checked against "
        f"{len(used)} list(s) ({', '.join(used.values())})"
    )
    detail += f"; sending IPs ({source}): {', '.join(ips) or 'none'}"
    unusable = _unusable_lines(findings)
    if not unusable:
        return CheckResult("blocklists", "pass", detail)
    detail += "; could not use " + "; ".join(unusable)
    return CheckResult("blocklists", "pass", detail, _resolver_fix(findings))
