"""SPF: one record that parses, at most 10 DNS lookups, every sending IP authorised, and
an ending that refuses everyone else (RFC 7208)."""

from __future__ import annotations

import asyncio

from mailwarden.auth.spf import check_host
from mailwarden.auth.spf_record import SpfRecord, SpfSyntaxError, is_spf_record, parse_record
from mailwarden.dns.resolver import addresses
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.host_checks import sending_ips
from mailwarden.reputation.audit.model import AuditTarget, CheckResult

MAX_LOOKUPS = 10  # RFC 7208 §4.6.4: include, a, mx, ptr, exists and redirect count
LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")
MAX_DEPTH = 12  # includes nest; beyond this the record loops or is absurd


async def spf_records(dns: CachingResolver, domain: str) -> list[str]:
    answer = await dns.query(domain, "TXT")
    return [r for r in answer.records if is_spf_record(r)]  # RFC 7208 §4.5


async def count_lookups(dns: CachingResolver, domain: str, depth: int = 0) -> tuple[int, list[str]]:
    """DNS-querying terms in ``domain``'s record and everything it includes or redirects
    to (RFC 7208 §4.6.4), with problems found on the way. Macro targets count one and
    are not followed (their expansion depends on the message)."""
    if depth > MAX_DEPTH:
        return MAX_LOOKUPS + 1, [f"includes nest deeper than {MAX_DEPTH} (a loop?)"]
    records = await spf_records(dns, domain)
    if len(records) != 1:
        what = "no SPF record" if not records else f"{len(records)} SPF records"
        return 0, [f"{domain} (included) has {what}"] if depth else []
    try:
        record = parse_record(records[0])
    except SpfSyntaxError as exc:
        return 0, [f"{domain}: {exc}"]
    count, problems = 0, []
    follow = []
    for mech in record.mechanisms:
        if mech.kind in LOOKUP_TERMS:
            count += 1
        if mech.kind == "ptr":
            problems.append(f"{domain} uses ptr, which RFC 7208 §5.5 says not to use")
        if mech.kind == "include" and mech.domain_spec and "%" not in mech.domain_spec:
            follow.append(mech.domain_spec)
    if record.redirect:
        count += 1
        if "%" not in record.redirect:
            follow.append(record.redirect)
    for sub_count, sub_problems in await asyncio.gather(
        *(count_lookups(dns, d, depth + 1) for d in follow)
    ):
        count += sub_count
        problems += sub_problems
    return count, problems


async def _final_all(dns: CachingResolver, record: SpfRecord, hops: int = 0) -> str | None:
    """The qualifier of the record's ``all`` (following redirect=), or None without one."""
    for mech in record.mechanisms:
        if mech.kind == "all":
            return mech.qualifier
    if record.redirect and "%" not in record.redirect and hops < MAX_DEPTH:
        records = await spf_records(dns, record.redirect)
        if len(records) == 1:
            try:
                return await _final_all(dns, parse_record(records[0]), hops + 1)
            except SpfSyntaxError:
                return None
    return None


def _suggested(target: AuditTarget, ips: list[str]) -> str:
    terms = ["v=spf1", "mx"]
    terms += [f"ip6:{ip}" if ":" in ip else f"ip4:{ip}" for ip in ips]
    terms += [f"a:{h}" for h in target.relay_hosts]
    return f'{target.domain}. IN TXT "{" ".join([*terms, "~all"])}"'


async def _senders(target: AuditTarget, dns: CachingResolver) -> list[str]:
    ips, _ = await sending_ips(target, dns)
    relays = await asyncio.gather(*(addresses(dns, h) for h in target.relay_hosts))
    return list(dict.fromkeys([*ips, *(ip for found in relays for ip in found)]))


async def check_spf(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    domain = target.domain
    records, ips = await asyncio.gather(spf_records(dns, domain), _senders(target, dns))
    fix = _suggested(target, ips)
    if not records:
        return CheckResult("spf", "fail", f"{domain} publishes no SPF record", fix)
    if len(records) > 1:  # RFC 7208 §4.5: more than one record is a permerror
        return CheckResult(
            "spf", "fail", f"{len(records)} SPF records (receivers treat that as an error)", fix
        )
    try:
        record = parse_record(records[0])
    except SpfSyntaxError as exc:
        return CheckResult("spf", "fail", f"the SPF record does not parse: {exc}", fix)
    (lookups, problems), ending = await asyncio.gather(
        count_lookups(dns, domain), _final_all(dns, record)
    )
    if lookups > MAX_LOOKUPS:
        detail = f"the record needs {lookups} DNS lookups; RFC 7208 allows {MAX_LOOKUPS}"
        return CheckResult("spf", "fail", detail, "replace includes by ip4:/ip6: terms:\n" + fix)
    results = await asyncio.gather(
        *(check_host(dns, ip, domain, f"postmaster@{domain}", target.helo_name) for ip in ips)
    )
    refused = [
        f"{ip} ({r.result})" for ip, r in zip(ips, results, strict=True) if r.result != "pass"
    ]
    if refused:
        detail = f"SPF does not authorise {', '.join(refused)}"
        return CheckResult("spf", "fail", detail, fix)
    if ending not in ("-", "~"):
        shown = {None: "no all", "+": "+all", "?": "?all"}.get(ending, str(ending))
        detail = f"the record ends in {shown}: anyone may send as {domain}"
        return CheckResult("spf", "fail", detail, fix)
    detail = f"{records[0]!r}: {lookups} of {MAX_LOOKUPS} lookups; authorises {', '.join(ips)}"
    if problems:
        return CheckResult("spf", "warn", detail + "; " + "; ".join(problems), fix)
    return CheckResult("spf", "pass", detail)
