"""The "tls" check: what a sending MTA sees when it starts TLS with our listeners. This
module owns check_tls and the glue between the two halves: every endpoint of the target is
probed (tls_probe), each completed handshake is judged by the certificate rules
(certcheck: protocol, name, expiry, chain), and the endpoints' report lines and findings
are aggregated into one result: fail if any endpoint fails, warn if any warns, else pass,
with each fix said once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

from cryptography import x509

from mailwarden.reputation.audit import tls_probe
from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.certcheck import (
    FIX_PUBLIC_CA,
    Finding,
    check_chain,
    check_name,
    check_protocol,
    check_validity,
    intermediates_for,
    issuer_name,
    read_pem_certificates,
    trusted_roots,
)
from mailwarden.reputation.audit.model import AuditTarget, CheckResult, Endpoint, Status
from mailwarden.reputation.audit.tls_probe import Handshake, ProbeError

NAME = "tls"
_RANK: dict[Status, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}


# ------------------------------------------------------------------- the public check --


async def check_tls(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    """Probe every TLS endpoint of ``target``; one result for all of them (a bug here
    becomes a "could not check" warn in the auditor, like any check's)."""
    if not target.endpoints:
        return CheckResult(NAME, "skip", "no SMTP listener with TLS to probe")
    probes = await asyncio.gather(*(_probe_or_reason(ep, target) for ep in target.endpoints))
    return await asyncio.to_thread(_judge_all, target, probes)


async def _probe_or_reason(ep: Endpoint, target: AuditTarget) -> Handshake | ProbeError:
    try:
        return await tls_probe.probe(ep, target.helo_name, target.hostname)
    except ProbeError as exc:
        return exc
    except Exception as exc:
        return ProbeError(f"probe failed: {type(exc).__name__}: {exc}")


def _judge_all(target: AuditTarget, probes: Sequence[Handshake | ProbeError]) -> CheckResult:
    roots = trusted_roots(target.ca_file)
    served = read_pem_certificates(target.cert_file) if target.cert_file else []
    lines: list[str] = []
    findings: list[Finding] = []
    for ep, probe in zip(target.endpoints, probes, strict=True):
        prefix = f"{ep.name} {ep.host}:{ep.port} ({ep.tls})"
        if isinstance(probe, ProbeError):
            lines.append(f"{prefix}: {probe.reason}")
            findings.append(Finding("fail", probe.reason, probe.fix))
            continue
        line, found = judge_handshake(probe, target.hostname, target.now, roots, served)
        lines.append(f"{prefix}: {line}")
        findings.extend(found)
    return aggregate(lines, findings)


def judge_handshake(
    hs: Handshake,
    hostname: str,
    now: dt.datetime,
    roots: Sequence[x509.Certificate],
    served: Sequence[x509.Certificate],
) -> tuple[str, list[Finding]]:
    """The report line of one endpoint and what is wrong with it."""
    try:
        leaf = x509.load_der_x509_certificate(hs.leaf)
    except ValueError as exc:
        finding = Finding("fail", f"unreadable certificate ({exc})", FIX_PUBLIC_CA)
        return f"{hs.version}, {finding.text}", [finding]
    intermediates = intermediates_for(leaf, hs.chain, served)
    findings = [
        f
        for f in (
            check_protocol(hs.version),
            check_name(leaf, hostname),
            check_validity(leaf, now),
            check_chain(leaf, intermediates, roots, hostname, now),
        )
        if f is not None
    ]
    if findings:
        problems = "; ".join(f.text for f in findings)
        return f"{hs.version}, {problems} (issued by {issuer_name(leaf)})", findings
    until = leaf.not_valid_after_utc.date().isoformat()
    return (
        f"{hs.version}, certificate for {hostname} valid until {until}, "
        f"issued by {issuer_name(leaf)}",
        [],
    )


def aggregate(lines: Sequence[str], findings: Sequence[Finding]) -> CheckResult:
    """Fail if any endpoint fails, warn if any warns, else pass; fixes said once each."""
    status: Status = max((f.status for f in findings), key=_RANK.__getitem__, default="pass")
    fixes = list(dict.fromkeys(f.fix for f in findings if f.fix))
    return CheckResult(NAME, status, "; ".join(lines), "\n".join(fixes))
