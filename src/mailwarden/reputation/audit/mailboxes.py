"""postmaster@ and abuse@ must reach a person.

RFC 5321 §4.5.1: every SMTP domain MUST accept mail for postmaster. RFC 2142 §4 names
abuse@ for reports of misbehaviour; blocklist operators and feedback loops write to it,
and a bounce from it is a reason to distrust the domain.
"""

from __future__ import annotations

from mailwarden.reputation.audit.cache import CachingResolver
from mailwarden.reputation.audit.model import AuditTarget, CheckResult

REQUIRED = ("postmaster", "abuse")


def required_addresses(domain: str) -> list[str]:
    return [f"{local}@{domain}" for local in REQUIRED]


async def check_mailboxes(target: AuditTarget, dns: CachingResolver) -> CheckResult:
    missing, found = [], []
    for address in required_addresses(target.domain):
        where = target.mailboxes.get(address)
        if where is None:
            missing.append(address)
        else:
            found.append(f"{address} → {where}")
    if not missing:
        return CheckResult("mailboxes", "pass", "; ".join(found))
    fix = "\n".join(f"mailwarden alias add {a} <your address>" for a in missing)
    detail = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not delivered"
    detail += " to anyone (no user, alias or catch-all)"
    if found:
        detail += "; " + "; ".join(found)
    return CheckResult("mailboxes", "fail", detail, fix)
