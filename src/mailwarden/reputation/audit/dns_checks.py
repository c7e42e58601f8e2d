"""MX, DKIM and DMARC records of the domain, compared with what this server does."""

from __future__ import annotations

import asyncio
import re

from mailwarden.auth.dkim import DkimSyntaxError, key_problem, parse_tag_list
from mailwarden.auth.dmarc import DmarcRecordError, load_psl, organizational_domain, parse_record
from mailwarden.dns.resolver import addresses, mx_hosts
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, DkimKeyInfo

MIN_RSA_BITS = 2048  # RFC 8301 §3.2 allows 1024; receivers and this audit want 2048
_WSP = re.compile(r"\s+")


def _txt(name: str, value: str) -> str:
    return f'{name}. IN TXT "{value}"'


# ------------------------------------------------------------------------------ MX
async def check_mx(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    domain, host = target.domain, target.hostname
    fix = f"{domain}. IN MX 10 {host}."
    answer, ours = await asyncio.gather(dns.query(domain, "MX"), addresses(dns, host))
    if answer.nxdomain:
        return CheckResult("mx", "fail", f"{domain} does not exist in DNS", fix)
    hosts = mx_hosts(answer)
    if hosts == [(0, "")]:  # RFC 7505: "0 ." is a null MX: the domain takes no mail
        return CheckResult("mx", "fail", f"{domain} publishes a null MX (accepts no mail)", fix)
    if not hosts:
        return CheckResult("mx", "fail", f"{domain} has no MX record", fix)
    names = [h for _, h in hosts]
    if host not in names:
        detail = f"MX points at {', '.join(names)}, not at this server ({host})"
        return CheckResult("mx", "fail", detail, fix)
    if not ours:
        detail = f"MX points at {host}, but {host} has no A or AAAA record"
        return CheckResult("mx", "fail", detail, f"{host}. IN A <this server's public IP>")
    if names[0] != host and hosts[0][0] < dict((h, p) for p, h in hosts)[host]:
        detail = f"mail goes first to {names[0]}; this server ({host}) is a backup"
        return CheckResult("mx", "warn", detail, fix)
    return CheckResult("mx", "pass", f"MX {', '.join(names)} ({host} → {', '.join(ours)})")


# ---------------------------------------------------------------------------- DKIM
def _p(record: str) -> str | None:
    try:
        return _WSP.sub("", parse_tag_list(record).get("p", "")) or None
    except DkimSyntaxError:
        return None


def _key_line(key: DkimKeyInfo, records: tuple[str, ...]) -> tuple[str, bool]:
    """(what we found for one selector, whether it is right)."""
    state = "signing" if key.active else "rotated out, still needed"
    if key.algorithm.startswith("rsa") and key.bits and key.bits < MIN_RSA_BITS:
        return f"{key.selector} ({state}): our RSA key has {key.bits} bits, fewer than 2048", False
    if not records:
        return f"{key.selector} ({state}): not published", False
    if len(records) > 1:  # RFC 6376 §3.6.2.2: several keys make verification a gamble
        return f"{key.selector} ({state}): {len(records)} TXT records at one selector", False
    problem = key_problem(records[0])
    if problem is not None:
        return f"{key.selector} ({state}): {problem[1]}", False
    if _p(records[0]) != _p(key.record):
        return f"{key.selector} ({state}): the published key is not our key", False
    tags = parse_tag_list(records[0])
    if "y" in tags.get("t", "").split(":"):  # RFC 6376 §3.6.1: receivers may ignore failures
        return f"{key.selector} ({state}): published with t=y (testing)", True
    return f"{key.selector} ({state}): published and matches", True


async def check_dkim(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    domain = target.domain
    if not any(k.active for k in target.dkim_keys):
        return CheckResult(
            "dkim",
            "fail",
            f"{domain} has no DKIM key, so its mail is not signed",
            f"mailwarden dkim rotate {domain}   (then publish: mailwarden domain dns {domain})",
        )
    names = [f"{k.selector}._domainkey.{domain}" for k in target.dkim_keys]
    answers = await asyncio.gather(*(dns.query(n, "TXT") for n in names))
    lines, fixes = [], []
    for key, name, answer in zip(target.dkim_keys, names, answers, strict=True):
        line, ok = _key_line(key, answer.records)
        lines.append(line)
        if not ok:
            fixes.append(_txt(name, key.record))
    if fixes:
        return CheckResult("dkim", "fail", "; ".join(lines), "\n".join(fixes))
    if any("t=y" in line for line in lines):
        return CheckResult("dkim", "warn", "; ".join(lines), "remove t=y once signing works")
    return CheckResult("dkim", "pass", "; ".join(lines))


# --------------------------------------------------------------------------- DMARC
async def _dmarc_records(dns: CachingResolver, domain: str) -> list[str]:
    answer = await dns.query(f"_dmarc.{domain}", "TXT")
    return [r for r in answer.records if r.strip()[:8].replace(" ", "").lower() == "v=dmarc1"]


async def _discover(dns: CachingResolver, domain: str) -> tuple[str, list[str]]:
    """RFC 7489 §6.6.3: the domain's own record, else its organizational domain's."""
    records = await _dmarc_records(dns, domain)
    if records:
        return domain, records
    org = organizational_domain(domain, await load_psl())
    if org != domain:
        return org, await _dmarc_records(dns, org)
    return domain, records


async def check_dmarc(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    domain = target.domain
    suggested = _txt(
        f"_dmarc.{domain}", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r"
    )
    where, records = await _discover(dns, domain)
    if not records:
        return CheckResult("dmarc", "fail", f"no DMARC record at _dmarc.{domain}", suggested)
    if len(records) > 1:  # RFC 7489 §6.6.3 step 5: several records mean no DMARC at all
        return CheckResult("dmarc", "fail", f"{len(records)} DMARC records at _dmarc.{where}", "")
    try:
        rec = parse_record(records[0])
    except DmarcRecordError as exc:
        return CheckResult("dmarc", "fail", f"the DMARC record does not parse: {exc}", suggested)
    policy = rec.sp or rec.p if where != domain else rec.p
    # We sign with d=<domain> and send with a Return-Path in <domain>: both identifiers
    # are the From domain itself, so they align in strict and in relaxed mode (§3.1).
    detail = f"p={policy}" + (f" (from {where})" if where != domain else "")
    detail += f", pct={rec.pct}, rua={','.join(rec.rua) or 'none'}; DKIM and SPF align"
    if not rec.rua:
        fix = f"add rua=mailto:dmarc-reports@{domain} to the record"
        return CheckResult("dmarc", "warn", detail + "; no rua: nobody receives reports", fix)
    if policy == "none":
        fix = (
            "p=none only monitors. Once the aggregate reports show all your mail passing "
            "for 2 to 4 weeks, publish p=quarantine, then p=reject"
        )
        return CheckResult("dmarc", "warn", detail, fix)
    if rec.pct < 100:
        fix = "raise pct step by step to 100 while the reports stay clean"
        return CheckResult("dmarc", "warn", detail + f"; applied to {rec.pct}% only", fix)
    if rec.problems:
        return CheckResult("dmarc", "warn", detail + "; " + "; ".join(rec.problems), suggested)
    if policy == "quarantine":
        detail += "; when the reports stay clean, move to p=reject"
    return CheckResult("dmarc", "pass", detail)
