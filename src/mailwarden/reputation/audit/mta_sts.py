"""MTA-STS (RFC 8461) and SMTP TLS Reporting (RFC 8460): the "mta_sts" check.

This module owns ``check_mta_sts`` and its findings and fix text: the ``_mta-sts`` TXT
record (§3.1), the policy fetched over HTTPS from ``mta-sts.<domain>`` (§3.3, via
``policy_fetch``, whose addresses come from the audit's resolver) and parsed (§3.2, via
``sts_policy``), its mx patterns matched against every MX host and our own hostname
(§4.1), its mode, and the ``_smtp._tls`` TLS-RPT record, turned into one status, a
detail in words and the records or policy to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailwarden.dns.resolver import mx_hosts
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, Status
from mailwarden.reputation.audit.policy_fetch import (
    PolicyFetchError,
    PolicyResponse,
    fetch_policy_response,
    policy_url,
)
from mailwarden.reputation.audit.sts_policy import (
    DEFAULT_MAX_AGE,
    MAX_AGE_LIMIT,
    Policy,
    mx_covered,
    parse_policy,
    policy_text,
    sts_id,
    sts_record,
    tlsrpt_problem,
    tlsrpt_record,
)

NAME = "mta_sts"
SHORT_MAX_AGE = 86_400  # below a day the policy protects little (§3.2 suggests weeks)
_RANK: dict[Status, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}


@dataclass(frozen=True, slots=True)
class _Finding:
    status: Status
    detail: str
    fix: str = ""


def _stamp(target: AuditTarget) -> str:
    return target.now.strftime("%Y%m%d%H%M%S")


def _republish(domain: str, policy: str, target: AuditTarget) -> str:
    """Fix text: serve this policy, then change the id so senders refetch (§3.1)."""
    return (
        f"Serve at {policy_url('mta-sts.' + domain)} (Content-Type: text/plain):\n{policy}\n"
        f"Then change the id so senders fetch it again:\n{sts_record(domain, _stamp(target))}"
    )


def _serve_fix(host: str, hosts: list[str]) -> str:
    return (
        f"Serve at {policy_url(host)} with HTTP 200 (no redirect), Content-Type: text/plain "
        f"and a certificate valid for {host}:\n{policy_text('testing', hosts)}"
    )


def _setup_fix(target: AuditTarget, domain: str, hosts: list[str], with_tlsrpt: bool) -> str:
    host = f"mta-sts.{domain}"
    parts = [
        f"Publish (RFC 8461):\n{sts_record(domain, _stamp(target))}",
        _serve_fix(host, hosts),
    ]
    if with_tlsrpt:
        parts.append(f"Publish TLS reporting (RFC 8460):\n{tlsrpt_record(domain)}")
    return "\n".join(parts)


def _tlsrpt_finding(domain: str, records: Sequence[str]) -> _Finding | None:
    problem = tlsrpt_problem(records)
    if problem is None:
        return None
    detail = (
        f"TLS reporting is not set up at _smtp._tls.{domain}: {problem}, so you get no "
        "reports of failed TLS deliveries (RFC 8460)."
    )
    return _Finding("warn", detail, tlsrpt_record(domain))


def _result(findings: list[_Finding]) -> CheckResult:
    status = max((f.status for f in findings), key=_RANK.__getitem__)
    detail = " ".join(f.detail for f in findings)
    return CheckResult(NAME, status, detail, "\n\n".join(f.fix for f in findings if f.fix))


async def _mx_names(target: AuditTarget, dns: CachingResolver, domain: str) -> list[str]:
    """Our hostname first, then every other MX host (null MX "." left out)."""
    names = [target.hostname.lower().rstrip(".")]
    for _, host in mx_hosts(await dns.query(domain, "MX")):
        if host and host not in names:
            names.append(host)
    return names


def _not_published(
    target: AuditTarget, domain: str, hosts: list[str], tlsrpt: _Finding | None
) -> CheckResult:
    detail = (
        f"No MTA-STS record at _mta-sts.{domain}: senders may deliver to you without TLS "
        "or to an impostor MX. MTA-STS is optional but recommended (RFC 8461)."
    )
    if tlsrpt is not None:
        detail += " " + tlsrpt.detail
    fix = _setup_fix(target, domain, hosts, with_tlsrpt=tlsrpt is not None)
    return CheckResult(NAME, "warn", detail, fix)


def _record_finding(target: AuditTarget, domain: str, records: list[str]) -> _Finding | None:
    """A fail when the ``v=STSv1`` records are not exactly one valid record (§3.1)."""
    good = sts_record(domain, _stamp(target))
    if len(records) > 1:
        detail = (
            f"There are {len(records)} v=STSv1 records at _mta-sts.{domain}; with more than "
            "one, senders ignore MTA-STS (RFC 8461 §3.1)."
        )
        return _Finding("fail", detail, f"Keep exactly one:\n{good}")
    try:
        sts_id(records[0])
    except ValueError as exc:
        detail = f"The record at _mta-sts.{domain} is invalid: {exc} (RFC 8461 §3.1)."
        return _Finding("fail", detail, f"Replace it with:\n{good}")
    return None


def _mode_finding(target: AuditTarget, domain: str, policy: Policy, hosts: list[str]) -> _Finding:
    mx = list(policy.mx) or hosts
    age = policy.max_age or DEFAULT_MAX_AGE
    if policy.mode == "enforce":
        return _Finding("pass", f"The MTA-STS policy enforces TLS for {', '.join(hosts)}.")
    if policy.mode == "testing":
        detail = (
            "The MTA-STS policy is in testing mode: senders report TLS failures but still "
            "deliver without TLS. Switch to enforce once the TLS reports show no failures."
        )
        return _Finding("warn", detail, _republish(domain, policy_text("enforce", mx, age), target))
    detail = "The MTA-STS policy mode is none, which withdraws the policy (RFC 8461 §5)."
    return _Finding("warn", detail, _republish(domain, policy_text("testing", mx, age), target))


def _policy_findings(
    target: AuditTarget, domain: str, response: PolicyResponse, hosts: list[str]
) -> list[_Finding]:
    policy = parse_policy(response.text)
    age = policy.max_age if policy.max_age and policy.max_age <= MAX_AGE_LIMIT else None
    if policy.problems:
        detail = f"The policy at {response.url} is invalid: {'; '.join(policy.problems)}."
        fixed = policy_text("testing", hosts, age or DEFAULT_MAX_AGE)
        return [_Finding("fail", detail, _republish(domain, fixed, target))]
    uncovered = [h for h in hosts if not mx_covered(policy.mx, h)]
    if uncovered and policy.mode != "none":  # RFC 8461 §4.1: MX host validation
        detail = (
            f"The policy's mx lines ({', '.join(policy.mx)}) do not cover "
            f"{', '.join(uncovered)}; senders that enforce it will not deliver there."
        )
        fixed = policy_text(policy.mode, [*policy.mx, *uncovered], age or DEFAULT_MAX_AGE)
        return [_Finding("fail", detail, _republish(domain, fixed, target))]
    return [_mode_finding(target, domain, policy, hosts), *_served_findings(policy, response)]


def _served_findings(policy: Policy, response: PolicyResponse) -> list[_Finding]:
    out: list[_Finding] = []
    media = response.content_type.split(";")[0].strip().lower()
    if media != "text/plain":  # RFC 8461 §3.3: senders SHOULD check for text/plain
        served = f"as {response.content_type!r}" if media else "without a Content-Type"
        fix = "Serve the policy with Content-Type: text/plain."
        out.append(_Finding("warn", f"The policy is served {served}, not text/plain.", fix))
    if policy.max_age is not None and policy.max_age < SHORT_MAX_AGE:
        detail = f"max_age {policy.max_age} is under a day; senders forget the policy quickly."
        out.append(_Finding("warn", detail, f"Use max_age: {DEFAULT_MAX_AGE} or more."))
    return out


async def _published_findings(
    target: AuditTarget, dns: CachingResolver, domain: str, records: list[str], hosts: list[str]
) -> list[_Finding]:
    bad_record = _record_finding(target, domain, records)
    if bad_record is not None:
        return [bad_record]
    host = f"mta-sts.{domain}"
    try:
        response = await fetch_policy_response(dns, host, target.https_port, target.ca_file)
    except PolicyFetchError as exc:
        detail = (
            f"_mta-sts.{domain} is published, but the policy at "
            f"{policy_url(host, target.https_port)} cannot be fetched: {str(exc).rstrip('.')}."
        )
        return [_Finding("fail", detail, _serve_fix(host, hosts))]
    return _policy_findings(target, domain, response, hosts)


async def check_mta_sts(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    """MTA-STS record, policy and MX coverage, plus TLS-RPT (see the module doc)."""
    domain = target.domain.lower().rstrip(".")
    sts = await dns.query(f"_mta-sts.{domain}", "TXT")
    tlsrpt = _tlsrpt_finding(domain, (await dns.query(f"_smtp._tls.{domain}", "TXT")).records)
    hosts = await _mx_names(target, dns, domain)
    # RFC 8461 §3.1: records not starting with v=STSv1 are discarded
    records = [r for r in sts.records if r.startswith("v=STSv1")]
    if not records:
        return _not_published(target, domain, hosts, tlsrpt)
    findings = await _published_findings(target, dns, domain, records, hosts)
    return _result(findings + ([tlsrpt] if tlsrpt else []))
