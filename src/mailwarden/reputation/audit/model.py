"""What an audit looks at (AuditTarget), what each check says (CheckResult), and the score.

Scoring (documented in docs/audit.md): each check has a weight; a pass earns all of it,
a warn half, a fail none, and a skip (the check does not apply, e.g. DANE on an unsigned
zone) is left out of both sides. score = round(100 × earned / possible).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Status = Literal["pass", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "fail", "skip")

# The weights sum to 100 when every check applies.
WEIGHTS: dict[str, int] = {
    "mx": 10,
    "spf": 15,
    "dkim": 15,
    "dmarc": 12,
    "rdns": 10,
    "helo": 5,
    "tls": 10,
    "mta_sts": 5,
    "dane": 3,
    "mailboxes": 5,
    "blocklists": 10,
}
EARNED: dict[Status, float] = {"pass": 1.0, "warn": 0.5, "fail": 0.0}


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""
    checked: bool = True  # False: a lookup or probe failed, so the status says nothing

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class DkimKeyInfo:
    """One of our DKIM keys as DNS must show it."""

    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    record: str  # the TXT value we print (v=DKIM1; k=...; p=...)
    active: bool  # False: rotated out, still published until its grace ends
    bits: int = 0  # RSA modulus size; 0 for Ed25519


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One of our SMTP listeners, as the TLS probe reaches it."""

    name: str
    host: str
    port: int
    tls: Literal["starttls", "implicit"]


@dataclass(frozen=True, slots=True)
class AuditTarget:
    """Everything the checks need to know about us; built by services/audit.py."""

    domain: str
    hostname: str  # our MX / banner name
    helo_name: str  # the name we send in EHLO
    sending_ips: tuple[str, ...]  # empty: the addresses of ``hostname`` are checked
    now: datetime
    dkim_keys: tuple[DkimKeyInfo, ...] = ()
    relay_hosts: tuple[str, ...] = ()  # smarthosts in delivery.transports: they send for us
    endpoints: tuple[Endpoint, ...] = ()
    # address → how it is delivered ("user alice@d", "alias → …"), None if nobody gets it
    mailboxes: dict[str, str | None] = field(default_factory=dict)
    ca_file: Path | None = None  # extra CA certificates trusted by the TLS checks
    cert_file: Path | None = None  # the certificate chain our listeners serve (tls.cert)
    https_port: int = 443  # RFC 8461 §3.3: the MTA-STS policy host (changed only in tests)
    blocklists: tuple[Any, ...] = ()  # audit.dnsbl.Blocklist


@dataclass(frozen=True, slots=True)
class AuditReport:
    domain: str
    score: int
    checks: tuple[CheckResult, ...]
    queries: int = 0  # DNS queries sent (repeated lookups answered from the audit's cache)
    lookups: int = 0  # DNS lookups asked for by the checks
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "score": self.score,
            "checks": [c.as_dict() for c in self.checks],
        }

    def status_of(self, name: str) -> Status | None:
        return next((c.status for c in self.checks if c.name == name), None)


def score(checks: tuple[CheckResult, ...] | list[CheckResult]) -> int:
    """0–100 from the weighted checks (see the module doc); 0 when nothing applied."""
    earned = possible = 0.0
    for check in checks:
        if check.status == "skip":
            continue
        weight = WEIGHTS.get(check.name, 0)
        possible += weight
        earned += weight * EARNED[check.status]
    return round(100 * earned / possible) if possible else 0
